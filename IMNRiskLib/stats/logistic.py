"""Logistic regression, the one engine every stage fits with: ML by Newton-Raphson (R's glm),
Firth's penalised fit (statsmodels has none) and batched log-likelihoods for the backward steps."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import numpy as np
from scipy import special
from scipy.special import expit

from IMNRiskLib.stats.logit import Z95

if TYPE_CHECKING:  # pandas loads only where a table is made: scoring one patient needs none
    import pandas as pd


MAX_ABS_COEF = 15.0  # |log OR| beyond this means the ML estimate ran off to infinity


def term_variable(term: str) -> str:
    """Variable a design term belongs to (`x[level]` -> `x`)."""
    return term.split("[", 1)[0]


@dataclass
class LogisticFit:
    """A fitted logistic model, reported like statsmodels/R: coefficients, Wald SE/CI/p."""

    terms: List[str]
    coef: np.ndarray
    se: np.ndarray
    cov: np.ndarray
    n: int
    events: int
    method: str = "ML"          # "ML" or "Firth"
    separation: bool = False
    loglik: float = float("nan")

    @property
    def z(self) -> np.ndarray:
        return self.coef / self.se

    @property
    def p(self) -> np.ndarray:
        return 2 * special.ndtr(-np.abs(self.z))  # stats.norm.sf without its per-call overhead

    def table(self) -> "pd.DataFrame":
        """Coefficient table with odds ratios and Wald 95% CIs (R `confint.default`)."""
        import pandas as pd  # only for tables (start-up time of scoring)
        lo, hi = self.coef - Z95 * self.se, self.coef + Z95 * self.se
        with np.errstate(over="ignore"):
            return pd.DataFrame({"coef": self.coef, "se": self.se, "z": self.z, "p": self.p,
                                 "or": np.exp(self.coef), "or_ci_low": np.exp(lo), "or_ci_high": np.exp(hi)},
                                index=self.terms)

    def wald_p(self, terms: Sequence[str]) -> float:
        """Joint Wald test that the given coefficients are all 0 (one p per variable)."""
        idx = [self.terms.index(t) for t in terms]
        b = self.coef[idx]
        v = self.cov[np.ix_(idx, idx)]
        stat = float(b @ np.linalg.pinv(v) @ b)
        rank = np.linalg.matrix_rank(v)
        return float(special.chdtrc(rank, stat)) if rank > 0 else float("nan")  # stats.chi2.sf(stat, rank)

    def predict_lp(self, X: np.ndarray) -> np.ndarray:
        """Linear predictor for rows of X (without the intercept column)."""
        return self.coef[0] + np.asarray(X, float) @ self.coef[1:]

    def __str__(self) -> str:
        head = f"Logistic regression ({self.method}), n = {self.n}, events = {self.events}" + \
               (" [separation]" if self.separation else "")
        return head + "\n" + self.table().round(4).to_string()


def with_intercept(X: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(X)), np.asarray(X, float)])


def probability(eta: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-eta)); exp overflows to inf for a very negative eta (a separated fit), which
    gives exactly the 0 wanted, so that overflow is not warned about."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-eta))


def fit_ml(y: np.ndarray, X: "pd.DataFrame", max_iter: int = 100, tol: float = 1e-10) -> LogisticFit:
    """Maximum-likelihood logistic regression by Newton-Raphson (with step halving), the same
    likelihood as R's glm / statsmodels' GLM, written here because validation fits it ~10^5
    times and statsmodels' per-call overhead (~5 ms) would dominate; checked against R's glm to
    1e-6. `separation` is set when the MLE does not exist (estimates run off, Hessian singular)."""
    return fit_ml_named(y, X.to_numpy(), list(X.columns), max_iter, tol)


def fit_ml_named(y: np.ndarray, X: np.ndarray, terms: Sequence[str], max_iter: int = 100,
                 tol: float = 1e-10) -> LogisticFit:
    """`fit_ml` of an array whose columns are named `terms` (no DataFrame around it)."""
    y = np.asarray(y, float)
    beta, se, cov, ll, separation = fit_ml_arrays(y, with_intercept(X), max_iter, tol)
    return LogisticFit(["(Intercept)"] + list(terms), beta, se, cov, len(y), int(y.sum()), "ML", separation, ll)


def fit_ml_arrays(y: np.ndarray, Xi: np.ndarray, max_iter: int = 100, tol: float = 1e-10):
    """`fit_ml` on arrays (Xi with its intercept column): (beta, se, cov, loglik, separation),
    without the DataFrame and LogisticFit around it (forward selection fits it ~10^5 times).
    The Newton steps are compiled when numba is there (`kernels.logistic_ml`), else `_newton_ml`."""
    beta, info, ll, converged = _newton(y, Xi, max_iter, tol)
    cov = _covariance(info)
    se = np.sqrt(np.abs(np.diag(cov)))
    separation = _runs_off(beta, converged) or not np.isfinite(se).all()
    return beta, se, cov, ll, separation


def loglik_ml(y: np.ndarray, Xi: np.ndarray, max_iter: int = 100, tol: float = 1e-10) -> float:
    """`fit_ml_arrays`' log-likelihood, inf when it says separation (forward selection's measure),
    the covariance inverted only when needed to say so."""
    beta, info, ll, converged = _newton(y, Xi, max_iter, tol)
    if _runs_off(beta, converged):
        return np.inf
    return ll if np.isfinite(_covariance(info)).all() else np.inf


def fitted_loglik(y: np.ndarray, Xi: np.ndarray, max_iter: int = 100, tol: float = 1e-10) -> float:
    """`fit_ml_arrays`' log-likelihood alone (whatever its separation verdict; R's drop1 deviance)."""
    return _newton(y, Xi, max_iter, tol)[2]


def loglik_ml_each(y: np.ndarray, designs: np.ndarray, max_iter: int = 100, tol: float = 1e-10) -> np.ndarray:
    """`loglik_ml` of each design of a stack (C x n x k), the same fits and verdicts, the
    covariances inverted together (one numpy call, the same LAPACK solve per matrix; one by one
    only when one is singular): forward selection's candidates."""
    fits = [_newton(y, Xi, max_iter, tol) for Xi in designs]
    lls = np.array([np.inf if _runs_off(beta, converged) else ll for beta, _, ll, converged in fits])
    todo = np.flatnonzero(np.isfinite(lls))
    if len(todo):
        try:
            finite = np.isfinite(np.linalg.inv(np.stack([fits[i][1] for i in todo]))).all(axis=(1, 2))
        except np.linalg.LinAlgError:
            finite = np.array([np.isfinite(_covariance(fits[i][1])).all() for i in todo])
        lls[todo[~finite]] = np.inf
    return lls


