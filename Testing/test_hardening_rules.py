"""Hardening, third round (issue 29): one rule for outputs, provenance that holds together, strict
manifests and settings files, bounded resources, and no internal error where the user erred.

Every refusal is exit 2 with one line naming the file (and ID/field where there is one)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from IMNRiskLib import cli
from IMNRiskLib.dicomout import SEG_NAME

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
                "jobs": None, "quiet": None, "force": None},
    "tables": {"cohort": "in", "out": ("dir", "table1.csv"), "schema": "in", "entry_p": None, "keep_p": None,
               "force": None},
    "stats": {"predictions": "in", "outcome": None, "json": None},
    "train": {"cohort": "in", "features": "in", "out": ("dir", "model.json"), "schema": "in", "cv_folds": None,
              "cv_repeats": None, "bootstrap": None, "lasso_rule": None, "clinical_test": None, "protocol": None,
              "seed": None, "shrink": None, "features2": "in", "icc_threshold": None, "no_icc": None,
              "no_ci_replicates": None, "dask": None, "jobs": None, "quiet": None, "force": None},
    "report": {"dir": ("dir", "report.html"), "force": None},
    "predict": {"model": "in", "image": "in", "mask": "in", "phase": None, "label": None, "clinical": None,
                "json": None, "dicom_out": ("dir", SEG_NAME), "force": None, "allow_version_mismatch": None,
                "trusted_key": "in", "ci": None},
    "pacs": {"model": "in", "config": "in", "study": None, "series": None, "mask": "in", "phase": None,
             "label": None, "clinical": None, "out": ("dir", SEG_NAME), "no_store": None, "json": None,
             "force": None},
    "web": {"model": "in", "port": None, "host": None, "random_token": None},
    "keygen": {"prefix": "prefix", "force": None},
    "sign": {"model": "in", "key": "in", "out": "out", "force": None},
    "verify": {"model": "in", "trusted_key": "in"},
    "validate": {"model": "in", "cohort": "in", "out": ("dir", "validation.json"), "features": "in",
                 "recalibrate": None, "jobs": None, "quiet": None, "force": None},
    "synth": {"dir": ("dir", "cohort.csv"), "patients": None, "seed": None, "jobs": None, "quiet": None,
              "force": None, "full_size": None, "dicom": None},
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
