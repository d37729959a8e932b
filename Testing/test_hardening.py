"""Hardening (issue 11): wrong inputs are refused (exit 2, one line naming file/ID/field), never
scored; every user error exits 2; outputs are consistent, complete or absent; nothing travels with
a path or a name in it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from conftest import ROOT, assert_refused, make_blob_mask, make_volume, run_cli
from IMNRiskLib.inputs import imaging
from IMNRiskLib.core.errors import InputError
from IMNRiskLib.scoring.modelfile import seal
from test_imaging import write_dicom_series

ORIGINAL_ONLY = ROOT / "Testing" / "data" / "original_only.yaml"


def first_case(phantom):
    row = pd.read_csv(phantom / "cohort.csv", dtype=str).iloc[0]
    return phantom / row["Image"], phantom / row["Mask"], row


def clinical_args(model_path, row):
    factors = json.loads(model_path.read_text(encoding="utf-8"))["clinical"]["factors"]
    return ["--clinical", *[f"{f}={row[f]}" for f in factors]]


# --------------------------------------------------------------------------- 1. wrong inputs refused

def test_the_image_given_as_its_own_mask_is_refused(phantom, quick_model):
    image, _, row = first_case(phantom)
    result = run_cli("predict", quick_model, "--image", image, "--mask", image, *clinical_args(quick_model, row))
    assert_refused(result, "mask is not a label map", "distinct values", str(image))
    assert "risk" not in result.stdout


def test_a_float_intensity_mask_is_refused_and_an_integral_float_label_map_is_accepted(tmp_path):
    image = make_volume()
    sitk.WriteImage(image, str(tmp_path / "img.nrrd"))
    sitk.WriteImage(image, str(tmp_path / "float_mask.nrrd"))  # float intensities as the mask
    with pytest.raises(InputError, match=r"mask is not a label map: \d+ voxel\(s\) are not whole numbers"):
        imaging.load_case(tmp_path / "img.nrrd", tmp_path / "float_mask.nrrd")
    label = sitk.Cast(make_blob_mask(image), sitk.sitkFloat32)  # 0.0/1.0: a label map stored as floats
    sitk.WriteImage(label, str(tmp_path / "float_label.nrrd"))
    case = imaging.load_case(tmp_path / "img.nrrd", tmp_path / "float_label.nrrd")
    assert imaging.binary_count(case.mask) == imaging.binary_count(make_blob_mask(image))


def _cut(path, fraction):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])


def _corrupt_middle(path):
    data = bytearray(path.read_bytes())
    middle = len(data) * 2 // 3
    data[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name, damage", [
    ("a.nii.gz", lambda p: _cut(p, 0.5)), ("a.nii.gz", lambda p: _cut(p, 0.1)), ("a.nii", lambda p: _cut(p, 0.5)),
    ("a.nii.gz", _corrupt_middle), ("a.nrrd", _corrupt_middle), ("a.mha", _corrupt_middle),
])
def test_truncated_or_corrupt_compressed_files_are_refused(tmp_path, name, damage):
    image = sitk.Cast(make_volume(), sitk.sitkInt16)
    path = tmp_path / name
    sitk.WriteImage(image, str(path), useCompression=True)
    mask = tmp_path / "mask.nrrd"
    sitk.WriteImage(make_blob_mask(image), str(mask))
    whole = imaging.load_case(path, mask)  # the intact file loads
    np.testing.assert_array_equal(sitk.GetArrayFromImage(whole.image), sitk.GetArrayFromImage(image))
    damage(path)
    with pytest.raises(InputError, match="truncated or corrupt") as info:
        imaging.load_case(path, mask)
    assert info.value.file == str(path)


def _dicom_case(folder):
    image = sitk.Cast(make_volume(shape=(12, 32, 32)), sitk.sitkInt16)
    write_dicom_series(image, folder, temporal_tag=None)
    return image


def test_a_dicom_folder_with_another_patients_series_in_a_subfolder_is_refused(tmp_path):
    import pydicom
    _dicom_case(tmp_path / "study")
    other = tmp_path / "study" / "other"
    _dicom_case(other)
    for path in other.iterdir():
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1125.9.1"
        ds.PatientID = "SOMEONE_ELSE"
        ds.save_as(path)
    with pytest.raises(InputError, match=r"2 DICOM series of different patients \(.*in other.*\); give the folder "
                                         "of one series"):
        imaging.load_phase(tmp_path / "study")
    image, _, _ = imaging.load_phase(other)  # each series alone is fine
    assert image.GetSize()[2] == 12


def test_a_dicom_series_with_a_missing_slice_is_refused(tmp_path):
    _dicom_case(tmp_path / "series")
    files = sorted(tmp_path.joinpath("series").iterdir(), key=lambda p: int(p.stem.split("_")[-1]))
    files[5].unlink()  # the sixth slice of twelve
    with pytest.raises(InputError, match=r"non-uniform slice spacing \(2 to 4 mm between slices\): a slice is missing"):
        imaging.load_phase(tmp_path / "series")
    image = make_volume(shape=(12, 32, 32))
    with pytest.raises(InputError, match="a slice is missing"):  # the same folder given as a mask
        imaging.load_mask(tmp_path / "series", 1, image, [])


def test_a_device_as_image_is_refused_not_read_forever(tmp_path, phantom):
    cohort = pd.read_csv(phantom / "cohort.csv", dtype=str).head(1)
    cohort["Image"] = "/dev/zero"
    cohort["Mask"] = str(phantom / cohort["Mask"].iloc[0])
    cohort.to_csv(tmp_path / "cohort.csv", index=False)
    result = subprocess.run([sys.executable, "-m", "IMNRiskLib", "extract", str(tmp_path / "cohort.csv"), "--out",
                             str(tmp_path / "out" / "features.csv"), "--jobs", "1", "--quiet"],
                            capture_output=True, encoding="utf-8", timeout=120)
    assert_refused(result, "/dev/zero: ID SYN0001: image file is not a regular file")


def test_folders_given_as_files_are_refused(tmp_path, phantom, quick_model):
    image, mask, row = first_case(phantom)
    assert_refused(run_cli("train", tmp_path, "--features", phantom / "features.csv", "--out", tmp_path / "o"),
                   f"{tmp_path}: cohort file is a folder; a file is expected")
    assert_refused(run_cli("train", phantom / "cohort.csv", "--features", tmp_path, "--out", tmp_path / "o"),
                   "features file is a folder")
    assert_refused(run_cli("predict", tmp_path, "--image", image, "--mask", mask), "model file is a folder")
    assert_refused(run_cli("predict", quick_model, "--image", image, "--mask", tmp_path,
                           *clinical_args(quick_model, row)), "mask folder holds no DICOM files")


def test_an_output_that_is_an_input_is_refused_even_with_force(tmp_path, phantom):
    cohort = tmp_path / "cohort.csv"
    shutil.copy(phantom / "cohort.csv", cohort)
    before = cohort.read_bytes()
    assert_refused(run_cli("extract", cohort, "--out", cohort, "--force", "--quiet"), "output is also an input")
    assert cohort.read_bytes() == before


def test_validate_refuses_a_nan_feature_naming_patient_and_feature(tmp_path, phantom, quick_model):
    feature = json.loads(quick_model.read_text(encoding="utf-8"))["radiomics"]["features"][0]
    feats = pd.read_csv(phantom / "features.csv", dtype={"ID": str})
    feats.loc[feats["ID"] == "SYN0007", feature] = np.nan
    feats.to_csv(tmp_path / "features.csv", index=False)
    result = run_cli("validate", quick_model, phantom / "cohort.csv", "--features", tmp_path / "features.csv",
                     "--out", tmp_path / "v", "--quiet")
    assert_refused(result, "ID SYN0007", feature, "not finite")
    assert not (tmp_path / "v" / "validation.json").exists()


# --------------------------------------------------------------------------- 2. user errors exit 2

def test_duplicate_ids_in_features_are_refused(tmp_path, phantom):
    feats = pd.read_csv(phantom / "features.csv", dtype={"ID": str})
    pd.concat([feats, feats.iloc[[3]]]).to_csv(tmp_path / "features.csv", index=False)
    result = run_cli("train", phantom / "cohort.csv", "--features", tmp_path / "features.csv", "--out",
                     tmp_path / "out", "--quiet")
    assert_refused(result, "features.csv: ID SYN0004: ID: 1 ID(s) appear more than once")


def test_more_cv_folds_than_patients_in_a_class_is_refused_before_any_fit(tmp_path, phantom):
    result = run_cli("train", phantom / "cohort.csv", "--features", phantom / "features.csv", "--out",
                     tmp_path / "out", "--cv-folds", "60", "--quiet")
    assert_refused(result, "--cv-folds 60 is more than the 49 patient(s) of the smaller IMN class")
    assert not (tmp_path / "out").exists()


def test_a_negative_phase_is_refused(phantom, quick_model):
    image, mask, row = first_case(phantom)
    result = run_cli("predict", quick_model, "--image", image, "--mask", mask, "--phase", "-1",
                     *clinical_args(quick_model, row))
    assert_refused(result, "phase -1 is negative")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["radiomics"].pop("standardisation"), "key radiomics.standardisation is missing"),
    (lambda d: d["combined"]["coefficients"].pop(), "combined.coefficients do not match its terms"),
    (lambda d: d["risk_groups"].update(low="0.1"), "risk_groups.low is not a finite number"),
    (lambda d: d.pop("nomogram"), "key nomogram.scale is missing"),
])
def test_a_resealed_model_with_a_missing_or_wrong_key_is_refused(tmp_path, phantom, quick_model, edit, message):
    image, mask, row = first_case(phantom)
    doc = json.loads(quick_model.read_text(encoding="utf-8"))
    edit(doc)
    doc.pop("sha256")
    (tmp_path / "model.json").write_text(json.dumps(seal(doc)), encoding="utf-8")
    result = run_cli("predict", tmp_path / "model.json", "--image", image, "--mask", mask,
                     *clinical_args(quick_model, row))
    assert_refused(result, "not a usable IMNRisk model", message)


def test_a_model_with_nan_is_refused(tmp_path, phantom, quick_model):
    image, mask, row = first_case(phantom)
    text = quick_model.read_text(encoding="utf-8")
    doc = json.loads(text)
    value = json.dumps(doc["radiomics"]["radscore"]["intercept"])
    (tmp_path / "model.json").write_text(text.replace(f'"intercept": {value}', '"intercept": NaN', 1), encoding="utf-8")
    result = run_cli("predict", tmp_path / "model.json", "--image", image, "--mask", mask,
                     *clinical_args(quick_model, row))
    assert_refused(result, "not a JSON model file (NaN is not a number JSON allows)")


def test_yaml_alias_bombs_and_huge_files_are_refused(tmp_path, phantom):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 7):  # 10^6 expanded nodes from 7 short lines
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]")
    lines += ["outcome: {name: IMN}", "variables: *a6"]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_cli("tables", phantom / "cohort.csv", "--out", tmp_path / "t", "--schema", tmp_path / "bomb.yaml")
    assert_refused(result, "bomb.yaml: schema file expands to", "YAML nodes (aliases)")
    (tmp_path / "big.yaml").write_text("# padding\n" * 200_000, encoding="utf-8")
    result = run_cli("extract", phantom / "cohort.csv", "--out", tmp_path / "f.csv", "--params", tmp_path / "big.yaml")
    assert_refused(result, "big.yaml: parameter file is larger than 1024 kB")


def test_an_unwritable_out_is_found_before_the_long_work(tmp_path, phantom):
    (tmp_path / "file").write_text("not a folder", encoding="utf-8")
    result = run_cli("train", phantom / "cohort.csv", "--features", phantom / "features.csv", "--out",
                     tmp_path / "file" / "out", "--quiet")
    assert_refused(result, "cannot create the output folder")
    result = run_cli("extract", phantom / "cohort.csv", "--out", tmp_path / "file" / "features.csv",
                     "--params", ORIGINAL_ONLY, "--quiet")
    assert_refused(result, "cannot create the output folder")


# --------------------------------------------------------------------------- 3. consistency of outputs

def small_cohort(phantom, folder, n=2):
    """The first n phantom patients, with paths relative to a copy of their images in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = pd.read_csv(phantom / "cohort.csv", dtype=str).head(n)
    for column in ("Image", "Mask"):
        for rel in rows[column]:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(phantom / rel, folder / rel)
    rows.to_csv(folder / "cohort.csv", index=False)
    return folder / "cohort.csv"


