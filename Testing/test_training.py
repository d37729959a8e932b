"""Model building and validation: known truth on the phantom, R references, model file, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from conftest import ROOT, run_cli
from IMNRiskLib.modelling import clinical, models, nomogram
from IMNRiskLib.stats import lasso, logistic
from IMNRiskLib.app import synth
from IMNRiskLib.resampling import validation
from IMNRiskLib.scoring.modelfile import ScoringModel, read_model_document
from IMNRiskLib.inputs.schema import schema_from_dict
from test_statistics import REF, data


@pytest.fixture(scope="module")
def trained(trained_phantom):
    return trained_phantom


def truth(phantom):
    return json.loads((phantom / "truth.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- known truth

def test_clinical_procedure_selects_the_true_factors():
    """On 1500 simulated patients the Table 2 procedure keeps exactly the generating factors."""
    root = np.random.SeedSequence(3)
    rc, rt = (np.random.default_rng(s) for s in root.spawn(2))
    frame = synth.draw_clinical(1500, rc)
    y = synth.draw_truth(frame, rt)["IMN"]
    from IMNRiskLib.inputs.schema import load_schema
    schema = load_schema()
    t2 = clinical.table2(frame[schema.names], y, schema)
    assert set(t2.selected) == {"tumor_location", "pr", "aln_metastases"}, t2.selected


def test_radscore_tracks_the_latent_phenotype(phantom, trained):
    out, metrics, _ = trained
    pred = pd.read_csv(out / "predictions.csv", index_col=0)
    latent = truth(phantom)["patients_latent"]
    z = np.array([latent[i]["phenotype"] for i in pred.index])
    assert spearmanr(pred["radscore"], z)[0] > 0.5
    assert roc_auc_score(z > np.median(z), pred["radscore"]) > 0.75


def test_nested_cv_orders_models_as_the_truth_says(phantom, trained):
    out, metrics, _ = trained
    pred = pd.read_csv(out / "predictions.csv", index_col=0)
    latent = truth(phantom)["patients_latent"]
    true_auc = roc_auc_score(pred["IMN"], [latent[i]["probability"] for i in pred.index])
    cv = {m: metrics["models"][m]["cv"]["auc_mean"] for m in models.MODELS}
    leaky = metrics["models"]["combined"]["cv_leaky"]["auc_mean"]
    assert cv["clinical"] < cv["combined"] < true_auc, (cv, true_auc)
    assert leaky > cv["combined"], (leaky, cv["combined"])          # the leak inflates
    assert metrics["models"]["radiomics"]["cv_leaky"]["auc_mean"] > cv["radiomics"]


def test_metrics_json_contract(trained):
    out, metrics, stderr = trained
    assert set(metrics["cohort"]) >= {"n", "events", "epv"} and metrics["cohort"]["n"] == 300
    for m in models.MODELS:
        entry = metrics["models"][m]
        assert set(entry["apparent"]) >= {"auc", "ci95", "brier", "calibration", "hosmer_lemeshow"}
        assert set(entry["apparent"]["calibration"]) >= {"intercept", "slope", "citl"}
        assert set(entry["apparent"]["hosmer_lemeshow"]) >= {"chi2", "df", "p"}
        for key in ("cv", "cv_leaky"):
            assert set(entry[key]) >= {"folds", "repeats", "auc_mean", "auc_sd", "accuracy_mean", "accuracy_sd",
                                       "slope_mean", "slope_sd"}
        assert set(entry["bootstrap"]) >= {"b", "auc_corrected", "slope_corrected", "optimism_auc"}
        assert entry["bootstrap"]["auc_corrected"] < entry["apparent"]["auc"] + 1e-9
    assert [(d["a"], d["b"]) for d in metrics["delong"]] == [("clinical", "radiomics"), ("clinical", "combined"),
                                                             ("radiomics", "combined")]
    funnel = metrics["selection"]["funnel"]
    assert funnel[0] == {"step": "all", "n": 107} and all(a["n"] >= b["n"] for a, b in zip(funnel, funnel[1:]))
    assert metrics["selection"]["radscore"]["coefficients"] and metrics["selection"]["clinical_factors"]
    assert 0 < max(metrics["selection"]["cv_frequency"].values()) <= 1
    assert "AUC" in stderr and "RS = " in stderr
    for name in ("model.json", "predictions.csv", "table1.csv", "table2.csv", "lasso_path.csv", "lasso_cv.csv"):
        assert (out / name).exists(), name


def test_model_file_holds_no_patient_and_predict_reproduces_training(phantom, trained):
    out, metrics, _ = trained
    text = (out / "model.json").read_text(encoding="utf-8")
    ids = pd.read_csv(phantom / "cohort.csv")["ID"]
    assert not any(i in text for i in ids)
    doc = read_model_document(out / "model.json")
    assert doc["format"] == "imnrisk-model" and doc["training"]["synthetic"] is True
    model = ScoringModel(doc)
    cohort = pd.read_csv(phantom / "cohort.csv", dtype=str).set_index("ID")
    pred = pd.read_csv(out / "predictions.csv", index_col=0)
    for pid in pred.index[:2]:
        row = cohort.loc[pid]
        pairs = [f"{f}={row[f]}" for f in model.factors]
        result = run_cli("predict", out / "model.json", "--image", phantom / row["Image"], "--mask",
                         phantom / row["Mask"], "--json", "--clinical", *pairs)
        assert result.returncode == 0, result.stderr
        scored = json.loads(result.stdout)
        assert scored["radscore"] == pytest.approx(pred.loc[pid, "radscore"], rel=1e-6, abs=1e-8)
        assert scored["probability"] == pytest.approx(pred.loc[pid, "combined"], rel=1e-6)
        assert scored["ci95"][0] < scored["probability"] < scored["ci95"][1]
        assert set(scored["points"]) == set(model.factors) | {"radscore", "total"}
        assert scored["risk_group"] in ("low", "intermediate", "high")
        assert set(scored["features"]) == set(model.features)


def test_same_seed_same_model_bytes_apart_from_the_timestamp(phantom, trained, tmp_path):
    out, _, _ = trained
    result = run_cli("train", phantom / "cohort.csv", "--features", phantom / "features.csv", "--out", tmp_path,
                     "--cv-repeats", "3", "--bootstrap", "20", "--jobs", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    a, b = (json.loads((d / "model.json").read_text(encoding="utf-8")) for d in (out, tmp_path))
    for doc in (a, b):
        doc.pop("created"), doc.pop("sha256")
    assert a == b


def test_damaged_or_newer_model_files_are_refused(trained, tmp_path):
    out, _, _ = trained
    doc = json.loads((out / "model.json").read_text(encoding="utf-8"))
    damaged = dict(doc, radiomics={**doc["radiomics"], "formula": "RS = 1"})
    (tmp_path / "damaged.json").write_text(json.dumps(damaged))
    newer = dict(doc, format_version=99)
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    (tmp_path / "pickle.json").write_bytes(b"\x80\x04\x95")
    for name, message in (("damaged.json", "damaged or was edited"), ("newer.json", "newer than this IMNRisk"),
                          ("pickle.json", "not a JSON model file")):
        result = run_cli("predict", tmp_path / name, "--image", "x", "--mask", "y")
        assert result.returncode == 2 and message in result.stderr, result.stderr


def test_external_validation_of_the_frozen_model(phantom, trained, tmp_path):
    out, _, _ = trained
    result = run_cli("validate", out / "model.json", phantom / "cohort.csv", "--out", tmp_path, "--features",
                     phantom / "features.csv", "--recalibrate", "--quiet")
    assert result.returncode == 0, result.stderr
    val = json.loads((tmp_path / "validation.json").read_text(encoding="utf-8"))
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    # on its own training cohort the frozen model gives back the apparent numbers
    assert val["models"]["combined"]["auc"] == pytest.approx(metrics["models"]["combined"]["apparent"]["auc"], rel=1e-9)
    assert abs(val["models"]["combined"]["calibration"]["citl"]) < 1e-6
    assert len(val["models"]["combined"]["net_benefit"]["model"]) == 99
    read_model_document(tmp_path / "model_recalibrated.json")


# --------------------------------------------------------------------------- against R

def test_lasso_coefficients_match_glmnet():
    d = data("lasso")
    X, y = d.drop(columns="y").to_numpy(), d["y"].to_numpy(float)
    for ref in REF["lasso"]:
        ours = lasso.lasso_fit(X, y, ref["lambda"], tol=1e-12)
        assert ours == pytest.approx(ref["coef"], rel=1e-6, abs=1e-6), ref["lambda"]
        path_coef, path_b0 = lasso.lasso_path(X, y, np.array([ref["lambda"]]), tol=1e-10, max_iter=100000)
        assert np.r_[path_b0, path_coef[0]] == pytest.approx(ref["coef"], abs=1e-5)


def test_nomogram_points_match_rms():
    d = data("nomogram")
    schema = schema_from_dict({"variables": [{"name": "x2", "type": "binary", "levels": ["0", "1"]},
                                             {"name": "x3", "type": "categorical", "levels": ["a", "b", "c"],
                                              "reference": "a"}]})
    frame = pd.DataFrame({"x2": d["x2"].astype(str), "x3": d["x3"]})
    X = clinical.design(frame, schema, ["x2", "x3"]).assign(radscore=d["rs"])
    fit = logistic.fit_ml(d["y"].to_numpy(), X)
    ref = REF["nomogram"]
    assert fit.coef == pytest.approx(ref["coef"], rel=1e-5)
    nomo = nomogram.build_nomogram(fit, schema, ["x2", "x3"], [-2.5, 2.5])
    axes = {a.name: a for a in nomo.axes}
    assert axes["x2"].points == pytest.approx(ref["x2"], rel=1e-5, abs=1e-6)
    assert axes["x3"].points == pytest.approx(ref["x3"], rel=1e-5, abs=1e-6)
    assert axes["radscore"].points == pytest.approx(ref["rs"], rel=1e-5, abs=1e-6)
    # total points map back to the model's linear predictor
    patient = {"x2": "1", "x3": "c"}
    pts = nomogram.nomogram_points(nomo.to_dict(), fit.coef[fit.terms.index("radscore")], patient, 0.7)
    lp = fit.coef[0] + fit.coef[1] + fit.coef[3] + fit.coef[4] * 0.7
    assert nomo.lp_from_points(pts["total"]) == pytest.approx(lp, rel=1e-12)


def test_bootstrap_optimism_replays_r_on_the_same_resamples():
    d = data("logistic")
    idx = pd.read_csv(ROOT / "Testing" / "R" / "data" / "bootstrap_indices.csv").to_numpy() - 1
    X = pd.get_dummies(d[["x1", "x2", "x3"]], columns=["x3"], drop_first=True).astype(float)
    y = d["y"].to_numpy()

    def replicate(i):
        fit = logistic.fit_ml(y[i], X.iloc[i])
        sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
        return i, sig(fit.predict_lp(X.iloc[i].to_numpy())), sig(fit.predict_lp(X.to_numpy()))
    res = validation.optimism(y, [replicate(i) for i in idx])
    assert res["b"] == len(idx)
    for key in ("auc", "slope", "intercept", "brier"):
        assert res["optimism"][key] == pytest.approx(REF["optimism"][key], rel=1e-6, abs=1e-9), key


# --------------------------------------------------------------------------- bad input

@pytest.fixture()
def small(phantom, tmp_path):
    cohort = pd.read_csv(phantom / "cohort.csv", dtype=str)
    feats = pd.read_csv(phantom / "features.csv", dtype={"ID": str})
    return cohort, feats, tmp_path


def _train(cohort, feats, folder):
    cohort.to_csv(folder / "cohort.csv", index=False)
    feats.to_csv(folder / "features.csv", index=False)
    return run_cli("train", folder / "cohort.csv", "--features", folder / "features.csv", "--out", folder / "out",
                   "--cv-repeats", "0", "--bootstrap", "0", "--quiet")


@pytest.mark.parametrize("case, message", [
    ("missing case", "no features for 1 patient(s) of the cohort, e.g. SYN0005"),
    ("ids", "no ID of the cohort is in the features table"),
    ("single class", "IMN: has one class only"),
    ("constant", "every feature is constant"),
    ("nan", "feature column(s) with missing or infinite values"),
])
def test_training_bad_input(small, case, message):
    cohort, feats, folder = small
    if case == "missing case":
        feats = feats[feats["ID"] != "SYN0005"]
    elif case == "ids":
        feats = feats.assign(ID="X" + feats["ID"])
    elif case == "single class":
        cohort = cohort.assign(IMN="0")
    elif case == "constant":
        feats = feats[["ID"]].assign(a=1.0, b=2.0)
    elif case == "nan":
        feats.loc[3, feats.columns[5]] = np.nan
    result = _train(cohort, feats, folder)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (folder / "out" / "model.json").exists() and not (folder / "out" / "metrics.json").exists()


def test_predict_rejects_a_clinical_value_outside_the_schema(phantom, trained):
    out, _, _ = trained
    model = ScoringModel.load(out / "model.json")
    row = pd.read_csv(phantom / "cohort.csv", dtype=str).iloc[0]
    pairs = [f"{f}=bogus" for f in model.factors]
    result = run_cli("predict", out / "model.json", "--image", phantom / row["Image"], "--mask", phantom / row["Mask"],
                     "--clinical", *pairs)
    assert result.returncode == 2
    assert f"--clinical: {model.factors[0]}: unknown value 'bogus'; allowed:" in result.stderr
    missing = run_cli("predict", out / "model.json", "--image", phantom / row["Image"], "--mask", phantom / row["Mask"])
    assert missing.returncode == 2 and "value needed" in missing.stderr


def test_training_tables_hold_plain_strings_with_the_same_values():
    """training.plain_strings (the validation's fast lookups): names and text columns become
    object dtype, numbers stay float, every value and the row order are unchanged."""
    from IMNRiskLib.app.training import plain_strings
    frame = pd.DataFrame({"age": [50.0, np.nan, 61.5], "pr": pd.array(["positive", None, "negative"], dtype="string"),
                          "grade": ["I", "II", "III"]}, index=["P1", "P2", "P3"])
    out = plain_strings(frame)
    assert out.columns.dtype == object and list(out.columns) == list(frame.columns)
    assert out["pr"].dtype == object and out["age"].dtype == float and list(out.index) == list(frame.index)
    assert out["pr"].tolist()[::2] == ["positive", "negative"] and pd.isna(out["pr"].iloc[1])
    assert out["age"].tolist()[::2] == [50.0, 61.5] and np.isnan(out["age"].iloc[1])
    assert out["grade"].tolist() == ["I", "II", "III"]
