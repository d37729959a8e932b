"""The scoring core: one patient, one frozen model, one `Prediction`, whichever face asks.

A face turns its inputs into a `Case` (image files, Slicer nodes or a row of feature values) and
the raw clinical values into a dict; `score_case` checks them, computes only the features the
model uses, scores, checks the patient against the model's training domain and images, and says
how far the number can be trusted (the verdict). Faces render the Prediction; none judges.

The verdict's rules (the README's "What the verdict means" repeats them):
- not reliable: a model feature, the Rad-Score or a continuous factor lies far outside its training
  1st-99th percentile range (further than the range is wide), or the image is not what the model was
  trained on (another phase, a single-phase image not declared to be the training phase, voxel spacing
  outside the training range widened 1.25-fold, a tumour volume outside it widened 3-fold, a tumour mean
  intensity far outside); the risk group is withheld and every face leads with "Not reliable: <reason>";
- extrapolation: any of those quantities outside its training range, but not far;
- within the model's domain: none outside (or not checkable: an old model file says so in a warning).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from IMNRiskLib import RESEARCH_ONLY
from IMNRiskLib.scoring import domain, uncertainty
from IMNRiskLib.radiomics import features
from IMNRiskLib.inputs import imaging
from IMNRiskLib.core.errors import InputError, InputErrors
from IMNRiskLib.scoring.modelfile import ScoringModel
from IMNRiskLib.stats.logit import logistic
from IMNRiskLib.scoring.compat import check_versions, model_settings

SYNTHETIC_BANNER = "TRAINED ON SYNTHETIC DATA (demo model): not for patients."
CI_METHODS = ("wald", "bootstrap")
WITHIN, EXTRAPOLATION, NOT_RELIABLE = "within", "extrapolation", "not_reliable"
HEADLINES = {WITHIN: "Within the model's domain", EXTRAPOLATION: "Extrapolation", NOT_RELIABLE: "Not reliable"}
CSV_WARNING = "feature values from a table: the software that computed them is not checked"


# --------------------------------------------------------------------------- inputs

@dataclass
class Case:
    """One patient as the core takes it: an image phase and its tumour mask on one grid (`loaded`),
    or feature values computed elsewhere (`values`). `declared_phase`: the user said which phase of
    the DCE series a single-phase image is (--image-is-phase)."""

    loaded: Optional[imaging.LoadedCase] = None
    values: Optional[Dict[str, float]] = None
    source: str = "image"
    declared_phase: bool = False

    @classmethod
    def from_values(cls, values: Dict[str, Any], source: str = "features table") -> "Case":
        """A case from feature values (a features CSV row): no image to check."""
        return cls(values={str(k): float(v) for k, v in values.items()}, source=source)


def declare_phase(loaded: imaging.LoadedCase, image_is_phase: Optional[int], source: str) -> bool:
    """Record which phase of its series a single-phase image is (True when declared)."""
    if image_is_phase is None:
        return False
    if loaded.n_phases > 1:
        raise InputError(f"the image has {loaded.n_phases} phases: choose one with --phase; --image-is-phase is for "
                         "a single-phase image", file=source, field="--image-is-phase")
    if image_is_phase < 0:
        raise InputError(f"phase {image_is_phase} is negative (0-based)", file=source, field="--image-is-phase")
    loaded.phase = int(image_is_phase)
    return True


def case_from_files(model: ScoringModel, image: Union[str, Path], mask: Union[str, Path],
                    phase: Optional[int] = None, label: Union[int, str] = 1,
                    image_is_phase: Optional[int] = None) -> Case:
    """A case from an image file or DICOM folder and a mask file, checked and on one grid."""
    loaded = imaging.load_case(image, mask, phase, label, model_settings(model).min_tumour_voxels)
    return Case(loaded=loaded, source=str(image), declared_phase=declare_phase(loaded, image_is_phase, str(image)))


@dataclass
class Options:
    """How to score: the CI method, whether a model from other extraction software may score, and
    the name clinical-value errors give as their source."""

    ci: str = "wald"
    allow_version_mismatch: bool = False
    clinical_source: str = "--clinical"


def clinical_pairs(pairs: Sequence[str], source: str = "--clinical") -> Dict[str, str]:
    """NAME=VALUE strings as a dict; a malformed pair or a factor given twice is refused (the last
    value would otherwise win silently)."""
    values: Dict[str, str] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise InputError(f"'{pair}' is not NAME=VALUE", field=source)
        name, value = (p.strip() for p in pair.split("=", 1))
        if name in values:
            raise InputError(f"given twice ({values[name]!r} and {value!r}): give each factor once", file=source,
                             field=name)
        values[name] = value
    return values


def read_clinical(model: ScoringModel, raw: Dict[str, Any], needed: Optional[Sequence[str]] = None,
                  source: str = "--clinical") -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(parsed values of the factors needed, ignored values): every given value must parse for its
    schema type, a needed one must be given, an unknown name is refused; values of variables the
    model does not use are returned as ignored. Every problem at once."""
    schema = model.schema
    needed = list(needed or model.factors)
    errors, parsed, ignored = [], {}, {}
    for name in sorted(set(raw) - set(schema.names)):
        errors.append(InputError(f"not a variable of this model's schema ({', '.join(model.factors)} needed)",
                                 file=source, field=name))
    for name in [n for n in schema.names if n in raw or n in needed]:
        given = raw.get(name)
        if given is None or (isinstance(given, str) and not given.strip()):
            if name in needed:
                allowed = ", ".join(schema[name].levels) if schema[name].levels else "a number"
                why = "" if name in model.factors else " by a bootstrap replicate of the model (--ci bootstrap)"
                errors.append(InputError(f"value needed{why} ({allowed})", file=source, field=name))
            continue
        try:
            value = schema[name].parse(given)
        except ValueError as exc:
            errors.append(InputError(str(exc), file=source, field=name))
            continue
        (parsed if name in needed else ignored)[name] = value
    if errors:
        raise InputErrors(errors)
    return parsed, ignored


