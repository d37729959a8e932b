"""Feature stability: Mask2 in the manifest, the second reader's features, ICC(2,1) equal to R, and
the ICC filter as the first selection step, refitted per training sample, reported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, run_cli
from IMNRiskLib.radiomics import stability
from IMNRiskLib.radiomics.features import output_paths, read_features, sha256_of_file
from IMNRiskLib.modelling.selection import ICCFilter, radiomics_pipeline

R_DIR = ROOT / "Testing" / "R"
PARAMS = ROOT / "Testing" / "data" / "original_only.yaml"
READ_TWICE = 60  # patients of the shared phantom given a second reading in the training test


def r_reference():
    return json.loads((R_DIR / "icc_reference.json").read_text(encoding="utf-8"))


def r_table() -> pd.DataFrame:
    """R's data set as an IMNRisk training table: first reader's columns, then the suffixed second's."""
    d = pd.read_csv(R_DIR / "data" / "icc.csv").set_index("ID")
    names = [c[:-3] for c in d.columns if c.endswith(".r1")]
    first = d[[f"{n}.r1" for n in names]].set_axis(names, axis=1)
    second = d[[f"{n}.r2" for n in names]].set_axis(names, axis=1)
    return stability.with_reader2(first, second)


# --------------------------------------------------------------------------- ICC against R

def test_icc_equals_r_irr_and_psych_to_1e10():
    ref, icc = r_reference(), stability.feature_icc(r_table())
    assert set(icc.index) == set(ref["features"])
    compared = 0
    for name, r in ref["features"].items():
        assert r["n_complete"] == ref["n"] - len(ref["read_once"])  # R dropped the patients read once, as we do
        if r["irr_agreement_single"] is None:
            continue
        assert icc[name] == pytest.approx(r["irr_agreement_single"], abs=1e-10), name
        if name != "shifted_constant":  # psych returns rounding noise (1e-30) there, irr exactly 0
            assert icc[name] == pytest.approx(r["psych_icc2"], abs=1e-10), name
        compared += 1
    assert compared == 8
    # absolute agreement, not consistency (ICC(3,1)): a reader's systematic shift lowers it
    biased = ref["features"]["biased"]
    assert biased["irr_consistency_single"] - icc["biased"] > 0.2
    assert icc["shifted_constant"] == 0.0 and icc["opposite"] < 0


def test_constant_feature_has_no_icc_as_in_irr():
    ref, icc = r_reference(), stability.feature_icc(r_table())
    assert ref["features"]["constant"]["irr_agreement_single"] is None  # irr: 0 / 0 = NaN
    assert np.isnan(icc["constant"])


def test_icc_is_vectorised_and_the_same_per_feature():
    table = r_table()
    together = stability.feature_icc(table)
    for name in ("reliable", "ties", "large"):
        alone = stability.feature_icc(table[[name, name + stability.READER2_SUFFIX]])
        assert alone[name] == pytest.approx(together[name], rel=1e-13)  # columns do not mix


def test_two_reader_icc_equals_the_k_rater_formula():
    """feature_icc's two-reader form (no 3-D stack) gives icc_a1's ICC to 1e-12, at any scale,
    and the same undefined (NaN) ones."""
    rng = np.random.default_rng(0)
    for scale in (1.0, 1e6, 1e-6):
        a = rng.normal(size=(50, 40)) * scale + 5 * scale
        b = a + rng.normal(size=(50, 40)) * scale * rng.uniform(0, 2, 40)
        b[:, :3] = a[:, :3]
        a[:, 5] = b[:, 5] = 1.0
        k_raters, two = stability.icc_a1(np.stack([a, b], axis=1)), stability.icc_two_readers(a, b)
        assert np.array_equal(np.isnan(k_raters), np.isnan(two)) and np.isnan(two[5])
        assert np.allclose(two, k_raters, rtol=1e-12, atol=1e-12, equal_nan=True)


# --------------------------------------------------------------------------- the pipeline step

