"""The combined model's nomogram as rms builds it (points 0-100 per predictor, the widest predictor
spanning 100), and a patient's points on it: the one computation training, tests and scoring share."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Sequence

import numpy as np

from IMNRiskLib.core.errors import InputError
from IMNRiskLib.inputs.schema import ClinicalSchema

if TYPE_CHECKING:  # a type only: the model file reads nomograms where scipy is not installed (Slicer)
    from IMNRiskLib.stats.logistic import LogisticFit

RADSCORE = "radscore"  # the Rad-Score's term in the combined model and its nomogram axis


@dataclass
class NomogramAxis:
    """One predictor's axis: values (levels or numbers) and their points."""

    name: str
    label: str
    values: List[object]
    points: List[float]


@dataclass
class Nomogram:
    """rms-style nomogram of a logistic model: points = (x*b - min over the axis) * scale, the
    widest predictor spanning 0-100; total points map back to the linear predictor."""

    axes: List[NomogramAxis]
    scale: float            # points per unit of linear predictor
    lp_at_zero: float       # linear predictor when every predictor sits at its 0-point value

    def lp_from_points(self, total: float) -> float:
        return self.lp_at_zero + total / self.scale

    def points_for_lp(self, lp: float) -> float:
        return (lp - self.lp_at_zero) * self.scale

    def risk_axis(self, probabilities: Sequence[float] = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99)
                  ) -> List[Dict[str, float]]:
        return [{"probability": p, "total_points": self.points_for_lp(math.log(p / (1 - p)))} for p in probabilities]

    def to_dict(self) -> Dict[str, object]:
        return {"axes": [{"name": a.name, "label": a.label, "values": a.values, "points": a.points} for a in self.axes],
                "scale": self.scale, "lp_at_zero": self.lp_at_zero, "risk_axis": self.risk_axis()}


def build_nomogram(fit: LogisticFit, schema: ClinicalSchema, factors: Sequence[str],
                   radscore_range: Sequence[float]) -> Nomogram:
    """Nomogram of the combined model; the Rad-Score axis spans the training range."""
    coef = dict(zip(fit.terms, fit.coef))
    axes_raw = []
    for name in factors:
        var = schema[name]
        if var.type == "continuous":
            raise InputError(f"continuous clinical factor {name}: nomogram axis needs a range")
        contrib = []
        for level in var.levels:
            contrib.append(sum(coef[t] * v for t, v in zip(var.terms(), var.encode(level))))
        axes_raw.append((name, var.title, list(var.levels), np.array(contrib)))
    lo, hi = float(radscore_range[0]), float(radscore_range[1])
    axes_raw.append((RADSCORE, "Rad-Score", [lo, hi], np.array([coef[RADSCORE] * lo, coef[RADSCORE] * hi])))
    widest = max(c.max() - c.min() for *_, c in axes_raw)
    scale = 100.0 / widest
    axes = [NomogramAxis(n, l, v, list((c - c.min()) * scale)) for n, l, v, c in axes_raw]
    lp_at_zero = float(coef["(Intercept)"] + sum(c.min() for *_, c in axes_raw))
    return Nomogram(axes, scale, lp_at_zero)


def nomogram_points(nomogram: Mapping[str, Any], radscore_coef: float, clinical: Mapping[str, Any],
                    radscore: float) -> Dict[str, float]:
    """Points of one patient per predictor and in total, on a nomogram as the model file stores it
    (`Nomogram.to_dict()`): a clinical axis gives its level's points, the Rad-Score axis its line."""
    out = {}
    for axis in nomogram["axes"]:
        if axis["name"] == RADSCORE:
            lo = min(radscore_coef * axis["values"][0], radscore_coef * axis["values"][1])
            out[RADSCORE] = (radscore_coef * radscore - lo) * nomogram["scale"]
        else:
            out[axis["name"]] = axis["points"][axis["values"].index(clinical[axis["name"]])]
    out["total"] = float(sum(out.values()))
    return out
