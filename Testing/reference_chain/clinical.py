"""Clinical analysis: Table 1 (by outcome, with tests) and Table 2 (univariate then multivariable
logistic regression, as the paper), with separation detected and Firth's estimate offered.

Logistic fits are statsmodels' (ML, Wald CIs and p-values as R's `glm` + `confint.default`).
Firth's penalised fit and the exact 2 x k Fisher test are written here: statsmodels has no Firth
regression and SciPy's r x c Fisher test is a resampling one, not R's exact `fisher.test`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import stats

from IMNRiskLib.inputs.schema import ClinicalSchema, Variable

Z95 = stats.norm.ppf(0.975)
ENTRY_P = 0.10   # univariate p below which a variable enters the multivariable model (paper)
KEEP_P = 0.05    # multivariable p below which a variable is kept (paper)
MAX_ABS_COEF = 15.0  # |log OR| beyond this means the ML estimate ran off to infinity


# --------------------------------------------------------------------------- design matrices

def design(frame: pd.DataFrame, schema: ClinicalSchema, names: Sequence[str]) -> pd.DataFrame:
    """Design matrix (no intercept) of the named variables, coded as the schema says."""
    columns: Dict[str, List[float]] = {}
    for name in names:
        var = schema[name]
        encoded = [var.encode(v) for v in frame[name]]
        for j, term in enumerate(var.terms()):
            columns[term] = [row[j] for row in encoded]
    return pd.DataFrame(columns, index=frame.index, dtype=float)


def varying(X: pd.DataFrame) -> pd.DataFrame:
    """Drop design columns that are constant (a level no patient has): they cannot be estimated."""
    return X.loc[:, X.nunique(dropna=True) > 1]


def term_variable(term: str) -> str:
    """Variable a design term belongs to (`x[level]` -> `x`)."""
    return term.split("[", 1)[0]


# --------------------------------------------------------------------------- logistic fits

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
        return 2 * stats.norm.sf(np.abs(self.z))

    def table(self) -> pd.DataFrame:
        """Coefficient table with odds ratios and Wald 95% CIs (R `confint.default`)."""
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
        return float(stats.chi2.sf(stat, np.linalg.matrix_rank(v)))

    def predict_lp(self, X: np.ndarray) -> np.ndarray:
        """Linear predictor for rows of X (without the intercept column)."""
        return self.coef[0] + np.asarray(X, float) @ self.coef[1:]

    def __str__(self) -> str:
        head = f"Logistic regression ({self.method}), n = {self.n}, events = {self.events}" + \
               (" [separation]" if self.separation else "")
        return head + "\n" + self.table().round(4).to_string()


def _with_intercept(X: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(X)), np.asarray(X, float)])


def fit_ml(y: np.ndarray, X: pd.DataFrame, max_iter: int = 100, tol: float = 1e-10) -> LogisticFit:
    """Maximum-likelihood logistic regression by Newton-Raphson (with step halving), the same
    likelihood as R's glm / statsmodels' GLM, written here because validation fits it ~10^5
    times and statsmodels' per-call overhead (~5 ms) would dominate; checked against R's glm to
    1e-6. `separation` is set when the MLE does not exist (estimates run off, Hessian singular)."""
    y = np.asarray(y, float)
    Xi = _with_intercept(X.to_numpy())
    terms = ["(Intercept)"] + list(X.columns)
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
        pi = 1.0 / (1.0 + np.exp(-eta))
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
    try:
        cov = np.linalg.inv(info)
        if not np.isfinite(cov).all():
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        cov = np.full((k, k), np.nan)
    se = np.sqrt(np.abs(np.diag(cov)))
    separation = (not converged or not np.isfinite(beta).all() or np.abs(beta[1:]).max(initial=0) > MAX_ABS_COEF
                  or not np.isfinite(se).all())
    return LogisticFit(terms, beta, se, cov, len(y), int(y.sum()), "ML", separation, ll)


def fit_firth(y: np.ndarray, X: pd.DataFrame, max_iter: int = 100, tol: float = 1e-10) -> LogisticFit:
    """Firth's penalised logistic regression (Jeffreys prior; brglm2 `type = "AS_mean"`).

    Modified score U* = X'(y - pi + h (1/2 - pi)), h the hat diagonal; Newton steps with step
    halving on the penalised log-likelihood. Finite estimates even under separation.
    """
    Xi = _with_intercept(X.to_numpy())
    y = np.asarray(y, float)
    beta = np.zeros(Xi.shape[1])

    def penalised(b: np.ndarray) -> Tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        eta = Xi @ b
        pi = 1.0 / (1.0 + np.exp(-eta))
        w = pi * (1 - pi)
        info = Xi.T @ (Xi * w[:, None])
        sign, logdet = np.linalg.slogdet(info)
        ll = float(np.sum(y * eta - np.logaddexp(0, eta)) + 0.5 * logdet)
        return ll, pi, w, info

    ll, pi, w, info = penalised(beta)
    for _ in range(max_iter):
        inv = np.linalg.inv(info)
        h = np.einsum("ij,jk,ik->i", Xi * np.sqrt(w)[:, None], inv, Xi * np.sqrt(w)[:, None])
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


def fit_logistic(y: np.ndarray, X: pd.DataFrame) -> Tuple[LogisticFit, Optional[LogisticFit]]:
    """ML fit, and Firth's fit too when ML separates (the one to use then)."""
    ml = fit_ml(y, X)
    return ml, (fit_firth(y, X) if ml.separation else None)


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


