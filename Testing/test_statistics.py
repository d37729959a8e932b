"""Statistics against R: pROC (AUC, DeLong), rms (val.prob), Hosmer-Lemeshow, DCA, glm, brglm2.

The reference numbers were made by Testing/R/reference.R (committed with its datasets), so this
test needs no R. Everything is compared to 1e-6.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from IMNRiskLib.modelling import clinical
from IMNRiskLib.stats import evaluation, logistic
from IMNRiskLib.core.errors import InputError

HERE = Path(__file__).resolve().parent / "R"
REF = json.loads((HERE / "reference.json").read_text(encoding="utf-8"))
TOL = dict(rel=1e-6, abs=1e-9)


def data(name: str) -> pd.DataFrame:
    return pd.read_csv(HERE / "data" / f"{name}.csv")


@pytest.mark.parametrize("dataset", ["small", "ties", "large", "separated"])
def test_discrimination_matches_pROC(dataset):
    d = data(f"eval_{dataset}")
    for col, ref in REF["evaluation"][dataset]["scores"].items():
        res = evaluation.auc_delong(d["y"], d[col])
        assert res.auc == pytest.approx(ref["auc"], **TOL), (dataset, col)
        assert res.variance == pytest.approx(ref["variance"], **TOL), (dataset, col)
        assert list(res.ci95) == pytest.approx(ref["ci95"], **TOL), (dataset, col)
        best = evaluation.youden(d["y"], d[col])
        assert best["threshold"] == pytest.approx(ref["youden"]["threshold"], **TOL), (dataset, col)
        assert best["sensitivity"] == pytest.approx(ref["youden"]["sensitivity"], **TOL)
        assert best["specificity"] == pytest.approx(ref["youden"]["specificity"], **TOL)


@pytest.mark.parametrize("dataset", ["small", "ties", "large", "separated"])
def test_paired_delong_matches_roc_test(dataset):
    d = data(f"eval_{dataset}")
    for ref in REF["evaluation"][dataset]["pairs"]:
        res = evaluation.delong_test(d["y"], d[ref["a"]], d[ref["b"]])
        if ref["z"] is None:
            continue
        assert res["z"] == pytest.approx(ref["z"], **TOL), (dataset, ref)
        assert res["p"] == pytest.approx(ref["p"], **TOL), (dataset, ref)


@pytest.mark.parametrize("dataset", ["small", "ties", "large", "separated"])
def test_calibration_hl_brier_dca_match_R(dataset):
    d = data(f"eval_{dataset}")
    ref = REF["evaluation"][dataset]["scores"]["p"]
    y, p = d["y"].to_numpy(), d["p"].to_numpy()
    cal = evaluation.calibration(y, p)
    assert cal["brier"] == pytest.approx(ref["brier"], **TOL)
    if ref["calibration"]["separation"]:
        assert cal["separation"] and cal["slope"] is None
    else:
        for key in ("intercept", "slope", "slope_se", "slope_p_vs_1", "citl"):
            assert cal[key] == pytest.approx(ref["calibration"][key], **TOL), key
        # rms val.prob (lrm, its own convergence tolerance) agrees to its precision
        assert cal["slope"] == pytest.approx(ref["calibration"]["valprob_slope"], rel=1e-5, abs=1e-6)
        assert cal["intercept"] == pytest.approx(ref["calibration"]["valprob_intercept"], rel=1e-5, abs=1e-6)
    hl = evaluation.hosmer_lemeshow(y, p)
    assert hl["chi2"] == pytest.approx(ref["hosmer_lemeshow"]["chi2"], **TOL)
    assert hl["df"] == ref["hosmer_lemeshow"]["df"]
    assert hl["p"] == pytest.approx(ref["hosmer_lemeshow"]["p"], **TOL)
    assert [g["n"] for g in hl["groups"]] == ref["hosmer_lemeshow"]["n"]
    assert [g["expected"] for g in hl["groups"]] == pytest.approx(ref["hosmer_lemeshow"]["expected"], **TOL)
    nb = evaluation.net_benefit(y, p)
    assert nb["thresholds"][0] == 0.01 and nb["thresholds"][-1] == 0.99 and len(nb["thresholds"]) == 99
    assert nb["model"] == pytest.approx(ref["net_benefit"], **TOL)
    curves = evaluation.calibration_curves(y, p)
    assert curves["lowess"]["predicted"] == pytest.approx(ref["lowess"]["x"], **TOL)
    assert curves["lowess"]["observed"] == pytest.approx(ref["lowess"]["y"], rel=1e-6, abs=1e-6)


def test_wilson_matches_prop_test():
    for ref in REF["wilson"]:
        assert list(evaluation.wilson_ci(ref["k"], ref["n"])) == pytest.approx(ref["ci"], **TOL)


def test_logistic_wald_matches_glm():
    d = data("logistic")
    X = pd.get_dummies(d[["x1", "x2", "x3"]], columns=["x3"], drop_first=True).astype(float)
    fit = logistic.fit_ml(d["y"].to_numpy(), X)
    ref = REF["logistic"]
    table = fit.table()
    assert fit.coef == pytest.approx(ref["coef"], **TOL)
    assert fit.se == pytest.approx(ref["se"], **TOL)
    assert fit.p == pytest.approx(ref["p"], **TOL)
    assert np.log(table["or_ci_low"]).to_numpy() == pytest.approx(ref["ci_low"], **TOL)
    assert np.log(table["or_ci_high"]).to_numpy() == pytest.approx(ref["ci_high"], **TOL)


def test_firth_matches_brglm2_on_a_separated_fit():
    d = data("firth")
    X = d[["x", "z"]].astype(float)
    ml = logistic.fit_ml(d["y"].to_numpy(), X)
    assert ml.separation
    firth = logistic.fit_firth(d["y"].to_numpy(), X)
    assert firth.coef == pytest.approx(REF["firth"]["coef"], rel=1e-6, abs=1e-7)
    assert firth.se == pytest.approx(REF["firth"]["se"], rel=1e-6, abs=1e-7)


def test_table1_tests_match_fisher_and_chisq():
    d = data("table1_cohort")
    for ref in REF["table1_tests"]:
        counts = pd.crosstab(d["IMN"], d[ref["variable"]]).to_numpy()
        assert clinical.fisher_exact_2xk(counts) == pytest.approx(ref["fisher"], **TOL), ref["variable"]
        test, p = clinical.categorical_test(counts)
        assert p == pytest.approx(ref["fisher"] if test == "Fisher" else ref["chisq"], **TOL), ref["variable"]


def test_delong_is_fast_and_exact_on_large_n():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200_000)
    s = y + rng.standard_normal(len(y))
    res = evaluation.auc_delong(y, s)
    from sklearn.metrics import roc_auc_score
    assert res.auc == pytest.approx(roc_auc_score(y, s), rel=1e-12)


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate():
    d = data("eval_large")
    auc = lambda y, s: evaluation.auc_delong(y, s).auc  # noqa: E731
    a = evaluation.bootstrap_ci(auc, d["y"], d["a"], b=200, seed=3)
    b = evaluation.bootstrap_ci(auc, d["y"], d["a"], b=200, seed=3)
    assert a == b and a["ci"][0] < a["estimate"] < a["ci"][1]
    delong = evaluation.auc_delong(d["y"], d["a"]).ci95
    assert a["ci"] == pytest.approx(list(delong), abs=0.02)


def test_predictions_of_zero_and_one_are_reported_not_crashed_on():
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1, 1, 0])
    p = np.array([0.0, 0.1, 0.8, 1.0, 0.3, 0.6, 0.2, 0.7, 0.9, 0.4])
    cal = evaluation.calibration(y, p)
    assert cal["excluded"] == 2
    assert cal["separation"] or cal["slope"] is not None


@pytest.mark.parametrize("y, message", [([0, 1, 2], "must be 0 or 1"), ([1, 1, 1], "one class only"),
                                        ([0, np.nan, 1], "missing")])
def test_bad_outcomes(y, message):
    with pytest.raises(InputError, match=message):
        evaluation.check_outcome(y)


def test_auc_alone_is_the_delong_auc():
    """evaluation.auc (what the validation computes ~10^4 times) gives auc_delong's AUC exactly,
    ties included."""
    rng = np.random.default_rng(5)
    for _ in range(50):
        y = (rng.random(80) < 0.25).astype(int)
        y[:2] = (1, 0)
        score = np.round(rng.random(80), 1)  # many ties
        assert evaluation.auc(y, score) == evaluation.auc_delong(y, score).auc
