"""Ranks with ties averaged (scipy's `rankdata` default), the one home for the DeLong test, the
Spearman correlations and the Mann-Whitney filter: one sample, or every column of a table."""

from __future__ import annotations

import numpy as np


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (stats.rankdata's default, without its overhead)."""
    order = np.argsort(x, kind="mergesort")
    inverse = np.empty(len(x), dtype=np.intp)
    inverse[order] = np.arange(len(x))
    xs = x[order]
    first = np.concatenate(([True], xs[1:] != xs[:-1]))
    dense = np.cumsum(first)[inverse]
    count = np.concatenate((np.nonzero(first)[0], [len(first)]))
    return 0.5 * (count[dense] + count[dense - 1] + 1)


def column_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks within each column (ties averaged), scipy's `rankdata(values, axis=0)`: compiled when
    numba is there (`kernels.ranks`, ~8x faster), the same numbers either way."""
    from scipy import stats  # start-up time: scipy.stats and numba load only when used (not for a report)
    from IMNRiskLib.stats import kernels  # start-up time: as above
    if kernels.available() and np.isfinite(values).all():
        return kernels.ranks(values)
    return stats.rankdata(values, axis=0)
