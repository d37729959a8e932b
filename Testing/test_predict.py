"""predict: what the scoring path imports, the applicability domain (training ranges kept in
model.json, warnings when a patient lies outside) and the bootstrap CI of a patient's risk."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import pyradiomics_data, run_cli
from IMNRiskLib.outputs import figures
from IMNRiskLib.scoring import uncertainty
from IMNRiskLib.scoring import Case, score_case
from IMNRiskLib.scoring.modelfile import ScoringModel, read_model_document, seal

HEAVY = ("matplotlib", "statsmodels", "sklearn", "pandas", "scipy.stats")


@pytest.fixture(scope="module")
def trained(trained_phantom):
    """The shared phantom's model (3 CV repeats, 20 bootstraps): (folder, model document)."""
    out, _, _ = trained_phantom
    return out, read_model_document(out / "model.json")


def case_paths(phantom, pid):
    row = pd.read_csv(phantom / "cohort.csv", dtype=str).set_index("ID").loc[pid]
    return phantom / row["Image"], phantom / row["Mask"], row


def clinical_pairs(doc, row, names=None):
    return [f"{n}={row[n]}" for n in (names or doc["clinical"]["factors"])]


def all_schema_pairs(doc, row):
    return clinical_pairs(doc, row, [v["name"] for v in doc["clinical"]["schema"]["variables"] if v["name"] in row])


def inside_patient(phantom, out, doc) -> str:
    """A training patient whose Rad-Score and model features all lie inside the 1st-99th percentiles,
    the one nearest the median Rad-Score."""
    feats = pd.read_csv(phantom / "features.csv", dtype={"ID": str}).set_index("ID")
    pred = pd.read_csv(out / "predictions.csv", index_col=0, dtype={"ID": str})
    ranges = doc["domain"]
    ok = pred["radscore"].between(ranges["radscore"]["p01"], ranges["radscore"]["p99"])
    for f, r in ranges["features"].items():
        ok &= feats.loc[pred.index, f].between(r["p01"], r["p99"])
    candidates = pred[ok]
    return str((candidates["radscore"] - candidates["radscore"].median()).abs().idxmin())


