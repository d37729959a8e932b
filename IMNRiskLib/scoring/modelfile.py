"""Model file: `model.json`, the portable, frozen model (JSON only, never pickle).

It holds everything needed to score a new patient (extraction settings, the Rad-Score's features
with their z-score means/SDs and coefficients, the clinical schema and encoding, the combined
model, nomogram scales, risk groups) and aggregate training numbers, nothing about any patient,
plus a SHA-256 of its own canonical content. Loading it runs no code.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from IMNRiskLib.core.errors import InputError, InputErrors
from IMNRiskLib.inputs.schema import ClinicalSchema, schema_from_dict
from IMNRiskLib.modelling.nomogram import RADSCORE, nomogram_points
from IMNRiskLib.scoring import domain, uncertainty
from IMNRiskLib.stats.logit import Z95, logistic
from IMNRiskLib.core.files import check_input_file

FORMAT = "imnrisk-model"
FORMAT_VERSION = 1
# minor additions (optional keys an older reader ignores): 1 = `domain` (training ranges) and
# `uncertainty` (bootstrap replicates for predict --ci bootstrap); 2 = `acquisition` (the training images)
FORMAT_MINOR = 2


def canonical(doc: Dict[str, Any]) -> bytes:
    """Canonical bytes of a document without its `sha256` and `signature` fields (sorted keys, no spaces)."""
    body = {k: v for k, v in doc.items() if k not in ("sha256", "signature")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def seal(doc: Dict[str, Any]) -> Dict[str, Any]:
    """The document with its SHA-256 filled in."""
    return {**doc, "sha256": hashlib.sha256(canonical(doc)).hexdigest()}


def signature_of(doc: Dict[str, Any]) -> Any:
    """The document's `signature` block as the file holds it (None when unsigned; imnrisk sign adds it)."""
    return doc.get("signature")


def with_signature(doc: Dict[str, Any], signature: Dict[str, Any]) -> Dict[str, Any]:
    """The document with a `signature` block (outside the canonical content the SHA-256 and signature cover)."""
    return {**doc, "signature": signature}


def read_model_document(path: Union[str, Path]) -> Dict[str, Any]:
    """Read and check a model file: format, version (refuse newer), integrity (refuse damaged)."""
    path = check_input_file(path, "model file")
    def no_constant(name: str):
        raise ValueError(f"{name} is not a number JSON allows")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"), parse_constant=no_constant)
    except RecursionError:
        raise InputError("not a JSON model file (nested too deeply)", file=str(path)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"not a JSON model file ({str(exc).splitlines()[0][:80]})", file=str(path)) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f"not an IMNRisk model (format is not '{FORMAT}')", file=str(path))
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputError(f"model format version {version!r:.20} is not a whole number (a damaged or hand-made model "
                         "file)", file=str(path), field="format_version")
    if version > FORMAT_VERSION:
        raise InputError(f"model format version {version} is newer than this IMNRisk reads ({FORMAT_VERSION}); "
                         "update imnrisk", file=str(path))
    try:
        sealed = doc.get("sha256") == hashlib.sha256(canonical(doc)).hexdigest()
    except (TypeError, ValueError):
        sealed = False
    if not sealed:
        raise InputError("model file is damaged or was edited (SHA-256 does not match its content)", file=str(path))
    problem = model_structure_problem(doc)
    if problem:
        raise InputError(f"not a usable IMNRisk model: {problem}", file=str(path))
    return doc


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _at(doc: Any, dotted: str) -> Any:
    """The value at a dotted path of a document; KeyError naming the path when absent."""
    value = doc
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value


