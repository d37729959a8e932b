"""Clinical analysis: Table 1 (by outcome, with tests) and Table 2 (univariate then multivariable
logistic regression, as the paper), with separation detected and Firth's estimate offered.

Logistic fits are statsmodels' (ML, Wald CIs and p-values as R's `glm` + `confint.default`).
Firth's penalised fit and the exact 2 x k Fisher test are written here: statsmodels has no Firth
regression and SciPy's r x c Fisher test is a resampling one, not R's exact `fisher.test`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import special, stats
from scipy.special import gammaln

from IMNRiskLib.inputs.schema import ClinicalSchema, Variable
from IMNRiskLib.stats.ranks import average_ranks
from IMNRiskLib.stats.logistic import (MAX_ABS_COEF, LogisticFit, fit_firth, fit_logistic, fit_ml_arrays, probability,
                                       term_variable, with_intercept)

ENTRY_P = 0.10   # univariate p below which a variable enters the multivariable model (paper)
KEEP_P = 0.05    # multivariable p below which a variable is kept (paper)
CLINICAL_TESTS = ("lrt", "wald")  # multivariable elimination: likelihood ratio (R drop1/step) or Wald p
COLLINEAR = 0.7  # |Cramer's V| or |Spearman| above which two candidate factors are one too many


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
        if key not in cache:
            cache[key] = fit_ml_arrays(y, Xi[:, cols])[3]
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


def cramers_v(table: np.ndarray) -> float:
    """Cramer's V of a contingency table (no continuity correction); 0 when a margin has one level."""
    table = np.asarray(table, float)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    k = min(table.shape) - 1
    if k < 1:
        return 0.0
    n = table.sum()
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())  # Pearson's, as stats.chi2_contingency
    return float(math.sqrt(chi2 / (n * k)))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (Pearson's r of the average ranks, as stats.spearmanr) of two varying arrays."""
    return _rank_correlation(average_ranks(a), average_ranks(b))


def _rank_correlation(ra: np.ndarray, rb: np.ndarray) -> float:
    """Pearson's r of two rank vectors."""
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float(ra @ rb / math.sqrt((ra @ ra) * (rb @ rb)))


DISCRETE = ("binary", "categorical", "ordinal")   # Cramer's V between two of these
ORDERED = ("binary", "ordinal", "continuous")     # Spearman between two of these


@dataclass
class EncodedFrame:
    """Clinical variables as arrays, encoded once per table: for each variable the rows where it
    is known, its design columns (all rows; NaN where missing), its terms, its known values and,
    when discrete, a group code per row (its distinct values as text, as pd.crosstab groups them;
    -1 where missing)."""

    present: Dict[str, np.ndarray]
    design: Dict[str, np.ndarray]
    terms: Dict[str, List[str]]
    values: Dict[str, np.ndarray]
    groups: Dict[str, Tuple[np.ndarray, int]]
    types: Dict[str, str]
    ranks: Dict[str, np.ndarray] = field(default_factory=dict)  # average ranks over all rows, when asked


def encode_frame(frame: pd.DataFrame, schema: ClinicalSchema, names: Sequence[str]) -> EncodedFrame:
    """`EncodedFrame` of the named variables of a clinical table (each distinct value encoded once,
    by `Variable.encode` as `design` does)."""
    enc = EncodedFrame({}, {}, {}, {}, {}, {})
    for name in names:
        var = schema[name]
        column = frame[name].to_numpy(dtype=object)
        known = ~pd.isna(column)
        values = column[known]
        index: Dict[Tuple[type, object], int] = {}
        inverse = np.fromiter((index.setdefault((type(v), v), len(index)) for v in values), np.int64, len(values))
        width = len(var.terms())
        rows = np.array([var.encode(v) for _, v in index], dtype=float).reshape(len(index), width)
        full = np.full((len(frame), width), np.nan)
        full[known] = rows[inverse]
        enc.present[name], enc.design[name], enc.terms[name] = known, full, var.terms()
        enc.values[name], enc.types[name] = values, var.type
        if var.type in DISCRETE:
            texts = [str(v) for _, v in index]
            order = {t: i for i, t in enumerate(sorted(set(texts)))}
            code = np.full(len(frame), -1, dtype=np.int64)
            code[known] = np.array([order[t] for t in texts], dtype=np.int64).reshape(-1)[inverse]
            enc.groups[name] = (code, len(order))
    return enc


def factor_association(a: pd.Series, b: pd.Series, var_a: Variable, var_b: Variable) -> Tuple[str, float]:
    """How strongly two clinical variables go together (pairwise complete cases): the larger of
    Cramer's V (both discrete) and |Spearman| on the coded values (both ordered: binary, ordinal,
    continuous); ("none", 0) for a categorical against a continuous variable."""
    frame = pd.DataFrame({"a": a.to_numpy(), "b": b.to_numpy()})
    schema = ClinicalSchema(variables=(replace(var_a, name="a"), replace(var_b, name="b")))
    return encoded_association(encode_frame(frame, schema, ["a", "b"]), "a", "b")


def encoded_association(enc: EncodedFrame, a: str, b: str) -> Tuple[str, float]:
    """`factor_association` of two variables of an `EncodedFrame`."""
    known = enc.present[a] & enc.present[b]
    found: List[Tuple[str, float]] = [("none", 0.0)]
    if enc.types[a] in DISCRETE and enc.types[b] in DISCRETE:
        (ca, na), (cb, nb) = enc.groups[a], enc.groups[b]
        cells = np.bincount(ca[known] * nb + cb[known], minlength=na * nb).reshape(na, nb)
        found.append(("Cramer's V", cramers_v(cells)))
    if enc.types[a] in ORDERED and enc.types[b] in ORDERED:
        xa, xb = enc.design[a][known, 0], enc.design[b][known, 0]
        if len(xa) and np.ptp(xa) > 0 and np.ptp(xb) > 0:
            found.append(("|Spearman|", abs(_rank_correlation(_ranks(enc, a, known), _ranks(enc, b, known)))))
    return max(found, key=lambda t: t[1])


def _ranks(enc: EncodedFrame, name: str, rows: np.ndarray) -> np.ndarray:
    """Average ranks of a variable's coded values in `rows`; those of all rows computed once."""
    if not rows.all():
        return average_ranks(enc.design[name][rows, 0])
    if name not in enc.ranks:
        enc.ranks[name] = average_ranks(enc.design[name][:, 0])
    return enc.ranks[name]


def pair_associations(frame: pd.DataFrame, schema: ClinicalSchema, names: Sequence[str]
                      ) -> List[Dict[str, object]]:
    """`factor_association` of every pair of the named variables (what the collinearity screen saw)."""
    return _encoded_pairs(encode_frame(frame, schema, names), names)


def _encoded_pairs(enc: EncodedFrame, names: Sequence[str]) -> List[Dict[str, object]]:
    """`pair_associations` on an `EncodedFrame`."""
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            measure, value = encoded_association(enc, a, b)
            out.append({"a": a, "b": b, "measure": measure, "value": value})
    return out


def screen_collinear(frame: pd.DataFrame, schema: ClinicalSchema, names: Sequence[str],
                     univariate_p: Dict[str, float], threshold: Optional[float] = COLLINEAR
                     ) -> Tuple[List[Dict[str, object]], List[str]]:
    """Collinear candidates before the multivariable step: visiting variables strongest first
    (univariate p), one associated above `threshold` with a kept one is left out, and so is one
    that makes the design rank-deficient. Returns the pairs (kept, dropped, measure, value,
    their univariate p) and the kept variables in their original order."""
    return _encoded_screen(encode_frame(frame, schema, names), names, univariate_p, threshold)


def _encoded_screen(enc: EncodedFrame, names: Sequence[str], univariate_p: Dict[str, float],
                    threshold: Optional[float]) -> Tuple[List[Dict[str, object]], List[str]]:
    """`screen_collinear` on an `EncodedFrame`."""
    # strongest first; p equal to 9 digits (e.g. two variables with the same counts) are a tie, broken
    # by the variables' order rather than by rounding noise
    order = sorted(names, key=lambda n: (float(f"{univariate_p[n]:.9g}"), list(names).index(n)))
    kept: List[str] = []
    pairs: List[Dict[str, object]] = []
    for name in order:
        hit = None
        if threshold is not None:
            for other in kept:
                measure, value = encoded_association(enc, name, other)
                if value > threshold:
                    hit = {"kept": other, "dropped": name, "measure": measure, "value": value}
                    break
        if hit is None and kept:
            hit = _encoded_rank_deficient(enc, kept, name)
        if hit is None:
            kept.append(name)
        else:
            pairs.append({**hit, "p_kept": univariate_p.get(hit["kept"]), "p_dropped": univariate_p[name]})
    return pairs, [n for n in names if n in kept]


def _encoded_rank_deficient(enc: EncodedFrame, kept: Sequence[str], name: str) -> Optional[Dict[str, object]]:
    """A pair record when adding `name` to the kept variables leaves the design rank-deficient."""
    X, terms = _complete_design(enc, list(kept) + [name])[1:]
    Xi = with_intercept(X)
    if np.linalg.matrix_rank(Xi) == Xi.shape[1] and any(term_variable(t) == name for t in terms):
        return None
    return {"kept": ", ".join(kept), "dropped": name, "measure": "rank-deficient design", "value": None}


def _complete_design(enc: EncodedFrame, names: Sequence[str]) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """Complete cases of the named variables: (their row mask, `varying` design, its terms), as
    `varying(design(frame.loc[known], schema, names))`."""
    known = np.logical_and.reduce([enc.present[n] for n in names])
    X, terms = _varying_array(np.column_stack([enc.design[n][known] for n in names]),
                              [t for n in names for t in enc.terms[n]])
    return known, X, terms


def pair_note(pair: Dict[str, object]) -> str:
    """One line for the notes: which of a collinear pair was left out and why."""
    value = f" {pair['value']:.2f}" if pair["value"] is not None else ""
    kept_p = f" (univariate p {pair['p_kept']:.3g})" if pair["p_kept"] is not None else ""
    return (f"{pair['dropped']} and {pair['kept']} collinear ({pair['measure']}{value}): {pair['kept']} kept"
            f"{kept_p}, {pair['dropped']} (p {pair['p_dropped']:.3g}) left out before the multivariable step")


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


def _saturated_firth(y: np.ndarray, X: np.ndarray, terms: List[str], max_iter: int = 100,
                     tol: float = 1e-10) -> LogisticFit:
    """`fit_firth` of a saturated 0/1 design, the same iterations on group sums: each row's hat
    value sums to 1 per group, so the step is, per group log-odds t, (events + 1/2 - (n + 1) p) /
    (n p (1 - p)) and the penalised log-likelihood a sum over groups (fit_firth's step halving,
    convergence test and iteration limit on the coefficients, intercept = the reference's t)."""
    groups = _saturated_groups(X)
    n = [float(g.sum()) for g in groups]
    events = [float(np.asarray(y, float)[g].sum()) for g in groups]

    def penalised(t: List[float]) -> float:
        value = 0.0
        for tg, ng, sg in zip(t, n, events):
            pg = 1.0 / (1.0 + math.exp(-tg))
            value += sg * tg - ng * np.logaddexp(0, tg) + 0.5 * math.log(ng * pg * (1 - pg))
        return value

    def coefficients(t: List[float]) -> List[float]:
        return [t[0]] + [tg - t[0] for tg in t[1:]]

    t = [0.0] * len(groups)
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
    beta = np.array(coefficients(t))
    Xi = with_intercept(X)
    pi = probability(Xi @ beta)
    cov = np.linalg.inv(Xi.T @ (Xi * (pi * (1 - pi))[:, None]))
    return LogisticFit(["(Intercept)"] + list(terms), beta, np.sqrt(np.diag(cov)), cov, len(y), int(np.sum(y)),
                       "Firth", False, ll)


def table2_selection(frame: pd.DataFrame, y: np.ndarray, schema: ClinicalSchema, entry_p: float = ENTRY_P,
                     keep_p: float = KEEP_P, test: str = "lrt", collinear: Optional[float] = COLLINEAR) -> Table2:
    """`table2`'s decisions only (univariate p, entered, collinear pairs, the multivariable fit,
    the LRT path, selected, notes, associations), without its printed table (`table` is empty):
    the same fits on arrays encoded once, because the validation repeats the procedure ~1500
    times. Must follow `table2` step by step (Testing/test_clinical_fast.py checks it on resamples)."""
    if test not in CLINICAL_TESTS:
        raise ValueError(f"clinical test {test!r}: one of {', '.join(CLINICAL_TESTS)}")
    y = np.asarray(y, int)
    names = [n for n in schema.names if n in frame.columns]
    enc = encode_frame(frame, schema, names)
    univariate_p: Dict[str, float] = {}
    notes: List[str] = []
    for name in names:
        var = schema[name]
        known = enc.present[name]
        X, terms = _varying_array(enc.design[name][known], enc.terms[name])
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
    pairs, candidates = _encoded_screen(enc, entered, univariate_p, collinear)
    notes += [pair_note(pair) for pair in pairs]
    multivariable, selected, path, final = None, [], [], []
    if candidates:
        known, X, terms = _complete_design(enc, candidates)
        yk = y[known]
        ml = _ml_fit_arrays(yk, X, terms)
        multivariable = fit_firth(yk, pd.DataFrame(X, columns=terms)) if ml.separation else ml
        notes += _multivariable_notes(ml.separation, test, int(known.sum()), len(frame))
        if test == "lrt":
            cache = {tuple(range(len(terms) + 1)): ml.loglik}  # the full model, fitted above
            selected, path, final = _backward_arrays(yk.astype(float), with_intercept(X), terms, candidates,
                                                     keep_p, cache)
        else:
            selected = [n for n in candidates if _variable_p(multivariable, schema[n]) < keep_p]
    return Table2(pd.DataFrame(), entered, selected, univariate_p, multivariable, notes, test, pairs, path, final,
                  _encoded_pairs(enc, entered))


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


def _varying_array(X: np.ndarray, terms: List[str]) -> Tuple[np.ndarray, List[str]]:
    """`varying` on an array with its column names."""
    if not len(X):
        keep = np.zeros(X.shape[1], bool)
    else:
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            keep = np.nanmax(X, axis=0) > np.nanmin(X, axis=0)
    return X[:, keep], [t for t, k in zip(terms, keep) if k]


def _ml_fit_arrays(y: np.ndarray, X: np.ndarray, terms: List[str]) -> LogisticFit:
    """`fit_ml` of y on the columns of X named `terms`, from arrays."""
    y = np.asarray(y, float)
    beta, se, cov, ll, separation = fit_ml_arrays(y, with_intercept(X))
    return LogisticFit(["(Intercept)"] + list(terms), beta, se, cov, len(y), int(y.sum()), "ML", separation, ll)


def _level_text(var: Variable) -> str:
    """How a one-term variable's OR reads: per unit, per step, or level vs reference level."""
    if var.type == "continuous":
        return f"per {var.unit}" if var.unit else "per unit"
    if var.type == "ordinal":
        return f"per step ({' < '.join(var.levels)})"
    return f"{var.levels[1]} vs {var.levels[0]}"


# --------------------------------------------------------------------------- imnrisk tables

def _html(frame: pd.DataFrame, caption: str) -> str:
    """An HTML fragment of a table (for the report)."""
    from html import escape
    html = frame.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.3g}", border=0,
                         classes="imnrisk-table")
    return html.replace("<thead>", f"<caption>{escape(caption)}</caption>\n  <thead>", 1) + "\n"


