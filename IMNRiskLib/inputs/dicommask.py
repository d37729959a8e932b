"""Tumour masks from DICOM: an RT Structure Set's ROI or a DICOM SEG's segment, on the image's grid.

A planning system exports the tumour as an RTSTRUCT (closed planar contours in patient coordinates);
OHIF, Slicer and public archives write DICOM SEG (a stack of binary or fractional frames). Both are
placed by physical geometry onto the grid of the phase being scored (a SimpleITK image), so the mask
lies on that image whatever the file's own layout. Both must reference that image: the same Frame of
Reference, and, when the image is DICOM, a series of it (one phase of a multi-phase acquisition is
fine). Messages name files, ROI names, segment labels and UIDs, never a patient's name or ID.

pydicom reads the RTSTRUCT, highdicom's reader the SEG (both the `dicom` extra); scikit-image fills
the contours.
"""

# Why pydicom + scikit-image for the RTSTRUCT geometry (checked on PyPI for Python 3.10-3.13, numpy 2):
# - rt-utils 1.2.7 (2023): its reader needs the image's DICOM series on disk (no NRRD image), matches a
#   contour to a slice only through ContourImageSequence (no contour between slices), rounds vertices to
#   whole pixels, allocates its mask (Columns, Rows) (transposed when they differ) and pulls OpenCV
#   (~300 MB). We use it in the tests as an independent writer.
# - platipy 0.7.2 rasterises onto a SimpleITK grid, but pins pydicom < 3 (ours needs >= 3.0.1) and brings
#   rt-utils, matplotlib, pandas and pynetdicom with it.
# - dicompyler-core 0.5.6 (2023) fills contours for dose-volume histograms with matplotlib's Path, whose
#   treatment of a voxel centre on the contour is unspecified; it has no grid rasteriser to call.
# - scikit-image (maintained, wheels for 3.10-3.13 on numpy 2): measure.grid_points_in_poly labels each
#   voxel centre outside / inside / on a vertex / on an edge, so a voxel on the contour line can be counted
#   in the ROI and holes follow the even-odd rule exactly (see _fill_slice). Placing the contour planes on
#   the image's slices is plain geometry done here with SimpleITK's image axes.

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import numpy as np
import SimpleITK as sitk

from IMNRiskLib.core.errors import InputError
from IMNRiskLib.inputs.dicomfiles import dicom_files, is_dicom_file

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
SEG_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation Storage
                   "1.2.840.10008.5.1.4.1.1.66.7")  # Label Map Segmentation Storage
# A fractional SEG voxel is tumour when at least half of it is (after rescaling to 0..1).
FRACTIONAL_THRESHOLD = 0.5
# A contour's points may lie this far (in slices) from their mean plane; further is not planar in the
# image's slice plane (drawn on another orientation).
PLANE_TOLERANCE = 0.25
# Contours whose planes are this close (in slices) are on one plane: filled together (holes by even-odd).
SAME_PLANE = 0.01
# A contour plane further than this (in slices) from the slice it is put on is reported as between slices.
BETWEEN_SLICES = 0.05
# Vertex coordinates this close (in voxels) to a whole number are snapped to it, so that a contour
# drawn through voxel centres has those centres exactly on its edges (a tie the fill then resolves
# as "on the contour", not by floating-point noise).
SNAP = 1e-3
INSTALL_HINT = "reading a DICOM RTSTRUCT or SEG mask needs pydicom, highdicom and scikit-image: " \
               "pip install 'imnrisk[dicom]'"
_HEADER_TAGS = ("SOPClassUID", "Modality", "FrameOfReferenceUID", "SeriesInstanceUID", "PatientID")


@dataclass
class ImageIdentity:
    """What the image's DICOM headers say (patient IDs are only compared, never shown)."""

    frames: Set[str] = field(default_factory=set)
    series: Set[str] = field(default_factory=set)
    patients: Set[str] = field(default_factory=set)


# --------------------------------------------------------------------------- finding the mask object

def _pydicom():
    """pydicom, or a clear InputError naming the extra to install."""
    try:
        import pydicom  # optional dependency (extra dicom)
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    return pydicom


def _header(path: Path):
    """The few header elements used here, without pixel data (fast on large files)."""
    pydicom = _pydicom()
    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=list(_HEADER_TAGS))
    except Exception as exc:  # pydicom raises many types for a damaged file
        raise InputError(f"cannot read DICOM header ({type(exc).__name__}: {str(exc)[:120]})",
                         file=str(path)) from None


