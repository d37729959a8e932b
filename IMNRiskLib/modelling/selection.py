"""Selection: the paper's radiomics feature-selection chain as scikit-learn transformers.

|r| > 0.9 filter -> collinearity (VIF) -> Mann-Whitney U -> z-score -> LASSO logistic (lambda by
stratified CV) -> forward selection by likelihood ratio -> Rad-Score (logistic on the survivors).
Composed in one Pipeline, so that cross-validation and the bootstrap refit every step on each
training sample (no leakage). Every step works on DataFrames, keeps feature names, and records
how many features it kept (the funnel).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd
from scipy import special
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.pipeline import Pipeline

from IMNRiskLib.stats.lasso import lambda_max, lasso_paths
from IMNRiskLib.modelling import lassogrid
from IMNRiskLib.stats.ranks import column_ranks, mann_whitney_p, rank_sums
from IMNRiskLib.stats.logistic import LogisticFit, fit_firth, fit_ml, loglik_ml, loglik_ml_batch, loglik_ml_each


def association(X: pd.DataFrame, y: np.ndarray) -> pd.Series:
    """Strength of each feature's univariate association with the outcome: |AUC - 0.5|
    (rank-based, so monotone transforms do not matter)."""
    return pd.Series(_association(X.to_numpy(float), np.asarray(y)), index=X.columns)


def _association(values: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _association_of_sums(rank_sums(values, y == 1), y)


def _association_of_sums(sums: np.ndarray, y: np.ndarray) -> np.ndarray:
    """`_association` from each column's sum of the events' ranks."""
    m, n = int(y.sum()), int(len(y) - y.sum())
    auc = (sums - m * (m + 1) / 2.0) / (m * n)
    return np.abs(auc - 0.5)


def strongest_first(X: pd.DataFrame, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Column positions ordered by association with the outcome (strongest first; ties in column
    order, as pandas' stable descending sort), and the centred values in that order: the visiting
    order of the greedy filters."""
    values = X.to_numpy(float)
    return _ordered(values, _association(values, np.asarray(y)))


