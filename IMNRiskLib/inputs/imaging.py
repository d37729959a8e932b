"""Imaging: load a DCE-MRI phase and its tumour mask, check them, and prepare them for radiomics.

Images: NRRD, NIfTI, MHA/MHD files; a DICOM series folder; multi-phase DCE as one 4-D file
(a 4th axis or Slicer's "list" NRRD kind), a folder of per-phase files, or a DICOM folder with
several temporal positions. Masks: labelmaps (any of those formats), Slicer `.seg.nrrd`, and DICOM
RTSTRUCT and SEG (IMNRiskLib.inputs.dicommask). Before extraction, image and mask can be put in one
anatomical orientation (`orient`).
Everything here works on SimpleITK images and raises InputError for problems the user can fix.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk

from IMNRiskLib.core.errors import InputError
from IMNRiskLib.core.files import check_input_file
from IMNRiskLib.inputs.gzipnrrd import read_gzip_nrrd
from IMNRiskLib.inputs.integrity import check_file_complete
from IMNRiskLib.inputs.series import (DEFAULT_PHASE, TEMPORAL_TAGS, _choose_phase, _slice_position, _time_value,  # noqa: F401
                                      check_one_acquisition, check_slice_spacing)  # DEFAULT_PHASE: part of imaging's API
from IMNRiskLib.inputs.dicomfiles import is_dicom_file
from IMNRiskLib.inputs.dicomfiles import dicom_files as _dicom_files  # the short name the readers use

IMAGE_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd", ".img", ".hdr")
# Geometry tolerance for "same grid" (mm and direction cosines), as pyradiomics' geometryTolerance.
GEOMETRY_TOLERANCE = 1e-4
# Texture matrices on a handful of voxels are noise: a 4x4x4 block (64 voxels) is the least we
# accept. It also keeps wavelet level-1 sub-bands (half resolution) at 8 voxels or more.
MIN_TUMOUR_VOXELS = 64
MIN_TUMOUR_EXTENT = 2  # voxels along each axis: pyradiomics' minimumROIDimensions for 3-D texture
# A label map holds a few integer labels; an intensity image passed as a mask has hundreds of values.
MAX_MASK_LABELS = 255


_INTEGER_PIXELS = {sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16, sitk.sitkUInt32, sitk.sitkInt32,
                   sitk.sitkUInt64, sitk.sitkInt64}


@dataclass
class LoadedCase:
    """A 3-D image (one phase) and a binary mask (1 = tumour) on the same grid, plus notes."""

    image: sitk.Image
    mask: Optional[sitk.Image]  # None: the image alone (load_image_phase), before `with_mask`
    phase: int
    n_phases: int
    warnings: List[str] = field(default_factory=list)
    phase_note: str = ""  # how many phases, how ordered, which was scored (said by the CLI and provenance)
    # stored as 32-bit floats: pyradiomics filters such an image in float32 (an integer or float64
    # one in float64), and so does `prepare` without normalisation and smoothing
    stored_float32: bool = False
    # stored as integers: its float32 voxels are whole numbers (normalisation sums them exactly)
    stored_integer: bool = False


# --------------------------------------------------------------------------- reading

def _natural_key(path: Path) -> list:
    """Sort phase_2 before phase_10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


@contextlib.contextmanager
def _checked_meanwhile(path: Path, what: str, check: bool = True):
    """check_file_complete in a thread while the body reads the file: zlib and ITK leave the GIL, so
    on two cores decoding the stream twice costs no more wall time than once. Its refusal wins over
    the body's own error, and the body's result is only used when the file checked whole."""
    if not check:
        yield
        return
    from concurrent.futures import ThreadPoolExecutor  # start-up time: concurrent loads only when used
    with ThreadPoolExecutor(1) as pool:
        verdict = pool.submit(check_file_complete, path, what)
        try:
            yield
        except BaseException:
            verdict.result()
            raise
        verdict.result()


def _read(path: Path, what: str = "image", checked: bool = False) -> sitk.Image:
    """Read one image file; any reader failure becomes a clear InputError."""
    if not checked:
        check_input_file(path, f"{what} file")
        image = read_gzip_nrrd(path)  # a gzip NRRD: one inflation reads and checks it
        if image is not None:
            return image
    try:
        with _checked_meanwhile(path, what, not checked):
            return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()
        detail = next((line.strip() for line in reason if "Could not" in line or "Unable" in line), "")
        raise InputError(f"cannot read {what}: corrupt or unsupported file"
                         + (f" ({detail[:120]})" if detail else ""), file=str(path)) from None


