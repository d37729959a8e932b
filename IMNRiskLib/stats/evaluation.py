"""Evaluation: discrimination, calibration, goodness of fit and net benefit, as R computes them.

R is the reference (pROC, rms, ResourceSelection's Hosmer-Lemeshow grouping): controls are
outcome 0, cases outcome 1, a higher score means a case (pROC `levels=c(0,1), direction="<"`;
never flipped). Every function takes plain arrays; `evaluate` bundles them for one score.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from IMNRiskLib.core.errors import InputError
from IMNRiskLib.core.jsonio import json_clean
from IMNRiskLib.stats.logit import Z95
from IMNRiskLib.stats.ranks import average_ranks
from IMNRiskLib.core.files import check_input_file

DCA_THRESHOLDS = np.arange(1, 100) / 100.0  # exactly k/100 (not accumulated steps)


def check_outcome(y: Sequence[float], name: str = "outcome") -> np.ndarray:
    """0/1 integers with both classes present, else InputError."""
    y = np.asarray(y, dtype=float)
    if np.isnan(y).any():
        raise InputError(f"{int(np.isnan(y).sum())} missing value(s)", field=name)
    if not np.isin(y, (0.0, 1.0)).all():
        bad = sorted(set(np.unique(y)) - {0.0, 1.0})[:5]
        raise InputError(f"must be 0 or 1 (found {', '.join(f'{v:g}' for v in bad)})", field=name)
    if y.min() == y.max():
        raise InputError(f"has one class only (all {int(y[0])})", field=name)
    return y.astype(int)


# --------------------------------------------------------------------------- ROC / DeLong


@dataclass
class AucResult:
    auc: float
    variance: float
    ci95: Tuple[float, float]
    n_cases: int
    n_controls: int


def _placements(y: np.ndarray, scores: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sun & Xu (2014) fast DeLong: AUCs and the structural components V10 (cases), V01 (controls)
    for k scores at once, from average ranks only."""
    cases, controls = y == 1, y == 0
    m, n = int(cases.sum()), int(controls.sum())
    aucs, v10, v01 = [], [], []
    for s in np.atleast_2d(scores):
        tz = average_ranks(s)
        tx, ty = average_ranks(s[cases]), average_ranks(s[controls])
        aucs.append((tz[cases].sum() / m - (m + 1) / 2.0) / n)
        v10.append((tz[cases] - tx) / n)
        v01.append(1.0 - (tz[controls] - ty) / m)
    return np.array(aucs), np.array(v10), np.array(v01)


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """The AUC alone, as `_placements` computes it (the same numbers, without the variance): the
    validation needs ~10^4 of them."""
    cases = np.asarray(y) == 1
    m, n = int(cases.sum()), int((~cases).sum())
    return float((average_ranks(np.asarray(score, float))[cases].sum() / m - (m + 1) / 2.0) / n)


def delong_covariance(y: Sequence[int], *scores: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance matrix (pROC's var/cov, sample variances)."""
    y = np.asarray(y)
    aucs, v10, v01 = _placements(y, np.vstack([np.asarray(s, float) for s in scores]))
    m, n = v10.shape[1], v01.shape[1]
    cov = np.atleast_2d(np.cov(v10, ddof=1)) / m + np.atleast_2d(np.cov(v01, ddof=1)) / n
    return aucs, cov


def auc_delong(y: Sequence[int], score: Sequence[float]) -> AucResult:
    """AUC, DeLong variance and 95% CI clipped to [0, 1] (pROC `ci.auc(method="delong")`)."""
    y = np.asarray(y)
    aucs, cov = delong_covariance(y, score)
    auc, var = float(aucs[0]), float(cov[0, 0])
    sd = math.sqrt(max(var, 0.0))
    ci = (max(0.0, auc - Z95 * sd), min(1.0, auc + Z95 * sd))
    return AucResult(auc, var, ci, int((y == 1).sum()), int((y == 0).sum()))


def delong_test(y: Sequence[int], a: Sequence[float], b: Sequence[float]) -> Dict[str, Optional[float]]:
    """Paired DeLong test of two AUCs on the same patients (pROC `roc.test(paired=TRUE)`)."""
    aucs, cov = delong_covariance(y, a, b)
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = float(aucs[0] - aucs[1])
    if diff == 0:  # equal AUCs (e.g. a monotone transform): pROC reports Z = 0, p = 1
        return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "z": 0.0, "p": 1.0}
    if var <= 0:
        return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "z": None, "p": None}
    from scipy import stats  # start-up time: scipy.stats loads only when a test needs it (not for a report)
    z = diff / math.sqrt(var)
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "z": z, "p": float(2 * stats.norm.sf(abs(z)))}


