"""Shared by the DICOM output and PACS tests: a small synthetic DICOM phantom and the model's
clinical arguments for one of its patients."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List

from conftest import run_cli

DICOM_PATIENTS, DICOM_SEED = 2, 3


def make_dicom_phantom(folder: Path) -> Path:
    """`imnrisk synth --dicom` with two patients (synthetic names, UIDs under 2.25)."""
    result = run_cli("synth", folder, "--patients", DICOM_PATIENTS, "--seed", DICOM_SEED, "--dicom",
                     "--jobs", "1", "--quiet", "--force")
    assert result.returncode == 0, result.stderr
    return folder


def cohort_rows(phantom: Path) -> Dict[str, Dict[str, str]]:
    with open(phantom / "cohort.csv", encoding="utf-8", newline="") as fh:
        return {row["ID"]: row for row in csv.DictReader(fh)}


def clinical_args(model_path: Path, row: Dict[str, str]) -> List[str]:
    """--clinical NAME=VALUE for each factor the model uses, from the phantom's cohort row."""
    factors = json.loads(model_path.read_text(encoding="utf-8"))["clinical"]["factors"]
    return ["--clinical", *[f"{k}={row[k]}" for k in factors]] if factors else []


def patient_paths(phantom: Path, pid: str) -> Dict[str, Path]:
    return {"image": phantom / "cases" / pid / "dce_dicom", "mask": phantom / "cases" / pid / "tumour.nrrd"}
