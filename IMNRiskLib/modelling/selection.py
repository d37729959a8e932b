"""Selection: the paper's radiomics feature-selection chain as scikit-learn transformers.

|r| > 0.9 filter -> collinearity (VIF) -> Mann-Whitney U -> z-score -> LASSO logistic (lambda by
stratified CV) -> forward selection by likelihood ratio -> Rad-Score (logistic on the survivors).
Composed in one Pipeline, so that cross-validation and the bootstrap refit every step on each
training sample (no leakage). Every step works on DataFrames, keeps feature names, and records
how many features it kept (the funnel).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

from IMNRiskLib.modelling.clinical import LogisticFit, fit_firth, fit_ml, fit_ml_arrays, loglik_ml_batch


def association(X: pd.DataFrame, y: np.ndarray) -> pd.Series:
    """Strength of each feature's univariate association with the outcome: |AUC - 0.5|
    (rank-based, so monotone transforms do not matter)."""
    return pd.Series(_association(X.to_numpy(float), np.asarray(y)), index=X.columns)


def _association(values: np.ndarray, y: np.ndarray) -> np.ndarray:
    m, n = int(y.sum()), int(len(y) - y.sum())
    auc = (column_ranks(values)[y == 1].sum(axis=0) - m * (m + 1) / 2.0) / (m * n)
    return np.abs(auc - 0.5)


def column_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks within each column (ties averaged), scipy's `rankdata(values, axis=0)`: compiled when
    numba is there (`kernels.ranks`, ~8x faster), the same numbers either way."""
    from IMNRiskLib.stats import kernels
    if kernels.available() and np.isfinite(values).all():
        return kernels.ranks(values)
    return stats.rankdata(values, axis=0)


