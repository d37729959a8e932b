"""The diagnostics of pyradiomics that IMNRisk keeps, computed as pyradiomics computes them, faster;
and pyradiomics' pre-crop, its box found the same, faster.

pyradiomics' `additionalInfo` describes the image and mask handed to it: hashes (SimpleITK's SHA-1
of each buffer), sizes, the image's mean, the mask's box, voxel and region counts, plus centres of
mass, minima and maxima that IMNRisk drops. Its `sitk.Hash` took 4% of a phantom case's extraction
(ITK's SHA-1 is a tenth as fast as Python's, which gives the same digest of the same bytes). IMNRisk's
extractor turns `additionalInfo` off and computes the kept entries here with the same values; with
resampling (the IBSI variants then read the resampled mask's diagnostics) pyradiomics computes them.
Where IMNRisk computes them, it also pre-crops (`pre_crop`): pyradiomics' `preCrop` finds the mask's
box with a LabelStatisticsImageFilter over the whole region handed to it (5 ms a phantom case).
"""

from __future__ import annotations

import hashlib
from typing import Any, Dict, Optional, Tuple

import numpy as np
import SimpleITK as sitk

KEPT = ("diagnostics_Image-original_Spacing", "diagnostics_Image-original_Size",
        "diagnostics_Image-original_Mean", "diagnostics_Mask-original_VoxelNum",
        "diagnostics_Mask-original_BoundingBox", "diagnostics_Mask-original_VolumeNum",
        "diagnostics_Image-original_Hash", "diagnostics_Mask-original_Hash")


def computed_here(settings: Dict[str, Any]) -> bool:
    """Whether IMNRisk computes the kept diagnostics for an extractor with these settings (pyradiomics
    adds diagnostics, and does not resample)."""
    resampled = settings.get("interpolator") is not None and settings.get("resampledPixelSpacing") is not None
    return bool(settings.get("additionalInfo", True)) and not resampled


def sha1_of_image(image: sitk.Image) -> str:
    """SimpleITK's `Hash(image)`: the SHA-1 of the pixel buffer."""
    return hashlib.sha1(np.ascontiguousarray(sitk.GetArrayViewFromImage(image)).data).hexdigest()


def original_diagnostics(image: sitk.Image, mask: sitk.Image, settings: Dict[str, Any]) -> Dict[str, Any]:
    """The kept `diagnostics_*-original_*` entries pyradiomics' GeneralInfo gives for this image and
    mask (the mask as pyradiomics' getMask makes it: UInt32, the label channel chosen)."""
    from radiomics import imageoperations  # start-up time: radiomics loads only when used
    label = settings.get("label", 1)
    mask = imageoperations.getMask(mask, **settings)
    inside = sitk.GetArrayViewFromImage(mask) == label
    z, y, x = (np.flatnonzero(inside.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1)))
    box = (int(x[0]), int(y[0]), int(z[0]), int(x[-1] - x[0] + 1), int(y[-1] - y[0] + 1), int(z[-1] - z[0] + 1))
    regions = sitk.ConnectedComponentImageFilter()
    regions.FullyConnectedOn()
    regions.Execute(mask == label)
    return {"diagnostics_Image-original_Hash": sha1_of_image(image),
            "diagnostics_Image-original_Spacing": image.GetSpacing(),
            "diagnostics_Image-original_Size": image.GetSize(),
            "diagnostics_Image-original_Mean": np.mean(sitk.GetArrayFromImage(image).astype("float")),
            "diagnostics_Mask-original_Hash": sha1_of_image(mask),
            "diagnostics_Mask-original_BoundingBox": box,
            "diagnostics_Mask-original_VoxelNum": int(np.count_nonzero(inside)),
            "diagnostics_Mask-original_VolumeNum": regions.GetObjectCount()}


def pre_crop(image: sitk.Image, mask: sitk.Image, settings: Dict[str, Any]) -> Optional[Tuple[sitk.Image, sitk.Image]]:
    """pyradiomics' `preCrop` (its loadImage): image and mask cropped to the label's box plus
    `padDistance` by its own `cropToTumorMask`, the box (pyradiomics' checkMask's, x y z lower and
    upper) found by numpy; None when the label is absent (pyradiomics then refuses the mask itself).
    pyradiomics' execute still checks the cropped mask (`checkMask`), as it does after its own crop."""
    from radiomics import imageoperations  # start-up time: radiomics loads only when used
    inside = sitk.GetArrayViewFromImage(mask) == settings.get("label", 1)
    if inside.ndim != 3 or not inside.any():
        return None
    z, y, x = (np.flatnonzero(inside.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1)))
    box = np.array([x[0], x[-1], y[0], y[-1], z[0], z[-1]])
    return imageoperations.cropToTumorMask(image, mask, box, **settings)
