"""`imnrisk synth --dicom --dicom-form ...`: the phantom's DCE in the DICOM forms clinics export, with the
tumour as DICOM SEG and RT Structure Set beside it.

Forms: `classic` (one multi-phase MR series, a file per slice and phase), `per-phase` (one series per
phase, each in its own subfolder) and `enhanced` (one Legacy Converted Enhanced MR object of all
frames, by highdicom's converter of the classic series). The masks are written by writers no one
here wrote, from the tumour labelmap on the scored phase's slices: highdicom (SEG) and rt-utils
(RTSTRUCT, when installed; its decimal strings are rewritten to DICOM's 16 characters, which rt-utils
exceeds and dciodvfy reports).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import List, Sequence

import numpy as np

from .errors import InputError

FORMS = ("classic", "enhanced", "per-phase")
IMAGE_FOLDER = "dce_dicom"
SEG_NAME, RTSTRUCT_NAME, ENHANCED_NAME = "tumour_seg.dcm", "tumour_rtstruct.dcm", "dce_enhanced.dcm"
ROI_NAME = "Tumour"
MASK_PHASE = 1  # the masks reference the phase scored by default (imaging.DEFAULT_PHASE)


def _needs(module: str, what: str):
    """Import an optional DICOM library or refuse naming the extra that brings it."""
    try:
        return __import__(module)
    except ImportError:
        raise InputError(f"{what} needs {module}: pip install 'imnrisk[dicom]'", field="--dicom-form") from None


def check_form(form: str) -> None:
    """Refuse a form that needs a library that is missing, before anything is written."""
    if form == "enhanced":
        _needs("highdicom", "--dicom-form enhanced")


def write_case(phases: np.ndarray, mask: np.ndarray, spacing, case: Path, patient_id: str, seed: int,
               form: str) -> List[str]:
    """The case's DCE in `form` under case/dce_dicom, and its tumour as SEG and RTSTRUCT in case/;
    returns notes on what could not be written."""
    from .synth import write_dicom
    image = case / IMAGE_FOLDER
    if form == "enhanced":
        classic = case / ".dce_classic"
        write_dicom(phases, spacing, classic, patient_id, seed)
        try:
            sources = _phase_datasets(sorted(classic.glob(f"t{MASK_PHASE + 1:02d}_*.dcm")))
            write_enhanced(sorted(classic.glob("*.dcm")), image / ENHANCED_NAME)
            return write_masks(sources, classic, mask, case)
        finally:
            shutil.rmtree(classic, ignore_errors=True)
    write_dicom(phases, spacing, image, patient_id, seed, per_phase=form == "per-phase")
    folder = image / f"phase{MASK_PHASE + 1:02d}" if form == "per-phase" else image
    sources = _phase_datasets(sorted(folder.glob(f"t{MASK_PHASE + 1:02d}_*.dcm")))
    return write_masks(sources, image, mask, case)


def _phase_datasets(files: Sequence[Path]) -> list:
    """pydicom datasets of one phase's slices (ascending)."""
    import pydicom
    return [pydicom.dcmread(str(f)) for f in files]


def write_enhanced(files: Sequence[Path], target: Path) -> None:
    """One Legacy Converted Enhanced MR object of every frame of a classic series (same series UID, so
    masks drawn on the classic slices reference it)."""
    import logging
    import pydicom
    hd = _needs("highdicom", "--dicom-form enhanced")
    datasets = [pydicom.dcmread(str(f)) for f in files]
    quiet = logging.getLogger("highdicom.legacy.sop")
    level, quiet.level = quiet.level, logging.ERROR  # its notes on optional attributes are not the user's
    try:
        enhanced = hd.legacy.LegacyConvertedEnhancedMRImage(
            legacy_datasets=datasets, series_instance_uid=datasets[0].SeriesInstanceUID, series_number=1,
            sop_instance_uid=_uid(datasets, "enhanced"), instance_number=1)
    finally:
        quiet.level = level
    if "ReferencedSeriesSequence" in enhanced:
        del enhanced.ReferencedSeriesSequence  # the classic files it names are not kept (dciodvfy: an error)
    target.parent.mkdir(parents=True, exist_ok=True)
    from .files import atomic_path
    fixed_times(enhanced)
    with atomic_path(target) as tmp:
        enhanced.save_as(str(tmp), enforce_file_format=True)


