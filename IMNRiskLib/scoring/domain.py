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


def check(ranges: Optional[Dict[str, Any]], features: Dict[str, float], radscore: float,
          clinical: Dict[str, Any]) -> Dict[str, Any]:
    """{checked, outside: [findings], warnings: [messages], note}: the patient against the
    model's training ranges (`ranges`: ScoringModel.domain; `checked` False for a model file without them)."""
    if ranges is None:
        return {"checked": False, "outside": [], "warnings": [], "note": NOT_CHECKED}
    found = [_outside("radscore", "radscore", float(radscore), ranges["radscore"])]
    found += [_outside("feature", f, float(features[f]), r) for f, r in (ranges.get("features") or {}).items()
              if f in features]
    found += [_outside("clinical", c, float(clinical[c]), r) for c, r in (ranges.get("clinical") or {}).items()
              if isinstance(clinical.get(c), (int, float)) and math.isfinite(clinical[c])]
    outside = [f for f in found if f is not None]
    note = ("outside the training range: " + ", ".join(_label(f["kind"], f["name"]) for f in outside)) if outside \
        else "inside the training range of the Rad-Score and of every model feature"
    if ranges.get("source") == "nomogram axes":
        note += " (ranges from the nomogram's axes: the model file predates training ranges)"
    return {"checked": True, "outside": outside, "warnings": [f["message"] for f in outside], "note": note}


def nomogram_ranges(nomogram: Dict[str, Any], clinical: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Ranges for a model file without a `domain` block, from its `nomogram` and `clinical` blocks: the
    nomogram's Rad-Score axis (training mean +- 3 SD) and its continuous factors' axes, the widest ranges
    such a file still knows."""
    axes = {a["name"]: a["values"] for a in nomogram.get("axes", [])}
    if "radscore" not in axes:
        return None
    def span(values):
        numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return {"p01": min(numbers), "p99": max(numbers)} if len(numbers) >= 2 else None
    variables = {v["name"]: v for v in clinical.get("schema", {}).get("variables", [])}
    clinical = {name: span(values) for name, values in axes.items()
                if variables.get(name, {}).get("type") == "continuous" and span(values)}
    return {"radscore": span(axes["radscore"]), "features": {}, "clinical": clinical, "source": "nomogram axes"}


def structure_problem(block: Any) -> str:
    """What is wrong with a model file's `domain` block ('' when usable or absent)."""
    if block is None:
        return ""
    if not isinstance(block, dict) or not isinstance(block.get("radscore"), dict):
        return "domain has no radscore range"
    if any(not isinstance(block.get(k) or {}, dict) for k in ("features", "clinical")):
        return "domain's features and clinical are not mappings of ranges"
    ranges = [block["radscore"]] + list((block.get("features") or {}).values()) + \
        list((block.get("clinical") or {}).values())
    return "domain holds a range that is not finite p01 <= p99" if not all(map(_is_range, ranges)) else ""


def _is_range(r: Any) -> bool:
    """A stored range is {p01, p99}: finite numbers, p01 <= p99."""
    numbers = [r.get(k) if isinstance(r, dict) else None for k in ("p01", "p99")]
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers) \
        and numbers[0] <= numbers[1]


# --------------------------------------------------------------------------- the images the model saw
#
# model.json's `acquisition` block records, as aggregates, what the training images were: the phase
# index scored and the number of phases of their series, the voxel spacing (1st-99th percentile per
# axis), the tumour volume, the intensity normalisation and the tumour's mean intensity. `predict`
# compares a new image with it: a phase the model never saw, another resolution or intensity scale
# gives feature values on another scale, whatever the ranges of the model's few features say.

SPACING_FAR = 1.25   # spacing outside [p01 / 1.25, p99 * 1.25] (per axis): not reliable
MAX_TUMOUR_SHARE = 0.25  # a "tumour" covering more of the image than this is the organ or the image itself
VOLUME_FAR = 3.0     # tumour volume outside [p01 / 3, p99 * 3]: not reliable
INTENSITY_FEATURE = "original_firstorder_Mean"
NO_ACQUISITION = ("not checked: the model file does not record its training images (retrain from an "
                  "extraction with its provenance)")


