"""The exact LASSO solver before the speed work of issue 13 (IMNRiskLib/modelling/selection.py at 529e068):
one problem at a time, warm starts down the lambda grid, an active set with the signs fixed and
Newton steps on the support. Frozen here so that Testing/test_speed_equality.py can check the
side-by-side solver (`selection.lasso_paths`) against it."""

from __future__ import annotations

import warnings

import numpy as np


def _probability(eta: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-eta)); exp overflows to inf for a very negative eta, which gives exactly the
    0 wanted, so that overflow is not warned about."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-eta))


def lambda_max(X: np.ndarray, y: np.ndarray) -> float:
    """Smallest lambda at which every LASSO coefficient is 0 (glmnet's path start)."""
    return float(np.abs(X.T @ (y - y.mean())).max() / len(y))


def lasso_path(X: np.ndarray, y: np.ndarray, lambdas: np.ndarray, tol: float = 1e-10, max_iter: int = 200):
    """Coefficients and intercepts along a lambda path (glmnet's objective -loglik/n + lambda *
    ||b||_1, intercept unpenalised), each solved exactly: glmnet's strategy of warm starts down the
    (decreasing) grid with an active set, the support's smooth problem solved by Newton steps with
    the signs fixed and the KKT conditions checked on every other feature (`_lasso_exact`). The
    validation solves ~10^4 paths: this costs a few Newton steps per lambda, whatever the grid."""
    X, y = np.asarray(X, float), np.asarray(y, float)
    lambdas = np.asarray(lambdas, float)
    Xi = np.column_stack([np.ones(len(y)), X])
    coefs = np.zeros((len(lambdas), X.shape[1]))
    intercepts = np.zeros(len(lambdas))
    theta = np.zeros(Xi.shape[1])
    theta[0] = _null_intercept(y)
    for k in np.argsort(-lambdas, kind="stable"):  # largest first: each solution warm-starts the next
        theta = _lasso_exact(Xi, y, float(lambdas[k]), theta, tol, max_iter)
        coefs[k], intercepts[k] = theta[1:], theta[0]
    return coefs, intercepts


def _null_intercept(y: np.ndarray) -> float:
    ybar = min(max(float(np.mean(y)), 1e-6), 1 - 1e-6)
    return float(np.log(ybar / (1 - ybar)))


def _lasso_exact(Xi: np.ndarray, y: np.ndarray, lam: float, theta: np.ndarray, tol: float = 1e-10,
                 max_iter: int = 200) -> np.ndarray:
    """The LASSO logistic optimum at one lambda from a warm start theta = [intercept, b] (Xi has
    the intercept column first), by an active-set method.

    On the active set S with signs s the objective is smooth: -loglik/n + lam * s'b_S. Newton
    steps (Armijo backtracking) are cut where a coefficient would cross zero; that coefficient
    leaves S. When the smooth problem is solved, features outside S whose |gradient| exceeds lam
    enter S with the gradient's sign (KKT), until none does."""
    n = len(y)
    theta = np.array(theta, float)
    cols = np.flatnonzero(theta != 0)
    cols = np.concatenate([[0], cols[cols > 0]])
    signs = np.sign(theta)
    seen = set()
    for _ in range(max_iter):
        theta, cols, eta = _newton_on_support(Xi, y, lam, theta, cols, signs, tol, max_iter)
        grad = Xi.T @ (y - _probability(eta)) / n
        grad[cols] = 0.0
        enter = np.flatnonzero(np.abs(grad) > lam)
        if not len(enter):
            return theta
        key = (tuple(cols), tuple(enter))
        if key in seen:  # the active set cycles (features entering and leaving): glum settles it
            break
        seen.add(key)
        signs[enter] = np.sign(grad[enter])
        cols = np.sort(np.concatenate([cols, enter]))
    return _lasso_glum_polished(Xi, y, lam, tol, max_iter)


def _lasso_glum_polished(Xi: np.ndarray, y: np.ndarray, lam: float, tol: float, max_iter: int) -> np.ndarray:
    """The rare lambda where the active set cycles: glum's coordinate descent finds the support,
    Newton steps on it polish the coefficients to full precision."""
    from glum import GeneralizedLinearRegressor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GeneralizedLinearRegressor(family="binomial", l1_ratio=1.0, alpha=lam, gradient_tol=1e-10,
                                           scale_predictors=False).fit(Xi[:, 1:], y)
    theta = np.concatenate([[model.intercept_], np.where(np.abs(model.coef_) > 1e-10, model.coef_, 0.0)])
    cols = np.concatenate([[0], np.flatnonzero(theta[1:]) + 1])
    polished, kept, _ = _newton_on_support(Xi, y, lam, theta, cols, np.sign(theta), tol, max_iter)
    return polished if len(kept) == len(cols) else theta


def _newton_on_support(Xi, y, lam, theta, cols, signs, tol, max_iter):
    """Minimise -loglik/n + lam * s'b over theta[cols] (cols[0] = 0, the intercept) with the
    signs s fixed; a coefficient reaching zero leaves the support. Returns (theta, cols, eta)."""
    n = len(y)
    Xs = Xi[:, cols]
    th = theta[cols]
    pen = lam * signs[cols]
    pen[0] = 0.0
    eta = Xs @ th
    f0 = None  # the objective at th, computed when a line search needs it
    for _ in range(max_iter):
        pr = _probability(eta)
        grad = pen - (Xs.T @ (y - pr)) / n
        H = (Xs.T * (pr * (1 - pr))) @ Xs / n
        try:
            d = np.linalg.solve(H, -grad)
        except np.linalg.LinAlgError:
            d = -np.linalg.lstsq(H, grad, rcond=None)[0]
        # the step may not carry a coefficient past zero (its sign is fixed on this support)
        toward = d[1:] * pen[1:] < 0
        t, j_cross = 1.0, -1
        if toward.any():
            ratios = np.where(toward, -th[1:] / np.where(toward, d[1:], 1.0), np.inf)
            j = int(np.argmin(ratios))
            if ratios[j] < 1.0:
                t, j_cross = float(ratios[j]), j + 1
        t_max, slope, size = t, float(grad @ d), float(np.abs(d).max())
        for _half in range(60):
            new = th + t * d
            eta_new = Xs @ new
            if t == 1.0 and size < 1e-2:  # Newton's quadratic region: the full step is taken
                f_new = None
                break
            if f0 is None:
                f0 = float(np.mean(np.logaddexp(0, eta) - y * eta) + pen @ th)
            f_new = float(np.mean(np.logaddexp(0, eta_new) - y * eta_new) + pen @ new)
            if f_new <= f0 + 1e-4 * t * slope or t * size < 1e-15:
                break
            t /= 2
        th, eta = new, eta_new
        f0 = f_new  # None: not needed unless the next step is a long one
        if j_cross > 0 and t == t_max:  # reached zero: that coefficient leaves the support
            keep = np.arange(len(cols)) != j_cross
            cols, th, pen, Xs = cols[keep], th[keep], pen[keep], Xs[:, keep]
            eta, f0 = Xs @ th, None
            continue
        # quadratic convergence: after a full step of 1e-3 sqrt(tol) the error is far below tol
        if t * size < tol or (t == 1.0 and size < 1e-3 * np.sqrt(tol)):
            break
    out = np.zeros_like(theta)
    out[cols] = th
    return out, cols, eta