def model_structure_problem(doc: Dict[str, Any]) -> str:
    """What keeps a (well-sealed) document from scoring a patient, or '' when it can: every key that
    scoring reads exists with the right type and finite numbers, and the shapes agree."""
    try:
        for key in ("extraction.imnrisk.smoothing_sigma_mm", "extraction.imnrisk.min_tumour_voxels",
                    "radiomics.radscore.intercept", "nomogram.scale", "risk_groups.low", "risk_groups.high"):
            if not _is_number(_at(doc, key)):
                return f"{key} is not a finite number"
        if not isinstance(_at(doc, "extraction.pyradiomics"), dict):
            return "extraction.pyradiomics is not a mapping"
        feats, coefs, std = (_at(doc, k) for k in ("radiomics.features", "radiomics.radscore.coefficients",
                                                   "radiomics.standardisation"))
        if not isinstance(feats, list) or not all(isinstance(f, str) and f.count("_") >= 2 for f in feats):
            return "radiomics.features is not a list of pyradiomics feature names"
        if not isinstance(coefs, dict) or not isinstance(std, dict):
            return "radiomics.radscore.coefficients or radiomics.standardisation is not a mapping"
        for name, b in coefs.items():
            z = std.get(name)
            if name not in feats or not _is_number(b) or not isinstance(z, dict) or not _is_number(z.get("mean")) \
                    or not _is_number(z.get("sd")) or z["sd"] <= 0:
                return f"Rad-Score term {name} lacks a feature, a finite coefficient or a positive SD"
        schema = schema_from_dict(_at(doc, "clinical.schema"), source="model.json")
        factors = _at(doc, "clinical.factors")
        if not isinstance(factors, list) or any(f not in schema.names for f in factors):
            return "clinical.factors are not variables of the model's schema"
        for model in ("clinical", "combined"):
            terms, beta, cov = (_at(doc, f"{model}.{k}") for k in ("terms", "coefficients", "covariance"))
            k = len(terms) if isinstance(terms, list) and all(isinstance(t, str) for t in terms) \
                and len(set(terms)) == len(terms) else -1
            if k < 1 or not isinstance(beta, list) or len(beta) != k or not all(map(_is_number, beta)):
                return f"{model}.coefficients do not match its terms"
            if not isinstance(cov, list) or len(cov) != k or \
                    not all(isinstance(r, list) and len(r) == k and all(map(_is_number, r)) for r in cov):
                return f"{model}.covariance is not a finite {k} x {k} matrix"
        if "radscore" not in _at(doc, "combined.terms"):
            return "the combined model has no radscore term"
        axes = _at(doc, "nomogram.axes")
        if not isinstance(axes, list) or not all(isinstance(a, dict) and "name" in a and isinstance(a.get("values"), list)
                                                 for a in axes):
            return "nomogram.axes is not a list of axes with values"
        for axis in axes:
            if axis["name"] == "radscore":
                if len(axis["values"]) < 2 or not all(map(_is_number, axis["values"][:2])):
                    return "the nomogram's radscore axis has no range"
            elif axis["name"] not in factors or axis["values"] != list(schema[axis["name"]].levels) or \
                    not isinstance(axis.get("points"), list) or len(axis["points"]) != len(axis["values"]) or \
                    not all(map(_is_number, axis["points"])):
                return f"nomogram axis {axis['name']} is not a factor with one point per level"
        if sorted(a["name"] for a in axes) != sorted(factors + ["radscore"]):
            return "the nomogram's axes are not the model's factors and radscore"
        if not 0 <= doc["risk_groups"]["low"] <= doc["risk_groups"]["high"] <= 1:
            return "risk_groups thresholds are not 0 <= low <= high <= 1"
        for key in ("training.n", "training.events"):
            if not _is_number(_at(doc, key)):
                return f"{key} is not a number"
        if not isinstance(_at(doc, "radiomics.formula"), str):
            return "radiomics.formula is not text"
        for key in ("apparent", "cv", "bootstrap"):  # what the model's summary reads
            part = doc["training"].get(key)
            if part is not None and (not isinstance(part, dict) or
                                     not all(isinstance(part.get(m), (dict, type(None))) for m in SUMMARY_MODELS)):
                return f"training.{key} is not a mapping of the three models' numbers"
        if not isinstance(doc.get("created"), str):
            return "created is not a date"
        problem = domain.structure_problem(doc.get("domain")) or uncertainty.structure_problem(doc.get("uncertainty")) \
            or domain.acquisition_problem(doc.get("acquisition"))
        if problem:
            return problem
    except KeyError as exc:
        return f"key {exc.args[0]} is missing"
    except InputError as exc:  # the schema inside
        return f"its clinical schema is invalid ({exc})"
    return ""