def strongest_first(X: pd.DataFrame, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Column positions ordered by association with the outcome (strongest first; ties in column
    order, as pandas' stable descending sort), and the centred values in that order: the visiting
    order of the greedy filters."""
    values = X.to_numpy(float)
    order = np.argsort(-_association(values, np.asarray(y)), kind="stable")
    Z = values[:, order]
    return order, Z - Z.mean(0)


class _Step(BaseEstimator, TransformerMixin):
    """A selection step: fit() sets `selected_` (and `positions_`, their column positions in the
    table it was fitted on, via `_keep`); transform() keeps those columns."""

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return X[self.selected_]

    def fit_transform(self, X: pd.DataFrame, y=None, **fit_params) -> pd.DataFrame:
        """fit, then the kept columns by position (what transform gives, with less pandas work)."""
        self.fit(X, y, **fit_params)
        return X.take(self.positions_, axis=1)

    def _keep(self, X: pd.DataFrame, positions) -> None:
        """Keep the columns of X at these positions, in this order."""
        self.positions_ = np.asarray(positions, dtype=int)
        self.selected_ = list(X.columns[self.positions_])

    def get_feature_names_out(self, input_features=None):
        return np.array(self.selected_, dtype=object)


class ICCFilter(_Step):
    """Keep features whose inter-reader ICC(2,1) on the training rows is at least `threshold`
    (undefined ICCs dropped); the first step, so no later step sees an unstable feature.

    The second reader's values travel with the rows as extra columns (feature name +
    `stability.READER2_SUFFIX`; NaN for a patient read once), so every CV fold and bootstrap sample
    computes the ICC on its own training patients; transform() drops them. A table without them
    (e.g. new patients to score) passes through to the kept columns.
    """

    def __init__(self, threshold: float = 0.75):
        self.threshold = threshold

    def fit(self, X: pd.DataFrame, y=None):
        from IMNRiskLib.radiomics.stability import feature_icc, reader_positions
        self.icc_ = feature_icc(X)
        _, at_first, at_second = reader_positions(X.columns)
        self.n_patients_ = int(np.isfinite(X.to_numpy(float)[:, at_second]).all(axis=1).sum())
        self._keep(X, at_first[self.icc_.to_numpy() >= self.threshold])  # NaN >= t is False
        if not self.selected_:
            raise ValueError(f"no feature has ICC >= {self.threshold:g} on these patients")
        return self


class ConstantFilter(_Step):
    """Drop features that do not vary in the training data (nothing to learn from them)."""

    def fit(self, X: pd.DataFrame, y=None):
        values = X.to_numpy(float)
        sd = values.std(axis=0)
        keep = (sd > 1e-12 * (np.abs(values).max(axis=0) + 1)) & np.isfinite(sd)
        self._keep(X, np.flatnonzero(keep))
        return self


class CorrelationFilter(_Step):
    """Among features correlated above `threshold` (|Pearson r|), keep the one more associated
    with the outcome: features are visited strongest first and kept if not too close to a kept one."""

    def __init__(self, threshold: float = 0.9):
        self.threshold = threshold

    def fit(self, X: pd.DataFrame, y):
        order, Z = strongest_first(X, y)
        Z = Z / Z.std(0)
        kept: List[int] = []
        blocked = np.zeros(Z.shape[1], bool)  # blocked[j]: some kept feature has not |r| <= threshold with j
        # |r| only of the features still unblocked, a block at a time: most are blocked before
        # their turn, so most of the correlation matrix is never needed
        for start in range(0, Z.shape[1], CORRELATION_BLOCK):
            block = start + np.flatnonzero(~blocked[start:start + CORRELATION_BLOCK])
            if not len(block):
                continue
            corr = np.abs(Z[:, block].T @ Z) / len(Z)  # row: |r| of a candidate with every feature
            for j, row in zip(block, corr):
                if not blocked[j]:
                    kept.append(j)
                    blocked |= ~(row <= self.threshold)
        self._keep(X, order[kept])
        return self


CORRELATION_BLOCK = 32  # candidates whose correlations are computed together (one matrix product)


def ranked(X: pd.DataFrame) -> pd.DataFrame:
    """Column-wise ranks (ties averaged): Pearson's r of ranks is Spearman's rho."""
    return pd.DataFrame(column_ranks(X.to_numpy(float)), index=X.index, columns=X.columns)


class SpearmanFilter(CorrelationFilter):
    """The paper's |r| > 0.9 filter with Spearman's rank correlation (`--protocol paper`): the same
    keep-the-stronger rule as CorrelationFilter, on ranks (the association is rank-based, so the
    visiting order is unchanged)."""

    def fit(self, X: pd.DataFrame, y):
        return super().fit(ranked(X), y)


class VIFFilter(_Step):
    """Remove remaining collinearity: visiting features strongest first, keep one if its variance
    inflation factor against those already kept is at most `threshold` (VIF = 1 / (1 - R^2)).

    Forward rather than backward elimination because with more features than patients every
    VIF of the full set is infinite; at most n - 2 features can be kept.
    """

    def __init__(self, threshold: float = 10.0):
        self.threshold = threshold

    def fit(self, X: pd.DataFrame, y):
        order, Z = strongest_first(X, y)
        n = len(Z)
        basis = np.zeros((n, 0))
        kept: List[int] = []
        max_r2 = 1.0 - 1.0 / self.threshold
        for j in range(Z.shape[1]):
            if len(kept) >= n - 2:
                break
            v = Z[:, j]
            ss = float(v @ v)
            resid = v - basis @ (basis.T @ v)
            r2 = 1.0 - float(resid @ resid) / ss
            if r2 <= max_r2:
                kept.append(j)
                basis = np.column_stack([basis, resid / np.sqrt(resid @ resid)])
        self._keep(X, order[kept])
        return self


class MannWhitneyFilter(_Step):
    """Keep features whose Mann-Whitney U test between outcome groups has p < `p_threshold`
    (normal approximation with continuity correction); keeps the best `min_keep` if fewer pass."""

    def __init__(self, p_threshold: float = 0.05, min_keep: int = 1):
        self.p_threshold = p_threshold
        self.min_keep = min_keep

    def fit(self, X: pd.DataFrame, y):
        y = np.asarray(y)
        p = stats.mannwhitneyu(X.to_numpy(float)[y == 1], X.to_numpy(float)[y == 0], axis=0,
                               method="asymptotic", use_continuity=True).pvalue
        self.p_values_ = pd.Series(p, index=X.columns)
        keep = self.p_values_[self.p_values_ < self.p_threshold]
        self.fallback_ = None
        if len(keep) < self.min_keep:
            self.fallback_ = (f"{len(keep)} feature(s) with Mann-Whitney p < {self.p_threshold:g}; the "
                              f"{self.min_keep} smallest p kept")
            keep = self.p_values_.nsmallest(self.min_keep)
        self._keep(X, np.flatnonzero(X.columns.isin(keep.index)))
        return self


class ZScore(BaseEstimator, TransformerMixin):
    """z-score with the training mean and SD (population SD, as glmnet's standardisation);
    the means and SDs go into the model file."""

    def fit(self, X: pd.DataFrame, y=None):
        values = X.to_numpy(float)
        self.mean_ = pd.Series(values.mean(axis=0), index=X.columns)
        sd = values.std(axis=0)
        self.scale_ = pd.Series(np.where(sd > 0, sd, 1.0), index=X.columns)
        self.selected_ = list(X.columns)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return (X[self.selected_] - self.mean_) / self.scale_

    def fit_transform(self, X: pd.DataFrame, y=None, **fit_params) -> pd.DataFrame:
        """fit, then transform's numbers computed on the array (the same operations, less pandas)."""
        self.fit(X)
        values = (X.to_numpy(float) - self.mean_.to_numpy()) / self.scale_.to_numpy()
        return pd.DataFrame(values, index=X.index, columns=X.columns)

    def get_feature_names_out(self, input_features=None):
        return np.array(self.selected_, dtype=object)


def lambda_max(X: np.ndarray, y: np.ndarray) -> float:
    """Smallest lambda at which every LASSO coefficient is 0 (glmnet's path start)."""
    return float(np.abs(X.T @ (y - y.mean())).max() / len(y))


def lasso_path(X: np.ndarray, y: np.ndarray, lambdas: np.ndarray, tol: float = 1e-10, max_iter: int = 200):
    """Coefficients and intercepts along a lambda path (glmnet's objective -loglik/n + lambda *
    ||b||_1, intercept unpenalised), each lambda solved exactly (`lasso_paths` with one problem)."""
    return lasso_paths([(X, y)], lambdas, tol, max_iter)[0]


class _Problems:
    """Several LASSO problems on the same features solved side by side (the CV folds and the whole
    sample): rows padded with zero weight to one length, so that one numpy call does a step of
    every problem. Xi has the intercept column first; w = 1/n on a problem's rows, 0 on padding,
    so that sum(w * loss) is each problem's -loglik/n."""

    def __init__(self, Xi: np.ndarray, y: np.ndarray, w: np.ndarray, sizes: List[int]):
        self.Xi, self.y, self.w, self.sizes = Xi, y, w, sizes
        self.XiT = Xi.transpose(0, 2, 1)
        self._last: Tuple[Optional[bytes], Optional["_Problems"]] = (None, None)

    @classmethod
    def of(cls, problems) -> "_Problems":
        rows = max(len(y) for _, y in problems)
        q = np.asarray(problems[0][0]).shape[1] + 1
        Xi, Y, W = np.zeros((len(problems), rows, q)), np.zeros((len(problems), rows)), np.zeros((len(problems), rows))
        for b, (X, y) in enumerate(problems):
            n = len(y)
            Xi[b, :n, 0] = 1.0
            Xi[b, :n, 1:] = X
            Y[b, :n] = y
            W[b, :n] = 1.0 / n
        return cls(Xi, Y, W, [len(y) for _, y in problems])

    def columns(self, cols: np.ndarray) -> "_Problems":
        """The same problems on some columns only (the supports' union: smaller Newton systems);
        the last one asked for is kept, since the support changes at few lambdas."""
        key = cols.tobytes()
        if self._last[0] != key:
            self._last = (key, _Problems(np.ascontiguousarray(self.Xi[:, :, cols]), self.y, self.w, self.sizes))
        return self._last[1]

    def eta(self, theta: np.ndarray) -> np.ndarray:
        return (self.Xi @ theta[:, :, None])[:, :, 0]

    def score(self, pr: np.ndarray) -> np.ndarray:
        """Gradient of loglik/n in theta per problem (B x q), pr the fitted probabilities."""
        return (self.XiT @ (self.w * (self.y - pr))[:, :, None])[:, :, 0]

    def hessian(self, pr: np.ndarray, which: Optional[np.ndarray] = None) -> np.ndarray:
        """Hessian of -loglik/n (B x q x q), or of the problems `which` (a boolean mask) only."""
        if which is None:
            return (self.XiT * (self.w * pr * (1.0 - pr))[:, None, :]) @ self.Xi
        w = self.w[which] * pr[which] * (1.0 - pr[which])
        return (self.XiT[which] * w[:, None, :]) @ self.Xi[which]

    def objective(self, eta: np.ndarray, theta: np.ndarray, pen: np.ndarray) -> np.ndarray:
        """-loglik/n + pen'theta per problem (pen: lambda x sign on the support, 0 elsewhere)."""
        return (self.w * (np.logaddexp(0.0, eta) - self.y * eta)).sum(axis=1) + (pen * theta).sum(axis=1)

    def one(self, b: int):
        """Problem b alone, unpadded: (Xi, y)."""
        n = self.sizes[b]
        return self.Xi[b, :n], self.y[b, :n]


def lasso_paths(problems, lambdas: np.ndarray, tol: float = 1e-10, max_iter: int = 200,
                compiled: Optional[bool] = None):
    """`lasso_path` of several problems [(X, y), ...] on the same features and lambda grid:
    compiled (`kernels.lasso_path`, one by one) when numba is there (`compiled` None: `kernels.available()`),
    else with numpy: side by side on small tables (`numpy_lasso_paths`), one by one on large ones,
    where the side-by-side Newton systems on the union of the supports cost more than the numpy
    calls they share. The same optimum every way. Returns [(coefs, intercepts)] per problem."""
    from IMNRiskLib.stats import kernels
    if kernels.available() if compiled is None else compiled:
        return [kernels.lasso_path(X, y, lambdas, tol, max_iter) for X, y in problems]
    if max(np.size(X) for X, _ in problems) <= SIDE_BY_SIDE_CELLS:
        return numpy_lasso_paths(problems, lambdas, tol, max_iter)
    return [numpy_lasso_paths([problem], lambdas, tol, max_iter)[0] for problem in problems]


def numpy_lasso_paths(problems, lambdas: np.ndarray, tol: float = 1e-10, max_iter: int = 200):
    """`lasso_path` of several problems [(X, y), ...] on the same features and lambda grid, solved
    side by side with numpy: glmnet's strategy of warm starts down the (decreasing) grid with an active set;
    on the active set the signs are fixed and the problem is smooth, solved by Newton steps; the
    KKT conditions are then checked on every other feature (`_solve_at`). The last solutions and
    their tangents predict the next ones (`_PathGuess`), so that a lambda costs a few Newton steps
    (about 4 for the batch, most of them cheap). The validation solves ~10^4 paths: side by side,
    one numpy call serves every CV fold. Returns [(coefs, intercepts)] per problem."""
    lambdas = np.asarray(lambdas, float)
    P = _Problems.of([(np.asarray(X, float), np.asarray(y, float)) for X, y in problems])
    B, q = P.Xi.shape[0], P.Xi.shape[2]
    coefs = np.zeros((B, len(lambdas), q - 1))
    intercepts = np.zeros((B, len(lambdas)))
    theta = np.zeros((B, q))
    theta[:, 0] = [_null_intercept(P.one(b)[1]) for b in range(B)]
    path = _PathGuess()
    curvature = _Curvature.none(B, q)
    for k in np.argsort(-lambdas, kind="stable"):  # largest first: each solution warm-starts the next
        lam = float(lambdas[k])
        start = path.guess(theta, lam)
        theta = _solve_at(P, lam, start, tol, max_iter, *_entering(P, lam, start), curvature)
        path.solved(theta, lam, _tangent(P, theta, curvature))
        coefs[:, k], intercepts[:, k] = theta[:, 1:], theta[:, 0]
    return [(coefs[b], intercepts[b]) for b in range(B)]


def _null_intercept(y: np.ndarray) -> float:
    ybar = min(max(float(np.mean(y)), 1e-6), 1 - 1e-6)
    return float(np.log(ybar / (1 - ybar)))


def _tangent(P: _Problems, theta: np.ndarray, curvature: "_Curvature") -> np.ndarray:
    """d theta / d lambda at the solutions (B x q): on the support S, H_S dtheta_S = -sign(theta_S)
    (the intercept's entry 0), by differentiating the optimality condition; H^-1 from the last
    Newton steps where they were on this support. A guess only: the next lambda's Newton steps
    start from it and make it exact."""
    active = theta != 0
    active[:, 0] = True
    stale = ~curvature.valid_for(active)
    if stale.any():
        cols = np.flatnonzero(active.any(axis=0))
        S = P.columns(cols)
        Hinv = _inverse(_masked(S.hessian(expit(S.eta(theta[:, cols])), stale), active[stale][:, cols]))
        curvature.store(cols, Hinv, active[stale], stale)
    rhs = -np.sign(theta)
    rhs[:, 0] = 0.0
    return (curvature.Hinv @ rhs[:, :, None])[:, :, 0]


class _PathGuess:
    """Where the next lambda's solutions should lie, from the last two along the path: a Taylor
    step in log(lambda) (the path is close to linear there where coefficients grow, near
    separation), with the second derivative from the last two tangents where the support stayed."""

    def __init__(self):
        self.log_lam, self.slope, self.previous_slope, self.same_support = None, None, None, None

    def solved(self, theta: np.ndarray, lam: float, tangent: np.ndarray) -> None:
        """Record the solutions at lam and their tangent d theta / d lambda."""
        slope = lam * tangent  # d theta / d log(lambda)
        support = theta != 0
        if self.slope is not None:
            self.same_support = (support == self.support).all(axis=1)
            self.previous_slope, self.step = self.slope, np.log(lam) - self.log_lam
        self.support, self.slope, self.log_lam = support, slope, np.log(lam)

    def guess(self, theta: np.ndarray, lam: float) -> np.ndarray:
        if self.slope is None:
            return theta
        h = np.log(lam) - self.log_lam
        delta = h * self.slope
        if self.previous_slope is not None:
            curve = (self.slope - self.previous_slope) / self.step
            delta = delta + np.where(self.same_support[:, None], 0.5 * h * h * curve, 0.0)
        return _predicted(theta, delta)


def _predicted(theta: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """theta moved by delta, the guess at the next lambda; a coefficient whose guess crosses zero
    is guessed to leave (0: if it stays, the KKT check brings it back)."""
    guess = theta + delta
    guess[:, 1:][np.sign(guess[:, 1:]) != np.sign(theta[:, 1:])] = 0.0
    bad = ~np.isfinite(guess).all(axis=1)
    guess[bad] = theta[bad]
    return guess


def _entering(P: _Problems, lam: float, theta: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The support and signs to start from at lambda: theta's, plus the features that violate the
    KKT conditions at theta already (|gradient| > lambda; they enter with the gradient's sign),
    so that most lambdas need one round of Newton steps, not two."""
    grad = P.score(expit(P.eta(theta)))
    active = theta != 0
    active[:, 0] = True
    enter = (np.abs(grad) > lam) & ~active
    signs = np.where(enter, np.sign(grad), np.sign(theta))
    return active | enter, signs


def _masked(H: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Hessians restricted to each problem's support: rows and columns off it replaced by the
    identity's (their Newton step is then 0)."""
    off = ~active
    H = np.where(off[:, :, None] | off[:, None, :], 0.0, H)
    H[off, np.nonzero(off)[1]] = 1.0
    return H


def _solve_at(P: _Problems, lam: float, theta: np.ndarray, tol: float, max_iter: int,
              active: Optional[np.ndarray] = None, signs: Optional[np.ndarray] = None,
              curvature: Optional["_Curvature"] = None) -> np.ndarray:
    """The LASSO logistic optimum of every problem at one lambda from warm starts theta (B x q),
    by an active-set method. On the active set S with signs s the objective is smooth:
    -loglik/n + lam * s'b_S, minimised by `_newton`; then features outside S whose |gradient|
    exceeds lam enter S with the gradient's sign (KKT), until none does. An active set that
    cycles (features entering and leaving) is settled by glum (`_lasso_glum_polished`). `active` and
    `signs`: a support to start from (default: theta's non-zeros); `curvature`: the inverse
    Hessians of the last solves, reused where still valid and updated in place."""
    theta = np.array(theta, float)
    if active is None:
        active = theta != 0
        active[:, 0] = True
        signs = np.sign(theta)
    active, signs = active.copy(), signs.copy()
    curvature = curvature or _Curvature.none(*theta.shape)
    pending = np.ones(len(theta), bool)
    seen = [set() for _ in range(len(theta))]
    for _ in range(max_iter):
        theta, active = _newton(P, lam, theta, active, signs, pending, tol, max_iter, curvature)
        grad = P.score(expit(P.eta(theta)))
        enter = (np.abs(grad) > lam) & ~active & pending[:, None]
        pending = enter.any(axis=1)
        for b in np.flatnonzero(pending):
            key = (tuple(np.flatnonzero(active[b])), tuple(np.flatnonzero(enter[b])))
            if key in seen[b]:
                pending[b] = False
                theta[b] = _lasso_glum_polished(P, b, lam, tol, max_iter)
                curvature.forget(b)
            seen[b].add(key)
        enter &= pending[:, None]
        if not enter.any():
            return theta
        signs[enter] = np.sign(grad[enter])
        active |= enter
    for b in np.flatnonzero(pending):  # not settled in max_iter rounds
        theta[b] = _lasso_glum_polished(P, b, lam, tol, max_iter)
        curvature.forget(b)
    return theta


def glum_lasso(Xi: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """[intercept, coefficients] by glum's coordinate descent (Xi: intercept column first), for the
    rare lambda where the active set cycles; converged to a tolerance only, so it is then polished."""
    from glum import GeneralizedLinearRegressor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GeneralizedLinearRegressor(family="binomial", l1_ratio=1.0, alpha=lam, gradient_tol=1e-10,
                                           scale_predictors=False).fit(Xi[:, 1:], y)
    return np.concatenate([[model.intercept_], np.where(np.abs(model.coef_) > 1e-10, model.coef_, 0.0)])


def _lasso_glum_polished(P: _Problems, b: int, lam: float, tol: float, max_iter: int) -> np.ndarray:
    """The rare lambda where the active set cycles: glum's coordinate descent finds the support,
    Newton steps on it polish the coefficients to full precision."""
    Xi, y = P.one(b)
    theta = glum_lasso(Xi, y, lam)
    one = _Problems.of([(Xi[:, 1:], y)])
    active = (theta != 0)[None, :]
    active[0, 0] = True
    polished, kept = _newton(one, lam, theta[None, :], active, np.sign(theta)[None, :], np.ones(1, bool), tol,
                             max_iter)
    return polished[0] if kept.sum() == active.sum() else theta


def _newton(P: _Problems, lam: float, theta: np.ndarray, active: np.ndarray, signs: np.ndarray,
            todo: np.ndarray, tol: float, max_iter: int, curvature: Optional["_Curvature"] = None):
    """Minimise -loglik/n + lam * s'b over each problem's support (column 0, the intercept,
    always on it) with the signs s fixed, for the problems in `todo`; a coefficient that reaches
    zero leaves the support. Newton steps with Armijo backtracking, cut where a coefficient
    would cross zero, on the union of the supports' columns. `curvature`: inverse Hessians of
    earlier solves, used where made for the same support, and updated. Returns (theta, active)."""
    curvature = curvature or _Curvature.none(*theta.shape)
    cols = np.flatnonzero(active.any(axis=0))
    S = P.columns(cols)
    th, act = theta[:, cols], active[:, cols]
    Hinv, valid = curvature.on(cols), curvature.valid_for(active)
    th, act, Hinv, valid = _newton_steps(S, lam, th, act, signs[:, cols], todo.copy(), tol, max_iter, Hinv, valid)
    theta, active = theta.copy(), active.copy()
    theta[:, cols], active[:, cols] = th, act
    curvature.store(cols, Hinv[valid], active[valid], valid)
    curvature.forget(~valid)
    return theta, active


@dataclass
class _Curvature:
    """The inverse Hessian of each problem (B x q x q, the identity off its support) and the
    support it was made for (B x q; all False: none yet): reused while a problem's support stays."""

    Hinv: np.ndarray
    support: np.ndarray
    identity: np.ndarray  # B identity matrices, the blank to store into

    @classmethod
    def none(cls, B: int, q: int) -> "_Curvature":
        identity = np.tile(np.eye(q), (B, 1, 1))
        return cls(identity.copy(), np.zeros((B, q), bool), identity)

    def valid_for(self, active: np.ndarray) -> np.ndarray:
        """Which problems' inverse was made for this support (B x q)."""
        return (self.support == active).all(axis=1)

    def on(self, cols: np.ndarray) -> np.ndarray:
        """The inverses restricted to columns `cols` (exact where the support lies within them)."""
        return self.Hinv[:, cols[:, None], cols[None, :]]

    def store(self, cols: np.ndarray, Hinv: np.ndarray, support: np.ndarray, which: np.ndarray) -> None:
        """Keep inverses made on columns `cols` for the problems `which` (a boolean mask)."""
        if not which.any():
            return
        full = self.identity[: int(which.sum())].copy()
        full[:, cols[:, None], cols[None, :]] = Hinv
        self.Hinv[which], self.support[which] = full, support

    def forget(self, which) -> None:
        self.support[which] = False


def _newton_steps(S: _Problems, lam: float, theta: np.ndarray, active: np.ndarray, signs: np.ndarray,
                  todo: np.ndarray, tol: float, max_iter: int, Hinv: np.ndarray, valid: np.ndarray):
    """`_newton`'s iterations, on the support columns S. `Hinv` and `valid`: inverse Hessians to
    start with (the last lambda's) and which of them fit the support. Near the optimum (steps
    below `FRESH_HESSIAN`) a problem's inverse Hessian is reused (the chord method): the Hessian
    barely moves there, and recomputing it is most of an iteration's cost; it is recomputed after
    a long or cut step, a change of support, and after one step with another lambda's.
    Returns (theta, active, Hinv, valid)."""
    B = len(theta)
    rows = np.arange(B)
    pen = lam * signs * active
    pen[:, 0] = 0.0
    eta = S.eta(theta)
    f0 = np.full(B, np.nan)  # each objective at theta, computed when a line search needs it
    Hinv, valid = Hinv.copy(), valid.copy()
    carried = valid.copy()  # made for another lambda: good for one step
    long_step = np.zeros(B, bool)
    for step in range(max_iter):
        if not todo.any():
            break
        pr = expit(eta)
        grad = (pen - S.score(pr)) * active
        fresh = todo & (~valid | long_step | (carried & (step > 0)))
        if fresh.any():
            Hinv[fresh] = _inverse(_masked(S.hessian(pr, fresh), active[fresh]))
            valid |= fresh
            carried &= ~fresh
        d = -(Hinv @ grad[:, :, None])[:, :, 0]
        d[~todo] = 0.0
        new, size = theta + d, np.abs(d).max(axis=1)
        crosses = bool((new * pen < 0).any())  # a coefficient would cross zero (or leave at once)
        last = 1e-3 * np.sqrt(tol)  # after a full Newton step this short the error is far below tol
        if not crosses and not (carried & todo).any() and not (size[todo] >= last).any():
            return new, active, Hinv, valid  # every problem one tiny full step from its optimum
        stale = carried.copy()  # a step with another lambda's inverse: not a last step
        if not crosses and not (size[todo] >= 1e-2).any():
            # the common case, what the general steps below do then: full steps (no coefficient
            # crosses zero, no line search), in a few numpy calls
            theta = new
            long_step, f0 = size > FRESH_HESSIAN, np.full(B, np.nan)
            eta = S.eta(theta)
            todo &= ~((size < max(tol, last)) & ~stale)
            continue
        # the step may not carry a coefficient past zero (its sign is fixed on this support)
        toward = d * pen < 0
        t = np.ones(B)
        crossing, j_cross = np.zeros(B, bool), np.zeros(B, int)
        if toward.any():
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios = np.where(toward, -theta / np.where(toward, d, 1.0), np.inf)
            j_cross = np.argmin(ratios, axis=1)
            crossing = ratios[rows, j_cross] < 1.0
            t = np.where(crossing, ratios[rows, j_cross], 1.0)
        t_max = t.copy()
        search = todo & ~((t == 1.0) & (size < 1e-2))  # else Newton's quadratic region: the full step
        f_new = np.full(B, np.nan)
        if search.any():
            slope = (grad * d).sum(axis=1)
            f0 = np.where(np.isnan(f0), S.objective(eta, theta, pen), f0)
            for _half in range(60):
                new = theta + t[:, None] * d
                f_new = np.where(search, S.objective(S.eta(new), new, pen), np.nan)
                failed = search & ~((f_new <= f0 + 1e-4 * t * slope) | (t * size < 1e-15))
                if not failed.any():
                    break
                t = np.where(failed, t / 2, t)
        theta = theta + t[:, None] * d
        long_step = (size > FRESH_HESSIAN) | (t < 1.0)
        f0 = f_new  # NaN: not needed unless the next step is a long one
        left = todo & crossing & (t == t_max)  # reached zero: that coefficient leaves the support
        if left.any():
            b = np.flatnonzero(left)
            theta[b, j_cross[b]] = 0.0
            active[b, j_cross[b]] = False
            pen[b, j_cross[b]] = 0.0
            f0[b] = np.nan
            valid[b] = False
        eta = S.eta(theta)
        # quadratic convergence: after a full step of 1e-3 sqrt(tol) the error is far below tol
        done = (t * size < tol) | ((t == 1.0) & (size < 1e-3 * np.sqrt(tol)))
        todo &= ~(done & ~left & ~stale)
    return theta, active, Hinv, valid


FRESH_HESSIAN = 1e-3  # a Newton step longer than this: the next step recomputes the Hessian


def _inverse(H: np.ndarray) -> np.ndarray:
    """Inverses of a stack of Hessians (a pseudo-inverse for a singular one)."""
    try:
        return np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return np.stack([np.linalg.pinv(h) for h in H])


def lasso_fit(X: np.ndarray, y: np.ndarray, lam: float, tol: float = 1e-10) -> np.ndarray:
    """LASSO logistic at one lambda: [intercept, coefficients], glmnet's objective
    -loglik/n + lambda * ||b||_1 with an unpenalised intercept, solved exactly (`lasso_path`)."""
    X, y = np.asarray(X, float), np.asarray(y, float)
    top = lambda_max(X, y)
    grid = [lam] if lam >= top else list(top * np.logspace(0, np.log10(lam / top), 20)[:-1]) + [lam]
    coefs, intercepts = lasso_path(X, y, np.array(grid), tol=min(tol, 1e-10))
    return np.concatenate([[intercepts[-1]], coefs[-1]])


# rows x features up to which numpy solves the paths side by side: 124 x 38 twice as fast as
# one by one, 500 x 73 the same, 2000 x 93 1.5x slower (bench_scale.py's phantoms, 2026-12-02)
SIDE_BY_SIDE_CELLS = 30_000


def _deviance(y: np.ndarray, eta: np.ndarray) -> np.ndarray:
    return -2.0 * (y * eta - np.logaddexp(0, eta))


class LassoSelector(_Step):
    """LASSO logistic regression with lambda chosen by stratified K-fold CV on binomial deviance
    (fixed folds from `seed`): `rule` "min" (lambda.min) or "1se" (largest lambda within one SE
    of the minimum). Keeps the features with non-zero coefficients at the chosen lambda."""

    def __init__(self, rule: str = "min", n_lambdas: int = 100, lambda_ratio: float = 1e-3, folds: int = 5,
                 seed: int = 0):
        self.rule = rule
        self.n_lambdas = n_lambdas
        self.lambda_ratio = lambda_ratio
        self.folds = folds
        self.seed = seed

    def fit(self, X: pd.DataFrame, y):
        y = np.asarray(y, float)
        Xa = X.to_numpy(float)
        top = lambda_max(Xa, y)
        self.lambdas_ = top * np.logspace(0, np.log10(self.lambda_ratio), self.n_lambdas)
        cv = StratifiedKFold(self.folds, shuffle=True, random_state=self.seed)
        # fewer events than folds (the paper's 10 folds on a resample with 9 events) is no error: a fold
        # without an event still has a deviance, as in cv.glmnet; sklearn's warning would repeat ~10^3 times
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The least populated class", UserWarning)
            splits = list(cv.split(Xa, y))
        # every fold's path and the whole sample's, each lambda exactly
        paths = lasso_paths([(Xa[tr], y[tr]) for tr, _ in splits] + [(Xa, y)], self.lambdas_)
        dev = np.zeros((self.folds, self.n_lambdas))
        for k, (_, te) in enumerate(splits):
            coefs, intercepts = paths[k]
            eta = intercepts[:, None] + coefs @ Xa[te].T
            dev[k] = _deviance(y[te][None, :], eta).mean(axis=1)
        self.cv_mean_, self.cv_se_ = dev.mean(0), dev.std(0, ddof=1) / np.sqrt(self.folds)
        best = int(np.argmin(self.cv_mean_))
        within = np.flatnonzero(self.cv_mean_ <= self.cv_mean_[best] + self.cv_se_[best])
        self.lambda_min_ = float(self.lambdas_[best])
        self.lambda_1se_ = float(self.lambdas_[within.min()])  # largest lambda within 1 SE
        self.lambda_ = self.lambda_1se_ if self.rule == "1se" else self.lambda_min_
        self.path_, intercepts = paths[-1]
        at = int(np.flatnonzero(self.lambdas_ == self.lambda_)[0])
        self.intercept_ = float(intercepts[at])
        self.coef_ = pd.Series(self.path_[at], index=X.columns)
        nonzero = np.flatnonzero(np.abs(self.path_[at]) > 1e-10)
        self.fallback_ = None
        if not len(nonzero):  # an empty Rad-Score says nothing: keep the single strongest feature
            nonzero = [int(np.argmax(_association(Xa, y.astype(int))))]
            self.fallback_ = (f"LASSO kept no feature at lambda.{self.rule} {self.lambda_:.4g}; the single "
                              f"feature most associated with the outcome ({X.columns[nonzero[0]]}) is used")
        self._keep(X, nonzero)
        return self


def _loglik(y: np.ndarray, X: np.ndarray) -> float:
    """Log-likelihood of the ML logistic fit on X (no intercept column); inf when ML separates."""
    return _loglik_with_intercept(y, np.column_stack([np.ones(len(y)), np.asarray(X, float)]))


def _loglik_with_intercept(y: np.ndarray, Xi: np.ndarray) -> float:
    _, _, _, ll, separation = fit_ml_arrays(y, Xi)
    return ll if not separation else np.inf


class ForwardSelector(_Step):
    """Forward selection by likelihood ratio among the LASSO survivors: add the feature that
    raises the log-likelihood most while its LR test has p < `p_enter`; at most `max_features`
    (default: events / 5, so the Rad-Score keeps at least 5 events per feature)."""

    def __init__(self, p_enter: float = 0.05, max_features: Optional[int] = None):
        self.p_enter = p_enter
        self.max_features = max_features

    def fit(self, X: pd.DataFrame, y):
        y = np.asarray(y, float)
        limit = self.max_features or max(1, int(min(y.sum(), len(y) - y.sum()) // 5))
        Xi = np.column_stack([np.ones(len(y)), X.to_numpy(float)])  # column j + 1 is feature j
        chosen: List[int] = []
        current = _loglik_with_intercept(y, Xi[:, [0]])
        while len(chosen) < min(limit, X.shape[1]):
            best, best_ll = None, -np.inf
            for j, ll in self._candidates(y, Xi, chosen):
                if np.isfinite(ll) and ll > best_ll:
                    best, best_ll = j, ll
            if best is None or stats.chi2.sf(2 * (best_ll - current), 1) >= self.p_enter:
                break
            chosen.append(best)
            current = best_ll
        self.fallback_ = None
        if not chosen:
            chosen = [0] if X.shape[1] else []
            self.fallback_ = (f"forward selection added no feature (none with LR p < {self.p_enter:g}); "
                              f"the first LASSO survivor ({X.columns[0] if X.shape[1] else 'none'}) is used")
        self._keep(X, sorted(chosen))
        return self

    @staticmethod
    def _candidates(y: np.ndarray, Xi: np.ndarray, chosen: List[int]) -> List[Tuple[int, float]]:
        """(feature, log-likelihood with it added; inf when ML separates) for every feature not
        chosen, in column order: fitted side by side (`loglik_ml_batch`), each fit that is not
        plainly clean refitted alone by `_loglik_with_intercept`, so the verdicts are its own."""
        others = [j for j in range(Xi.shape[1] - 1) if j not in chosen]
        if not others:
            return []
        base = [0] + [c + 1 for c in chosen]
        designs = np.stack([Xi[:, base + [j + 1]] for j in others])
        from IMNRiskLib.stats import kernels
        if kernels.available():  # compiled, one fit costs less than the batch's numpy calls
            return [(j, _loglik_with_intercept(y, design)) for j, design in zip(others, designs)]
        lls = loglik_ml_batch(y, designs)
        return [(j, ll if np.isfinite(ll) else _loglik_with_intercept(y, designs[i]))
                for i, (j, ll) in enumerate(zip(others, lls))]


class RadScore(BaseEstimator, ClassifierMixin):
    """Rad-Score = b0 + sum(bi * zi): logistic regression on the selected z-scored features
    (Firth's fit if ML separates); `decision_function` is the Rad-Score (log-odds)."""

    def fit(self, X: pd.DataFrame, y):
        y = np.asarray(y, float)
        fit = fit_ml(y, X)
        self.fit_: LogisticFit = fit_firth(y, X) if fit.separation else fit
        self.features_ = list(X.columns)
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        return self.fit_.predict_lp(X[self.features_].to_numpy())

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    @property
    def intercept(self) -> float:
        return float(self.fit_.coef[0])

    @property
    def coefficients(self) -> Dict[str, float]:
        return dict(zip(self.features_, map(float, self.fit_.coef[1:])))

    def formula(self) -> str:
        """The Rad-Score as the paper prints it: 'RS = 0.730 x f1 + ... - 2.305'."""
        parts = []
        for name, b in self.coefficients.items():
            parts.append(f"{'-' if b < 0 else '+'} {abs(b):.3f} × {name}")
        text = " ".join(parts).lstrip("+ ")
        b0 = self.intercept
        return f"RS = {text} {'-' if b0 < 0 else '+'} {abs(b0):.3f}"


NO_CAP = 10 ** 9  # forward selection without a limit on the number of features


def radiomics_pipeline(corr: float = 0.9, vif: float = 10.0, mwu_p: float = 0.05, lasso_rule: str = "min",
                       lasso_folds: int = 5, forward_p: float = 0.05, max_features: Optional[int] = None,
                       seed: int = 0, n_lambdas: int = 100, lambda_ratio: float = 1e-3,
                       corr_method: str = "pearson", icc_threshold: Optional[float] = None) -> Pipeline:
    """The whole selection chain, unfitted (`corr_method` "spearman" for the paper's protocol); with
    `icc_threshold`, the ICC filter first (the input then carries the second reader's columns)."""
    first = [("icc", ICCFilter(icc_threshold))] if icc_threshold is not None else []
    return Pipeline(first + [
        ("constant", ConstantFilter()),
        ("corr", SpearmanFilter(corr) if corr_method == "spearman" else CorrelationFilter(corr)),
        ("vif", VIFFilter(vif)),
        ("mwu", MannWhitneyFilter(mwu_p)),
        ("zscore", ZScore()),
        ("lasso", LassoSelector(rule=lasso_rule, n_lambdas=n_lambdas, lambda_ratio=lambda_ratio, folds=lasso_folds,
                                seed=seed)),
        ("forward", ForwardSelector(forward_p, max_features)),
        ("radscore", RadScore()),
    ])


def radscore_of(pipeline: Pipeline, X: pd.DataFrame) -> np.ndarray:
    """A fitted chain's Rad-Score for the rows of X: its `decision_function`, computed from the
    Rad-Score's own features only (z-scored with the training means and SDs), without passing the
    whole table through every step's column selection (the validation scores ~10^4 samples)."""
    z, rs = pipeline.named_steps["zscore"], pipeline.named_steps["radscore"]
    used = rs.features_
    values = (X[used].to_numpy(float) - z.mean_[used].to_numpy()) / z.scale_[used].to_numpy()
    return rs.fit_.predict_lp(values)


def funnel(pipeline: Pipeline, n_features: int) -> List[Dict[str, object]]:
    """How many features survive each step of a fitted pipeline (the paper's 850 -> 185 -> ...);
    n_features counts the first reader's features only."""
    steps = [{"step": "all", "n": n_features}]
    for name, step in pipeline.steps[:-1]:
        if name == "zscore":
            continue
        steps.append({"step": name, "n": len(step.selected_)})
    return steps


def standardisation(pipeline: Pipeline) -> Dict[str, Dict[str, float]]:
    """Means and SDs of the Rad-Score's features (what the model file needs to z-score)."""
    z = pipeline.named_steps["zscore"]
    used = pipeline.named_steps["radscore"].features_
    return {f: {"mean": float(z.mean_[f]), "sd": float(z.scale_[f])} for f in used}
