"""IMNRisk's GLCM class (`fastglcm.FastGLCM`) gives pyradiomics' own values.

Each case is extracted twice from the same prepared image and mask: by pyradiomics' extractor as
it is and by the extractor IMNRisk makes (FastGLCM in place of RadiomicsGLCM). Every feature must
agree to 1e-10 relative (the two differ only in the order of floating-point additions), on the
real breast MRI of the pyradiomics sdist, on phantom cases, and in the corner cases of the
class: few gray levels, gray levels missing from the ROI, an asymmetric GLCM, weighted angles.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import make_blob_mask, make_volume, pyradiomics_data
from IMNRiskLib.radiomics import features
from IMNRiskLib.inputs import imaging
from IMNRiskLib.radiomics.fastglcm import FastGLCM


def both(image: sitk.Image, mask: sitk.Image, params: dict) -> tuple:
    """(pyradiomics' values, IMNRisk's) for one image and mask."""
    stock = features.checked_extractor(params)
    fast = features.checked_extractor(params)
    features._compute_with_fast_classes(fast)
    return stock.execute(image, mask), fast.execute(image, mask)


def assert_same(stock: dict, fast: dict, case: str) -> int:
    names = [k for k in stock if not k.startswith("diagnostics_")]
    assert names == [k for k in fast if not k.startswith("diagnostics_")], case  # same features, same order
    for name in names:
        a, b = complex(stock[name]).real, complex(fast[name]).real
        assert math.isclose(a, b, rel_tol=1e-10, abs_tol=1e-12), (case, name, a, b)
    return sum("_glcm_" in n for n in names)


def prepared(image_path, mask_path, settings: features.ExtractionSettings):
    loaded = imaging.load_case(image_path, mask_path, min_voxels=1)
    return imaging.prepare(loaded, settings.smoothing_sigma_mm, features._normalize_kwargs(settings),
                           int(settings.setting.get("padDistance", 5)))


def params_of(settings: features.ExtractionSettings) -> dict:
    params = dict(settings.pyradiomics)
    params["setting"] = dict(params.get("setting", {}), label=1)
    return params


def test_real_breast_mri_all_851_features():
    data = pyradiomics_data()
    settings = features.load_settings()
    image, mask = prepared(data / "breast1_image.nrrd", data / "breast1_label.nrrd", settings)
    stock, fast = both(image, mask, params_of(settings))
    assert sum(not k.startswith("diagnostics_") for k in stock) == 851
    assert assert_same(stock, fast, "breast1") == 9 * 24  # Original + 8 wavelet bands x 24 GLCM features


def test_phantom_cases(phantom):
    from IMNRiskLib.inputs.cohort import read_cohort
    settings = features.load_settings()
    cohort = read_cohort(phantom / "cohort.csv")
    for case in cohort.cases[:3]:
        loaded = imaging.load_case(case.image, case.mask, case.phase, case.label)
        image, mask = imaging.prepare(loaded, settings.smoothing_sigma_mm, features._normalize_kwargs(settings),
                                      int(settings.setting.get("padDistance", 5)))
        stock, fast = both(image, mask, params_of(settings))
        assert assert_same(stock, fast, case.id) == 216


@pytest.mark.parametrize("setting", [
    {"binCount": 3},  # few gray levels
    {"binWidth": 5},  # many, with gaps inside the ROI
    {"binWidth": 25, "symmetricalGLCM": False},
    {"binWidth": 25, "weightingNorm": "euclidean"},
    {"binWidth": 25, "distances": [1, 2]},
])
def test_corner_cases_of_the_glcm(setting):
    image = make_volume(seed=3)
    array = sitk.GetArrayFromImage(image)
    array[array > np.percentile(array, 60)] += 200  # a gap in the histogram: bins missing from the ROI
    stepped = sitk.GetImageFromArray(array)
    stepped.CopyInformation(image)
    mask = make_blob_mask(stepped, radius=7)
    params = {"imageType": {"Original": {}}, "featureClass": {"glcm": None},
              "setting": {"label": 1, **setting}}
    stock, fast = both(stepped, mask, params)
    assert assert_same(stock, fast, str(setting)) == 24


def test_flat_region_gives_pyradiomics_answer():
    image = make_volume(seed=1)
    flat = sitk.GetImageFromArray(np.full(sitk.GetArrayFromImage(image).shape, 100, np.int16))
    flat.CopyInformation(image)
    mask = make_blob_mask(flat, radius=5)
    stock, fast = both(flat, mask, {"imageType": {"Original": {}}, "featureClass": {"glcm": None},
                                    "setting": {"label": 1, "binWidth": 25}})
    assert assert_same(stock, fast, "flat") == 24
    assert float(fast["original_glcm_MCC"]) == 1.0


def test_only_imnrisk_extractors_use_it():
    """pyradiomics' registry is untouched: a plain pyradiomics extractor (e.g. the benches'
    baseline) computes with pyradiomics' own class."""
    import radiomics
    assert radiomics.getFeatureClasses()["glcm"] is not FastGLCM
    assert issubclass(FastGLCM, radiomics.getFeatureClasses()["glcm"])


def random_glcm(rng: np.random.Generator, ng: int, isolated: int) -> tuple:
    """A normalised symmetric GLCM (1, ng, ng, 13) with `isolated` gray levels that neighbour only
    themselves (Q then has the eigenvalue 1 repeated), its px and py."""
    counts = rng.integers(0, 40, (ng, ng, 13)).astype(float) * (rng.random((ng, ng, 13)) < 0.3)
    counts[:isolated, :, :] = 0
    counts[:, :isolated, :] = 0
    counts[np.arange(isolated), np.arange(isolated), :] = rng.integers(1, 5, (isolated, 13))
    counts[isolated:, isolated:, :] += 1.0 * (np.arange(isolated, ng)[:, None] == np.arange(isolated, ng))[..., None]
    counts = counts + counts.transpose(1, 0, 2)
    p = (counts / counts.sum((0, 1), keepdims=True))[None]
    return p, p.sum(2, keepdims=True), p.sum(1, keepdims=True)


@pytest.mark.parametrize("ng,isolated", [(3, 0), (12, 0), (40, 0), (40, 2), (40, 5), (64, 1)])
def test_mcc_eigenvalue_equals_pyradiomics_way_per_angle(ng, isolated):
    """The symmetric eigenproblem with its Ritz correction for eps gives the second largest
    eigenvalue of pyradiomics' non-symmetric Q to 1e-12, with repeated eigenvalues too."""
    from IMNRiskLib.radiomics.fastglcm import _ritz_second_largest, _second_largest_of_q
    eps = np.spacing(1)
    for seed in range(5):
        p, px, py = random_glcm(np.random.default_rng(seed), ng, isolated)
        fast = _ritz_second_largest(p, px, py, eps)
        for angle in range(13):
            slow = _second_largest_of_q(p[0, :, :, angle], px[0, :, :, angle], py[0, :, :, angle], eps)
            assert math.isclose(fast[0, angle], slow, rel_tol=1e-10, abs_tol=1e-13), (seed, angle)