def _variable_p(fit: LogisticFit, var: Variable) -> float:
    terms = [t for t in fit.terms if term_variable(t) == var.name]
    return float(fit.p[fit.terms.index(terms[0])]) if len(terms) == 1 else fit.wald_p(terms)


def table2(frame: pd.DataFrame, y: pd.Series, schema: ClinicalSchema, entry_p: float = ENTRY_P,
           keep_p: float = KEEP_P, variables: Optional[Sequence[str]] = None) -> Table2:
    """The paper's procedure: univariate logistic regression of every variable (complete cases),
    variables with p < entry_p into one multivariable model, kept when p < keep_p there.
    Separation (a level with no event or no non-event, or an ML estimate that diverges) is
    flagged; Firth's estimate is given beside it and used for the entry decision."""
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
    multivariable, selected = None, []
    if entered:
        known = frame[entered].notna().all(axis=1)
        X = varying(design(frame.loc[known], schema, entered))
        yk = y[known].to_numpy()
        ml, firth = fit_logistic(yk, X)
        multivariable = firth if ml.separation else ml
        if ml.separation:
            notes.append("multivariable model: separation; Firth's penalised fit used")
        if known.sum() < len(frame):
            notes.append(f"multivariable model on {int(known.sum())} complete cases of {len(frame)}")
        mt = multivariable.table()
        for name in entered:
            var_p = _variable_p(multivariable, schema[name])
            if var_p < keep_p:
                selected.append(name)
            for term in [t for t in X.columns if term_variable(t) == name]:
                r = mt.loc[term]
                rows[(name, term)].update(multi_or=r["or"], multi_ci_low=r["or_ci_low"], multi_ci_high=r["or_ci_high"],
                                          multi_p=r["p"], multi_variable_p=var_p)
    for (name, _term), row in rows.items():
        row["selected"] = name in selected
    columns = ["variable", "level", "uni_or", "uni_ci_low", "uni_ci_high", "uni_p", "multi_or", "multi_ci_low",
               "multi_ci_high", "multi_p", "selected", "separation", "firth_or", "firth_ci_low", "firth_ci_high",
               "firth_p", "uni_variable_p", "multi_variable_p"]
    table = pd.DataFrame(list(rows.values())).reindex(columns=columns)
    return Table2(table, entered, selected, univariate_p, multivariable, notes)


def _level_text(var: Variable) -> str:
    """How a one-term variable's OR reads: per unit, per step, or level vs reference level."""
    if var.type == "continuous":
        return f"per {var.unit}" if var.unit else "per unit"
    if var.type == "ordinal":
        return f"per step ({' < '.join(var.levels)})"
    return f"{var.levels[1]} vs {var.levels[0]}"
