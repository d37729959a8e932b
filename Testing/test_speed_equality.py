"""The fast selection chain and validation loop give the results of the frozen reference copy
(`Testing/reference_chain`, the code before the speed work): same selected features at every step,
same coefficients and the same validation numbers (1e-8).

The reference knows only the method of its day (Wald clinical elimination, no collinear screen, a
30-lambda grid over 1.7 decades); the methods added since (issue #12: likelihood-ratio
elimination, 100 lambdas over 3 decades) are checked against R on their own (test_clinical_selection).
So the fast code runs here with the reference's method, `REFERENCE_METHOD`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dataclasses import replace

from IMNRiskLib.stats import kernels
from IMNRiskLib.modelling import models
from IMNRiskLib.app import training
from IMNRiskLib.resampling import validation
from equality import assert_same
from reference_chain import models as ref_models
from reference_chain import validation as ref_validation

TOL = 1e-8
# the compiled kernels' own tests: without numba their Python bodies would run, far too slowly to test
needs_numba = pytest.mark.skipif(not kernels.IMPORTED,
                                 reason="numba is not installed (make install adds it where it fits the installed numpy)")
REFERENCE_METHOD = dict(clinical_test="wald", clinical_collinear=None, n_lambdas=30, lambda_ratio=0.02)


def cohort_folder(phantom: Path) -> Path:
    """The shared 300-patient phantom, or the demo cohort (124 x 851) when IMNRISK_EQUALITY_COHORT
    names a folder with cohort.csv and features.csv (slower; what bench/bench_train.py builds)."""
    return Path(os.environ.get("IMNRISK_EQUALITY_COHORT") or phantom)


@pytest.fixture(scope="module")
def data(phantom):
    folder = cohort_folder(phantom)
    loaded = training.load_training_data(folder / "cohort.csv", folder / "features.csv")
    loaded.options = replace(models.TrainingOptions(), **REFERENCE_METHOD)
    return loaded


def chain_summary(fitted) -> dict:
    """What one fit of the whole chain decides: every step's survivors, lambdas, coefficients."""
    pipe = fitted.radiomics
    lasso = pipe.named_steps["lasso"]
    out = {"factors": list(fitted.factors),
           "steps": {name: list(step.selected_) for name, step in pipe.steps[:-1]},
           "lambda_min": lasso.lambda_min_, "lambda_1se": lasso.lambda_1se_,
           "lasso_nonzero": [c for c, b in lasso.coef_.items() if abs(b) > 1e-10],
           "radscore": pipe.named_steps["radscore"].coefficients,
           "radscore_intercept": pipe.named_steps["radscore"].intercept,
           "clinical": dict(zip(fitted.clinical.terms, fitted.clinical.coef.tolist())),
           "combined": dict(zip(fitted.combined.terms, fitted.combined.coef.tolist()))}
    return out


def test_one_fit_of_the_chain_equals_the_reference_on_resamples(data):
    """The whole cohort and a few bootstrap resamples (selection differs on each)."""
    rng = np.random.default_rng(7)
    samples = [np.arange(len(data.y))] + [rng.integers(0, len(data.y), len(data.y)) for _ in range(4)]
    for idx in samples:
        d = data.take(idx)
        fast = models.fit_models(d.features, d.clinical, d.y, d.schema, d.options)
        ref = ref_models.fit_models(d.features, d.clinical, d.y, d.schema, d.options)
        assert_same(chain_summary(fast), chain_summary(ref))
        assert np.allclose(fast.predict(d.features, d.clinical).to_numpy(),
                           ref.predict(d.features, d.clinical).to_numpy(), rtol=TOL, atol=TOL)