def roc_points(y: Sequence[int], score: Sequence[float]) -> Dict[str, np.ndarray]:
    """ROC curve at pROC's thresholds (-Inf, midpoints of sorted unique scores, +Inf);
    a patient is called positive when score >= threshold."""
    y, s = np.asarray(y), np.asarray(score, float)
    u = np.unique(s)
    thresholds = np.concatenate([[-np.inf], (u[:-1] + u[1:]) / 2.0, [np.inf]])
    order = np.sort(s[y == 1]), np.sort(s[y == 0])
    sens = 1.0 - np.searchsorted(order[0], thresholds, side="left") / len(order[0])
    spec = np.searchsorted(order[1], thresholds, side="left") / len(order[1])
    return {"threshold": thresholds, "sensitivity": sens, "specificity": spec}


def wilson_ci(k: float, n: float) -> Tuple[Optional[float], Optional[float]]:
    """Wilson score 95% interval of a proportion (R `prop.test(correct=FALSE)`)."""
    if n == 0:
        return (None, None)
    p = k / n
    denom = 1 + Z95 ** 2 / n
    centre = (p + Z95 ** 2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def classification(y: Sequence[int], score: Sequence[float], threshold: float) -> Dict[str, object]:
    """Sensitivity, specificity, PPV, NPV, accuracy at `threshold` (positive: score >= threshold),
    each with a Wilson 95% CI, and the 2x2 counts."""
    y, s = np.asarray(y), np.asarray(score, float)
    pos = s >= threshold
    tp, fp = int((pos & (y == 1)).sum()), int((pos & (y == 0)).sum())
    fn, tn = int((~pos & (y == 1)).sum()), int((~pos & (y == 0)).sum())
    out: Dict[str, object] = {"threshold": float(threshold), "tp": tp, "fp": fp, "fn": fn, "tn": tn}
    for name, k, n in (("sensitivity", tp, tp + fn), ("specificity", tn, tn + fp), ("ppv", tp, tp + fp),
                       ("npv", tn, tn + fn), ("accuracy", tp + tn, len(y))):
        out[name] = k / n if n else None
        out[f"{name}_ci95"] = list(wilson_ci(k, n))
    return out


def youden(y: Sequence[int], score: Sequence[float]) -> Dict[str, object]:
    """Youden-optimal threshold (max sensitivity + specificity; the lowest such threshold on ties,
    as the first row of pROC `coords(best.method="youden")`), with classification metrics."""
    roc = roc_points(y, score)
    j = roc["sensitivity"] + roc["specificity"]
    finite = np.isfinite(roc["threshold"])
    j = np.where(finite, j, -np.inf)
    best = int(np.flatnonzero(j >= j.max() - 1e-12)[0])
    return classification(y, score, roc["threshold"][best])


def no_information_rate(y: Sequence[int]) -> float:
    """Accuracy of always predicting the majority class (caret's NIR)."""
    y = np.asarray(y, int)
    return float(max(y.mean(), 1.0 - y.mean()))


def accuracy_test(correct: int, n: int, nir: float) -> Dict[str, object]:
    """Accuracy beside the no-information rate, with the one-sided exact binomial test of
    accuracy > NIR (R `binom.test(correct, n, p = nir, alternative = "greater")`, as caret's
    `confusionMatrix` reports it)."""
    from scipy import stats  # start-up time: scipy.stats loads only when a test needs it (not for a report)
    p = float(stats.binomtest(int(correct), int(n), float(nir), alternative="greater").pvalue)
    return {"accuracy": correct / n, "correct": int(correct), "n": int(n), "nir": float(nir),
            "p_accuracy_gt_nir": p}


def accuracy_vs_nir(y: Sequence[int], p: Sequence[float], threshold: float = 0.5) -> Dict[str, object]:
    """Accuracy at `threshold` (positive: p >= threshold) against the no-information rate."""
    y, p = np.asarray(y, int), np.asarray(p, float)
    out = accuracy_test(int(((p >= threshold).astype(int) == y).sum()), len(y), no_information_rate(y))
    return {"threshold": float(threshold), **out}


# --------------------------------------------------------------------------- calibration

def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1.0 - p))


