"""Clinical selection by likelihood ratio (R drop1/step), collinear candidates, the LASSO lambda
grid (glmnet's), and selection fallbacks that are never silent (issue 12, items 2 and 3).

Reference numbers: Testing/R/lrt_reference.R -> Testing/R/lrt_reference.json (committed with its
dataset Testing/R/data/lrt_cohort.csv), compared to 1e-6.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from IMNRiskLib.modelling import clinical, models, selection
from IMNRiskLib.inputs.schema import schema_from_dict

HERE = Path(__file__).resolve().parent / "R"
LRT = json.loads((HERE / "lrt_reference.json").read_text(encoding="utf-8"))
TOL = dict(rel=1e-6, abs=1e-9)
SCHEMA = schema_from_dict({"outcome": {"name": "IMN"}, "variables": [
    {"name": "location", "type": "categorical", "levels": ["lateral", "medial", "central"], "reference": "lateral"},
    {"name": "er", "type": "binary", "levels": ["negative", "positive"]},
    {"name": "pr", "type": "binary", "levels": ["negative", "positive"]},
    {"name": "ki67", "type": "binary", "levels": ["low", "high"]},
    {"name": "grade", "type": "categorical", "levels": ["I", "II", "III", "uncertain"], "reference": "II"},
    {"name": "aln", "type": "ordinal", "levels": ["N0", "N1", "N2", "N3"]},
    {"name": "stage", "type": "ordinal", "levels": ["T1", "T2", "T3", "T4"]},
    {"name": "her2", "type": "binary", "levels": ["negative", "positive"]},
    {"name": "age", "type": "continuous", "unit": "years"}]})


def cohort():
    """The R script's clinical table: (frame of the variables, outcome)."""
    d = pd.read_csv(HERE / "data" / "lrt_cohort.csv")
    return d[SCHEMA.names], d["IMN"]


def assert_tests_equal(ours, ref):
    assert ours["chi2"] == pytest.approx(ref["chi2"], **TOL)
    assert ours["df"] == ref["df"]
    assert ours["p"] == pytest.approx(ref["p"], **TOL)


def test_drop1_lrt_matches_R():
    """Every variable's drop-one likelihood-ratio test (a factor as one term of df levels - 1)."""
    frame, y = cohort()
    known = frame.notna().all(axis=1)
    assert int(known.sum()) == LRT["complete"]
    X = clinical.varying(clinical.design(frame[known], SCHEMA, SCHEMA.names))
    ours = clinical.drop1_lrt(y[known].to_numpy(), X, SCHEMA.names)
    for ref in LRT["drop1_all"]:
        assert_tests_equal(ours[ref["variable"]], ref)


def test_backward_elimination_path_matches_R():
    """One variable at a time, the largest LRT p removed while >= 0.05: same path, same kept tests."""
    frame, y = cohort()
    known = frame.notna().all(axis=1)
    X = clinical.varying(clinical.design(frame[known], SCHEMA, SCHEMA.names))
    kept, path, final = clinical.backward_lrt(y[known].to_numpy(), X, SCHEMA.names, 0.05)
    ref = LRT["backward_all"]
    assert [s["removed"] for s in path] == [s["removed"] for s in ref["path"]]
    assert len(ref["path"]) >= 3 and any(s["df"] > 1 for s in ref["path"])  # a factor leaves as one term
    for ours, r in zip(path, ref["path"]):
        assert ours["step"] == r["step"]
        assert_tests_equal(ours, r)
    assert kept == ref["kept"]
    for ours, r in zip(final, ref["final"]):
        assert ours["term"] == r["variable"]
        assert_tests_equal(ours, r)


