"""clinical.table2_selection (the validation's clinical factor selection, from arrays) makes
exactly table2's decisions: univariate p, entered, collinear pairs, associations, the
multivariable fit, the LRT path and kept tests, selected, notes; on bootstrap resamples of the
shared phantom's clinical table and of the R reference cohort, with both tests."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from IMNRiskLib.modelling import clinical, collinearity, models
from IMNRiskLib.app import training
from equality import assert_same as _assert_same
from test_clinical_selection import SCHEMA, cohort

TOL = 1e-8


def assert_same(a, b, path="") -> None:
    """equality.assert_same with dict keys in the same order (table2's records are ordered)."""
    _assert_same(a, b, path, ordered_keys=True)


def decisions(t2: clinical.Table2) -> dict:
    """Everything table2 decides, as plain values (the multivariable fit's terms and numbers too)."""
    fit = t2.multivariable
    return {"entered": t2.entered, "selected": t2.selected, "univariate_p": t2.univariate_p,
            "notes": t2.notes, "record": t2.selection_record(),
            "fit": None if fit is None else {"terms": fit.terms, "method": fit.method, "separation": fit.separation,
                                             "n": fit.n, "events": fit.events, "coef": fit.coef.tolist(),
                                             "se": fit.se.tolist(), "loglik": fit.loglik}}


def resamples(frame: pd.DataFrame, y: np.ndarray, count: int, seed: int, size=None):
    """Bootstrap resamples (rows drawn with replacement, the index repeated as the validation does)."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        idx = rng.integers(0, len(y), size or len(y))
        yield frame.iloc[idx], y[idx]


@pytest.fixture(scope="module")
def phantom_table(phantom):
    data = training.load_training_data(phantom / "cohort.csv", phantom / "features.csv")
    return data.clinical, np.asarray(data.y, int), data.schema


def check_equal(frame, y, schema, seen, **options) -> None:
    full = clinical.table2(frame, pd.Series(y, index=frame.index), schema, **options)
    fast = clinical.table2_selection(frame, y, schema, **options)
    assert fast.table.empty
    assert_same(decisions(fast), decisions(full))
    # record=False (the validation's fits): the same decisions without what only the record reads
    lean = clinical.table2_selection(frame, y, schema, record=False, **options)
    same = {k: getattr(fast, k) for k in ("entered", "selected", "univariate_p", "notes", "collinear", "path", "final")}
    assert_same({k: getattr(lean, k) for k in same}, same)
    assert lean.associations == [] and (lean.multivariable is None) == (
        fast.multivariable is not None and fast.multivariable.method == "Firth" and options.get("test") == "lrt")
    seen["firth skipped"] += lean.multivariable is None and fast.multivariable is not None
    seen["path"] += bool(full.path)
    seen["collinear"] += bool(full.collinear)
    seen["separation"] += any("separation" in n for n in full.notes)
    seen["selected"].add(tuple(full.selected))


@pytest.mark.parametrize("test", clinical.CLINICAL_TESTS)
def test_same_decisions_on_phantom_resamples(phantom_table, test):
    """Phantom: 124-patient resamples (the paper's size; zero cells and Firth fits), 40-patient
    ones (separation in the multivariable model), and the full table with missing values."""
    frame, y, schema = phantom_table
    seen = {"path": 0, "collinear": 0, "separation": 0, "selected": set(), "firth skipped": 0}
    for f, yy in resamples(frame.iloc[:124], y[:124], 30, seed=3):
        check_equal(f, yy, schema, seen, test=test)
    for f, yy in resamples(frame, y, 10, seed=4, size=40):
        check_equal(f, yy, schema, seen, test=test, entry_p=0.3)
    holes = frame.copy()
    rng = np.random.default_rng(5)
    for j, name in enumerate(holes.columns[:8]):
        holes.iloc[rng.choice(len(holes), 5 + j, replace=False), holes.columns.get_loc(name)] = None
    for f, yy in resamples(holes, y, 5, seed=6):
        check_equal(f, yy, schema, seen, test=test, entry_p=0.3, collinear=0.3)
    assert seen["separation"] and len(seen["selected"]) > 1  # the resamples reach the hard cases
    if test == "lrt":
        assert seen["path"] and seen["collinear"] and seen["firth skipped"]


@pytest.mark.parametrize("test", clinical.CLINICAL_TESTS)
def test_same_decisions_on_R_cohort_resamples(test):
    """The R reference cohort (ER/PR collinear, factors of several levels, a LRT path), resampled."""
    frame, y = cohort()
    frame, y = frame.reset_index(drop=True), y.to_numpy()
    seen = {"path": 0, "collinear": 0, "separation": 0, "selected": set(), "firth skipped": 0}
    check_equal(frame, y, SCHEMA, seen, test=test)
    for f, yy in resamples(frame, y, 25, seed=7):
        check_equal(f, yy, SCHEMA, seen, test=test)
    for f, yy in resamples(frame, y, 5, seed=8):
        check_equal(f, yy, SCHEMA, seen, test=test, collinear=None, entry_p=0.5)
    assert seen["collinear"] and len(seen["selected"]) > 1
    if test == "lrt":
        assert seen["path"]


def test_rank_deficient_pair_is_found_by_both():
    """A copied variable (PR = ER) with the association screen off: the rank check decides."""
    frame, y = cohort()
    frame = frame.assign(pr=frame["er"])
    full = clinical.table2(frame, y, SCHEMA, entry_p=0.5, collinear=None)
    fast = clinical.table2_selection(frame, y.to_numpy(), SCHEMA, entry_p=0.5, collinear=None)
    assert [c["measure"] for c in fast.collinear] == ["rank-deficient design"]
    assert_same(decisions(fast), decisions(full))


def test_association_matches_scipy():
    """Cramer's V from integer codes and Spearman from ranks equal SciPy's chi2_contingency and spearmanr."""
    from scipy import stats
    frame, _ = cohort()
    v = collinearity.factor_association(frame["location"], frame["grade"], SCHEMA["location"], SCHEMA["grade"])
    table = pd.crosstab(frame["location"], frame["grade"]).to_numpy()
    chi2 = stats.chi2_contingency(table, correction=False)[0]
    assert v == ("Cramer's V", pytest.approx(math.sqrt(chi2 / (table.sum() * (min(table.shape) - 1))), rel=1e-12))
    s = collinearity.factor_association(frame["age"], frame["aln"], SCHEMA["age"], SCHEMA["aln"])
    known = frame[["age", "aln"]].notna().all(axis=1)
    codes = frame.loc[known, "aln"].map({lev: i for i, lev in enumerate(SCHEMA["aln"].levels)})
    assert s == ("|Spearman|", pytest.approx(abs(stats.spearmanr(frame.loc[known, "age"], codes)[0]), rel=1e-12))


def test_select_factors_uses_the_fast_path(phantom_table, monkeypatch):
    """models.select_factors gives table2's choice with the options' test and collinearity threshold."""
    frame, y, schema = phantom_table
    options = models.TrainingOptions(clinical_test="wald", clinical_collinear=0.5)
    calls = []
    monkeypatch.setattr(models, "table2", lambda *a, **k: calls.append(a))  # must not be called
    factors, t2, _ = models.select_factors(frame, y, schema, options)
    monkeypatch.undo()
    full = clinical.table2(frame, pd.Series(y, index=frame.index), schema, test="wald", collinear=0.5)
    assert not calls and t2.test == "wald" and factors == (full.selected or factors)
    assert_same(decisions(t2), decisions(full))
