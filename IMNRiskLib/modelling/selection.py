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

from IMNRiskLib.stats.lasso import lambda_max, lasso_paths
from IMNRiskLib.modelling import lassogrid
from IMNRiskLib.stats.ranks import column_ranks
from IMNRiskLib.stats.logistic import LogisticFit, fit_firth, fit_ml, fit_ml_arrays, loglik_ml_batch


def association(X: pd.DataFrame, y: np.ndarray) -> pd.Series:
    """Strength of each feature's univariate association with the outcome: |AUC - 0.5|
    (rank-based, so monotone transforms do not matter)."""
    return pd.Series(_association(X.to_numpy(float), np.asarray(y)), index=X.columns)


def _association(values: np.ndarray, y: np.ndarray) -> np.ndarray:
    m, n = int(y.sum()), int(len(y) - y.sum())
    auc = (column_ranks(values)[y == 1].sum(axis=0) - m * (m + 1) / 2.0) / (m * n)
    return np.abs(auc - 0.5)


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
        # start-up time: loaded when this step runs
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


def _deviance(y: np.ndarray, eta: np.ndarray) -> np.ndarray:
    return -2.0 * (y * eta - np.logaddexp(0, eta))


class LassoSelector(_Step):
    """LASSO logistic regression with lambda chosen by stratified K-fold CV on binomial deviance
    (fixed folds from `seed`): `rule` "min" (lambda.min) or "1se" (largest lambda within one SE
    of the minimum). Keeps the features with non-zero coefficients at the chosen lambda."""

    def __init__(self, rule: str = "min", n_lambdas: int = lassogrid.N_LAMBDAS,
                 lambda_ratio: float = lassogrid.LAMBDA_RATIO, folds: int = 5, seed: int = 0):
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
        from IMNRiskLib.stats import kernels  # start-up time: loaded when this step runs
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
                       seed: int = 0, n_lambdas: int = lassogrid.N_LAMBDAS, lambda_ratio: float = lassogrid.LAMBDA_RATIO,
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
