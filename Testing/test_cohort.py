"""Cohort manifest and clinical schema: validation reports every problem with file, ID and column."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import run_cli
from IMNRiskLib.inputs.cohort import read_cohort
from IMNRiskLib.core.errors import InputError, InputErrors
from IMNRiskLib.inputs.schema import load_schema, schema_from_dict

GOOD = {"ID": "P001", "Image": "img.nrrd", "Mask": "mask.nrrd", "IMN": "1", "age": "52",
        "tumor_location": "medial", "vascular_invasion": "no", "menstrual_status": "postmenopausal",
        "pathological_type": "ductal", "histological_grade": "II", "er": "positive", "pr": "positive",
        "her2": "negative", "ki67": "low", "molecular_subtype": "luminal_A", "aln_metastases": "N2",
        "t_stage": "T1", "neutrophil": "3.4", "lymphocyte": "1.8", "monocyte": "0.4"}


def write(tmp_path, rows, name="cohort.csv"):
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_default_schema_has_the_paper_variables():
    schema = load_schema()
    assert schema.outcome == "IMN"
    assert schema.names == ["age", "tumor_location", "vascular_invasion", "menstrual_status",
                            "pathological_type", "histological_grade", "er", "pr", "her2", "ki67",
                            "molecular_subtype", "aln_metastases", "t_stage", "neutrophil", "lymphocyte",
                            "monocyte"]
    assert schema["aln_metastases"].encode("N2") == [2.0]
    assert schema["pr"].encode("positive") == [1.0]
    assert schema["tumor_location"].terms() == ["tumor_location[medial]", "tumor_location[central]"]
    assert schema["tumor_location"].encode("central") == [0.0, 1.0]


def test_valid_manifest_is_parsed(tmp_path):
    rows = [GOOD, {**GOOD, "ID": "P002", "IMN": "", "Phase": "3", "aln_metastases": "0", "age": ""}]
    rows[0] = {**rows[0], "Phase": ""}
    cohort = read_cohort(write(tmp_path, rows), need_clinical=True, need_outcome=True)
    assert cohort.ids == ["P001", "P002"]
    first, second = cohort.cases
    assert first.image == tmp_path / "img.nrrd" and first.phase is None and first.label == 1
    assert second.phase == 3 and second.outcome is None
    assert second.clinical["aln_metastases"] == "N0" and second.clinical["age"] is None
    frame = cohort.clinical_frame()
    assert frame.loc["P001", "neutrophil"] == 3.4
    assert cohort.outcome().isna().tolist() == [False, True]


def test_every_problem_is_reported_at_once(tmp_path):
    rows = [GOOD, {**GOOD, "tumor_location": "upper"}, {**GOOD, "ID": "P003", "IMN": "2", "Phase": "-1"},
            {**GOOD, "ID": "P004", "age": "old", "Mask": ""}, {**GOOD, "ID": "P005", "Label": "0"}]
    path = write(tmp_path, rows)
    with pytest.raises(InputErrors) as info:
        read_cohort(path, need_clinical=True, need_outcome=True)
    text = [str(e) for e in info.value.errors]
    expected = [
        f"{path}: ID P001: ID: duplicate ID (lines 2 and 3)",
        f"{path}: ID P003: Phase: '-1' is not a phase index (0-based whole number)",
        f"{path}: ID P003: IMN: '2' is not 0, 1 or empty",
        f"{path}: ID P004: Mask: empty path",
        f"{path}: ID P004: age: 'old' is not a number",
        f"{path}: ID P005: Label: label 0 must be 1 or more (0 is background)",
    ]
    assert text == expected


def test_unknown_category_lists_allowed_values(tmp_path):
    path = write(tmp_path, [{**GOOD, "tumor_location": "upper outer"}])
    with pytest.raises(InputErrors) as info:
        read_cohort(path)
    assert str(info.value) == (f"{path}: ID P001: tumor_location: unknown value 'upper outer'; "
                               "allowed: lateral, medial, central")


def test_missing_columns(tmp_path):
    path = write(tmp_path, [{"ID": "P1", "Image": "a.nrrd", "age": "50"}])
    with pytest.raises(InputErrors, match="missing required column\\(s\\): Mask, IMN"):
        read_cohort(path, need_outcome=True)


def test_schema_errors_are_reported():
    with pytest.raises(InputErrors) as info:
        schema_from_dict({"variables": [{"name": "x", "type": "nominal"},
                                        {"name": "y", "type": "categorical", "levels": ["a", "b"],
                                         "reference": "c"},
                                        {"name": "z", "type": "binary", "levels": ["a", "b", "c"]}]}, "s.yaml")
    assert [str(e) for e in info.value.errors] == [
        "s.yaml: variable x: type 'nominal' is not one of binary, categorical, ordinal, continuous",
        "s.yaml: variable y: reference 'c' is not one of its levels",
        "s.yaml: variable z: a binary variable has exactly two levels"]


def test_cli_bad_manifest_exit_2_one_line_per_problem_no_traceback(tmp_path):
    path = write(tmp_path, [GOOD, GOOD, {**GOOD, "ID": "P9", "tumor_location": "upper"}])
    out = tmp_path / "features.csv"
    result = run_cli("extract", path, "--out", out)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"imnrisk: error: {path}: ID P001: ID: duplicate ID (lines 2 and 3)",
                     f"imnrisk: error: {path}: ID P9: tumor_location: unknown value 'upper'; "
                     "allowed: lateral, medial, central"]
    assert not out.exists()


def test_cli_missing_cohort_file(tmp_path):
    result = run_cli("extract", tmp_path / "none.csv", "--out", tmp_path / "f.csv")
    assert result.returncode == 2
    assert result.stderr.strip() == f"imnrisk: error: {tmp_path / 'none.csv'}: cohort file not found"


def test_input_error_location_format():
    assert str(InputError("bad", file="a.csv", id="P1", field="age")) == "a.csv: ID P1: age: bad"
    assert str(InputError("bad")) == "bad"
