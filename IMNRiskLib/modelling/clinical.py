"""Clinical analysis: Table 1 (by outcome, with tests) and Table 2 (univariate then multivariable
logistic regression, as the paper), with separation detected and Firth's estimate offered.

Logistic fits are statsmodels' (ML, Wald CIs and p-values as R's `glm` + `confint.default`).
Firth's penalised fit and the exact 2 x k Fisher test are written here: statsmodels has no Firth
regression and SciPy's r x c Fisher test is a resampling one, not R's exact `fisher.test`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import special, stats
from scipy.special import gammaln

from IMNRiskLib.inputs.schema import ClinicalSchema, Variable
from IMNRiskLib.modelling.collinearity import (COLLINEAR, EncodedFrame, complete_design, encode_frame, encoded_pairs,
                                               encoded_screen, pair_associations, pair_note, screen_collinear,
                                               varying_array)
from IMNRiskLib.stats.logistic import (MAX_ABS_COEF, LogisticFit, fit_firth, fit_logistic, fit_ml_named, fitted_loglik,
                                       probability, term_variable, with_intercept)

ENTRY_P = 0.10   # univariate p below which a variable enters the multivariable model (paper)
KEEP_P = 0.05    # multivariable p below which a variable is kept (paper)
CLINICAL_TESTS = ("lrt", "wald")  # multivariable elimination: likelihood ratio (R drop1/step) or Wald p


# --------------------------------------------------------------------------- design matrices

def design(frame: pd.DataFrame, schema: ClinicalSchema, names: Sequence[str]) -> pd.DataFrame:
    """Design matrix (no intercept) of the named variables, coded as the schema says."""
    columns: Dict[str, np.ndarray] = {}
    for name in names:
        var = schema[name]
        encoded = _encode_column(var, frame[name])
        for j, term in enumerate(var.terms()):
            columns[term] = encoded[:, j]
    return pd.DataFrame(columns, index=frame.index, dtype=float)


def _encode_column(var: Variable, column: pd.Series) -> np.ndarray:
    """var.encode of every value of a column (rows x terms), encoding each distinct value once:
    the validation builds design matrices ~10^4 times."""
    values = list(column) if column.hasnans else column.tolist()  # missing: the marker iterating gives
    cache: Dict[Tuple[type, object], List[float]] = {}
    rows = []
    for v in values:
        key = (type(v), v)
        row = cache.get(key)
        if row is None:
            row = cache[key] = var.encode(v)
        rows.append(row)
    return np.array(rows, dtype=float).reshape(len(values), len(var.terms()))


@dataclass
class EncodedClinical:
    """A clinical table encoded once, for the validation's ~10^4 resamples to take rows from:
    every variable's `design` columns and the Table 2 selection's `EncodedFrame` (each row's
    encoding depends on its own value alone)."""

    n: int
    columns: Dict[str, np.ndarray]  # variable -> `design`'s columns (rows x terms)
    terms: Dict[str, List[str]]
    frame: EncodedFrame

    def take(self, idx: np.ndarray) -> "EncodedClinical":
        return EncodedClinical(len(idx), {n: c[idx] for n, c in self.columns.items()}, self.terms,
                               self.frame.take(idx))

    def design(self, names: Sequence[str]) -> Tuple[np.ndarray, List[str]]:
        """`design(frame, schema, names)` as an array and its terms."""
        if not names:
            return np.zeros((self.n, 0)), []
        return np.column_stack([self.columns[n] for n in names]), [t for n in names for t in self.terms[n]]


def encode_clinical(frame: pd.DataFrame, schema: ClinicalSchema) -> EncodedClinical:
    """`EncodedClinical` of the schema's variables in a clinical table."""
    names = [n for n in schema.names if n in frame.columns]
    return EncodedClinical(len(frame), {n: _encode_column(schema[n], frame[n]) for n in names},
                           {n: schema[n].terms() for n in names}, encode_frame(frame, schema, names))


def varying(X: pd.DataFrame) -> pd.DataFrame:
    """Drop design columns that are constant (a level no patient has): they cannot be estimated."""
    values = X.to_numpy(float)
    if not len(values):
        return X.loc[:, np.zeros(X.shape[1], bool)]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column
        keep = np.nanmax(values, axis=0) > np.nanmin(values, axis=0)  # two distinct values or more
    return X.loc[:, keep]