def glm_logistic(y: np.ndarray, X: np.ndarray, offset: Optional[np.ndarray] = None):
    """statsmodels GLM binomial fit; None when the MLE does not exist (separation)."""
    import statsmodels.api as sm  # start-up time: statsmodels loads only when used
    # start-up time: statsmodels loads only when used
    from statsmodels.tools.sm_exceptions import PerfectSeparationError, PerfectSeparationWarning
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            fit = sm.GLM(y, X, family=sm.families.Binomial(), offset=offset).fit(tol=1e-14, maxiter=100)
        except (PerfectSeparationError, PerfectSeparationWarning, np.linalg.LinAlgError, ValueError):
            return None
    if not np.all(np.isfinite(fit.params)) or np.any(np.abs(fit.params) > 50):
        return None
    return fit


def calibration(y: Sequence[int], p: Sequence[float]) -> Dict[str, object]:
    """Calibration intercept and slope fitted together on logit(p) (rms `val.prob`), calibration-in-
    the-large (slope fixed at 1, i.e. an offset), a Wald test of slope = 1, and the Brier score.

    Predictions of exactly 0 or 1 have no logit: they are counted and left out of the logistic
    fits (reported as `excluded`); separation gives null estimates and `separation: true`.
    """
    y, p = np.asarray(y, int), np.asarray(p, float)
    if ((p < 0) | (p > 1)).any():
        raise InputError("probabilities must lie in [0, 1]")
    out: Dict[str, object] = {"brier": float(np.mean((p - y) ** 2)), "intercept": None, "slope": None,
                              "slope_se": None, "slope_p_vs_1": None, "citl": None, "separation": False}
    inner = (p > 0) & (p < 1)
    out["excluded"] = int((~inner).sum())
    yi, lp = y[inner], _logit(p[inner])
    if len(yi) < 3 or yi.min() == yi.max():
        out["separation"] = True
        return out
    fit = glm_logistic(yi, np.column_stack([np.ones_like(lp), lp]))
    if fit is None:
        out["separation"] = True
    else:
        out["intercept"], out["slope"] = float(fit.params[0]), float(fit.params[1])
        out["slope_se"] = float(fit.bse[1])
        from scipy import stats  # start-up time: scipy.stats loads only when a test needs it (not for a report)
        out["slope_p_vs_1"] = float(2 * stats.norm.sf(abs((fit.params[1] - 1) / fit.bse[1])))
    citl = glm_logistic(yi, np.ones((len(yi), 1)), offset=lp)
    out["citl"] = None if citl is None else float(citl.params[0])
    return out


def hl_groups(p: np.ndarray) -> np.ndarray:
    """Group index of each prediction: breaks `unique(quantile(p, 0:10/10))` (type 7),
    right-closed intervals, lowest included (R `cut(..., include.lowest=TRUE)`)."""
    breaks = np.unique(np.quantile(p, np.arange(11) / 10.0))  # numpy's default is R's type 7
    if len(breaks) == 1:
        return np.zeros(len(p), int)
    idx = np.searchsorted(breaks, p, side="left") - 1  # (b[i], b[i+1]] -> i
    return np.clip(idx, 0, len(breaks) - 2)


