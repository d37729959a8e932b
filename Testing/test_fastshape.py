"""IMNRisk's 3-D shape computation (`fastshape`) gives pyradiomics' C values to the last bit.

`fastshape.calculate_coefficients` replaces cshape.c's `calculate_coefficients` (surface area, mesh
volume, four maximum diameters) without its all-pairs loop. Each mask below goes to both and the
results must be equal, not close: random masks of every density, closed blobs, ellipsoids with holes,
flat-faced masks (a box, a cylinder: many vertices tie at the extremes), lines, planes, one voxel,
anisotropic spacings, and the real breast MRI's tumour label of the pyradiomics sdist.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from radiomics import cShape
from scipy import ndimage

from conftest import pyradiomics_data
from IMNRiskLib.radiomics import fastshape
from IMNRiskLib.radiomics.features import _compute_with_fast_classes, checked_extractor


def assert_same_bits(mask: np.ndarray, spacing) -> None:
    padded = np.pad(mask.astype(bool), 1)  # as RadiomicsShape pads it
    spacing = np.asarray(spacing, dtype=np.float64)
    area, volume, diameters = cShape.calculate_coefficients(padded, spacing)
    ours = fastshape.calculate_coefficients(padded, spacing)
    assert (ours[0], ours[1]) == (area, volume)
    assert ours[2].tolist() == np.asarray(diameters).tolist()


def random_mask(rng: np.random.Generator, kind: int) -> np.ndarray:
    shape = tuple(int(n) for n in rng.integers(1, 14, 3))
    if kind == 0:
        return rng.random(shape) < rng.random()
    if kind == 1:
        return ndimage.binary_closing(rng.random(shape) < 0.5)
    z, y, x = np.indices(shape)
    centre, radii = np.array(shape) / 2, rng.uniform(1, 7, 3)
    inside = ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((x - centre[2]) / radii[2]) ** 2 < 1
    return inside & (rng.random(shape) < 0.9) if kind == 3 else inside


def test_random_masks_equal_cshape_bit_for_bit():
    rng = np.random.default_rng(20261207)
    for trial in range(240):
        spacing = (rng.choice([0.5, 1.0, 2.0, 3.3]), rng.uniform(0.3, 1.2), rng.uniform(0.3, 1.2))
        assert_same_bits(random_mask(rng, trial % 4), spacing)


@pytest.mark.parametrize("name", ["box", "cylinder", "one voxel", "line", "plane", "two voxels apart"])
def test_flat_and_degenerate_masks_equal_cshape(name):
    z, y, x = np.indices((10, 60, 60))
    mask = {"box": np.ones((5, 20, 30), bool),
            "cylinder": (y - 30) ** 2 + (x - 30) ** 2 < 600,
            "one voxel": np.ones((1, 1, 1), bool),
            "line": np.ones((1, 1, 25), bool),
            "plane": np.ones((1, 17, 23), bool),
            "two voxels apart": np.pad(np.ones((1, 1, 1), bool), ((0, 0), (0, 0), (0, 9)), constant_values=False)
            | np.pad(np.ones((1, 1, 1), bool), ((0, 0), (0, 0), (9, 0)))}[name]
    assert_same_bits(mask, (2.0, 0.66, 0.66))
    assert_same_bits(mask, (1.0, 1.0, 1.0))


def test_real_tumour_label_equals_cshape():
    label = sitk.ReadImage(str(pyradiomics_data() / "breast1_label.nrrd"))
    array = sitk.GetArrayFromImage(label) > 0
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(array))
    assert_same_bits(array[box], label.GetSpacing()[::-1])


def test_extractor_shape_features_are_pyradiomics_own():
    """The extractor IMNRisk makes computes shape with FastShape, and every shape feature of the
    real breast MRI equals pyradiomics' stock extractor's exactly."""
    data = pyradiomics_data()
    params = {"imageType": {"Original": {}}, "featureClass": {"shape": None}, "setting": {"label": 1}}
    stock, fast = checked_extractor(params), checked_extractor(params)
    _compute_with_fast_classes(fast)
    calls = []
    original = fastshape.FastShape._initSegmentBasedCalculation
    try:
        fastshape.FastShape._initSegmentBasedCalculation = lambda self: (calls.append(1), original(self))[1]
        theirs = stock.execute(str(data / "breast1_image.nrrd"), str(data / "breast1_label.nrrd"))
        ours = fast.execute(str(data / "breast1_image.nrrd"), str(data / "breast1_label.nrrd"))
    finally:
        fastshape.FastShape._initSegmentBasedCalculation = original
    assert calls == [1]
    names = [k for k in theirs if "_shape_" in k]
    assert len(names) == 14 and names == [k for k in ours if "_shape_" in k]
    assert all(float(ours[k]) == float(theirs[k]) for k in names), [k for k in names if ours[k] != theirs[k]]