def zero_cells(var: Variable, values: pd.Series, y: np.ndarray) -> List[str]:
    """Levels of a binary/categorical variable in which every patient has the same outcome."""
    if var.type not in ("binary", "categorical"):
        return []
    out = []
    for level in var.levels:
        sel = (values == level).to_numpy()
        if sel.any() and (y[sel].min() == y[sel].max()):
            out.append(level)
    return out


# --------------------------------------------------------------------------- tests for Table 1

def fisher_exact_2xk(table: np.ndarray) -> float:
    """Exact two-sided Fisher test of a 2 x k table (R `fisher.test`): the sum of the
    probabilities of all tables with the same margins that are no more likely than the observed
    (relative tolerance 1e-7, as R). Enumerates tables column by column."""
    table = np.asarray(table, int)
    if table.shape[0] != 2:
        table = table.T
    cols = table.sum(axis=0)
    r1, n = int(table[0].sum()), int(table.sum())
    log_choose = lambda a, b: gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)  # noqa: E731
    log_total = log_choose(n, r1)
    observed = sum(log_choose(c, x) for c, x in zip(cols, table[0])) - log_total
    # distribution of (row-1 sum so far) -> list of log-probability parts, merged column by column
    states: Dict[int, np.ndarray] = {0: np.zeros(1)}
    for j, c in enumerate(cols):
        remaining = int(cols[j + 1:].sum())
        new: Dict[int, List[np.ndarray]] = {}
        for s, parts in states.items():
            for x in range(0, int(c) + 1):
                t = s + x
                if t > r1 or t + remaining < r1:
                    continue
                new.setdefault(t, []).append(parts + log_choose(c, x))
        states = {k: np.concatenate(v) for k, v in new.items()}
        if sum(len(v) for v in states.values()) > 5_000_000:
            raise ValueError("table too large for the exact test")
    logp = states[r1] - log_total
    return float(min(1.0, np.exp(logp[logp <= observed + math.log1p(1e-7)]).sum()))