def mask_kind(header) -> Optional[str]:
    """'RTSTRUCT', 'SEG' or None (an image or another object), by SOP Class UID, else Modality."""
    sop = str(getattr(header, "SOPClassUID", "") or getattr(header, "MediaStorageSOPClassUID", "") or "")
    if sop == RTSTRUCT_SOP_CLASS:
        return "RTSTRUCT"
    if sop in SEG_SOP_CLASSES:
        return "SEG"
    if not sop:
        modality = str(getattr(header, "Modality", "") or "").upper()
        return modality if modality in ("RTSTRUCT", "SEG") else None
    return None


def file_kind(path: Path) -> Optional[str]:
    """mask_kind of a DICOM file from its file meta header alone (0.5 ms: image folders are scanned
    with it), else from its dataset."""
    pydicom = _pydicom()
    try:
        meta = pydicom.filereader.read_file_meta_info(str(path))
    except Exception:  # no usable file meta: the dataset decides (and names a damaged file)
        meta = None
    if meta is not None and str(meta.get("MediaStorageSOPClassUID", "") or ""):
        return mask_kind(meta)
    return mask_kind(_header(path))


def is_mask_file(path: Path) -> bool:
    """True for an RTSTRUCT or SEG file (False without pydicom: such a folder is read as before)."""
    try:
        import pydicom  # noqa: F401
    except ImportError:
        return False
    return file_kind(path) is not None


def find_mask_object(path: Union[str, Path]) -> Optional[Path]:
    """The RTSTRUCT or SEG file a mask path designates: the file itself, or the one such object in a
    folder (several are refused); None when the path is not a DICOM mask object (a labelmap)."""
    path = Path(path)
    if path.is_file():
        if not is_dicom_file(path):
            return None
        return path if file_kind(path) else None
    if not path.is_dir():
        return None
    files = dicom_files(path)
    if not files:
        return None
    try:
        import pydicom  # noqa: F401  (without it a folder is read as a labelmap series, as before)
    except ImportError:
        return None
    found = [(p, kind) for p in files if (kind := file_kind(p))]
    if len(found) > 1:
        listing = ", ".join(f"{p.relative_to(path)} ({kind})" for p, kind in found[:6])
        raise InputError(f"folder holds {len(found)} DICOM mask objects ({listing}); give the file of one",
                         file=str(path), field="Mask")
    return found[0][0] if found else None


def image_identity(image_path: Optional[Union[str, Path]]) -> Optional[ImageIdentity]:
    """Frame of Reference, series and patient UIDs of a DICOM image (file or folder); None otherwise.

    Mask objects lying in the image's folder (a study exported as one folder) are not the image.
    """
    if image_path is None:
        return None
    path = Path(image_path)
    files = dicom_files(path) if path.is_dir() else ([path] if path.is_file() and is_dicom_file(path) else [])
    if not files:
        return None
    identity = ImageIdentity()
    for file in files:
        if file_kind(file):
            continue
        header = _header(file)
        for attribute, values in (("FrameOfReferenceUID", identity.frames), ("SeriesInstanceUID", identity.series),
                                  ("PatientID", identity.patients)):
            value = str(getattr(header, attribute, "") or "").strip()
            if value:
                values.add(value)
    return identity if identity.series or identity.frames else None


def check_reference(source: Path, what: str, frame: str, series: Iterable[str], patient: str,
                    identity: Optional[ImageIdentity], warnings: List[str]) -> None:
    """The mask must lie on the image: same Frame of Reference and patient, and one of the image's series.

    Refusals name both UIDs; a patient ID is compared but never shown.
    """
    if not frame:
        raise InputError(f"{what} has no Frame of Reference UID: it cannot be placed on the image",
                         file=str(source), field="Mask")
    if identity is None:
        warnings.append(f"the image is not DICOM: the {what} mask (Frame of Reference {frame}) is placed by its "
                        "patient coordinates without checking that it was drawn on this image")
        return
    if identity.frames and frame not in identity.frames:
        raise InputError(f"{what} lies on another Frame of Reference than the image (mask {frame}, image "
                         f"{', '.join(sorted(identity.frames))}): drawn on another acquisition or patient",
                         file=str(source), field="Mask")
    if patient and identity.patients and patient not in identity.patients:
        raise InputError(f"{what} belongs to another patient than the image (Patient ID differs; not shown)",
                         file=str(source), field="Mask")
    series = {s for s in series if s}
    if series and identity.series and not series & identity.series:
        raise InputError(f"{what} references series {', '.join(sorted(series))}, not the image's series "
                         f"({', '.join(sorted(identity.series))})", file=str(source), field="Mask")