def _newton(y: np.ndarray, Xi: np.ndarray, max_iter: int, tol: float):
    """Newton's (beta, information, loglik, converged): compiled or `_newton_ml`."""
    from IMNRiskLib.stats import kernels  # start-up time: loaded when this step runs
    if kernels.available():
        return kernels.logistic_ml(y, Xi, max_iter, tol, 2 * MAX_ABS_COEF)
    return _newton_ml(y, Xi, max_iter, tol)


def _covariance(info: np.ndarray) -> np.ndarray:
    """The inverse information, NaN throughout when singular or not finite."""
    try:
        cov = np.linalg.inv(info)
        if np.isfinite(cov).all():
            return cov
    except np.linalg.LinAlgError:
        pass
    return np.full(info.shape, np.nan)


def _runs_off(beta: np.ndarray, converged: bool) -> bool:
    """Separation seen in the estimates: not converged, not finite, or beyond MAX_ABS_COEF."""
    return not converged or not np.isfinite(beta).all() or np.abs(beta[1:]).max(initial=0) > MAX_ABS_COEF


def _newton_ml(y: np.ndarray, Xi: np.ndarray, max_iter: int, tol: float):
    """Newton-Raphson with step halving for the logistic MLE from the null model, stopped when the
    longest step < tol or a coefficient runs beyond 2 MAX_ABS_COEF: (beta, information, loglik,
    converged)."""
    k = Xi.shape[1]
    ybar = min(max(y.mean(), 1e-6), 1 - 1e-6)
    beta = np.zeros(k)
    beta[0] = math.log(ybar / (1 - ybar))

    def loglik(b: np.ndarray) -> float:
        eta = Xi @ b
        return float(np.sum(y * eta - np.logaddexp(0, eta)))

    ll = loglik(beta)
    converged = False
    info = np.eye(k)
    for _ in range(max_iter):
        eta = Xi @ beta
        pi = probability(eta)
        w = pi * (1 - pi)
        info = Xi.T @ (Xi * w[:, None])
        try:
            step = np.linalg.solve(info, Xi.T @ (y - pi))
        except np.linalg.LinAlgError:
            break
        for _half in range(30):
            new = beta + step
            new_ll = loglik(new)
            if new_ll >= ll - 1e-12:
                break
            step = step / 2
        beta, ll = new, new_ll
        if np.max(np.abs(step)) < tol:
            converged = True
            break
        if np.abs(beta[1:]).max(initial=0) > 2 * MAX_ABS_COEF:
            break
    return beta, info, ll, converged