def _toy(n=40, seed=0):
    """Two stable features, one unstable one, one constant; reader-2 NaN for patients read once."""
    rng = np.random.default_rng(seed)
    t = rng.standard_normal((n, 3))
    r1 = pd.DataFrame({"stable_a": t[:, 0], "stable_b": t[:, 1], "unstable": t[:, 2], "flat": 1.0},
                      index=[f"P{i}" for i in range(n)])
    r2 = r1 + rng.standard_normal((n, 4)) * [0.1, 0.1, 3.0, 0.0]
    r2.iloc[:5] = np.nan
    y = (t[:, 0] + rng.standard_normal(n) > 0.3).astype(int)
    return stability.with_reader2(r1, r2), y


def test_icc_filter_drops_unstable_and_undefined_and_the_second_readers_columns():
    X, y = _toy()
    step = ICCFilter(0.75).fit(X, y)
    assert step.selected_ == ["stable_a", "stable_b"]
    assert np.isnan(step.icc_["flat"]) and step.icc_["unstable"] < 0.75
    assert step.n_patients_ == 35
    assert list(step.transform(X).columns) == ["stable_a", "stable_b"]
    first_only = X[stability.reader_columns(X.columns)]  # new patients to score: no second reading
    assert list(step.transform(first_only).columns) == ["stable_a", "stable_b"]


def test_icc_filter_learns_from_its_training_rows_only():
    """Refitted per fold: the test patients' second readings cannot change what a fold keeps."""
    X, y = _toy(80, seed=1)
    train, test = X.index[:60], X.index[60:]
    fitted = ICCFilter(0.75).fit(X.loc[train], y[:60])
    changed = X.copy()
    changed.loc[test, "stable_a" + stability.READER2_SUFFIX] = 1e3 * np.arange(len(test))  # wreck them
    refitted = ICCFilter(0.75).fit(changed.loc[train], y[:60])
    pd.testing.assert_series_equal(fitted.icc_, refitted.icc_)
    assert ICCFilter(0.75).fit(changed, y).icc_["stable_a"] < 0.75  # on every patient it would differ


def test_icc_is_the_first_step_so_the_correlation_filter_sees_only_stable_features():
    X, y = _toy()
    pipe = radiomics_pipeline(icc_threshold=0.75).fit(X, y)
    assert pipe.steps[0][0] == "icc"
    assert set(pipe.named_steps["corr"].selected_) <= {"stable_a", "stable_b"}


# --------------------------------------------------------------------------- manifest and extraction

def _phantom_rows(phantom: Path, n: int, mask2=True):
    m = pd.read_csv(phantom / "cohort.csv", dtype=str, keep_default_na=False).head(n)
    for column in ("Image", "Mask"):
        m[column] = [str(phantom / v) for v in m[column]]
    if mask2:
        m.insert(3, "Mask2", [str(phantom / "cases" / i / "tumour_reader2.nrrd") for i in m["ID"]])
    return m


def test_bad_mask2_every_problem_named_with_file_id_and_field(phantom, tmp_path):
    import SimpleITK as sitk
    m = _phantom_rows(phantom, 3)
    elsewhere = sitk.ReadImage(m["Mask2"][2])
    elsewhere.SetOrigin((500.0, 500.0, 500.0))  # same grid size, nowhere near the image
    sitk.WriteImage(elsewhere, str(tmp_path / "far.nrrd"))
    m.loc[0, "Mask2"] = str(tmp_path / "absent.nrrd")
    m.loc[1, "Mask2"] = m.loc[1, "Image"]  # the image itself: not a label map
    m.loc[2, "Mask2"] = str(tmp_path / "far.nrrd")
    cohort = tmp_path / "cohort.csv"
    m.to_csv(cohort, index=False)
    result = run_cli("extract", cohort, "--out", tmp_path / "features.csv", "--params", PARAMS, "--quiet")
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("imnrisk: error:")]
    assert len(errors) == 3, result.stderr
    for pid, file in zip(m["ID"], m["Mask2"]):
        assert sum(f"{file}: ID {pid}: Mask2: " in line for line in errors) == 1, (pid, result.stderr)
    assert "Traceback" not in result.stderr
    failures = pd.read_csv(tmp_path / "features.failures.csv")
    assert sorted(failures["field"]) == ["Mask2"] * 3 and set(failures["file"]) == {"Mask2"}
    assert not failures["reason"].str.contains(str(tmp_path), regex=False).any()
    assert len(read_features(tmp_path / "features.csv")) == 3  # the first reader's features are whole


