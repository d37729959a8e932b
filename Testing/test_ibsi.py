"""IBSI conformance on IBSI-1's digital phantom, through IMNRisk's own extraction path; the opt-in
IBSI profile; the shipped conformance table and the README's section equal a fresh measurement."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from conftest import ROOT, run_cli
from IMNRiskLib.radiomics import features, ibsi, phantom
from IMNRiskLib.inputs import imaging
from IMNRiskLib.core.errors import InputError

DATA = ROOT / "Testing" / "data" / "ibsi"
REFERENCE = DATA / "ibsi_1_dig_phantom_reference.csv"
EXPECTED_DEVIATIONS = {"original_shape_MinorAxisLength": "shape_MinorAxisLength",
                       "original_shape_LeastAxisLength": "shape_LeastAxisLength",
                       "original_firstorder_Kurtosis": "firstorder_Kurtosis"}


@pytest.fixture(scope="module")
def phantom_values():
    """pyradiomics' own features of the phantom (IMNRisk's default: no IBSI variants)."""
    return phantom.phantom_features(DATA)


@pytest.fixture(scope="module")
def reference():
    return ibsi.read_reference(REFERENCE)


def mask_voxels() -> int:
    return int((sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / "mask.nii.gz"))) == 1).sum())


def ibsi_params(tmp_path, **changes):
    """The phantom's parameter file with the IBSI profile on (and any other change)."""
    params = yaml.safe_load((DATA / "phantom_params.yaml").read_text(encoding="utf-8"))
    params["imnrisk"]["ibsi_variants"] = True
    for key, value in changes.items():
        params[key] = value
    path = tmp_path / "ibsi.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def test_the_criterion_rounds_to_three_significant_digits_then_applies_the_tolerance():
    assert ibsi.round_significant(2.6453795) == 2.65 and ibsi.round_significant(0.041057) == 0.0411
    assert ibsi.round_significant(-0.35462) == -0.355 and ibsi.round_significant(556.33) == 556
    assert ibsi.matches(-0.35462, -0.355, 0) and not ibsi.matches(-0.3544, -0.355, 0)
    assert ibsi.matches(9.308, 9.31, 0.06) and not ibsi.matches(9.2449, 9.31, 0.06)
    assert ibsi.matches(559.6, 556, 4) and not ibsi.matches(560.6, 556, 4)  # 560 in, 561 out


def test_phantom_every_mapped_feature_matches_ibsi_but_the_named_conventions(phantom_values, reference):
    original = {k: v for k, v in phantom_values.items() if k.startswith("original_")}
    assert original == phantom_values  # IBSI-1's configuration: the Original image only
    names = {"_".join(ibsi.split_name(k)[1:]) for k in original}
    # every mapped feature was extracted, and every feature extracted is mapped or named as having no tag
    assert set(ibsi.IBSI_TAGS) <= names <= set(ibsi.IBSI_TAGS) | set(ibsi.UNMAPPED)
    assert not set(ibsi.IBSI_TAGS) & set(ibsi.UNMAPPED)
    assert all(tag in reference for tag in ibsi.IBSI_TAGS.values())  # each mapped one has a reference
    checks = ibsi.conformance(original, reference)
    assert {c.feature for c in checks} == {k for k in original if ibsi.ibsi_tag(k)}
    misses = {c.feature: c for c in checks if not c.match}
    assert set(misses) == set(EXPECTED_DEVIATIONS)
    for name, key in EXPECTED_DEVIATIONS.items():
        assert misses[name].reason == ibsi.CONVENTIONS[key] != ""
    assert all(c.reason == "" for c in checks if c.match)


def test_the_deviations_are_exactly_the_named_conventions(phantom_values, reference):
    n = mask_voxels()
    assert n == 74
    for name in ("MajorAxisLength", "MinorAxisLength", "LeastAxisLength"):
        ref, tol = reference[ibsi.IBSI_TAGS[f"shape_{name}"]]
        # covariance N vs N - 1: IBSI's length is sqrt(74/73) times pyradiomics'
        assert ibsi.matches(phantom_values[f"original_shape_{name}"] * math.sqrt(n / (n - 1)), ref, tol)
    ref, tol = reference["stat_kurt"]
    assert ibsi.matches(phantom_values["original_firstorder_Kurtosis"] - 3.0, ref, tol)  # Pearson vs excess
    # Elongation and Flatness are eigenvalue ratios: the factor cancels, both match as they are
    v = phantom_values
    major = v["original_shape_MajorAxisLength"]
    assert v["original_shape_Elongation"] == pytest.approx(v["original_shape_MinorAxisLength"] / major)
    assert v["original_shape_Flatness"] == pytest.approx(v["original_shape_LeastAxisLength"] / major)
    for name in ("Elongation", "Flatness"):
        ref, tol = reference[ibsi.IBSI_TAGS[f"shape_{name}"]]
        assert ibsi.matches(v[f"original_shape_{name}"], ref, tol)