# --------------------------------------------------------------------------- RTSTRUCT

def _text(value) -> str:
    return str(value or "").strip()


def _roi_table(ds) -> List[Tuple[int, str, str]]:
    """(ROI number, name, referenced Frame of Reference UID) of each ROI in a structure set."""
    return [(int(item.ROINumber), _text(getattr(item, "ROIName", "")),
             _text(getattr(item, "ReferencedFrameOfReferenceUID", "")))
            for item in getattr(ds, "StructureSetROISequence", [])]


def _roi_listing(rois: Sequence[Tuple[int, str, str]]) -> str:
    return ", ".join(f"'{name}'" for _, name, _ in rois[:40]) + (" ..." if len(rois) > 40 else "")


def choose_roi(ds, label: Union[int, str], source: Path) -> Tuple[int, str, str]:
    """The ROI named by `label` (case-insensitive); a number is accepted only when there is one ROI,
    since ROI numbers are arbitrary and a structure set also holds the body and organs at risk."""
    rois = _roi_table(ds)
    if not rois:
        raise InputError("RTSTRUCT holds no ROI", file=str(source), field="Mask")
    if isinstance(label, str):
        wanted = label.strip().casefold()
        match = [r for r in rois if r[1].casefold() == wanted]
        if not match:
            raise InputError(f"RTSTRUCT has no ROI named '{label}'; its ROIs: {_roi_listing(rois)}",
                             file=str(source), field="Label")
        if len(match) > 1:
            raise InputError(f"RTSTRUCT has {len(match)} ROIs named '{label}' (numbers "
                             f"{', '.join(str(r[0]) for r in match)}): ambiguous", file=str(source), field="Label")
        return match[0]
    if len(rois) == 1:
        return rois[0]
    raise InputError(f"RTSTRUCT holds {len(rois)} ROIs ({_roi_listing(rois)}); name the tumour's ROI "
                     "(manifest Label, predict --label)", file=str(source), field="Label")


def _referenced_series(ds, frame: str) -> List[str]:
    """Series UIDs the structure set says its contours were drawn on (for the ROI's Frame of Reference)."""
    series = []
    for ref in getattr(ds, "ReferencedFrameOfReferenceSequence", []):
        if frame and _text(getattr(ref, "FrameOfReferenceUID", "")) not in ("", frame):
            continue
        for study in getattr(ref, "RTReferencedStudySequence", []):
            for item in getattr(study, "RTReferencedSeriesSequence", []):
                series.append(_text(getattr(item, "SeriesInstanceUID", "")))
    return series


def roi_contours(ds, number: int, name: str, source: Path) -> List[np.ndarray]:
    """The ROI's contours as (N, 3) arrays of patient coordinates (mm); open or degenerate ones refused."""
    items = [c for c in getattr(ds, "ROIContourSequence", []) if int(getattr(c, "ReferencedROINumber", -1)) == number]
    contours = [c for item in items for c in getattr(item, "ContourSequence", [])]
    if not contours:
        raise InputError(f"RTSTRUCT ROI '{name}' has no contours", file=str(source), field="Mask")
    out = []
    for i, contour in enumerate(contours, 1):
        kind = _text(getattr(contour, "ContourGeometricType", "")).upper()
        if kind != "CLOSED_PLANAR":
            raise InputError(f"RTSTRUCT ROI '{name}': contour {i} of {len(contours)} is {kind or 'of no type'}, "
                             "not CLOSED_PLANAR: a tumour mask needs closed contours", file=str(source), field="Mask")
        points = np.asarray([float(v) for v in getattr(contour, "ContourData", [])], dtype=float)
        if points.size % 3 or points.size < 9 or not np.isfinite(points).all():
            raise InputError(f"RTSTRUCT ROI '{name}': contour {i} has {points.size // 3} point(s) or bad "
                             "coordinates; a closed contour needs 3 or more", file=str(source), field="Mask")
        out.append(points.reshape(-1, 3))
    return out