def test_the_chain_without_numba_equals_the_chain_with_it(data, monkeypatch):
    """IMNRISK_COMPILED=0 (numpy's LASSO, logistic fits and scipy's ranks, what a Python without
    numba runs, e.g. Slicer's) gives the same fit of the whole chain as the compiled kernels."""
    if not kernels.IMPORTED:
        pytest.skip("numba is not installed: only the numpy solvers are here")
    idx = np.random.default_rng(8).integers(0, len(data.y), len(data.y))
    d = data.take(idx)
    compiled = models.fit_models(d.features, d.clinical, d.y, d.schema, d.options)
    monkeypatch.setenv("IMNRISK_COMPILED", "0")
    plain = models.fit_models(d.features, d.clinical, d.y, d.schema, d.options)
    assert_same(chain_summary(compiled), chain_summary(plain))


def assert_same_common(fast: dict, ref: dict, path: str = "") -> None:
    """assert_same on the keys the reference has (the fast code may report more, e.g. the
    calibration curves and the bootstrap replicates added since)."""
    for key in ref:
        assert key in fast, f"{path}.{key} missing"
        if isinstance(ref[key], dict) and isinstance(fast[key], dict):
            assert_same_common(fast[key], ref[key], f"{path}.{key}")
        else:
            assert_same(fast[key], ref[key], f"{path}.{key}")


def test_validation_numbers_equal_the_reference(data):
    """Nested and leaky 5-fold CV (2 repeats) and 6 bootstraps, fast code on 2 processes against
    the reference's loop on one: the same numbers metrics.json is made of."""
    for protocol in ("nested", "leaky"):
        fast = validation.repeated_cv(data, 5, 2, 0, protocol, jobs=2, show_bar=False)
        ref = ref_validation.repeated_cv(data, 5, 2, 0, protocol, 1, False)
        assert_same_common(fast, ref, protocol)
    whole = models.fit_models(data.features, data.clinical, data.y, data.schema, data.options)
    pred = whole.predict(data.features, data.clinical)
    apparent = {m: validation.performance(data.y, pred[m].to_numpy()) for m in models.MODELS}
    fast = validation.bootstrap_validation(data, apparent, 6, 0, jobs=2, show_bar=False)
    ref = ref_validation.bootstrap_validation(data, apparent, 6, 0, 1, False)
    assert_same_common(fast, ref, "bootstrap")


def test_the_comparison_can_fail(data):
    """assert_same notices a drift of 1e-6 in a coefficient (the test above is not vacuous)."""
    fitted = models.fit_models(data.features, data.clinical, data.y, data.schema, data.options)
    summary = chain_summary(fitted)
    drifted = json.loads(json.dumps(summary))
    name = next(iter(drifted["radscore"]))
    drifted["radscore"][name] += 1e-6
    with pytest.raises(AssertionError):
        assert_same(summary, drifted)


def test_factor_selection_follows_table2(data):
    """clinical.table2_selection (the validation's fast path) makes table2's decisions, notes
    included, on resamples, with separation and with missing values."""
    from IMNRiskLib.modelling import clinical
    rng = np.random.default_rng(11)
    frames = []
    for _ in range(6):
        idx = rng.integers(0, len(data.y), len(data.y))
        frames.append((data.clinical.iloc[idx], data.y[idx]))
    small = rng.choice(len(data.y), 40, replace=False)  # few patients: zero cells, separation
    frames.append((data.clinical.iloc[small], data.y[small]))
    holes = data.clinical.copy()
    for j, name in enumerate(holes.columns[:6]):
        holes.iloc[rng.choice(len(holes), 5 + j, replace=False), holes.columns.get_loc(name)] = None
    frames.append((holes, data.y))
    for frame, y in frames:
        full = clinical.table2(frame, pd.Series(y, index=frame.index), data.schema)
        fast = clinical.table2_selection(frame, y, data.schema)
        assert (fast.entered, fast.selected, fast.notes) == (full.entered, full.selected, full.notes)
        assert_same(fast.univariate_p, full.univariate_p)
        if full.multivariable is not None:
            assert fast.multivariable.terms == full.multivariable.terms
            assert np.allclose(fast.multivariable.coef, full.multivariable.coef, rtol=TOL, atol=TOL)


