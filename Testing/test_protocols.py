"""`--protocol paper` (issue #12.9): the paper's chain as a profile beside IMNRisk's default, and
the deviation table shared by the report, the README and metrics.json."""

from __future__ import annotations

import html
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from conftest import ROOT, run_cli
from IMNRiskLib.modelling import protocols, selection
from IMNRiskLib.modelling.models import TrainingOptions


def correlated_frame(n: int = 80, seed: int = 0):
    """Features with monotone but non-linear twins (Spearman 1, Pearson < 0.9) and linear twins."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    base = rng.standard_normal((n, 4)) + 0.8 * y[:, None]
    cols = {"a": base[:, 0], "a_exp": np.exp(2.5 * base[:, 0]), "b": base[:, 1],
            "b_lin": 3 * base[:, 1] + 0.05 * rng.standard_normal(n), "c": base[:, 2], "c_cube": base[:, 2] ** 3,
            "d": base[:, 3]}
    return pd.DataFrame(cols), y


def greedy_reference(X: pd.DataFrame, y: np.ndarray, corr: np.ndarray, threshold: float = 0.9):
    """Visit features by |AUC - 0.5| (sklearn), keep one unless |corr| > threshold with a kept one."""
    strength = {c: abs(roc_auc_score(y, X[c]) - 0.5) for c in X.columns}
    order = sorted(X.columns, key=lambda c: -strength[c])   # stable for ties, as the filter
    idx = {c: i for i, c in enumerate(X.columns)}
    kept = []
    for c in order:
        if all(abs(corr[idx[c], idx[k]]) <= threshold for k in kept):
            kept.append(c)
    return kept


def test_spearman_filter_equals_scipy_and_differs_from_pearson():
    X, y = correlated_frame()
    spearman = selection.SpearmanFilter(0.9).fit(X, y).selected_
    assert spearman == greedy_reference(X, y, spearmanr(X.to_numpy()).correlation)
    pearson = selection.CorrelationFilter(0.9).fit(X, y).selected_
    assert pearson == greedy_reference(X, y, np.corrcoef(X.to_numpy(), rowvar=False))
    # a monotone twin is redundant by rank but not linearly: only the paper's filter drops it
    assert len(spearman) < len(pearson) and set(spearman) < set(pearson)


def test_paper_profile_sets_the_papers_choices_and_the_default_is_unchanged():
    paper = protocols.training_options("paper", seed=3).pipeline()
    steps = paper.named_steps
    assert isinstance(steps["corr"], selection.SpearmanFilter)
    assert (steps["lasso"].folds, steps["lasso"].n_lambdas, steps["lasso"].lambda_ratio) == (10, 100, 0.01)
    assert steps["lasso"].seed == 3 and steps["forward"].max_features >= 10 ** 6
    assert [n for n, _ in paper.steps] == [n for n, _ in selection.radiomics_pipeline().steps]
    # the default protocol builds exactly the pipeline it built before protocols existed
    default = protocols.training_options("imnrisk").pipeline()
    assert type(default.named_steps["corr"]) is selection.CorrelationFilter
    def plain(pipeline):
        return {k: v for k, v in pipeline.get_params().items() if k != "steps" and not hasattr(v, "fit")}
    assert plain(default) == plain(selection.radiomics_pipeline())
    assert TrainingOptions() == protocols.training_options("imnrisk")
    with pytest.raises(Exception, match="--protocol"):
        protocols.training_options("nonsense")


def test_deviation_table_is_complete_and_the_readme_holds_it():
    for row in protocols.DEVIATIONS:
        assert all(row[key].strip() for key, _ in protocols.COLUMNS), row
    steps = [r["step"] for r in protocols.DEVIATIONS]
    assert len(set(steps)) == len(steps)
    for needed in ("Correlation filter", "LASSO folds", "Discretisation (extraction)", "Internal validation",
                   "Clinical selection", "LASSO lambda grid and rule"):
        assert needed in steps
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert protocols.deviation_markdown() in readme, "README's deviation table is not protocols.deviation_markdown()"


@pytest.fixture(scope="module")
def paper_run(phantom, tmp_path_factory):
    out = tmp_path_factory.mktemp("paper-protocol")
    result = run_cli("train", phantom / "cohort.csv", "--features", phantom / "features.csv", "--out", out,
                     "--protocol", "paper", "--cv-repeats", "0", "--bootstrap", "0", "--quiet", "--force")
    assert result.returncode == 0, result.stderr
    return out, result.stderr


def test_train_protocol_paper_records_itself_and_selects_differently(paper_run, quick_model):
    out, stderr = paper_run
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    model = json.loads((out / "model.json").read_text(encoding="utf-8"))
    default = json.loads((quick_model.parent / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["protocol"]["name"] == "paper" and default["protocol"]["name"] == "imnrisk"
    assert metrics["protocol"]["choices"]["corr_method"] == "spearman"
    assert model["training"]["protocol"] == metrics["protocol"]
    assert model["training"]["options"]["protocol"] == "paper" and model["training"]["options"]["lasso_folds"] == 10
    assert "paper protocol" in stderr
    # the Spearman filter keeps another number of features than Pearson's on the phantom
    assert metrics["selection"]["funnel"][2]["step"] == default["selection"]["funnel"][2]["step"] == "corr"
    assert metrics["selection"]["funnel"][2]["n"] != default["selection"]["funnel"][2]["n"]
    # the paper's 10-fold LASSO curve is on its 100-lambda grid
    assert len(pd.read_csv(out / "lasso_cv.csv")) == 100


def test_report_shows_the_deviation_table_and_both_protocols_side_by_side(paper_run, tmp_path):
    out, _ = paper_run
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    page = html.unescape((out / "report.html").read_text(encoding="utf-8"))
    assert "12. Protocol: deviations from the paper" in page and "This run: paper protocol" in page.replace("<b>", "").replace("</b>", "")
    for row in protocols.DEVIATIONS:
        assert row["step"] in page and row["why"] in page
    # the demo's protocols.json (here: this run twice, relabelled) gives the side-by-side table
    a, b = protocols.comparison_summary(metrics), protocols.comparison_summary(metrics)
    b["protocol"] = "imnrisk"
    (out / "protocols.json").write_text(json.dumps({"protocols": [b, a]}), encoding="utf-8")
    result = run_cli("report", out, "--force")  # report.html exists: replaced only with --force
    assert result.returncode == 0, result.stderr
    page = html.unescape((out / "report.html").read_text(encoding="utf-8"))
    assert "The two protocols on the same cohort" in page
    # which validation numbers each protocol has (this run: --cv-repeats 0 --bootstrap 0)
    assert a["validation"] == [] and "validation run" in page
    for feature in a["features"]:
        assert feature in page


def test_the_demo_validates_the_papers_protocol_by_cv_only():
    """Issue 13 (a): in the demo the paper's protocol runs its nested and leaky CV, no bootstrap;
    IMNRisk's protocol keeps the bootstrap asked for."""
    from IMNRiskLib.app import demo
    assert demo.demo_bootstrap("paper", 1000) == 0
    assert demo.demo_bootstrap("imnrisk", 1000) == 1000