def test_extract_writes_the_second_readers_features_bound_to_the_first(phantom, tmp_path):
    m = _phantom_rows(phantom, 4)
    shutil.copy(m.loc[3, "Mask"], tmp_path / "same.nrrd")
    m.loc[3, "Mask2"] = str(tmp_path / "same.nrrd")  # reader 2 drew exactly reader 1's mask
    m.loc[2, "Mask2"] = ""                            # read once
    m.to_csv(tmp_path / "cohort.csv", index=False)
    args = ("extract", tmp_path / "cohort.csv", "--out", tmp_path / "features.csv", "--params", PARAMS, "--quiet")
    first_run = run_cli(*args)
    assert first_run.returncode == 0, first_run.stderr
    paths = output_paths(tmp_path / "features.csv")
    one, two = read_features(paths["features"]), read_features(paths["reader2"])
    assert list(two.index) == [m["ID"][i] for i in (0, 1, 3)] and list(two.columns) == list(one.columns)
    assert not np.allclose(two.loc[m["ID"][0]], one.loc[m["ID"][0]])  # another contour, other values
    assert (two.loc[m["ID"][3]] == one.loc[m["ID"][3]]).all()           # the same mask, the same values
    prov1 = json.loads(paths["provenance"].read_text(encoding="utf-8"))
    prov2 = json.loads(paths["reader2_provenance"].read_text(encoding="utf-8"))
    assert prov2["features_sha256"] == prov1["reader2_features_sha256"] == sha256_of_file(paths["reader2"])
    assert prov2["reader1_features_sha256"] == prov1["features_sha256"] == sha256_of_file(paths["features"])
    assert prov2["reader"] == 2 and prov2["settings_sha256"] == prov1["settings_sha256"]
    assert str(tmp_path) not in paths["reader2_provenance"].read_text(encoding="utf-8")  # no path travels
    again = run_cli(*args, "--force")  # content-keyed cache: both readers come back from it
    assert again.returncode == 0 and "(7 from cache)" in again.stderr, again.stderr


def test_synth_puts_the_second_reader_into_the_manifest(tmp_path):
    from IMNRiskLib.app import synth
    from IMNRiskLib.inputs.cohort import read_cohort
    synth.synthesize(tmp_path, synth.SynthOptions(patients=2, seed=3))
    cohort = read_cohort(tmp_path / "cohort.csv")
    assert [c.mask2.name for c in cohort.second_reader] == ["tumour_reader2.nrrd"] * 2
    assert all(c.mask2.is_file() and c.mask2 != c.mask for c in cohort.cases)


# --------------------------------------------------------------------------- training