def fixed_times(ds) -> None:
    """The creation dates, times and fresh UIDs writers stamp, fixed: same seed, same bytes."""
    for keyword in ("ContentDate", "InstanceCreationDate", "StructureSetDate", "SeriesDate"):
        if keyword in ds:
            setattr(ds, keyword, "20200101")
    for keyword in ("ContentTime", "InstanceCreationTime", "StructureSetTime", "SeriesTime"):
        if keyword in ds:
            setattr(ds, keyword, "090000")
    for item in ds.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = "20200101090000"
    organization = _uid([ds], "dimension-organization")
    for keyword in ("DimensionOrganizationSequence", "DimensionIndexSequence"):
        for item in ds.get(keyword, []):
            if "DimensionOrganizationUID" in item:
                item.DimensionOrganizationUID = organization


def write_masks(sources: Sequence, series_folder: Path, mask: np.ndarray, case: Path) -> List[str]:
    """The tumour (z, y, x on the sources' slices) as a highdicom SEG and an rt-utils RTSTRUCT."""
    notes = []
    try:
        import highdicom  # noqa: F401
    except ImportError:
        return ["no DICOM SEG or RTSTRUCT written: pip install 'imnrisk[dicom]'"]
    write_seg(sources, mask, case / SEG_NAME)
    try:
        import rt_utils  # noqa: F401
    except ImportError:
        notes.append("no RTSTRUCT written: rt-utils is not installed (pip install 'imnrisk[dicom-test]')")
    else:
        write_rtstruct(sources, mask, case / RTSTRUCT_NAME)
    return notes


def write_seg(sources: Sequence, mask: np.ndarray, target: Path) -> None:
    """A binary DICOM SEG of the tumour by highdicom, referencing the sources (one phase's slices)."""
    import highdicom as hd
    from .files import atomic_path
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=ROI_NAME,
        segmented_property_category=hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure"),
        segmented_property_type=hd.sr.CodedConcept("108369006", "SCT", "Neoplasm"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    seg = hd.seg.Segmentation(
        source_images=list(sources), pixel_array=mask.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[description],
        series_instance_uid=_uid(sources, "seg-series"), series_number=100,
        sop_instance_uid=_uid(sources, "seg"), instance_number=1, manufacturer="IMNRisk synthetic phantom",
        manufacturer_model_name="imnrisk synth", software_versions="imnrisk", device_serial_number="0")
    fixed_times(seg)
    with atomic_path(target) as tmp:
        seg.save_as(str(tmp))


def write_rtstruct(sources: Sequence, mask: np.ndarray, target: Path) -> None:
    """An RTSTRUCT of the tumour by rt-utils (which reads the series from a folder), its decimal
    strings then shortened to DICOM's 16 characters."""
    import tempfile
    import rt_utils
    from pydicom.valuerep import DSfloat
    from .files import atomic_path
    with tempfile.TemporaryDirectory(prefix="imnrisk-rt-") as folder:
        for k, ds in enumerate(sources):
            ds.save_as(str(Path(folder) / f"{k:04d}.dcm"))
        builder = rt_utils.RTStructBuilder.create_new(dicom_series_path=folder)
        builder.add_roi(mask=np.transpose(mask.astype(bool), (1, 2, 0)), name=ROI_NAME)
        ds = builder.ds
    for roi in ds.ROIContourSequence:
        for contour in roi.ContourSequence:
            contour.ContourData = [DSfloat(float(v), auto_format=True) for v in contour.ContourData]
    ds.SeriesInstanceUID, ds.SOPInstanceUID = _uid(sources, "rt-series"), _uid(sources, "rt")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    fixed_times(ds)
    # Type 1 and 2 attributes rt-utils leaves out (dciodvfy reports them)
    ds.FrameOfReferenceUID = sources[0].FrameOfReferenceUID
    ds.PositionReferenceIndicator = ds.AccessionNumber = ds.OperatorsName = ds.ReferringPhysicianName = ""
    with atomic_path(target) as tmp:
        ds.save_as(str(tmp), enforce_file_format=True)


def _uid(sources: Sequence, what: str) -> str:
    """A deterministic UID for a mask object of this series (same seed, same bytes)."""
    from .synth import _uid as synth_uid
    return synth_uid(str(sources[0].SeriesInstanceUID), what)
