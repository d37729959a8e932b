"""IMNRisk's extraction (cropped around the tumour, fast feature classes) equals pyradiomics 3.0.1 on
the same inputs: every one of the 851 features, to 1e-6 relative (shape to 1e-10: the same mesh),
wavelet included, on the real breast MRI of the pyradiomics sdist and on the bench's 512 x 512 x 100 case.

"The same inputs": with a plain pyradiomics parameter file (no `imnrisk:` section), the image and
mask files as pyradiomics reads them; with IMNRisk's settings, the whole phase put in the same
orientation, normalised and smoothed (IMNRisk's own steps, which pyradiomics has not), uncropped,
to pyradiomics' own extractor and classes. The cropping's rules are in `IMNRiskLib/inputs/cropping.py`.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import pyradiomics_data
from IMNRiskLib.radiomics import features
from IMNRiskLib.inputs import imaging

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
PLAIN_DEFAULTS = {"imageType": {"Original": {}, "Wavelet": {}},  # pyradiomics' defaults: 851 features
                  "featureClass": {c: None for c in ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")}}


def values(result: dict) -> dict:
    return {k: features.real_value(k, v) for k, v in result.items() if not k.startswith("diagnostics_")}


def pyradiomics_on_same_inputs(loaded: imaging.LoadedCase, settings: features.ExtractionSettings) -> dict:
    """pyradiomics' stock extractor on the whole phase after IMNRisk's own steps (orientation,
    normalisation over the phase, smoothing), uncropped."""
    image = imaging.orient(loaded.image, settings.orientation)
    mask = imaging.orient(loaded.mask, settings.orientation)
    image = sitk.Cast(image, sitk.sitkFloat64)
    normalize = features._normalize_kwargs(settings)
    if normalize is not None:
        from radiomics import imageoperations
        image = imageoperations.normalizeImage(image, **normalize)
    image = imaging.smooth(image, settings.smoothing_sigma_mm)
    extractor = features.checked_extractor(settings.pyradiomics)
    extractor.settings["label"] = 1
    if normalize is not None:
        extractor.settings["normalize"] = False
    return values(extractor.execute(image, mask))


def assert_equal_to_pyradiomics(ours: dict, theirs: dict, case: str) -> None:
    assert list(ours) == list(theirs), case  # the same features, in pyradiomics' order
    for name, expected in theirs.items():
        rel = 1e-10 if "_shape_" in name else 1e-6
        assert math.isclose(ours[name], expected, rel_tol=rel, abs_tol=1e-9), (case, name, ours[name], expected)


def imnrisk(image, mask, settings: features.ExtractionSettings) -> dict:
    return features.compute_features(imaging.load_case(image, mask, min_voxels=1), settings)[0]


def test_breast1_imnrisk_settings_all_851():
    data = pyradiomics_data()
    settings = features.load_settings()
    loaded = imaging.load_case(data / "breast1_image.nrrd", data / "breast1_label.nrrd")
    ours = features.compute_features(loaded, settings)[0]
    assert len(ours) == 851
    assert_equal_to_pyradiomics(ours, pyradiomics_on_same_inputs(loaded, settings), "breast1")


@pytest.mark.parametrize("stored", ["int16", "float32"])
def test_breast1_plain_pyradiomics_defaults_on_the_files(stored, tmp_path):
    """No preCrop, no normalisation: pyradiomics transforms the whole stored volume, in float64 for
    the file's int16, in float32 for a float32 file (IMNRisk's crop too)."""
    data = pyradiomics_data()
    image, mask = data / "breast1_image.nrrd", data / "breast1_label.nrrd"
    if stored == "float32":
        sitk.WriteImage(sitk.Cast(sitk.ReadImage(str(image)), sitk.sitkFloat32), str(tmp_path / "image.nrrd"))
        image = tmp_path / "image.nrrd"
    settings = features.settings_from_dict(PLAIN_DEFAULTS)
    extractor = features.checked_extractor(PLAIN_DEFAULTS)
    theirs = values(extractor.execute(str(image), str(mask)))
    assert len(theirs) == 851
    assert_equal_to_pyradiomics(imnrisk(image, mask, settings), theirs, "breast1 defaults")


@pytest.mark.parametrize("where", ["corner", "odd sizes, edge on x"])
def test_wavelet_of_a_tumour_at_the_volume_edge(tmp_path, where):
    """A tumour within the wavelet's reach of the volume's edge: the crop keeps that axis whole so
    the periodic transform wraps round the same voxels as on the whole volume."""
    rng = np.random.default_rng(3)
    shape = (30, 61, 57) if where.startswith("odd") else (32, 64, 64)
    array = (300 + 60 * rng.standard_normal(shape)).astype(np.int16)
    mask = np.zeros(shape, np.uint8)
    if where == "corner":
        mask[0:6, 1:9, 2:12] = 1
    else:
        mask[12:20, 25:36, 52:57] = 1
    array[mask > 0] += 400
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.7, 2.0))
    label = sitk.GetImageFromArray(mask)
    label.CopyInformation(image)
    sitk.WriteImage(image, str(tmp_path / "image.nrrd"))
    sitk.WriteImage(label, str(tmp_path / "mask.nrrd"))
    settings = features.settings_from_dict(PLAIN_DEFAULTS)
    theirs = values(features.checked_extractor(PLAIN_DEFAULTS).execute(str(tmp_path / "image.nrrd"),
                                                                       str(tmp_path / "mask.nrrd")))
    assert_equal_to_pyradiomics(imnrisk(tmp_path / "image.nrrd", tmp_path / "mask.nrrd", settings), theirs, where)


def test_the_crop_is_a_crop_and_the_comparison_can_fail():
    """The prepared image is a small part of the phase, and a margin too small for the wavelet
    (1 voxel, no whole axis) changes wavelet features beyond 1e-6: the tests above are not vacuous."""
    data = pyradiomics_data()
    loaded = imaging.load_case(data / "breast1_image.nrrd", data / "breast1_label.nrrd", min_voxels=1)
    settings = features.settings_from_dict(PLAIN_DEFAULTS)
    image, _ = features.prepared_case(loaded, settings)
    assert image.GetNumberOfPixels() < loaded.image.GetNumberOfPixels() / 4
    assert image.GetPixelID() == sitk.sitkFloat64
    tight_image, tight_mask = imaging.prepare(loaded, 0.0, None, 1, periodic=False)
    extractor = features.make_extractor(settings, normalized_here=False)
    tight = values(extractor.execute(tight_image, tight_mask))
    theirs = values(features.checked_extractor(PLAIN_DEFAULTS).execute(
        str(data / "breast1_image.nrrd"), str(data / "breast1_label.nrrd")))
    differ = [n for n in theirs if not math.isclose(tight[n], theirs[n], rel_tol=1e-6, abs_tol=1e-9)]
    assert differ and all(n.startswith("wavelet-") for n in differ)


@pytest.fixture(scope="module")
def bench_case(tmp_path_factory):
    from bench_extract import make_case
    image, mask, _ = make_case(tmp_path_factory.mktemp("bench") / "full")
    return image, mask


@pytest.mark.slow
def test_bench_case_imnrisk_settings_all_851(bench_case):
    loaded = imaging.load_case(*bench_case)
    settings = features.load_settings()
    ours = features.compute_features(loaded, settings)[0]
    assert len(ours) == 851
    assert_equal_to_pyradiomics(ours, pyradiomics_on_same_inputs(loaded, settings), "bench case")


@pytest.mark.slow
def test_bench_case_plain_pyradiomics_defaults_on_the_files(bench_case):
    """pyradiomics' defaults transform the whole 512 x 512 x 100 int16 volume (~15 s, ~4 GB)."""
    settings = features.settings_from_dict(PLAIN_DEFAULTS)
    theirs = values(features.checked_extractor(PLAIN_DEFAULTS).execute(*map(str, bench_case)))
    assert len(theirs) == 851
    assert_equal_to_pyradiomics(imnrisk(*bench_case, settings), theirs, "bench case defaults")
