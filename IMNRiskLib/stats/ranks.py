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


def rank_sums(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Per column, the sum of the average ranks (ties averaged) of the rows in `group`: compiled
    without writing each rank when numba is there (`kernels.group_rank_sums`), the same numbers."""
    from IMNRiskLib.stats import kernels  # start-up time: numba loads only when used (not for a report)
    if kernels.available() and np.isfinite(values).all():
        return kernels.group_rank_sums(values, group)[0]
    return column_ranks(values)[group].sum(axis=0)


def mann_whitney_p(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Two-sided p of the Mann-Whitney U test of each column between the rows in `group` and the
    others, normal approximation with continuity and tie corrections: scipy's `mannwhitneyu(...,
    method="asymptotic")` computed from the compiled rank sums and tie counts (whole or half
    numbers, so the same numbers; ~10x faster)."""
    from scipy import special, stats  # start-up time: scipy.stats loads only when used (not for a report)
    from IMNRiskLib.stats import kernels  # start-up time: numba loads only when used (not for a report)
    n1, n2 = int(group.sum()), int((~group).sum())
    if not (kernels.available() and n1 and n2 and np.isfinite(values).all()):
        return stats.mannwhitneyu(values[group], values[~group], axis=0, method="asymptotic",
                                  use_continuity=True).pvalue
    sums, ties = kernels.group_rank_sums(values, group)
    u1 = sums - n1 * (n1 + 1) / 2
    u = np.maximum(u1, n1 * n2 - u1)
    n = n1 + n2
    s = np.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))  # scipy's _get_mwu_z, term by term
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (u - n1 * n2 / 2 - 0.5) / s
    return np.clip(special.ndtr(-z) * 2, 0.0, 1.0)
