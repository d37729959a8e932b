"""The scoring core (#25): one function behind every face, its verdict (within the model's domain /
extrapolation / not reliable), strict clinical values, masks that are images, and faces that agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from conftest import pyradiomics_data, run_cli
from IMNRiskLib.scoring import domain
from IMNRiskLib.inputs import imaging
from IMNRiskLib.core.errors import InputError
from IMNRiskLib.scoring.modelfile import ScoringModel, read_model_document, seal
from IMNRiskLib.scoring import Case, Options, score_case
from IMNRiskLib.scoring.core import clinical_pairs, read_clinical, verdict

BREAST1 = ("breast1_image.nrrd", "breast1_label.nrrd")


@pytest.fixture(scope="module")
def paper_model(phantom, tmp_path_factory) -> Path:
    """The paper protocol's model on the shared phantom (no CV, no bootstrap), as `make demo` trains one."""
    out = tmp_path_factory.mktemp("paper-model")
    result = run_cli("train", phantom / "cohort.csv", "--features", phantom / "features.csv", "--out", out,
                     "--protocol", "paper", "--cv-repeats", "0", "--bootstrap", "0", "--quiet", "--force")
    assert result.returncode == 0, result.stderr
    return out / "model.json"


def factor_pairs(model_path: Path, level: int = -1):
    doc = read_model_document(model_path)
    levels = {v["name"]: v.get("levels") for v in doc["clinical"]["schema"]["variables"]}
    return {f: levels[f][level] for f in doc["clinical"]["factors"]}


def predict_cli(model_path, image, mask, clinical, *extra):
    return run_cli("predict", model_path, "--image", image, "--mask", mask, *extra,
                   "--clinical", *[f"{k}={v}" for k, v in clinical.items()])


