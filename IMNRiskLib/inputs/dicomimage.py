"""DCE images from DICOM beyond one classic series: Enhanced MR multi-frame objects and one series per phase.

An Enhanced MR (or highdicom's Legacy Converted Enhanced MR) object holds every slice of every phase as
frames; which phase and which slice a frame is comes from its functional groups (per-frame, else
shared): the Frame Content's Temporal Position Index (or the Dimension Index value that points at a
temporal attribute), else trigger or acquisition times, and the Plane Position/Orientation (Patient).
A study folder may also hold one classic series per phase: each series is a phase, ordered by its
time, then its Series Number. Either way the phase returned is the same SimpleITK volume the classic
reader gives (slices ascending along the slice normal), and the choice made is described in a note.
"""

# Why by hand with pydicom: highdicom 0.28's Image.get_volume builds one volume from all frames and
# refuses an object whose frames hold several temporal positions (a DCE object); it has no way to
# select the frames of one phase. SimpleITK/GDCM read such an object as one stack of all frames in
# storage order (the 160 x 160 x 320 volume). The geometry here is the DICOM definition:
# x along the row cosines, y along the column cosines, slices along their cross product.

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from IMNRiskLib.core.errors import InputError
from IMNRiskLib.inputs.series import TEMPORAL_TAGS, _choose_phase, _meta, _time_value, _where, check_slice_spacing

ENHANCED_MR_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR",
                           "1.2.840.10008.5.1.4.1.1.4.4": "Legacy Converted Enhanced MR"}
# Where a frame's phase may be recorded, in order of preference: the first present in every frame
# with more than one value splits the frames into phases (as imaging.TEMPORAL_TAGS for a classic series).
PHASE_KEYWORDS = ("TemporalPositionIndex", "TemporalPositionIdentifier", "NominalCardiacTriggerDelayTime",
                  "TriggerTime", "TemporalPositionTimeOffset", "FrameAcquisitionDateTime", "AcquisitionTime")
# Direction cosines and positions agree within this (as imaging.GEOMETRY_TOLERANCE).
GEOMETRY_TOLERANCE = 1e-4
# ImageType values that mark a series as computed from others (a subtraction is not a phase).
DERIVED_TYPES = ("DERIVED", "SUBTRACTION")


# --------------------------------------------------------------------------- finding an Enhanced MR object

def _sop_class(path: Path) -> str:
    """The file's SOP Class UID from its file meta header ('' without pydicom or meta)."""
    try:
        import pydicom  # optional dependency (extra dicom)
        meta = pydicom.filereader.read_file_meta_info(str(path))
    except Exception:  # noqa: BLE001 - no pydicom, or no usable meta: not an Enhanced MR we can tell
        return ""
    return str(meta.get("MediaStorageSOPClassUID", "") or "")