def _to_index(image: sitk.Image, points: np.ndarray) -> np.ndarray:
    """Patient coordinates (mm, LPS as DICOM and SimpleITK use) to continuous voxel indices (x, y, z)."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    scale = direction * np.array(image.GetSpacing(), dtype=float)
    return (points - np.array(image.GetOrigin(), dtype=float)) @ np.linalg.inv(scale).T


def _snap(values: np.ndarray) -> np.ndarray:
    nearest = np.round(values)
    return np.where(np.abs(values - nearest) < SNAP, nearest, values)


def _fill_slice(polygons: Sequence[np.ndarray], shape: Tuple[int, int]) -> np.ndarray:
    """Voxels (rows, columns) whose centre lies inside the contours under the even-odd rule or on a
    contour: a contour inside another is a hole (as planning systems mean nested contours), and the
    contour line itself belongs to the ROI (the region is closed)."""
    try:
        from skimage.measure import grid_points_in_poly  # optional dependency (extra dicom)
    except ImportError:  # e.g. in 3D Slicer's Python, which does not ship scikit-image
        raise InputError(INSTALL_HINT) from None
    inside = np.zeros(shape, dtype=bool)
    edge = np.zeros(shape, dtype=bool)
    for xy in polygons:
        rc = _snap(xy[:, ::-1])  # (row, column) = (y, x)
        lo = np.maximum(np.floor(rc.min(axis=0)).astype(int), 0)
        hi = np.minimum(np.ceil(rc.max(axis=0)).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue  # wholly outside the image in-plane
        labels = grid_points_in_poly(tuple(hi - lo), rc - lo, binarize=False)  # 0 out, 1 in, 2 vertex, 3 edge
        box = (slice(lo[0], hi[0]), slice(lo[1], hi[1]))
        inside[box] ^= labels == 1
        edge[box] |= labels >= 2
    return inside | edge


def slices_of_planes(planes: Sequence[float], n_slices: int) -> Dict[int, float]:
    """Image slice -> the contour plane (in slice units) that fills it: the nearest plane, when it lies
    within half the contours' own spacing (or half a slice, when they are as dense or denser). A contour
    stands for its slice's thickness, as planning systems draw them: contours on the image's own
    slices fill exactly those; contours drawn on thicker slices fill every image slice they cover; a
    slice the planner skipped stays empty."""
    positions = np.asarray(planes, dtype=float)
    spacing = float(np.median(np.diff(positions))) if len(positions) > 1 else 1.0
    reach = max(spacing, 1.0) / 2 + 1e-6
    lo, hi = max(int(np.floor(positions[0] - reach)), 0), min(int(np.ceil(positions[-1] + reach)), n_slices - 1)
    chosen: Dict[int, float] = {}
    for k in range(lo, hi + 1):
        nearest = float(positions[np.argmin(np.abs(positions - k))])
        if abs(nearest - k) <= reach:
            chosen[k] = nearest
    return chosen


def _warn_about_planes(planes: Sequence[float], chosen: Dict[int, float], spacing_z: float, name: str,
                       warnings: List[str]) -> None:
    """Say when the contour planes are not the image's slices (between them, sparser, or denser)."""
    spacing = float(np.median(np.diff(planes))) if len(planes) > 1 else 1.0
    if spacing > 1 + BETWEEN_SLICES:
        warnings.append(f"RTSTRUCT ROI '{name}': its contours are {spacing * spacing_z:.2f} mm apart, the image's "
                        f"slices {spacing_z:.2f} mm: each contour fills the slices within half that distance")
        return
    off = [abs(p - round(p)) for p in set(chosen.values()) if abs(p - round(p)) > BETWEEN_SLICES]
    if off:
        warnings.append(f"RTSTRUCT ROI '{name}': {len(off)} contour plane(s) lie between the image's slices (up to "
                        f"{max(off) * spacing_z:.2f} mm off); each was put on the nearest slice")
    unused = len(planes) - len(set(chosen.values()))
    if unused:
        warnings.append(f"RTSTRUCT ROI '{name}': {unused} contour plane(s) share an image slice with a nearer one "
                        "and were not used")


