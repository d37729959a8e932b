"""Applicability domain: where the training patients lay, and whether a new patient lies there too.

model.json keeps, as aggregates, each model feature's training range (1st-99th percentile; no
min/max, which would be one patient's own value), the Rad-Score's and that of the numeric clinical factors; `predict` warns, naming the
feature and the range, when a patient lies outside, since the risk is then an extrapolation (a
real breast MRI scored with the phantom model gets a Rad-Score far below every training patient's
and a silent "risk 0.0%"). Old model files without the ranges cannot be checked, and say so.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

PERCENTILES = (1.0, 99.0)
NOT_CHECKED = "not checked: the model file predates training ranges (retrain to record them)"


def value_range(values: Sequence[float]) -> Dict[str, float]:
    """1st and 99th percentiles (numpy's default, R's type 7) of finite values. No min/max: each is
    one training patient's own value, and a model file holds aggregates only."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    lo, hi = np.percentile(x, PERCENTILES)
    return {"p01": float(lo), "p99": float(hi)}


def training_ranges(features, radscores: Sequence[float], clinical, schema, factors: Sequence[str]
                    ) -> Dict[str, Any]:
    """The `domain` block of model.json: ranges of the model's features (columns of `features`),
    of the Rad-Score and of the continuous clinical factors, over the training patients."""
    numeric = [f for f in factors if schema[f].type == "continuous"]
    return {"percentiles": list(PERCENTILES),
            "features": {name: value_range(features[name].to_numpy(float)) for name in features.columns},
            "radscore": value_range(radscores),
            "clinical": {name: value_range(clinical[name].to_numpy(float)) for name in numeric}}


def _label(kind: str, name: str) -> str:
    return {"radscore": "Rad-Score", "feature": f"feature {name}", "clinical": f"clinical factor {name}"}[kind]


def _outside(kind: str, name: str, value: float, r: Dict[str, float]) -> Optional[Dict[str, Any]]:
    """One finding when value lies outside the 1st-99th percentile (`far`: by more than that range's
    own width), else None."""
    if r["p01"] <= value <= r["p99"]:
        return None
    width = r["p99"] - r["p01"]
    far = value < r["p01"] - width or value > r["p99"] + width
    where = ", far outside (further than the range is wide)" if far else ""
    message = (f"{_label(kind, name)} {value:.4g} is outside the training range{where} (1st-99th percentile "
               f"{r['p01']:.4g} to {r['p99']:.4g}): the risk is an extrapolation")
    return {"kind": kind, "name": name, "value": float(value), "p01": r["p01"], "p99": r["p99"], "far": far,
            "message": message}


def check(doc: Dict[str, Any], features: Dict[str, float], radscore: float,
          clinical: Dict[str, Any]) -> Dict[str, Any]:
    """{checked, outside: [findings], warnings: [messages], note}: the patient against the
    model's training ranges (`checked` False for a model file without them)."""
    ranges = doc.get("domain")
    if not isinstance(ranges, dict):
        return {"checked": False, "outside": [], "warnings": [], "note": NOT_CHECKED}
    found = [_outside("radscore", "radscore", float(radscore), ranges["radscore"])]
    found += [_outside("feature", f, float(features[f]), r) for f, r in ranges.get("features", {}).items()
              if f in features]
    found += [_outside("clinical", c, float(clinical[c]), r) for c, r in ranges.get("clinical", {}).items()
              if isinstance(clinical.get(c), (int, float)) and math.isfinite(clinical[c])]
    outside = [f for f in found if f is not None]
    note = ("outside the training range: " + ", ".join(_label(f["kind"], f["name"]) for f in outside)) if outside \
        else "inside the training range of the Rad-Score and of every model feature"
    return {"checked": True, "outside": outside, "warnings": [f["message"] for f in outside], "note": note}


def structure_problem(block: Any) -> str:
    """What is wrong with a model file's `domain` block ('' when usable or absent)."""
    if block is None:
        return ""
    if not isinstance(block, dict) or not isinstance(block.get("radscore"), dict):
        return "domain has no radscore range"
    ranges = [block["radscore"]] + list((block.get("features") or {}).values()) + \
        list((block.get("clinical") or {}).values())
    for r in ranges:
        numbers = [r.get(k) if isinstance(r, dict) else None for k in ("p01", "p99")]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers) \
                or not numbers[0] <= numbers[1]:
            return "domain holds a range that is not finite p01 <= p99"
    return ""