def test_table2_procedure_with_collinear_pair_matches_R():
    """Univariate screen, the collinear ER/PR pair resolved by the univariate screen, then
    backward elimination: each choice as R's independent implementation makes it."""
    frame, y = cohort()
    t2 = clinical.table2(frame, y, SCHEMA)
    ref = LRT["procedure"]
    for name, p in ref["univariate_p"].items():
        assert t2.univariate_p[name] == pytest.approx(p, **TOL)
    assert t2.entered == ref["entered"]
    assert [(c["kept"], c["dropped"]) for c in t2.collinear] == [(c["kept"], c["dropped"]) for c in ref["collinear"]]
    assert len(t2.collinear) == 1 and {t2.collinear[0]["kept"], t2.collinear[0]["dropped"]} == {"er", "pr"}
    for ours, r in zip(t2.collinear, ref["collinear"]):
        assert ours["value"] == pytest.approx(r["value"], **TOL)
    assert [s["removed"] for s in t2.path] == [s["removed"] for s in ref["path"]] and t2.path
    for ours, r in zip(t2.path, ref["path"]):
        assert_tests_equal(ours, r)
    assert t2.selected == ref["selected"]
    for ours, r in zip(t2.final, ref["final"]):
        assert_tests_equal(ours, r)
    record = t2.selection_record()
    assert record["test"] == "lrt" and record["path"] == t2.path and record["collinear"] == t2.collinear
    dropped = t2.collinear[0]["dropped"]
    assert t2.table.loc[t2.table["variable"] == dropped, "removed"].str.startswith("collinear with").all()
    assert any(dropped in n and "left out" in n for n in t2.notes)


def test_wald_option_is_the_papers_procedure():
    """test="wald", no collinearity screen: every entered variable in one model, kept at Wald p < 0.05."""
    frame, y = cohort()
    t2 = clinical.table2(frame, y, SCHEMA, test="wald", collinear=None)
    assert t2.collinear == [] and t2.path == []
    multi = t2.table.groupby("variable")["multi_variable_p"].first()
    assert t2.selected == [n for n in t2.entered if multi[n] < 0.05]
    with pytest.raises(ValueError):
        clinical.table2(frame, y, SCHEMA, test="score")


def test_rank_deficient_candidates_are_left_out_and_reported():
    """A variable that copies another (here PR = ER) cannot be estimated beside it: it is left out
    before the multivariable step, even with the association screen switched off."""
    frame, y = cohort()
    frame = frame.assign(pr=frame["er"])
    t2 = clinical.table2(frame, y, SCHEMA, entry_p=0.5, collinear=None)
    assert [c["measure"] for c in t2.collinear] == ["rank-deficient design"]
    assert {"er", "pr"} - set(t2.entered) == set() and not ({"er", "pr"} <= set(t2.selected))


def test_lambda_grid_is_glmnets():
    """100 lambdas over 3 decades from lambda_max, as glmnet(nlambda = 100, lambda.min.ratio = 1e-3)."""
    d = pd.read_csv(HERE / "data" / "lasso.csv")
    X, y = d.drop(columns="y"), d["y"].to_numpy()
    opts = models.TrainingOptions()
    lasso = opts.pipeline().named_steps["lasso"]
    assert (lasso.n_lambdas, lasso.lambda_ratio) == (opts.n_lambdas, opts.lambda_ratio)
    lasso.fit(X, y)
    ref = np.array(LRT["glmnet_lambda"])
    assert len(lasso.lambdas_) >= 100 and lasso.lambdas_[0] / lasso.lambdas_[-1] >= 1e3 * (1 - 1e-9)
    np.testing.assert_allclose(lasso.lambdas_[:len(ref)], ref, rtol=1e-6)


def test_lasso_that_keeps_nothing_says_so():
    """Pure noise: the 1-SE lambda zeroes every coefficient; the fallback feature is used and
    recorded on the step, and fit_models carries it into its notes and fallbacks."""
    rng = np.random.default_rng(1)  # a noise draw where lambda.1se is lambda_max (checked below)
    n = 80
    X = pd.DataFrame(rng.standard_normal((n, 6)), columns=[f"f{i}" for i in range(6)])
    y = np.r_[np.ones(20, int), np.zeros(n - 20, int)]
    step = selection.LassoSelector(rule="1se").fit(X, y)
    assert (step.coef_.abs() <= 1e-10).all()
    assert step.fallback_ and step.selected_[0] in step.fallback_
    clin = pd.DataFrame({"er": rng.choice(["negative", "positive"], n)}, index=X.index)
    schema = schema_from_dict({"outcome": {"name": "IMN"}, "variables": [
        {"name": "er", "type": "binary", "levels": ["negative", "positive"]}]})
    fitted = models.fit_models(X, clin, y, schema, models.TrainingOptions(lasso_rule="1se", mwu_p=1.0))
    assert any("LASSO kept no feature" in f for f in fitted.fallbacks)
    assert set(fitted.fallbacks) <= set(fitted.notes)
    assert any("no factor had multivariable p" in f for f in fitted.fallbacks)  # the clinical fallback too


