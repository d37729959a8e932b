"""Models: the clinical model, the Rad-Score (radiomics) model and the clinical-radiomics model
with its nomogram, fitted together as one value that can be printed, saved, plotted and queried.

Clinical: the Table 2 procedure (univariate p < 0.1 -> collinear pairs resolved -> multivariable
backward elimination by likelihood ratio, keep p < 0.05; or the paper's Wald p), refitted.
Radiomics: the selection Pipeline of `selection`; its Rad-Score is the log-odds.
Combined: logistic regression on the clinical factors plus the Rad-Score; nomogram as rms builds
it (points 0-100 per predictor, the widest predictor spanning 100).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from IMNRiskLib.stats import evaluation
from IMNRiskLib.modelling.collinearity import COLLINEAR, varying_array
# table2 is not called here: Testing/test_clinical_fast.py patches models.table2 to show it
from IMNRiskLib.modelling.clinical import (ENTRY_P, KEEP_P, EncodedClinical, design, encode_clinical, table2,  # noqa: F401
                                           table2_selection)
from IMNRiskLib.stats.logistic import LogisticFit, fit_firth, fit_ml_named, probability
from IMNRiskLib.inputs.schema import ClinicalSchema
from IMNRiskLib.modelling.nomogram import RADSCORE
from IMNRiskLib.modelling.selection import NO_CAP, fit_chain, radiomics_pipeline, radscore_of
from IMNRiskLib.modelling import lassogrid

MODELS = ("clinical", "radiomics", "combined")
EPV_WARNING = 10


def _risk(eta) -> np.ndarray:
    """The logistic function (`stats.logistic.probability`) of linear predictors given as any sequence."""
    return probability(np.asarray(eta, float))


@dataclass
class TrainingOptions:
    """Settings of the model building (all stored in the model file)."""

    entry_p: float = ENTRY_P
    keep_p: float = KEEP_P
    corr: float = 0.9
    vif: float = 10.0
    mwu_p: float = 0.05
    lasso_rule: str = "min"
    lasso_folds: int = 5
    forward_p: float = 0.05
    max_features: Optional[int] = None
    seed: int = 0
    clinical_test: str = "lrt"                  # multivariable elimination: "lrt" (drop1/step) or "wald"
    clinical_collinear: Optional[float] = COLLINEAR  # |Cramer's V| / |Spearman| of a pair; None: no screen
    n_lambdas: int = lassogrid.N_LAMBDAS          # LASSO lambda grid, as glmnet's nlambda
    lambda_ratio: float = lassogrid.LAMBDA_RATIO  # smallest / largest lambda (3 decades)
    # the protocol's choices (IMNRiskLib/modelling/protocols.py; `--protocol paper` sets them to the paper's)
    protocol: str = "imnrisk"
    corr_method: str = "pearson"          # |r| filter: "pearson" or "spearman"
    forward_cap: bool = True              # forward selection keeps at most events/5 features
    icc_threshold: Optional[float] = None  # ICC(2,1) filter first (needs the second reader's features)

    def pipeline(self) -> Pipeline:
        cap = self.max_features or (None if self.forward_cap else NO_CAP)
        return radiomics_pipeline(self.corr, self.vif, self.mwu_p, self.lasso_rule, self.lasso_folds,
                                  self.forward_p, cap, self.seed, n_lambdas=self.n_lambdas,
                                  lambda_ratio=self.lambda_ratio, corr_method=self.corr_method,
                                  icc_threshold=self.icc_threshold)


@dataclass
class FittedModels:
    """The three fitted models (one training sample)."""

    schema: ClinicalSchema
    factors: List[str]
    radiomics: Pipeline
    clinical: LogisticFit
    combined: LogisticFit
    notes: List[str] = field(default_factory=list)
    clinical_selection: Dict[str, object] = field(default_factory=dict)  # Table2.selection_record()
    fallbacks: List[str] = field(default_factory=list)  # a selection step kept nothing: what was used instead

    def radscore(self, features: pd.DataFrame) -> np.ndarray:
        return radscore_of(self.radiomics, features)

    def clinical_design(self, clinical: pd.DataFrame) -> pd.DataFrame:
        return design(clinical, self.schema, self.factors)

    def predict(self, features: pd.DataFrame, clinical: pd.DataFrame,
                encoded: Optional[EncodedClinical] = None) -> pd.DataFrame:
        """Probabilities of the three models (and the Rad-Score) for each patient (`encoded`: the
        clinical table's encoding when made already, `encode_clinical`)."""
        rs = self.radscore(features)
        if encoded is None:
            Xc = self.clinical_design(clinical)
            columns = {term: Xc[term].to_numpy(float) for term in Xc.columns}
        else:
            X, terms = encoded.design(self.factors)
            columns = dict(zip(terms, X.T))
        columns[RADSCORE] = rs

        def lp(fit: LogisticFit) -> np.ndarray:  # the fit's design, column by column (no DataFrame joins)
            return fit.predict_lp(np.column_stack([columns[t] for t in fit.terms[1:]] or [np.zeros((len(rs), 0))]))
        return pd.DataFrame({"radscore": rs, "radiomics": _risk(rs), "clinical": _risk(lp(self.clinical)),
                             "combined": _risk(lp(self.combined))}, index=features.index)


def select_factors(clinical: pd.DataFrame, y: np.ndarray, schema: ClinicalSchema, options: TrainingOptions,
                   encoded: Optional[EncodedClinical] = None, full_record: bool = True):
    """Clinical factors by the paper's procedure; falls back to the strongest univariate factor
    when none survives (a clinical model needs at least one; the note says so). `full_record`
    False: without what only the record reads (`table2_selection`'s `record`)."""
    # table2's decisions without its printed table (the same fits; Testing/test_clinical_fast.py)
    t2 = table2_selection(clinical, y, schema, options.entry_p, options.keep_p, test=options.clinical_test,
                          collinear=options.clinical_collinear, encoded=None if encoded is None else encoded.frame,
                          record=full_record)
    factors = list(t2.selected)
    notes = list(t2.notes)
    if not factors:
        best = min(t2.univariate_p, key=t2.univariate_p.get)
        factors = [best]
        notes.append(f"{FALLBACK}no factor had multivariable p < {options.keep_p:g}; the strongest univariate "
                     f"factor ({best}) is used")
    return factors, t2, notes


FALLBACK = "fallback: "  # how a note saying that a selection step kept nothing begins


def fallback_notes(pipeline: Pipeline) -> List[str]:
    """The fallbacks of a fitted selection pipeline: each step that kept nothing and what it kept
    instead (its `fallback_`), so that no empty step passes unseen."""
    return [f"{FALLBACK}{name}: {step.fallback_}" for name, step in pipeline.steps
            if getattr(step, "fallback_", None)]


def _fit(y: np.ndarray, X: np.ndarray, terms: List[str]) -> LogisticFit:
    """`fit_logistic`'s fit to use (Firth's under separation) of an array with its column names."""
    # in the layout a DataFrame's columns have: numpy's Newton steps (no numba) round by layout
    ml = fit_ml_named(y, np.asfortranarray(X), terms)
    return ml if not ml.separation else fit_firth(y, pd.DataFrame(X, columns=terms))


def fit_models(features: pd.DataFrame, clinical: pd.DataFrame, y: np.ndarray, schema: ClinicalSchema,
               options: TrainingOptions, factors: Optional[Sequence[str]] = None,
               radiomics: Optional[Pipeline] = None, encoded: Optional[EncodedClinical] = None,
               full_record: bool = True) -> FittedModels:
    """Fit the three models on one sample. `factors` / `radiomics` given = selection frozen
    (refit coefficients only): used for the paper's protocol, where selection saw every patient.
    `encoded`: the clinical table's encoding when made already (`encode_clinical`; the validation's).
    `full_record` False: the clinical selection without what only its record reads (the validation's
    fits, which keep none)."""
    y = np.asarray(y, int)
    notes: List[str] = []
    record: Dict[str, object] = {}
    if factors is None:
        factors, t2, notes = select_factors(clinical, y, schema, options, encoded, full_record)
        record = t2.selection_record()
    if radiomics is None:
        radiomics = fit_chain(options.pipeline(), features, y)
        notes += fallback_notes(radiomics)
    if encoded is None:
        encoded = encode_clinical(clinical[list(factors)], schema)
    Xc, terms = varying_array(*encoded.design(factors))  # a level absent from this sample: no term
    complete = ~np.isnan(Xc).any(axis=1)
    if not complete.all():
        notes.append(f"{int((~complete).sum())} patient(s) with missing clinical factors left out of the fits")
    rs = radscore_of(radiomics, features)
    clinical_fit = _fit(y[complete], Xc[complete], terms)
    combined_fit = _fit(y[complete], np.column_stack([Xc, rs])[complete], terms + [RADSCORE])
    return FittedModels(schema, list(factors), radiomics, clinical_fit, combined_fit, notes, record,
                        [n for n in notes if n.startswith(FALLBACK)])


def refit_frozen(pipeline: Pipeline, features: pd.DataFrame, y: np.ndarray) -> Pipeline:
    """A copy of a fitted selection pipeline whose z-scores and Rad-Score coefficients are
    refitted on new patients, the selected features kept (the leaky protocol's CV)."""
    # start-up time: loaded when this step runs
    from IMNRiskLib.modelling.selection import RadScore, ZScore, column_positions
    used = pipeline.named_steps["radscore"].features_
    at = column_positions(features.columns, used)
    table = features[used] if at is None else features.take(at, axis=1)  # by position: no label lookup
    zscore = ZScore()
    radscore = RadScore().fit(zscore.fit_transform(table), y)  # what Pipeline.fit does, without its checks
    return Pipeline([("zscore", zscore), ("radscore", radscore)])


# --------------------------------------------------------------------------- nomogram


# --------------------------------------------------------------------------- risk groups

def risk_thresholds(y: np.ndarray, p: np.ndarray, rule_in_sensitivity: float = 0.9) -> Dict[str, object]:
    """Risk groups on the training cohort's combined probabilities: "high" from the Youden-optimal
    threshold; "low" below the highest threshold that keeps sensitivity >= 90% (few positives
    missed there); "intermediate" between them."""
    best = evaluation.youden(y, p)
    roc = evaluation.roc_points(y, p)
    ok = (roc["sensitivity"] >= rule_in_sensitivity) & np.isfinite(roc["threshold"])
    low = float(roc["threshold"][ok].max()) if ok.any() else float(best["threshold"])
    high = float(best["threshold"])
    low = min(low, high)
    return {"low": low, "high": high,
            "explanation": f"high risk: combined probability >= {high:.3f} (Youden-optimal on the training "
                           f"cohort); low risk: < {low:.3f} (the highest threshold keeping training "
                           f"sensitivity >= {rule_in_sensitivity:.0%}); intermediate in between"}


# --------------------------------------------------------------------------- shrinkage

def shrink_uniformly(fit: LogisticFit, X: pd.DataFrame, y: np.ndarray, factor: float
                     ) -> Tuple[LogisticFit, Dict[str, object]]:
    """Steyerberg's uniform shrinkage: every coefficient but the intercept times `factor`, the
    intercept re-estimated by ML with the shrunk linear predictor as offset (R `glm(y ~ 1,
    offset = factor * lp, family = binomial)`), so that mean predicted risk = observed rate.
    Covariance scaled by factor^2 (the uncertainty of the factor itself not carried).
    Returns the shrunk LogisticFit and a record of what was done."""
    y = np.asarray(y, int)
    slopes = np.asarray(X[fit.terms[1:]], float) @ fit.coef[1:]
    offset = factor * slopes
    intercept = _offset_intercept(y, offset)
    coef = np.concatenate([[intercept], factor * fit.coef[1:]])
    scale = np.full(len(coef), factor)
    scale[0] = 1.0
    cov = fit.cov * np.outer(scale, scale)
    shrunk = LogisticFit(list(fit.terms), coef, np.sqrt(np.diag(cov)), cov, fit.n, fit.events,
                         method=f"{fit.method}, shrunk", separation=fit.separation)
    record = {"method": "uniform shrinkage by the bootstrap optimism-corrected calibration slope; intercept "
                        "re-estimated with the shrunk linear predictor as offset (Steyerberg)",
              "factor": float(factor), "intercept_before": float(fit.coef[0]), "intercept_after": float(intercept),
              "coefficients_before": dict(zip(fit.terms, map(float, fit.coef))),
              "score_equation": float(np.sum(y - _risk(intercept + offset)))}
    return shrunk, record


def _offset_intercept(y: np.ndarray, offset: np.ndarray) -> float:
    """ML intercept of a logistic model with a fixed offset: the root of sum(y - p) = 0 (monotone in a: Brent)."""
    from scipy.optimize import brentq  # start-up time: scipy loads only when used
    target = float(y.sum())

    def excess(a: float) -> float:
        return float(_risk(a + offset).sum()) - target
    return float(brentq(excess, -50.0, 50.0, xtol=1e-14, rtol=4 * np.finfo(float).eps, maxiter=500))
