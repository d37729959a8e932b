"""One orientation: the same anatomy gives the same features however a file stores it.

Copies of a real case (pyradiomics' breast1) and of a phantom case are flipped along each axis and
their axes permuted, with SimpleITK filters that keep every voxel's physical position (checked on
the tumour's centroid). With IMNRisk's default settings (`imnrisk: orientation: LPS`) every copy
gives the same 851 features; with the orientation step off they differ (wavelet bands follow the
voxel order), which is what the step is for.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Dict

import numpy as np
import pytest
import SimpleITK as sitk

from IMNRiskLib.radiomics import features, ibsi
from IMNRiskLib.inputs import imaging
from IMNRiskLib import scoring
from IMNRiskLib.app import synth
from IMNRiskLib.core.errors import InputError

TEXTURE = ("_glcm_", "_glrlm_", "_glszm_", "_gldm_", "_ngtdm_")
# (flip x, y, z) or a permutation of the axes (and then a flip): each a way a file may store the anatomy
COPIES = {"flip x": ("flip", [True, False, False]), "flip y": ("flip", [False, True, False]),
          "flip z (descending slices)": ("flip", [False, False, True]),
          "permute y x z": ("permute", [1, 0, 2]), "permute z x y": ("permute", [2, 0, 1]),
          "permute y z x, flip all": ("both", [1, 2, 0])}


def stored_as(image: sitk.Image, how: str, arg) -> sitk.Image:
    """The same anatomy stored another way (voxels moved, physical geometry kept)."""
    if how == "flip":
        return sitk.Flip(image, arg)
    permuted = sitk.PermuteAxes(image, arg)
    return permuted if how == "permute" else sitk.Flip(permuted, [True, True, True])


def copies_of(case: imaging.LoadedCase) -> Dict[str, imaging.LoadedCase]:
    """The case as stored, and each of COPIES applied to its image and mask alike."""
    out = {"as stored": case}
    for name, (how, arg) in COPIES.items():
        out[name] = imaging.LoadedCase(image=stored_as(case.image, how, arg), mask=stored_as(case.mask, how, arg),
                                       phase=case.phase, n_phases=case.n_phases)
    return out


def centroid_mm(mask: sitk.Image) -> np.ndarray:
    """Physical position of the tumour's centroid."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    return np.array(stats.GetCentroid(1))


def breast1(data) -> imaging.LoadedCase:
    return imaging.load_case(data / "breast1_image.nrrd", data / "breast1_label.nrrd")


def phantom_case() -> imaging.LoadedCase:
    """Phase index 1 of a small-tumour phantom patient (anisotropic 0.9 x 0.9 x 2 mm voxels)."""
    grid = synth.DEFAULT_GRID
    out = synth.render_patient([0, 3, 7], "lateral", 14.0, 0.5, grid)
    image = sitk.GetImageFromArray(out["phases"][1].astype(np.float32))
    mask = sitk.GetImageFromArray(out["mask"])
    for im in (image, mask):
        im.SetSpacing(grid["spacing"])
        im.SetOrigin((-70.0, 12.5, 30.0))
    return imaging.LoadedCase(image=image, mask=mask, phase=1, n_phases=synth.N_PHASES)


def off(settings: features.ExtractionSettings) -> features.ExtractionSettings:
    """The same settings without the orientation step (the file's voxel order)."""
    return features.ExtractionSettings(**{**settings.__dict__, "orientation": None})


@pytest.fixture(scope="module")
def cases(pyrad_data) -> Dict[str, Dict[str, imaging.LoadedCase]]:
    return {"breast1": copies_of(breast1(pyrad_data)), "phantom": copies_of(phantom_case())}


