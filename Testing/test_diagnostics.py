"""The pyradiomics diagnostics IMNRisk keeps (hashes, sizes, mean, the mask's box and counts) are
computed by IMNRisk (`radiomics/diagnostics.py`) with pyradiomics' own values, and left to pyradiomics
where it resamples."""

from __future__ import annotations

import SimpleITK as sitk

from conftest import make_blob_mask, make_volume
from IMNRiskLib.inputs import imaging
from IMNRiskLib.radiomics import diagnostics, features

SETTINGS = {  # the shipped settings (a tumour in one piece); float32 voxels as stored (two pieces)
    "shipped": None,
    "as stored": {"imageType": {"Original": {}}, "featureClass": {"firstorder": None, "shape": None},
                  "setting": {"binCount": 16}},
}


def pyradiomics_own(loaded: imaging.LoadedCase, settings: features.ExtractionSettings) -> dict:
    """The kept diagnostics as pyradiomics' GeneralInfo gives them for the image IMNRisk hands over."""
    image, mask = features.prepared_case(loaded, settings)
    extractor = features.make_extractor(settings, normalized_here=features._normalize_kwargs(settings) is not None)
    extractor.settings["additionalInfo"] = True
    result = extractor.execute(image, mask)
    return {k: v if isinstance(v, (str, int, float)) else str(v) for k, v in result.items() if k in diagnostics.KEPT}


def test_kept_diagnostics_equal_pyradiomics_own():
    image = make_volume(shape=(24, 40, 40))
    two_regions = sitk.Maximum(make_blob_mask(image, radius=6), make_blob_mask(image, center=(12, 8, 8), radius=3))
    for (name, params), mask, regions in zip(SETTINGS.items(), (make_blob_mask(image, radius=7), two_regions), (1, 2)):
        settings = features.load_settings() if params is None else features.settings_from_dict(params)
        loaded = imaging.LoadedCase(image=image, mask=mask, phase=0, n_phases=1, stored_float32=True)
        _, kept = features.compute_features(loaded, settings)
        assert kept == pyradiomics_own(loaded, settings), name
        assert sorted(kept) == sorted(diagnostics.KEPT), name
        assert kept["diagnostics_Mask-original_VolumeNum"] == regions, name


def test_hash_is_simpleitks_for_each_pixel_type():
    image = make_volume(shape=(9, 11, 13))
    for pixel in (sitk.sitkFloat32, sitk.sitkFloat64, sitk.sitkInt16, sitk.sitkUInt8, sitk.sitkUInt32):
        cast = sitk.Cast(image, pixel)
        assert diagnostics.sha1_of_image(cast) == sitk.Hash(cast), pixel


def test_pyradiomics_computes_them_where_it_resamples_or_is_told_not_to():
    assert diagnostics.computed_here({"additionalInfo": True})
    assert not diagnostics.computed_here({"additionalInfo": False})
    assert not diagnostics.computed_here({"interpolator": "sitkBSpline", "resampledPixelSpacing": [1, 1, 1]})


def test_pre_crop_is_pyradiomics_own():
    """The region pyradiomics' loadImage pre-crops to (its checkMask's box plus padDistance), voxels and
    geometry; at an edge of the volume too; a mask without the label is left to pyradiomics."""
    from radiomics import featureextractor
    image = make_volume(shape=(24, 40, 40))
    settings = features.load_settings()
    extractor = features.make_extractor(settings, normalized_here=True)
    for center in (None, (3, 4, 36)):
        mask = make_blob_mask(image, center=center, radius=5)
        ours = diagnostics.pre_crop(image, mask, extractor.settings)
        theirs = featureextractor.RadiomicsFeatureExtractor.loadImage(image, mask, None, **extractor.settings)
        for a, b in zip(ours, theirs):
            assert a.GetSize() == b.GetSize() and a.GetOrigin() == b.GetOrigin(), center
            assert (sitk.GetArrayViewFromImage(a) == sitk.GetArrayViewFromImage(b)).all(), center
        assert all(a < b for a, b in zip(ours[0].GetSize(), image.GetSize()))  # it did crop
    assert diagnostics.pre_crop(image, make_blob_mask(image, label=2), extractor.settings) is None
