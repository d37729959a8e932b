"""The region of a case that IMNRisk hands to pyradiomics: the tumour's bounding box plus a margin
wide enough that every filter gives, inside the tumour, the values it gives on the whole volume.

pyradiomics without `preCrop` filters (wavelet) and describes (diagnostics: a hash, `np.unique`,
label statistics) the whole volume: on a 512 x 512 x 100 phase that is most of an extraction's
time. The margin covers, in this order from the tumour outwards: pyradiomics' own `padDistance`
(its preCrop re-crops our region to exactly the box it would cut from the whole volume), the
wavelet's support (each level of pyradiomics' stationary transform is a circular convolution
with the unscaled filter) and the smoothing kernel. A wavelet is periodic: along an axis where the
margin reaches the volume's edge, the whole axis is kept, so the wrap-around reads the voxels it
reads on the whole volume (pyradiomics pads an odd axis by one voxel, wrapped, on both).

Filters whose values inside the tumour depend on voxels far away (LoG's recursive Gaussian, the
intensity filters scaled by the image maximum, B-spline resampling) are not cropped by IMNRisk
unless pyradiomics crops first itself (`preCrop`) or IMNRisk smooths (then the cropped, smoothed
image is the input, as before).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import numpy as np
import SimpleITK as sitk

# image types whose values inside the tumour depend only on voxels within a bounded distance
LOCAL_IMAGE_TYPES = {"Original", "Wavelet", "Gradient"}
SMOOTHING_SUPPORT_SIGMAS = 4.0  # DiscreteGaussian (maximumError 0.001) reaches ~3.3 sigma
SAFETY_VOXELS = 2


def _image_type_settings(pyradiomics: Dict[str, Any], name: str) -> Dict[str, Any]:
    """The settings pyradiomics applies to one image type: `setting:` overridden by the type's own."""
    own = (pyradiomics.get("imageType") or {}).get(name) or {}
    return {**(pyradiomics.get("setting") or {}), **own}


def wavelet_margin(pyradiomics: Dict[str, Any]) -> int:
    """Voxels of pyradiomics' wavelet support: (filter length - 1) per level computed
    (`_swt3` runs a level-1 `pywt.swtn` start_level + level times, the filter never dilated)."""
    if "Wavelet" not in (pyradiomics.get("imageType") or {}):
        return 0
    import pywt  # start-up time: pywt loads only when used
    kw = _image_type_settings(pyradiomics, "Wavelet")
    wavelet = pywt.Wavelet(kw.get("wavelet", "coif1"))
    return (wavelet.dec_len - 1) * (int(kw.get("start_level", 0)) + int(kw.get("level", 1)))


def crop_margin(pyradiomics: Dict[str, Any], sigma_mm: float) -> Optional[Tuple[float, int]]:
    """(margin in mm, margin in voxels) around the tumour, or None when the case must go whole
    (a filter with far-reaching support, neither smoothing nor pyradiomics' preCrop)."""
    setting = pyradiomics.get("setting") or {}
    pad = int(setting.get("padDistance", 5))
    voxels = max(pad, wavelet_margin(pyradiomics)) + SAFETY_VOXELS
    if sigma_mm > 0:
        return SMOOTHING_SUPPORT_SIGMAS * sigma_mm, voxels
    types = set(pyradiomics.get("imageType") or {"Original": {}})
    if setting.get("resampledPixelSpacing"):
        return None  # B-spline interpolation prefilters the whole volume (an IIR filter)
    if setting.get("preCrop") or types <= LOCAL_IMAGE_TYPES:
        return 0.0, voxels
    return None


def crop_box(mask: sitk.Image, lo, hi, pad_mm: float, pad_voxels: int,
             periodic: bool) -> Tuple[list, list]:
    """(start index, size) of the tumour's box (lo..hi inclusive, x y z) plus the margin; with
    `periodic`, an axis whose margin reaches an edge of the volume is kept whole."""
    size, spacing = mask.GetSize(), mask.GetSpacing()
    start, extent = [], []
    for l, h, n, s in zip(lo, hi, size, spacing):
        p = int(math.ceil(pad_mm / s)) + pad_voxels
        a, b = l - p, h + p
        if periodic and (a <= 0 or b >= n - 1):
            a, b = 0, n - 1
        a, b = max(0, a), min(n - 1, b)
        start.append(a)
        extent.append(b - a + 1)
    return start, extent


def normalized_region(whole: sitk.Image, region: sitk.Image, normalizeScale: float = 1,
                      removeOutliers: Optional[float] = None, integer_valued: bool = False) -> sitk.Image:
    """pyradiomics' `normalizeImage` of the whole volume, computed on a region of it only: the same
    statistics (SimpleITK's, over the whole volume) and the same per-voxel arithmetic, in float64
    (sitk.Normalize = StatisticsImageFilter + ShiftScale in double; pyradiomics then clips and
    scales). Written out because pyradiomics' function takes one image: it would normalise the
    whole phase (a quarter-second on 26 M voxels) to use the tumour's neighbourhood. `integer_valued`:
    the whole image holds integers (stored as such), whose statistics `whole_statistics` sums exactly."""
    mean, sigma = whole_statistics(whole, integer_valued)
    image = sitk.ShiftScale(sitk.Cast(region, sitk.sitkFloat64), -mean, 1.0 / sigma if sigma != 0 else 1.0)
    if removeOutliers is not None:
        image = sitk.Clamp(image, sitk.sitkFloat64, -float(removeOutliers), float(removeOutliers))
    image *= normalizeScale
    return image


_EXACT_IN_DOUBLE = 2 ** 53
_CHUNK_VOXELS = 1 << 20


def whole_statistics(image: sitk.Image, integer_valued: bool) -> Tuple[float, float]:
    """(mean, sigma) of all voxels, equal to SimpleITK's StatisticsImageFilter to the last bit.

    ITK sums the voxels and their squares in double, then takes mean = sum / n and sigma =
    sqrt((sum_sq - sum * sum / n) / (n - 1)). For integer voxels whose sums stay below 2^53 those
    sums are exact, so the same two formulas on exact integer sums give ITK's numbers; numpy's
    exact sums take a third of the time of ITK's filter (0.09 against 0.27 s on 26 M voxels). Other
    images (float voxels, larger sums) go to ITK's filter itself.
    """
    if integer_valued:
        exact = _exact_sums(sitk.GetArrayViewFromImage(image))
        if exact is not None:
            total, squares, n = exact
            mean = float(total) / float(n)
            variance = (float(squares) - (float(total) * float(total) / float(n))) / (float(n) - 1.0)
            return mean, math.sqrt(variance)
    stats = sitk.StatisticsImageFilter()
    stats.Execute(image)
    return stats.GetMean(), stats.GetSigma()


def _exact_sums(voxels: np.ndarray) -> Optional[Tuple[int, int, int]]:
    """(sum, sum of squares, count) of integer-valued voxels as exact integers, None when the sums
    could exceed what a double holds exactly (then ITK's own sums round)."""
    flat = voxels.reshape(-1)
    n = flat.size
    if n < 2:
        return None
    largest = max(abs(float(flat.min())), abs(float(flat.max())))
    if largest * largest * n >= _EXACT_IN_DOUBLE:
        return None
    total = squares = 0
    for start in range(0, n, _CHUNK_VOXELS):
        chunk = flat[start:start + _CHUNK_VOXELS].astype(np.int64)
        total += int(chunk.sum())
        squares += int(np.dot(chunk, chunk))
    return total, squares, n
