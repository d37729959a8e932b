"""Issue 12 items 4, 5, 6, 8: events per variable and Riley's sample size, uniform shrinkage,
accuracy against the no-information rate, Hosmer-Lemeshow degrees of freedom; and a report that
leads with validated numbers, its figures at one size.

References: Testing/R/evaluation_reference.json, written by Testing/R/evaluation_reference.R
(caret::confusionMatrix, binom.test, glm with an offset, the HL statistic by hand, pmsampsize's
cstat2rsq); the sample sizes of R's pmsampsize 1.1.3 from that package's own tests.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, run_cli
from IMNRiskLib.stats import evaluation
from IMNRiskLib.outputs import figures
from IMNRiskLib.stats.logistic import LogisticFit
from IMNRiskLib.modelling.models import shrink_uniformly
from IMNRiskLib.outputs.report import FIGURES

REF = json.loads((ROOT / "Testing" / "R" / "evaluation_reference.json").read_text(encoding="utf-8"))


def eval_data(name: str) -> pd.DataFrame:
    return pd.read_csv(ROOT / "Testing" / "R" / "data" / f"eval_{name}.csv")


# --------------------------------------------------------------------------- 6. accuracy vs NIR

@pytest.mark.parametrize("case", REF["nir"]["confusion_matrix"], ids=lambda c: f"{c['dataset']}-{c['threshold']}")
def test_accuracy_against_the_no_information_rate_matches_caret(case):
    d = eval_data(case["dataset"])
    got = evaluation.accuracy_vs_nir(d["y"], d["p"], case["threshold"])
    assert got["correct"] == case["correct"] and got["n"] == case["n"]
    assert got["accuracy"] == pytest.approx(case["accuracy"], abs=1e-12)
    assert got["nir"] == pytest.approx(case["nir"], abs=1e-12)
    assert got["p_accuracy_gt_nir"] == pytest.approx(case["p"], rel=1e-9, abs=1e-15)


def test_binomial_test_against_the_demo_nir_matches_r():
    """124 patients, 19 events: NIR 84.7%; R binom.test(k, 124, p = 105/124, alternative = "greater")."""
    for case in REF["nir"]["binom_test"]:
        got = evaluation.accuracy_test(case["correct"], case["n"], case["nir"])
        assert got["p_accuracy_gt_nir"] == pytest.approx(case["p"], rel=1e-9)
    assert evaluation.no_information_rate([1] * 19 + [0] * 105) == pytest.approx(105 / 124)
    assert round(100 * 105 / 124, 1) == 84.7


# --------------------------------------------------------------------------- 8. Hosmer-Lemeshow df

@pytest.mark.parametrize("case", REF["hosmer_lemeshow"],
                         ids=lambda c: f"{c['dataset']}-{'ext' if c['external'] else 'dev'}-{'tied' if c['rounded'] else 'raw'}")
def test_hosmer_lemeshow_df_development_and_external_match_r(case):
    d = eval_data(case["dataset"])
    p = d["p"].to_numpy()
    if case["rounded"]:
        p = np.asarray(case["p_used"], float)   # R's round(p, 1), clipped to [0.01, 0.99]
    got = evaluation.hosmer_lemeshow(d["y"], p, external=case["external"])
    assert got["n_groups"] == case["groups"] and got["df"] == case["df"]
    assert got["chi2"] == pytest.approx(case["chi2"], rel=1e-9)
    assert got["p"] == pytest.approx(case["p"], rel=1e-7, abs=1e-15)
    assert got["external"] is case["external"] and got["fewer_groups"] is (case["groups"] < 10)
    rule, note = evaluation.hl_df_statement(got)
    assert rule.startswith("g (external" if case["external"] else "g - 2 (development")
    if case["groups"] < 10:
        assert note and f"only {case['groups']} groups" in note and f"df = {case['df']}" in note
    else:
        assert note is None


# --------------------------------------------------------------------------- 5. shrinkage

@pytest.mark.parametrize("case", REF["shrinkage"], ids=lambda c: f"{c['dataset']}-{c['factor']}")
def test_uniform_shrinkage_intercept_solves_the_score_equation_as_glm_with_offset(case):
    d = eval_data(case["dataset"])
    coef = np.array(case["coefficients"])
    fit = LogisticFit(["(Intercept)", "a", "b"], coef, np.ones(3), np.eye(3), len(d), int(d["y"].sum()))
    shrunk, record = shrink_uniformly(fit, d[["a", "b"]], d["y"].to_numpy(), case["factor"])
    assert shrunk.coef[0] == pytest.approx(case["intercept"], abs=1e-8)          # R glm(y ~ 1, offset = s * lp)
    assert np.allclose(shrunk.coef[1:], case["factor"] * coef[1:], rtol=1e-15)
    p = 1 / (1 + np.exp(-shrunk.predict_lp(d[["a", "b"]])))
    assert abs(np.sum(d["y"] - p)) < 1e-8 and abs(record["score_equation"]) < 1e-8  # sum(y - p) = 0
    assert record["factor"] == case["factor"] and record["intercept_before"] == coef[0]
    assert np.allclose(np.diag(shrunk.cov)[1:], case["factor"] ** 2)


# --------------------------------------------------------------------------- 4. Riley sample size

# R pmsampsize 1.1.3, tests/testthat/test_bin.R (CRAN; https://github.com/cran/pmsampsize):
# sample sizes of criteria 1, 2, 3 and the final one, and their EPP, as that package prints them.
# The first row is the package's documented example: pmsampsize(type = "b", csrsquared = 0.288,
# parameters = 24, prevalence = 0.174) -> n = 662, EPP 4.8 (Riley et al. 2018, Stat Med, part II).
PMSAMPSIZE_TESTS = [
    (0.174, 24, 0.288, [623, 662, 221, 662], [4.52, 4.8, 1.6, 4.8]),
    (0.174, 24, 0.55, [255, 532, 221, 532], [1.85, 3.86, 1.6, 3.86]),
    (0.174, 36, 0.288, [934, 992, 221, 992], [4.51, 4.79, 1.07, 4.79]),
    (0.25, 24, 0.288, [623, 590, 289, 623], [6.49, 6.15, 3.01, 6.49]),
]


@pytest.mark.parametrize("prevalence, parameters, r2, sizes, epp", PMSAMPSIZE_TESTS)
def test_riley_sample_size_reproduces_pmsampsize(prevalence, parameters, r2, sizes, epp):
    got = evaluation.riley_sample_size(prevalence, parameters, r2)
    assert [c["n"] for c in got["criteria"]] + [got["n"]] == sizes
    assert [round(c["epp"], 2) for c in got["criteria"]] + [round(got["epp"], 2)] == epp


@pytest.mark.parametrize("case", REF["cstat2rsq"], ids=lambda c: f"C{c['cstatistic']}-prev{c['prevalence']}")
def test_cox_snell_r2_from_c_matches_pmsampsize_simulation(case):
    """pmsampsize simulates 1e6 patients (Monte Carlo error ~5e-4); the exact population value is close."""
    got = evaluation.cox_snell_r2_from_c(case["cstatistic"], case["prevalence"])
    assert got == pytest.approx(case["r2_cs"], abs=1.5e-3)
    # and the documented C-statistic example gives the same minimum n within 1%
    ours = evaluation.riley_sample_size(case["prevalence"], 24, got)["n"]
    theirs = evaluation.riley_sample_size(case["prevalence"], 24, round(case["r2_cs"], 4))["n"]
    assert abs(ours - theirs) <= 0.01 * theirs


def test_riley_refuses_an_impossible_r2():
    with pytest.raises(evaluation.InputError):
        evaluation.riley_sample_size(0.1, 10, 0.9)


# --------------------------------------------------------------------------- training outputs

@pytest.fixture(scope="module")
def trained(trained_phantom):
    return trained_phantom


def test_metrics_count_events_per_variable_honestly(trained):
    out, metrics, stderr = trained
    ss = metrics["sample_size"]
    pred = pd.read_csv(out / "predictions.csv", index_col=0)
    y = pred["IMN"].to_numpy()
    limiting = int(min(y.sum(), len(y) - y.sum()))
    model = json.loads((out / "model.json").read_text(encoding="utf-8"))
    assert ss["limiting_events"] == limiting and ss["events"] == int(y.sum())
    assert ss["final_df"] == len(model["combined"]["terms"]) - 1
    assert ss["radscore_coefficients"] == len(metrics["selection"]["radscore"]["coefficients"]) > 0
    assert ss["fitted_parameters"] == ss["final_df"] - 1 + ss["radscore_coefficients"]
    assert ss["candidate_features"] == metrics["selection"]["funnel"][0]["n"] == 107
    assert ss["candidate_clinical_df"] > len(metrics["selection"]["clinical_factors"])
    assert ss["epv_candidates"] == pytest.approx(limiting / (107 + ss["candidate_clinical_df"]))
    assert metrics["cohort"]["epv"] == pytest.approx(ss["epv_final"])
    assert ss["epv_candidates"] < ss["epv_fitted"] <= ss["epv_final"]
    assert [s["features"] for s in ss["per_step"]] == [s["n"] for s in metrics["selection"]["funnel"]]
    riley = [r for r in ss["riley"] if r["basis"] == "candidate parameters"]
    assert riley and all(r["parameters"] == ss["candidate_parameters"] for r in riley)
    assert riley[0]["r2_source"].startswith("nested-CV C statistic")
    assert riley[0]["n"] == evaluation.riley_sample_size(y.mean(), ss["candidate_parameters"], riley[0]["r2_cs"])["n"]
    assert "events per variable" in stderr and "Riley minimum n" in stderr


def test_every_accuracy_beside_the_no_information_rate(trained):
    out, metrics, stderr = trained
    pred = pd.read_csv(out / "predictions.csv", index_col=0)
    y = pred["IMN"].to_numpy()
    nir = max(y.mean(), 1 - y.mean())
    assert metrics["cohort"]["nir"] == pytest.approx(nir)
    for m in ("clinical", "radiomics", "combined"):
        app = metrics["models"][m]["apparent"]["accuracy_vs_nir"]
        assert app["correct"] == int(((pred[m] >= 0.5).astype(int) == y).sum()) and app["nir"] == pytest.approx(nir)
        for key in ("cv", "cv_leaky"):
            cv = metrics["models"][m][key]
            assert cv["accuracy_vs_nir"]["accuracy"] == cv["accuracy_mean"]
            assert cv["accuracy_vs_nir"]["correct"] == round(cv["accuracy_mean"] * len(y))
            assert 0 <= cv["accuracy_vs_nir"]["p_accuracy_gt_nir"] <= 1
    assert "no-information rate" in stderr


def test_development_hl_uses_g_minus_2(trained):
    _, metrics, _ = trained
    for m in ("clinical", "radiomics", "combined"):
        hl = metrics["models"][m]["apparent"]["hosmer_lemeshow"]
        assert hl["df"] == hl["n_groups"] - 2 and hl["external"] is False


def test_external_validation_uses_g_degrees_of_freedom(phantom, trained, tmp_path):
    out, _, _ = trained
    result = run_cli("validate", out / "model.json", phantom / "cohort.csv", "--features", phantom / "features.csv",
                     "--out", tmp_path / "v", "--quiet")
    assert result.returncode == 0, result.stderr
    val = json.loads((tmp_path / "v" / "validation.json").read_text(encoding="utf-8"))
    pred = pd.read_csv(tmp_path / "v" / "predictions.csv", index_col=0)
    for m in ("clinical", "radiomics", "combined"):
        hl = val["models"][m]["hosmer_lemeshow"]
        ref = evaluation.hosmer_lemeshow(pred["IMN"], pred[m], external=True)
        assert hl["df"] == hl["n_groups"] == ref["n_groups"] and hl["external"] is True
        assert hl["p"] == pytest.approx(ref["p"])
        assert val["models"][m]["accuracy"]["nir"] == pytest.approx(max(pred["IMN"].mean(), 1 - pred["IMN"].mean()))
    assert "df " in result.stderr and "g (external cohort" in result.stderr and "no-information rate" in result.stderr


def test_train_shrink_bootstrap_saves_the_shrunk_model(phantom, tmp_path):
    out = tmp_path / "shrunk"
    result = run_cli("train", phantom / "cohort.csv", "--features", phantom / "features.csv", "--out", out,
                     "--cv-repeats", "0", "--bootstrap", "8", "--shrink", "bootstrap", "--jobs", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    model = json.loads((out / "model.json").read_text(encoding="utf-8"))
    shr = metrics["shrinkage"]
    assert shr["factor"] == metrics["models"]["combined"]["bootstrap"]["slope_corrected"]
    assert model["combined"]["shrinkage"]["factor"] == shr["factor"]
    before = model["combined"]["shrinkage"]["coefficients_before"]
    terms, coef = model["combined"]["terms"], model["combined"]["coefficients"]
    assert coef[1:] == pytest.approx([shr["factor"] * before[t] for t in terms[1:]], rel=1e-12)
    assert coef[0] == pytest.approx(shr["intercept_after"]) and coef[0] != pytest.approx(before["(Intercept)"])
    pred = pd.read_csv(out / "predictions.csv", index_col=0)
    assert pred["combined"].sum() == pytest.approx(pred["IMN"].sum(), abs=1e-6)   # sum(y - p) = 0
    assert not np.allclose(pred["combined"], pred["combined_unshrunk"])
    # the apparent slope of the shrunk model on its own training data is 1 / factor
    assert shr["apparent_shrunk"]["slope"] == pytest.approx(1 / shr["factor"], rel=1e-6)
    # predict uses the shrunk model: the frozen model scores the cohort as predictions.csv says
    val = run_cli("validate", out / "model.json", phantom / "cohort.csv", "--features", phantom / "features.csv",
                  "--out", tmp_path / "v", "--quiet")
    assert val.returncode == 0, val.stderr
    scored = pd.read_csv(tmp_path / "v" / "predictions.csv", index_col=0)
    assert np.allclose(scored.loc[pred.index, "combined"], pred["combined"], rtol=1e-7)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "as fitted and shrunk" in page and f"{shr['factor']:.3f}" in page
    assert "shrinkage: factor" in result.stderr


def test_shrink_without_bootstrap_is_refused(phantom, tmp_path):
    result = run_cli("train", phantom / "cohort.csv", "--features", phantom / "features.csv", "--out",
                     tmp_path / "x", "--cv-repeats", "0", "--bootstrap", "0", "--shrink", "bootstrap", "--quiet")
    assert result.returncode == 2 and "--shrink" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "x" / "model.json").exists()


# --------------------------------------------------------------------------- report

def test_report_leads_with_validated_numbers(trained):
    out, metrics, _ = trained
    page = (out / "report.html").read_text(encoding="utf-8")
    top = page.index("Validated performance")
    assert top < page.index("1. Cohort")
    c = metrics["models"]["combined"]
    lead = page[top:page.index("1. Cohort")]
    assert f"{c['cv']['slope_mean']:.3f}" in lead and f"{c['bootstrap']['slope_corrected']:.3f}" in lead
    assert f"{c['cv']['auc_mean']:.3f}" in lead and f"{c['bootstrap']['auc_corrected']:.3f}" in lead
    assert lead.index("nested-CV AUC") < lead.index("apparent AUC")       # validated first, apparent beside
    assert f"{100 * metrics['cohort']['nir']:.1f}%" in lead and "no-information rate" in lead
    ss = metrics["sample_size"]
    assert f"{ss['epv_candidates']:.3f}" in page and f"{ss['candidate_parameters']} candidate parameters" in page
    assert "Riley" in page and "HL df rule" in page


def test_report_figures_share_one_size(trained):
    from PIL import Image
    out, _, _ = trained
    sizes = {name: Image.open(out / "figures" / f"{name}.png").size for name in FIGURES}
    expected = (round(figures.FIGSIZE[0] * figures.DPI), round(figures.FIGSIZE[1] * figures.DPI))
    assert set(sizes.values()) == {expected}, sizes


def test_model_file_keeps_no_out_of_fold_risk(trained):
    """The validated calibration curve lists each patient's out-of-fold risk: metrics.json only."""
    out, metrics, _ = trained
    assert metrics["models"]["combined"]["cv"]["calibration_curves"]["lowess"]["predicted"]
    model = json.loads((out / "model.json").read_text(encoding="utf-8"))
    assert "calibration_curves" not in json.dumps(model)