SOLVERS = {"compiled": ("1", None), "numpy side by side": ("0", None), "numpy one by one": ("0", 0)}


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("folds, ratio", [(5, 1e-3), (10, 1e-2)])
def test_lasso_equals_the_one_at_a_time_solver_of_before(data, folds, ratio, solver, monkeypatch):
    """LassoSelector's paths (the CV folds and the whole sample): every path coefficient, CV
    deviance and chosen lambda equals the one-problem-at-a-time exact solver of before
    (`reference_chain/lasso_exact.py`) to 1e-8, on the LASSO's real inputs (what the filters before
    it leave) of resamples, 100 lambdas; IMNRisk's grid and the paper protocol's; each way of
    solving them: compiled (`kernels`, what `make install` gives), numpy side by side (no numba)
    and numpy one by one (no numba, large tables)."""
    from sklearn.model_selection import StratifiedKFold
    from IMNRiskLib.modelling import selection
    from IMNRiskLib.stats import lasso
    from reference_chain import lasso_exact
    compiled, cells = SOLVERS[solver]
    if compiled == "1" and not kernels.IMPORTED:
        pytest.skip("numba is not installed (make install adds it where it fits the installed numpy)")
    monkeypatch.setenv("IMNRISK_COMPILED", compiled)
    assert kernels.available() == (compiled == "1")
    if cells is not None:
        monkeypatch.setattr(lasso, "SIDE_BY_SIDE_CELLS", cells)
    rng = np.random.default_rng(3)
    for _ in range(3):
        idx = rng.integers(0, len(data.y), len(data.y))
        X, y = data.features.iloc[idx], data.y[idx]
        for _, step in selection.radiomics_pipeline().steps[:5]:  # the filters and the z-score
            X = step.fit_transform(X, y)
        fast = selection.LassoSelector(n_lambdas=100, lambda_ratio=ratio, folds=folds).fit(X, y)
        Xa, yf = X.to_numpy(float), y.astype(float)
        dev = []
        for tr, te in StratifiedKFold(folds, shuffle=True, random_state=0).split(Xa, yf):
            coefs, b0 = lasso_exact.lasso_path(Xa[tr], yf[tr], fast.lambdas_)
            eta = b0[:, None] + coefs @ Xa[te].T
            dev.append((-2.0 * (yf[te][None, :] * eta - np.logaddexp(0, eta))).mean(axis=1))
        path, _ = lasso_exact.lasso_path(Xa, yf, fast.lambdas_)
        assert np.allclose(fast.path_, path, rtol=TOL, atol=TOL)
        assert np.allclose(fast.cv_mean_, np.mean(dev, axis=0), rtol=TOL, atol=TOL)
        assert fast.lambda_min_ == fast.lambdas_[int(np.argmin(np.mean(dev, axis=0)))]


@needs_numba
def test_compiled_path_goes_on_after_a_lambda_settled_by_glum(data, monkeypatch):
    """A lambda whose active set does not settle in the compiled solver goes to glum (polished by
    Newton steps) and the path goes on from there: forced here at two lambdas, the whole path
    still equals the reference solver's."""
    from reference_chain import lasso_exact
    X = data.features.iloc[:, :40].to_numpy(float)
    X = (X - X.mean(0)) / X.std(0)
    y = data.y.astype(float)
    grid = lasso_exact.lambda_max(X, y) * np.logspace(0, -1.5, 30)
    real, calls = kernels._path, []

    def unsettled_at_some(Xi, yy, lambdas, theta, tol, max_iter):
        calls.append(len(lambdas))
        solved, failed = real(Xi, yy, lambdas, theta, tol, max_iter)
        stop = {30: 12, 17: 9}.get(len(lambdas), -1)  # the 13th lambda, then the 23rd
        return (solved, stop) if stop >= 0 and failed < 0 else (solved, failed)
    monkeypatch.setattr(kernels, "_path", unsettled_at_some)
    coefs, b0 = kernels.lasso_path(X, y, grid)
    assert calls == [30, 17, 7]
    ref_coefs, ref_b0 = lasso_exact.lasso_path(X, y, grid)
    assert np.allclose(coefs, ref_coefs, rtol=1e-7, atol=1e-7) and np.allclose(b0, ref_b0, rtol=1e-7, atol=1e-7)