def categorical_test(table: np.ndarray) -> Tuple[str, float]:
    """Pearson's chi-square (no continuity correction, SPSS's first line) when every expected
    count is 5 or more, else Fisher's exact test."""
    table = np.asarray(table, float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return "none", float("nan")
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    if (expected < 5).any():
        return "Fisher", fisher_exact_2xk(table)
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    return "chi-square", float(p)


def continuous_test(pos: np.ndarray, neg: np.ndarray) -> Tuple[str, float, bool]:
    """Student's t-test when both groups look normal (Shapiro-Wilk p > 0.05 in each, n >= 3),
    else Mann-Whitney U (normal approximation with continuity correction, R `wilcox.test(
    exact = FALSE)`). Returns the test's name, p and whether normality held."""
    normal = all(len(g) >= 3 and stats.shapiro(g).pvalue > 0.05 for g in (pos, neg))
    if normal:
        return "t-test", float(stats.ttest_ind(pos, neg, equal_var=True).pvalue), True
    return "Mann-Whitney U", float(stats.mannwhitneyu(pos, neg, method="asymptotic",
                                                         use_continuity=True).pvalue), False


# --------------------------------------------------------------------------- Table 1

def _pct(k: int, n: int) -> Optional[float]:
    return round(100.0 * k / n, 1) if n else None


def table1(frame: pd.DataFrame, y: pd.Series, schema: ClinicalSchema) -> pd.DataFrame:
    """Counts (and column %) by outcome and overall per level; continuous variables as mean (SD)
    or median [IQR] as normality decides; p-value per variable, with the test used."""
    y = y.astype(int)
    rows = []
    for name in [n for n in schema.names if n in frame.columns]:
        var = schema[name]
        values = frame[name]
        missing = int(values.isna().sum())
        known = values.notna()
        yk = y[known]
        n_pos, n_neg = int((yk == 1).sum()), int((yk == 0).sum())
        if var.type == "continuous":
            pos, neg = values[known & (y == 1)].astype(float).to_numpy(), values[known & (y == 0)].astype(float).to_numpy()
            test, p, normal = continuous_test(pos, neg)
            fmt = (lambda a: f"{np.mean(a):.2f} ({np.std(a, ddof=1):.2f})") if normal else \
                  (lambda a: f"{np.median(a):.2f} [{np.quantile(a, 0.25):.2f}, {np.quantile(a, 0.75):.2f}]")
            rows.append({"variable": name, "label": var.title, "level": "mean (SD)" if normal else "median [IQR]",
                         "imn_positive": fmt(pos), "imn_negative": fmt(neg),
                         "total": fmt(np.concatenate([pos, neg])), "test": test, "p": p, "missing": missing})
            continue
        counts = np.array([[int(((values == lev) & (y == 1)).sum()) for lev in var.levels],
                           [int(((values == lev) & (y == 0)).sum()) for lev in var.levels]])
        test, p = categorical_test(counts)
        for j, lev in enumerate(var.levels):
            rows.append({"variable": name, "label": var.title, "level": lev,
                         "imn_positive": int(counts[0, j]), "imn_positive_pct": _pct(counts[0, j], n_pos),
                         "imn_negative": int(counts[1, j]), "imn_negative_pct": _pct(counts[1, j], n_neg),
                         "total": int(counts[:, j].sum()), "total_pct": _pct(counts[:, j].sum(), n_pos + n_neg),
                         "test": test if j == 0 else "", "p": p if j == 0 else None,
                         "missing": missing if j == 0 else None})
    columns = ["variable", "label", "level", "imn_positive", "imn_positive_pct", "imn_negative",
               "imn_negative_pct", "total", "total_pct", "test", "p", "missing"]
    return pd.DataFrame(rows).reindex(columns=columns)


# --------------------------------------------------------------------------- Table 2

@dataclass
class Table2:
    """Univariate and multivariable logistic results and the selected clinical factors."""

    table: pd.DataFrame
    entered: List[str]
    selected: List[str]
    univariate_p: Dict[str, float]
    multivariable: Optional[LogisticFit]
    notes: List[str] = field(default_factory=list)
    test: str = "wald"
    collinear: List[Dict[str, object]] = field(default_factory=list)  # pairs found and the choice made
    path: List[Dict[str, object]] = field(default_factory=list)       # backward elimination, step by step
    final: List[Dict[str, object]] = field(default_factory=list)      # kept terms with their drop-one LRT
    associations: List[Dict[str, object]] = field(default_factory=list)  # every pair of entered variables

    def selection_record(self) -> Dict[str, object]:
        """How the clinical factors were chosen (metrics.json `selection.clinical_selection`)."""
        return {"test": self.test, "entered": list(self.entered), "collinear": self.collinear,
                "associations": self.associations, "path": self.path, "final": self.final,
                "selected": list(self.selected)}


def _variable_p(fit: LogisticFit, var: Variable) -> float:
    terms = [t for t in fit.terms if term_variable(t) == var.name]
    return float(fit.p[fit.terms.index(terms[0])]) if len(terms) == 1 else fit.wald_p(terms)


def table2(frame: pd.DataFrame, y: pd.Series, schema: ClinicalSchema, entry_p: float = ENTRY_P,
           keep_p: float = KEEP_P, variables: Optional[Sequence[str]] = None, test: str = "lrt",
           collinear: Optional[float] = COLLINEAR) -> Table2:
    """The paper's procedure: univariate logistic regression of every variable (complete cases),
    variables with p < entry_p into one multivariable model. Of a collinear pair of entered
    variables (`screen_collinear`) the one weaker in the univariate screen is left out first.
    test "lrt": backward elimination by likelihood ratio (R `drop1(test = "LRT")`, one variable
    at a time, while the largest p >= keep_p); "wald": kept when the Wald p < keep_p in the one
    multivariable model (the paper). Separation (a level with no event or no non-event, or an ML
    estimate that diverges) is flagged; Firth's estimate is given beside it and used for the
    entry decision."""
    if test not in CLINICAL_TESTS:
        raise ValueError(f"clinical test {test!r}: one of {', '.join(CLINICAL_TESTS)}")
    y = y.astype(int)
    names = [n for n in (variables or schema.names) if n in frame.columns]
    rows: Dict[Tuple[str, str], Dict[str, object]] = {}
    univariate_p: Dict[str, float] = {}
    notes: List[str] = []
    for name in names:
        var = schema[name]
        known = frame[name].notna()
        X = varying(design(frame.loc[known], schema, [name]))
        yk = y[known].to_numpy()
        if X.shape[1] == 0 or yk.min() == yk.max():
            univariate_p[name] = 1.0
            notes.append(f"{name}: does not vary in these patients; not tested")
            continue
        ml, firth = fit_logistic(yk, X)
        zero = zero_cells(var, frame.loc[known, name], yk)
        separated = ml.separation or bool(zero)
        use = firth if (separated and firth is not None) else (fit_firth(yk, X) if separated else ml)
        univariate_p[name] = _variable_p(use, var)
        if separated:
            notes.append(f"{name}: separation ({'no events or no non-events in ' + ', '.join(zero) if zero else 'ML estimate diverges'}); Firth's estimate shown")
        ml_table, use_table = ml.table(), use.table()
        for term in X.columns:
            level = term.split("[", 1)[1][:-1] if "[" in term else _level_text(var)
            row = {"variable": name, "level": level, "uni_or": None, "uni_ci_low": None, "uni_ci_high": None,
                   "uni_p": None, "separation": separated}
            if not separated:
                r = ml_table.loc[term]
                row.update(uni_or=r["or"], uni_ci_low=r["or_ci_low"], uni_ci_high=r["or_ci_high"], uni_p=r["p"])
            r = use_table.loc[term]
            if separated:
                row.update(firth_or=r["or"], firth_ci_low=r["or_ci_low"], firth_ci_high=r["or_ci_high"], firth_p=r["p"])
            row["uni_variable_p"] = univariate_p[name]
            rows[(name, term)] = row
    entered = [n for n in names if univariate_p[n] < entry_p]
    pairs, candidates = screen_collinear(frame, schema, entered, univariate_p, collinear)
    notes += [pair_note(pair) for pair in pairs]
    removed = {pair["dropped"]: f"collinear with {pair['kept']}" for pair in pairs}
    multivariable, selected, path, final, lrt = None, [], [], [], {}
    if candidates:
        known = frame[candidates].notna().all(axis=1)
        X = varying(design(frame.loc[known], schema, candidates))
        yk = y[known].to_numpy()
        ml, firth = fit_logistic(yk, X)
        multivariable = firth if ml.separation else ml
        notes += _multivariable_notes(ml.separation, test, int(known.sum()), len(frame))
        if test == "lrt":
            lrt = drop1_lrt(yk, X, candidates)
            selected, path, final = backward_lrt(yk, X, candidates, keep_p)
            removed.update({s["removed"]: f"step {s['step']}" for s in path})
        mt = multivariable.table()
        for name in candidates:
            var_p = _variable_p(multivariable, schema[name])
            if test == "wald" and var_p < keep_p:
                selected.append(name)
            for term in [t for t in X.columns if term_variable(t) == name]:
                r = mt.loc[term]
                rows[(name, term)].update(multi_or=r["or"], multi_ci_low=r["or_ci_low"], multi_ci_high=r["or_ci_high"],
                                          multi_p=r["p"], multi_variable_p=var_p,
                                          multi_lrt_p=lrt[name]["p"] if name in lrt else None)
    for (name, _term), row in rows.items():
        row["selected"] = name in selected
        row["removed"] = removed.get(name)
    columns = ["variable", "level", "uni_or", "uni_ci_low", "uni_ci_high", "uni_p", "multi_or", "multi_ci_low",
               "multi_ci_high", "multi_p", "selected", "separation", "firth_or", "firth_ci_low", "firth_ci_high",
               "firth_p", "uni_variable_p", "multi_variable_p", "multi_lrt_p", "removed"]
    table = pd.DataFrame(list(rows.values())).reindex(columns=columns)
    return Table2(table, entered, selected, univariate_p, multivariable, notes, test, pairs, path, final,
                  pair_associations(frame, schema, entered))


def _multivariable_notes(separation: bool, test: str, complete: int, total: int) -> List[str]:
    """Notes of the multivariable step: Firth's fit used under separation; complete cases only."""
    notes = []
    if separation:
        notes.append("multivariable model: separation; Firth's penalised fit used"
                     + (" for the ORs (likelihood-ratio tests from the ML deviance, as R's glm)" if test == "lrt" else ""))
    if complete < total:
        notes.append(f"multivariable model on {complete} complete cases of {total}")
    return notes


# --------------------------------------------------------------------------- multivariable selection

def drop1_lrt(y: np.ndarray, X: pd.DataFrame, variables: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """R's `drop1(fit, test = "LRT")`: each variable's design terms left out in turn (a factor is
    one term of df = its levels - 1); LR chi2 = the rise in ML deviance, p from chi2(df)."""
    return _drop1_arrays(np.asarray(y, float), with_intercept(X.to_numpy()), list(X.columns), variables)


def backward_lrt(y: np.ndarray, X: pd.DataFrame, variables: Sequence[str], keep_p: float = KEEP_P
                 ) -> Tuple[List[str], List[Dict[str, object]], List[Dict[str, object]]]:
    """Backward elimination by likelihood ratio, one variable at a time: refit, drop the variable
    with the largest drop-one LRT p while it is >= keep_p (first one on a tie, as R's which.max).
    Returns the kept variables, the path (step, removed, chi2, df, p) and the kept ones' tests."""
    return _backward_arrays(np.asarray(y, float), with_intercept(X.to_numpy()), list(X.columns), variables, keep_p)


def _drop1_arrays(y: np.ndarray, Xi: np.ndarray, terms: Sequence[str], variables: Sequence[str],
                  columns: Optional[List[int]] = None, cache: Optional[Dict[tuple, float]] = None
                  ) -> Dict[str, Dict[str, float]]:
    """`drop1_lrt` on arrays: Xi has the intercept column, then one column per term; the model is
    Xi's `columns` (default all); `cache` keeps the log-likelihood of each column set fitted."""
    columns = list(range(Xi.shape[1])) if columns is None else columns
    cache = {} if cache is None else cache

    def loglik(cols: List[int]) -> float:
        key = tuple(cols)
        if key not in cache:  # `fit_ml_arrays`' log-likelihood, without the covariance it would invert
            cache[key] = fitted_loglik(y, Xi[:, cols])
        return cache[key]

    full = loglik(columns)
    out: Dict[str, Dict[str, float]] = {}
    for name in variables:
        rest = [j for j in columns if j == 0 or term_variable(terms[j - 1]) != name]
        df = len(columns) - len(rest)
        if not df:  # no level varies in these patients: nothing to test
            out[name] = {"chi2": 0.0, "df": 0, "p": 1.0}
            continue
        chi2 = max(0.0, 2.0 * (full - loglik(rest)))
        out[name] = {"chi2": chi2, "df": df, "p": float(special.chdtrc(df, chi2))}  # stats.chi2.sf(chi2, df)
    return out


def _backward_arrays(y: np.ndarray, Xi: np.ndarray, terms: Sequence[str], variables: Sequence[str],
                     keep_p: float, cache: Optional[Dict[tuple, float]] = None
                     ) -> Tuple[List[str], List[Dict[str, object]], List[Dict[str, object]]]:
    """`backward_lrt` on arrays: each step refits on the remaining variables' columns of Xi (a
    column set fitted once: the model after a removal is the one its drop-one test fitted)."""
    remaining, path = list(variables), []
    cache = {} if cache is None else cache
    while remaining:
        cols = [0] + [j + 1 for j, t in enumerate(terms) if term_variable(t) in remaining]
        tests = _drop1_arrays(y, Xi, terms, remaining, cols, cache)
        worst = max(remaining, key=lambda name: tests[name]["p"])
        if tests[worst]["p"] < keep_p:
            return remaining, path, [{"term": name, **tests[name]} for name in remaining]
        path.append({"step": len(path) + 1, "removed": worst, **tests[worst]})
        remaining.remove(worst)
    return [], path, []


def _saturated_fit(y: np.ndarray, X: np.ndarray, terms: List[str]) -> Optional[LogisticFit]:
    """`fit_ml` of one binary or categorical variable's 0/1 columns in closed form: each group's
    log-odds (the intercept: the reference's), what Newton-Raphson converges to (to ~1e-12), with
    the Wald covariance at the estimate. None when Newton is needed to say what happens (a group
    with no event or no non-event, an absent reference group, an estimate beyond MAX_ABS_COEF)."""
    y = np.asarray(y, float)
    groups = _saturated_groups(X)
    if groups is None:
        return None
    n = np.array([g.sum() for g in groups], float)
    events = np.array([y[g].sum() for g in groups])
    if ((events == 0) | (events == n)).any():
        return None
    logit = np.log(events / (n - events))
    beta = np.concatenate(([logit[0]], logit[1:] - logit[0]))
    if np.abs(beta[1:]).max(initial=0) > MAX_ABS_COEF:
        return None
    Xi = with_intercept(X)
    eta = Xi @ beta
    pi = probability(eta)
    cov = np.linalg.inv(Xi.T @ (Xi * (pi * (1 - pi))[:, None]))
    ll = float(np.sum(y * eta - np.logaddexp(0, eta)))
    return LogisticFit(["(Intercept)"] + list(terms), beta, np.sqrt(np.abs(np.diag(cov))), cov, len(y),
                       int(y.sum()), "ML", False, ll)


def _saturated_groups(X: np.ndarray) -> Optional[List[np.ndarray]]:
    """Rows of each group of a saturated 0/1 design (the reference: no 1; then one group per
    column), or None when X is not one (a value not 0/1, two 1s in a row, an empty group)."""
    if not ((X == 0) | (X == 1)).all() or (X.sum(axis=1) > 1).any():
        return None
    groups = [X.sum(axis=1) == 0] + [X[:, j] == 1 for j in range(X.shape[1])]
    return groups if all(g.any() for g in groups) else None


def _log1p_exp(t: float) -> float:
    """log(1 + e^t) of one number: numpy's `logaddexp(0, t)` step by step (the same libm calls,
    the same value) without a ufunc call per group and iteration."""
    if t == 0.0:
        return math.log(2.0)
    return math.log1p(math.exp(t)) if t < 0 else t + math.log1p(math.exp(-t))


def _saturated_firth(y: np.ndarray, X: np.ndarray, terms: List[str], max_iter: int = 100,
                     tol: float = 1e-10) -> LogisticFit:
    """`fit_firth` of a saturated 0/1 design, the same iterations on group sums: each row's hat
    value sums to 1 per group, so the step is, per group log-odds t, (events + 1/2 - (n + 1) p) /
    (n p (1 - p)) and the penalised log-likelihood a sum over groups (fit_firth's step halving,
    convergence test and iteration limit on the coefficients, intercept = the reference's t)."""
    groups = _saturated_groups(X)
    n = [float(g.sum()) for g in groups]
    events = [float(np.asarray(y, float)[g].sum()) for g in groups]
    from IMNRiskLib.stats import fitkernels  # start-up time: loaded when this step runs
    compiled = fitkernels.group_firth(np.array(n), np.array(events), max_iter, tol)
    if compiled is not None:  # the loop below, compiled (the same bits)
        t, ll = list(compiled[0]), compiled[1]
    else:
        t, ll = _group_firth_loop(n, events, max_iter, tol)
    beta = np.array([t[0]] + [tg - t[0] for tg in t[1:]])
    Xi = with_intercept(X)
    pi = probability(Xi @ beta)
    cov = np.linalg.inv(Xi.T @ (Xi * (pi * (1 - pi))[:, None]))
    return LogisticFit(["(Intercept)"] + list(terms), beta, np.sqrt(np.diag(cov)), cov, len(y), int(np.sum(y)),
                       "Firth", False, ll)


def _group_firth_loop(n: List[float], events: List[float], max_iter: int, tol: float) -> Tuple[List[float], float]:
    """`_saturated_firth`'s iterations on the group log-odds t: (t, penalised log-likelihood)."""
    def penalised(t: List[float]) -> float:
        value = 0.0
        for tg, ng, sg in zip(t, n, events):
            pg = 1.0 / (1.0 + math.exp(-tg))
            value += sg * tg - ng * _log1p_exp(tg) + 0.5 * math.log(ng * pg * (1 - pg))
        return value

    def coefficients(t: List[float]) -> List[float]:
        return [t[0]] + [tg - t[0] for tg in t[1:]]

    t = [0.0] * len(n)
    ll = penalised(t)
    for _ in range(max_iter):
        step = []
        for tg, ng, sg in zip(t, n, events):
            pg = 1.0 / (1.0 + math.exp(-tg))
            step.append((sg + 0.5 - (ng + 1) * pg) / (ng * pg * (1 - pg)))
        for _half in range(30):
            new = [tg + d for tg, d in zip(t, step)]
            new_ll = penalised(new)
            if new_ll >= ll - 1e-12:
                break
            step = [d / 2 for d in step]
        converged = max(abs(a - b) for a, b in zip(coefficients(new), coefficients(t))) < tol
        t, ll = new, new_ll
        if converged:
            break
    return t, ll


def table2_selection(frame: pd.DataFrame, y: np.ndarray, schema: ClinicalSchema, entry_p: float = ENTRY_P,
                     keep_p: float = KEEP_P, test: str = "lrt", collinear: Optional[float] = COLLINEAR,
                     encoded: Optional[EncodedFrame] = None, record: bool = True) -> Table2:
    """`table2`'s decisions only (univariate p, entered, collinear pairs, the multivariable fit,
    the LRT path, selected, notes, associations), without its printed table (`table` is empty):
    the same fits on arrays encoded once, because the validation repeats the procedure ~1500
    times. Must follow `table2` step by step (Testing/test_clinical_fast.py checks it on resamples).
    `encoded`: the frame's encoding when already made (`EncodedClinical.take`). `record` False:
    without what only the record and the report read (the validation's fits discard it): no
    association of every pair of entered variables (`associations` empty) and, with LR elimination,
    no Firth fit of a separated multivariable model (`multivariable` None then)."""
    if test not in CLINICAL_TESTS:
        raise ValueError(f"clinical test {test!r}: one of {', '.join(CLINICAL_TESTS)}")
    y = np.asarray(y, int)
    names = [n for n in schema.names if n in frame.columns]
    enc = encode_frame(frame, schema, names) if encoded is None else encoded
    univariate_p: Dict[str, float] = {}
    notes: List[str] = []
    for name in names:
        var = schema[name]
        known = enc.present[name]
        X, terms = varying_array(enc.design[name][known], enc.terms[name])
        yk = y[known]
        if X.shape[1] == 0 or yk.min() == yk.max():
            univariate_p[name] = 1.0
            notes.append(f"{name}: does not vary in these patients; not tested")
            continue
        zero = _zero_cells_array(var, enc.values[name].tolist(), yk)
        # a zero cell means separation whatever the ML fit says (only its Firth fit is used then)
        ml = None if zero else (_saturated_fit(yk, X, terms) if var.type in ("binary", "categorical") else None) \
            or _ml_fit_arrays(yk, X, terms)
        separated = bool(zero) or ml.separation
        if separated:
            saturated = var.type in ("binary", "categorical") and _saturated_groups(X) is not None
            use = _saturated_firth(yk, X, terms) if saturated else fit_firth(yk, pd.DataFrame(X, columns=terms))
        else:
            use = ml
        univariate_p[name] = _variable_p(use, var)
        if separated:
            notes.append(f"{name}: separation ({'no events or no non-events in ' + ', '.join(zero) if zero else 'ML estimate diverges'}); Firth's estimate shown")
    entered = [n for n in names if univariate_p[n] < entry_p]
    pairs, candidates = encoded_screen(enc, entered, univariate_p, collinear)
    notes += [pair_note(pair) for pair in pairs]
    multivariable, selected, path, final = None, [], [], []
    if candidates:
        known, X, terms = complete_design(enc, candidates)
        yk = y[known]
        ml = _ml_fit_arrays(yk, X, terms)
        if not ml.separation:
            multivariable = ml
        elif record or test != "lrt":  # LR elimination uses the ML deviance: Firth's fit is for the record
            multivariable = fit_firth(yk, pd.DataFrame(X, columns=terms))
        notes += _multivariable_notes(ml.separation, test, int(known.sum()), len(frame))
        if test == "lrt":
            cache = {tuple(range(len(terms) + 1)): ml.loglik}  # the full model, fitted above
            selected, path, final = _backward_arrays(yk.astype(float), with_intercept(X), terms, candidates,
                                                     keep_p, cache)
        else:
            selected = [n for n in candidates if _variable_p(multivariable, schema[n]) < keep_p]
    return Table2(pd.DataFrame(), entered, selected, univariate_p, multivariable, notes, test, pairs, path, final,
                  encoded_pairs(enc, entered) if record else [])


def _zero_cells_array(var: Variable, values: list, y: np.ndarray) -> List[str]:
    """`zero_cells` on a list of the (known) values."""
    if var.type not in ("binary", "categorical"):
        return []
    values = np.array(values, dtype=object)
    out = []
    for level in var.levels:
        sel = values == level
        if sel.any() and (y[sel].min() == y[sel].max()):
            out.append(level)
    return out


def _ml_fit_arrays(y: np.ndarray, X: np.ndarray, terms: List[str]) -> LogisticFit:
    """`fit_ml` of y on the columns of X named `terms`, from arrays."""
    return fit_ml_named(y, X, terms)


def _level_text(var: Variable) -> str:
    """How a one-term variable's OR reads: per unit, per step, or level vs reference level."""
    if var.type == "continuous":
        return f"per {var.unit}" if var.unit else "per unit"
    if var.type == "ordinal":
        return f"per step ({' < '.join(var.levels)})"
    return f"{var.levels[1]} vs {var.levels[0]}"