def _dicom_header(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.LoadPrivateTagsOff()
    reader.ReadImageInformation()
    return reader


def dicom_phases(folder: Path, notes: Optional[List[str]] = None) -> List[List[Path]]:
    """Group a DICOM folder's files into phases ordered by time, slices ordered in space.

    One series per phase (IMNRiskLib.inputs.dicomimage) is ordered by its time, then Series Number; within
    one series, phases come from TemporalPositionIdentifier, else TriggerTime, else AcquisitionTime.
    `notes` receives how the phases were ordered.
    """
    from IMNRiskLib.inputs.dicommask import is_mask_file  # a study folder may hold the tumour's RTSTRUCT/SEG beside the image
    # start-up time: loaded when this step runs
    from IMNRiskLib.inputs.dicomimage import check_series, phase_value, series_phase_keys
    files = [p for p in _dicom_files(folder) if not is_mask_file(p)]
    if not files:
        raise InputError("no DICOM files in folder", file=str(folder))
    headers = [(p, _dicom_header(p)) for p in files]
    check_series(headers, folder)
    check_one_acquisition(headers, folder)
    keys = series_phase_keys(headers, folder, notes)
    for tag, name in TEMPORAL_TAGS if keys is None else ():
        values = [h.GetMetaData(tag) if h.HasMetaDataKey(tag) else None for _, h in headers]
        if None not in values and len(set(values)) > 1:
            keys = [phase_value(tag, v) for v in values]
            if notes is not None:
                notes.append(f"one DICOM series, phases ordered by {name}")
            break
    else:
        keys = keys or [0] * len(headers)
    groups = {}
    for key, (path, header) in zip(keys, headers):
        groups.setdefault(key, []).append((_slice_position(header), path))
    phases = [[p for _, p in sorted(groups[k])] for k in sorted(groups)]
    sizes = {len(p) for p in phases}
    if len(sizes) > 1:
        raise InputError(f"DICOM phases have different slice counts {sorted(sizes)}", file=str(folder))
    if all(h.HasMetaDataKey("0020|0032") for _, h in headers):
        for index, k in enumerate(sorted(groups)):
            check_slice_spacing([position for position, _ in sorted(groups[k])], folder, index)
    return phases


def _read_dicom_series(files: Sequence[Path], folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in files])
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"cannot read DICOM series ({str(exc).strip().splitlines()[-1][:120]})",
                         file=str(folder)) from None


def _phase_files(folder: Path) -> List[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)
             and not p.name.lower().endswith(".hdr")]
    return sorted(files, key=_natural_key)


def count_phases(image: sitk.Image) -> int:
    """Number of phases in a loaded image: 4th axis, vector components, or 1."""
    if image.GetDimension() == 4:
        return image.GetSize()[3]
    return image.GetNumberOfComponentsPerPixel()


def _phase_of(image: sitk.Image, phase: int) -> sitk.Image:
    """One 3-D phase of a 4-D or vector image."""
    if image.GetDimension() == 4:
        size = list(image.GetSize())
        return sitk.Extract(image, size[:3] + [0], [0, 0, 0, phase])
    if image.GetNumberOfComponentsPerPixel() > 1:
        return sitk.VectorIndexSelectionCast(image, phase)
    return image


def _read_file_phase(path: Path, phase: Optional[int]) -> Tuple[sitk.Image, int, int]:
    """Read a file; for a 4-D file only the chosen phase is read from disk (streamed)."""
    check_input_file(path, "image file")
    image = read_gzip_nrrd(path)  # a gzip 3-D NRRD: one inflation reads and checks it
    if image is not None:
        return image, _choose_phase(1, phase, str(path)), 1
    with _checked_meanwhile(path, "image"):
        return _read_checked_phase(path, phase)