def extract(cohort, out, *extra):
    return run_cli("extract", cohort, "--out", out, "--params", ORIGINAL_ONLY, "--jobs", "1", "--quiet", *extra)


def test_train_refuses_a_provenance_of_another_extraction(tmp_path, phantom):
    other = extract(small_cohort(phantom, tmp_path / "other"), tmp_path / "other" / "features.csv")
    assert other.returncode == 0, other.stderr
    shutil.copy(phantom / "features.csv", tmp_path / "features.csv")
    shutil.copy(tmp_path / "other" / "features.provenance.json", tmp_path / "features.provenance.json")
    result = run_cli("train", phantom / "cohort.csv", "--features", tmp_path / "features.csv", "--out",
                     tmp_path / "out", "--cv-repeats", "0", "--bootstrap", "0", "--quiet")
    assert_refused(result, "features.provenance.json: features_sha256: does not describe features.csv")
    assert not (tmp_path / "out").exists()


def test_the_cache_serves_no_stale_or_edited_entry(tmp_path, phantom):
    cohort = small_cohort(phantom, tmp_path / "c")
    out = tmp_path / "features.csv"
    assert extract(cohort, out).returncode == 0
    first = pd.read_csv(out, dtype={"ID": str}).set_index("ID")
    entries = sorted((tmp_path / ".imnrisk-cache").glob("*/*.json"))
    assert len(entries) == 2
    # a hand-edited entry (still valid JSON) and an entry emptied to {} are misses, with a note
    doc = json.loads(entries[0].read_text(encoding="utf-8"))
    body = doc.get("result", doc)
    name = next(iter(body["features"]))
    body["features"][name] = 12345.0
    entries[0].write_text(json.dumps(doc), encoding="utf-8")
    entries[1].write_text("{}", encoding="utf-8")
    again = extract(cohort, out, "--force")
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("ignored") == 2 and "recomputed" in again.stderr
    pd.testing.assert_frame_equal(pd.read_csv(out, dtype={"ID": str}).set_index("ID"), first)


