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

from .clinical import LogisticFit, fit_firth, fit_ml, fit_ml_arrays


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

    def fit_transform(self, X: pd.DataFrame, y=None, **fit_params) -> pd.DataFrame:
        """fit, then the kept columns by position (what transform gives, with less pandas work)."""
        self.fit(X, y, **fit_params)
        return X.iloc[:, X.columns.get_indexer(self.selected_)]

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
        from .stability import READER2_SUFFIX, feature_icc
        self.icc_ = feature_icc(X)
        self.n_patients_ = int(np.isfinite(X[[c + READER2_SUFFIX for c in self.icc_.index]].to_numpy(float))
                               .all(axis=1).sum())
        self.selected_ = list(self.icc_.index[self.icc_.to_numpy() >= self.threshold])  # NaN >= t is False
        if not self.selected_:
            raise ValueError(f"no feature has ICC >= {self.threshold:g} on these patients")
        return self


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
        blocked = np.zeros(Z.shape[1], bool)  # blocked[j]: some kept feature has not |r| <= threshold with j
        for j in range(Z.shape[1]):
            if not blocked[j]:
                kept.append(j)
                blocked |= ~(corr[:, j] <= self.threshold)
        self.selected_ = [order[j] for j in kept]
        return self


def ranked(X: pd.DataFrame) -> pd.DataFrame:
    """Column-wise ranks (ties averaged): Pearson's r of ranks is Spearman's rho."""
    return pd.DataFrame(stats.rankdata(X.to_numpy(float), axis=0), index=X.index, columns=X.columns)


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
        self.fallback_ = None
        if len(keep) < self.min_keep:
            self.fallback_ = (f"{len(keep)} feature(s) with Mann-Whitney p < {self.p_threshold:g}; the "
                              f"{self.min_keep} smallest p kept")
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


def lasso_fit(X: np.ndarray, y: np.ndarray, lam: float, tol: float = 1e-10) -> np.ndarray:
    """LASSO logistic at one lambda: [intercept, coefficients], glmnet's objective
    -loglik/n + lambda * ||b||_1 with an unpenalised intercept, solved exactly (`lasso_path`)."""
    X, y = np.asarray(X, float), np.asarray(y, float)
    top = lambda_max(X, y)
    grid = [lam] if lam >= top else list(top * np.logspace(0, np.log10(lam / top), 20)[:-1]) + [lam]
    coefs, intercepts = lasso_path(X, y, np.array(grid), tol=min(tol, 1e-10))
    return np.concatenate([[intercepts[-1]], coefs[-1]])


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
        self.path_, intercepts = lasso_path(Xa, y, self.lambdas_)  # every lambda solved exactly
        at = int(np.flatnonzero(self.lambdas_ == self.lambda_)[0])
        self.intercept_ = float(intercepts[at])
        self.coef_ = pd.Series(self.path_[at], index=X.columns)
        nonzero = [c for c, b in self.coef_.items() if abs(b) > 1e-10]
        self.fallback_ = None
        if not nonzero:  # an empty Rad-Score says nothing: keep the single strongest feature
            nonzero = [association(X, y.astype(int)).idxmax()]
            self.fallback_ = (f"LASSO kept no feature at lambda.{self.rule} {self.lambda_:.4g}; the single "
                              f"feature most associated with the outcome ({nonzero[0]}) is used")
        self.selected_ = nonzero
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
            for j in range(X.shape[1]):
                if j in chosen:
                    continue
                ll = _loglik_with_intercept(y, Xi[:, [0] + [c + 1 for c in chosen] + [j + 1]])
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
        self.selected_ = [c for j, c in enumerate(X.columns) if j in chosen]
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