def _read_checked_phase(path: Path, phase: Optional[int]) -> Tuple[sitk.Image, int, int]:
    """_read_file_phase's reading (the file's completeness is checked meanwhile)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        _read(path, checked=True)  # raises the clear error
    if reader.GetDimension() == 4:
        size = list(reader.GetSize())
        chosen = _choose_phase(size[3], phase, str(path))
        reader.SetExtractIndex([0, 0, 0, chosen])
        reader.SetExtractSize(size[:3] + [0])
        try:
            return reader.Execute(), chosen, size[3]
        except RuntimeError:
            image = _read(path, checked=True)
            return _phase_of(image, chosen), chosen, size[3]
    image = _read(path, checked=True)
    n = count_phases(image)
    chosen = _choose_phase(n, phase, str(path))
    return _phase_of(image, chosen), chosen, n


def load_phase(path: Union[str, Path], phase: Optional[int] = None, notes: Optional[List[str]] = None
               ) -> Tuple[sitk.Image, int, int]:
    """Load one 3-D phase of an image file or folder; return (image as float32, phase index, number of
    phases). `notes` receives how a DICOM input's phases were found and ordered."""
    image, chosen, n = _load_stored_phase(path, phase, notes)
    return sitk.Cast(image, sitk.sitkFloat32), chosen, n


def _load_stored_phase(path: Union[str, Path], phase: Optional[int] = None,
                       notes: Optional[List[str]] = None) -> Tuple[sitk.Image, int, int]:
    """load_phase's image in the pixel type it is stored in."""
    path = Path(path)
    # start-up time: loaded when this step runs
    from IMNRiskLib.inputs.dicomimage import enhanced_object, load_enhanced_phase
    dicom_files = _dicom_files(path) if path.is_dir() else []
    enhanced = enhanced_object(path, dicom_files) if dicom_files or is_dicom_file(path) else None
    if enhanced is not None:
        image, chosen, n = load_enhanced_phase(enhanced, phase, notes)
    elif path.is_dir():
        if dicom_files:
            phases = dicom_phases(path, notes)
            chosen = _choose_phase(len(phases), phase, str(path))
            image, n = _read_dicom_series(phases[chosen], path), len(phases)
        else:
            files = _phase_files(path)
            if not files:
                raise InputError("folder holds neither DICOM nor image files", file=str(path))
            chosen = _choose_phase(len(files), phase, str(path))
            image, n = _read(files[chosen]), len(files)
    else:
        image, chosen, n = _read_file_phase(path, phase)
    check_image(image, str(path))
    return image, chosen, n


def check_image(image: sitk.Image, source: str) -> None:
    """A 3-D scalar volume with more than one slice and only finite voxels."""
    if image.GetDimension() < 3 or min(image.GetSize()) < 2:
        raise InputError(f"image is 2-D (size {'x'.join(map(str, image.GetSize()))}); a 3-D volume "
                         "with several slices is needed", file=source)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("image has several components per voxel", file=source)
    array = sitk.GetArrayViewFromImage(image)
    if array.dtype.kind == "f":
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise InputError(f"image has {bad} NaN/Inf voxel(s)", file=source)


# --------------------------------------------------------------------------- masks

def _segment_table(mask: sitk.Image) -> List[dict]:
    """Segments described in a Slicer .seg.nrrd header (ID, name, label value, layer)."""
    segments = []
    i = 0
    while mask.HasMetaDataKey(f"Segment{i}_ID"):
        def meta(key, default=""):
            k = f"Segment{i}_{key}"
            return mask.GetMetaData(k) if mask.HasMetaDataKey(k) else default
        segments.append({"id": meta("ID"), "name": meta("Name"),
                         "value": int(meta("LabelValue", "1") or 1), "layer": int(meta("Layer", "0") or 0)})
        i += 1
    return segments


