"""Extraction settings: a pyradiomics parameter file with IMNRisk's own block (smoothing,
normalisation, orientation, IBSI variants), checked as pyradiomics checks it, and the software
versions that make a result reproducible."""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple, Union

import numpy as np

from IMNRiskLib import __version__
from IMNRiskLib.core.errors import InputError
from IMNRiskLib.core.files import Setting, check_settings, read_yaml
from IMNRiskLib.inputs import imaging

DEFAULT_PARAMS = Path(__file__).parents[1] / "params" / "dce_mri.yaml"


@dataclass
class ExtractionSettings:
    """pyradiomics parameters (as pyradiomics reads them) plus IMNRisk's own pre-processing."""

    pyradiomics: Dict[str, Any]
    smoothing_sigma_mm: float = 0.0
    min_tumour_voxels: int = imaging.MIN_TUMOUR_VOXELS
    source: str = "<dict>"
    ibsi_variants: bool = False  # add the IBSI variants of convention-dependent features (ibsi.py)
    # the anatomical orientation image and mask are put in before extraction (imaging.orient), e.g.
    # "LPS"; None: as the file stores them (plain pyradiomics; what settings without the key mean)
    orientation: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        """The settings as stored in a model file / provenance (JSON)."""
        own = {"smoothing_sigma_mm": self.smoothing_sigma_mm, "min_tumour_voxels": self.min_tumour_voxels}
        if self.ibsi_variants:  # only when on: the default settings keep their hash
            own["ibsi_variants"] = True
        if self.orientation:  # only when on: settings recorded before the key keep their hash and meaning
            own["orientation"] = self.orientation
        return {"pyradiomics": self.pyradiomics, "imnrisk": own}

    def digest(self) -> str:
        """SHA-256 of the canonical settings (what the cache and the report call the settings hash)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    @property
    def setting(self) -> Dict[str, Any]:
        return self.pyradiomics.get("setting") or {}


def settings_from_dict(data: Dict[str, Any], source: str = "<dict>") -> ExtractionSettings:
    """Split an IMNRisk/pyradiomics parameter dict and check the pyradiomics part with pyradiomics."""
    data = copy.deepcopy(data if data is not None else {})
    if not isinstance(data, dict):
        raise InputError("a parameter file is a mapping (imageType, featureClass, setting, voxelSetting, imnrisk)",
                         file=source)
    for key in data:
        if not isinstance(key, str):
            raise InputError(f"key {key!r} is not a name (keys are texts)", file=source, field=str(key))
    own = check_settings(data.pop("imnrisk", None) or {}, IMNRISK_SETTINGS, source, "the imnrisk section",
                         prefix="imnrisk: ")
    ibsi_variants = _ibsi_variants_setting(own, data, source)
    try:
        with _pykwalify_silenced():
            checked_extractor(data)  # validates with pykwalify
    except Exception as exc:  # pykwalify's SchemaError and friends
        message, where = pykwalify_problem(exc)
        raise InputError(f"not a valid pyradiomics parameter file: {message}", file=source, field=where) from None
    return ExtractionSettings(pyradiomics=data,
                              smoothing_sigma_mm=float(own.get("smoothing_sigma_mm", 0.0)),
                              min_tumour_voxels=int(own.get("min_tumour_voxels", imaging.MIN_TUMOUR_VOXELS)),
                              source=source, ibsi_variants=ibsi_variants,
                              orientation=orientation_setting(own.get("orientation"), source))


# one letter per axis, each from its own pair: L/R, P/A, S/I (DICOM's patient axes)
_AXIS_LETTERS = ("LR", "PA", "SI")


def orientation_setting(value: Any, source: str = "<dict>") -> Optional[str]:
    """`imnrisk: orientation`: a DICOM orientation code such as LPS (upper case), or None for
    none/null/false/absent (the image as stored: plain pyradiomics, and settings recorded before
    IMNRisk had the step, which were computed so)."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    code = value.strip().upper() if isinstance(value, str) else ""
    pairs = [pair for letter in code for pair in _AXIS_LETTERS if letter in pair]
    if len(code) != 3 or sorted(pairs) != sorted(_AXIS_LETTERS):
        raise InputError(f"must be three letters, one of each pair L/R, P/A, S/I (e.g. LPS), or none; "
                         f"got {value!r}", file=source, field="imnrisk: orientation")
    return code


# IMNRisk's own section of a parameter file (`imnrisk:`), checked with files.check_settings.
IMNRISK_SETTINGS = {"smoothing_sigma_mm": Setting("number", low=0, high=50),
                    "min_tumour_voxels": Setting("integer", low=1),
                    "ibsi_variants": Setting("boolean"),
                    "orientation": Setting("orientation code")}  # its own check: orientation_setting


