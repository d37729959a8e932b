"""Kernels: the validation's inner loops compiled by numba, where numpy's cost per call (~1 us,
tens of calls a step) is most of the time: the LASSO logistic path (`lasso_path`), the logistic ML
fit of the clinical selection, forward selection and calibration (`logistic_ml`), and the column
ranks behind the features' association with the outcome and Spearman's rho (`ranks`); the
selection steps' smaller kernels are in `fitkernels` (`warm_up` warms both).

Why by hand: the validation solves ~10^4 LASSO paths of ~100 lambdas on ~100 x 40 tables and ~10^5
logistic fits of 2-10 columns, where a Newton step is a few microseconds of arithmetic. No library
solves the LASSO exactly along a path at that size (glmnet's Fortran is R's; glum's and
scikit-learn's coordinate descent stop at a tolerance, not at the optimum, and pay Python's cost
per lambda), and scipy's `rankdata` is generic (8 ms on 124 x 851; ~2 ms here). Each kernel does
what its numpy twin does (`selection.numpy_lasso_paths`, `clinical._newton_ml`, `stats.rankdata`),
to the same optimum (Testing/test_speed_equality.py); training is ~1.9x faster.

numba is optional (the `fast` extra; `make install` adds it where it fits the installed numpy):
without it, or with IMNRISK_COMPILED=0, the numpy twins run. The first call compiles (~17 s) and
caches the machine code beside this file, or in the user's cache when that folder is read-only
(`warm_up`, which `make install` and the validation's worker start-up run); later processes load
it in ~0.2 s.
"""

from __future__ import annotations

import time
from typing import Tuple

import numpy as np

from IMNRiskLib.stats import fitkernels
from IMNRiskLib.stats.glumlasso import glum_lasso
from IMNRiskLib.stats.jit import IMPORTED, available, interruptible, njit  # noqa: F401 - kernels.IMPORTED etc.

# sums may be reordered (SIMD); no assumption about NaN or inf, which the line search tests
FASTMATH = {"reassoc", "contract"}
KKT_SLACK = 1e-12  # |gradient| above lambda by less than this (relative) is rounding, not a KKT break
BLAS_CELLS = 20_000  # support rows x columns above which the Hessian is numpy's matrix product (BLAS)
CHORD_STEP = 1e-3  # after a full Newton step shorter than this the next reuses the Hessian's factor


@interruptible
def lasso_path(X: np.ndarray, y: np.ndarray, lambdas: np.ndarray, tol: float = 1e-10,
               max_iter: int = 200) -> Tuple[np.ndarray, np.ndarray]:
    """(coefficients L x p, intercepts L) of the LASSO logistic path of one problem, glmnet's
    objective -loglik/n + lambda ||b||_1 (intercept unpenalised), every lambda solved exactly.
    A lambda where the active set cycles (features entering and leaving, very rare) is settled by
    glum and polished by Newton steps, and the path goes on from it."""
    X, y = np.asarray(X, float), np.ascontiguousarray(y, float)
    Xi = np.ascontiguousarray(np.column_stack([np.ones(len(y)), X]))
    lambdas = np.asarray(lambdas, float)
    order = np.argsort(-lambdas, kind="stable")  # largest first: each solution warm-starts the next
    thetas = np.zeros((len(lambdas), Xi.shape[1]))
    theta = np.zeros(Xi.shape[1])
    ybar = min(max(float(np.mean(y)), 1e-6), 1 - 1e-6)
    theta[0] = np.log(ybar / (1 - ybar))
    done = 0
    while done < len(order):
        solved, failed = _path(Xi, y, np.ascontiguousarray(lambdas[order[done:]]), theta, tol, max_iter)
        stop = len(order) - done if failed < 0 else failed
        thetas[order[done:done + stop]] = solved[:stop]
        done += stop
        if failed >= 0:
            lam = float(lambdas[order[done]])
            theta = _polished(Xi, y, lam, glum_lasso(Xi, y, lam), tol, max_iter)
            thetas[order[done]] = theta
            done += 1
        theta = thetas[order[done - 1]].copy()
    return thetas[:, 1:], thetas[:, 0]


def warm_up() -> float:
    """Compile (or load from the cache) on a small problem; seconds taken."""
    start = time.perf_counter()
    if available():
        rng = np.random.default_rng(0)
        X = rng.normal(size=(40, 6))
        y = (X[:, 0] + rng.normal(size=40) > 0).astype(float)
        lasso_path(X, y, np.abs(X.T @ (y - y.mean())).max() / 40 * np.logspace(0, -2, 10))
        ranks(X)
        group_rank_sums(X, y > 0)
        icc_squares(np.column_stack([X, X]), np.arange(6), np.arange(6, 12), np.ones(40, bool))
        logistic_ml(y, np.column_stack([np.ones(40), X[:, :2]]), 100, 1e-10, 30.0)
        fitkernels.warm_up()
    return time.perf_counter() - start