def check_label_map(mask: sitk.Image, source: str, max_labels: int = MAX_MASK_LABELS) -> None:
    """A mask must be a label map: integer values (or exactly integral floats), few distinct ones.

    An intensity image given as the mask (e.g. the image itself) would otherwise be scored.
    """
    array = sitk.GetArrayViewFromImage(mask)
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            raise InputError(f"mask is not a label map: it has {int(array.size - finite.sum())} NaN/Inf "
                             "voxel(s)", file=source, field="Mask")
        fractional = array != np.round(array)
        if fractional.any():
            example = float(array[fractional].flat[0])
            raise InputError(f"mask is not a label map: {int(fractional.sum())} voxel(s) are not whole numbers "
                             f"(e.g. {example:g}); is it an intensity image?", file=source, field="Mask")
    elif array.dtype.kind not in "iub":
        raise InputError(f"mask is not a label map (voxel type {array.dtype})", file=source, field="Mask")
    if array.dtype.itemsize > 1 or array.dtype.kind == "f":
        lo, hi = float(array.min()), float(array.max())
        if hi - lo < 1 << 16:  # a counting pass slice by slice instead of a sort of the whole volume
            counts = np.zeros(int(hi - lo) + 1, dtype=np.int64)
            for plane in array.reshape(array.shape[0], -1) if array.ndim > 1 else [array]:
                counts += np.bincount((plane - lo).astype(np.int64), minlength=counts.size)
            distinct = int(np.count_nonzero(counts))
        else:
            distinct = int(np.unique(array).size)
        if distinct > max_labels + 1:
            raise InputError(f"mask is not a label map: it holds {distinct} distinct values between {lo:g} and "
                             f"{hi:g} (a label map has at most {max_labels} labels besides 0); "
                             "is it an intensity image?", file=source, field="Mask")


def select_label(mask: sitk.Image, label: Union[int, str], source: str) -> sitk.Image:
    """Binary mask (UInt8, 1 = tumour) of one label value or one named segment."""
    check_label_map(mask, source)
    segments = _segment_table(mask)
    layer = 0
    if isinstance(label, str):
        match = [s for s in segments if label in (s["name"], s["id"])]
        if not match:
            names = ", ".join(s["name"] for s in segments) or "none (not a .seg.nrrd)"
            raise InputError(f"segment '{label}' not found; segments: {names}", file=source, field="Label")
        value, layer = match[0]["value"], match[0]["layer"]
    else:
        value = label
        layered = [s for s in segments if s["value"] == label]
        if len(layered) == 1:
            layer = layered[0]["layer"]
    if mask.GetNumberOfComponentsPerPixel() > 1:
        mask = sitk.VectorIndexSelectionCast(mask, layer)
    if mask.GetDimension() == 4:
        mask = _phase_of(mask, layer)
    array = sitk.GetArrayViewFromImage(mask)
    binary = sitk.GetImageFromArray((array == value).astype(np.uint8))
    binary.CopyInformation(mask)
    intensity_like = _looks_like_intensities(array)
    if not binary_count(binary):
        present = np.unique(array)
        present = [int(v) for v in present[present != 0][:20]]
        if not present:
            raise InputError("mask is empty (no labelled voxel)", file=source, field="Mask")
        if intensity_like:
            raise InputError(f"looks like an intensity image, not a segmentation ({intensity_like})", file=source,
                             field="Mask")
        raise InputError(f"label {value} not present in mask (labels found: "
                         f"{', '.join(map(str, present))})", file=source, field="Label")
    check_one_region(binary, value, source, intensity_like)
    return binary


INTENSITY_LIKE_VALUES = 64     # more distinct values than this, nearly every integer between them: an image
MAX_PIECES, MIN_LARGEST_SHARE = 10, 0.5   # a label in more pieces, the largest under half of it: not one tumour


def _looks_like_intensities(array: np.ndarray) -> str:
    """Why an integer mask looks like an intensity image ('' when it does not): many distinct values
    covering nearly every integer of their range, as grey levels do and label maps do not."""
    values = np.unique(array[array != 0]) if array.size else np.array([])
    if values.size <= INTENSITY_LIKE_VALUES:
        return ""
    span = float(values[-1] - values[0]) + 1
    if values.size < 0.9 * span:
        return ""
    return f"{values.size} distinct values covering {values[0]:g} to {values[-1]:g}"