def field_status(model: ScoringModel, name: str, value: Any) -> Tuple[str, str]:
    """A clinical form field's (status, message): "not entered", "invalid" (with why) or "valid"
    (with a note when a continuous value lies outside the training range: the verdict says more)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return "not entered", "value needed"
    try:
        parsed = model.schema[name].parse(value)
    except ValueError as exc:
        return "invalid", str(exc)
    r = ((model.domain or {}).get("clinical") or {}).get(name)
    if r and isinstance(parsed, float) and not r["p01"] <= parsed <= r["p99"]:
        return "valid", f"outside the training range {r['p01']:.4g} to {r['p99']:.4g}"
    return "valid", ""


# --------------------------------------------------------------------------- the answer

@dataclass
class Verdict:
    """How far the number can be trusted: state (within / extrapolation / not_reliable) and why."""

    state: str
    reasons: List[str] = field(default_factory=list)

    @property
    def headline(self) -> str:
        """The line every face shows first: the state and its first reason (the others follow it as
        warnings, so that the line stays readable)."""
        words = HEADLINES[self.state]
        if not self.reasons:
            return words
        more = f" (and {len(self.reasons) - 1} more, below)" if len(self.reasons) > 1 else ""
        return f"{words}: {self.reasons[0]}{more}"

    @property
    def reliable(self) -> bool:
        return self.state != NOT_RELIABLE


def verdict(domain_check: Dict[str, Any], image_check: Dict[str, Any]) -> Verdict:
    """The verdict from the training-range findings and the image findings (rules in the module's
    docstring)."""
    # the image's findings first: an image unlike the training images explains the features' ranges
    far = [f["message"] for f in image_check.get("findings", []) if f["severity"] == NOT_RELIABLE]
    far += [f["message"] for f in domain_check.get("outside", []) if f["far"]]
    if far:
        return Verdict(NOT_RELIABLE, far)
    near = [f["message"] for f in image_check.get("findings", [])]
    near += [f["message"] for f in domain_check.get("outside", [])]
    return Verdict(EXTRAPOLATION, near) if near else Verdict(WITHIN)


@dataclass
class Prediction:
    """Everything any face shows of one scored patient (`to_dict()` is `imnrisk predict --json`)."""

    radscore: float
    probability: float
    ci95: List[float]
    ci_method: str
    risk_group: Optional[str]          # None when the verdict is "not reliable" (withheld)
    risk_group_computed: str           # the group the number alone would give (research detail)
    risk_thresholds: Dict[str, float]
    points: Dict[str, float]
    features: Dict[str, float]
    clinical_probability: float
    radiomics_probability: float
    verdict: Verdict
    domain: Dict[str, Any]
    image: Dict[str, Any]
    warnings: List[str]                # every warning and finding (the verdict's reasons among them)
    ignored_clinical: Dict[str, Any]
    phase: Optional[int]
    n_phases: Optional[int]
    synthetic: bool
    model_summary: str
    model_sha256: str
    tumour: Optional[Dict[str, float]] = None
    ci95_wald: Optional[List[float]] = None
    notice: str = RESEARCH_ONLY

    @property
    def banner(self) -> str:
        return SYNTHETIC_BANNER if self.synthetic else ""

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON values, the verdict as {state, reasons, headline}, and `display`: the strings
        every face shows (so that no face words a result its own way)."""
        out = asdict(self)
        out["verdict"] = {"state": self.verdict.state, "reasons": list(self.verdict.reasons),
                          "headline": self.verdict.headline}
        out["banner"] = self.banner
        out["display"] = self.display()
        if self.ci95_wald is None:
            out.pop("ci95_wald")
        return out

    def display(self) -> Dict[str, str]:
        """The result in words: headline (the verdict), banner, risk, group, Rad-Score, points; when not
        reliable the group is withheld and the risk is marked as a research detail."""
        lo, hi = (100 * v for v in self.ci95)
        risk = f"{100 * self.probability:.1f}% (95% CI {lo:.1f}-{hi:.1f}%; {self.ci_method})"
        t = self.risk_thresholds
        scale = (f"low < {t['low']:.3f} <= intermediate < {t['high']:.3f} <= high" if t["low"] < t["high"] else
                 f"low < {t['high']:.3f} <= high; no intermediate group: the model's two cut-offs meet")
        reliable = self.verdict.reliable
        return {"headline": self.verdict.headline, "state": self.verdict.state, "banner": self.banner,
                "risk": risk if reliable else f"{risk} - for research only, not for care",
                "group": f"{self.risk_group} risk ({scale})" if reliable else "withheld (not reliable)",
                "radscore": f"{self.radscore:.3f}",
                "points": ", ".join(f"{k} {v:.1f}" for k, v in self.points.items() if k != "total")
                + f"; total {self.points['total']:.1f}"}

    def lines(self) -> List[str]:
        """The text every text face prints: the verdict first, then any banner, then the numbers
        (as research details only when not reliable), warnings, ignored values, the model."""
        d = self.display()
        out = [d["headline"]] + ([d["banner"]] if d["banner"] else [])
        if self.verdict.reliable:
            out.append(f"IMN metastasis risk {d['risk']}: {d['group']}")
            out.append(f"Rad-Score {d['radscore']}; nomogram points: {d['points']}")
        else:
            out.append(f"details, for research only (risk group withheld): Rad-Score {d['radscore']}; "
                       f"risk {100 * self.probability:.1f}%; nomogram points: {d['points']}")
        out += [f"  WARNING: {w}" for w in self.warnings if w not in self.verdict.reasons[:1]]
        if self.ignored_clinical:
            out.append("ignored (not used by this model): "
                       + ", ".join(f"{k}={v}" for k, v in self.ignored_clinical.items()))
        about = self.model_summary.splitlines()
        out += [f"model: {about[0]}"] + [f"  {line}" for line in about[1:2]]  # validated performance first
        out.append(self.notice)
        return out