def rasterise_contours(contours: Sequence[np.ndarray], image: sitk.Image, source: Path, name: str,
                       warnings: List[str]) -> sitk.Image:
    """Closed planar contours onto the image's grid: each contour on the nearest slice (refused when
    further than half a slice from any), contours of one plane filled together (holes by even-odd)."""
    size = image.GetSize()
    spacing_z = image.GetSpacing()[2]
    planes: Dict[float, List[np.ndarray]] = {}
    for i, points in enumerate(contours, 1):
        index = _to_index(image, points)
        z = index[:, 2]
        if float(z.max() - z.min()) > PLANE_TOLERANCE:
            raise InputError(f"RTSTRUCT ROI '{name}': contour {i} is not in the plane of the image's slices "
                             f"(it spans {float(z.max() - z.min()) * spacing_z:.2f} mm across them)",
                             file=str(source), field="Mask")
        plane = float(z.mean())
        nearest = min(max(round(plane), 0), size[2] - 1)
        if abs(plane - nearest) > 0.5:
            raise InputError(f"RTSTRUCT ROI '{name}': contour {i} lies {abs(plane - nearest) * spacing_z:.1f} mm "
                             "from the nearest image slice (more than half a slice): drawn outside this image",
                             file=str(source), field="Mask")
        # contours of one plane (an outline and its holes) are filled together, whatever their rounding
        same = next((p for p in planes if abs(p - plane) <= SAME_PLANE), plane)
        planes.setdefault(same, []).append(index[:, :2])
    chosen = slices_of_planes(sorted(planes), size[2])
    array = np.zeros(size[::-1], dtype=np.uint8)
    filled: Dict[float, np.ndarray] = {}
    for k, plane in chosen.items():
        if plane not in filled:
            filled[plane] = _fill_slice(planes[plane], (size[1], size[0]))
        array[k] = filled[plane]
    _warn_about_planes(sorted(planes), chosen, spacing_z, name, warnings)
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(image)
    return mask


def read_rtstruct(path: Path, label: Union[int, str], image: sitk.Image, identity: Optional[ImageIdentity],
                  warnings: List[str]) -> sitk.Image:
    """The named ROI of an RT Structure Set, rasterised onto the image's grid."""
    pydicom = _pydicom()
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:
        raise InputError(f"cannot read RTSTRUCT ({type(exc).__name__}: {str(exc)[:120]})", file=str(path)) from None
    number, name, frame = choose_roi(ds, label, path)
    if not frame:
        frames = [_text(getattr(r, "FrameOfReferenceUID", ""))
                  for r in getattr(ds, "ReferencedFrameOfReferenceSequence", [])]
        frame = frames[0] if len(frames) == 1 else ""
    check_reference(path, "RTSTRUCT", frame, _referenced_series(ds, frame), _text(getattr(ds, "PatientID", "")),
                    identity, warnings)
    return rasterise_contours(roi_contours(ds, number, name, path), image, path, name, warnings)


# --------------------------------------------------------------------------- DICOM SEG

def choose_segment(seg, label: Union[int, str], source: Path) -> Tuple[int, str]:
    """(number, label) of the segment chosen by number, or by label (case-insensitive)."""
    segments = [(int(s.SegmentNumber), _text(getattr(s, "SegmentLabel", ""))) for s in seg.SegmentSequence]
    listing = ", ".join(f"{n} '{text}'" for n, text in segments[:40])
    if isinstance(label, str):
        match = [s for s in segments if s[1].casefold() == label.strip().casefold()]
        if len(match) > 1:
            raise InputError(f"SEG has {len(match)} segments labelled '{label}': ambiguous; segments: {listing}",
                             file=str(source), field="Label")
    else:
        match = [s for s in segments if s[0] == int(label)]
    if not match:
        raise InputError(f"SEG has no segment {label!r}; segments: {listing}", file=str(source), field="Label")
    return match[0]