@pytest.fixture(scope="module")
def read_twice(phantom, tmp_path_factory) -> Path:
    """The shared phantom's features (all 300 patients) with a second reader's table for 60 of them,
    beside it as extract writes it (the second reading extracted as a manifest of Mask2 files)."""
    folder = tmp_path_factory.mktemp("read-twice")
    for name in ("features.csv", "features.provenance.json"):
        shutil.copy(phantom / name, folder / name)
    m = _phantom_rows(phantom, READ_TWICE, mask2=False)
    m["Mask"] = [str(phantom / "cases" / i / "tumour_reader2.nrrd") for i in m["ID"]]
    m.to_csv(folder / "reader2.csv", index=False)
    result = run_cli("extract", folder / "reader2.csv", "--out", folder / "features_reader2.csv", "--params", PARAMS,
                     "--jobs", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture(scope="module")
def trained_icc(phantom, read_twice, tmp_path_factory):
    out = tmp_path_factory.mktemp("train-icc")
    result = run_cli("train", phantom / "cohort.csv", "--features", read_twice / "features.csv", "--out", out,
                     "--cv-repeats", "1", "--bootstrap", "2", "--quiet", "--force")
    assert result.returncode == 0, result.stderr
    return out, json.loads((out / "metrics.json").read_text(encoding="utf-8")), result.stderr


def expected_icc(read_twice: Path) -> pd.Series:
    one, two = read_features(read_twice / "features.csv"), read_features(read_twice / "features_reader2.csv")
    return stability.feature_icc(stability.with_reader2(one.loc[two.index], two))


def test_train_drops_low_icc_features_before_the_correlation_filter(trained_icc, read_twice):
    out, metrics, _ = trained_icc
    icc = expected_icc(read_twice)
    stable = set(icc.index[icc >= 0.75])
    assert 0 < len(stable) < len(icc)
    funnel = metrics["selection"]["funnel"]
    assert [s["step"] for s in funnel[:3]] == ["all", "icc", "constant"]
    assert funnel[0]["n"] == len(icc) and funnel[1]["n"] == len(stable)
    assert set(pd.read_csv(out / "lasso_path.csv").drop(columns="lambda").columns) <= stable
    table = pd.read_csv(out / "icc.csv").set_index("feature")
    np.testing.assert_allclose(table["icc"].to_numpy(), icc.loc[table.index].to_numpy(), rtol=1e-9)
    assert set(table.index[table["kept"]]) == stable
    # the second reader's copies are no candidates: EPV counts each feature once
    ss = metrics["sample_size"]
    assert ss["candidate_features"] == len(icc) == ss["per_step"][0]["features"]


def test_selected_features_icc_reported_in_metrics_model_and_summary(trained_icc, read_twice):
    out, metrics, stderr = trained_icc
    icc = expected_icc(read_twice)
    summary = metrics["selection"]["icc"]
    used = list(metrics["selection"]["radscore"]["coefficients"])
    assert list(summary["selected"]) == used
    for f in used:
        assert summary["selected"][f] == pytest.approx(icc[f], rel=1e-12) and summary["selected"][f] >= 0.75
    assert summary["type"] == "ICC(2,1)" and summary["readers"] == 2 and summary["n_patients"] == READ_TWICE
    model = json.loads((out / "model.json").read_text(encoding="utf-8"))
    assert model["radiomics"]["icc"]["selected"] == summary["selected"]
    assert model["training"]["options"]["icc_threshold"] == 0.75
    assert "ICC(2,1) of the Rad-Score features" in stderr
    assert any("feature stability: ICC(2,1)" in n for n in metrics["notes"])


def test_report_shows_the_icc_section(trained_icc):
    out, metrics, _ = trained_icc
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Feature stability (ICC(2,1))" in page
    assert "ICC of the Rad-Score features" in page
    for f in metrics["selection"]["icc"]["selected"]:
        assert f in page
    assert (out / "figures" / "icc.png").exists()


def test_no_icc_and_refusals(phantom, read_twice, tmp_path):
    base = ("train", phantom / "cohort.csv", "--features", read_twice / "features.csv", "--cv-repeats", "0",
            "--bootstrap", "0", "--quiet")
    plain = run_cli(*base, "--out", tmp_path / "plain", "--no-icc")
    assert plain.returncode == 0, plain.stderr
    metrics = json.loads((tmp_path / "plain" / "metrics.json").read_text(encoding="utf-8"))
    assert "icc" not in metrics["selection"] and metrics["selection"]["funnel"][1]["step"] == "constant"
    # a threshold without a second reading
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(read_twice / "features.csv", alone / "features.csv")
    refused = run_cli("train", phantom / "cohort.csv", "--features", alone / "features.csv", "--out", tmp_path / "x",
                      "--icc-threshold", "0.8", "--quiet")
    assert refused.returncode == 2 and "--icc-threshold: the ICC filter needs" in refused.stderr, refused.stderr
    # a second reader's table extracted beside another features.csv
    stale = tmp_path / "stale"
    stale.mkdir()
    for name in ("features.csv", "features.provenance.json", "features_reader2.csv"):
        shutil.copy(read_twice / name, stale / name)
    prov = json.loads((read_twice / "features_reader2.provenance.json").read_text(encoding="utf-8"))
    prov["reader1_features_sha256"] = "0" * 64
    (stale / "features_reader2.provenance.json").write_text(json.dumps(prov), encoding="utf-8")
    refused = run_cli("train", phantom / "cohort.csv", "--features", stale / "features.csv", "--out", tmp_path / "y",
                      "--quiet")
    assert refused.returncode == 2, refused.stderr
    assert f"{stale / 'features_reader2.csv'}: reader1_features_sha256: was extracted beside another" in refused.stderr
    assert "Traceback" not in refused.stderr