def _may_be_enhanced(path: Path) -> bool:
    """Whether an Enhanced MR SOP Class UID appears in the file's first 4 KiB (its file meta header).

    A quick byte search so that the folder of a classic series (hundreds of files) is not parsed twice:
    pydicom's file meta reader takes ~2 ms a file, this ~0.05 ms. The UIDs are 27 characters, so the
    classic MR Image Storage UID (25) never matches; pydicom then decides for the candidates.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return any(uid.encode() in head for uid in ENHANCED_MR_SOP_CLASSES)


def enhanced_object(path: Path, files: Optional[Sequence[Path]] = None) -> Optional[Path]:
    """The Enhanced MR file a path designates (the file, or the one such file of a folder); None when
    the input is not one. A folder mixing an Enhanced MR object with other images is refused."""
    if path.is_file():
        return path if _sop_class(path) in ENHANCED_MR_SOP_CLASSES else None
    files = list(files or [])
    if not any(_may_be_enhanced(file) for file in files):
        return None
    classes = {file: _sop_class(file) for file in files}
    enhanced = [f for f, sop in classes.items() if sop in ENHANCED_MR_SOP_CLASSES]
    if not enhanced:
        return None
    from IMNRiskLib.inputs.dicommask import is_mask_file  # the tumour's RTSTRUCT/SEG may lie beside the image
    others = [f for f in files if f not in enhanced and not is_mask_file(f)]
    if len(enhanced) > 1 or others:
        raise InputError(f"folder holds {len(enhanced)} Enhanced MR object(s) and {len(others)} other DICOM "
                         "image file(s); give the folder (or file) of one Enhanced MR object", file=str(path),
                         field="Image")
    return enhanced[0]


# --------------------------------------------------------------------------- frames of an Enhanced MR object

def _groups(ds, index: int) -> List:
    """The functional group items describing frame `index`: its per-frame item first, then the shared one."""
    items = []
    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    if per_frame is not None and index < len(per_frame):
        items.append(per_frame[index])
    shared = getattr(ds, "SharedFunctionalGroupsSequence", None)
    if shared:
        items.append(shared[0])
    return items


def _dimension_positions(ds) -> Dict[str, int]:
    """Keyword of each attribute a Dimension Index points at -> its place in DimensionIndexValues."""
    from pydicom.datadict import keyword_for_tag  # optional dependency (extra dicom)
    return {keyword_for_tag(item.DimensionIndexPointer): k
            for k, item in enumerate(getattr(ds, "DimensionIndexSequence", []) or [])
            if "DimensionIndexPointer" in item}


def frame_value(groups: Sequence, keyword: str, dimensions: Optional[Dict[str, int]] = None):
    """A frame's value of `keyword` from its functional groups (per-frame before shared; one level of
    macro sequences, as the Enhanced MR groups are built), else from the Dimension Index value that
    points at it; None when absent."""
    for group in groups:
        for element in group:
            if element.VR != "SQ" or not element.value:
                continue
            item = element.value[0]
            if keyword in item and item[keyword].value not in (None, ""):
                return item[keyword].value
    if dimensions and keyword in dimensions:
        values = frame_value(groups, "DimensionIndexValues")
        values = [] if values is None else (list(values) if hasattr(values, "__iter__") else [values])
        if dimensions[keyword] < len(values):
            return values[dimensions[keyword]]
    return None


def _floats(value, count: int, what: str, frame: int, path: Path) -> np.ndarray:
    """A numeric multi-value of a frame, refused naming the frame when missing or malformed."""
    try:
        out = np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        out = np.array([])
    if out.size != count or not np.isfinite(out).all():
        raise InputError(f"Enhanced MR frame {frame + 1} has no usable {what}", file=str(path), field="Image")
    return out


def _sort_value(keyword: str, value) -> object:
    """A phase key as a number when it is one (an AcquisitionTime, DICOM TM, in seconds), else its text."""
    number = phase_value("0008|0032" if keyword == "AcquisitionTime" else "", str(value).strip())
    return number if not math.isnan(number) else str(value).strip()


def frame_table(ds, path: Path) -> Tuple[np.ndarray, np.ndarray, np.ndarray, List[object], str]:
    """Per frame: position (mm), orientation (6 cosines), pixel spacing (row, column), phase key, and
    the keyword the phases come from ('' when all frames are one phase)."""
    n = int(getattr(ds, "NumberOfFrames", 1) or 1)
    dimensions = _dimension_positions(ds)
    groups = [_groups(ds, i) for i in range(n)]
    positions = np.array([_floats(frame_value(g, "ImagePositionPatient"), 3, "Image Position (Patient)", i, path)
                          for i, g in enumerate(groups)])
    cosines = np.array([_floats(frame_value(g, "ImageOrientationPatient"), 6, "Image Orientation (Patient)", i,
                                path) for i, g in enumerate(groups)])
    spacings = np.array([_floats(frame_value(g, "PixelSpacing"), 2, "Pixel Spacing", i, path)
                         for i, g in enumerate(groups)])
    for keyword in PHASE_KEYWORDS:
        values = [frame_value(g, keyword, dimensions) for g in groups]
        if None not in values and len({str(v).strip() for v in values}) > 1:
            return positions, cosines, spacings, [_sort_value(keyword, v) for v in values], keyword
    return positions, cosines, spacings, [0] * n, ""


def check_one_stack(cosines: np.ndarray, spacings: np.ndarray, path: Path) -> None:
    """All frames in one orientation and with one pixel spacing (one volume per phase)."""
    kinds = np.unique(np.round(cosines, 3), axis=0)
    if np.abs(cosines - cosines[0]).max() > GEOMETRY_TOLERANCE:
        raise InputError(f"Enhanced MR frames have {len(kinds)} different orientations (Image Orientation "
                         "(Patient)): not one stack of parallel slices per phase", file=str(path), field="Image")
    if np.abs(spacings - spacings[0]).max() > GEOMETRY_TOLERANCE:
        raise InputError("Enhanced MR frames have different pixel spacings: not one volume per phase",
                         file=str(path), field="Image")


def phase_frames(positions: np.ndarray, cosines: np.ndarray, keys: List[object], path: Path
                 ) -> List[List[int]]:
    """Frame indices of each phase (phases by key, ascending), slices ascending along the normal; every
    phase must hold the same evenly spaced slices (a missing frame is refused, naming the phase)."""
    normal = np.cross(cosines[0][:3], cosines[0][3:])
    along = positions @ normal
    groups: Dict[object, List[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    try:
        ordered = sorted(groups)
    except TypeError:  # numbers and text mixed: compare as text
        ordered = sorted(groups, key=str)
    phases = [sorted(groups[k], key=lambda i: along[i]) for k in ordered]
    counts = [len(p) for p in phases]
    usual = max(set(counts), key=counts.count)
    for number, count in enumerate(counts):
        if count != usual:
            raise InputError(f"Enhanced MR phase {number} has {count} frame(s) where the other phases have "
                             f"{usual}: a frame is missing or repeated", file=str(path), field="Image")
    for number, frames in enumerate(phases):
        check_slice_spacing([float(along[i]) for i in frames], path, number)
        if not np.allclose(positions[frames], positions[phases[0]], atol=1e-3):
            raise InputError(f"Enhanced MR phase {number} lies at other slice positions than phase 0",
                             file=str(path), field="Image")
    return phases


def _rescale(ds, frames: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
    """Rescale slope and intercept of each frame (Pixel Value Transformation; identity when absent)."""
    slopes, intercepts = [], []
    for index in frames:
        groups = _groups(ds, index)
        slope, intercept = frame_value(groups, "RescaleSlope"), frame_value(groups, "RescaleIntercept")
        slopes.append(float(slope) if slope is not None else float(getattr(ds, "RescaleSlope", 1) or 1))
        intercepts.append(float(intercept) if intercept is not None else float(getattr(ds, "RescaleIntercept", 0) or 0))
    return np.array(slopes), np.array(intercepts)


def _volume(ds, frames: Sequence[int], positions: np.ndarray, cosines: np.ndarray, spacing: np.ndarray,
            path: Path) -> sitk.Image:
    """The frames (ascending along the normal) as a SimpleITK volume in patient coordinates (LPS)."""
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for undecodable pixel data
        raise InputError(f"cannot decode the Enhanced MR pixel data ({type(exc).__name__}: {str(exc)[:120]})",
                         file=str(path), field="Image") from None
    pixels = pixels.reshape((-1,) + pixels.shape[-2:])
    array = pixels[list(frames)]
    slopes, intercepts = _rescale(ds, frames)
    if np.any(slopes != 1) or np.any(intercepts != 0):
        array = array.astype(np.float32) * slopes[:, None, None].astype(np.float32) \
            + intercepts[:, None, None].astype(np.float32)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    row, column = cosines[0][:3], cosines[0][3:]
    normal = np.cross(row, column)
    step = float((positions[frames[-1]] - positions[frames[0]]) @ normal) / (len(frames) - 1) \
        if len(frames) > 1 else float(getattr(ds, "SliceThickness", 1) or 1)
    image.SetSpacing((float(spacing[1]), float(spacing[0]), step))  # PixelSpacing is (row, column) spacing
    image.SetOrigin(tuple(float(v) for v in positions[frames[0]]))
    image.SetDirection(tuple(float(v) for v in np.column_stack([row, column, normal]).ravel()))
    return image


def load_enhanced_phase(path: Path, phase: Optional[int], notes: Optional[List[str]] = None
                        ) -> Tuple[sitk.Image, int, int]:
    """(one phase as a volume, its index, number of phases) of an Enhanced MR object; `notes` receives
    how the phases were found and ordered."""
    from IMNRiskLib.inputs.dicommask import _pydicom  # start-up time: loaded when this step runs
    try:
        ds = _pydicom().dcmread(str(path))
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for a damaged file
        raise InputError(f"cannot read Enhanced MR object ({type(exc).__name__}: {str(exc)[:120]})",
                         file=str(path), field="Image") from None
    positions, cosines, spacings, keys, keyword = frame_table(ds, path)
    check_one_stack(cosines, spacings, path)
    phases = phase_frames(positions, cosines, keys, path)
    chosen = _choose_phase(len(phases), phase, str(path))
    if notes is not None:
        kind = ENHANCED_MR_SOP_CLASSES.get(str(getattr(ds, "SOPClassUID", "")), "Enhanced MR")
        notes.append(f"one {kind} object ({len(keys)} frames)"
                     + (f", phases ordered by {keyword}" if keyword else ", no temporal position: one phase"))
    return _volume(ds, phases[chosen], positions, cosines, spacings[0], path), chosen, len(phases)


# --------------------------------------------------------------------------- one series per phase

def _series(headers: Sequence[Tuple[Path, sitk.ImageFileReader]]) -> Dict[str, list]:
    series: Dict[str, list] = {}
    for path, header in headers:
        series.setdefault(_meta(header, "0020|000e"), []).append((path, header))
    return series


def _name(items: Sequence[Tuple[Path, sitk.ImageFileReader]], folder: Path) -> str:
    """A series as the user can find it: its Series Number and where its files lie (no description:
    a free text may carry a name)."""
    number = _meta(items[0][1], "0020|0011") or "?"
    return f"series number {number} ({_where(folder, [p for p, _ in items])})"


def check_series(headers: Sequence[Tuple[Path, sitk.ImageFileReader]], folder: Path) -> None:
    """Several series in one folder are phases only if none is derived (a subtraction, a map) and all
    share one Frame of Reference."""
    series = _series(headers)
    if len(series) < 2:
        return
    for items in series.values():
        kinds = [v.strip().upper() for v in _meta(items[0][1], "0008|0008").split("\\")]
        derived = [k for k in DERIVED_TYPES if k in kinds]
        if derived:
            image_type = "\\".join(kinds)
            raise InputError(f"folder holds {len(series)} DICOM series and {_name(items, folder)} is "
                             f"{'/'.join(derived)} (ImageType {image_type}), not an acquired phase; "
                             "remove it from the folder (a subtraction is not a phase)", file=str(folder),
                             field="Image")
    frames = {_meta(items[0][1], "0020|0052") for items in series.values()}
    if len(frames) > 1:
        raise InputError(f"folder holds {len(series)} DICOM series on {len(frames)} Frames of Reference "
                         f"({', '.join(sorted(f or 'none' for f in frames))}): not phases of one acquisition",
                         file=str(folder), field="Image")


def phase_value(tag: str, text: str) -> float:
    """A classic header's phase key as a number: AcquisitionTime/SeriesTime are DICOM TM (HHMMSS.frac,
    as seconds); TemporalPositionIdentifier and TriggerTime (ms) are plain numbers, never times
    (TriggerTime 120000 ms is not 12:00:00)."""
    if tag in ("0008|0032", "0008|0031"):
        return _time_value(text)
    try:
        return float(text)
    except ValueError:
        return math.nan


def _series_time(items: Sequence[Tuple[Path, sitk.ImageFileReader]], tag: str) -> float:
    """Earliest time of a series' files (acquisition time varies slice to slice on some scanners)."""
    values = [_time_value(_meta(h, tag)) for _, h in items if _meta(h, tag)]
    values = [v for v in values if not math.isnan(v)]
    return min(values) if values else math.nan