def _volume_image(array: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A highdicom Volume (array indexed slice, row, column; affine to patient mm) as a SimpleITK image."""
    image = sitk.GetImageFromArray(array)
    axes = affine[:3, :3][:, ::-1]  # columns for SimpleITK's x (column), y (row), z (slice)
    spacing = np.linalg.norm(axes, axis=0)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in (axes / spacing).ravel()])
    image.SetOrigin([float(v) for v in affine[:3, 3]])
    return image


def _place_on_grid(values: np.ndarray, affine: np.ndarray, image: sitk.Image) -> Optional[np.ndarray]:
    """The SEG's voxels copied onto the image's array (z, y, x) when its frames lie on the image grid
    (same row and column axes and spacing, every frame with tumour on an image slice at a whole-voxel
    offset): an exact placement. None otherwise. Slices of the SEG volume without tumour are not
    looked at (highdicom fills positions between sparse frames, with a declared slice spacing)."""
    scale = np.array(image.GetDirection(), dtype=float).reshape(3, 3) * np.array(image.GetSpacing(), dtype=float)
    tolerance = 1e-4 * float(min(image.GetSpacing()))
    if not (np.allclose(affine[:3, 2], scale[:, 0], atol=tolerance) and
            np.allclose(affine[:3, 1], scale[:, 1], atol=tolerance)):
        return None
    size = image.GetSize()
    out = np.zeros(size[::-1], dtype=np.uint8)
    rows, cols = values.shape[1:]
    for k in np.flatnonzero(values.reshape(values.shape[0], -1).any(axis=1)):
        start = _to_index(image, (affine[:3, 3] + k * affine[:3, 0])[None, :])[0]
        if not np.allclose(start, np.round(start), atol=1e-3):
            return None
        x0, y0, z = (int(v) for v in np.round(start))
        if not 0 <= z < size[2]:
            continue  # a frame beyond the image's slices: its voxels are not on the image
        ys, xs = slice(max(y0, 0), min(y0 + rows, size[1])), slice(max(x0, 0), min(x0 + cols, size[0]))
        if ys.start < ys.stop and xs.start < xs.stop:
            out[z, ys, xs] = values[k, ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    return out


def read_seg(path: Path, label: Union[int, str], image: sitk.Image, identity: Optional[ImageIdentity],
             warnings: List[str]) -> sitk.Image:
    """One segment of a DICOM SEG on the image's grid (fractional: voxels >= 0.5 after rescaling)."""
    try:
        import highdicom as hd  # optional dependency (extra dicom)
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    try:
        seg = hd.seg.segread(str(path))
    except Exception as exc:
        raise InputError(f"cannot read DICOM SEG ({type(exc).__name__}: {str(exc)[:120]})", file=str(path)) from None
    number, name = choose_segment(seg, label, path)
    series = [_text(getattr(s, "SeriesInstanceUID", "")) for s in getattr(seg, "ReferencedSeriesSequence", [])]
    check_reference(path, "SEG", _text(getattr(seg, "FrameOfReferenceUID", "")), series,
                    _text(getattr(seg, "PatientID", "")), identity, warnings)
    try:
        volume = seg.get_volume(segment_numbers=[number], combine_segments=False, rescale_fractional=True,
                                allow_missing_positions=True)
    except Exception as exc:  # highdicom: frames that do not form one regularly spaced volume
        raise InputError(f"SEG frames do not form a regular 3-D volume ({str(exc)[:160]})", file=str(path),
                         field="Mask") from None
    values = np.asarray(volume.array)
    values = values.reshape(values.shape[:3])
    fractional = _text(getattr(seg, "SegmentationType", "")).upper() == "FRACTIONAL"
    binary = (values >= FRACTIONAL_THRESHOLD) if fractional else (values > 0)
    if not binary.any():
        raise InputError(f"SEG segment {number} '{name}' is empty", file=str(path), field="Mask")
    affine = np.asarray(volume.affine, dtype=float)
    exact = _place_on_grid(binary.astype(np.uint8), affine, image)
    if exact is not None:
        placed = sitk.GetImageFromArray(exact)
        placed.CopyInformation(image)
    else:  # another grid: nearest neighbour in physical space, as align_mask does for a labelmap
        placed = sitk.Resample(_volume_image(binary.astype(np.uint8), affine), image, sitk.Transform(),
                               sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    kept = int(np.count_nonzero(sitk.GetArrayViewFromImage(placed)))
    if exact is None or kept != int(binary.sum()):
        warnings.append(f"SEG segment {number} {'resampled nearest-neighbour onto' if exact is None else 'placed on'} "
                        f"the image grid ({int(binary.sum())} -> {kept} voxels)")
    return placed


# --------------------------------------------------------------------------- entry point

def load_dicom_mask(path: Path, label: Union[int, str], image: sitk.Image,
                    image_path: Optional[Union[str, Path]], warnings: List[str]) -> sitk.Image:
    """The tumour (UInt8, 1 inside) from an RTSTRUCT or SEG file, on the image's grid, checked to
    reference the image (`image_path`, when DICOM)."""
    kind = file_kind(path)
    identity = image_identity(image_path)
    if kind == "RTSTRUCT":
        mask = read_rtstruct(path, label, image, identity, warnings)
    else:
        mask = read_seg(path, label, image, identity, warnings)
    if not np.count_nonzero(sitk.GetArrayViewFromImage(mask)):
        raise InputError(f"{kind} mask lies outside the image (nothing left on the image grid)", file=str(path),
                         field="Mask")
    return mask
