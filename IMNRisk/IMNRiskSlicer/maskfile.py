"""A tumour file into the scene: read by the library's one mask loader, put in as an editable segment.

Every mask form the CLI takes (`predict --mask`, the manifest's Mask) is read here by the same function,
IMNRiskLib.inputs.imaging.load_mask: a labelmap (NRRD, NIfTI, ...), a Slicer .seg.nrrd, a DICOM SEG or an
RTSTRUCT (IMNRiskLib/inputs/dicommask.py: by SOP Class, not extension), placed on the shown phase's grid with
the CLI's checks (label present, size, frame of reference and series when the image is from DICOM). So
the segment scored in Slicer is the mask `imnrisk predict --mask` scores.

In full Slicer the DICOM module can load the same objects itself: DICOM SEG through the
QuantitativeReporting extension (dcmqi), RTSTRUCT through the SlicerRT extension; neither is in Slicer
core. This reader needs neither (pydicom, highdicom and scikit-image, the library's `dicom` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

import SimpleITK as sitk

from IMNRiskLib.core.errors import InputError

from . import mrml

SLICER_DICOM_HINT = ("or load it with Slicer's DICOM module (DICOM SEG needs the QuantitativeReporting "
                     "extension, RTSTRUCT the SlicerRT extension) and choose that segmentation")


def reference_file(image_files: Sequence[Any]) -> Optional[str]:
    """One DICOM file of the shown phase (its series, frame of reference and patient are what a DICOM
    mask must reference); None when the image is not from DICOM or only datasets without a file are known."""
    for item in image_files or []:
        path = item if isinstance(item, (str, Path)) else getattr(item, "filename", None)
        if path and Path(str(path)).is_file():
            return str(path)
    return None


def read_tumour_file(path: Union[str, Path], label: Union[int, str], shown_node, image_files: Sequence[Any],
                     min_voxels: int, warnings: List[str]) -> sitk.Image:
    """The tumour (UInt8, 1 inside) from a mask file, on the shown volume's grid, checked as the CLI
    checks `--mask`; any failure is one InputError naming the file."""
    from IMNRiskLib.inputs import imaging
    if not path or not str(path).strip():
        raise InputError("choose a tumour file (labelmap, .seg.nrrd, DICOM SEG or RTSTRUCT)", field="Mask")
    image = mrml.phase_image(shown_node)
    try:
        return imaging.load_mask(path, label, image, warnings, min_voxels, image_path=reference_file(image_files))
    except InputError as exc:
        from IMNRiskLib.inputs.dicommask import INSTALL_HINT
        if INSTALL_HINT in str(exc):
            raise InputError(f"{exc.message}; {SLICER_DICOM_HINT}", file=str(path), field="Mask") from None
        raise exc.located(file=str(path), field="Mask") from None
    except Exception as exc:  # a reader's own error on a damaged file: one line, no traceback
        first = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise InputError(f"cannot read this tumour file ({type(exc).__name__}: {first})", file=str(path),
                         field="Mask") from None


def segmentation_from_mask(mask: sitk.Image, segmentation_node, segment_name: str, scene) -> str:
    """Put a binary mask into a segmentation node as one segment (a binary labelmap, so the Segment
    Editor edits it); returns the segment's ID."""
    import slicer
    labelmap = mrml.sitk_to_volume(sitk.Cast(mask > 0, sitk.sitkUInt8), scene, segment_name,
                                   "vtkMRMLLabelMapVolumeNode")
    try:
        segmentation = segmentation_node.GetSegmentation()
        before = {segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())}
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap,
                                                                                          segmentation_node):
            raise InputError("the tumour could not be put into a segmentation", field="Mask")
    finally:
        scene.RemoveNode(labelmap)
    added = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())
             if segmentation.GetNthSegmentID(i) not in before]
    if len(added) != 1:
        raise InputError(f"the tumour became {len(added)} segments instead of one", field="Mask")
    segmentation.GetSegment(added[0]).SetName(segment_name)
    return added[0]
