"""Selection: the paper's radiomics feature-selection chain as scikit-learn transformers.

|r| > 0.9 filter -> collinearity (VIF) -> Mann-Whitney U -> z-score -> LASSO logistic (lambda by
stratified CV) -> forward selection by likelihood ratio -> Rad-Score (logistic on the survivors).
Composed in one Pipeline, so that cross-validation and the bootstrap refit every step on each
training sample (no leakage). Every step works on DataFrames, keeps feature names, and records
how many features it kept (the funnel).
"""

from __future__ import annotations

import warnings
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

from .clinical import LogisticFit, fit_firth, fit_ml


def association(X: pd.DataFrame, y: np.ndarray) -> pd.Series:
    """Strength of each feature's univariate association with the outcome: |AUC - 0.5|
    (rank-based, so monotone transforms do not matter)."""
    ranks = stats.rankdata(X.to_numpy(float), axis=0)
    m, n = int(y.sum()), int(len(y) - y.sum())
    auc = (ranks[y == 1].sum(axis=0) - m * (m + 1) / 2.0) / (m * n)
    return pd.Series(np.abs(auc - 0.5), index=X.columns)


def strongest_first(X: pd.DataFrame, y: np.ndarray) -> Tuple[pd.Index, np.ndarray]:
    """Feature names ordered by association with the outcome (strongest first), and the centred
    values in that order: the visiting order of the greedy filters."""
    order = association(X, np.asarray(y)).sort_values(ascending=False, kind="stable").index
    Z = X[order].to_numpy(float)
    return order, Z - Z.mean(0)


class _Step(BaseEstimator, TransformerMixin):
    """A selection step: fit() sets `selected_`; transform() keeps those columns."""

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return X[self.selected_]

    def get_feature_names_out(self, input_features=None):
        return np.array(self.selected_, dtype=object)


class ConstantFilter(_Step):
    """Drop features that do not vary in the training data (nothing to learn from them)."""

    def fit(self, X: pd.DataFrame, y=None):
        values = X.to_numpy(float)
        sd = values.std(axis=0)
        keep = (sd > 1e-12 * (np.abs(values).max(axis=0) + 1)) & np.isfinite(sd)
        self.selected_ = list(X.columns[keep])
        return self


class CorrelationFilter(_Step):
    """Among features correlated above `threshold` (|Pearson r|), keep the one more associated
    with the outcome: features are visited strongest first and kept if not too close to a kept one."""

    def __init__(self, threshold: float = 0.9):
        self.threshold = threshold

    def fit(self, X: pd.DataFrame, y):
        order, Z = strongest_first(X, y)
        Z = Z / Z.std(0)
        corr = np.abs(Z.T @ Z) / len(Z)
        kept: List[int] = []
        for j in range(Z.shape[1]):
            if not kept or corr[j, kept].max() <= self.threshold:
                kept.append(j)
        self.selected_ = [order[j] for j in kept]
        return self


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
        self.selected_ = [order[j] for j in kept]
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
        if len(keep) < self.min_keep:
            keep = self.p_values_.nsmallest(self.min_keep)
        self.selected_ = [c for c in X.columns if c in keep.index]
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

    def get_feature_names_out(self, input_features=None):
        return np.array(self.selected_, dtype=object)


def lambda_max(X: np.ndarray, y: np.ndarray) -> float:
    """Smallest lambda at which every LASSO coefficient is 0 (glmnet's path start)."""
    return float(np.abs(X.T @ (y - y.mean())).max() / len(y))


def lasso_path(X: np.ndarray, y: np.ndarray, lambdas: np.ndarray, tol: float = 1e-6, max_iter: int = 5000):
    """Coefficients and intercepts along a lambda path (glmnet's objective), for cross-validating
    lambda: accelerated proximal gradient (FISTA with adaptive restart) solving every lambda at
    once as one matrix problem. Written here because the validation solves ~10^4 paths: this is
    ~5x faster than scikit-learn's liblinear (which also penalises the intercept) and closer to
    the exact solution; the fit at the chosen lambda is redone exactly by `lasso_fit`."""
    n = len(y)
    Xi = np.column_stack([np.ones(n), X])
    step = 4.0 * n / np.linalg.norm(Xi, 2) ** 2           # 1 / Lipschitz constant of the gradient
    ybar = min(max(y.mean(), 1e-6), 1 - 1e-6)
    B = np.zeros((Xi.shape[1], len(lambdas)))
    B[0] = np.log(ybar / (1 - ybar))
    Z, t = B.copy(), np.ones(len(lambdas))
    threshold = step * np.asarray(lambdas)[None, :]
    active = np.arange(len(lambdas))                      # lambdas not converged yet
    for _ in range(max_iter):
        Za, Ba, ta = Z[:, active], B[:, active], t[active]
        grad = Xi.T @ (1.0 / (1.0 + np.exp(-(Xi @ Za))) - y[:, None]) / n
        new = Za - step * grad
        new[1:] = np.sign(new[1:]) * np.maximum(np.abs(new[1:]) - threshold[:, active], 0.0)
        t_new = (1 + np.sqrt(1 + 4 * ta * ta)) / 2
        diff = new - Ba
        restart = ((Za - new) * diff).sum(axis=0) > 0     # momentum pointing uphill: drop it
        Znew = new + ((ta - 1) / t_new) * diff
        Znew[:, restart] = new[:, restart]
        B[:, active], Z[:, active], t[active] = new, Znew, t_new
        active = active[np.abs(diff).max(axis=0) >= tol]
        if not len(active):
            break
    return B[1:].T, B[0]