@needs_numba
def test_compiled_ranks_equal_scipys(data):
    """The compiled column ranks (the association's order, Spearman's rho) equal scipy's rankdata
    exactly, with ties (rounded values) and without."""
    from scipy import stats
    rng = np.random.default_rng(5)
    for values in (data.features.to_numpy(float), np.round(rng.normal(size=(60, 30)), 1),
                   rng.integers(0, 3, size=(40, 7)).astype(float)):
        assert np.array_equal(kernels.ranks(values), stats.rankdata(values, axis=0))


@needs_numba
def test_mann_whitney_from_ranks_equals_scipys(data):
    """The Mann-Whitney filter's p from the compiled rank sums and tie counts equal scipy's
    `mannwhitneyu(method="asymptotic")` exactly, and the rank sums scipy's ranks' sums, on the
    features and on tied, resampled columns."""
    from scipy import stats
    from IMNRiskLib.stats.ranks import mann_whitney_p, rank_sums
    rng = np.random.default_rng(6)
    tables = [(data.features.to_numpy(float)[:, :200], np.asarray(data.y) == 1)]
    for n in (12, 40, 124):
        values = np.round(rng.normal(size=(n, 25)), 1)[rng.integers(0, n, n)]  # ties and repeated rows
        tables.append((values, rng.random(n) < 0.3))
    for values, group in tables:
        expected = stats.mannwhitneyu(values[group], values[~group], axis=0, method="asymptotic",
                                      use_continuity=True).pvalue
        assert np.array_equal(mann_whitney_p(values, group), expected)
        assert np.array_equal(rank_sums(values, group), stats.rankdata(values, axis=0)[group].sum(axis=0))


def test_stratified_folds_equal_scikit_learns():
    """The LASSO's CV folds by hand are StratifiedKFold(shuffle=True)'s, for outcomes with few
    events (fewer than folds too), the classes in either order of appearance, several seeds."""
    import warnings
    from sklearn.model_selection import StratifiedKFold
    from IMNRiskLib.modelling.selection import stratified_folds
    rng = np.random.default_rng(7)
    for trial in range(60):
        n, folds = int(rng.integers(20, 130)), int(rng.choice([3, 5, 10]))
        y = (rng.random(n) < rng.uniform(0.03, 0.6)).astype(float)
        if y.sum() == 0 or np.all(folds > np.bincount(y.astype(int))):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            expected = list(StratifiedKFold(folds, shuffle=True, random_state=trial % 4).split(np.zeros(n), y))
        got = stratified_folds(y, folds, trial % 4)
        assert all(np.array_equal(a, c) and np.array_equal(b, d) for (a, b), (c, d) in zip(got, expected))
        assert len(got) == folds


