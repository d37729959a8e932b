"""Stability: how reproducible each feature is between two readers' contours (ICC).

A second reader's mask of the same tumour on the same image (manifest column `Mask2`) gives a
second feature table (`features_reader2.csv`, written by `imnrisk extract`). The agreement of the
two readings is the intraclass correlation ICC(2,1) of Shrout & Fleiss (1979): two-way random
effects, absolute agreement, single rater, i.e. McGraw & Wong's (1996) ICC(A,1), R's
`irr::icc(model = "twoway", type = "agreement", unit = "single")` and `psych::ICC`'s "ICC2".
IMNRisk has two readers (Mask and Mask2); the formulas below hold for k raters, but the manifest
and the pipeline use k = 2. A feature without variance in either reading has no ICC (0 / 0): it is
reported as undefined and dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np
import pandas as pd

from IMNRiskLib.core.errors import InputError

ICC_TYPE = "ICC(2,1)"
ICC_DESCRIPTION = ("ICC(2,1): two-way random effects, absolute agreement, single rater (Shrout & Fleiss 1979; "
                   "McGraw & Wong ICC(A,1); R irr::icc(model='twoway', type='agreement', unit='single'))")
DEFAULT_ICC_THRESHOLD = 0.75
READER2_SUFFIX = "@reader2"  # a second reader's column in the training table: the feature's name + this
MIN_ICC_PATIENTS = 10        # fewer patients read twice than this cannot rank 851 features' reliability


def icc_a1(ratings: np.ndarray) -> np.ndarray:
    """ICC(2,1) of every feature at once; `ratings` has shape (patients, raters, features).

    Mean squares of the two-way ANOVA without replication (Shrout & Fleiss):
    ICC = (MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n). NaN where undefined (0 / 0).
    """
    x = np.asarray(ratings, float)
    n, k = x.shape[0], x.shape[1]
    if n < 2 or k < 2:
        raise ValueError("an ICC needs at least 2 patients and 2 raters")
    scale = np.abs(x).max(axis=(0, 1)) ** 2  # what "0" means in this feature's units
    x = x - x.mean(axis=(0, 1))  # centred per feature: no cancellation with large feature values
    rows, cols = x.mean(axis=1), x.mean(axis=0)  # (n, p) patient means, (k, p) rater means
    ss_rows = k * (rows ** 2).sum(axis=0)
    ss_cols = n * (cols ** 2).sum(axis=0)
    ss_error = ((x - rows[:, None, :] - cols[None, :, :]) ** 2).sum(axis=(0, 1))
    return _icc_from_squares(ss_rows, ss_cols, ss_error, n, k, scale)


def icc_two_readers(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`icc_a1` for two readers, from their (patients x features) tables without stacking them:
    with k = 2 the error residuals of the two readings are opposite, (a - b)/2 less its mean.
    The validation computes it on every resample (~1500 times on 124 x 851)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = len(a)
    if n < 2:
        raise ValueError("an ICC needs at least 2 patients and 2 raters")
    scale = np.maximum(np.abs(a).max(axis=0), np.abs(b).max(axis=0)) ** 2
    centre = (a.mean(axis=0) + b.mean(axis=0)) / 2.0
    a, b = a - centre, b - centre
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    rows = (a + b) / 2.0
    half = (a - b) / 2.0 - (mean_a - mean_b) / 2.0
    return _icc_from_squares(2.0 * (rows ** 2).sum(axis=0), n * (mean_a ** 2 + mean_b ** 2),
                             2.0 * (half ** 2).sum(axis=0), n, 2, scale)


def _icc_from_squares(ss_rows: np.ndarray, ss_cols: np.ndarray, ss_error: np.ndarray, n: int, k: int,
                      scale: np.ndarray) -> np.ndarray:
    """ICC(2,1) from the two-way ANOVA's sums of squares (rows: patients, columns: raters)."""
    msr, msc = ss_rows / (n - 1), ss_cols / (k - 1)
    mse = ss_error / ((n - 1) * (k - 1))
    numerator = msr - mse
    denominator = msr + (k - 1) * mse + k * (msc - mse) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        icc = numerator / denominator
    return np.where(np.abs(denominator) <= 1e-24 * scale + 1e-300, np.nan, icc)


def reader_columns(columns) -> List[str]:
    """The first reader's feature columns of a training table (those without the reader-2 suffix)."""
    return [c for c in columns if not str(c).endswith(READER2_SUFFIX)]


def feature_icc(X: pd.DataFrame) -> pd.Series:
    """ICC(2,1) of every feature of a training table that carries the second reader's columns
    (name + READER2_SUFFIX), on the rows where the second reading is complete; NaN = undefined."""
    return table_icc(X)[0]


def table_icc(X: pd.DataFrame) -> Tuple[pd.Series, np.ndarray, int]:
    """`feature_icc`, the first reader's column positions and the number of patients read twice
    (the ICC filter's fit). Compiled when numba is there (`kernels.icc_squares`), the same sums
    of squares as `icc_two_readers`."""
    from IMNRiskLib.stats import kernels  # start-up time: loaded when this step runs
    first, at_first, at_second = reader_positions(X.columns)
    values = X.to_numpy(float)
    rows = np.isfinite(values[:, at_second]).all(axis=1)
    read_twice = int(rows.sum())
    if read_twice < 2:
        raise ValueError(f"{read_twice} patient(s) read twice: an ICC needs at least 2")
    if kernels.available() and np.isfinite(values[:, at_first]).all():
        ss_rows, ss_cols, ss_error, scale = kernels.icc_squares(values, at_first, at_second, rows)
        icc = _icc_from_squares(ss_rows, ss_cols, ss_error, read_twice, 2, scale)
    else:
        a, b = values[:, at_first], values[:, at_second]
        icc = icc_two_readers(a[rows], b[rows]) if not rows.all() else icc_two_readers(a, b)
    return pd.Series(icc, index=_names(first), name="icc"), at_first, read_twice