def one_line_error(result, *words):
    """Exit 2, nothing on stdout, one line on stderr holding every word, no traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    line, = result.stderr.strip().splitlines()
    for word in words:
        assert word in line, line
    return line


# --------------------------------------------------------------------------- the verdict's rules

def finding(far: bool, message: str = "x"):
    return {"kind": "feature", "name": "f", "value": 0.0, "p01": 0.0, "p99": 1.0, "far": far, "message": message}


def test_the_verdict_has_three_states_from_the_stated_rules():
    assert verdict({"outside": []}, {"findings": []}).state == "within"
    near = verdict({"outside": [finding(False, "near")]}, {"findings": []})
    assert near.state == "extrapolation" and near.headline == "Extrapolation: near" and near.reliable
    far = verdict({"outside": [finding(False, "near"), finding(True, "far")]}, {"findings": []})
    assert far.state == "not_reliable" and far.headline == "Not reliable: far" and not far.reliable
    two = verdict({"outside": [finding(True, "far")]},
                  {"findings": [{"kind": "phase", "severity": "not_reliable", "message": "phase"}]})
    assert two.reasons == ["phase", "far"] and two.headline == "Not reliable: phase (and 1 more, below)"
    image = verdict({"outside": []}, {"findings": [{"kind": "phase", "severity": "not_reliable", "message": "phase"}]})
    assert image.headline == "Not reliable: phase"
    assert verdict({"outside": []}, {"findings": [{"kind": "spacing", "severity": "extrapolation",
                                                    "message": "s"}]}).state == "extrapolation"


BLOCK = {"phase": 1, "n_phases": 8, "spacing_mm": [{"p01": 0.8, "p99": 1.0}] * 2 + [{"p01": 2.0, "p99": 3.0}],
         "tumour_volume_ml": {"p01": 1.0, "p99": 10.0}, "normalisation": {"normalize": False, "scale": 1.0},
         "intensity": {"feature": domain.INTENSITY_FEATURE, "p01": 100.0, "p99": 200.0}}


def image_states(**kw):
    args = {"phase": 1, "n_phases": 8, "declared": False, "spacing": [0.9, 0.9, 2.5], "volume_ml": 5.0,
            "intensity": 150.0, **kw}
    found = domain.check_acquisition(BLOCK, **args)["findings"]
    return [(f["kind"], f["severity"]) for f in found]


def test_the_image_is_compared_with_the_images_the_model_was_trained_on():
    assert image_states() == []
    assert image_states(phase=0) == [("phase", "not_reliable")]
    assert image_states(phase=0, n_phases=1) == [("phase", "not_reliable")]   # a 3-D file, nobody said which phase
    assert image_states(phase=1, n_phases=1, declared=True) == []             # --image-is-phase 1
    assert image_states(n_phases=6) == [("phase", "extrapolation")]
    assert image_states(spacing=[1.1, 0.9, 2.5]) == [("spacing", "extrapolation")]     # within 1.25-fold
    assert image_states(spacing=[0.9, 0.9, 4.0]) == [("spacing", "not_reliable")]      # 4.0 > 3.0 * 1.25
    assert image_states(volume_ml=25.0) == [("volume", "extrapolation")]
    assert image_states(volume_ml=0.2) == [("volume", "not_reliable")]                 # under 1.0 / 3
    assert image_states(intensity=250.0) == [("intensity", "extrapolation")]
    assert image_states(intensity=400.0) == [("intensity", "not_reliable")]            # further than 100 wide
    assert domain.check_acquisition(None, 1, 8, False, None, None, None)["checked"] is False


# --------------------------------------------------------------------------- clinical values

def test_a_factor_given_twice_or_not_as_name_value_is_refused():
    assert clinical_pairs(["a=1", "b = x"]) == {"a": "1", "b": "x"}
    with pytest.raises(InputError, match="given twice") as caught:
        clinical_pairs(["aln_metastases=N3", "aln_metastases=N0"])
    assert caught.value.field == "aln_metastases"
    with pytest.raises(InputError, match="NAME=VALUE"):
        clinical_pairs(["aln_metastases"])


def test_values_that_do_not_parse_are_refused_and_unused_valid_ones_are_reported_ignored(quick_model):
    model = ScoringModel.load(quick_model)
    given = factor_pairs(quick_model)
    unused = next(v for v in model.schema.variables if v.name not in model.factors and v.type == "continuous")
    parsed, ignored = read_clinical(model, {**given, unused.name: "42"})
    assert set(parsed) == set(model.factors) and ignored == {unused.name: 42.0}
    with pytest.raises(InputError) as caught:
        read_clinical(model, {**given, unused.name: "abc"})
    assert unused.name in str(caught.value) and "not a number" in str(caught.value)
    level_var = next(v for v in model.schema.variables if v.name not in model.factors and v.levels)
    with pytest.raises(InputError, match=level_var.name):
        read_clinical(model, {**given, level_var.name: "no-such-level"})


def test_the_cli_refuses_duplicate_and_unparsable_clinical_values_in_one_line(quick_model):
    data = pyradiomics_data()
    given = factor_pairs(quick_model)
    name = next(iter(given))
    args = ["predict", quick_model, "--image", data / BREAST1[0], "--mask", data / BREAST1[1], "--clinical",
            *[f"{k}={v}" for k, v in given.items()]]
    one_line_error(run_cli(*args, f"{name}={given[name]}"), name, "given twice")
    one_line_error(run_cli(*args, "age=abc"), "age", "not a number")


# --------------------------------------------------------------------------- breast1 and the demo models

@pytest.mark.parametrize("which", ["imnrisk", "paper"])
def test_breast1_with_either_demo_model_leads_with_not_reliable(which, quick_model, paper_model):
    """pyradiomics' real breast MRI scored with a phantom model: the first line says "Not reliable",
    the group is withheld, the number stays for research; --strict exits 2; the synthetic banner shows."""
    model_path = quick_model if which == "imnrisk" else paper_model
    data = pyradiomics_data()
    clinical = factor_pairs(model_path)
    text = predict_cli(model_path, data / BREAST1[0], data / BREAST1[1], clinical)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith("Not reliable: "), lines
    assert lines[1].startswith("TRAINED ON SYNTHETIC DATA")
    assert "risk group withheld" in lines[2] and not any(" high risk" in x or " low risk" in x for x in lines)
    scored = json.loads(predict_cli(model_path, data / BREAST1[0], data / BREAST1[1], clinical, "--json").stdout)
    assert scored["verdict"]["state"] == "not_reliable" and scored["risk_group"] is None
    assert scored["risk_group_computed"] in ("low", "intermediate", "high") and 0 <= scored["probability"] <= 1
    assert scored["synthetic"] and scored["banner"].startswith("TRAINED ON SYNTHETIC DATA")
    assert any(f["kind"] == "phase" for f in scored["image"]["findings"])  # a 3-D file vs an 8-phase series
    strict = predict_cli(model_path, data / BREAST1[0], data / BREAST1[1], clinical, "--strict")
    assert strict.returncode == 2 and strict.stdout.splitlines()[0] == lines[0]
    assert "Not reliable" in strict.stderr and "Traceback" not in strict.stderr


def phase_file(phantom: Path, pid: str, tmp_path: Path):
    """A training patient's scored phase (index 1) written alone as a 3-D file, with its mask and row."""
    row = pd.read_csv(phantom / "cohort.csv", dtype=str).set_index("ID").loc[pid]
    image, _, _ = imaging.load_phase(phantom / row["Image"], 1)
    out = tmp_path / f"{pid}-phase1.nrrd"
    sitk.WriteImage(image, str(out))
    return phantom / row["Image"], out, phantom / row["Mask"], row