@needs_numba
def test_compiled_logistic_fit_equals_numpys():
    """The compiled Newton steps of the ML logistic fit (`kernels.logistic_ml`) reach numpy's
    (`logistic._newton_ml`) to 1e-10 on 200 random designs, with ties, rare events and separation,
    and stop the same way (converged or not)."""
    from IMNRiskLib.stats import logistic
    rng = np.random.default_rng(0)
    stops = set()
    for trial in range(200):
        n, k = int(rng.integers(20, 130)), int(rng.integers(1, 8))
        X = rng.normal(size=(n, k))
        if trial % 5 == 0:
            X[:, 0] = np.round(X[:, 0])
        y = (X @ rng.normal(size=k) * rng.uniform(0.5, 8) + rng.normal(size=n) > 0.8).astype(float)
        if trial % 7 == 0:
            y = (X[:, 0] > 0).astype(float)  # complete separation
        Xi = np.column_stack([np.ones(n), X])
        beta, info, ll, converged = kernels.logistic_ml(y, Xi, 100, 1e-10, 2 * logistic.MAX_ABS_COEF)
        ref = logistic._newton_ml(y, Xi, 100, 1e-10)
        assert converged == ref[3]
        stops.add(converged)
        if converged:
            assert np.allclose(beta, ref[0], rtol=1e-10, atol=1e-10) and abs(ll - ref[2]) < 1e-9
            assert np.allclose(info, ref[1], rtol=1e-8, atol=1e-12)
    assert stops == {True, False}


def test_calibration_line_equals_evaluation_calibration():
    """validation.calibration_line (the validation's ~10^4 calibration fits: Newton, a complete-
    separation check, then statsmodels) gives evaluation.calibration's intercept and slope: on
    ordinary predictions, on completely separated ones (None), on quasi-separated ones (a tie at
    the boundary: statsmodels may still find an estimate) and on near-certain ones."""
    from IMNRiskLib.stats import evaluation
    rng = np.random.default_rng(9)
    kinds = set()
    for trial in range(60):
        n = int(rng.integers(20, 125))
        score = rng.normal(size=n) * rng.uniform(0.5, 6)
        y = (score + rng.normal(size=n) * rng.choice([0.0, 0.3, 1.0, 3.0]) > 0.5).astype(int)
        if trial % 10 == 0:  # quasi-complete separation: one event and one non-event tied at the boundary
            y = (score > np.median(score)).astype(int)
            score[np.argmax(np.where(y == 0, score, -np.inf))] = score[y == 1].min()
        if y.min() == y.max():
            continue
        p = np.clip(1 / (1 + np.exp(-score)), 1e-12, 1 - 1e-12)
        cal = evaluation.calibration(y, p)
        got = validation.calibration_line(y, p)
        kinds.add((cal["slope"] is None, validation.completely_separates(y, np.log(p / (1 - p)))))
        if cal["slope"] is None:
            assert got == (None, None)
        else:
            assert np.allclose(got, (cal["intercept"], cal["slope"]), rtol=1e-6, atol=1e-6)
    assert {(True, True), (False, False)} <= kinds


def test_glum_settles_a_cycling_active_set_at_the_exact_solution(data):
    """The rare lambda where the active set cycles goes to glum, polished by Newton steps: the
    result is the exact solution of the one-at-a-time solver there too."""
    from IMNRiskLib.stats import lasso
    from reference_chain import lasso_exact
    X = data.features.iloc[:, :40].to_numpy(float)
    X = (X - X.mean(0)) / X.std(0)
    y = data.y.astype(float)
    grid = lasso_exact.lambda_max(X, y) * np.logspace(0, -1.5, 30)
    coefs, b0 = lasso_exact.lasso_path(X, y, grid)
    problems = lasso._Problems.of([(X, y)])
    for k in (10, 20, 29):
        theta = lasso._lasso_glum_polished(problems, 0, float(grid[k]), 1e-10, 200)
        assert np.allclose(theta, np.concatenate([[b0[k]], coefs[k]]), rtol=1e-7, atol=1e-7)