def test_shipped_table_and_readme_section_equal_a_fresh_measurement():
    fresh = phantom.measure_phantom(DATA)
    shipped = ibsi.load_table()
    assert list(shipped["feature"]) == list(fresh["feature"])
    for column in ("ibsi_tag", "match", "reason", "pyradiomics"):
        assert list(shipped[column]) == list(fresh[column]), column
    assert np.allclose(shipped["value"], fresh["value"], rtol=1e-6, atol=1e-12)
    assert np.array_equal(shipped[["reference", "tolerance"]].to_numpy(), fresh[["reference", "tolerance"]].to_numpy())
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split(ibsi.README_START, 1)[1].split(ibsi.README_END, 1)[0].strip()
    assert section == ibsi.readme_section(fresh).strip()
    c = ibsi.counts(fresh)
    assert f"| all |  | {c['mapped']} | {c['match']} |" in section
    assert c["variants"] == c["variants_match"] == len(ibsi.CONVENTIONS)


def test_ibsi_profile_extract_reports_the_variants_beside_pyradiomics_own(tmp_path, phantom_values, reference):
    cohort = tmp_path / "cohort.csv"
    cohort.write_text(f"ID,Image,Mask\nIBSI1,{DATA / 'phantom.nii.gz'},{DATA / 'mask.nii.gz'}\n", encoding="utf-8")
    out = tmp_path / "features.csv"
    result = run_cli("extract", cohort, "--out", out, "--params", ibsi_params(tmp_path), "--quiet", "--jobs", "1")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out, dtype={"ID": str}).set_index("ID")
    columns = list(table.columns)
    variants = [c for c in columns if c.endswith(ibsi.IBSI_SUFFIX)]
    assert {"_".join(ibsi.split_name(ibsi.pyradiomics_feature(c))[1:]) for c in variants} == set(ibsi.CONVENTIONS)
    for name in variants:  # each right beside pyradiomics' own, which is unchanged
        base = name[: -len(ibsi.IBSI_SUFFIX)]
        assert columns.index(name) == columns.index(base) + 1
        ref, tol = reference[ibsi.ibsi_tag(name)]
        assert ibsi.matches(table.loc["IBSI1", name], ref, tol), name
    own = [c for c in columns if not c.endswith(ibsi.IBSI_SUFFIX)]
    assert own == list(phantom_values)
    assert np.allclose(table.loc["IBSI1", own].to_numpy(float), [phantom_values[c] for c in own], rtol=1e-12)
    provenance = (tmp_path / "features.provenance.json").read_text(encoding="utf-8")
    assert '"ibsi_variants": true' in provenance


def test_variants_are_computed_alone_for_scoring_and_for_every_image_type(tmp_path):
    settings = features.load_settings(ibsi_params(tmp_path, imageType={"Original": {}, "Wavelet": {}}))
    loaded = imaging.load_case(DATA / "phantom.nii.gz", DATA / "mask.nii.gz", None, 1, settings.min_tumour_voxels)
    full, _ = features.compute_features(loaded, settings)
    kurtosis = [k for k in full if k.endswith("_firstorder_Kurtosis")]
    assert len(kurtosis) == 9  # Original + 8 wavelet sub-bands
    for name in kurtosis:
        assert full[name + ibsi.IBSI_SUFFIX] == pytest.approx(full[name] - 3.0, abs=1e-12)
    wanted = ["wavelet-HLH_firstorder_Kurtosis_IBSI", "original_shape_LeastAxisLength_IBSI"]
    only, _ = features.compute_features(loaded, settings, feature_names=wanted)  # what predict does
    assert sorted(only) == sorted(wanted)
    assert all(only[k] == pytest.approx(full[k], rel=1e-12) for k in wanted)


def test_default_settings_are_unchanged_and_bad_profile_values_are_refused():
    default = features.load_settings()
    assert default.ibsi_variants is False and "ibsi_variants" not in default.to_dict()["imnrisk"]
    data = yaml.safe_load((DATA / "phantom_params.yaml").read_text(encoding="utf-8"))
    data["imnrisk"]["ibsi_variants"] = "yes"
    with pytest.raises(InputError, match="must be true or false"):
        features.settings_from_dict(data, "p.yaml")
    data["imnrisk"]["ibsi_variants"] = True
    data["setting"]["additionalInfo"] = False
    with pytest.raises(InputError, match="must not be false with imnrisk: ibsi_variants"):
        features.settings_from_dict(data, "p.yaml")