def lasso_fit(X: np.ndarray, y: np.ndarray, lam: float, tol: float = 1e-10) -> np.ndarray:
    """LASSO logistic at one lambda: [intercept, coefficients], glmnet's objective
    -loglik/n + lambda * ||b||_1 with an unpenalised intercept (glum's solver)."""
    from glum import GeneralizedLinearRegressor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GeneralizedLinearRegressor(family="binomial", l1_ratio=1.0, alpha=lam, gradient_tol=tol,
                                           scale_predictors=False).fit(X, y)
    return np.concatenate([[model.intercept_], model.coef_])


def _deviance(y: np.ndarray, eta: np.ndarray) -> np.ndarray:
    return -2.0 * (y * eta - np.logaddexp(0, eta))


class LassoSelector(_Step):
    """LASSO logistic regression with lambda chosen by stratified K-fold CV on binomial deviance
    (fixed folds from `seed`): `rule` "min" (lambda.min) or "1se" (largest lambda within one SE
    of the minimum). Keeps the features with non-zero coefficients at the chosen lambda."""

    def __init__(self, rule: str = "min", n_lambdas: int = 30, lambda_ratio: float = 0.02, folds: int = 5,
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
        dev = np.zeros((self.folds, self.n_lambdas))
        for k, (tr, te) in enumerate(cv.split(Xa, y)):
            coefs, intercepts = lasso_path(Xa[tr], y[tr], self.lambdas_)
            eta = intercepts[:, None] + coefs @ Xa[te].T
            dev[k] = _deviance(y[te][None, :], eta).mean(axis=1)
        self.cv_mean_, self.cv_se_ = dev.mean(0), dev.std(0, ddof=1) / np.sqrt(self.folds)
        best = int(np.argmin(self.cv_mean_))
        within = np.flatnonzero(self.cv_mean_ <= self.cv_mean_[best] + self.cv_se_[best])
        self.lambda_min_ = float(self.lambdas_[best])
        self.lambda_1se_ = float(self.lambdas_[within.min()])  # largest lambda within 1 SE
        self.lambda_ = self.lambda_1se_ if self.rule == "1se" else self.lambda_min_
        self.path_, _ = lasso_path(Xa, y, self.lambdas_)
        exact = lasso_fit(Xa, y, self.lambda_)  # glmnet's objective, fully converged
        self.intercept_ = float(exact[0])
        self.coef_ = pd.Series(exact[1:], index=X.columns)
        nonzero = [c for c, b in self.coef_.items() if abs(b) > 1e-10]
        if not nonzero:  # an empty Rad-Score says nothing: keep the single strongest feature
            nonzero = [association(X, y.astype(int)).idxmax()]
        self.selected_ = nonzero
        return self


def _loglik(y: np.ndarray, X: np.ndarray) -> float:
    fit = fit_ml(y, pd.DataFrame(X))
    return fit.loglik if not fit.separation else np.inf


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
        chosen: List[str] = []
        current = _loglik(y, np.zeros((len(y), 0)))
        while len(chosen) < min(limit, X.shape[1]):
            best, best_ll = None, -np.inf
            for c in X.columns:
                if c in chosen:
                    continue
                ll = _loglik(y, X[chosen + [c]].to_numpy())
                if np.isfinite(ll) and ll > best_ll:
                    best, best_ll = c, ll
            if best is None or stats.chi2.sf(2 * (best_ll - current), 1) >= self.p_enter:
                break
            chosen.append(best)
            current = best_ll
        if not chosen:
            chosen = [X.columns[0]] if X.shape[1] else []
        self.selected_ = [c for c in X.columns if c in chosen]
        return self


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


def radiomics_pipeline(corr: float = 0.9, vif: float = 10.0, mwu_p: float = 0.05, lasso_rule: str = "min",
                       lasso_folds: int = 5, forward_p: float = 0.05, max_features: Optional[int] = None,
                       seed: int = 0) -> Pipeline:
    """The whole selection chain, unfitted."""
    return Pipeline([
        ("constant", ConstantFilter()),
        ("corr", CorrelationFilter(corr)),
        ("vif", VIFFilter(vif)),
        ("mwu", MannWhitneyFilter(mwu_p)),
        ("zscore", ZScore()),
        ("lasso", LassoSelector(rule=lasso_rule, folds=lasso_folds, seed=seed)),
        ("forward", ForwardSelector(forward_p, max_features)),
        ("radscore", RadScore()),
    ])