@dataclass
class ScoringModel:
    """A loaded model: scores one patient from feature values and clinical values."""

    doc: Dict[str, Any]

    @classmethod
    def load(cls, path: Union[str, Path]) -> "ScoringModel":
        return cls(read_model_document(path))

    @property
    def format_version(self) -> Any:
        """The file's format version (an int: the reader refused any other)."""
        return self.doc.get("format_version")

    @property
    def created(self) -> Optional[str]:
        """When the model was trained (ISO 8601, UTC)."""
        return self.doc.get("created")

    @property
    def sha256(self) -> str:
        """The model's SHA-256 (of its canonical content): what outputs name it by."""
        return str(self.doc["sha256"])

    @property
    def extraction(self) -> Dict[str, Any]:
        """The extraction settings the model records ({} in a file without them): pyradiomics' and IMNRisk's."""
        return self.doc.get("extraction") or {}

    @property
    def min_tumour_voxels(self) -> int:
        """The smallest tumour (in voxels) the model's extraction accepts."""
        return int(self.doc["extraction"]["imnrisk"]["min_tumour_voxels"])

    @property
    def software(self) -> Dict[str, str]:
        """The software versions the training run's features were extracted with ({} when not recorded)."""
        return self.doc.get("software") or {}

    @property
    def training(self) -> Dict[str, Any]:
        """The training run's aggregates: n, events, options, apparent and validated performance."""
        return self.doc["training"]

    @property
    def synthetic(self) -> bool:
        """Whether the model was trained on synthetic phantom data (a demonstration)."""
        return bool(self.doc["training"].get("synthetic"))

    @property
    def risk_thresholds(self) -> Dict[str, float]:
        """The risk groups' thresholds on the combined model's probability: {low, high}."""
        return {k: self.doc["risk_groups"][k] for k in ("low", "high")}

    @property
    def risk_explanation(self) -> str:
        """How the risk groups' thresholds were chosen, in words (the report prints it)."""
        return self.doc["risk_groups"]["explanation"]

    @property
    def nomogram(self) -> Dict[str, Any]:
        """The nomogram's scales (axes, points), as `modelling.nomogram` and the figures read them."""
        return self.doc["nomogram"]

    @property
    def schema_variables(self) -> List[Dict[str, Any]]:
        """The clinical schema's variables as the file records them (name, type, levels, label)."""
        return self.doc["clinical"]["schema"]["variables"]

    @property
    def outcome(self) -> str:
        """The outcome's name in the model's clinical schema (a column of predictions.csv)."""
        return self.doc["clinical"]["schema"]["outcome"]["name"]

    def coefficients(self, model: str = "combined") -> Dict[str, float]:
        """The clinical or combined model's coefficients by term, in the file's order (intercept first)."""
        return dict(zip(self.doc[model]["terms"], self.doc[model]["coefficients"]))

    @property
    def labels(self) -> Dict[str, str]:
        """A label for people for each clinical variable (its name when it has none)."""
        return {v["name"]: v.get("label", v["name"]) for v in self.schema_variables}

    @property
    def acquisition(self) -> Optional[Dict[str, Any]]:
        """What the training images were (phase, spacing, tumour volume, intensity), or None for an older file."""
        block = self.doc.get("acquisition")
        return block if isinstance(block, dict) else None

    @property
    def domain(self) -> Optional[Dict[str, Any]]:
        """The training ranges the patient is checked against: the file's `domain` block, else the widest
        its nomogram's axes still give (an older file), else None."""
        ranges = self.doc.get("domain")
        if isinstance(ranges, dict):
            return ranges
        return domain.nomogram_ranges(self.doc.get("nomogram") or {}, self.doc.get("clinical") or {})

    @property
    def replicates(self) -> Optional[Dict[str, Any]]:
        """The bootstrap replicates kept for predict --ci bootstrap, or None when the file has none."""
        return uncertainty.block_of(self.doc.get("uncertainty"))

    @property
    def ci_features(self) -> List[str]:
        """Every feature a bootstrap CI needs: the model's own and every replicate's."""
        return uncertainty.needed_features(self.replicates, self.features)

    @property
    def ci_factors(self) -> List[str]:
        """Every clinical factor a bootstrap CI needs: the model's own and those of any replicate."""
        return uncertainty.needed_factors(self.replicates, self.factors)

    def bootstrap_interval(self, values: Dict[str, float], clinical: Dict[str, Any]) -> Dict[str, Any]:
        """Percentile interval of the patient's risk over the model's bootstrap replicates."""
        return uncertainty.replicate_interval(self.replicates, self.features, self.factors, self.schema, values,
                                              clinical)

    @property
    def schema(self) -> ClinicalSchema:
        return schema_from_dict(self.doc["clinical"]["schema"], source="model.json")

    @property
    def features(self) -> List[str]:
        return list(self.doc["radiomics"]["features"])

    @property
    def factors(self) -> List[str]:
        return list(self.doc["clinical"]["factors"])

    def radscore(self, values: Dict[str, float]) -> float:
        """Rad-Score = b0 + sum(bi * (x_i - mean_i) / sd_i)."""
        r = self.doc["radiomics"]
        total = r["radscore"]["intercept"]
        for name, b in r["radscore"]["coefficients"].items():
            z = r["standardisation"][name]
            total += b * (float(values[name]) - z["mean"]) / z["sd"]
        if not math.isfinite(total):
            raise InputError("the model's coefficients give a non-finite Rad-Score for these values",
                             file="model.json", field="radiomics")
        return float(total)

    def parse_clinical(self, raw: Dict[str, Any], source: str = "--clinical",
                       needed: Optional[List[str]] = None) -> Dict[str, Any]:
        """Check and parse the clinical values the model needs (`needed`: these factors instead,
        e.g. every bootstrap replicate's); every problem at once."""
        schema = self.schema
        errors, parsed = [], {}
        for name in needed or self.factors:
            if name not in raw or raw[name] in (None, ""):
                allowed = ", ".join(schema[name].levels) if schema[name].levels else "a number"
                why = "" if name in self.factors else " by a bootstrap replicate of the model (--ci bootstrap)"
                errors.append(InputError(f"value needed{why} ({allowed})", file=source, field=name))
                continue
            try:
                parsed[name] = schema[name].parse(raw[name])
            except ValueError as exc:
                errors.append(InputError(str(exc), file=source, field=name))
        unknown = sorted(set(raw) - set(schema.names))
        for name in unknown:
            errors.append(InputError(f"not a variable of this model's schema ({', '.join(self.factors)} needed)",
                                     file=source, field=name))
        if errors:
            raise InputErrors(errors)
        return parsed

    def design_row(self, clinical: Dict[str, Any], radscore: float, model: str) -> np.ndarray:
        """The design vector (with intercept) of the clinical or combined model for one patient."""
        schema = self.schema
        values = {}
        for name in self.factors:
            for term, v in zip(schema[name].terms(), schema[name].encode(clinical[name])):
                values[term] = v
        values["radscore"] = radscore
        terms = self.doc[model]["terms"]
        return np.array([1.0] + [values.get(t, 0.0) for t in terms[1:]])

    def probability(self, clinical: Dict[str, Any], radscore: float, model: str = "combined") -> Dict[str, Any]:
        """Probability with a Wald 95% CI from the model's covariance (the Rad-Score taken as known)."""
        if model == "radiomics":
            return {"probability": logistic(radscore), "ci95": [None, None], "linear_predictor": radscore}
        x = self.design_row(clinical, radscore, model)
        beta = np.array(self.doc[model]["coefficients"], dtype=float)
        cov = np.array(self.doc[model]["covariance"], dtype=float)
        with np.errstate(all="ignore"):
            lp, var = float(x @ beta), float(x @ cov @ x)
        if not (math.isfinite(lp) and math.isfinite(var)):
            raise InputError(f"the {model} model's coefficients give a non-finite risk for these values",
                             file="model.json", field=model)
        se = math.sqrt(max(var, 0.0))
        return {"probability": logistic(lp), "ci95": [logistic(lp - Z95 * se), logistic(lp + Z95 * se)],
                "linear_predictor": lp}

    def points(self, clinical: Dict[str, Any], radscore: float) -> Dict[str, float]:
        """Nomogram points per predictor and in total."""
        terms, coefficients = self.doc["combined"]["terms"], self.doc["combined"]["coefficients"]
        out = nomogram_points(self.doc["nomogram"], coefficients[terms.index(RADSCORE)], clinical, radscore)
        if not math.isfinite(out["total"]):
            raise InputError("the model's nomogram gives non-finite points for these values", file="model.json",
                             field="nomogram")
        return out

    def recalibrated(self, intercept: float, slope: float) -> Dict[str, Any]:
        """A new model document whose combined model is logistically recalibrated on a new cohort:
        lp' = a + b * lp (coefficients scaled by b, intercept a + b * b0; covariance scaled by b^2,
        the uncertainty of a and b itself not carried)."""
        doc = copy.deepcopy(self.doc)
        coef = np.array(doc["combined"]["coefficients"]) * slope
        coef[0] += intercept
        doc["combined"]["coefficients"] = coef.tolist()
        doc["combined"]["covariance"] = (np.array(doc["combined"]["covariance"]) * slope ** 2).tolist()
        doc["recalibration"] = {"intercept": intercept, "slope": slope,
                                "note": "logistic recalibration of the combined model on an external cohort"}
        doc.pop("sha256", None)
        doc.pop("signature", None)  # a changed model is no longer what its author signed
        return seal(doc)

    def risk_group(self, probability: float) -> str:
        t = self.doc["risk_groups"]
        if probability >= t["high"]:
            return "high"
        return "low" if probability < t["low"] else "intermediate"

    def summary(self) -> str:
        """A few lines for people: what was trained on what, and how well, validated numbers first
        (nested CV, bootstrap-corrected) and the optimistic apparent AUC labelled as such."""
        tr = self.doc["training"]
        return (f"IMNRisk model trained {self.doc['created'][:10]} on {tr['n']} patients ({tr['events']} events)"
                f"{' - SYNTHETIC phantom data, a demonstration, not a clinical model' if tr.get('synthetic') else ''}.\n"
                f"{validated_auc_text(tr)}.\n{apparent_auc_text(tr)}.\n"
                f"{self.doc['radiomics']['formula']}\nclinical factors: {', '.join(self.factors)}")