# --------------------------------------------------------------------------- scoring

def score_values(model: ScoringModel, values: Dict[str, float], clinical: Dict[str, Any],
                 ci: str = "wald") -> Dict[str, Any]:
    """The numbers alone, from feature values and parsed clinical values: Rad-Score, the combined
    risk with its CI, the clinical and radiomics models' risks, nomogram points (used for cohorts)."""
    rs = model.radscore(values)
    combined = model.probability(clinical, rs, "combined")
    out = {"radscore": rs, "probability": combined["probability"], "ci95": combined["ci95"],
           "ci_method": uncertainty.WALD, "ci95_wald": None,
           "clinical_probability": model.probability(clinical, rs, "clinical")["probability"],
           "radiomics_probability": logistic(rs), "points": model.points(clinical, rs)}
    if ci == "bootstrap":
        boot = model.bootstrap_interval(values, clinical)
        out.update(ci95=boot["ci95"], ci_method=boot["method"], ci95_wald=combined["ci95"])
    return out


def _needed(model: ScoringModel, ci: str) -> Tuple[List[str], Optional[List[str]]]:
    """The features to compute and the clinical factors to read (every bootstrap replicate's with ci="bootstrap")."""
    if ci not in CI_METHODS:
        raise InputError(f"unknown CI method '{ci}' ({', '.join(CI_METHODS)})", field="--ci")
    if ci == "bootstrap":
        if model.replicates is None:
            raise InputError(uncertainty.NO_REPLICATES, field="--ci")
        return model.ci_features, model.ci_factors
    return model.features, None