def _spacing_of(case: Dict[str, Any]) -> Optional[List[float]]:
    """A provenance case's voxel spacing (pyradiomics' diagnostics keep it as '(x, y, z)' or a list)."""
    raw = (case.get("diagnostics") or {}).get("diagnostics_Image-original_Spacing")
    if isinstance(raw, str):
        raw = [p for p in raw.strip("()[] ").split(",") if p.strip()]
    try:
        spacing = [float(v) for v in raw]
    except (TypeError, ValueError):
        return None
    return spacing if len(spacing) == 3 and all(math.isfinite(v) and v > 0 for v in spacing) else None


def _mode(values: Sequence[int]) -> int:
    """The most frequent value (the smallest of equally frequent ones)."""
    values = sorted(values)
    return max(values, key=lambda v: (values.count(v), -v))


def acquisition_profile(cases: Dict[str, Dict[str, Any]], ids: Sequence[str], settings: Dict[str, Any],
                        intensities: Optional[Sequence[float]] = None) -> Optional[Dict[str, Any]]:
    """The `acquisition` block of model.json from the provenance's per-case records of the training
    patients `ids` (None when the provenance has none of them)."""
    rows = [cases[i] for i in ids if isinstance(cases.get(i), dict)]
    if not rows:
        return None
    phases = [int(r["phase"]) for r in rows if isinstance(r.get("phase"), int)]
    counts = [int(r["n_phases"]) for r in rows if isinstance(r.get("n_phases"), int)]
    spacings = np.array([s for s in (_spacing_of(r) for r in rows) if s is not None])
    volumes = [float(r["volume_ml"]) for r in rows if isinstance(r.get("volume_ml"), (int, float))]
    setting = (settings.get("pyradiomics") or {}).get("setting") or {}
    block: Dict[str, Any] = {
        "n": len(rows), "phase": _mode(phases) if phases else None, "n_phases": _mode(counts) if counts else None,
        "normalisation": {"normalize": bool(setting.get("normalize", False)),
                          "scale": float(setting.get("normalizeScale", 1))}}
    if len(spacings):
        block["spacing_mm"] = [value_range(spacings[:, axis]) for axis in range(3)]
    if volumes:
        block["tumour_volume_ml"] = value_range(volumes)
    if intensities is not None and len(intensities):
        block["intensity"] = {"feature": INTENSITY_FEATURE, **value_range(intensities)}
    return block


def _finding(kind: str, severity: str, message: str) -> Dict[str, str]:
    return {"kind": kind, "severity": severity, "message": message}


def _phase_findings(block: Dict[str, Any], phase: Optional[int], n_phases: Optional[int],
                    declared: bool) -> List[Dict[str, str]]:
    """The scored phase against the training phase: another phase, or a single-phase image that
    nobody said is the training phase, is not what the model was trained on."""
    want, count = block.get("phase"), block.get("n_phases")
    if want is None or phase is None:
        return []
    trained = f"phase {want + 1} (index {want}) of {count}-phase series" if count else f"phase index {want}"
    if n_phases == 1 and not declared and (count or 1) > 1:
        return [_finding("phase", "not_reliable",
                         f"a single-phase image, but the model was trained on {trained}; if this image is that "
                         f"phase, say so (--image-is-phase {want})")]
    if phase != want:
        return [_finding("phase", "not_reliable", f"phase index {phase} scored, but the model was trained on {trained}")]
    if n_phases and count and n_phases > 1 and n_phases != count:
        return [_finding("phase", "extrapolation", f"the series has {n_phases} phases, the training series had "
                                                   f"{count}: phase {want + 1}'s timing may differ")]
    return []


