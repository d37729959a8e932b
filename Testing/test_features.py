"""Features: the shipped DCE-MRI settings, formats, the cohort run (cache, resume, failures, Dask)."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from conftest import CASES, ROOT, pyradiomics_data, run_cli
from IMNRiskLib.radiomics import features
from IMNRiskLib.inputs import imaging
from IMNRiskLib.inputs.cohort import read_cohort
from test_imaging import write_dicom_series


@pytest.fixture(scope="module")
def dce_features():
    """dce_mri.yaml features of the five real cases."""
    data = pyradiomics_data()
    settings = features.load_settings()
    out = {}
    for case in CASES:
        loaded = imaging.load_case(data / f"{case}_image.nrrd", data / f"{case}_label.nrrd")
        out[case], _ = features.compute_features(loaded, settings)
    return pd.DataFrame(out).T


def test_dce_settings_give_851_finite_features(dce_features):
    assert dce_features.shape[1] == 851
    assert np.isfinite(dce_features.loc["breast1"].to_numpy()).all()
    by_type = dce_features.columns.str.split("_").str[0].value_counts()
    assert by_type["original"] == 107 and len(by_type) == 9 and (by_type.drop("original") == 93).all()


def test_texture_features_vary_across_cases(dce_features):
    texture = [c for c in dce_features.columns if c.split("_")[1] in ("glcm", "glrlm", "glszm", "gldm", "ngtdm")]
    assert len(texture) == 9 * 75  # glcm 24, glrlm 16, glszm 16, gldm 14, ngtdm 5
    spread = dce_features[texture].std() / (dce_features[texture].abs().mean() + 1e-12)
    constant = spread[spread < 1e-6]
    # a handful may be constant by construction; the bulk must vary between tumours
    assert len(constant) < 0.05 * len(texture), list(constant.index[:10])
    # e.g. number of grey levels actually used inside the breast tumour
    assert dce_features.loc["breast1", "original_glszm_ZoneEntropy"] > 3


def test_pyradiomics_defaults_collapse_mr_texture_our_settings_do_not():
    """Why dce_mri.yaml sets normalizeScale 100 / binWidth 5: normalize with the defaults
    (scale 1, bin width 25) leaves the tumour in one grey level."""
    data = pyradiomics_data()
    loaded = imaging.load_case(data / "breast1_image.nrrd", data / "breast1_label.nrrd")
    naive = features.settings_from_dict({"imageType": {"Original": {}}, "featureClass": {"glcm": None,
                                         "firstorder": None}, "setting": {"normalize": True}})
    ours = features.load_settings()
    naive_values, _ = features.compute_features(loaded, naive)
    our_values, _ = features.compute_features(loaded, ours)
    assert naive_values["original_firstorder_Entropy"] < 1.0  # at most two bins
    assert our_values["original_firstorder_Entropy"] > 3.0


def test_same_case_as_nrrd_nifti_and_dicom_gives_same_features(tmp_path):
    data = pyradiomics_data()
    image = sitk.ReadImage(str(data / "breast1_image.nrrd"))
    sitk.WriteImage(image, str(tmp_path / "breast1.nii.gz"))
    write_dicom_series(image, tmp_path / "breast1_dicom", temporal_tag=None)
    settings = features.load_settings()
    results = {}
    for name, path in {"nrrd": data / "breast1_image.nrrd", "nifti": tmp_path / "breast1.nii.gz",
                       "dicom": tmp_path / "breast1_dicom"}.items():
        results[name], _ = features.compute_features(
            imaging.load_case(path, data / "breast1_label.nrrd"), settings)
    for name in ("nifti", "dicom"):
        for key, value in results["nrrd"].items():
            assert math.isclose(results[name][key], value, rel_tol=1e-6, abs_tol=1e-9), (name, key)


def test_restricted_extraction_equals_full_values():
    data = pyradiomics_data()
    loaded = imaging.load_case(data / "breast1_image.nrrd", data / "breast1_label.nrrd")
    settings = features.load_settings()
    full, _ = features.compute_features(loaded, settings)
    wanted = ["original_shape_Elongation", "wavelet-LHL_glcm_Correlation", "wavelet-LHL_firstorder_Skewness",
              "wavelet-LHH_ngtdm_Contrast"]
    some, _ = features.compute_features(loaded, settings, feature_names=wanted)
    assert set(some) == set(wanted)
    for name in wanted:
        assert some[name] == pytest.approx(full[name], rel=1e-12)


AXIS_FEATURES = ("original_shape_MajorAxisLength", "original_shape_MinorAxisLength",
                 "original_shape_LeastAxisLength", "original_shape_Elongation", "original_shape_Flatness")


def shape_features_as_complex(monkeypatch, imaginary: float):
    """Make pyradiomics return the five eigenvalue shape features as complex128, as numpy >= 2.5 does."""
    real_make = features.make_extractor

    def make(settings, normalized_here):
        extractor = real_make(settings, normalized_here)
        execute = extractor.execute

        def complex_execute(image, mask):
            result = execute(image, mask)
            for name in AXIS_FEATURES:
                result[name] = np.complex128(complex(complex(result[name]).real, imaginary))  # numpy 2.5: already complex
            return result
        extractor.execute = complex_execute
        return extractor
    monkeypatch.setattr(features, "make_extractor", make)


def small_shape_case():
    """A synthetic blob and shape-only settings (fast)."""
    from conftest import make_blob_mask, make_volume
    image = make_volume()
    loaded = imaging.LoadedCase(image=image, mask=make_blob_mask(image), phase=1, n_phases=1)
    settings = features.settings_from_dict({"imageType": {"Original": {}}, "featureClass": {"shape": None}})
    return loaded, settings


def test_complex_shape_values_with_zero_imaginary_part_are_taken_as_real(monkeypatch):
    loaded, settings = small_shape_case()
    real, _ = features.compute_features(loaded, settings)
    shape_features_as_complex(monkeypatch, 0.0)
    taken, _ = features.compute_features(loaded, settings)  # ComplexWarning is an error in the suite
    assert all(type(taken[name]) is float for name in AXIS_FEATURES)
    assert taken == real


def test_complex_shape_values_with_nonzero_imaginary_part_are_refused(monkeypatch):
    loaded, settings = small_shape_case()
    shape_features_as_complex(monkeypatch, 1e-9)
    with pytest.raises(features.InputError) as refused:
        features.compute_features(loaded, settings)
    assert refused.value.field in AXIS_FEATURES
    assert "complex" in str(refused.value) and "\n" not in str(refused.value)


# --------------------------------------------------------------------------- cohort runs

def make_cohort(folder, broken=True, copies=1):
    """A manifest of the five real cases (and the breast case as NIfTI and DICOM), plus broken rows."""
    data = pyradiomics_data()
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(copies):
        for case in CASES:
            rows.append({"ID": f"{case}" + (f"_{k}" if k else ""), "Image": str(data / f"{case}_image.nrrd"),
                         "Mask": str(data / f"{case}_label.nrrd")})
    image = sitk.ReadImage(str(data / "breast1_image.nrrd"))
    sitk.WriteImage(image, str(folder / "breast1.nii.gz"))
    write_dicom_series(image, folder / "breast1_dicom", temporal_tag=None)
    rows.append({"ID": "breast1_nifti", "Image": "breast1.nii.gz", "Mask": str(data / "breast1_label.nrrd")})
    rows.append({"ID": "breast1_dicom", "Image": "breast1_dicom", "Mask": str(data / "breast1_label.nrrd")})
    if broken:
        (folder / "corrupt.nrrd").write_bytes(b"NRRD0004\nnot really\n")
        rows.append({"ID": "P_missing", "Image": "absent.nrrd", "Mask": str(data / "breast1_label.nrrd")})
        rows.append({"ID": "P_corrupt", "Image": "corrupt.nrrd", "Mask": str(data / "breast1_label.nrrd")})
        rows.append({"ID": "P_label", "Image": str(data / "breast1_image.nrrd"),
                     "Mask": str(data / "breast1_label.nrrd"), "Label": "5"})
    pd.DataFrame(rows).to_csv(folder / "cohort.csv", index=False)
    return folder / "cohort.csv"


def test_cli_extract_writes_features_provenance_and_failures(tmp_path):
    cohort = make_cohort(tmp_path / "cohort")
    out = tmp_path / "out" / "features.csv"
    result = run_cli("extract", cohort, "--out", out, "--jobs", "2")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "7 of 10 case(s) extracted (0 from cache), 3 failed; 851 features" in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("imnrisk: error:")]
    assert len(errors) == 3
    assert any("ID P_missing" in e and "absent.nrrd" in e and "image file not found" in e for e in errors)
    assert any("ID P_corrupt" in e and "cannot read image" in e for e in errors)
    assert any("ID P_label" in e and "Label: label 5 not present" in e for e in errors)

    table = features.read_features(out)
    assert list(table.index) == [*CASES, "breast1_nifti", "breast1_dicom"]
    assert table.shape[1] == 851 and np.isfinite(table.to_numpy()).all()
    np.testing.assert_allclose(table.loc["breast1_dicom"], table.loc["breast1"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(table.loc["breast1_nifti"], table.loc["breast1"], rtol=1e-6, atol=1e-9)
    failures = pd.read_csv(out.with_name("features.failures.csv"))
    assert sorted(failures["ID"]) == ["P_corrupt", "P_label", "P_missing"]
    provenance = features.output_paths(out)["provenance"].read_text(encoding="utf-8")
    assert '"pyradiomics": "v3.0.1"' in provenance or '"pyradiomics": "3.0.1"' in provenance
    assert str(pyradiomics_data()) not in provenance  # no paths (they may carry names)

    # a second run refuses to overwrite; with --force it is all cache hits and equal values
    again = run_cli("extract", cohort, "--out", out, "--jobs", "2")
    assert again.returncode == 2 and "exists; pass --force" in again.stderr
    forced = run_cli("extract", cohort, "--out", out, "--force", "--quiet")
    assert "(7 from cache)" in forced.stderr
    pd.testing.assert_frame_equal(features.read_features(out), table)


def test_killed_run_resumes_from_cache(tmp_path):
    cohort = make_cohort(tmp_path / "cohort", broken=False, copies=3)
    out = tmp_path / "features.csv"
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-m", "IMNRiskLib", "extract", str(cohort), "--out", str(out),
                             "--jobs", "1", "--cache", str(cache), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(cache.glob("??/*.json"))) < 3:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(cache.glob("??/*.json")))
    assert 3 <= done < 17, "the run finished before it could be killed"
    assert not out.exists()  # nothing half-written
    resumed = run_cli("extract", cohort, "--out", out, "--jobs", "2", "--cache", cache, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    # copies of one image share a content key, so `done` entries may serve more cases
    reused = int(re.search(r"17 of 17 case\(s\) extracted \((\d+) from cache\)", resumed.stderr).group(1))
    assert done <= reused < 17
    table = features.read_features(out)
    fresh = features.extract_cohort(read_cohort(cohort), features.load_settings(), tmp_path / "fresh",
                                    show_bar=False).features
    np.testing.assert_allclose(table.to_numpy(), fresh.to_numpy(), rtol=1e-12)


def test_dask_local_cluster_gives_the_same_features(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    cohort = read_cohort(make_cohort(tmp_path / "cohort", broken=False))
    settings = features.load_settings()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None, processes=True) as cluster:
        run = features.extract_cohort(cohort, settings, tmp_path / "cache_dask", dask_address=cluster.scheduler_address,
                                      show_bar=False)
    local = features.extract_cohort(cohort, settings, tmp_path / "cache_local", jobs=1, show_bar=False)
    assert run.failures == [] and run.features.shape == (7, 851)
    pd.testing.assert_frame_equal(run.features, local.features)


def test_cli_params_file_errors_are_clear(tmp_path):
    cohort = make_cohort(tmp_path / "c", broken=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("setting:\n  binWidth: 'wide'\n", encoding="utf-8")
    result = run_cli("extract", cohort, "--out", tmp_path / "f.csv", "--params", bad)
    assert result.returncode == 2
    assert "bad.yaml: setting: binWidth: not a valid pyradiomics parameter file: Value 'wide'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "f.csv").exists()


def test_first_case_imports_leave_nothing_for_the_extraction_to_import():
    """After `import_first_case_modules`, extracting the real breast MRI (the shipped settings and the
    bench's plain ones) imports no IMNRisk or scipy module: what bench_extract.py's clock then times
    is extraction, as for the tools it compares with."""
    code = f"""
import sys
from IMNRiskLib.radiomics import features
from IMNRiskLib.inputs import imaging
features.import_first_case_modules()
before = set(sys.modules)
data = {str(pyradiomics_data())!r}
for settings in (features.load_settings(), features.load_settings({str(ROOT / "bench/params/plain_bincount64.yaml")!r})):
    features.compute_features(imaging.load_case(data + "/breast1_image.nrrd", data + "/breast1_label.nrrd"), settings)
print(sorted(m for m in set(sys.modules) - before if m.startswith(("IMNRiskLib", "scipy"))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