@pytest.mark.parametrize("which", ["breast1", "phantom"])
def test_copies_are_the_same_anatomy(cases, which):
    """Each copy stores its voxels in another order but puts the tumour at the same physical point,
    and the orientation step brings every copy back to one voxel array."""
    stored = cases[which]["as stored"]
    reference = sitk.GetArrayFromImage(imaging.orient(stored.image, "LPS"))
    for name, case in cases[which].items():
        assert np.allclose(centroid_mm(case.mask), centroid_mm(stored.mask), atol=1e-6, rtol=0), name
        oriented = imaging.orient(case.image, "LPS")
        assert imaging.orientation_of(oriented) == "LPS" and np.array_equal(oriented.GetDirection(), np.eye(3).ravel())
        assert np.array_equal(sitk.GetArrayFromImage(oriented), reference), name
        if name != "as stored":
            assert not np.array_equal(sitk.GetArrayViewFromImage(case.image).ravel(),
                                      sitk.GetArrayViewFromImage(stored.image).ravel()), name  # really reordered


@pytest.mark.parametrize("which", ["breast1", "phantom"])
def test_default_settings_give_identical_features_for_every_copy(cases, which):
    """All features the default extractor computes (851): within 1e-9 relative, texture exactly."""
    settings = features.load_settings()
    assert settings.orientation == "LPS"
    reference, _ = features.compute_features(cases[which]["as stored"], settings)
    assert len(reference) == 851
    for name, case in cases[which].items():
        values, _ = features.compute_features(case, settings)
        assert list(values) == list(reference), name
        for key, ref in reference.items():
            if any(t in key for t in TEXTURE):
                assert values[key] == ref, (name, key)
            else:
                assert math.isclose(values[key], ref, rel_tol=1e-9, abs_tol=1e-12), (name, key, values[key], ref)


# wavelet features of the Rad-Score the demo phantom's model selects, and two of each kind
DIRECTIONAL = ["wavelet-LLH_glrlm_HighGrayLevelRunEmphasis", "wavelet-HLL_glrlm_HighGrayLevelRunEmphasis",
               "wavelet-LLH_firstorder_Mean", "wavelet-LHL_glcm_Contrast", "wavelet-HHL_firstorder_Energy"]


@pytest.mark.parametrize("which", ["breast1", "phantom"])
def test_without_the_orientation_step_the_copies_differ(cases, which):
    """The test above could fail: as the file stores the voxels, every copy gives other wavelet
    features (by more than 1% in at least one of these), and the step restores them."""
    settings = features.load_settings()
    reference, _ = features.compute_features(cases[which]["as stored"], off(settings), feature_names=DIRECTIONAL)
    for name, case in cases[which].items():
        if name == "as stored":
            continue
        plain, _ = features.compute_features(case, off(settings), feature_names=DIRECTIONAL)
        oriented, _ = features.compute_features(case, settings, feature_names=DIRECTIONAL)  # what predict does
        worst = max(abs(plain[k] - reference[k]) / abs(reference[k]) for k in DIRECTIONAL)
        assert worst > 0.01, (name, worst)
        assert oriented == reference, name  # stored as LPS, oriented or not: the same values


def test_identity_direction_images_are_unchanged_by_the_step(cases):
    """A phantom (identity direction, as `imnrisk synth` writes) gives byte-identical features with the
    step on and off: the step returns such an image as it is, so the demo's numbers stay."""
    case = cases["phantom"]["as stored"]
    assert imaging.orientation_of(case.image) == "LPS" and imaging.orient(case.image, "LPS") is case.image
    on, _ = features.compute_features(case, features.load_settings())
    plain, _ = features.compute_features(case, off(features.load_settings()))
    assert on.keys() == plain.keys() and all(on[k] == plain[k] for k in on)