class _pykwalify_silenced:
    """pykwalify logs its errors on stderr ('validation.invalid', '--- All found errors ---'); we
    report them ourselves, one line naming the key."""

    def __enter__(self):
        self.log = logging.getLogger("pykwalify")
        self.was = self.log.disabled
        self.log.disabled = True
        logging.getLogger("pykwalify.core").disabled = True

    def __exit__(self, *exc):
        self.log.disabled = self.was
        logging.getLogger("pykwalify.core").disabled = self.was
        return False


_PYKWALIFY_LINE = re.compile(r"^-\s*(?P<message>.*?)\.?\s+(?:Value )?[Pp]ath: '(?P<path>[^']*)'")


def pykwalify_problem(exc: Exception) -> Tuple[str, Optional[str]]:
    """pykwalify's (or pyradiomics') first complaint as (message, key path such as 'setting: binCount')."""
    for line in str(exc).splitlines():
        match = _PYKWALIFY_LINE.match(line.strip())
        if match:
            message, path = match.group("message"), [p for p in match.group("path").split("/") if p]
            undefined = re.match(r"Key '(.*)' was not defined$", message)
            if undefined:  # the key itself is the field
                return "unknown key", ": ".join(path + [undefined.group(1)])
            return message, ": ".join(path) or None
    text = str(exc).strip()
    return ((text.splitlines()[0] if text else type(exc).__name__)[:160]), None


def _ibsi_variants_setting(own: Dict[str, Any], data: Dict[str, Any], source: str) -> bool:
    """`imnrisk: ibsi_variants` (true/false); the variants need pyradiomics' mask diagnostics."""
    value = own.get("ibsi_variants", False)
    if not isinstance(value, bool):
        raise InputError("must be true or false", file=source, field="imnrisk: ibsi_variants")
    if value and (data.get("setting") or {}).get("additionalInfo") is False:
        raise InputError("must not be false with imnrisk: ibsi_variants (the variants need pyradiomics' mask "
                         "voxel count)", file=source, field="setting: additionalInfo")
    return value


def load_settings(path: Optional[Union[str, Path]] = None) -> ExtractionSettings:
    """Read a parameter YAML (IMNRisk's `dce_mri.yaml` when None)."""
    path = Path(path) if path else DEFAULT_PARAMS
    return settings_from_dict(read_yaml(path, "parameter file"), source=str(path))


def software_versions() -> Dict[str, str]:
    """Versions that change feature values (part of the cache key and of every output)."""
    import pywt  # start-up time: pywt loads only when used
    import radiomics  # start-up time: radiomics loads only when used
    import SimpleITK as sitk  # start-up time: SimpleITK loads only when used
    return {"imnrisk": __version__, "pyradiomics": str(radiomics.__version__),
            "SimpleITK": sitk.Version_VersionString(), "numpy": np.__version__,
            "PyWavelets": pywt.__version__, "python": sys.version.split()[0]}


@functools.lru_cache(maxsize=16)
def _validated_extractor(params_json: str):
    """pyradiomics' extractor for these parameters, validated once per process (pykwalify parses its
    schema YAML at every construction: ~0.05-0.1 s, twice per scored patient before this cache)."""
    from radiomics import featureextractor  # start-up time: radiomics loads only when used
    quiet_pyradiomics()
    return featureextractor.RadiomicsFeatureExtractor(json.loads(params_json))


def checked_extractor(params: Dict[str, Any]):
    """A fresh pyradiomics extractor for `params` (a copy of the cached, validated one); invalid
    parameters raise pykwalify's error as pyradiomics would."""
    try:
        # keys in the user's order: pyradiomics computes classes in the order of `featureClass`, and
        # that order is the column order of features.csv (sorted keys would reorder the columns)
        key = json.dumps(params, allow_nan=False)
    except (TypeError, ValueError):  # not JSON-able: no cache
        from radiomics import featureextractor  # start-up time: radiomics loads only when used
        quiet_pyradiomics()
        return featureextractor.RadiomicsFeatureExtractor(copy.deepcopy(params))
    extractor = copy.deepcopy(_validated_extractor(key))
    extractor._setTolerance()  # the global SimpleITK tolerance its constructor sets
    return extractor


def quiet_pyradiomics() -> None:
    """pyradiomics prints warnings (e.g. about GLCM symmetry) on its own stderr handler."""
    import radiomics  # start-up time: radiomics loads only when used
    radiomics.setVerbosity(logging.ERROR)


@contextlib.contextmanager
def one_itk_thread() -> Iterator[None]:
    """A block in which new SimpleITK filters run on one thread: pyradiomics' filters on a tumour's
    box (crops, label statistics, connected components) are small, and dispatching them to a thread
    pool cost more than they did (4% of an extraction's CPU on the phantom). Their results (bounding
    boxes, counts, per-voxel crops and filters) do not depend on the number of threads."""
    import SimpleITK as sitk  # start-up time: SimpleITK loads only when used
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
