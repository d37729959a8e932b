"""Writing model.json: the document `imnrisk train` saves, built from the fitted models and aggregate
training numbers only, sealed (the counterpart of `modelfile`, which reads it)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict
from typing import Any, Dict, Optional

import numpy as np
import pandas as pd

from IMNRiskLib import RESEARCH_ONLY
from IMNRiskLib.core.jsonio import json_clean
from IMNRiskLib.inputs.schema import ClinicalSchema
from IMNRiskLib.modelling.models import MODELS, FittedModels, TrainingOptions, risk_thresholds
from IMNRiskLib.modelling.nomogram import build_nomogram
from IMNRiskLib.modelling.selection import funnel, standardisation
from IMNRiskLib.radiomics.stability import reader_columns
from IMNRiskLib.scoring.domain import training_ranges
from IMNRiskLib.scoring.modelfile import FORMAT, FORMAT_MINOR, FORMAT_VERSION, seal
from IMNRiskLib.scoring.uncertainty import pack


def model_document(models: FittedModels, features: pd.DataFrame, clinical: pd.DataFrame, y: np.ndarray,
                   schema: ClinicalSchema, metrics: Dict[str, Any], settings: Dict[str, Any],
                   options: TrainingOptions, synthetic: bool, versions: Dict[str, str],
                   replicates: Optional[list] = None) -> Dict[str, Any]:
    """model.json: what scoring needs, and aggregate training numbers only (`replicates`: the
    bootstrap's compact replicates, kept for predict --ci bootstrap)."""
    rs = models.radscore(features)
    pipeline = models.radiomics
    radscore = pipeline.named_steps["radscore"]
    # the nomogram's Rad-Score axis: mean +- 3 SD of the training Rad-Scores (aggregates, not a patient's value)
    rs_range = [float(rs.mean() - 3 * rs.std()), float(rs.mean() + 3 * rs.std())]
    nomogram = build_nomogram(models.combined, schema, models.factors, rs_range)
    pred = models.predict(features, clinical)
    lasso = pipeline.named_steps["lasso"]
    optional = {"domain": training_ranges(features[radscore.features_], rs, clinical, schema, models.factors)}
    if replicates:
        optional["uncertainty"] = pack(replicates)
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "format_minor": FORMAT_MINOR, **optional,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "notice": RESEARCH_ONLY, "software": versions,
        "extraction": settings,
        "radiomics": {"features": radscore.features_, "standardisation": standardisation(pipeline),
                      "radscore": {"intercept": radscore.intercept, "coefficients": radscore.coefficients},
                      "formula": radscore.formula(),
                      "funnel": funnel(pipeline, len(reader_columns(features.columns))),
                      "lasso": {"rule": lasso.rule, "lambda_min": lasso.lambda_min_, "lambda_1se": lasso.lambda_1se_},
                      **({"icc": _model_icc(metrics["selection"]["icc"])} if "icc" in metrics["selection"] else {})},
        "clinical": {"schema": schema.to_dict(), "factors": models.factors,
                     "terms": models.clinical.terms, "coefficients": models.clinical.coef.tolist(),
                     "covariance": models.clinical.cov.tolist(), "method": models.clinical.method},
        "combined": {"terms": models.combined.terms, "coefficients": models.combined.coef.tolist(),
                     "covariance": models.combined.cov.tolist(), "method": models.combined.method},
        "nomogram": nomogram.to_dict(),
        "risk_groups": risk_thresholds(y, pred["combined"].to_numpy()),
        "training": {"n": int(len(y)), "events": int(y.sum()), "synthetic": synthetic,
                     "options": asdict(options), "protocol": metrics.get("protocol"),
                     "apparent": {m: {k: metrics["models"][m]["apparent"][k] for k in ("auc", "ci95", "brier")}
                                  for m in MODELS},
                     # aggregates only: the CV calibration curve lists each patient's out-of-fold risk
                     "cv": {m: {k: v for k, v in metrics["models"][m].get("cv", {}).items()
                                if k != "calibration_curves"} for m in MODELS},
                     "bootstrap": {m: metrics["models"][m].get("bootstrap", {}) for m in MODELS}},
    }


def sealed_document(document: Dict[str, Any], acquisition: Optional[Dict[str, Any]],
                    shrinkage: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The document with the training images' profile and any shrinkage of the combined model, sealed."""
    if acquisition is not None:  # what the training images were, for predict's image check
        document["acquisition"] = acquisition
    if shrinkage is not None:
        document["combined"]["shrinkage"] = {k: shrinkage[k] for k in
                                             ("method", "factor", "intercept_before", "intercept_after",
                                              "coefficients_before")}
    return seal(json_clean(document))


def _model_icc(summary: Dict[str, Any]) -> Dict[str, Any]:
    """The ICC filter as model.json records it: aggregates (no per-patient value)."""
    return {k: summary[k] for k in ("type", "description", "readers", "threshold", "n_patients", "n_features",
                                    "n_kept", "n_undefined", "median", "selected")}