def without_new_keys(doc, path):
    """The model as an older IMNRisk wrote it: no training ranges, no replicates, no format_minor."""
    old = {k: v for k, v in doc.items() if k not in ("sha256", "domain", "uncertainty", "format_minor")}
    path.write_text(json.dumps(seal(old)), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- imports (#13)

def test_the_predict_command_imports_no_plotting_statistics_or_table_library(phantom, quick_model):
    """Scoring one patient needs numpy, SimpleITK and pyradiomics only: matplotlib, statsmodels,
    scikit-learn, pandas and scipy.stats stay unloaded through the whole predict command."""
    doc = json.loads(quick_model.read_text(encoding="utf-8"))
    image, mask, row = case_paths(phantom, "SYN0001")
    argv = ["predict", str(quick_model), "--image", str(image), "--mask", str(mask), "--json", "--clinical",
            *clinical_pairs(doc, row)]
    code = ("import json, sys\nfrom IMNRiskLib.app.cli import main\n"
            f"rc = main({argv!r})\n"
            f"print(json.dumps({{'rc': rc, 'loaded': [m for m in {HEAVY!r} if m in sys.modules]}}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout.strip().splitlines()[-1])
    assert status == {"rc": 0, "loaded": []}, status


# --------------------------------------------------------------------------- applicability domain (#12.10)

def test_model_keeps_each_feature_and_the_radscore_training_range(phantom, trained):
    out, doc = trained
    feats = pd.read_csv(phantom / "features.csv", dtype={"ID": str}).set_index("ID")
    pred = pd.read_csv(out / "predictions.csv", index_col=0, dtype={"ID": str})
    ranges = doc["domain"]
    assert doc["format_minor"] >= 1 and ranges["percentiles"] == [1.0, 99.0]
    assert set(ranges["features"]) == set(doc["radiomics"]["features"])
    for f, r in ranges["features"].items():
        x = feats.loc[pred.index, f].to_numpy()
        assert set(r) == {"p01", "p99"}  # no min/max: one patient's own value
        assert [r["p01"], r["p99"]] == pytest.approx(list(np.percentile(x, [1, 99])), rel=1e-12)
    rs = pred["radscore"].to_numpy()  # predictions.csv keeps 10 digits
    assert [ranges["radscore"][k] for k in ("p01", "p99")] == pytest.approx(
        list(np.percentile(rs, [1, 99])), rel=1e-8, abs=1e-8)


def test_breast1_mri_is_outside_the_phantom_training_range_and_predict_says_so(trained):
    """pyradiomics' real breast MRI scored with a phantom model: the JSON names each feature outside
    with its range, the text output warns, and the values really lie outside the stored ranges."""
    out, doc = trained
    data = pyradiomics_data()
    levels = {v["name"]: v.get("levels") for v in doc["clinical"]["schema"]["variables"]}
    pairs = [f"{f}={levels[f][-1]}" for f in doc["clinical"]["factors"]]
    args = ["predict", out / "model.json", "--image", data / "breast1_image.nrrd", "--mask",
            data / "breast1_label.nrrd", "--clinical", *pairs]
    scored = json.loads(run_cli(*args, "--json").stdout)
    found = scored["domain"]["outside"]
    assert scored["domain"]["checked"] and found
    for f in found:
        r = doc["domain"]["radscore"] if f["kind"] == "radscore" else doc["domain"]["features"][f["name"]]
        value = scored["radscore"] if f["kind"] == "radscore" else scored["features"][f["name"]]
        assert f["value"] == value and not r["p01"] <= value <= r["p99"]
        width = r["p99"] - r["p01"]
        assert f["far"] == (not r["p01"] - width <= value <= r["p99"] + width)
        label = "Rad-Score" if f["kind"] == "radscore" else f["name"]
        assert label in f["message"] and f"{r['p01']:.4g} to {r['p99']:.4g}" in f["message"]
    text = run_cli(*args)
    assert text.returncode == 0 and "outside the training range" in text.stdout
    assert all(f["message"] in text.stdout for f in found)


def test_a_training_patient_inside_the_ranges_gets_no_warning(phantom, trained):
    out, doc = trained
    pid = inside_patient(phantom, out, doc)
    image, mask, row = case_paths(phantom, pid)
    result = run_cli("predict", out / "model.json", "--image", image, "--mask", mask, "--json",
                     "--clinical", *clinical_pairs(doc, row))
    assert result.returncode == 0, result.stderr
    scored = json.loads(result.stdout)
    assert scored["domain"]["checked"] and scored["domain"]["outside"] == [] and "inside" in scored["domain"]["note"]
    assert "training range" not in result.stderr


def test_a_feature_far_outside_is_named_far_outside(trained):
    out, doc = trained
    model = ScoringModel(doc)
    name = model.features[0]
    values = {f: (r["p01"] + r["p99"]) / 2 for f, r in doc["domain"]["features"].items()}
    r = doc["domain"]["features"][name]
    values[name] = r["p99"] + 10 * (r["p99"] - r["p01"])
    levels = {v["name"]: v.get("levels") for v in doc["clinical"]["schema"]["variables"]}
    result = score_case(model, Case.from_values(values), {f: levels[f][0] for f in model.factors})
    hit = [f for f in result.domain["outside"] if f["name"] == name]
    assert hit and hit[0]["far"] and "outside the training range, far outside" in hit[0]["message"]
    assert result.verdict.state == "not_reliable" and hit[0]["message"] in result.verdict.reasons
    assert result.risk_group is None and result.lines()[0].startswith("Not reliable: ")
    assert any(hit[0]["message"] in line for line in result.lines())


def test_nomogram_marks_a_patient_beyond_the_radscore_axis_and_prints_the_warning(trained):
    out, doc = trained
    model = ScoringModel(doc)
    axis = next(a for a in doc["nomogram"]["axes"] if a["name"] == "radscore")
    b = model.doc["combined"]["coefficients"][model.doc["combined"]["terms"].index("radscore")]
    levels = {v["name"]: v.get("levels") for v in doc["clinical"]["schema"]["variables"]}
    clinical = {f: levels[f][0] for f in model.factors}
    far = max(axis["values"]) + 5 * (max(axis["values"]) - min(axis["values"]))
    points = model.points(clinical, far if b > 0 else -far)  # far to the right of the points axis
    assert points["radscore"] > max(axis["points"])
    drawn = figures.nomogram(doc["nomogram"], {}, patient=points, notes=["Rad-Score 99 is outside"])
    texts = [t.get_text() for t in drawn.axes[0].texts]
    assert "beyond the axis" in texts and any("Rad-Score 99 is outside" in t for t in texts)
    inside = figures.nomogram(doc["nomogram"], {}, patient=model.points(clinical, float(np.mean(axis["values"]))))
    assert "beyond the axis" not in [t.get_text() for t in inside.axes[0].texts]


def test_an_old_model_without_ranges_or_replicates_still_scores_and_says_it_is_unchecked(phantom, trained,
                                                                                         tmp_path):
    out, doc = trained
    old = without_new_keys(doc, tmp_path / "old.json")
    image, mask, row = case_paths(phantom, inside_patient(phantom, out, doc))
    args = ["predict", old, "--image", image, "--mask", mask, "--clinical", *clinical_pairs(doc, row)]
    scored = json.loads(run_cli(*args, "--json").stdout)
    # without training ranges, the nomogram's axes (Rad-Score mean +- 3 SD) are the ranges it still knows
    assert scored["domain"]["checked"] is True and "nomogram's axes" in scored["domain"]["note"]
    assert scored["domain"]["outside"] == [] and scored["verdict"]["state"] == "within"
    assert scored["ci_method"] == "Wald, conditional on the Rad-Score"
    assert "predates training ranges" in run_cli(*args, "--json").stdout
    refused = run_cli(*args, "--ci", "bootstrap")
    assert refused.returncode == 2 and refused.stdout == "" and "Traceback" not in refused.stderr
    line, = refused.stderr.strip().splitlines()
    assert str(old) in line and "--ci" in line and "no bootstrap replicates" in line


# --------------------------------------------------------------------------- bootstrap risk CI (#12.7)

def test_each_stored_replicate_is_the_pipeline_refitted_on_its_bootstrap_sample(phantom, trained):
    """Replicate 0 of model.json scores a patient as the whole pipeline refitted on bootstrap sample 0
    (the sample train's optimism used) does."""
    from IMNRiskLib.modelling.models import TrainingOptions, fit_models
    from IMNRiskLib.app.training import load_training_data
    from IMNRiskLib.resampling.validation import bootstrap_samples
    out, doc = trained
    block = doc["uncertainty"]
    assert block["b"] + block["failed"] == 20 and block["failed"] == 0
    data = load_training_data(phantom / "cohort.csv", phantom / "features.csv")
    idx = bootstrap_samples(len(data.y), 20, TrainingOptions().seed)[0]
    boot = data.take(idx)
    refitted = fit_models(boot.features, boot.clinical, boot.y, boot.schema, TrainingOptions())
    pid = inside_patient(phantom, out, doc)
    k = list(data.features.index).index(pid)
    expected = refitted.predict(data.features.iloc[[k]], data.clinical.iloc[[k]])["combined"].iloc[0]
    replicate = uncertainty.unpack(block)[0]
    assert replicate["features"] == refitted.radiomics.named_steps["radscore"].features_
    encoded = uncertainty.encode_clinical(data.schema, data.clinical.iloc[k].to_dict(),
                                          ScoringModel(doc).ci_factors)
    assert uncertainty.replicate_risk(replicate, data.features.iloc[k].to_dict(), encoded) == \
        pytest.approx(expected, rel=1e-9)


def hand_risk(replicate, x, encoded):
    """One replicate's risk computed here from its stored numbers (z-scores, Rad-Score, logistic)."""
    z = (np.array([x[f] for f in replicate["features"]]) - replicate["mean"]) / np.array(replicate["sd"])
    rs = replicate["radscore"][0] + z @ np.array(replicate["radscore"][1:])
    design = np.array([1.0 if t == "(Intercept)" else rs if t == "radscore" else encoded.get(t, 0.0)
                       for t in replicate["terms"]])
    return 1 / (1 + np.exp(-design @ np.array(replicate["combined"])))


def test_predict_ci_bootstrap_is_the_percentile_interval_of_the_replicates_and_says_so(phantom, trained):
    out, doc = trained
    pid = inside_patient(phantom, out, doc)
    image, mask, row = case_paths(phantom, pid)
    base = ["predict", out / "model.json", "--image", image, "--mask", mask, "--json"]
    wald = json.loads(run_cli(*base, "--clinical", *clinical_pairs(doc, row)).stdout)
    assert wald["ci_method"] == "Wald, conditional on the Rad-Score"
    short = run_cli(*base, "--ci", "bootstrap", "--clinical", *clinical_pairs(doc, row))
    extra = [f for f in ScoringModel(doc).ci_factors if f not in doc["clinical"]["factors"]]
    if extra:  # the replicates chose other factors: predict asks for them, by name
        assert short.returncode == 2 and extra[0] in short.stderr and "bootstrap replicate" in short.stderr
    result = run_cli(*base, "--ci", "bootstrap", "--clinical", *all_schema_pairs(doc, row))
    assert result.returncode == 0, result.stderr
    boot = json.loads(result.stdout)
    b = doc["uncertainty"]["b"]
    assert boot["ci_method"] == f"bootstrap, whole pipeline, {b} replicates" and boot["ci95_wald"] == wald["ci95"]
    assert boot["probability"] == wald["probability"]
    x = pd.read_csv(phantom / "features.csv", dtype={"ID": str}).set_index("ID").loc[pid].to_dict()
    schema = ScoringModel(doc).schema
    parsed = {n: schema[n].parse(row[n]) for n in ScoringModel(doc).ci_factors}
    encoded = uncertainty.encode_clinical(schema, parsed, ScoringModel(doc).ci_factors)
    risks = [hand_risk(r, x, encoded) for r in uncertainty.unpack(doc["uncertainty"])]
    assert boot["ci95"] == pytest.approx(list(np.percentile(risks, [2.5, 97.5])), rel=1e-5)
    assert boot["ci95"][0] < boot["probability"] < boot["ci95"][1]
    text = run_cli(*base[:-1], "--ci", "bootstrap", "--clinical", *all_schema_pairs(doc, row))
    assert f"bootstrap, whole pipeline, {b} replicates" in text.stdout


def test_train_can_leave_the_replicates_out(phantom, tmp_path):
    result = run_cli("train", phantom / "cohort.csv", "--features", phantom / "features.csv", "--out", tmp_path,
                     "--cv-repeats", "0", "--bootstrap", "2", "--no-ci-replicates", "--quiet")
    assert result.returncode == 0, result.stderr
    doc = read_model_document(tmp_path / "model.json")
    assert "uncertainty" not in doc and "domain" in doc


def test_a_model_file_with_a_damaged_replicate_is_refused(trained, tmp_path):
    out, doc = trained
    bad = json.loads(json.dumps(doc))
    bad["uncertainty"]["replicates"][0][2][0] = -1.0  # a negative SD
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(seal({k: v for k, v in bad.items() if k != "sha256"})), encoding="utf-8")
    result = run_cli("predict", path, "--image", "x.nrrd", "--mask", "y.nrrd")
    assert result.returncode == 2 and "uncertainty" in result.stderr and "Traceback" not in result.stderr
