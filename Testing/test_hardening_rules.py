"""Hardening, third round (issue 29): one rule for outputs, provenance that holds together, strict
manifests and settings files, bounded resources, and no internal error where the user erred.

Every refusal is exit 2 with one line naming the file (and ID/field where there is one)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from conftest import ROOT, assert_refused, run_cli
from IMNRiskLib.app import cli
from IMNRiskLib.outputs.dicomout import SEG_NAME

# --------------------------------------------------------------------------- 1. one rule for outputs

# Every argument of every command, by role (the test below fails when the parser has an argument this
# table does not classify, so a new output flag cannot be forgotten):
#   "out"          a file the command writes
#   ("dir", NAME)  an output folder; NAME is one file the command writes into it
#   "prefix"       PREFIX.key and PREFIX.pub
#   "in"           a file the run reads
#   None           anything else (numbers, switches, addresses; extract's --cache is reused by design)
ROLES = {
    "extract": {"cohort": "in", "out": "out", "params": "in", "schema": "in", "dask": None, "cache": None,
                "mask2_min_dice": None, "jobs": None, "quiet": None, "force": None},
    "tables": {"cohort": "in", "out": ("dir", "table1.csv"), "schema": "in", "entry_p": None, "keep_p": None,
               "protocol": None, "force": None},
    "stats": {"predictions": "in", "outcome": None, "json": None},
    "train": {"cohort": "in", "features": "in", "out": ("dir", "model.json"), "schema": "in", "cv_folds": None,
              "cv_repeats": None, "bootstrap": None, "lasso_rule": None, "clinical_test": None, "protocol": None,
              "seed": None, "shrink": None, "features2": "in", "icc_threshold": None, "no_icc": None,
              "no_ci_replicates": None, "dask": None, "jobs": None, "quiet": None, "force": None},
    "report": {"dir": ("dir", "report.html"), "force": None},
    "predict": {"model": "in", "image": "in", "mask": "in", "phase": None, "label": None, "clinical": None,
                "json": None, "dicom_out": ("dir", SEG_NAME), "force": None, "allow_version_mismatch": None,
                "trusted_key": "in", "ci": None, "image_is_phase": None, "strict": None},
    "pacs": {"model": "in", "config": "in", "study": None, "series": None, "mask": "in", "phase": None,
             "label": None, "clinical": None, "out": ("dir", SEG_NAME), "no_store": None, "json": None,
             "force": None},
    "web": {"model": "in", "port": None, "host": None, "random_token": None, "models": "in", "trusted_key": "in",
            "max_upload_mb": None, "max_sessions": None, "idle_minutes": None, "grace_seconds": None},
    "keygen": {"prefix": "prefix", "force": None},
    "sign": {"model": "in", "key": "in", "out": "out", "force": None},
    "verify": {"model": "in", "trusted_key": "in"},
    "validate": {"model": "in", "cohort": "in", "out": ("dir", "validation.json"), "features": "in",
                 "recalibrate": None, "jobs": None, "quiet": None, "force": None},
    "synth": {"dir": ("dir", "cohort.csv"), "patients": None, "seed": None, "jobs": None, "quiet": None,
              "force": None, "full_size": None, "dicom": None, "dicom_form": None},
    "demo": {"out": ("dir", "features.csv"), "cv_repeats": None, "bootstrap": None, "protocol": None,
             "patients": None, "seed": None, "jobs": None, "quiet": None, "force": None},
}
REQUIRED_VALUES = {("pacs", "study"): "1.2.826.0.1.3680043.2.1125.1"}  # required arguments that are not paths
SLOW_WORK = {"train": ["--cv-repeats", "0", "--bootstrap", "0", "--quiet", "--jobs", "1"],
             "demo": ["--patients", "4", "--cv-repeats", "0", "--bootstrap", "0", "--quiet", "--jobs", "1"],
             "synth": ["--patients", "4", "--quiet", "--jobs", "1"], "extract": ["--jobs", "1", "--quiet"],
             "validate": ["--jobs", "1", "--quiet"]}


def subparsers():
    parser = cli.build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def outputs_of_every_command():
    """(command, dest) for every output argument of the parser (classified by ROLES)."""
    return [(c, d) for c, roles in ROLES.items() for d, role in roles.items() if role not in (None, "in")]


def test_the_table_classifies_every_argument_of_every_command():
    found = {name: {a.dest for a in p._actions if a.dest != "help"} for name, p in subparsers().items()}
    assert found == {c: set(r) for c, r in ROLES.items()}
    for command, dest in outputs_of_every_command():  # every command that writes can be told to overwrite
        assert "force" in ROLES[command], command


def output_path(tmp_path, role) -> Path:
    """The file a command would write for an output argument of this role."""
    if role == "out":
        return tmp_path / "result.out"
    if role == "prefix":
        return tmp_path / "author.key"
    return tmp_path / "outdir" / role[1]


def invocation(tmp_path, command: str, out_dest: str, force: bool, replace=None):
    """argv for `command` with every input a small file (or `replace` for one of them) and the output
    argument `out_dest` pointing where output_path says."""
    argv = [command]
    options = []
    for action in subparsers()[command]._actions:
        dest, role = action.dest, ROLES[command].get(action.dest)
        if dest == "help":
            continue
        if role == "in":
            value = replace[1] if replace and replace[0] == dest else tmp_path / "inputs" / f"{dest}.txt"
            if not value.exists():
                value.parent.mkdir(parents=True, exist_ok=True)
                value.write_text(f"the user's {dest}\n", encoding="utf-8")
        elif dest == out_dest:
            target = output_path(tmp_path, role)
            value = target if role == "out" else (tmp_path / "author" if role == "prefix" else target.parent)
        elif (command, dest) in REQUIRED_VALUES:
            value = REQUIRED_VALUES[(command, dest)]
        else:
            continue
        if action.option_strings:
            options += [action.option_strings[0], str(value)]
        else:
            argv.append(str(value))
    return argv + options + SLOW_WORK.get(command, []) + (["--force"] if force else [])


def run_main(argv, capsys):
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command, dest", outputs_of_every_command())
def test_no_output_replaces_an_existing_file_without_force(tmp_path, capsys, command, dest):
    target = output_path(tmp_path, ROLES[command][dest])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"the user's file\n")
    code, err = run_main(invocation(tmp_path, command, dest, force=False), capsys)
    assert code == 2 and "--force" in err and "internal error" not in err, err
    assert target.read_bytes() == b"the user's file\n"


INPUT_AS_OUTPUT = [(c, d, i) for c, d in outputs_of_every_command() for i, r in ROLES[c].items() if r == "in"]


@pytest.mark.parametrize("command, dest, source", INPUT_AS_OUTPUT)
def test_no_output_is_an_input_of_the_run_even_with_force(tmp_path, capsys, command, dest, source):
    target = output_path(tmp_path, ROLES[command][dest])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"the only copy\n")
    code, err = run_main(invocation(tmp_path, command, dest, force=True, replace=(source, target)), capsys)
    assert code == 2 and "output is also an input" in err, err
    assert target.read_bytes() == b"the only copy\n"


@pytest.mark.parametrize("command, dest", [(c, d) for c, d in outputs_of_every_command()
                                           if ROLES[c][d] in ("out", "prefix")])
def test_an_output_file_named_as_a_folder_is_refused(tmp_path, capsys, command, dest):
    argv = invocation(tmp_path, command, dest, force=True)
    given = str(tmp_path / "folder") + "/"
    target = output_path(tmp_path, ROLES[command][dest])
    argv[argv.index(str(target if ROLES[command][dest] == "out" else tmp_path / "author"))] = given
    code, err = run_main(argv, capsys)
    assert code == 2 and "names a folder; give a file name" in err, err
    assert not (tmp_path / "folder").exists() and not list(tmp_path.glob("folder*"))


# --------------------------------------------------------------------------- 2. provenance that holds together

ORIGINAL_ONLY = ROOT / "Testing" / "data" / "original_only.yaml"
QUICK = ("--cv-repeats", "0", "--bootstrap", "0", "--quiet", "--jobs", "1")


def test_a_provenance_whose_settings_were_edited_is_refused(tmp_path, phantom):
    shutil.copy(phantom / "features.csv", tmp_path / "features.csv")
    prov = json.loads((phantom / "features.provenance.json").read_text(encoding="utf-8"))
    assert prov["settings"]["pyradiomics"]["setting"]["binCount"] == 64
    prov["settings"]["pyradiomics"]["setting"]["binCount"] = 16  # by hand; settings_sha256 left as it was
    (tmp_path / "features.provenance.json").write_text(json.dumps(prov), encoding="utf-8")
    result = run_cli("train", phantom / "cohort.csv", "--features", tmp_path / "features.csv", "--out",
                     tmp_path / "out", *QUICK)
    assert_refused(result, "features.provenance.json: settings: its settings were edited")
    assert not (tmp_path / "out").exists()


def write_pair(phantom, folder):
    """features.csv and features_reader2.csv written as extract writes them (each provenance records the
    other table's SHA-256); the second reading is the first with 1% noise."""
    from IMNRiskLib.radiomics import features
    first = features.read_features(phantom / "features.csv")
    second = first * (1 + 0.01 * np.random.default_rng(0).standard_normal(first.shape))
    prov = json.loads((phantom / "features.provenance.json").read_text(encoding="utf-8"))
    prov.pop("features_sha256")
    run = features.ExtractionRun(features=first, failures=[], provenance=prov,
                                 reader2=features.ExtractionRun(features=second, failures=[],
                                                                provenance={**prov, "reader": 2}))
    return features.write_run(run, folder / "features.csv")


def test_train_refuses_a_second_readers_table_that_is_not_the_one_extracted(tmp_path, phantom):
    paths = write_pair(phantom, tmp_path)
    reader2 = paths["reader2"]
    edited = pd.read_csv(reader2, dtype={"ID": str})
    edited.iloc[3, 5] *= 1.5  # one value of one patient
    edited.to_csv(tmp_path / "edited_reader2.csv", index=False)
    result = run_cli("train", phantom / "cohort.csv", "--features", paths["features"], "--out", tmp_path / "o1",
                     "--features2", tmp_path / "edited_reader2.csv", *QUICK)
    assert_refused(result, "edited_reader2.csv: reader2_features_sha256: is not the second reader's table extracted "
                           "with features.csv")
    shutil.copy(tmp_path / "edited_reader2.csv", reader2)  # edited in place, its own provenance removed
    paths["reader2_provenance"].unlink()
    result = run_cli("train", phantom / "cohort.csv", "--features", paths["features"], "--out", tmp_path / "o2",
                     *QUICK)
    assert_refused(result, "features_reader2.csv: reader2_features_sha256")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_the_untouched_pair_trains_with_the_icc_filter(tmp_path, phantom):
    paths = write_pair(phantom, tmp_path)
    result = run_cli("train", phantom / "cohort.csv", "--features", paths["features"], "--out", tmp_path / "out",
                     *QUICK)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["selection"]["icc"]["n_patients"] == len(pd.read_csv(paths["reader2"]))


def cohort_with_second_reader(phantom, folder, n=3):
    """The first n phantom patients with their Mask2, copied into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = pd.read_csv(phantom / "cohort.csv", dtype=str).head(n)
    rows["Mask2"] = [str(Path(m).with_name("tumour_reader2.nrrd")) for m in rows["Mask"]]
    for column in ("Image", "Mask", "Mask2"):
        for rel in rows[column]:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(phantom / rel, folder / rel)
    rows.to_csv(folder / "cohort.csv", index=False)
    return folder / "cohort.csv", rows


def test_a_second_readers_mask_of_another_tumour_is_refused_by_dice(tmp_path, phantom):
    cohort, rows = cohort_with_second_reader(phantom, tmp_path / "c")
    first_mask = sitk.ReadImage(str(tmp_path / "c" / rows["Mask"][0]))
    array = sitk.GetArrayFromImage(first_mask)
    moved = np.roll(array, array.shape[2] // 2, axis=2)  # the same shape, half the image away: no voxel in common
    assert not (moved.astype(bool) & array.astype(bool)).any()
    elsewhere = sitk.GetImageFromArray(moved)
    elsewhere.CopyInformation(first_mask)
    sitk.WriteImage(elsewhere, str(tmp_path / "c" / rows["Mask2"][0]))
    result = run_cli("extract", cohort, "--out", tmp_path / "features.csv", "--params", ORIGINAL_ONLY, "--jobs", "1",
                     "--quiet")
    mask, mask2 = (str(tmp_path / "c" / rows[c][0]) for c in ("Mask", "Mask2"))
    assert_refused(result, f"{mask2}: ID {rows['ID'][0]}: Mask2: overlaps Mask by Dice 0.00, below 0.5", mask)
    reader2 = pd.read_csv(tmp_path / "features_reader2.csv", dtype={"ID": str})
    assert list(reader2["ID"]) == list(rows["ID"][1:])  # the others' second readings (Dice >= 0.5) are kept
    failures = pd.read_csv(tmp_path / "features.failures.csv", dtype=str)
    assert "Dice 0.00" in failures["reason"][0] and str(tmp_path) not in failures["reason"][0]


# --------------------------------------------------------------------------- 3. manifests read with one strict dialect

def manifest_lines(phantom, n=6):
    return (phantom / "cohort.csv").read_text(encoding="utf-8").splitlines()[:n + 1]


def test_a_nul_byte_in_a_manifest_is_refused_naming_its_line(tmp_path, phantom):
    lines = manifest_lines(phantom)
    lines[3] = lines[3].replace(",", ",\0", 1)
    (tmp_path / "cohort.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert_refused(run_cli("tables", tmp_path / "cohort.csv", "--out", tmp_path / "t"),
                   "cohort.csv: line 4 holds a NUL byte")


def test_an_excel_trailing_delimiter_is_an_empty_trailing_column_not_a_shift(tmp_path, phantom):
    from IMNRiskLib.inputs.cohort import read_cohort
    lines = manifest_lines(phantom)
    for name, text in (("rows.csv", [lines[0]] + [line + "," for line in lines[1:]]),  # records only
                       ("both.csv", [line + "," for line in lines])):  # header and records
        (tmp_path / name).write_text("\r\n".join(text) + "\r\n", encoding="utf-8")
        cohort = read_cohort(tmp_path / name, need_clinical=True, need_outcome=True)
        want = pd.read_csv(phantom / "cohort.csv", dtype=str).head(len(lines) - 1)
        assert cohort.ids == list(want["ID"])
        assert [c.image for c in cohort.cases] == [tmp_path / p for p in want["Image"]]
        assert [c.outcome for c in cohort.cases] == [int(v) for v in want["IMN"]]


def test_a_stray_delimiter_is_refused_naming_its_line(tmp_path, phantom):
    lines = manifest_lines(phantom)
    lines[2] = lines[2].replace(",", ",x,", 1)
    (tmp_path / "cohort.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert_refused(run_cli("tables", tmp_path / "cohort.csv", "--out", tmp_path / "t"),
                   "cohort.csv: line 3 has", "field(s), the header")


def test_an_id_with_a_line_break_is_refused_on_one_line_naming_its_line(tmp_path, phantom):
    lines = manifest_lines(phantom)
    first, rest = lines[2].split(",", 1)
    lines[2] = f'"{first}\n{first}",{rest}'
    (tmp_path / "cohort.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_cli("tables", tmp_path / "cohort.csv", "--out", tmp_path / "t")
    assert_refused(result, "cohort.csv: ID: line 3: the value holds a line break")
    assert result.stderr.count("\n") == 1  # one line, not split by the ID


def test_a_mask_covering_the_whole_image_is_refused_clearly(tmp_path):
    from conftest import make_volume
    from IMNRiskLib.inputs import imaging
    from IMNRiskLib.core.errors import InputError
    image = make_volume()
    full = sitk.GetImageFromArray(np.ones(image.GetSize()[::-1], np.uint8))
    full.CopyInformation(image)
    sitk.WriteImage(image, str(tmp_path / "image.nrrd"))
    sitk.WriteImage(full, str(tmp_path / "mask.nrrd"))
    with pytest.raises(InputError, match=r"the mask covers the whole image \(all 32000 voxels are tumour\)"):
        imaging.load_case(tmp_path / "image.nrrd", tmp_path / "mask.nrrd")


# --------------------------------------------------------------------------- 4. settings files checked before use

PACS_BASE = "called_ae: ORTHANC\nhost: 127.0.0.1\nport: 4242\n"


@pytest.mark.parametrize("text, field, message", [
    ("1: ORTHANC\nhost: 127.0.0.1\nport: 4242\n", "1", "key 1 is not a name"),
    ("called_ae: ORTHANC\nhost: [1, 2]\nport: 4242\n", "host", "must be a non-empty text"),
    (PACS_BASE + "timeout: abc\n", "timeout", "must be a finite number"),
    (PACS_BASE + "timeout: -5\n", "timeout", "must be more than 0"),
    ("called_ae: ORTHANC\nhost: 127.0.0.1\nport: true\n", "port", "must be an integer"),
    (PACS_BASE + "move_bind: 0.0.0.0\n", "move_bind", "is not a loopback address"),
    (PACS_BASE + "move_bind_allow_remote: yes please\n", "move_bind_allow_remote", "must be true or false"),
])
def test_pacs_settings_are_checked_with_types_and_ranges(tmp_path, capsys, text, field, message):
    config = tmp_path / "pacs.yaml"
    config.write_text(text, encoding="utf-8")
    code, err = run_main(["pacs", tmp_path / "model.json", "--config", config, "--study", "1.2.3", "--mask",
                          tmp_path / "m.nrrd", "--out", tmp_path / "out"], capsys)
    assert code == 2 and f"{config}: {field}: " in err and message in err, err
    assert err.count("\n") == 1


def test_a_remote_move_bind_needs_its_key(tmp_path):
    from IMNRiskLib.app.pacs import load_pacs_settings
    config = tmp_path / "pacs.yaml"
    config.write_text(PACS_BASE + "move_bind: 0.0.0.0\nmove_bind_allow_remote: true\ntimeout: 2.5\n", encoding="utf-8")
    settings = load_pacs_settings(config)
    assert (settings.move_bind, settings.move_bind_allow_remote, settings.timeout) == ("0.0.0.0", True, 2.5)
    config.write_text(PACS_BASE + "move_bind: ::1\n", encoding="utf-8")
    assert load_pacs_settings(config).move_bind == "::1"  # loopback needs nothing


@pytest.mark.parametrize("text, field", [
    ("setting: {binCount: abc}\n", "setting: binCount: not a valid pyradiomics parameter file: Value 'abc' is not"),
    ("setting: {binCountt: 5}\n", "setting: binCountt: not a valid pyradiomics parameter file: unknown key"),
    ("1: 2\n", "1: key 1 is not a name"),
    ("imnrisk: {smoothing_sigma_mm: abc}\n", "imnrisk: smoothing_sigma_mm: must be a finite number"),
    ("imnrisk: {min_tumour_voxels: 0}\n", "imnrisk: min_tumour_voxels: must be in [1, inf]"),
])
def test_parameter_files_name_the_key_without_pykwalifys_dump(tmp_path, capsys, text, field):
    params = tmp_path / "params.yaml"
    params.write_text(text, encoding="utf-8")
    (tmp_path / "cohort.csv").write_text("ID,Image,Mask\nA,a.nrrd,m.nrrd\n", encoding="utf-8")
    code, err = run_main(["extract", tmp_path / "cohort.csv", "--out", tmp_path / "f.csv", "--params", params], capsys)
    assert code == 2 and f"{params}: {field}" in err, err
    assert err.count("\n") == 1 and "All found errors" not in err


@pytest.mark.parametrize("variable, field", [
    ("{name: age, type: continuous, levles: [a, b]}", "variable age: levles: unknown key"),
    ("{name: age, type: continuous, min: abc}", "variable age: min: must be a finite number"),
    ("{name: [1, 2], type: binary, levels: [a, b]}", "variables[0]: name: must be a text"),
    ("{name: age, 3: x, type: continuous}", "variable age: 3: is not a name"),
])
def test_schema_files_name_the_right_key(tmp_path, capsys, variable, field):
    schema = tmp_path / "schema.yaml"
    schema.write_text(f"outcome: {{name: IMN}}\nvariables:\n  - {variable}\n", encoding="utf-8")
    (tmp_path / "cohort.csv").write_text("ID,IMN,age\nA,1,50\n", encoding="utf-8")
    code, err = run_main(["tables", tmp_path / "cohort.csv", "--out", tmp_path / "t", "--schema", schema], capsys)
    assert code == 2 and f"{schema}: {field}" in err, err


# --------------------------------------------------------------------------- 5. no internal error where the user erred

def test_report_on_metrics_without_the_fixed_keys_is_refused(tmp_path, capsys, quick_model):
    folder = tmp_path / "model"
    shutil.copytree(quick_model.parent, folder)
    (folder / "metrics.json").write_text("{}", encoding="utf-8")
    code, err = run_main(["report", folder, "--force"], capsys)
    assert code == 2 and f"{folder / 'metrics.json'}: not the metrics of imnrisk train: key cohort.n is missing" in err


@pytest.mark.parametrize("command", ["extract", "train"])
def test_a_dask_address_that_does_not_parse_is_refused(tmp_path, capsys, phantom, command):
    out = tmp_path / ("features.csv" if command == "extract" else "out")
    argv = [command, phantom / "cohort.csv", "--out", out, "--dask", "not a url"]
    argv += ["--features", phantom / "features.csv"] if command == "train" else []
    code, err = run_main(argv, capsys)
    assert code == 2 and "--dask: 'not a url' is not a Dask scheduler address" in err, err


def test_a_model_whose_format_version_is_a_string_is_refused_as_such(tmp_path, capsys, quick_model):
    from IMNRiskLib.scoring.modelfile import seal
    doc = json.loads(quick_model.read_text(encoding="utf-8"))
    doc["format_version"] = str(doc["format_version"])
    doc.pop("sha256")
    (tmp_path / "model.json").write_text(json.dumps(seal(doc)), encoding="utf-8")
    code, err = run_main(["verify", tmp_path / "model.json", "--trusted-key", tmp_path / "none.pub"], capsys)
    assert code == 2 and "format_version: model format version '1' is not a whole number" in err, err
    assert "newer" not in err


def test_train_names_the_patient_of_a_non_numeric_feature_value(tmp_path, capsys, phantom):
    feats = pd.read_csv(phantom / "features.csv", dtype=str)
    column = feats.columns[7]
    feats.loc[feats["ID"] == "SYN0005", column] = "abc"
    feats.to_csv(tmp_path / "features.csv", index=False)
    code, err = run_main(["train", phantom / "cohort.csv", "--features", tmp_path / "features.csv", "--out",
                          tmp_path / "out", *QUICK], capsys)
    assert code == 2 and f"features.csv: ID SYN0005: {column}: 'abc' is not a number" in err, err


# --------------------------------------------------------------------------- 6. bounded resources

def test_a_training_run_that_cannot_fit_in_memory_is_refused_with_its_estimate(tmp_path, capsys, phantom):
    from IMNRiskLib.app.training import machine_memory
    code, err = run_main(["train", phantom / "cohort.csv", "--features", phantom / "features.csv", "--out",
                          tmp_path / "out", "--bootstrap", "100000000", "--cv-repeats", "0", "--jobs", "1",
                          "--quiet"], capsys)
    assert code == 2 and "--bootstrap: this run needs 100000001 whole-pipeline fits, about" in err, err
    assert f"this machine has {machine_memory() / 1e9:.3g} GB" in err and "--force" in err
    assert not (tmp_path / "out").exists()


def test_the_memory_estimate_covers_what_a_bootstrap_replicate_keeps(phantom):
    import gc
    import tracemalloc
    from IMNRiskLib.resampling import validation
    from IMNRiskLib.modelling.models import TrainingOptions
    from IMNRiskLib.app.training import RESULT_BYTES, estimate_resources, load_training_data
    data = load_training_data(phantom / "cohort.csv", phantom / "features.csv")
    data.options = TrainingOptions()
    samples = validation.bootstrap_samples(len(data.y), 5, 0)
    validation._boot_task((0, data, samples[0]))  # imports and caches first
    gc.collect()
    tracemalloc.start()
    kept = [(s, validation._boot_task((k, data, s))) for k, s in enumerate(samples[1:])]
    gc.collect()
    per_replicate = tracemalloc.get_traced_memory()[0] / len(kept)
    tracemalloc.stop()
    assert 0 < per_replicate <= RESULT_BYTES + 8 * len(data.y)
    one, many = (estimate_resources(len(data.y), data.features.shape[1], 5, 0, b, 1) for b in (1, 1001))
    assert many.memory_bytes - one.memory_bytes == pytest.approx(1000 * (RESULT_BYTES + 8 * len(data.y)))
    assert many.fits == 1002


def test_jobs_zero_is_every_core_and_negative_counts_from_the_end_as_joblib(capsys):
    import os
    from IMNRiskLib.core.workers import resolve_jobs
    cores = os.cpu_count()
    assert [resolve_jobs(j) for j in (0, -1, 1, 3)] == [cores, cores, 1, 3]
    if cores > 1:
        assert resolve_jobs(-2) == cores - 1
    code, err = run_main(["synth", "unused", "--jobs", str(-cores - 1)], capsys)
    assert code == 2 and f"--jobs: --jobs {-cores - 1} leaves no worker on this machine's {cores} core(s)" in err


def test_an_empty_or_nul_argument_is_refused_naming_it(tmp_path, capsys):
    code, err = run_main(["extract", tmp_path / "cohort.csv", "--out", ""], capsys)
    assert code == 2 and "--out: is empty; give a value" in err  # not the current folder's name
    code, err = run_main(["web", "--host", " "], capsys)
    assert code == 2 and "--host: is empty" in err  # not every interface
    code, err = run_main(["keygen", "a\0b"], capsys)
    assert code == 2 and "prefix: holds a NUL character" in err