def loglik_ml_batch(y: np.ndarray, Xs: np.ndarray, max_iter: int = 100, tol: float = 1e-10) -> np.ndarray:
    """The ML log-likelihood of logistic fits of y on each design of Xs (C x n x k, intercept
    column included), fitted side by side as `fit_ml_arrays` fits one (Newton steps, step halving,
    stop when the longest step < tol); NaN where that fit is not plainly clean (not converged in
    half the iterations, or a coefficient beyond half MAX_ABS_COEF), for the caller to refit with
    `fit_ml_arrays` and its separation rules. Forward selection compares ~40 such fits per step."""
    C, n, k = Xs.shape
    XsT = Xs.transpose(0, 2, 1)
    ybar = min(max(y.mean(), 1e-6), 1 - 1e-6)
    beta = np.zeros((C, k))
    beta[:, 0] = math.log(ybar / (1 - ybar))

    def loglik(b: np.ndarray) -> np.ndarray:
        eta = (Xs @ b[:, :, None])[:, :, 0]
        return (y * eta - np.logaddexp(0, eta)).sum(axis=1)

    ll = loglik(beta)
    todo, hard = np.ones(C, bool), np.zeros(C, bool)
    for _ in range(max_iter // 2):
        eta = (Xs @ beta[:, :, None])[:, :, 0]
        pi = expit(eta)
        info = (XsT * (pi * (1 - pi))[:, None, :]) @ Xs
        try:
            step = np.linalg.solve(info, (XsT @ (y - pi)[:, :, None]))[:, :, 0]
        except np.linalg.LinAlgError:
            return np.full(C, np.nan)
        step[~todo] = 0.0
        new = beta + step
        new_ll = loglik(new)
        for _half in range(10):  # longer searches: left to fit_ml_arrays (hard below)
            short = todo & ~(new_ll >= ll - 1e-12)
            if not short.any():
                break
            step[short] /= 2
            new = beta + step
            new_ll = np.where(short, loglik(new), new_ll)
        hard |= todo & ~(new_ll >= ll - 1e-12)
        beta, ll = new, new_ll
        todo &= ~(np.abs(step).max(axis=1) < tol)
        if not todo.any():
            break
    clean = ~todo & ~hard & np.isfinite(ll) & (np.abs(beta[:, 1:]).max(axis=1, initial=0) <= MAX_ABS_COEF / 2)
    return np.where(clean, ll, np.nan)


def fit_firth(y: np.ndarray, X: "pd.DataFrame", max_iter: int = 100, tol: float = 1e-10) -> LogisticFit:
    """Firth's penalised logistic regression (Jeffreys prior; brglm2 `type = "AS_mean"`).

    Modified score U* = X'(y - pi + h (1/2 - pi)), h the hat diagonal; Newton steps with step
    halving on the penalised log-likelihood. Finite estimates even under separation.
    """
    Xi = with_intercept(X.to_numpy())
    y = np.asarray(y, float)
    beta = np.zeros(Xi.shape[1])

    def penalised(b: np.ndarray) -> Tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        eta = Xi @ b
        pi = probability(eta)
        w = pi * (1 - pi)
        info = Xi.T @ (Xi * w[:, None])
        sign, logdet = np.linalg.slogdet(info)
        ll = float(np.sum(y * eta - np.logaddexp(0, eta)) + 0.5 * logdet)
        return ll, pi, w, info

    ll, pi, w, info = penalised(beta)
    for _ in range(max_iter):
        inv = np.linalg.inv(info)
        root = Xi * np.sqrt(w)[:, None]
        h = np.einsum("ij,jk,ik->i", root, inv, root)
        score = Xi.T @ (y - pi + h * (0.5 - pi))
        step = inv @ score
        for _half in range(30):
            new = beta + step
            new_ll, new_pi, new_w, new_info = penalised(new)
            if new_ll >= ll - 1e-12:
                break
            step = step / 2
        converged = np.max(np.abs(new - beta)) < tol
        beta, ll, pi, w, info = new, new_ll, new_pi, new_w, new_info
        if converged:
            break
    cov = np.linalg.inv(info)
    return LogisticFit(["(Intercept)"] + list(X.columns), beta, np.sqrt(np.diag(cov)), cov, len(y),
                       int(y.sum()), "Firth", False, ll)


def fit_logistic(y: np.ndarray, X: "pd.DataFrame") -> Tuple[LogisticFit, Optional[LogisticFit]]:
    """ML fit, and Firth's fit too when ML separates (the one to use then)."""
    ml = fit_ml(y, X)
    return ml, (fit_firth(y, X) if ml.separation else None)