def write_tables(cohort_path, out_dir, schema_path=None, entry_p: float = ENTRY_P, keep_p: float = KEEP_P,
                 force: bool = False):
    """`imnrisk tables`: table1.csv, table2.csv and their HTML fragments in out_dir."""
    from pathlib import Path
    from IMNRiskLib.inputs.cohort import read_cohort
    from IMNRiskLib.core.files import claim_outputs, output_lock, output_set, write_text
    from IMNRiskLib.inputs.schema import load_schema
    out = Path(out_dir)
    names = ["table1.csv", "table2.csv", "table1.html", "table2.html"]
    claim_outputs([out / n for n in names], [cohort_path, schema_path], force)
    schema = load_schema(schema_path)
    cohort = read_cohort(cohort_path, schema, need_clinical=True, need_outcome=True, need_imaging=False)
    frame, y = cohort.clinical_frame(), cohort.outcome()
    labelled = y.notna()
    frame, y = frame[labelled], y[labelled]
    from IMNRiskLib.core.errors import InputError
    from IMNRiskLib.stats.evaluation import check_outcome
    try:
        check_outcome(y, schema.outcome)
    except InputError as exc:
        raise exc.located(file=str(cohort_path)) from None
    t1 = table1(frame, y, schema)
    t2 = table2(frame, y, schema, entry_p, keep_p)
    with output_lock(out), output_set(out) as stage:  # the four tables or none
        for name, table in (("table1.csv", t1), ("table2.csv", t2.table)):
            table.to_csv(stage / name, index=False)
        write_text(stage / "table1.html", _html(t1, f"Table 1. Characteristics by {schema.outcome} status "
                                                    f"(n = {len(y)}, events = {int(y.sum())})"))
        notes = "".join(f"<li>{n}</li>" for n in t2.notes)
        write_text(stage / "table2.html", _html(t2.table, "Table 2. Univariate and multivariable logistic regression")
                   + (f"<ul class='notes'>{notes}</ul>\n" if notes else "")
                   + f"<p>Entered (univariate p &lt; {entry_p:g}): {', '.join(t2.entered) or 'none'}; "
                   f"selected (backward elimination, likelihood-ratio p &lt; {keep_p:g}): "
                   f"{', '.join(t2.selected) or 'none'}.</p>\n")
    return [out / n for n in names]