def check_one_region(binary: sitk.Image, value: Union[int, str], source: str, intensity_like: str = "") -> None:
    """Refuse a label whose voxels are many scattered pieces (the grey level of an intensity image,
    a speckled threshold): a tumour is one region, or a few."""
    lo, hi = _bounding_box(binary)
    box = sitk.RegionOfInterest(binary, [h - l + 1 for l, h in zip(lo, hi)], list(lo))
    pieces = sitk.RelabelComponent(sitk.ConnectedComponent(box), sortByObjectSize=True)
    counts = np.bincount(sitk.GetArrayViewFromImage(pieces).ravel())[1:]
    if len(counts) > MAX_PIECES and counts[0] < MIN_LARGEST_SHARE * counts.sum():
        if intensity_like:
            raise InputError(f"looks like an intensity image, not a segmentation ({intensity_like}; label {value} "
                             f"is {len(counts)} disconnected pieces)", file=source, field="Mask")
        raise InputError(f"label {value} is {len(counts)} disconnected pieces, the largest {counts[0]} of its "
                         f"{counts.sum()} voxels: not one tumour (keep the tumour's own region, e.g. with the "
                         "Islands effect)", file=source, field="Mask")


def binary_count(mask: sitk.Image) -> int:
    """Number of foreground voxels."""
    return int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = GEOMETRY_TOLERANCE) -> bool:
    """Identical size, and origin/spacing/direction within tolerance."""
    return (a.GetSize()[:3] == b.GetSize()[:3]
            and np.allclose(a.GetOrigin()[:3], b.GetOrigin()[:3], atol=tol, rtol=0)
            and np.allclose(a.GetSpacing()[:3], b.GetSpacing()[:3], atol=tol, rtol=0)
            and np.allclose(np.array(a.GetDirection())[:9] if a.GetDimension() == 3 else 0,
                            np.array(b.GetDirection())[:9] if b.GetDimension() == 3 else 0, atol=tol))


def _physical_box(image: sitk.Image, index_lo, index_hi) -> Tuple[np.ndarray, np.ndarray]:
    """Axis-aligned physical bounding box of an index box (corners transformed)."""
    corners = []
    for cx in (index_lo[0] - 0.5, index_hi[0] + 0.5):
        for cy in (index_lo[1] - 0.5, index_hi[1] + 0.5):
            for cz in (index_lo[2] - 0.5, index_hi[2] + 0.5):
                corners.append(image.TransformContinuousIndexToPhysicalPoint((cx, cy, cz)))
    corners = np.array(corners)
    return corners.min(axis=0), corners.max(axis=0)


