"""Kernels of the selection steps and the clinical selection, compiled by numba as `kernels`'
are (cached beside this file, warmed by `kernels.warm_up`): the saturated Firth fit's iterations on
group sums and the correlation filter's keep-or-block decisions. Each does, operation by
operation, what the Python code it replaces does (the same bits: Testing/test_speed_equality.py),
where Python's cost per number (~0.1 us) is most of the time; None or the Python code without
numba.
"""

from __future__ import annotations

import math

import numpy as np

from IMNRiskLib.stats.jit import available, interruptible, njit


def warm_up() -> None:
    """Compile (or load from the cache) each kernel on a small problem."""
    group_firth(np.array([10.0, 5.0]), np.array([0.0, 3.0]), 100, 1e-10)
    keep_uncorrelated(np.array([[1.0, 0.95, 0.2], [0.95, 1.0, 0.1]]), np.array([0, 1]), 0, np.zeros(3, bool), 0.9)


@interruptible
def group_firth(n: np.ndarray, events: np.ndarray, max_iter: int, tol: float):
    """`clinical._saturated_firth`'s iterations compiled: (group log-odds, penalised log-likelihood),
    the same operations in the same order on the same libm calls (the same bits); None where the
    Python loop would raise (an exp overflowing, a log of 0) or where numba is missing, for the
    caller to run the Python loop, which says what happens."""
    if not available():
        return None
    t, ll, ok = _group_firth(np.ascontiguousarray(n, float), np.ascontiguousarray(events, float), max_iter, tol)
    return (t, float(ll)) if ok else None


@njit(cache=True)
def _group_penalised(t, n, events):
    """`_saturated_firth`'s penalised log-likelihood; ok False where Python's math would raise."""
    value = 0.0
    for g in range(t.shape[0]):
        tg, ng, sg = t[g], n[g], events[g]
        if abs(tg) > 700.0:
            return value, False
        pg = 1.0 / (1.0 + math.exp(-tg))
        if tg == 0.0:
            soft = math.log(2.0)
        elif tg < 0:
            soft = math.log1p(math.exp(tg))
        else:
            soft = tg + math.log1p(math.exp(-tg))
        inside = ng * pg * (1 - pg)
        if not inside > 0.0:
            return value, False
        value += sg * tg - ng * soft + 0.5 * math.log(inside)
    return value, True


@njit(cache=True)
def _group_firth(n, events, max_iter, tol):
    G = n.shape[0]
    t = np.zeros(G)
    ll, ok = _group_penalised(t, n, events)
    if not ok:
        return t, ll, False
    for _ in range(max_iter):
        step = np.empty(G)
        for g in range(G):
            if abs(t[g]) > 700.0:
                return t, ll, False
            pg = 1.0 / (1.0 + math.exp(-t[g]))
            step[g] = (events[g] + 0.5 - (n[g] + 1) * pg) / (n[g] * pg * (1 - pg))
        new, new_ll = t, ll
        for _half in range(30):
            new = t + step
            new_ll, ok = _group_penalised(new, n, events)
            if not ok:
                return t, ll, False
            if new_ll >= ll - 1e-12:
                break
            step = step / 2
        largest = abs(new[0] - t[0])  # Python's max: a later value replaces it only when larger
        for g in range(1, G):
            change = abs((new[g] - new[0]) - (t[g] - t[0]))
            if change > largest:
                largest = change
        t, ll = new, new_ll
        if largest < tol:
            break
    return t, ll, True



@interruptible
def keep_uncorrelated(corr: np.ndarray, block: np.ndarray, start: int, blocked: np.ndarray, threshold: float
                      ) -> np.ndarray:
    """`selection.CorrelationFilter`'s decisions on one block of candidates: visiting `block` (the
    columns of the rows of corr, |r| with every column from `start` on) in order, keep a candidate
    not blocked yet and block every column whose |r| with it is not <= threshold (NaN blocks);
    `blocked` updated in place; returns the kept columns."""
    return _keep_uncorrelated(np.ascontiguousarray(corr), np.ascontiguousarray(block, np.int64), start, blocked,
                              threshold)


@njit(cache=True)
def _keep_uncorrelated(corr, block, start, blocked, threshold):
    kept = np.empty(block.shape[0], np.int64)
    count = 0
    for r in range(block.shape[0]):
        j = block[r]
        if blocked[j]:
            continue
        kept[count] = j
        count += 1
        for c in range(corr.shape[1]):
            if not corr[r, c] <= threshold:
                blocked[start + c] = True
    return kept[:count]
