"""Whether this installation computes the model's features as its training run did: the extraction
settings the model records, and the software versions that change feature values."""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional

from IMNRiskLib.radiomics.settings import ExtractionSettings, orientation_setting, settings_from_dict, software_versions
from IMNRiskLib.core.errors import InputError
from IMNRiskLib.scoring.modelfile import ScoringModel

# what must equal between the model's training run and this one for its feature values to be comparable
VERSION_KEYS = ("pyradiomics", "imnrisk")


def model_settings(model: ScoringModel) -> ExtractionSettings:
    """The extraction settings the model was trained with."""
    s = model.extraction
    return ExtractionSettings(pyradiomics=copy.deepcopy(s["pyradiomics"]),
                                       smoothing_sigma_mm=float(s["imnrisk"]["smoothing_sigma_mm"]),
                                       min_tumour_voxels=int(s["imnrisk"]["min_tumour_voxels"]), source="model.json",
                                       ibsi_variants=bool(s["imnrisk"].get("ibsi_variants", False)),
                                       # absent in models trained before the step: none, as they were computed
                                       orientation=orientation_setting(s["imnrisk"].get("orientation"),
                                                                                "model.json"))


def version_mismatches(model: ScoringModel, running: Optional[Dict[str, str]] = None) -> List[str]:
    """How the model's recorded extraction versions and settings differ from this installation's
    (empty when they agree): another pyradiomics gives other feature values, silently."""
    running = running or software_versions()
    recorded = model.software
    problems = [f"{key} {recorded.get(key) or 'unknown'} in the model, {running.get(key)} here"
                for key in VERSION_KEYS if _plain(recorded.get(key)) != _plain(running.get(key))]
    stored = model.extraction
    try:
        flat = {**copy.deepcopy(stored.get("pyradiomics") or {}), "imnrisk": copy.deepcopy(stored.get("imnrisk") or {})}
        understood = settings_from_dict(flat, source="model.json").to_dict()
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
