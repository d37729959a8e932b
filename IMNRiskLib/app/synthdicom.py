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

import logging
import tempfile
import hashlib
import shutil
from pathlib import Path
from typing import List, Sequence

import numpy as np
import SimpleITK as sitk

from IMNRiskLib.core.errors import InputError
from IMNRiskLib.core.files import atomic_path

FORMS = ("classic", "enhanced", "per-phase")
IMAGE_FOLDER = "dce_dicom"
SEG_NAME, RTSTRUCT_NAME, ENHANCED_NAME = "tumour_seg.dcm", "tumour_rtstruct.dcm", "dce_enhanced.dcm"
ROI_NAME = "Tumour"
UID_ROOT = "2.25."  # UUID-derived DICOM UIDs (ISO/IEC 9834-8)
MASK_PHASE = 1  # the masks reference the phase scored by default (imaging.DEFAULT_PHASE)


def uid(*parts) -> str:
    """A deterministic, valid DICOM UID under 2.25 (a UUID-sized integer from a hash)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:16]
    return UID_ROOT + str(int.from_bytes(digest, "big"))


def volume_image(array: np.ndarray, spacing, origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    """A SimpleITK image of a (z, y, x) array with the given spacing and origin."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def write_dicom(phases: np.ndarray, spacing, folder: Path, patient_id: str, seed: int,
                per_phase: bool = False) -> None:
    """A multi-phase MR DICOM series: one file per slice and phase, with temporal tags; or, `per_phase`,
    one series per phase (its own subfolder, Series Number and times, no temporal position), as some
    scanners write DCE."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    study, series, frame = (uid(seed, patient_id, k) for k in ("study", "series", "frame"))
    n_t, n_z = phases.shape[0], phases.shape[1]
    for t in range(n_t):
        volume = volume_image(phases[t], spacing)
        target = folder / f"phase{t + 1:02d}" if per_phase else folder
        target.mkdir(exist_ok=True)
        for z in range(n_z):
            pos = volume.TransformIndexToPhysicalPoint((0, 0, z))
            slice_ = volume[:, :, z:z + 1]  # a one-slice volume: GDCM writes its z spacing as SpacingBetweenSlices
            seconds = 8 * 3600 + t * 60
            tags = {
                "0008|0016": "1.2.840.10008.5.1.4.1.1.4", "0008|0018": uid(seed, patient_id, t, z),
                "0008|0020": "20200101", "0008|0021": "20200101", "0008|0030": "080000",
                "0008|0031": "080000", "0008|0032": f"{seconds // 3600:02d}{seconds % 3600 // 60:02d}00",
                "0008|0060": "MR", "0008|0070": "IMNRisk synthetic phantom", "0008|103e": "DCE T1 (synthetic)",
                "0010|0010": f"SYNTHETIC^{patient_id}", "0010|0020": patient_id, "0010|0040": "F",
                "0018|0050": f"{spacing[2]:.4f}", "0018|0080": "4.4", "0018|0081": "2.2", "0018|1314": "12",
                "0018|1060": f"{t * 60000.0:.1f}", "0020|000d": study, "0020|000e": series, "0020|0011": "1",
                "0020|0052": frame, "0020|0012": str(t + 1), "0020|0013": str(t * n_z + z + 1),
                "0020|0100": str(t + 1), "0020|0105": str(n_t),
                "0020|0032": "\\".join(f"{c:.4f}" for c in pos), "0020|0037": "1\\0\\0\\0\\1\\0",
                "0028|0030": f"{spacing[1]:.4f}\\{spacing[0]:.4f}",
            }
            tags.update({"0008|0008": "ORIGINAL\\PRIMARY\\OTHER",
                         "0018|0015": "BREAST", "0020|0060": "L", "0028|1050": "300", "0028|1051": "600"})
            if per_phase:
                tags.update({"0020|000e": uid(seed, patient_id, "series", t), "0020|0011": str(t + 1),
                             "0008|0031": tags["0008|0032"], "0020|0013": str(z + 1)})
                del tags["0020|0100"], tags["0020|0105"]
            for key, value in tags.items():
                slice_.SetMetaData(key, value)
            writer.SetFileName(str(target / f"t{t + 1:02d}_z{z + 1:03d}.dcm"))
            writer.Execute(slice_)


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
    import pydicom  # optional dependency (extra dicom)
    return [pydicom.dcmread(str(f)) for f in files]


def write_enhanced(files: Sequence[Path], target: Path) -> None:
    """One Legacy Converted Enhanced MR object of every frame of a classic series (same series UID, so
    masks drawn on the classic slices reference it)."""
    import pydicom  # optional dependency (extra dicom)
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
    import highdicom as hd  # optional dependency (extra dicom)
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
    import rt_utils  # optional dependency (extra dicom)
    from pydicom.valuerep import DSfloat  # optional dependency (extra dicom)
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
    return uid(str(sources[0].SeriesInstanceUID), what)