def series_phase_keys(headers: Sequence[Tuple[Path, sitk.ImageFileReader]], folder: Path,
                      notes: Optional[List[str]] = None) -> Optional[List[Tuple[float, int]]]:
    """The phase key of each header when the folder holds one series per phase (None for one series):
    a TemporalPositionIdentifier or TriggerTime that differs between series (two series claiming one
    value are refused), else the series' acquisition (or series) time, then its Series Number."""
    series = _series(headers)
    if len(series) < 2:
        return None
    number = {uid: int(_meta(items[0][1], "0020|0011") or 0) if _meta(items[0][1], "0020|0011").lstrip("-").isdigit()
              else 0 for uid, items in series.items()}
    order = None
    for tag, name in TEMPORAL_TAGS[:2]:
        claims = {uid: _meta(items[0][1], tag) for uid, items in series.items()}
        if "" in claims.values() or len(set(claims.values())) == 1:
            continue  # not claimed by every series, or the same value everywhere (each series says "1")
        seen: Dict[str, str] = {}
        for uid, value in claims.items():
            if value in seen:
                raise InputError(f"two DICOM series claim the same phase ({name} {value}): "
                                 f"{_name(series[seen[value]], folder)} and {_name(series[uid], folder)}",
                                 file=str(folder), field="Image")
            seen[value] = uid
        order, how = {uid: (phase_value(tag, v), number[uid]) for uid, v in claims.items()}, name
        break
    if order is None:
        for tag, name in (("0008|0032", "AcquisitionTime"), ("0008|0031", "SeriesTime")):
            times = {uid: _series_time(items, tag) for uid, items in series.items()}
            if not any(math.isnan(t) for t in times.values()):
                order, how = {uid: (t, number[uid]) for uid, t in times.items()}, name
                break
        else:
            order, how = {uid: (0.0, number[uid]) for uid in series}, "SeriesNumber"
    if len(set(order.values())) < len(order):
        raise InputError(f"two DICOM series have the same {how} and Series Number: their phase order is "
                         "unknown", file=str(folder), field="Image")
    if notes is not None:
        notes.append(f"{len(series)} DICOM series, one per phase, ordered by {how}"
                     + (" then SeriesNumber" if how != "SeriesNumber" else ""))
    return [order[_meta(h, "0020|000e")] for _, h in headers]