def test_reporting_items_assume_pyradiomics_own_defaults():
    from radiomics import featureextractor, imageoperations
    defaults = featureextractor.RadiomicsFeatureExtractor._getDefaultSettings()
    for key, value in ibsi.PYRADIOMICS_DEFAULTS.items():
        if key in defaults:
            assert defaults[key] == value, key
    edges = imageoperations.getBinEdges(np.array([0.0, 100.0]))  # no binWidth given: pyradiomics' default
    assert np.diff(edges)[0] == ibsi.PYRADIOMICS_DEFAULTS["binWidth"]


def test_reporting_items_describe_each_setting_as_the_extraction_used_it():
    default = features.load_settings().to_dict()
    software = {"pyradiomics": "v9.9", "imnrisk": "0.1.0"}
    items = {t: text for _, t, text in ibsi.reporting_items(default, software, ["original_firstorder_Kurtosis"])}
    assert "pyradiomics v9.9 through IMNRisk 0.1.0" in items["Feature extraction software and version"]
    table = ibsi.load_table()
    assert "this extraction used v9.9: not verified" in items["IBSI conformance"]
    assert "IBSI profile off" in items["IBSI conformance"]
    assert "(original_firstorder_Kurtosis)" in items["IBSI conformance"]
    assert f"fixed bin number (FBN): {default['pyradiomics']['setting']['binCount']} bins" in items["Discretisation"]
    assert items["Interpolation and resampling"].startswith("none")
    assert "Wavelet (coif1, undecimated" in items["Filters (image types)"]
    assert "Gaussian smoothing sigma 1 mm" in items["Smoothing and normalisation"]
    assert "x 100" in items["Smoothing and normalisation"]
    other = {"pyradiomics": {"imageType": {"Original": {}, "LoG": {"sigma": [2.0, 3.0]}},
                             "setting": {"resampledPixelSpacing": [1, 1, 1], "force2D": True, "removeOutliers": 3}},
             "imnrisk": {"smoothing_sigma_mm": 0.0, "ibsi_variants": True}}
    software["pyradiomics"] = table["pyradiomics"].iloc[0]
    names = ["original_firstorder_Kurtosis_IBSI", "log-sigma-2-0-mm-3D_glcm_Id"]
    items = {t: text for _, t, text in ibsi.reporting_items(other, software, names)}
    assert "not verified" not in items["IBSI conformance"] and "IBSI profile on" in items["IBSI conformance"]
    assert "1 on filtered images" in items["IBSI conformance"]
    assert "0 with a non-IBSI convention" in items["IBSI conformance"]
    assert "bin width 25" in items["Discretisation"]  # pyradiomics' default when none is given
    assert "resampled to [1, 1, 1] mm" in items["Interpolation and resampling"]
    assert "sitkBSpline" in items["Interpolation and resampling"]
    assert "LoG (sigma [2.0, 3.0] mm" in items["Filters (image types)"]
    assert items["Smoothing and normalisation"].startswith("no smoothing; no intensity normalisation")
    assert items["Texture matrices"].startswith("2D")


def test_a_model_trained_with_the_profile_scores_with_it(tmp_path):
    from types import SimpleNamespace

    from IMNRiskLib.scoring import model_settings
    on = features.load_settings(ibsi_params(tmp_path))
    assert on.ibsi_variants and on.to_dict()["imnrisk"]["ibsi_variants"] is True
    assert model_settings(SimpleNamespace(extraction=on.to_dict())).ibsi_variants is True
    off = features.load_settings().to_dict()
    assert model_settings(SimpleNamespace(extraction=off)).ibsi_variants is False


def test_extract_refuses_a_bad_profile_value_in_one_line(tmp_path):
    params = yaml.safe_load((DATA / "phantom_params.yaml").read_text(encoding="utf-8"))
    params["imnrisk"]["ibsi_variants"] = "maybe"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    cohort = tmp_path / "cohort.csv"
    cohort.write_text(f"ID,Image,Mask\nP1,{DATA / 'phantom.nii.gz'},{DATA / 'mask.nii.gz'}\n", encoding="utf-8")
    result = run_cli("extract", cohort, "--out", tmp_path / "f.csv", "--params", bad, "--quiet")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line, = result.stderr.strip().splitlines()
    assert line.startswith(f"imnrisk: error: {bad}: imnrisk: ibsi_variants: must be true or false")
    assert not (tmp_path / "f.csv").exists()