def test_an_input_edited_in_place_with_its_mtime_restored_is_rehashed(tmp_path, monkeypatch):
    import time
    from IMNRiskLib.radiomics import features
    monkeypatch.setattr(features, "RACY_SECONDS", -1.0, raising=False)  # memoise even fresh files
    path = tmp_path / "image.nrrd"
    path.write_bytes(b"A" * 1000)
    time.sleep(0.05)  # past the file system's timestamp tick
    cache = features.FeatureCache(tmp_path / "cache")
    before = cache.file_hash(path)
    stat = path.stat()
    with open(path, "r+b") as fh:  # same size, same inode, mtime set back: only ctime tells
        fh.write(b"B")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cache.file_hash(path) != before
    assert cache.file_hash(path) == features.sha256_of_file(path)


def test_predict_refuses_label_zero(phantom, quick_model):
    image, mask, row = first_case(phantom)
    result = run_cli("predict", quick_model, "--image", image, "--mask", mask, "--label", "0",
                     *clinical_args(quick_model, row))
    assert_refused(result, "--label: label 0 must be 1 or more (0 is background)")


def test_report_refuses_a_damaged_training_folder(tmp_path, quick_model):
    folder = tmp_path / "model"
    shutil.copytree(quick_model.parent, folder)
    (folder / "metrics.json").write_text('{"cohort": ', encoding="utf-8")
    assert_refused(run_cli("report", folder, "--force"), "a file of the training folder is damaged")