def align_mask(mask: sitk.Image, image: sitk.Image, source: str, warnings: List[str]) -> sitk.Image:
    """Put the mask on the image's grid: same grid passes; an overlapping grid is resampled
    nearest-neighbour (with a warning); a mask outside the image is an error."""
    if same_grid(mask, image):
        out = sitk.Image(mask)
        out.CopyInformation(image)  # remove sub-tolerance differences pyradiomics would reject
        return out
    lo, hi = _bounding_box(mask)
    mask_lo, mask_hi = _physical_box(mask, lo, hi)
    img_lo, img_hi = _physical_box(image, (0, 0, 0), [s - 1 for s in image.GetSize()])
    if np.any(mask_hi < img_lo) or np.any(mask_lo > img_hi):
        raise InputError("mask lies outside the image (no overlap in physical space)",
                         file=source, field="Mask")
    resampled = sitk.Resample(mask, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    before, after = binary_count(mask), binary_count(resampled)
    if after == 0:
        raise InputError("mask lies outside the image (nothing left after resampling to the image grid)",
                         file=source, field="Mask")
    warnings.append(f"mask grid differs from the image grid; resampled nearest-neighbour "
                    f"({before} -> {after} voxels)")
    return resampled


def _bounding_box(mask: sitk.Image) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Index bounding box (x, y, z order) of the foreground, inclusive."""
    array = sitk.GetArrayViewFromImage(mask)
    if array.ndim == 3:  # slices with foreground first, then rows and columns within them: a few % of the volume
        z = np.flatnonzero(array.any(axis=(1, 2)))
        if len(z):
            slab = array[z[0]:z[-1] + 1]
            y, x = np.flatnonzero(slab.any(axis=(0, 2))), np.flatnonzero(slab.any(axis=(0, 1)))
            return (int(x[0]), int(y[0]), int(z[0])), (int(x[-1]), int(y[-1]), int(z[-1]))
    nz = np.nonzero(array)
    lo = tuple(int(a.min()) for a in reversed(nz))
    hi = tuple(int(a.max()) for a in reversed(nz))
    return lo, hi


def check_tumour_size(mask: sitk.Image, source: str, min_voxels: int = MIN_TUMOUR_VOXELS) -> None:
    """Refuse tumours too small for texture features (stating the minimum)."""
    count = binary_count(mask)
    total = int(np.prod(mask.GetSize()))
    if count == total:
        raise InputError(f"the mask covers the whole image (all {total} voxels are tumour): a tumour contour needs "
                         "background around it (an image given as the mask, or the wrong label?)",
                         file=source, field="Mask")
    lo, hi = _bounding_box(mask)
    extent = [h - l + 1 for l, h in zip(lo, hi)]
    if count < min_voxels or min(extent) < MIN_TUMOUR_EXTENT:
        raise InputError(f"tumour too small for texture features: {count} voxel(s), extent "
                         f"{'x'.join(map(str, extent))}; the minimum is {min_voxels} voxels and "
                         f"{MIN_TUMOUR_EXTENT} voxels along each axis", file=source, field="Mask")


def load_mask(path: Union[str, Path], label: Union[int, str], image: sitk.Image,
              warnings: List[str], min_voxels: int = MIN_TUMOUR_VOXELS,
              image_path: Optional[Union[str, Path]] = None) -> sitk.Image:
    """Read a labelmap, .seg.nrrd, DICOM SEG or RTSTRUCT, select the label or segment/ROI, put it on the
    image grid and check its size. A DICOM mask must reference the image at `image_path` (when DICOM)."""
    path = Path(path)
    from IMNRiskLib.inputs import dicommask  # an RTSTRUCT/SEG file, or a folder holding one, by SOP Class (not extension)
    dicom_mask = dicommask.find_mask_object(path)
    if dicom_mask is not None:
        aligned = dicommask.load_dicom_mask(dicom_mask, label, image, image_path, warnings)
        check_tumour_size(aligned, str(path), min_voxels)
        return aligned
    if path.is_dir():
        if not _dicom_files(path):
            raise InputError("mask folder holds no DICOM files", file=str(path))
        phases = dicom_phases(path)  # one acquisition, evenly spaced slices
        if len(phases) != 1:
            raise InputError(f"mask folder holds {len(phases)} DICOM volumes; a mask is one", file=str(path),
                             field="Mask")
        raw = _read_dicom_series(phases[0], path)
    else:
        raw = _read(path, "mask")
    binary = select_label(raw, label, str(path))
    if binary.GetDimension() != 3:
        raise InputError("mask is not 3-D", file=str(path), field="Mask")
    aligned = align_mask(binary, image, str(path), warnings)
    check_tumour_size(aligned, str(path), min_voxels)
    return aligned


def load_case(image_path: Union[str, Path], mask_path: Union[str, Path], phase: Optional[int] = None,
              label: Union[int, str] = 1, min_voxels: int = MIN_TUMOUR_VOXELS) -> LoadedCase:
    """Load the chosen phase and its tumour mask, checked and on one grid."""
    return with_mask(load_image_phase(image_path, phase), mask_path, label, min_voxels, image_path)


def load_image_phase(image_path: Union[str, Path], phase: Optional[int] = None) -> LoadedCase:
    """The chosen phase, checked, as a LoadedCase without its mask (mask None): what the two readers
    of a case share (`with_mask` gives each its own)."""
    notes: List[str] = []
    stored, chosen, n = _load_stored_phase(image_path, phase, notes)
    return LoadedCase(image=sitk.Cast(stored, sitk.sitkFloat32), mask=None, phase=chosen, n_phases=n,
                      phase_note=phase_note(n, chosen, phase, notes),
                      stored_float32=stored.GetPixelID() == sitk.sitkFloat32,
                      stored_integer=stored.GetPixelID() in _INTEGER_PIXELS)


def with_mask(image: LoadedCase, mask_path: Union[str, Path], label: Union[int, str] = 1,
              min_voxels: int = MIN_TUMOUR_VOXELS, image_path: Optional[Union[str, Path]] = None) -> LoadedCase:
    """The loaded image (`load_image_phase`) with a tumour mask read, checked and put on its grid."""
    warnings: List[str] = []
    mask = load_mask(mask_path, label, image.image, warnings, min_voxels, image_path=image_path)
    return replace(image, mask=mask, warnings=warnings)


def phase_note(n_phases: int, chosen: int, requested: Optional[int], notes: Sequence[str]) -> str:
    """One sentence saying how many phases the image has, how they were ordered, which one is scored
    ('' for a single-phase image that needed no choice)."""
    how = f" ({'; '.join(notes)})" if notes else ""
    if n_phases == 1:
        return f"1 phase{how}" if how else ""
    why = "as requested" if requested is not None else "the default: the second, peak-enhancement phase"
    return f"{n_phases} phases{how}; phase {chosen} (0-based) scored, {why}"


# --------------------------------------------------------------------------- preparation

def crop_to_mask(image: sitk.Image, mask: sitk.Image, pad_mm: float, pad_voxels: int = 0,
                 periodic: bool = False) -> Tuple[sitk.Image, sitk.Image]:
    """Crop image and mask to the tumour's bounding box plus a margin (mm and voxels); with
    `periodic` (a wavelet follows), an axis whose margin reaches an edge is kept whole.

    Filtering a cropped region gives the same values inside the tumour as filtering the whole
    volume when the margin covers the filter's support, at a fraction of the time and memory.
    """
    from IMNRiskLib.inputs.cropping import crop_box  # start-up time: loaded when this step runs
    lo, hi = _bounding_box(mask)
    start, extent = crop_box(mask, lo, hi, pad_mm, pad_voxels, periodic)
    return (sitk.RegionOfInterest(image, extent, start), sitk.RegionOfInterest(mask, extent, start))


def smooth(image: sitk.Image, sigma_mm: float) -> sitk.Image:
    """Gaussian smoothing with sigma in millimetres (0 = off).

    A sampled (discrete) kernel rather than the recursive filter: with 2-4 mm slices a 1 mm sigma
    is under one voxel along z, where the recursive approximation is poor.
    """
    if sigma_mm <= 0:
        return image
    return sitk.DiscreteGaussian(image, variance=float(sigma_mm) ** 2, maximumKernelWidth=64,
                                 maximumError=0.001, useImageSpacing=True)


def orientation_of(image: sitk.Image) -> str:
    """The image's axes as DICOM letters (e.g. LPS: index ascending towards patient left, posterior,
    superior), each axis named by the nearest patient axis."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