def _image_facts(model: ScoringModel, case: Case, wanted: List[str]) -> Tuple[Dict[str, float], Dict[str, Any]]:
    """Feature values of an image case (only `wanted`, plus the intensity the image check needs) and
    what the image check compares: phase, spacing, tumour volume, mean intensity."""
    loaded = case.loaded
    intensity_range = (model.acquisition or {}).get("intensity")
    extra = [domain.INTENSITY_FEATURE] if intensity_range and domain.INTENSITY_FEATURE not in wanted else []
    values, _ = features.compute_features(loaded, model_settings(model), feature_names=wanted + extra)
    voxels = imaging.binary_count(loaded.mask)
    spacing = [float(s) for s in loaded.image.GetSpacing()[:3]]
    facts = {"phase": loaded.phase, "n_phases": loaded.n_phases, "spacing": spacing,
             "image_voxels": int(np.prod(loaded.image.GetSize()[:3])),
             "volume_ml": voxels * float(np.prod(spacing)) / 1000.0, "voxels": voxels,
             "intensity": values.pop(domain.INTENSITY_FEATURE) if extra else values.get(domain.INTENSITY_FEATURE)}
    return values, facts


def _measure(model: ScoringModel, case: Case, wanted: List[str]
             ) -> Tuple[Dict[str, float], Dict[str, Any], Dict[str, Any]]:
    """(feature values, image facts, image check) of a case: computed from its image, or taken from
    its feature values (then the image is not checked); values must be there and finite."""
    if case.loaded is not None:
        values, facts = _image_facts(model, case, wanted)
        image_check = domain.check_acquisition(model.acquisition, facts["phase"], facts["n_phases"], case.declared_phase,
                                               facts["spacing"], facts["volume_ml"], facts["intensity"])
        image_check["findings"] += domain.tumour_share_finding(facts["voxels"], facts["image_voxels"])
    else:
        missing = [f for f in wanted if f not in (case.values or {})]
        if missing:
            raise InputError(f"lacks {len(missing)} feature(s) the model needs", file=case.source, field=missing[0])
        values, facts = {f: float(case.values[f]) for f in wanted}, {}
        image_check = {"checked": False, "findings": [], "note": "not checked: feature values were given, not an image"}
    bad = [f for f in wanted if not math.isfinite(values[f])]
    if bad:
        raise InputError(f"feature value is not finite ({values[bad[0]]})", file=case.source, field=bad[0])
    return values, facts, image_check


def check_request(model: ScoringModel, clinical: Dict[str, Any], options: Options, from_image: bool = True
                  ) -> Tuple[List[str], Dict[str, Any], Dict[str, Any], List[str]]:
    """The cheap checks, before any image is read (a face may call it first): the CI method, the
    extraction software (for an image), the clinical values. (features to compute, parsed values,
    ignored values, warnings)."""
    wanted, factors = _needed(model, options.ci)
    warnings = check_versions(model, options.allow_version_mismatch) if from_image else [CSV_WARNING]
    parsed, ignored = read_clinical(model, clinical, needed=factors, source=options.clinical_source)
    return list(wanted), parsed, ignored, warnings


def score_case(model: ScoringModel, case: Case, clinical: Optional[Dict[str, Any]] = None,
               options: Optional[Options] = None) -> Prediction:
    """Score one patient: the one function behind every face. Cheap checks first (versions, CI
    method, clinical values), then only the model's features, the numbers, the domain and image
    checks and the verdict."""
    options = options or Options()
    wanted, parsed, ignored, warnings = check_request(model, clinical or {}, options, case.loaded is not None)
    values, facts, image_check = _measure(model, case, wanted)
    warnings += case.loaded.warnings if case.loaded is not None else []
    numbers = score_values(model, values, parsed, options.ci)
    domain_check = domain.check(model.domain, values, numbers["radscore"], parsed)
    if not domain_check["checked"]:
        warnings.append(f"training ranges {domain_check['note']}")
    if case.loaded is not None and not image_check["checked"]:
        warnings.append(f"image {image_check['note']}")
    judged = verdict(domain_check, image_check)
    warnings += domain_check["warnings"] + [f["message"] for f in image_check["findings"]]
    group = model.risk_group(numbers["probability"])
    return Prediction(
        radscore=numbers["radscore"], probability=numbers["probability"], ci95=list(numbers["ci95"]),
        ci_method=numbers["ci_method"], ci95_wald=numbers["ci95_wald"],
        risk_group=group if judged.reliable else None, risk_group_computed=group,
        risk_thresholds=model.risk_thresholds,
        points=numbers["points"], features={f: float(values[f]) for f in model.features},
        clinical_probability=numbers["clinical_probability"], radiomics_probability=numbers["radiomics_probability"],
        verdict=judged, domain=domain_check, image=image_check, warnings=warnings, ignored_clinical=ignored,
        phase=facts.get("phase"), n_phases=facts.get("n_phases"), synthetic=model.synthetic,
        model_summary=model.summary(), model_sha256=model.sha256,
        tumour={k: facts[k] for k in ("voxels", "volume_ml")} if facts else None)
