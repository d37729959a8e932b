"""Bootstrap CI of one patient's risk: the whole pipeline's sampling variability, not only the
combined model's given the Rad-Score.

`train` already refits the whole pipeline (feature selection, Rad-Score, clinical factors,
combined model) on each bootstrap resample for Harrell's optimism; `compact_replicate` keeps what
each replicate needs to score a new patient (model parameters only, no patient data), and
`replicate_interval` scores the patient under every replicate and takes the percentile interval.

model.json `uncertainty` block (optional; format_minor >= 1):
    {"method": "bootstrap", "b": replicates kept, "failed": fits that failed,
     "features": [names], "terms": [combined-model term names],
     "layout": ["features", "mean", "sd", "radscore", "terms", "combined"],
     "replicates": [[feature indices, z-score means, z-score SDs, [b0, b1, ...],
                     term indices, combined coefficients (in term order)], ...]}
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

from IMNRiskLib.core.errors import InputError
from IMNRiskLib.stats.logit import logistic

LAYOUT = ["features", "mean", "sd", "radscore", "terms", "combined"]
WALD = "Wald, conditional on the Rad-Score"
NO_REPLICATES = ("this model file keeps no bootstrap replicates (trained with --bootstrap 0, --no-ci-replicates "
                 "or an older IMNRisk): --ci bootstrap is not possible; retrain, or use --ci wald")


def bootstrap_label(b: int) -> str:
    """How predict names the bootstrap CI."""
    return f"bootstrap, whole pipeline, {b} replicates"


def compact_replicate(models) -> Dict[str, Any]:
    """What one fitted replicate (models.FittedModels) needs to score a patient: the Rad-Score's
    features, z-score means/SDs and coefficients, and the combined model's terms and coefficients."""
    pipeline = models.radiomics
    z, rs = pipeline.named_steps["zscore"], pipeline.named_steps["radscore"]
    used = list(rs.features_)
    return {"features": used, "mean": [float(z.mean_[f]) for f in used], "sd": [float(z.scale_[f]) for f in used],
            "radscore": [float(v) for v in rs.fit_.coef], "terms": list(models.combined.terms),
            "combined": [float(v) for v in models.combined.coef]}


def pack(replicates: Iterable[Optional[Dict[str, Any]]]) -> Dict[str, Any]:
    """The model.json block from compact replicates in replicate order (None: a failed fit)."""
    features: List[str] = []
    terms: List[str] = []
    rows, failed = [], 0
    for r in replicates:
        if r is None or not all(math.isfinite(v) for k in ("mean", "sd", "radscore", "combined") for v in r[k]):
            failed += 1  # a failed fit, or one whose parameters JSON cannot hold
            continue
        for name in r["features"]:
            if name not in features:
                features.append(name)
        for t in r["terms"]:
            if t not in terms:
                terms.append(t)
        rows.append([[features.index(f) for f in r["features"]], r["mean"], r["sd"], r["radscore"],
                     [terms.index(t) for t in r["terms"]], r["combined"]])
    return {"method": "bootstrap", "b": len(rows), "failed": failed, "features": features, "terms": terms,
            "layout": list(LAYOUT), "replicates": rows}