def orient(image: sitk.Image, code: Optional[str]) -> sitk.Image:
    """The image with its axes permuted and flipped so that they run as `code` says (None: as stored).

    Wavelet and texture features depend on the order of the voxel array, so the same anatomy
    stored with descending slices or swapped axes would give other values. SimpleITK's DICOMOrient
    moves voxels only (no interpolation) and keeps every voxel's physical position. An oblique
    image's axes go to the nearest patient axes: its direction stays oblique (not resampled).
    An image already in that orientation is returned as it is (same object, same bytes).
    """
    if not code or orientation_of(image) == code:
        return image
    return sitk.DICOMOrient(image, code)


def prepare(case: LoadedCase, sigma_mm: float, normalize: Optional[dict], pad_voxels: Optional[int],
            orientation: Optional[str] = None, pad_mm: Optional[float] = None,
            periodic: bool = True) -> Tuple[sitk.Image, sitk.Image]:
    """Put image and mask in one orientation (the same permutation for both: they share a grid),
    crop around the tumour (pad_voxels None: not cropped), in float64, normalise with the whole
    phase's statistics (pyradiomics' normalisation, as pyradiomics would) and smooth. The returned
    pair goes to pyradiomics with normalize off (cropping.py says why the margin makes the crop exact)."""
    image, mask = orient(case.image, orientation), orient(case.mask, orientation)
    whole = image
    if pad_voxels is not None:
        pad_mm = 4.0 * sigma_mm if pad_mm is None else pad_mm
        image, mask = crop_to_mask(image, mask, pad_mm=pad_mm, pad_voxels=pad_voxels, periodic=periodic)
    if normalize is not None:
        from IMNRiskLib.inputs.cropping import normalized_region  # start-up time: loaded when this step runs
        image = normalized_region(whole, image, **normalize, integer_valued=case.stored_integer)
    elif sigma_mm > 0 or not case.stored_float32:  # pyradiomics' wavelet computes in the stored type's
        image = sitk.Cast(image, sitk.sitkFloat64)   # precision: float64 for integers, float32 for float32
    return smooth(image, sigma_mm), mask