def test_the_install_steps_warm_up_runs_as_make_runs_it():
    """`make install` runs `python -m IMNRiskLib.stats.kernels`: as __main__, the module's warm-up
    runs where its `if __name__` block stands, so every kernel it calls must be defined above it."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "IMNRiskLib.stats.kernels"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "compiled or loaded in" in done.stdout


@needs_numba
def test_compiled_saturated_firth_equals_the_python_loop_bit_for_bit():
    """`fitkernels.group_firth` (the saturated Firth fit's iterations compiled) gives the Python
    loop's group log-odds and penalised log-likelihood to the last bit, on group counts with and
    without a group of no events or no non-events (the separation it is fitted for)."""
    from IMNRiskLib.modelling.clinical import _group_firth_loop
    from IMNRiskLib.stats import fitkernels
    rng = np.random.default_rng(8)
    for _ in range(3000):
        n = rng.integers(1, 130, rng.integers(2, 6)).astype(float)
        events = np.floor(rng.random(len(n)) * (n + 1))
        events[rng.integers(len(n))] *= rng.integers(0, 2)  # half of them: one group without events
        t, ll = _group_firth_loop(list(n), list(events), 100, 1e-10)
        compiled = fitkernels.group_firth(n, events, 100, 1e-10)
        assert compiled is not None
        assert list(compiled[0]) == t and compiled[1] == ll


@needs_numba
def test_compiled_correlation_decisions_equal_the_python_loop(data, monkeypatch):
    """The |r| filter keeps the same columns with its block decisions compiled
    (`fitkernels.keep_uncorrelated`) as with the Python loop, on resamples of the features; and the
    kernel blocks a column whose |r| is NaN, as `~(r <= threshold)` does."""
    from IMNRiskLib.modelling import selection
    from IMNRiskLib.stats import fitkernels
    rng = np.random.default_rng(9)
    for threshold in (0.9, 0.6):
        rows = rng.integers(0, len(data.y), len(data.y))
        X = selection.ConstantFilter().fit_transform(data.features.iloc[rows], data.y[rows])
        compiled = selection.CorrelationFilter(threshold).fit(X, data.y[rows]).positions_
        monkeypatch.setenv("IMNRISK_COMPILED", "0")
        plain = selection.CorrelationFilter(threshold).fit(X, data.y[rows]).positions_
        monkeypatch.delenv("IMNRISK_COMPILED")
        assert len(compiled) < X.shape[1] and np.array_equal(compiled, plain)
    blocked = np.zeros(4, bool)  # candidates 1 and 2; |r| with columns 1, 2, 3
    kept = fitkernels.keep_uncorrelated(np.array([[1.0, np.nan, 0.2], [np.nan, 1.0, 0.1]]), np.array([1, 2]), 1,
                                        blocked, 0.9)
    assert kept.tolist() == [1] and blocked.tolist() == [False, True, True, False]


def test_loglik_of_each_design_equals_one_at_a_time(monkeypatch):
    """`logistic.loglik_ml_each` (forward selection's candidates, covariances inverted together)
    gives `loglik_ml`'s value or inf for each design: clean fits, a separated one and, in a second
    stack, one whose information is singular (numpy refuses the whole stack; each is then inverted alone)."""
    from IMNRiskLib.stats import logistic
    rng = np.random.default_rng(10)
    n = 80
    x = rng.normal(size=(n, 3))
    y = (x[:, 0] + rng.normal(size=n) > 0).astype(float)
    ones = np.ones((n, 1))
    clean = [np.column_stack([ones, x[:, [0, j]]]) for j in (1, 2)]
    separated = np.column_stack([ones, x[:, :1], (2 * y - 1) * (1 + rng.random(n))])
    flagged = np.column_stack([ones, x[:, 1:]])  # its converged fit is given a singular information below
    newton = logistic._newton

    def singular_for_flagged(y, Xi, max_iter, tol):
        beta, info, ll, converged = newton(y, Xi, max_iter, tol)
        return beta, (np.zeros_like(info) if np.array_equal(Xi, flagged) else info), ll, converged
    monkeypatch.setattr(logistic, "_newton", singular_for_flagged)
    for stack in (clean + [separated], clean + [flagged]):
        each = logistic.loglik_ml_each(y, np.stack(stack))
        alone = [logistic.loglik_ml(y, d) for d in stack]
        assert each.tolist() == alone
        assert np.isfinite(alone[:2]).all() and np.isinf(alone[2])
