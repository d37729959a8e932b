"""An existing segmentation (label map NRRD/NIfTI, Slicer .seg.nrrd, DICOM SEG, RTSTRUCT) made the
page's tumour segment: read and checked by IMNRiskLib.imaging.load_mask, the loader `imnrisk
predict --mask` uses (label map, one region, on the image's grid, enough voxels), then written into
the segment the editor holds, where the user can still paint or erase it before Predict.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple, Union

import SimpleITK as sitk

from IMNRiskLib import imaging
from IMNRiskLib.errors import InputError


def parse_label(text: Optional[str]) -> Union[int, str]:
    """The label field as `imnrisk predict --label` reads it: a number is a label value, else a
    segment or ROI name; empty means 1."""
    text = (text or "").strip()
    if not text:
        return 1
    if text.lstrip("-").isdigit() and int(text) < 1:
        raise InputError(f"label {text} is not a label value (1 or more) nor a segment name", field="Label")
    return int(text) if text.isdigit() else text


def read_mask(path: Union[str, Path], label: Union[int, str], image: sitk.Image,
              study_path: Optional[Union[str, Path]], min_voxels: int) -> Tuple[sitk.Image, List[str]]:
    """The tumour (UInt8, 1 inside) on the shown phase's grid, and the loader's warnings; a DICOM
    SEG or RTSTRUCT must reference the study when the study is DICOM."""
    warnings: List[str] = []
    mask = imaging.load_mask(path, label, image, warnings, min_voxels, image_path=study_path)
    return mask, warnings


def fill_segment(segmentation_node, segment_id: str, mask: sitk.Image) -> None:
    """Replace the segment's voxels by the mask (on the segmentation's image grid); built in a scene
    of its own so that no temporary node reaches the page's scene."""
    import slicer
    from IMNRiskSlicer import mrml
    workspace = slicer.vtkMRMLScene()
    labelmap = mrml.sitk_to_volume(mask, workspace, "mask", "vtkMRMLLabelMapVolumeNode")
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    oriented = logic.CreateOrientedImageDataFromVolumeNode(labelmap)
    if oriented is None or not logic.SetBinaryLabelmapToSegment(oriented, segmentation_node, segment_id,
                                                                 logic.MODE_REPLACE):
        raise InputError("the segmentation could not be copied into the tumour segment", field="Mask")
    workspace.Clear(1)