def test_forward_selection_that_adds_nothing_says_so():
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.standard_normal((60, 3)), columns=["a", "b", "c"])
    y = np.r_[np.ones(15, int), np.zeros(45, int)]
    step = selection.ForwardSelector(p_enter=1e-12).fit(X, y)
    assert step.selected_ == ["a"] and "forward selection added no feature" in step.fallback_
    assert selection.ForwardSelector().fit(X.assign(a=y + X["a"]), y).fallback_ is None


# --------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def fallback_run(phantom, tmp_path_factory):
    """`imnrisk train --lasso-rule 1se` on the shared phantom's first 124 patients (the paper's
    size), where lambda.1se keeps no feature: (output folder, metrics.json, what was printed)."""
    folder = tmp_path_factory.mktemp("fallback")
    cohort = pd.read_csv(phantom / "cohort.csv", dtype=str, keep_default_na=False).iloc[:124]
    for col in ("Image", "Mask"):
        cohort[col] = [str(phantom / v) for v in cohort[col]]
    cohort.to_csv(folder / "cohort.csv", index=False)
    feats = pd.read_csv(phantom / "features.csv", dtype={"ID": str})
    feats[feats["ID"].isin(cohort["ID"])].to_csv(folder / "features.csv", index=False)
    out = folder / "model"
    result = run_cli("train", folder / "cohort.csv", "--features", folder / "features.csv", "--out", out,
                     "--lasso-rule", "1se", "--cv-repeats", "0", "--bootstrap", "0", "--quiet")
    assert result.returncode == 0, result.stderr
    return out, json.loads((out / "metrics.json").read_text(encoding="utf-8")), result.stderr


def test_lasso_fallback_is_in_metrics_cli_and_report(fallback_run):
    """The fallback that used to pass unseen: a note in metrics.json, a WARNING line in the CLI
    summary and a warning box at the top of the report."""
    out, metrics, printed = fallback_run
    fallbacks = metrics["selection"]["fallbacks"]
    assert any(f.startswith("fallback: lasso: LASSO kept no feature at lambda.1se") for f in fallbacks), fallbacks
    assert set(fallbacks) <= set(metrics["notes"])
    assert any(line.startswith("  WARNING fallback: lasso") for line in printed.splitlines()), printed
    page = (out / "report.html").read_text(encoding="utf-8")
    box = page.split('<div class="warn fallback">', 1)[1].split("</div>", 1)[0]
    assert "LASSO kept no feature" in box
    assert page.index('class="warn fallback"') < page.index("<h2>1. Cohort</h2>")


def test_clinical_selection_path_in_metrics_model_and_report(fallback_run):
    """The LRT path and the kept factors' tests go into metrics.json and the report; the test and
    the lambda grid used are in model.json's settings."""
    out, metrics, _ = fallback_run
    rec = metrics["selection"]["clinical_selection"]
    assert rec["test"] == "lrt" and rec["selected"] == metrics["selection"]["clinical_factors"]
    assert [f["term"] for f in rec["final"]] == rec["selected"]
    assert all(f["p"] < 0.05 for f in rec["final"]) and all(s["p"] >= 0.05 for s in rec["path"])
    model = json.loads((out / "model.json").read_text(encoding="utf-8"))
    options = model["training"]["options"]
    assert (options["clinical_test"], options["n_lambdas"], options["lambda_ratio"]) == ("lrt", 100, 1e-3)
    assert len(pd.read_csv(out / "lasso_cv.csv")) == 100
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<h3>Clinical selection</h3>" in page and "drop-one likelihood-ratio test" in page
    for step in rec["path"]:
        assert f"<td>{step['removed']}</td>" in page
    table2 = pd.read_csv(out / "table2.csv")
    assert set(table2.loc[table2["selected"], "variable"]) == set(rec["selected"])