@interruptible
def logistic_ml(y: np.ndarray, Xi: np.ndarray, max_iter: int, tol: float, max_coef: float):
    """`clinical._newton_ml` compiled: Newton steps with step halving for the logistic MLE from the
    null model, stopped when the longest step < tol or a coefficient beyond max_coef; returns
    (beta, information, loglik, converged); ~4x faster than numpy on the validation's small fits."""
    beta, info, ll, converged = _logistic_ml(np.ascontiguousarray(y, float), np.ascontiguousarray(Xi, float),
                                             max_iter, tol, max_coef)
    return beta, info, float(ll), bool(converged)


@interruptible
def ranks(values: np.ndarray) -> np.ndarray:
    """Per column of values (n x p), the ranks 1..n with ties given their average rank: scipy's
    `rankdata(values, axis=0)`, exactly. numpy sorts (its SIMD quicksort, ~5x numba's sort on
    124-row columns; tied values may come in any order, they share one average rank)."""
    VT = np.ascontiguousarray(np.asarray(values, float).T)
    return _ranks(VT, np.argsort(VT, axis=1)).T


@interruptible
def group_rank_sums(values: np.ndarray, group: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per column of values (n x p): the sum of the average ranks of the rows in `group`, and the
    sum of t^3 - t over its groups of t tied values (the Mann-Whitney tie correction, scipy's
    `_rankdata(..., return_ties=True)`): what the association and the Mann-Whitney test need of
    the ranks, without writing each one (rank sums are whole or half numbers: exact)."""
    VT = np.ascontiguousarray(np.asarray(values, float).T)
    orders = np.argsort(VT, axis=1)
    return _group_rank_sums(VT, orders, np.ascontiguousarray(group, np.bool_))


@interruptible
def icc_squares(values: np.ndarray, at_first: np.ndarray, at_second: np.ndarray, rows: np.ndarray):
    """`stability.icc_two_readers`' sums of squares (rows, columns, error) and scales of every
    feature, the two readings at columns at_first / at_second of values, on `rows` only: one
    compiled pass per feature instead of ~15 numpy passes over the copied tables (the validation
    computes it on every resample, 124 x 851)."""
    V = np.asfortranarray(np.asarray(values, float))
    return _icc_squares(V, np.ascontiguousarray(at_first, np.int64), np.ascontiguousarray(at_second, np.int64),
                        np.ascontiguousarray(np.flatnonzero(rows), np.int64))


def _polished(Xi: np.ndarray, y: np.ndarray, lam: float, theta: np.ndarray, tol: float, max_iter: int) -> np.ndarray:
    """theta (glum's) with Newton steps on its support, unless a coefficient leaves it."""
    cols = np.concatenate([[0], np.flatnonzero(theta[1:]) + 1]).astype(np.int64)
    out, eta = theta.copy(), _eta(np.ascontiguousarray(Xi.T[cols]), theta[cols])
    kept = _newton_on_support(np.ascontiguousarray(Xi.T), y, lam, out, cols, len(cols), np.sign(theta), tol,
                              max_iter, eta, _probability(eta))[0]
    return out if kept == len(cols) else theta


@njit(cache=True, fastmath=FASTMATH)
def _rows_dot(AT, v):
    """AT @ v (AT: m x n, C order)."""
    m, n = AT.shape
    out = np.empty(m)
    for a in range(m):
        s = 0.0
        for i in range(n):
            s += AT[a, i] * v[i]
        out[a] = s
    return out


@njit(cache=True, fastmath=FASTMATH)
def _eta(AT, th):
    """th @ AT: the linear predictor of every row."""
    m, n = AT.shape
    out = np.zeros(n)
    for a in range(m):
        c = th[a]
        if c != 0.0:
            for i in range(n):
                out[i] += c * AT[a, i]
    return out


@njit(cache=True, fastmath=FASTMATH)
def _hessian(AT, wv):
    """AT diag(wv) AT' (symmetric m x m): loops on small supports, BLAS on large ones."""
    m, n = AT.shape
    W = np.empty((m, n))
    for a in range(m):
        for i in range(n):
            W[a, i] = AT[a, i] * wv[i]
    if m * n > BLAS_CELLS:
        return W @ AT.T
    H = np.empty((m, m))
    for a in range(m):
        for b in range(a + 1):
            s = 0.0
            for i in range(n):
                s += W[a, i] * AT[b, i]
            H[a, b] = s
            H[b, a] = s
    return H


@njit(cache=True)
def _cholesky(H):
    """The lower Cholesky factor of H (symmetric positive definite); 0 x 0 when H is not. By hand:
    LAPACK's call costs more than the arithmetic on these 2-50 square systems."""
    m = H.shape[0]
    L = np.zeros((m, m))
    for j in range(m):
        s = H[j, j]
        for k in range(j):
            s -= L[j, k] * L[j, k]
        if not s > 0.0:
            return np.empty((0, 0))
        L[j, j] = np.sqrt(s)
        for i in range(j + 1, m):
            s = H[i, j]
            for k in range(j):
                s -= L[i, k] * L[j, k]
            L[i, j] = s / L[j, j]
    return L


@njit(cache=True)
def _solve(H, L, g):
    """H x = g with H's Cholesky factor L (forward and back substitution), or by least squares
    where H is singular (L is 0 x 0; as the numpy solver's pseudo-inverse)."""
    m = g.shape[0]
    if L.shape[0] != m:
        return np.linalg.lstsq(H, g)[0]
    x = g.copy()
    for i in range(m):
        s = x[i]
        for k in range(i):
            s -= L[i, k] * x[k]
        x[i] = s / L[i, i]
    for i in range(m - 1, -1, -1):
        s = x[i]
        for k in range(i + 1, m):
            s -= L[k, i] * x[k]
        x[i] = s / L[i, i]
    return x


@njit(cache=True)
def _objective(y, th, pen, eta):
    """-loglik/n + pen'th (log(1 + e^eta) without overflow)."""
    n = y.shape[0]
    f = 0.0
    for i in range(n):
        e = eta[i]
        if e > 0:
            f += e + np.log1p(np.exp(-e)) - y[i] * e
        else:
            f += np.log1p(np.exp(e)) - y[i] * e
    return f / n + np.dot(pen, th)


@njit(cache=True)
def _probability(eta):
    return 1.0 / (1.0 + np.exp(-eta))


@njit(cache=True)
def _newton_on_support(XiT, y, lam, theta, cols, m, signs, tol, max_iter, eta, pr):
    """Minimise -loglik/n + lam * s'b over theta[cols[:m]] (cols[0] = 0, the intercept) with the
    signs s fixed: Newton steps with Armijo backtracking, cut where a coefficient would cross zero
    (it then leaves the support), chord steps near the optimum. Updates theta, cols and eta in
    place; returns (m, H, L): the support's size, its last Hessian (0 x 0 when it changed since)
    and that Hessian's Cholesky factor. pr: `_probability(eta)`, made by the caller already."""
    n = y.shape[0]
    XsT = XiT[cols[:m]]
    th = theta[cols[:m]]
    pen = lam * signs[cols[:m]]
    pen[0] = 0.0
    f0 = np.nan  # the objective at th, computed when a line search needs it
    H, L = np.empty((0, 0)), np.empty((0, 0))
    chord = False
    for iteration in range(max_iter):
        if iteration > 0:
            pr = _probability(eta)
        g = pen - _rows_dot(XsT, (y - pr) / n)
        if not chord:
            H = _hessian(XsT, pr * (1.0 - pr) / n)
            L = _cholesky(H)
        d = _solve(H, L, -g)
        # the step may not carry a coefficient past zero (its sign is fixed on this support)
        t, j_cross = 1.0, -1
        for a in range(1, m):
            if d[a] * pen[a] < 0 and -th[a] / d[a] < t:
                t, j_cross = -th[a] / d[a], a
        t_max, slope, size = t, np.dot(g, d), np.abs(d).max()
        f_new = np.nan
        new, eta_new = th + t * d, eta
        for _half in range(60):
            new = th + t * d
            eta_new = _eta(XsT, new)
            if t == 1.0 and size < 1e-2:  # Newton's quadratic region: the full step is taken
                break
            if np.isnan(f0):
                f0 = _objective(y, th, pen, eta)
            f_new = _objective(y, new, pen, eta_new)
            if f_new <= f0 + 1e-4 * t * slope or t * size < 1e-15:
                break
            t /= 2
        th, f0 = new, f_new  # NaN: not needed unless the next step is a long one
        eta[:] = eta_new
        # near the optimum the Hessian barely moves: the next step reuses its factor (the chord
        # method), as the numpy solver does; after a long or cut step it is recomputed
        chord = t == 1.0 and size < CHORD_STEP
        if j_cross > 0 and t == t_max:  # reached zero: that coefficient leaves the support
            keep = np.ones(m, np.bool_)
            keep[j_cross] = False
            cols[j_cross:m - 1] = cols[j_cross + 1:m].copy()
            m -= 1
            th, pen, XsT = th[keep], pen[keep], XsT[keep]
            eta[:] = _eta(XsT, th)
            f0, H, chord = np.nan, np.empty((0, 0)), False
            continue
        # quadratic convergence: after a full step of 1e-3 sqrt(tol) the error is far below tol
        if t * size < tol or (t == 1.0 and size < 1e-3 * np.sqrt(tol)):
            break
    theta[:] = 0.0
    theta[cols[:m]] = th
    return m, H, L


@njit(cache=True)
def _violations(XiT, y, eta, lam, theta, cols, m, signs):
    """Features off the support whose |gradient| exceeds lam join it (cols, signs updated, cols
    sorted); returns the new support size (m when none) and `_probability(eta)`."""
    n, q = y.shape[0], XiT.shape[0]
    pr = _probability(eta)
    grad = _rows_dot(XiT, (y - pr) / n)
    off = np.ones(q, np.bool_)
    off[cols[:m]] = False
    off[0] = False
    grown = m
    for c in range(1, q):
        if off[c] and abs(grad[c]) > lam * (1.0 + KKT_SLACK):
            signs[c] = np.sign(grad[c])
            cols[grown] = c
            grown += 1
    if grown > m:
        cols[:grown].sort()
    return grown, pr


@njit(cache=True)
def _guess(theta, slope, previous_slope, step, h, same_support, curved):
    """The next lambda's solution from the last: a Taylor step of h in log(lambda), with the second
    derivative from the last two slopes where the support stayed. A coefficient whose guess
    crosses zero is guessed to leave (the KKT check brings it back if it stays)."""
    delta = h * slope
    if curved and same_support:
        delta += 0.5 * h * h * (slope - previous_slope) / step
    guess = theta + delta
    if not np.isfinite(guess).all():
        return theta.copy()
    for c in range(1, theta.shape[0]):
        if np.sign(guess[c]) != np.sign(theta[c]):
            guess[c] = 0.0
    return guess


@njit(cache=True)
def _slope(H, L, cols, m, signs, lam, q):
    """d theta / d log(lambda) at a solution: on the support, H dtheta = -sign (intercept 0); L:
    H's Cholesky factor (`_cholesky(H)`, made by the last Newton step)."""
    out = np.zeros(q)
    if H.shape[0] != m:
        return out
    rhs = np.zeros(m)
    for a in range(1, m):
        rhs[a] = -signs[cols[a]]
    d = _solve(H, L, rhs)
    for a in range(m):
        out[cols[a]] = lam * d[a]
    return out


@njit(cache=True)
def _path(Xi, y, lambdas, theta, tol, max_iter):
    """The solutions (L x q) at lambdas (decreasing) from the warm start theta, and the index of
    the first lambda whose active set did not settle (-1: none; the solutions stop there)."""
    q = Xi.shape[1]
    XiT = np.ascontiguousarray(Xi.T)
    out = np.zeros((lambdas.shape[0], q))
    cols = np.empty(q, np.int64)
    signs = np.sign(theta)
    theta = theta.copy()
    slope, previous_slope = np.zeros(q), np.zeros(q)
    support = theta != 0
    log_lam, step, same_support = 0.0, 0.0, False
    for k in range(lambdas.shape[0]):
        lam = lambdas[k]
        if k > 0:
            theta = _guess(theta, slope, previous_slope, step, np.log(lam) - log_lam, same_support, k > 1)
        m = 1
        cols[0] = 0
        for c in range(1, q):
            if theta[c] != 0:
                cols[m] = c
                m += 1
        eta = _eta(XiT[cols[:m]], theta[cols[:m]])
        if k > 0:  # features breaking KKT at the guess enter before the Newton steps
            m, pr = _violations(XiT, y, eta, lam, theta, cols, m, signs)
        else:
            pr = _probability(eta)
        settled, H, L = False, np.empty((0, 0)), np.empty((0, 0))
        for _round in range(2 * q + 10):
            m, H, L = _newton_on_support(XiT, y, lam, theta, cols, m, signs, tol, max_iter, eta, pr)
            grown, pr = _violations(XiT, y, eta, lam, theta, cols, m, signs)
            if grown == m:
                settled = True
                break
            m = grown
        if not settled:
            return out, k
        out[k] = theta
        new_support = theta != 0
        if k > 0:
            same_support = (new_support == support).all()
            step = np.log(lam) - log_lam
        previous_slope, slope = slope, _slope(H, L, cols, m, signs, lam, q)
        support, log_lam = new_support, np.log(lam)
    return out, -1


@njit(cache=True)
def _loglik(y, eta):
    """sum(y eta - log(1 + e^eta)) (the logistic log-likelihood, without overflow)."""
    s = 0.0
    for i in range(y.shape[0]):
        e = eta[i]
        s += y[i] * e - (e + np.log1p(np.exp(-e)) if e > 0 else np.log1p(np.exp(e)))
    return s


@njit(cache=True)
def _logistic_ml(y, Xi, max_iter, tol, max_coef):
    n, k = Xi.shape
    ybar = min(max(y.mean(), 1e-6), 1 - 1e-6)
    beta = np.zeros(k)
    beta[0] = np.log(ybar / (1 - ybar))
    ll = _loglik(y, Xi @ beta)
    converged = False
    info = np.eye(k)
    for _ in range(max_iter):
        pi = _probability(Xi @ beta)
        info = Xi.T @ (Xi * (pi * (1 - pi)).reshape(n, 1))
        try:
            step = np.linalg.solve(info, Xi.T @ (y - pi))
        except Exception:  # singular: as numpy's LinAlgError, the fit stops there
            break
        new, new_ll = beta + step, ll
        for _half in range(30):
            new = beta + step
            new_ll = _loglik(y, Xi @ new)
            if new_ll >= ll - 1e-12:
                break
            step = step / 2
        beta, ll = new, new_ll
        if np.abs(step).max() < tol:
            converged = True
            break
        if k > 1 and np.abs(beta[1:]).max() > max_coef:
            break
    return beta, info, ll, converged


@njit(cache=True)
def _ranks(VT, orders):
    """Average ranks of each row of VT (p x n, C order: each original column contiguous), given
    the order that sorts each row (`orders`, p x n)."""
    p, n = VT.shape
    out = np.empty((p, n))
    for j in range(p):
        column = VT[j]
        order = orders[j]
        start = 0
        while start < n:  # a run of tied values: positions start..end-1, ranks start+1..end
            end = start + 1
            while end < n and column[order[end]] == column[order[start]]:
                end += 1
            for i in range(start, end):
                out[j, order[i]] = 0.5 * (start + 1 + end)
            start = end
    return out


@njit(cache=True)
def _group_rank_sums(VT, orders, group):
    """`group_rank_sums` given each row's sorting order."""
    p, n = VT.shape
    sums, ties = np.zeros(p), np.zeros(p)
    for j in range(p):
        column, order = VT[j], orders[j]
        start = 0
        while start < n:  # a run of tied values: positions start..end-1, ranks start+1..end
            end = start + 1
            while end < n and column[order[end]] == column[order[start]]:
                end += 1
            count = 0
            for i in range(start, end):
                if group[order[i]]:
                    count += 1
            sums[j] += count * (0.5 * (start + 1 + end))
            t = float(end - start)
            ties[j] += t ** 3 - t
            start = end
    return sums, ties



@njit(cache=True)
def _icc_squares(V, at_first, at_second, rows):
    """`icc_squares` (V in Fortran order: each column contiguous)."""
    p, n = at_first.shape[0], rows.shape[0]
    ss_rows, ss_cols, ss_error, scale = np.empty(p), np.empty(p), np.empty(p), np.empty(p)
    for j in range(p):
        a, b = V[:, at_first[j]], V[:, at_second[j]]
        top, sum_a, sum_b = 0.0, 0.0, 0.0
        for i in rows:
            top = max(top, abs(a[i]), abs(b[i]))
            sum_a += a[i]
            sum_b += b[i]
        centre = (sum_a / n + sum_b / n) / 2.0  # centred per feature: no cancellation with large values
        mean_a, mean_b = 0.0, 0.0
        for i in rows:
            mean_a += a[i] - centre
            mean_b += b[i] - centre
        mean_a, mean_b = mean_a / n, mean_b / n
        shift = (mean_a - mean_b) / 2.0
        squares_rows, squares_error = 0.0, 0.0
        for i in rows:
            x, z = a[i] - centre, b[i] - centre
            r, h = (x + z) / 2.0, (x - z) / 2.0 - shift
            squares_rows += r * r
            squares_error += h * h
        ss_rows[j], ss_cols[j], ss_error[j] = 2.0 * squares_rows, n * (mean_a ** 2 + mean_b ** 2), 2.0 * squares_error
        scale[j] = top ** 2
    return ss_rows, ss_cols, ss_error, scale


if __name__ == "__main__":
    print(f"numba {'available' if available() else 'not used'}; compiled or loaded in {warm_up():.1f} s")
