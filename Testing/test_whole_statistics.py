"""The whole-volume mean and SD that normalisation uses (`cropping.whole_statistics`) equal
SimpleITK's StatisticsImageFilter to the last bit, from exact integer sums where the voxels are
integers, and from the filter itself otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import pyradiomics_data
from IMNRiskLib.inputs.cropping import _exact_sums, whole_statistics


def itk_statistics(image: sitk.Image) -> tuple:
    stats = sitk.StatisticsImageFilter()
    stats.Execute(image)
    return stats.GetMean(), stats.GetSigma()


def float32_of(values: np.ndarray) -> sitk.Image:
    return sitk.Cast(sitk.GetImageFromArray(values), sitk.sitkFloat32)


@pytest.mark.parametrize("seed,dtype,low,high,shape", [
    (0, np.int16, -1000, 3000, (40, 64, 64)),
    (1, np.uint16, 0, 4095, (100, 128, 120)),
    (2, np.uint8, 0, 255, (7, 9, 11)),
    (3, np.int16, -32768, 32767, (60, 200, 200)),  # the widest int16 range: sums near 2^46
    (4, np.int32, 0, 2, (3, 3, 3)),
])
def test_integer_voxels_give_itks_numbers_exactly(seed, dtype, low, high, shape):
    values = np.random.default_rng(seed).integers(low, high, shape, endpoint=True).astype(dtype)
    image = float32_of(values)
    assert _exact_sums(sitk.GetArrayViewFromImage(image)) is not None  # the exact path is taken
    assert whole_statistics(image, integer_valued=True) == itk_statistics(image)


def test_the_real_breast_mri():
    image = sitk.Cast(sitk.ReadImage(str(pyradiomics_data() / "breast1_image.nrrd")), sitk.sitkFloat32)
    assert whole_statistics(image, integer_valued=True) == itk_statistics(image)


def test_sums_beyond_what_a_double_holds_go_to_itk():
    values = np.full((64, 64, 64), 2 ** 20, np.int32)  # squares sum to 2^58: ITK's double sums round
    values[0, 0, 0] = 7
    image = sitk.GetImageFromArray(values.astype(np.float64))
    assert _exact_sums(sitk.GetArrayViewFromImage(image)) is None
    assert whole_statistics(image, integer_valued=True) == itk_statistics(image)


def test_float_voxels_go_to_itk():
    image = float32_of(np.random.default_rng(5).normal(300, 40, (20, 30, 30)).astype(np.float32))
    assert whole_statistics(image, integer_valued=False) == itk_statistics(image)