def test_a_second_run_into_the_same_folder_refuses(tmp_path, phantom):
    from IMNRiskLib.core.files import output_lock
    with output_lock(tmp_path / "out"):  # a run in progress
        result = run_cli("train", phantom / "cohort.csv", "--features", phantom / "features.csv", "--out",
                         tmp_path / "out", "--cv-repeats", "0", "--bootstrap", "0", "--quiet", "--force")
        assert_refused(result, "another imnrisk run is writing into this folder")
    assert not (tmp_path / "out").exists()  # released, and the folder it made is gone


def test_a_failing_run_leaves_the_previous_complete_set_intact(tmp_path, phantom, monkeypatch):
    import errno
    from IMNRiskLib.app import cli
    from IMNRiskLib.outputs import report
    out = tmp_path / "out"
    args = ["train", str(phantom / "cohort.csv"), "--features", str(phantom / "features.csv"), "--out", str(out),
            "--cv-repeats", "0", "--bootstrap", "0", "--quiet", "--force", "--jobs", "1"]
    assert cli.main(args) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def disk_full(folder, *_):
        (folder / "report.html").write_text("half", encoding="utf-8")
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "report.html"))
    monkeypatch.setattr(report, "render", disk_full)
    assert cli.main(args + ["--lasso-rule", "1se", "--seed", "7"]) == 2  # would change every file
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_a_lost_interrupt_still_stops_the_run(tmp_path):
    """A stop asked for (Ctrl-C, SIGTERM) whose KeyboardInterrupt was lost (raised inside a
    finalizer, it is only printed) still stops the run: the validation's loop and the commit of
    outputs check progress.STOP; nothing is committed, and the previous output set is untouched."""
    from IMNRiskLib.core import files, progress
    from IMNRiskLib.resampling import validation
    out = tmp_path / "out"
    with files.output_set(out) as stage:
        (stage / "model.json").write_text("old", encoding="utf-8")
    progress.STOP.set()
    try:
        with pytest.raises(KeyboardInterrupt):
            with files.output_set(out, last="model.json") as stage:
                (stage / "model.json").write_text("new", encoding="utf-8")
        with pytest.raises(KeyboardInterrupt):
            list(validation._parallel([1, 2], abs, 1, "x", show_bar=False))
    finally:
        progress.STOP.clear()
    assert (out / "model.json").read_text(encoding="utf-8") == "old"
    assert not [p.name for p in out.glob(".imnrisk*")]