_last_names: tuple = (None, None)  # the last list of names turned into an Index, and that Index


def _names(names: List[str]) -> pd.Index:
    """An Index of these names, made once per list (`reader_positions` answers with the same list)."""
    global _last_names
    last = _last_names
    if last[0] is not names:
        last = _last_names = (names, pd.Index(names))
    return last[1]


_last_layout: tuple = (None, None)  # the columns last asked about (held, so `is` is safe) and the answer


def reader_positions(columns: pd.Index) -> Tuple[List[str], np.ndarray, np.ndarray]:
    """The first reader's feature names and the column positions of both readings of each; a
    ValueError when a second reading is missing. The validation asks ~1500 times about the same
    columns (every resample has them, or a view of them): the last answer is kept."""
    global _last_layout
    last = _last_layout  # one read: another thread may replace it
    if last[0] is not None and last[0].is_(columns):  # the same Index, or a view of it (rows taken)
        return last[1]
    first = reader_columns(columns)
    at_second = columns.get_indexer([c + READER2_SUFFIX for c in first])
    if (at_second < 0).any():
        missing = [c for c, j in zip(first, at_second) if j < 0]
        raise ValueError(f"no second reading of {len(missing)} feature(s), e.g. {missing[0]}")
    answer = (first, columns.get_indexer(first), at_second)
    _last_layout = (columns, answer)
    return answer


def read_reader2(path: Union[str, Path], columns: pd.Index, ids: List[str]) -> pd.DataFrame:
    """The second reader's feature table, on the first reader's columns and the given patients
    (NaN rows for patients read once); a table that does not match is an InputError."""
    from IMNRiskLib.radiomics.features import read_features  # start-up time: loaded when this step runs
    table = read_features(path)
    absent = [c for c in columns if c not in table.columns]
    if absent:
        raise InputError(f"{len(absent)} feature(s) of the first reader's table are missing, e.g. {absent[0]} "
                         "(extract both readers with the same settings)", file=str(path), field=absent[0])
    shared = [i for i in ids if i in table.index]
    if len(shared) < MIN_ICC_PATIENTS:
        raise InputError(f"{len(shared)} labelled patient(s) of the cohort have a second reading; the ICC filter "
                         f"needs at least {MIN_ICC_PATIENTS} (or train with --no-icc)", file=str(path), field="ID")
    values = table.loc[shared, list(columns)]
    finite = np.isfinite(values.to_numpy())
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise InputError("missing or infinite value", file=str(path), id=shared[row], field=columns[col])
    return values.reindex(ids)


def with_reader2(features: pd.DataFrame, reader2: pd.DataFrame) -> pd.DataFrame:
    """The training table the ICC step reads: the first reader's columns, then the second's (suffixed)."""
    # one float block (not one per column): every fold and bootstrap takes rows of it
    return pd.DataFrame(np.hstack([features.to_numpy(float), reader2.to_numpy(float)]), index=features.index,
                        columns=pd.Index(list(features.columns) + [c + READER2_SUFFIX for c in reader2.columns],
                                         dtype=object))


def icc_summary(icc: pd.Series, kept: List[str], selected: List[str], threshold: float, n_patients: int
                ) -> Dict[str, object]:
    """What metrics.json and model.json say about the ICC filter (aggregates only)."""
    values = icc.dropna()
    return {"type": ICC_TYPE, "description": ICC_DESCRIPTION, "readers": 2, "threshold": threshold,
            "n_patients": int(n_patients), "n_features": int(len(icc)), "n_kept": int(len(kept)),
            "n_undefined": int(icc.isna().sum()),
            "median": float(values.median()) if len(values) else None,
            "selected": {f: (None if pd.isna(icc.get(f)) else float(icc[f])) for f in selected}}


def icc_notes(summary: Dict[str, object]) -> List[str]:
    """Notes for metrics.json: what the filter kept, and the features whose ICC is undefined."""
    notes = [f"feature stability: {summary['type']} on {summary['n_patients']} patient(s) read twice; "
             f"{summary['n_kept']} of {summary['n_features']} feature(s) have ICC >= {summary['threshold']:g} "
             "and go on to selection (refitted on each training fold and bootstrap sample in validation)"]
    if summary["n_undefined"]:
        notes.append(f"{summary['n_undefined']} feature(s) have an undefined ICC (no variance in either reader's "
                     "values) and were dropped")
    return notes


def icc_table(icc: pd.Series, kept: List[str], selected: List[str]) -> pd.DataFrame:
    """icc.csv: every feature's ICC, whether it passed the threshold and whether the Rad-Score uses it."""
    return pd.DataFrame({"feature": icc.index, "icc": icc.to_numpy(), "kept": icc.index.isin(kept),
                         "selected": icc.index.isin(selected)})