SUMMARY_MODELS = ("clinical", "radiomics", "combined")


def _auc(value: Any) -> str:
    """An AUC for people; '-' when it could not be estimated."""
    return f"{value:.3f}" if _is_number(value) else "-"


def validated_auc_text(training: Dict[str, Any]) -> str:
    """The model file's validated AUCs (nested CV mean ± SD, bootstrap-corrected), saying which are absent."""
    cv = {m: (training.get("cv") or {}).get(m) or {} for m in SUMMARY_MODELS}
    boot = {m: (training.get("bootstrap") or {}).get(m) or {} for m in SUMMARY_MODELS}
    has_cv, has_boot = any("auc_mean" in c for c in cv.values()), any("auc_corrected" in b for b in boot.values())
    if not (has_cv or has_boot):
        return "Validated AUC: none (trained without cross-validation or bootstrap)"
    parts = []
    if has_cv:
        c = cv["combined"]
        parts.append(f"nested-CV AUC ({c.get('folds', '?')}-fold x {c.get('repeats', '?')}) "
                     + ", ".join(f"{m} {_auc(cv[m].get('auc_mean'))} ± {_auc(cv[m].get('auc_sd'))}"
                                 for m in SUMMARY_MODELS))
    if has_boot:
        parts.append(f"bootstrap-corrected AUC (B = {boot['combined'].get('b', '?')}) "
                     + ", ".join(f"{m} {_auc(boot[m].get('auc_corrected'))}" for m in SUMMARY_MODELS))
    absent = "" if has_cv and has_boot else f" (no {'bootstrap' if has_cv else 'nested CV'})"
    return "Validated " + "; ".join(parts) + absent


def apparent_auc_text(training: Dict[str, Any]) -> str:
    """The apparent AUCs (on the training patients: optimistic), labelled as such."""
    app = training.get("apparent") or {}
    return ("apparent AUC (on the training patients, optimistic) "
            + ", ".join(f"{m} {_auc((app.get(m) or {}).get('auc'))}" for m in SUMMARY_MODELS))