def test_extract_orients_a_file_stored_with_descending_slices(pyrad_data, tmp_path):
    """The cohort path (extract_case, as `imnrisk extract` runs it): breast1 written with its slices
    in descending order extracts as breast1; the setting travels in the task (and the cache key)."""
    loaded = breast1(pyrad_data)
    sitk.WriteImage(sitk.Flip(loaded.image, [False, False, True]), str(tmp_path / "desc_image.nrrd"))
    sitk.WriteImage(sitk.Flip(loaded.mask, [False, False, True]), str(tmp_path / "desc_label.nrrd"))
    assert imaging.orientation_of(sitk.ReadImage(str(tmp_path / "desc_image.nrrd"))) == "LPI"
    settings = features.load_settings()
    settings.pyradiomics["featureClass"] = {"firstorder": None, "glrlm": None}  # a subset: the path is the point
    results = {}
    for name, stem in (("asc", pyrad_data / "breast1"), ("desc", tmp_path / "desc")):
        case = SimpleNamespace(id=name, image=f"{stem}_image.nrrd", mask=f"{stem}_label.nrrd", phase=None, label=1)
        task = features._task(case, settings)
        assert task["settings"]["orientation"] == "LPS"
        result = features.extract_case(task)
        assert "error" not in result, result
        results[name] = result["features"]
    assert results["asc"] == results["desc"]
    assert any(k.startswith("wavelet-") for k in results["asc"])


def test_orientation_setting_values():
    """LPS in the default parameter file; a plain pyradiomics file (no key) and none/null/false mean
    the file's own voxel order and leave the settings (and their hash) as before the step."""
    default = features.load_settings()
    assert default.to_dict()["imnrisk"]["orientation"] == "LPS"
    plain = features.settings_from_dict({"imageType": {"Original": {}}})
    assert plain.orientation is None and "orientation" not in plain.to_dict()["imnrisk"]
    for value in ("none", "None", None, False):
        s = features.settings_from_dict({"imageType": {"Original": {}}, "imnrisk": {"orientation": value}})
        assert s.orientation is None and s.digest() == plain.digest()
    assert features.settings_from_dict({"imnrisk": {"orientation": "rAs"}}).orientation == "RAS"
    assert features.settings_from_dict({"imageType": {"Original": {}}, "imnrisk": {"orientation": "LPS"}}
                                       ).digest() != plain.digest()
    for bad in ("LPX", "LLS", "LP", "LPSI", 3, True):
        with pytest.raises(InputError) as info:
            features.settings_from_dict({"imnrisk": {"orientation": bad}}, "p.yaml")
        assert info.value.field == "imnrisk: orientation"


def test_model_files_with_and_without_the_key(pyrad_data):
    """A model trained before the step (no key) scores without it, as its features were computed;
    a new one records LPS and scores with it; both read back as recorded (no mismatch)."""
    running = features.software_versions()
    new = features.load_settings().to_dict()
    old = features.load_settings().to_dict()
    del old["imnrisk"]["orientation"]
    for extraction, expected in ((new, "LPS"), (old, None)):
        model = SimpleNamespace(extraction=extraction, software=running)  # the accessors scoring reads
        assert scoring.model_settings(model).orientation == expected
        assert scoring.version_mismatches(model, running) == []
    assert "LPS order" in ibsi.describe_resampling(new) and "order" not in ibsi.describe_resampling(old)


def test_an_oblique_image_goes_to_the_nearest_axes():
    """An image tilted 20 degrees (and stored with descending x) is put in the nearest orientation:
    its voxels reordered, its direction still the tilt (no resampling), its anatomy in place."""
    angle = math.radians(20)
    tilt = np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    image = sitk.GetImageFromArray(np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6))
    image.SetDirection((tilt @ np.diag([-1, 1, 1])).ravel().tolist())
    assert imaging.orientation_of(image) == "RPS"
    oriented = imaging.orient(image, "LPS")
    assert imaging.orientation_of(oriented) == "LPS"
    assert np.allclose(np.array(oriented.GetDirection()).reshape(3, 3), tilt)
    corner = image.TransformIndexToPhysicalPoint((5, 0, 0))
    assert np.allclose(oriented.TransformIndexToPhysicalPoint((0, 0, 0)), corner)
    assert np.array_equal(sitk.GetArrayFromImage(oriented), sitk.GetArrayFromImage(image)[:, :, ::-1])