def unpack(block: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The compact replicates of a model.json block (inverse of pack)."""
    out = []
    for row in block["replicates"]:
        r = dict(zip(block["layout"], row))
        out.append({"features": [block["features"][i] for i in r["features"]], "mean": r["mean"], "sd": r["sd"],
                    "radscore": r["radscore"], "terms": [block["terms"][i] for i in r["terms"]],
                    "combined": r["combined"]})
    return out


def block_of(block: Any) -> Optional[Dict[str, Any]]:
    """A model file's `uncertainty` block when it keeps replicates, else None."""
    return block if isinstance(block, dict) and block.get("replicates") else None


def needed_features(block: Optional[Dict[str, Any]], own: Sequence[str]) -> List[str]:
    """Every feature a bootstrap CI needs: the model's own and every replicate's of `block`."""
    own = list(own)
    return own + [f for f in (block["features"] if block else []) if f not in own]


def needed_factors(block: Optional[Dict[str, Any]], own: Sequence[str]) -> List[str]:
    """Every clinical factor a bootstrap CI needs: the model's own and those of any replicate of `block`."""
    own = list(own)
    # a term is `variable` or `variable[level]` (clinical.term_variable; not imported: scipy is slow to load)
    extra = [] if block is None else [t.split("[", 1)[0] for t in block["terms"] if t not in ("(Intercept)", "radscore")]
    return own + sorted(set(extra) - set(own), key=extra.index)


def replicate_risk(replicate: Dict[str, Any], features: Dict[str, float], encoded: Dict[str, float]) -> float:
    """The patient's risk under one replicate: its Rad-Score from the features, then its combined
    model on the encoded clinical terms plus that Rad-Score."""
    b = replicate["radscore"]
    rs = b[0] + sum(bi * (float(features[f]) - m) / s for bi, f, m, s in
                    zip(b[1:], replicate["features"], replicate["mean"], replicate["sd"]))
    values = {**encoded, "(Intercept)": 1.0, "radscore": rs}
    lp = sum(c * values.get(t, 0.0) for t, c in zip(replicate["terms"], replicate["combined"]))
    return logistic(lp) if math.isfinite(lp) else (1.0 if lp > 0 else 0.0)


def encode_clinical(schema, clinical: Dict[str, Any], factors: Sequence[str]) -> Dict[str, float]:
    """Design-term values of the parsed clinical values of `factors`."""
    out: Dict[str, float] = {}
    for name in factors:
        for term, v in zip(schema[name].terms(), schema[name].encode(clinical[name])):
            out[term] = v
    return out


def replicate_interval(block: Optional[Dict[str, Any]], own_features: Sequence[str], own_factors: Sequence[str],
                       schema, features: Dict[str, float], clinical: Dict[str, Any],
                       level: float = 0.95) -> Dict[str, Any]:
    """Percentile interval of the patient's risk over the bootstrap replicates of `block` (the model's
    own features and factors beside them)."""
    if block is None:
        raise InputError(NO_REPLICATES, file="model.json", field="--ci")
    missing = [f for f in needed_features(block, own_features) if f not in features]
    if missing:
        raise InputError(f"the bootstrap CI needs {len(missing)} more feature value(s), e.g. {missing[0]}",
                         field=missing[0])
    encoded = encode_clinical(schema, clinical, needed_factors(block, own_factors))
    risks = np.array([replicate_risk(r, features, encoded) for r in unpack(block)])
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(risks, [tail, 100 - tail])
    return {"ci95": [float(lo), float(hi)], "method": bootstrap_label(int(block["b"])), "b": int(block["b"]),
            "failed": int(block.get("failed", 0)), "median": float(np.median(risks))}


def structure_problem(block: Any) -> str:
    """What is wrong with a model file's `uncertainty` block ('' when usable or absent)."""
    if block is None:
        return ""
    try:
        if block["layout"] != LAYOUT or not isinstance(block["replicates"], list):
            return "uncertainty has an unknown layout"
        nf, nt = len(block["features"]), len(block["terms"])
        for row in block["replicates"]:
            fi, mean, sd, rs, ti, comb = row
            numbers = list(mean) + list(sd) + list(rs) + list(comb)
            if not (len(fi) == len(mean) == len(sd) == len(rs) - 1 and len(ti) == len(comb)) or \
                    not all(isinstance(i, int) and 0 <= i < nf for i in fi) or \
                    not all(isinstance(i, int) and 0 <= i < nt for i in ti) or \
                    not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                            for v in numbers) or not all(s > 0 for s in sd):
                return "uncertainty holds a replicate that does not fit its layout"
    except (KeyError, TypeError, ValueError):
        return "uncertainty has an unknown layout"
    return ""