def _ratio_findings(kind: str, label: str, value: float, r: Dict[str, float], far: float,
                    unit: str) -> List[Dict[str, str]]:
    """A positive quantity against its training range: outside it an extrapolation, outside the
    range widened by the factor `far` on both sides not reliable."""
    if r["p01"] <= value <= r["p99"]:
        return []
    severity = "not_reliable" if value < r["p01"] / far or value > r["p99"] * far else "extrapolation"
    return [_finding(kind, severity, f"{label} {value:.3g} {unit} is outside the training range "
                                     f"({r['p01']:.3g} to {r['p99']:.3g} {unit})"
                     + (", far outside" if severity == "not_reliable" else ""))]


def check_acquisition(block: Optional[Dict[str, Any]], phase: Optional[int], n_phases: Optional[int], declared: bool,
                      spacing: Optional[Sequence[float]], volume_ml: Optional[float],
                      intensity: Optional[float]) -> Dict[str, Any]:
    """{checked, findings: [{kind, severity, message}], note}: the scored image against the images
    the model was trained on (`block`: ScoringModel.acquisition; None for what is unknown, e.g. feature
    values given as a table)."""
    if not isinstance(block, dict):
        return {"checked": False, "findings": [], "note": NO_ACQUISITION}
    found = _phase_findings(block, phase, n_phases, declared)
    for axis, r in enumerate(block.get("spacing_mm") or []):
        if spacing is not None:
            found += _ratio_findings("spacing", f"voxel spacing along {'xyz'[axis]}", float(spacing[axis]), r,
                                     SPACING_FAR, "mm")
    if volume_ml is not None and block.get("tumour_volume_ml"):
        found += _ratio_findings("volume", "tumour volume", float(volume_ml), block["tumour_volume_ml"], VOLUME_FAR, "mL")
    if intensity is not None and block.get("intensity"):
        hit = _outside("feature", INTENSITY_FEATURE, float(intensity), block["intensity"])
        if hit is not None:
            norm = block.get("normalisation") or {}
            why = "" if norm.get("normalize") else " (the model does not normalise intensities: another scanner or protocol?)"
            found.append(_finding("intensity", "not_reliable" if hit["far"] else "extrapolation",
                                  f"tumour mean intensity {intensity:.4g} is outside the training range "
                                  f"({hit['p01']:.4g} to {hit['p99']:.4g}){', far outside' if hit['far'] else ''}{why}"))
    note = "; ".join(f["message"] for f in found) if found else "the image matches the training images"
    return {"checked": True, "findings": found, "note": note}


def tumour_share_finding(voxels: int, image_voxels: int) -> List[Dict[str, str]]:
    """A mask covering more than MAX_TUMOUR_SHARE of the image is not a tumour (a threshold that took
    the breast, the image given as its own mask): not reliable, whatever the model."""
    share = voxels / max(image_voxels, 1)
    if share <= MAX_TUMOUR_SHARE:
        return []
    return [_finding("volume", "not_reliable", f"implausible for a tumour: the mask covers {100 * share:.0f}% of the "
                                               f"image (more than {100 * MAX_TUMOUR_SHARE:.0f}%)")]


def acquisition_problem(block: Any) -> str:
    """What is wrong with a model file's `acquisition` block ('' when usable or absent)."""
    if block is None:
        return ""
    if not isinstance(block, dict):
        return "acquisition is not a mapping"
    for key in ("phase", "n_phases"):
        if block.get(key) is not None and (not isinstance(block[key], int) or isinstance(block[key], bool)
                                           or block[key] < 0):
            return f"acquisition.{key} is not a whole number"
    if not isinstance(block.get("spacing_mm") or [], list) or not isinstance(block.get("normalisation") or {}, dict):
        return "acquisition.spacing_mm is not a list of ranges or its normalisation not a mapping"
    ranges = list(block.get("spacing_mm") or []) + [block[k] for k in ("tumour_volume_ml", "intensity") if block.get(k)]
    return "acquisition holds a range that is not finite p01 <= p99" if not all(map(_is_range, ranges)) else ""