def test_a_single_phase_file_is_not_reliable_until_declared_the_training_phase(phantom, quick_model, tmp_path):
    model = ScoringModel.load(quick_model)
    pid = pd.read_csv(phantom / "cohort.csv", dtype=str)["ID"].iloc[0]
    dce, alone, mask, row = phase_file(phantom, pid, tmp_path)
    clinical = {f: row[f] for f in model.factors}
    whole = json.loads(predict_cli(quick_model, dce, mask, clinical, "--json").stdout)
    undeclared = json.loads(predict_cli(quick_model, alone, mask, clinical, "--json").stdout)
    declared = json.loads(predict_cli(quick_model, alone, mask, clinical, "--json", "--image-is-phase", "1").stdout)
    assert undeclared["verdict"]["state"] == "not_reliable" and "--image-is-phase 1" in undeclared["verdict"]["headline"]
    assert declared["verdict"] == whole["verdict"] and declared["radscore"] == whole["radscore"]
    assert declared["phase"] == whole["phase"] == 1
    wrong = json.loads(predict_cli(quick_model, alone, mask, clinical, "--json", "--image-is-phase", "3").stdout)
    assert wrong["verdict"]["state"] == "not_reliable" and "phase index 3" in wrong["verdict"]["headline"]
    one_line_error(predict_cli(quick_model, dce, mask, clinical, "--image-is-phase", "1"), "--image-is-phase")


# --------------------------------------------------------------------------- masks that are images

def test_an_intensity_image_given_as_the_mask_is_named_as_one(quick_model, tmp_path):
    data = pyradiomics_data()
    clinical = factor_pairs(quick_model)
    image = data / BREAST1[0]
    line = one_line_error(predict_cli(quick_model, image, image, clinical), str(image), "intensity image")
    present = int(np.median(sitk.GetArrayFromImage(sitk.ReadImage(str(image)))))
    one_line_error(predict_cli(quick_model, image, image, clinical, "--label", str(max(present, 1))),
                   "intensity image")
    assert "not a segmentation" in line