def test_nested_cv_refits_the_papers_chain_in_every_fold(phantom):
    """The validation runs the protocol it is given: each fold's Rad-Score features under nested CV
    of the paper's profile are those of the paper's pipeline fitted by hand on that training fold
    (a faster validation path must keep honouring the protocol's choices)."""
    from collections import Counter

    from sklearn.model_selection import StratifiedKFold

    from IMNRiskLib.app import recovery
    from IMNRiskLib.resampling import validation
    data, _ = recovery.load_phantom(phantom)
    data = validation.Data(data.features, data.clinical, data.y, data.schema, protocols.training_options("paper"))
    sub = data.take(recovery.draw_training_set(data.y, 124, np.random.default_rng(5)))
    cv = validation.repeated_cv(sub, 3, 1, seed=0, protocol="nested", show_bar=False)
    counts = Counter()
    for train, _ in StratifiedKFold(3, shuffle=True, random_state=0).split(sub.features, sub.y):
        fitted = protocols.training_options("paper").pipeline().fit(sub.features.iloc[train], sub.y[train])
        assert isinstance(fitted.named_steps["corr"], selection.SpearmanFilter)
        counts.update(fitted.named_steps["radscore"].features_)
    assert cv["cv_frequency"] == {f: c / 3 for f, c in counts.items()}