def _descendants(pid):
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            kids = [int(c) for t in os.listdir(f"/proc/{parent}/task")
                    for c in open(f"/proc/{parent}/task/{t}/children", encoding="ascii").read().split()]
        except OSError:
            kids = []
        found += kids
        todo += kids
    return found


def _alive(pid):
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            return "zombie" not in fh.read()
    except OSError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc to find the workers")
@pytest.mark.parametrize("command, how", [("extract", "SIGKILL"), ("train", "SIGKILL"), ("train", "SIGTERM")])
def test_workers_die_with_a_killed_parent(tmp_path, phantom, command, how):
    import signal
    import time
    if command == "extract":
        args = ["extract", str(small_cohort(phantom, tmp_path / "c", n=6)), "--out", str(tmp_path / "f.csv"),
                "--params", str(ORIGINAL_ONLY)]
    else:
        args = ["train", str(phantom / "cohort.csv"), "--features", str(phantom / "features.csv"), "--out",
                str(tmp_path / "out"), "--cv-repeats", "50", "--bootstrap", "0"]
    proc = subprocess.Popen([sys.executable, "-m", "IMNRiskLib", *args, "--jobs", "2", "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        workers = []
        for _ in range(1200):  # wait (up to 2 min) until both workers are up
            workers = _descendants(proc.pid)
            if len(workers) >= 2 or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert len(workers) >= 2, "the run started no workers"
    finally:
        proc.send_signal(getattr(signal, how))
        code = proc.wait(timeout=120)
    if how == "SIGTERM":  # stopped like Ctrl-C: exit 130, nothing staged or locked left behind
        assert code == 130
        assert not [p.name for p in (tmp_path / "out").glob(".imnrisk*")]
    for _ in range(300):  # they go within a second or so; allow 30 s on a loaded machine
        if not any(_alive(p) for p in workers):
            break
        time.sleep(0.1)
    survivors = [p for p in workers if _alive(p)]
    for p in survivors:
        os.kill(p, signal.SIGKILL)
    assert not survivors


def test_a_caught_stop_keeps_its_exit_code_under_python_m(tmp_path):
    """CPython kills a `python -m` run with SIGINT at exit if a KeyboardInterrupt ever ended code run
    from a string, even one that was caught (the SIGTERM test above got -2 one time in ten): the
    `python -m IMNRiskLib` entry clears that, so the command's own exit code comes out."""
    (tmp_path / "probe.py").write_text(
        "import runpy, sys\nfrom IMNRiskLib.app import cli\nreport = cli.report_errors\n"
        "def caught_then_report(errors):  # a stop caught inside string-run code, as a worker pool's\n"
        "    try:\n        exec('raise KeyboardInterrupt')\n    except KeyboardInterrupt:\n        pass\n"
        "    report(errors)\n"
        "cli.report_errors = caught_then_report\n"
        "sys.argv = ['imnrisk', 'predict', 'no-such-model.json', '--image', 'x.nrrd', '--mask', 'y.nrrd']\n"
        "runpy.run_module('IMNRiskLib', run_name='__main__')\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    result = subprocess.run([sys.executable, "-m", "probe"], cwd=tmp_path, env=env, capture_output=True,
                            encoding="utf-8")
    assert_refused(result, "no-such-model.json")


# --------------------------------------------------------------------------- 4. privacy

SECRET = "Doe_Jane_1961"


def _travelling_text(folder):
    """Every file under folder that is meant to travel (outputs, provenance, cache index), as text."""
    texts = {}
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in (".csv", ".json", ".html") and "cases" not in path.parts:
            texts[path] = path.read_text(encoding="utf-8", errors="replace")
    return texts


def test_no_path_or_folder_name_in_any_output(tmp_path, phantom):
    study = tmp_path / SECRET
    cohort = small_cohort(phantom, study)
    rows = pd.read_csv(cohort, dtype=str)
    broken = rows.iloc[[0]].assign(ID="P_broken", Mask="cases/absent/tumour.nrrd")
    pd.concat([rows, broken]).to_csv(cohort, index=False)
    result = extract(cohort, study / "out" / "features.csv")
    assert result.returncode == 2 and SECRET in result.stderr  # the user is told where, on stderr
    failures = pd.read_csv(study / "out" / "features.failures.csv", dtype=str)
    assert list(failures["file"]) == ["Mask"] and "mask file not found" in failures["reason"].iloc[0]

    shutil.copy(phantom / "cohort.csv", study / "cohort.csv")  # train and validate on the whole phantom
    shutil.copy(phantom / "features.csv", study / "features.csv")
    trained = run_cli("train", study / "cohort.csv", "--features", study / "features.csv", "--out", study / "model",
                      "--cv-repeats", "0", "--bootstrap", "0", "--quiet")
    assert trained.returncode == 0, trained.stderr
    validated = run_cli("validate", study / "model" / "model.json", study / "cohort.csv", "--features",
                        study / "features.csv", "--out", study / "external", "--recalibrate", "--quiet")
    assert validated.returncode == 0, validated.stderr
    # The cache memoises a file's hash (file-hashes.json) only once the file is older than
    # RACY_SECONDS; on a fast machine the copies above are younger than that at the first extract.
    # Extract again once they are old enough, so that the index is written and checked too.
    from IMNRiskLib.radiomics.features import RACY_SECONDS
    newest = max(max(p.stat().st_mtime, p.stat().st_ctime) for p in (study / "cases").rglob("*") if p.is_file())
    time.sleep(max(0.0, newest + RACY_SECONDS + 0.5 - time.time()))
    again = extract(cohort, study / "out" / "features.csv", "--force")
    assert again.returncode == 2 and SECRET in again.stderr
    texts = _travelling_text(study)
    for must in ("out/features.failures.csv", "out/features.provenance.json", "out/.imnrisk-cache/file-hashes.json",
                 "model/metrics.json", "model/model.json", "model/report.html", "external/validation.json"):
        assert study / must in texts, must
    leaks = [str(p.relative_to(study)) for p, text in texts.items() if SECRET in text or str(tmp_path) in text]
    assert not leaks


def test_no_dicom_name_in_any_output(tmp_path):
    made = run_cli("synth", tmp_path / "dicom", "--patients", "2", "--dicom", "--quiet", "--jobs", "1")
    assert made.returncode == 0, made.stderr
    result = extract(tmp_path / "dicom" / "cohort.csv", tmp_path / "out" / "features.csv")
    assert result.returncode == 0, result.stderr
    texts = _travelling_text(tmp_path / "out")
    assert len(texts) >= 4  # features, provenance, failures, cache index and entries
    assert not [p for p, text in texts.items() if "SYNTHETIC^" in text]


# --------------------------------------------------------------------------- 5. model signing

def test_signed_models_resist_an_edit_and_reseal_and_predict_requires_the_trusted_key(tmp_path, phantom,
                                                                                     quick_model):
    image, mask, row = first_case(phantom)
    clinical = clinical_args(quick_model, row)
    assert run_cli("keygen", tmp_path / "author").returncode == 0
    assert run_cli("keygen", tmp_path / "other").returncode == 0
    assert oct((tmp_path / "author.key").stat().st_mode & 0o777) == "0o600"
    signed = tmp_path / "signed.json"
    assert run_cli("sign", quick_model, "--key", tmp_path / "author.key", "--out", signed).returncode == 0
    assert run_cli("verify", signed, "--trusted-key", tmp_path / "author.pub").returncode == 0
    assert_refused(run_cli("verify", signed, "--trusted-key", tmp_path / "other.pub"), "signed by another key")

    doc = json.loads(signed.read_text(encoding="utf-8"))  # the attack: edit, then re-seal the SHA-256
    doc["combined"]["coefficients"][0] += 1.0
    doc.pop("sha256")
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(seal(doc)), encoding="utf-8")
    plain = run_cli("predict", tampered, "--image", image, "--mask", mask, *clinical, "--json")
    assert plain.returncode == 0  # the checksum alone cannot tell
    assert_refused(run_cli("predict", tampered, "--image", image, "--mask", mask, *clinical,
                           "--trusted-key", tmp_path / "author.pub"), "signature does not match")
    assert_refused(run_cli("predict", quick_model, "--image", image, "--mask", mask, *clinical,
                           "--trusted-key", tmp_path / "author.pub"), "model is not signed")
    trusted = run_cli("predict", signed, "--image", image, "--mask", mask, *clinical, "--json",
                      "--trusted-key", tmp_path / "author.pub")
    unsigned = run_cli("predict", quick_model, "--image", image, "--mask", mask, *clinical, "--json")
    assert trusted.returncode == 0, trusted.stderr
    assert json.loads(trusted.stdout)["probability"] == json.loads(unsigned.stdout)["probability"]