def _ordered(values: np.ndarray, association: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """`strongest_first` given the columns' association."""
    order = np.argsort(-association, kind="stable")
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
        from IMNRiskLib.radiomics.stability import table_icc
        self.icc_, at_first, self.n_patients_ = table_icc(X)
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
        values = X.to_numpy(float)
        association = _association(values, np.asarray(y))
        return self._fit_ordered(X, association, *_ordered(values, association))

    def _fit_ordered(self, X: pd.DataFrame, association: np.ndarray, order: np.ndarray, Z: np.ndarray
                     ) -> "CorrelationFilter":
        """fit, given each column's association and `strongest_first`'s order and centred values;
        keeps the kept columns' association (`association_`: the VIF filter after it visits them by it)."""
        Z = Z / Z.std(0)
        kept: List[int] = []
        blocked = np.zeros(Z.shape[1], bool)  # blocked[j]: some kept feature has not |r| <= threshold with j
        # |r| only of the features still unblocked, a block at a time, and only with the features
        # from the block on (those before it are decided): most are blocked before their turn, so
        # most of the correlation matrix is never needed
        from IMNRiskLib.stats import fitkernels  # start-up time: loaded when this step runs
        compiled = fitkernels.available()
        for start in range(0, Z.shape[1], CORRELATION_BLOCK):
            block = start + np.flatnonzero(~blocked[start:start + CORRELATION_BLOCK])
            if not len(block):
                continue
            corr = np.abs(Z[:, block].T @ Z[:, start:]) / len(Z)  # row: |r| of a candidate with each later one
            if compiled:  # the loop below, compiled
                kept += fitkernels.keep_uncorrelated(corr, block, start, blocked, self.threshold).tolist()
                continue
            for j, row in zip(block, corr):
                if not blocked[j]:
                    kept.append(j)
                    blocked[start:] |= ~(row <= self.threshold)
        self._keep(X, order[kept])
        self.association_ = association[self.positions_]
        return self


CORRELATION_BLOCK = 32  # candidates whose correlations are computed together (one matrix product)


class SpearmanFilter(CorrelationFilter):
    """The paper's |r| > 0.9 filter with Spearman's rank correlation (`--protocol paper`): the same
    keep-the-stronger rule as CorrelationFilter, on the column-wise ranks (ties averaged: Pearson's
    r of ranks is Spearman's rho; the association is rank-based, so the visiting order is unchanged)."""

    def fit(self, X: pd.DataFrame, y):
        # the ranks' association from their sums over the events (whole or half numbers: the same
        # numbers the rank sums of the ranks give, without ranking the ranks again)
        R, y = column_ranks(X.to_numpy(float)), np.asarray(y)
        association = _association_of_sums(R[y == 1].sum(axis=0), y)
        return self._fit_ordered(X, association, *_ordered(R, association))


class VIFFilter(_Step):
    """Remove remaining collinearity: visiting features strongest first, keep one if its variance
    inflation factor against those already kept is at most `threshold` (VIF = 1 / (1 - R^2)).

    Forward rather than backward elimination because with more features than patients every
    VIF of the full set is infinite; at most n - 2 features can be kept.
    """

    def __init__(self, threshold: float = 10.0):
        self.threshold = threshold

    def fit(self, X: pd.DataFrame, y, association: Optional[np.ndarray] = None):
        """`association`: each column's association with the outcome when measured already (`fit_chain`)."""
        order, Z = strongest_first(X, y) if association is None else _ordered(X.to_numpy(float), association)
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
        p = mann_whitney_p(X.to_numpy(float), y == 1)
        self.p_values_ = pd.Series(p, index=X.columns)
        self.fallback_ = None
        if (p < self.p_threshold).sum() >= self.min_keep and X.columns.is_unique:  # as below, without pandas
            self._keep(X, np.flatnonzero(p < self.p_threshold))
            return self
        keep = self.p_values_[self.p_values_ < self.p_threshold]
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


def stratified_folds(y: np.ndarray, folds: int, seed) -> List[Tuple[np.ndarray, np.ndarray]]:
    """(train, test) rows of `StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y)`,
    computed as scikit-learn computes them (classes in order of appearance, each fold's share by
    round robin over the sorted classes, one shuffle per class from one RandomState). By hand
    because its input checks cost ~1.5 ms a call and the LASSO's CV asks ~10^4 times;
    Testing/test_speed_equality.py checks it against scikit-learn's on many outcomes and seeds.
    Without scikit-learn's warning when a class has fewer members than folds (no error here)."""
    y = np.asarray(y)
    _, first, inverse = np.unique(y, return_index=True, return_inverse=True)
    _, by_appearance = np.unique(first, return_inverse=True)
    classes = by_appearance[inverse.reshape(-1)]
    if np.all(folds > np.bincount(classes)):
        raise ValueError(f"n_splits={folds} cannot be greater than the number of members in each class.")
    ordered = np.sort(classes)
    allocation = np.asarray([np.bincount(ordered[i::folds], minlength=len(first)) for i in range(folds)])
    rng = check_random_state(seed)
    test_fold = np.empty(len(y), dtype="i")
    for k in range(len(first)):
        fold_of = np.arange(folds).repeat(allocation[:, k])
        rng.shuffle(fold_of)
        test_fold[classes == k] = fold_of
    rows = np.arange(len(y))
    return [(rows[test_fold != i], rows[test_fold == i]) for i in range(folds)]


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
        # fewer events than folds (the paper's 10 folds on a resample with 9 events) is no error: a fold
        # without an event still has a deviance, as in cv.glmnet
        splits = stratified_folds(y, self.folds, self.seed)
        # every fold's path, each lambda exactly
        paths = lasso_paths([(Xa[tr], y[tr]) for tr, _ in splits], self.lambdas_)
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
        at = int(np.flatnonzero(self.lambdas_ == self.lambda_)[0])
        # the whole sample's path down to the chosen lambda only: each lambda's solution depends on the
        # larger ones alone, and the smallest lambdas (near separation) cost ~80% of a path
        self._sample, self._path = (Xa, y), None
        coefs, intercepts = lasso_paths([(Xa, y)], self.lambdas_[:at + 1])[0]
        self.intercept_ = float(intercepts[at])
        self.coef_ = pd.Series(coefs[at], index=X.columns)
        nonzero = np.flatnonzero(np.abs(coefs[at]) > 1e-10)
        self.fallback_ = None
        if not len(nonzero):  # an empty Rad-Score says nothing: keep the single strongest feature
            nonzero = [int(np.argmax(_association(Xa, y.astype(int))))]
            self.fallback_ = (f"LASSO kept no feature at lambda.{self.rule} {self.lambda_:.4g}; the single "
                              f"feature most associated with the outcome ({X.columns[nonzero[0]]}) is used")
        self._keep(X, nonzero)
        return self

    @property
    def path_(self) -> np.ndarray:
        """The whole sample's coefficients at every lambda (lambdas x features; the model's path
        table): solved on first use, fit having needed them down to the chosen lambda only."""
        if self._path is None:
            self._path = lasso_paths([self._sample], self.lambdas_)[0][0]
        return self._path


def _loglik(y: np.ndarray, X: np.ndarray) -> float:
    """Log-likelihood of the ML logistic fit on X (no intercept column); inf when ML separates."""
    return _loglik_with_intercept(y, np.column_stack([np.ones(len(y)), np.asarray(X, float)]))


def _loglik_with_intercept(y: np.ndarray, Xi: np.ndarray) -> float:
    return loglik_ml(y, Xi)


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
            # chi2(1).sf without scipy.stats' per-call machinery (chdtrc is its _sf; below 0 it is 1)
            if best is None or special.chdtrc(1, max(2 * (best_ll - current), 0.0)) >= self.p_enter:
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
            return list(zip(others, loglik_ml_each(y, designs)))
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
        self._lookup = None
        return self

    def columns_in(self, columns: pd.Index, zscore: "ZScore") -> Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The positions of the Rad-Score's features among `columns` and their training means and
        SDs (`zscore`'s), kept for the last columns asked about: the validation scores ~10^4
        samples that share one columns object. None when a feature is missing or columns repeat."""
        last = getattr(self, "_lookup", None)
        if last is None or not last[0].is_(columns):  # `is_`: the same Index, or a view of it (rows taken)
            at = column_positions(columns, self.features_)
            if at is None:
                return None
            where = {name: i for i, name in enumerate(zscore.mean_.index)}  # label lookups cost ~1 ms each
            own = [where[name] for name in self.features_]
            last = self._lookup = (columns, at, zscore.mean_.to_numpy()[own], zscore.scale_.to_numpy()[own])
        return last[1], last[2], last[3]

    def __getstate__(self):
        """Pickled without the columns lookup (a cache of names: workers make their own)."""
        state = super().__getstate__()
        state.pop("_lookup", None)
        return state

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


_last_positions: tuple = (None, None)  # the columns last asked about and each name's position in them


def column_positions(columns: pd.Index, names: List[str]) -> Optional[np.ndarray]:
    """Positions of names among columns (None when one is missing or columns repeat a name), from
    a name -> position map made once per columns object and its views: each resample's table is
    a view whose own hash table pandas would build again (~1 ms on 1702 columns)."""
    global _last_positions
    last = _last_positions  # one read: another thread may replace it
    if last[0] is None or not last[0].is_(columns):
        where = {name: i for i, name in enumerate(columns)}
        last = _last_positions = (columns, where if len(where) == len(columns) else None)
    where = last[1]
    if where is None or any(name not in where for name in names):
        return None
    return np.array([where[name] for name in names], dtype=np.intp)


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


def fit_chain(pipeline: Pipeline, X: pd.DataFrame, y) -> Pipeline:
    """`pipeline.fit(X, y)` for the selection chain: each step's fit_transform in turn, then the
    Rad-Score's fit, in place; what Pipeline.fit does for these steps (no memory, no routed
    parameters) without its parameter checks (~1 ms a fit; the validation fits ~10^4 times)."""
    previous = None
    for _, step in pipeline.steps[:-1]:
        # the VIF filter visits its columns by the association the |r| filter before it measured on
        # them (the same numbers, not measured again)
        given = {"association": previous.association_} if isinstance(step, VIFFilter) and \
            isinstance(previous, CorrelationFilter) else {}
        X = step.fit_transform(X, y, **given)
        previous = step
    pipeline.steps[-1][1].fit(X, y)
    return pipeline


def radscore_of(pipeline: Pipeline, X: pd.DataFrame) -> np.ndarray:
    """A fitted chain's Rad-Score for the rows of X: its `decision_function`, computed from the
    Rad-Score's own features only (z-scored with the training means and SDs), without passing the
    whole table through every step's column selection (the validation scores ~10^4 samples)."""
    steps = dict(pipeline.steps)
    z, rs = steps["zscore"], steps["radscore"]
    found = rs.columns_in(X.columns, z)
    if found is None:  # a feature missing or a name repeated: by name, as pandas answers (KeyError, ...)
        used = rs.features_
        return rs.fit_.predict_lp((X[used].to_numpy(float) - z.mean_[used].to_numpy()) / z.scale_[used].to_numpy())
    at, mean, scale = found
    return rs.fit_.predict_lp((X.to_numpy(float)[:, at] - mean) / scale)


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