HL_GROUPS = 10
HL_DF_RULES = {"development": "g - 2 (development data: the model was fitted on these patients)",
               "external": "g (external cohort: a frozen model, nothing estimated on these patients)"}


def hosmer_lemeshow(y: Sequence[int], p: Sequence[float], external: bool = False) -> Dict[str, object]:
    """Hosmer-Lemeshow test with g = 10 (ResourceSelection `hoslem.test` grouping). df = non-empty
    groups - 2 on development data, = groups on an external cohort scored by a frozen model (Hosmer &
    Lemeshow, Applied Logistic Regression, 3rd ed., 5.2.2). Returns chi2, df, the rule, p, the groups,
    and a note when ties leave fewer than 10 groups."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    g = hl_groups(p)
    groups, chi2 = [], 0.0
    for k in range(int(g.max()) + 1):
        sel = g == k
        if not sel.any():
            continue
        n, obs1, exp1 = int(sel.sum()), float(y[sel].sum()), float(p[sel].sum())
        obs0, exp0 = n - obs1, n - exp1
        for o, e in ((obs0, exp0), (obs1, exp1)):
            chi2 += (o - e) ** 2 / e if e > 0 else (0.0 if o == 0 else math.inf)
        groups.append({"group": len(groups) + 1, "p_min": float(p[sel].min()), "p_max": float(p[sel].max()),
                       "n": n, "observed": int(obs1), "expected": exp1})
    df = len(groups) - (0 if external else 2)
    from scipy import stats  # start-up time: scipy.stats loads only when a test needs it (not for a report)
    pval = float(stats.chi2.sf(chi2, df)) if df > 0 and math.isfinite(chi2) else None
    # numbers and booleans only (the `stats --json` contract); hl_df_statement says it in words
    return {"chi2": float(chi2) if math.isfinite(chi2) else None, "df": df, "p": pval, "groups": groups,
            "n_groups": len(groups), "external": bool(external), "fewer_groups": len(groups) < HL_GROUPS}


def hl_df_statement(hl: Dict[str, object]) -> Tuple[str, Optional[str]]:
    """The df rule of a `hosmer_lemeshow` result in words, and a note when ties left fewer than
    10 groups (None otherwise)."""
    convention = "external" if hl.get("external") else "development"
    rule = HL_DF_RULES[convention]
    note = None
    if hl.get("fewer_groups"):
        note = (f"only {hl['n_groups']} groups (tied predictions merge deciles): df = {hl['df']} "
                f"({rule.split(' (')[0]} with g = {hl['n_groups']})")
    return rule, note


def calibration_curves(y: Sequence[int], p: Sequence[float]) -> Dict[str, object]:
    """Smoothed (lowess, R's defaults as in val.prob: f = 2/3, iter = 0, delta = 1% of the range)
    and binned (HL deciles: mean predicted vs observed with Wilson CIs) calibration curves."""
    from statsmodels.nonparametric.smoothers_lowess import lowess  # start-up time: statsmodels loads only when used
    y, p = np.asarray(y, float), np.asarray(p, float)
    delta = 0.01 * (p.max() - p.min())
    smooth = lowess(y, p, frac=2.0 / 3.0, it=0, delta=delta, return_sorted=True)
    g = hl_groups(p)
    bins = []
    for k in np.unique(g):
        sel = g == k
        lo, hi = wilson_ci(float(y[sel].sum()), float(sel.sum()))
        bins.append({"predicted": float(p[sel].mean()), "observed": float(y[sel].mean()), "n": int(sel.sum()),
                     "ci95": [lo, hi]})
    return {"lowess": {"predicted": smooth[:, 0].tolist(), "observed": smooth[:, 1].tolist()}, "deciles": bins}


# --------------------------------------------------------------------------- decision curves

def net_benefit(y: Sequence[int], p: Sequence[float], thresholds: np.ndarray = DCA_THRESHOLDS
                ) -> Dict[str, List[float]]:
    """Net benefit of treating when p >= pt: TP/n - FP/n * pt/(1-pt); treat-all; treat-none (0)."""
    y, p = np.asarray(y, int), np.asarray(p, float)
    n = len(y)
    prevalence = y.mean()
    odds = thresholds / (1.0 - thresholds)
    positive = p[None, :] >= thresholds[:, None]
    tp = (positive & (y[None, :] == 1)).sum(axis=1)
    fp = (positive & (y[None, :] == 0)).sum(axis=1)
    return {"thresholds": thresholds.tolist(), "model": (tp / n - fp / n * odds).tolist(),
            "treat_all": (prevalence - (1 - prevalence) * odds).tolist(), "treat_none": [0.0] * len(thresholds)}


# --------------------------------------------------------------------------- bootstrap

def bootstrap_ci(statistic: Callable[..., float], y: Sequence[int], *columns: Sequence[float],
                 b: int = 1000, seed: int = 0, level: float = 0.95) -> Dict[str, object]:
    """Percentile bootstrap CI of statistic(y, *columns) over patients (seeded); resamples with
    one class only are skipped and counted."""
    y = np.asarray(y)
    cols = [np.asarray(c) for c in columns]
    rng = np.random.default_rng(seed)
    values, skipped = [], 0
    for _ in range(b):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() == y[idx].max():
            skipped += 1
            continue
        values.append(statistic(y[idx], *[c[idx] for c in cols]))
    values = np.asarray(values, float)
    alpha = (1 - level) / 2
    return {"estimate": float(statistic(y, *cols)), "ci": [float(np.quantile(values, alpha)),
                                                          float(np.quantile(values, 1 - alpha))],
            "b": b, "skipped": skipped}


# --------------------------------------------------------------------------- one score

def is_probability(score: np.ndarray) -> bool:
    return bool(np.all((score >= 0) & (score <= 1)))


def evaluate(y: Sequence[int], score: Sequence[float], probability: Optional[bool] = None,
             external: bool = False) -> Dict[str, object]:
    """Everything for one score: AUC with DeLong CI, Youden; for probabilities also Brier,
    calibration, Hosmer-Lemeshow (df by `external`: see `hosmer_lemeshow`), accuracy at 0.5
    against the no-information rate, and net benefit."""
    y, s = np.asarray(y, int), np.asarray(score, float)
    res = auc_delong(y, s)
    out: Dict[str, object] = {"auc": res.auc, "variance": res.variance, "ci95": list(res.ci95),
                              "youden": youden(y, s)}
    if probability if probability is not None else is_probability(s):
        cal = calibration(y, s)
        out["brier"] = cal.pop("brier")
        out["calibration"] = cal
        out["hosmer_lemeshow"] = hosmer_lemeshow(y, s, external=external)
        out["accuracy"] = accuracy_vs_nir(y, s)
        out["net_benefit"] = net_benefit(y, s)
    return out


# --------------------------------------------------------------------------- a predictions table

def evaluate_predictions(path, outcome: Optional[str] = None) -> Dict[str, object]:
    """`imnrisk stats`: evaluate every numeric column (but the outcome and ID) of a CSV as a
    score, columns within [0, 1] also as probabilities, and every pair by the DeLong test."""
    import pandas as pd  # start-up time: pandas loads only when used
    path = check_input_file(Path(path), "predictions file")  # missing, a folder or a device: named
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"not a readable CSV ({str(exc).splitlines()[0]})", file=str(path)) from None
    if outcome is None:
        outcome = next((c for c in ("IMN", "y", "outcome") if c in frame.columns), None)
        if outcome is None:
            raise InputError("no outcome column (IMN or y); name it with --outcome", file=str(path))
    if outcome not in frame.columns:
        raise InputError(f"outcome column '{outcome}' not found", file=str(path), field=outcome)
    ids = frame["ID"].astype(str) if "ID" in frame.columns else pd.Series(range(2, len(frame) + 2)).map("line {}".format)
    try:
        y = check_outcome(pd.to_numeric(frame[outcome], errors="coerce"), outcome)
    except InputError as exc:
        raise exc.located(file=str(path)) from None
    if min(int(y.sum()), int(len(y) - y.sum())) < 2:
        raise InputError("fewer than 2 patients in one outcome class: nothing can be estimated",
                         file=str(path), field=outcome)
    scores = [c for c in frame.columns if c not in (outcome, "ID")]
    if not scores:
        raise InputError("no score column besides the outcome", file=str(path))
    values: Dict[str, np.ndarray] = {}
    for col in scores:
        numeric = pd.to_numeric(frame[col], errors="coerce")
        bad = numeric.isna() & frame[col].notna()
        if bad.any():
            raise InputError(f"non-numeric value '{frame[col][bad].iloc[0]}'", file=str(path),
                             id=ids[bad].iloc[0], field=col)
        missing = ~np.isfinite(numeric.to_numpy(dtype=float))
        if missing.any():
            raise InputError(f"{int(missing.sum())} missing or infinite value(s)", file=str(path),
                             id=ids[missing].iloc[0], field=col)
        values[col] = numeric.to_numpy(dtype=float)
    result = {"n": int(len(y)), "events": int(y.sum()),
              "scores": {col: evaluate(y, s) for col, s in values.items()},
              "pairs": [{"a": a, "b": b, **{k: v for k, v in delong_test(y, values[a], values[b]).items()
                                             if k in ("z", "p")}}
                        for i, a in enumerate(scores) for b in scores[i + 1:]]}
    return json_clean(result)


def format_evaluation(result: Dict[str, object]) -> str:
    """A readable summary of `evaluate_predictions` (what `imnrisk stats` prints)."""
    def f(v, nd=3):
        return "-" if v is None else f"{v:.{nd}f}"
    lines = [f"n = {result['n']}, events = {result['events']}", "",
             f"{'score':24}{'AUC':>7}{'95% CI (DeLong)':>19}{'Youden thr':>12}{'sens':>7}{'spec':>7}"
             f"{'Brier':>8}{'cal. int':>9}{'slope':>7}{'HL p':>7}"]
    for name, s in result["scores"].items():
        cal = s.get("calibration", {})
        lines.append(f"{name[:24]:24}{f(s['auc']):>7}{'[' + f(s['ci95'][0]) + ', ' + f(s['ci95'][1]) + ']':>19}"
                     f"{f(s['youden']['threshold']):>12}{f(s['youden']['sensitivity']):>7}"
                     f"{f(s['youden']['specificity']):>7}{f(s.get('brier')):>8}{f(cal.get('intercept')):>9}"
                     f"{f(cal.get('slope')):>7}{f(s.get('hosmer_lemeshow', {}).get('p')):>7}")
    if result["pairs"]:
        lines += ["", "DeLong paired tests:"]
        lines += [f"  {p['a']} vs {p['b']}: Z = {f(p['z'], 4)}, p = {f(p['p'], 4)}" for p in result["pairs"]]
    return "\n".join(lines)


# --------------------------------------------------------------------------- sample size (Riley et al.)

def max_cox_snell_r2(prevalence: float) -> float:
    """The largest Cox-Snell R2 a binary outcome with this prevalence allows (Riley 2018, eq. 23)."""
    phi = float(prevalence)
    return 1.0 - math.exp(2.0 * (phi * math.log(phi) + (1.0 - phi) * math.log(1.0 - phi)))


def cox_snell_r2_from_lr(lr: float, n: int) -> float:
    """Cox-Snell R2 of a logistic model from its likelihood-ratio chi2 on n patients."""
    return 1.0 - math.exp(-float(lr) / n)


def cox_snell_r2_from_c(cstatistic: float, prevalence: float, nodes: int = 200) -> float:
    """Anticipated Cox-Snell R2 from a C statistic (Riley, Van Calster & Collins 2021, Stat Med):
    the linear predictor is N(0, 1) in one class and N(mu, 1) in the other, mu = sqrt(2)
    qnorm(C). pmsampsize's `cstat2rsq` simulates 1e6 patients and fits a logistic model; here the
    same population value is computed exactly (that logistic model is the true one: slope mu,
    intercept log odds - mu^2/2), by Gauss-Hermite quadrature."""
    c, phi = float(cstatistic), float(prevalence)
    if not 0.5 <= c < 1 or not 0 < phi < 1:
        raise InputError("C statistic must lie in [0.5, 1) and prevalence in (0, 1)")
    from scipy import stats  # start-up time: scipy.stats loads only when a test needs it (not for a report)
    mu = math.sqrt(2.0) * stats.norm.ppf(c)
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    a, b = math.log(phi / (1 - phi)) - mu * mu / 2.0, mu

    def log_sigmoid(t):
        return -np.logaddexp(0.0, -t)
    # events: LP ~ N(mu, 1); non-events: LP ~ N(0, 1)
    ll_model = phi * float(w @ log_sigmoid(a + b * (x + mu))) + (1 - phi) * float(w @ log_sigmoid(-(a + b * x)))
    ll_null = phi * math.log(phi) + (1 - phi) * math.log(1 - phi)
    return 1.0 - math.exp(-2.0 * (ll_model - ll_null))


def heuristic_shrinkage(r2_cs: float, parameters: int, n: int) -> float:
    """Van Houwelingen's heuristic shrinkage factor 1 + p / (n ln(1 - R2_CS)) (Riley 2020, BMJ)."""
    return 1.0 + parameters / (n * math.log(1.0 - r2_cs))


def riley_sample_size(prevalence: float, parameters: int, r2_cs: float, shrinkage: float = 0.9,
                      delta: float = 0.05, margin: float = 0.05) -> Dict[str, object]:
    """Minimum development sample size of a logistic prediction model (Riley et al. 2020, BMJ;
    2018, Stat Med part II), as R's `pmsampsize(type = "b")` 1.1.3 computes it: criterion 1,
    expected uniform shrinkage >= `shrinkage`; 2, optimism in Nagelkerke R2 <= `delta`; 3, the
    overall risk within +-`margin` (95%). Each n rounded up; EPP = n * prevalence / parameters."""
    phi, p, r2 = float(prevalence), int(parameters), float(r2_cs)
    max_r2 = max_cox_snell_r2(phi)
    if not 0 < r2 < max_r2:
        raise InputError(f"Cox-Snell R2 {r2:.4f} must lie in (0, {max_r2:.4f}) for prevalence {phi:g}")
    if shrinkage <= r2:
        raise InputError("the target shrinkage must exceed the anticipated Cox-Snell R2")

    def n_for(s: float) -> int:
        return int(math.ceil(p / ((s - 1.0) * math.log(1.0 - r2 / s))))
    s2 = r2 / (r2 + delta * max_r2)
    n1, n2 = n_for(shrinkage), n_for(s2)
    n3 = int(math.ceil((1.96 / margin) ** 2 * phi * (1 - phi)))  # pmsampsize writes 1.96, not qnorm(0.975)
    criteria = [{"criterion": 1, "what": f"expected shrinkage >= {shrinkage:g}", "n": n1, "shrinkage": shrinkage},
                {"criterion": 2, "what": f"optimism in Nagelkerke R2 <= {delta:g}", "n": n2, "shrinkage": s2},
                {"criterion": 3, "what": f"overall risk within +-{margin:g}", "n": n3, "shrinkage": None}]
    for c in criteria:
        c["events"] = c["n"] * phi
        c["epp"] = c["n"] * phi / p
    n_final = max(n1, n2, n3)
    return {"prevalence": phi, "parameters": p, "r2_cs": r2, "max_r2_cs": max_r2, "nagelkerke_r2": r2 / max_r2,
            "criteria": criteria, "n": n_final, "events": n_final * phi, "epp": n_final * phi / p,
            "shrinkage": max(shrinkage, s2), "method": "Riley et al. 2020 (BMJ), as pmsampsize type 'b'"}
