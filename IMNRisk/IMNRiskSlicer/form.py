"""The model and what the user enters for the patient: the clinical form, the patient identifier, the
declared phase, a features CSV instead of the image (the scoring controller's form part)."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from IMNRiskLib.core.errors import InputError
from IMNRiskLib.scoring.core import SYNTHETIC_BANNER


class ClinicalForm:
    """The model file in use and every value the user enters for the patient."""

    def __init__(self, owner, pyradiomics_status: Callable[[], Dict[str, Any]]):
        self.owner = owner
        self._pyradiomics_status = pyradiomics_status
        self._pyradiomics: Optional[Dict[str, Any]] = None
        self.model = None
        self.model_path: Optional[str] = None
        self.model_error: Optional[str] = None
        self.version_problems: List[str] = []
        self.allow_mismatch = False
        self.image_is_phase: Optional[int] = None
        self.values: Dict[str, Any] = {}
        self.patient_id: Optional[str] = None
        self.features_csv: Optional[Dict[str, Any]] = None

    # ------------------------------------------------------------------ model
    def load_model(self, path: Optional[str]) -> None:
        """Use this model file: its summary, version check and a fresh clinical form."""
        from IMNRiskLib.scoring import version_mismatches
        self.model, self.model_path, self.model_error, self.version_problems = None, path or None, None, []
        self.values = {}
        if path:
            try:
                self.model = self.owner.logic.load_model(path)
                if self.pyradiomics()["ok"]:
                    self.version_problems = version_mismatches(self.model)
            except InputError as exc:
                self.model_error = str(exc)
            except Exception as exc:  # a broken file must not break the panel
                self.model_error = f"{path}: cannot use this model ({type(exc).__name__}: {exc})"

    def min_voxels(self) -> int:
        """The smallest tumour the model's extraction settings accept (the library's default without one)."""
        if self.model is not None:
            return self.model.min_tumour_voxels
        from IMNRiskLib.inputs import imaging
        return imaging.MIN_TUMOUR_VOXELS

    def pyradiomics(self) -> Dict[str, Any]:
        if self._pyradiomics is None:
            self._pyradiomics = self._pyradiomics_status()
        return self._pyradiomics

    def model_state(self) -> Optional[Dict[str, Any]]:
        """The model as a face shows it (None: no model chosen)."""
        if self.model is None and not self.model_error:
            return None
        synthetic = bool(self.model is not None and self.model.synthetic)
        return {"path": self.model_path, "summary": self.model.summary() if self.model else None,
                "synthetic": synthetic, "banner": SYNTHETIC_BANNER if synthetic else "",
                "sha256": self.model.sha256 if self.model else None, "error": self.model_error,
                "version_problems": list(self.version_problems), "version_mismatch_allowed": self.allow_mismatch}

    # ------------------------------------------------------------------ values
    def set_image_is_phase(self, phase: Optional[int]) -> None:
        self.image_is_phase = None if phase is None or phase == "" else int(phase)

    def set_clinical(self, name: str, value: Any) -> None:
        if value is None or (isinstance(value, str) and not value.strip()):
            self.values.pop(name, None)
        else:
            self.values[name] = value

    def set_patient_id(self, text: Optional[str]) -> None:
        text = " ".join(str(text).split()) if text is not None else ""
        self.patient_id = text[:64] or None

    def forget_patient(self) -> None:
        self.patient_id = None
        self.values = {}

    def fields(self) -> List[Dict[str, Any]]:
        """One field per clinical factor the model needs, with its status from the scoring core
        ("not entered", "invalid" or "valid", and a note when outside the training range)."""
        if self.model is None:
            return []
        from IMNRiskLib.scoring import field_status
        schema = self.model.schema
        fields = []
        for name in self.model.factors:
            var = schema[name]
            value = self.values.get(name)
            status, message = field_status(self.model, name, value)
            fields.append({"name": name, "title": var.title, "type": var.type, "levels": list(var.levels or []),
                           "min": var.min, "max": var.max, "unit": var.unit,
                           "value": value if value is None or isinstance(value, (int, float, str)) else str(value),
                           "status": status, "message": message})
        return fields

    # ------------------------------------------------------------------ features CSV (no pyradiomics needed)
    def load_features_csv(self, path: Optional[str]) -> Optional[str]:
        """Score from one row of feature values (e.g. computed elsewhere) instead of the image;
        returns the reason it was refused (None: taken, or cleared)."""
        self.features_csv = None
        if not path:
            return None
        try:
            from IMNRiskLib.radiomics.features import read_features
            frame = read_features(path)
            if len(frame) != 1:
                raise InputError(f"{len(frame)} rows: one patient's feature values expected", file=str(path))
            if self.model is not None:
                missing = [f for f in self.model.features if f not in frame.columns]
                if missing:
                    raise InputError(f"lacks {len(missing)} feature(s) the model needs", file=str(path),
                                     field=missing[0])
            row = frame.iloc[0]
            self.features_csv = {"path": str(path), "id": str(frame.index[0]),
                                 "values": {k: float(v) for k, v in row.items()}}
        except InputError as exc:
            return str(exc)
        return None