def test_a_speckled_label_is_refused_and_a_mask_over_half_the_image_is_not_reliable(quick_model, tmp_path):
    data = pyradiomics_data()
    clinical = factor_pairs(quick_model)
    reference = sitk.ReadImage(str(data / BREAST1[1]))
    rng = np.random.default_rng(0)
    speckle = (rng.random(sitk.GetArrayViewFromImage(reference).shape) < 0.05).astype(np.uint8)
    mask = sitk.GetImageFromArray(speckle)
    mask.CopyInformation(reference)
    sitk.WriteImage(mask, str(tmp_path / "speckle.nrrd"))
    one_line_error(predict_cli(quick_model, data / BREAST1[0], tmp_path / "speckle.nrrd", clinical),
                   "disconnected pieces")
    half = np.zeros_like(speckle)
    half[:, : half.shape[1] // 2 + 2] = 1   # a block over half the image: an organ or a threshold, not a tumour
    big = sitk.GetImageFromArray(half)
    big.CopyInformation(reference)
    sitk.WriteImage(big, str(tmp_path / "half.nrrd"))
    scored = json.loads(predict_cli(quick_model, data / BREAST1[0], tmp_path / "half.nrrd", clinical, "--json").stdout)
    assert scored["verdict"]["state"] == "not_reliable"
    assert any(r.startswith("implausible for a tumour: the mask covers 5") for r in scored["verdict"]["reasons"])


# --------------------------------------------------------------------------- one core, faces that agree

def feature_cases(model_path: Path, phantom: Path):
    """Features-table golden cases: a training patient inside every range, one feature pushed just
    outside its range (extrapolation), and far outside (not reliable)."""
    doc = read_model_document(model_path)
    feats = pd.read_csv(phantom / "features.csv", dtype={"ID": str}).set_index("ID")
    ranges = doc["domain"]["features"]
    inside = feats.index[np.all([feats[f].between(r["p01"], r["p99"]) for f, r in ranges.items()], axis=0)]
    row = feats.loc[inside[0], list(ranges)].to_dict()
    name, r = next(iter(ranges.items()))
    width = r["p99"] - r["p01"]
    return {"inside": row, "near": {**row, name: r["p99"] + 0.1 * width}, "far": {**row, name: r["p99"] + 5 * width}}


def test_features_table_cases_get_each_verdict(phantom, quick_model):
    model = ScoringModel.load(quick_model)
    clinical = factor_pairs(quick_model, 0)
    states = {k: score_case(model, Case.from_values(v), clinical).verdict.state
              for k, v in feature_cases(quick_model, phantom).items()}
    assert states["near"] == "extrapolation" and states["far"] == "not_reliable"
    assert states["inside"] in ("within", "extrapolation")  # the Rad-Score itself may still lie outside


SAME = ("verdict", "radscore", "probability", "ci95", "risk_group", "risk_group_computed", "points", "features",
        "warnings", "domain", "image", "display", "synthetic", "banner")


def test_every_face_scores_the_golden_cases_identically(phantom, quick_model, paper_model, tmp_path):
    """The CLI (--json), the Slicer controller (slicer-core, headless) and the core agree on every key
    a face shows, to the last digit; no face adds a warning the core did not give."""
    slicer = pytest.importorskip("slicer", reason="slicer-core is installed by make install (test extra)")
    from IMNRiskSlicer.controller import ScoringController
    from test_slicer import breast1_controller
    data = pyradiomics_data()
    for model_path in (quick_model, paper_model):
        clinical = factor_pairs(model_path)
        cli = json.loads(predict_cli(model_path, data / BREAST1[0], data / BREAST1[1], clinical, "--json").stdout)
        controller = breast1_controller(model_path, clinical)[0]
        assert controller.predict() is not None, controller.state()["error"]
        shown = controller.state()["result"]
        assert shown["verdict"]["state"] == "not_reliable" and shown["risk_group"] is None
        for key in SAME:
            assert json.loads(json.dumps(shown[key])) == json.loads(json.dumps(cli[key])), key
        controller.close()
    # a phantom patient's 8-phase series as a sequence (second phase shown and scored) with its tumour
    from test_slicer import add_sequence, segmentation_from_labelmap
    row = pd.read_csv(phantom / "cohort.csv", dtype=str).set_index("ID").iloc[0]
    dce, mask = phantom / row["Image"], phantom / row["Mask"]
    clinical = {f: row[f] for f in read_model_document(quick_model)["clinical"]["factors"]}
    cli = json.loads(predict_cli(quick_model, dce, mask, clinical, "--json").stdout)
    scene = slicer.vtkMRMLScene()
    add_sequence(scene, [imaging.load_phase(dce, k)[0] for k in range(imaging.count_phases(sitk.ReadImage(str(dce))))])
    segmentation, _ = segmentation_from_labelmap(scene, mask)
    controller = ScoringController(scene)
    controller.choose_segmentation(segmentation.GetID())
    controller.load_model(str(quick_model))
    for name, value in clinical.items():
        controller.set_clinical(name, value)
    assert controller.state()["phase"] == 1 and controller.predict() is not None, controller.state()["error"]
    shown = controller.state()["result"]
    assert shown["phase"] == cli["phase"] == 1 and shown["n_phases"] == cli["n_phases"]
    for key in SAME:
        assert json.loads(json.dumps(shown[key])) == json.loads(json.dumps(cli[key])), key
    controller.close()
    # a features-table case through the controller equals the core on the same values
    model = ScoringModel.load(quick_model)
    clinical = factor_pairs(quick_model)
    for label, values in feature_cases(quick_model, phantom).items():
        path = tmp_path / f"{label}.csv"
        pd.DataFrame([values], index=pd.Index([label], name="ID")).to_csv(path, float_format="%.17g")
        controller = ScoringController(slicer.vtkMRMLScene())
        controller.load_model(str(quick_model))
        controller.load_features_csv(str(path))
        for name, value in clinical.items():
            controller.set_clinical(name, value)
        assert controller.predict() is not None, controller.state()["error"]
        core = score_case(model, Case.from_values(values, source=str(path)), clinical,
                          Options(clinical_source="clinical factors")).to_dict()
        shown = controller.state()["result"]
        for key in SAME:
            assert json.loads(json.dumps(shown[key])) == json.loads(json.dumps(core[key])), (label, key)
        controller.close()


def test_no_face_judges_a_patient_on_its_own():
    """One scoring function in the tree: the faces call the core; none computes a range check, a
    group or a warning of its own."""
    root = Path(__file__).resolve().parents[1]
    faces = [root / "IMNRisk" / "IMNRiskSlicer" / "controller.py", root / "IMNRisk" / "IMNRiskSlicer" / "logic.py",
             root / "IMNRiskWeb" / "app.py", root / "IMNRiskLib" / "app" / "cli.py", root / "IMNRiskLib" / "app" / "pacs.py"]
    for path in faces:
        text = path.read_text(encoding="utf-8")
        for judged in ("risk_group(", "domain.check(", "check_acquisition(", "_range_warnings", ".radscore(",
                       ".probability(", "compute_features("):
            assert judged not in text, (path.name, judged)
    assert (root / "IMNRisk" / "IMNRisk.py").read_text(encoding="utf-8").count('result["display"]') == 1


def test_risk_groups_whose_cut_offs_meet_are_worded_as_two_groups(quick_model, tmp_path):
    """When the Youden cut-off already keeps training sensitivity >= 90%, `risk_thresholds` gives
    low = high: the result names two groups and says there is no intermediate one, instead of an
    empty interval "low < t <= intermediate < t <= high"."""
    doc = json.loads(quick_model.read_text(encoding="utf-8"))
    values = {f: 0.0 for f in doc["radiomics"]["features"]}
    clinical = factor_pairs(quick_model, level=0)
    worded = {}
    for meet in (False, True):
        edited = json.loads(json.dumps(doc))
        high = edited["risk_groups"]["high"]
        edited["risk_groups"]["low"] = high if meet else high / 2
        edited.pop("sha256")
        path = tmp_path / f"model-{meet}.json"
        path.write_text(json.dumps(seal(edited)), encoding="utf-8")
        result = score_case(ScoringModel.load(path), Case.from_values(values), clinical)
        worded[meet] = result.display()["group"]
        assert result.risk_group_computed != "intermediate" or not meet
    assert "<= intermediate <" in worded[False] and "no intermediate group" not in worded[False]
    assert "no intermediate group" in worded[True] and "<= intermediate <" not in worded[True]
