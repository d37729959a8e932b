"""Models: the clinical model, the Rad-Score (radiomics) model and the clinical-radiomics model
with its nomogram, fitted together as one value that can be printed, saved, plotted and queried.

Clinical: the Table 2 procedure (univariate p < 0.1 -> multivariable, keep p < 0.05), refitted.
Radiomics: the selection Pipeline of `selection`; its Rad-Score is the log-odds.
Combined: logistic regression on the clinical factors plus the Rad-Score; nomogram as rms builds
it (points 0-100 per predictor, the widest predictor spanning 100).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from .clinical import ENTRY_P, KEEP_P, LogisticFit, design, fit_logistic, table2, varying
from IMNRiskLib.inputs.schema import ClinicalSchema
from .selection import radiomics_pipeline

MODELS = ("clinical", "radiomics", "combined")
RADSCORE = "radscore"
EPV_WARNING = 10


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, float)))


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

    def pipeline(self) -> Pipeline:
        return radiomics_pipeline(self.corr, self.vif, self.mwu_p, self.lasso_rule, self.lasso_folds,
                                  self.forward_p, self.max_features, self.seed)


@dataclass
class FittedModels:
    """The three fitted models (one training sample)."""

    schema: ClinicalSchema
    factors: List[str]
    radiomics: Pipeline
    clinical: LogisticFit
    combined: LogisticFit
    notes: List[str] = field(default_factory=list)

    def radscore(self, features: pd.DataFrame) -> np.ndarray:
        return self.radiomics.decision_function(features)

    def clinical_design(self, clinical: pd.DataFrame) -> pd.DataFrame:
        return design(clinical, self.schema, self.factors)

    def predict(self, features: pd.DataFrame, clinical: pd.DataFrame) -> pd.DataFrame:
        """Probabilities of the three models (and the Rad-Score) for each patient."""
        rs = self.radscore(features)
        Xc = self.clinical_design(clinical).assign(**{RADSCORE: rs})
        return pd.DataFrame({"radscore": rs, "radiomics": _sigmoid(rs),
                             "clinical": _sigmoid(self.clinical.predict_lp(Xc[self.clinical.terms[1:]])),
                             "combined": _sigmoid(self.combined.predict_lp(Xc[self.combined.terms[1:]]))},
                            index=features.index)


def as_reference_options(options) -> TrainingOptions:
    """The reference's own options from any options object with the same fields (test hook)."""
    from dataclasses import fields
    return TrainingOptions(**{f.name: getattr(options, f.name) for f in fields(TrainingOptions)})


def select_factors(clinical: pd.DataFrame, y: np.ndarray, schema: ClinicalSchema, options: TrainingOptions):
    """Clinical factors by the paper's procedure; falls back to the strongest univariate factor
    when none survives (a clinical model needs at least one)."""
    t2 = table2(clinical, pd.Series(y, index=clinical.index), schema, options.entry_p, options.keep_p)
    factors = list(t2.selected)
    notes = list(t2.notes)
    if not factors:
        best = min(t2.univariate_p, key=t2.univariate_p.get)
        factors = [best]
        notes.append(f"no factor had multivariable p < {options.keep_p:g}; the strongest univariate "
                     f"factor ({best}) is used")
    return factors, t2, notes


def _fit(y: np.ndarray, X: pd.DataFrame) -> LogisticFit:
    ml, firth = fit_logistic(y, X)
    return firth if firth is not None else ml


def fit_models(features: pd.DataFrame, clinical: pd.DataFrame, y: np.ndarray, schema: ClinicalSchema,
               options: TrainingOptions, factors: Optional[Sequence[str]] = None,
               radiomics: Optional[Pipeline] = None) -> FittedModels:
    """Fit the three models on one sample. `factors` / `radiomics` given = selection frozen
    (refit coefficients only): used for the paper's protocol, where selection saw every patient."""
    options = as_reference_options(options)
    y = np.asarray(y, int)
    notes: List[str] = []
    if factors is None:
        factors, _, notes = select_factors(clinical, y, schema, options)
    if radiomics is None:
        radiomics = options.pipeline().fit(features, y)
    Xc = varying(design(clinical, schema, factors))  # a level absent from this sample: no term
    complete = Xc.notna().all(axis=1).to_numpy()
    if not complete.all():
        notes.append(f"{int((~complete).sum())} patient(s) with missing clinical factors left out of the fits")
    rs = radiomics.decision_function(features)
    clinical_fit = _fit(y[complete], Xc[complete])
    combined_fit = _fit(y[complete], Xc.assign(**{RADSCORE: rs})[complete])
    return FittedModels(schema, list(factors), radiomics, clinical_fit, combined_fit, notes)


def refit_frozen(pipeline: Pipeline, features: pd.DataFrame, y: np.ndarray) -> Pipeline:
    """A copy of a fitted selection pipeline whose z-scores and Rad-Score coefficients are
    refitted on new patients, the selected features kept (the leaky protocol's CV)."""
    from .selection import RadScore, ZScore
    used = pipeline.named_steps["radscore"].features_
    new = Pipeline([("zscore", ZScore()), ("radscore", RadScore())])
    return new.fit(features[used], y)
