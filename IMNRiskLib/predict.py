"""Predict: score one patient with a frozen model (only the features it uses, on the cropped
tumour region), score a cohort, and validate a frozen model externally (`imnrisk validate`)."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

import numpy as np

from . import RESEARCH_ONLY, features, imaging
from .errors import InputError
from .files import atomic_path, check_can_write, write_json
from .modelfile import ScoringModel, logistic, seal

if TYPE_CHECKING:  # pandas and scipy (evaluation) load only for cohorts: scoring one patient needs neither
    import pandas as pd


def model_settings(model: ScoringModel) -> features.ExtractionSettings:
    """The extraction settings the model was trained with."""
    s = model.doc["extraction"]
    return features.ExtractionSettings(pyradiomics=copy.deepcopy(s["pyradiomics"]),
                                       smoothing_sigma_mm=float(s["imnrisk"]["smoothing_sigma_mm"]),
                                       min_tumour_voxels=int(s["imnrisk"]["min_tumour_voxels"]), source="model.json",
                                       ibsi_variants=bool(s["imnrisk"].get("ibsi_variants", False)),
                                       # absent in models trained before the step: none, as they were computed
                                       orientation=features.orientation_setting(s["imnrisk"].get("orientation"),
                                                                                "model.json"))


# what must equal between the model's training run and this one for its feature values to be comparable
VERSION_KEYS = ("pyradiomics", "imnrisk")


def version_mismatches(model: ScoringModel, running: Optional[Dict[str, str]] = None) -> List[str]:
    """How the model's recorded extraction versions and settings differ from this installation's
    (empty when they agree): another pyradiomics gives other feature values, silently."""
    running = running or features.software_versions()
    recorded = model.doc.get("software") or {}
    problems = [f"{key} {recorded.get(key) or 'unknown'} in the model, {running.get(key)} here"
                for key in VERSION_KEYS if _plain(recorded.get(key)) != _plain(running.get(key))]
    stored = model.doc.get("extraction") or {}
    try:
        flat = {**copy.deepcopy(stored.get("pyradiomics") or {}), "imnrisk": copy.deepcopy(stored.get("imnrisk") or {})}
        understood = features.settings_from_dict(flat, source="model.json").to_dict()
    except InputError as exc:
        return problems + [f"extraction settings not readable here ({exc.message})"]
    if understood != {k: stored.get(k) for k in understood}:
        changed = sorted(k for k in understood if understood[k] != stored.get(k))
        problems.append(f"extraction settings read differently here ({', '.join(changed)})")
    return problems


def _plain(version: Any) -> str:
    """'v3.0.1' and '3.0.1' are the same release (versioneer may or may not keep the tag's v)."""
    return str(version).strip().lstrip("vV")


def check_versions(model: ScoringModel, allow: bool = False, running: Optional[Dict[str, str]] = None) -> List[str]:
    """Refuse a model extracted with other software unless allowed; the warnings when allowed."""
    problems = version_mismatches(model, running)
    if problems and not allow:
        raise InputError("model was trained with other feature-extraction software: " + "; ".join(problems)
                         + " (feature values would differ; use --allow-version-mismatch to score anyway)",
                         field="versions")
    return [f"version mismatch allowed: {p}" for p in problems]


CI_METHODS = ("wald", "bootstrap")


def score(model: ScoringModel, feature_values: Dict[str, float], clinical: Dict[str, Any],
          ci: str = "wald") -> Dict[str, Any]:
    """Rad-Score, combined probability with CI (`ci`: "wald", conditional on the Rad-Score, or
    "bootstrap", the whole pipeline's replicates), risk group, nomogram points and whether the
    patient lies inside the training ranges (`domain`), from values."""
    from . import domain, uncertainty
    rs = model.radscore(feature_values)
    combined = model.probability(clinical, rs, "combined")
    interval = {"ci95": combined["ci95"], "ci_method": uncertainty.WALD}
    if ci == "bootstrap":
        boot = uncertainty.bootstrap_ci(model.doc, model.schema, feature_values, clinical)
        interval = {"ci95": boot["ci95"], "ci_method": boot["method"], "ci95_wald": combined["ci95"]}
    return {"radscore": rs, "probability": combined["probability"], **interval,
            "domain": domain.check(model.doc, feature_values, rs, clinical),
            "risk_group": model.risk_group(combined["probability"]), "points": model.points(clinical, rs),
            "features": {f: float(feature_values[f]) for f in model.features},
            "clinical_probability": model.probability(clinical, rs, "clinical")["probability"],
            "radiomics_probability": logistic(rs),
            "risk_thresholds": {k: model.doc["risk_groups"][k] for k in ("low", "high")},
            "notice": RESEARCH_ONLY}


def predict_patient(model: ScoringModel, image: Union[str, Path], mask: Union[str, Path],
                    phase: Optional[int] = None, label: Union[int, str] = 1,
                    clinical: Optional[Dict[str, Any]] = None,
                    allow_version_mismatch: bool = False, ci: str = "wald") -> Dict[str, Any]:
    """Score one patient from image files: versions and clinical values are checked first (cheap),
    then only the model's features are computed (with ci="bootstrap", every replicate's too)."""
    from . import uncertainty
    version_warnings = check_versions(model, allow_version_mismatch)
    needed, factors = model.features, None
    if ci == "bootstrap":
        if uncertainty.block_of(model.doc) is None:
            raise InputError(uncertainty.NO_REPLICATES, field="--ci")
        needed, factors = uncertainty.needed_features(model.doc), uncertainty.needed_factors(model.doc)
    parsed = model.parse_clinical(clinical or {}, needed=factors)
    settings = model_settings(model)
    loaded = imaging.load_case(image, mask, phase, label, settings.min_tumour_voxels)
    values, _ = features.compute_features(loaded, settings, feature_names=needed)
    result = score(model, values, parsed, ci)
    result["warnings"] = version_warnings + loaded.warnings + result["domain"]["warnings"]
    result["phase"] = loaded.phase
    return result


def score_cohort(model: ScoringModel, feats: pd.DataFrame, clinical: pd.DataFrame) -> pd.DataFrame:
    """Rad-Score and the three models' probabilities for every patient of a cohort."""
    import pandas as pd
    missing = [f for f in model.features if f not in feats.columns]
    if missing:
        raise InputError(f"features table lacks {len(missing)} feature(s) the model needs, e.g. {missing[0]}",
                         field=missing[0])
    rows = {}
    for pid in feats.index:
        values = feats.loc[pid, model.features].to_dict()
        bad = [f for f, v in values.items() if not np.isfinite(float(v))]
        if bad:
            raise InputError(f"feature value is missing or not finite ({values[bad[0]]})", id=pid, field=bad[0])
        row = {k: clinical.loc[pid, k] for k in model.factors}
        if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in row.values()):
            raise InputError("a clinical factor the model needs is missing", id=pid,
                             field=next(k for k, v in row.items() if v is None or v != v))
        rs = model.radscore(values)
        rows[pid] = {"radscore": rs, "radiomics": logistic(rs),
                     "clinical": model.probability(row, rs, "clinical")["probability"],
                     "combined": model.probability(row, rs, "combined")["probability"]}
    return pd.DataFrame.from_dict(rows, orient="index")


def recalibrated(model: ScoringModel, intercept: float, slope: float) -> Dict[str, Any]:
    """A new model document whose combined model is logistically recalibrated on a new cohort:
    lp' = a + b * lp (coefficients scaled by b, intercept a + b * b0; covariance scaled by b^2,
    the uncertainty of a and b itself not carried)."""
    doc = copy.deepcopy(model.doc)
    coef = np.array(doc["combined"]["coefficients"]) * slope
    coef[0] += intercept
    doc["combined"]["coefficients"] = coef.tolist()
    doc["combined"]["covariance"] = (np.array(doc["combined"]["covariance"]) * slope ** 2).tolist()
    doc["recalibration"] = {"intercept": intercept, "slope": slope,
                            "note": "logistic recalibration of the combined model on an external cohort"}
    doc.pop("sha256", None)
    doc.pop("signature", None)  # a changed model is no longer what its author signed
    return seal(doc)


def validate_external(model_path, cohort_path, out_dir, features_path=None, jobs: int = 1, recalibrate: bool = False,
                      force: bool = False, show_bar: bool = True) -> Dict[str, Any]:
    """External validation of a frozen model: discrimination, calibration-in-the-large and slope,
    Hosmer-Lemeshow, Brier and decision curves on a new labelled cohort."""
    from . import evaluation
    from .cohort import read_cohort
    model = ScoringModel.load(model_path)
    out = Path(out_dir)
    for name in ("validation.json", "predictions.csv") + (("model_recalibrated.json",) if recalibrate else ()):
        check_can_write(out / name, force)
    schema = model.schema
    cohort = read_cohort(cohort_path, schema, need_outcome=True, need_imaging=features_path is None)
    missing_cols = [f for f in model.factors if f not in cohort.clinical_columns]
    if missing_cols:
        raise InputError(f"missing clinical column(s) the model needs: {', '.join(missing_cols)}", file=str(cohort_path))
    if features_path is None:
        run = features.extract_cohort(cohort, model_settings(model), out / ".imnrisk-cache", jobs=jobs,
                                      show_bar=show_bar, second_reader=False)  # a frozen model needs one reading
        if run.failures:
            f = run.failures[0]
            raise InputError(f"{len(run.failures)} case(s) could not be extracted, e.g. {f['reason']}",
                             file=f["file"], id=f["ID"], field=f["field"] or None)
        feats = run.features
    else:
        feats = features.read_features(features_path)
    labelled = [c.id for c in cohort.cases if c.outcome is not None and c.id in feats.index]
    absent = [c.id for c in cohort.cases if c.outcome is not None and c.id not in feats.index]
    if absent:
        raise InputError(f"no features for {len(absent)} patient(s)", file=str(features_path), id=absent[0], field="ID")
    try:
        pred = score_cohort(model, feats.loc[labelled], cohort.clinical_frame().loc[labelled])
    except InputError as exc:
        in_features = features_path is not None and exc.field in model.features
        raise exc.located(file=str(features_path if in_features else cohort_path)) from None
    y = cohort.outcome().loc[labelled].to_numpy()
    try:
        y = evaluation.check_outcome(y, schema.outcome)
    except InputError as exc:
        raise exc.located(file=str(cohort_path)) from None
    result: Dict[str, Any] = {"n": int(len(y)), "events": int(y.sum()), "model_sha256": model.doc["sha256"],
                              "models": {}, "notice": RESEARCH_ONLY}
    for m in ("clinical", "radiomics", "combined"):
        # HL df = g: a frozen model scored on patients it never saw
        result["models"][m] = evaluation.evaluate(y, pred[m].to_numpy(), probability=True, external=True)
    result["delong"] = [{"a": a, "b": b, **{k: v for k, v in evaluation.delong_test(y, pred[a], pred[b]).items()
                                             if k in ("z", "p")}}
                        for a, b in (("clinical", "radiomics"), ("clinical", "combined"), ("radiomics", "combined"))]
    cal = result["models"]["combined"]["calibration"]
    from .files import output_set
    with output_set(out, last="validation.json") as stage:  # all outputs or none
        if recalibrate and cal["intercept"] is not None:
            write_json(stage / "model_recalibrated.json", recalibrated(model, cal["intercept"], cal["slope"]))
            result["recalibrated_model"] = "model_recalibrated.json"  # a name, not a path
        result = evaluation._json_clean(result)
        with atomic_path(stage / "predictions.csv") as tmp:
            pred.assign(**{schema.outcome: y}).to_csv(tmp, index_label="ID", float_format="%.10g")
        write_json(stage / "validation.json", result)
    return result
