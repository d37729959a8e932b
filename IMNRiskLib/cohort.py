"""Cohort manifest: read `cohort.csv` and check it against the clinical schema.

The manifest is pyradiomics-batch compatible: `ID`, `Image`, `Mask` (paths relative to the CSV),
optional `Mask2` (a second reader's contour of the same tumour on the same image, for feature
stability (ICC); empty for a patient read once), optional `Phase` (0-based; default the second phase, 1) and `Label` (a label value, or a segment
name of a Slicer .seg.nrrd; default 1), the outcome `IMN` (1, 0, or empty for patients to score)
and one column per clinical variable. Every problem is reported at once, each with ID and column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import pandas as pd

from .errors import InputError, InputErrors
from .schema import ClinicalSchema, load_schema

DEFAULT_PHASE = 1
DEFAULT_LABEL = 1
IMAGING_COLUMNS = ("ID", "Image", "Mask")


@dataclass
class Case:
    """One patient of the manifest, with paths resolved against the CSV's folder."""

    id: str
    image: Path
    mask: Path
    phase: Optional[int] = None
    label: Union[int, str] = DEFAULT_LABEL
    outcome: Optional[int] = None
    clinical: Dict[str, Any] = field(default_factory=dict)
    mask2: Optional[Path] = None  # a second reader's mask (manifest column Mask2), when given


@dataclass
class Cohort:
    """A validated manifest: its cases and the schema they were checked against."""

    path: Path
    cases: List[Case]
    schema: ClinicalSchema
    clinical_columns: List[str]

    @property
    def ids(self) -> List[str]:
        return [c.id for c in self.cases]

    @property
    def second_reader(self) -> List[Case]:
        """The cases with a second reader's mask (Mask2)."""
        return [c for c in self.cases if c.mask2 is not None]

    def clinical_frame(self) -> pd.DataFrame:
        """Parsed clinical values (levels as strings, continuous as floats), one row per ID."""
        rows = {c.id: {name: c.clinical.get(name) for name in self.clinical_columns} for c in self.cases}
        return pd.DataFrame.from_dict(rows, orient="index", columns=self.clinical_columns)

    def outcome(self) -> pd.Series:
        """The outcome per ID (NaN for patients to score)."""
        return pd.Series({c.id: (np.nan if c.outcome is None else c.outcome) for c in self.cases},
                         name=self.schema.outcome, dtype=float)


def _read_csv(path: Path) -> pd.DataFrame:
    """Read the manifest as text (no type guessing: '01' stays '01', 'NA' stays visible)."""
    from .files import check_input_file
    check_input_file(path, "cohort file")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError, ValueError) as exc:
        raise InputError(f"not a readable CSV ({str(exc).splitlines()[0]})", file=str(path)) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _parse_phase(text: str) -> Optional[int]:
    if text == "":
        return None
    if not text.lstrip("-").isdigit() or int(text) < 0:
        raise ValueError(f"'{text}' is not a phase index (0-based whole number)")
    return int(text)


def _parse_label(text: str) -> Union[int, str]:
    if text == "":
        return DEFAULT_LABEL
    if text.lstrip("-").isdigit():
        if int(text) < 1:
            raise ValueError(f"label {text} must be 1 or more (0 is background)")
        return int(text)
    return text  # a segment name in a .seg.nrrd


def _parse_outcome(text: str) -> Optional[int]:
    if text == "":
        return None
    if text in ("0", "1", "0.0", "1.0"):
        return int(float(text))
    raise ValueError(f"'{text}' is not 0, 1 or empty")


def read_cohort(path: Union[str, Path], schema: Optional[ClinicalSchema] = None,
                need_clinical: bool = False, need_outcome: bool = False,
                need_imaging: bool = True) -> Cohort:
    """Read and validate a manifest; raise InputErrors listing every problem found.

    need_clinical: every schema variable must have a column (tables, train).
    need_outcome: the IMN column must exist and at least one patient must have it (train, tables).
    need_imaging: Image and Mask columns must exist (extract, train with images).
    """
    path = Path(path)
    schema = schema or load_schema()
    frame = _read_csv(path)
    name = str(path)
    errors: List[InputError] = []

    required = ["ID"] + (["Image", "Mask"] if need_imaging else [])
    if need_outcome:
        required.append(schema.outcome)
    if need_clinical:
        required += schema.names
    missing = [c for c in required if c not in frame.columns]
    if missing:
        errors.append(InputError(f"missing required column(s): {', '.join(missing)}", file=name))
        if "ID" in missing:
            raise InputErrors(errors)
    if frame.empty:
        raise InputErrors(errors + [InputError("the manifest has no patients", file=name)])

    clinical_columns = [v for v in schema.names if v in frame.columns]
    seen: Dict[str, int] = {}
    cases: List[Case] = []
    for row_number, row in enumerate(frame.to_dict("records"), start=2):  # line 1 is the header
        case_id = str(row["ID"]).strip()
        if case_id == "":
            errors.append(InputError(f"empty ID (line {row_number})", file=name, field="ID"))
            continue
        if case_id in seen:
            errors.append(InputError(f"duplicate ID (lines {seen[case_id]} and {row_number})",
                                     file=name, id=case_id, field="ID"))
            continue
        seen[case_id] = row_number

        def problem(column: str, message: str) -> None:
            errors.append(InputError(message, file=name, id=case_id, field=column))

        case = Case(id=case_id, image=Path(), mask=Path())
        for column in ("Image", "Mask"):
            text = str(row.get(column, "")).strip()
            if column in frame.columns and text == "" and need_imaging:
                problem(column, "empty path")
            setattr(case, column.lower(), (path.parent / text) if text else Path())
        mask2 = str(row.get("Mask2", "")).strip()
        case.mask2 = (path.parent / mask2) if mask2 else None  # empty: this patient was read once
        for column, parser, attr in (("Phase", _parse_phase, "phase"), ("Label", _parse_label, "label"),
                                     (schema.outcome, _parse_outcome, "outcome")):
            if column in frame.columns:
                try:
                    setattr(case, attr, parser(str(row[column]).strip()))
                except ValueError as exc:
                    problem(column, str(exc))
        for var_name in clinical_columns:
            try:
                case.clinical[var_name] = schema[var_name].parse(row[var_name])
            except ValueError as exc:
                problem(var_name, str(exc))
        cases.append(case)

    if need_outcome and schema.outcome in frame.columns and cases and all(c.outcome is None for c in cases):
        errors.append(InputError("no patient has an outcome", file=name, field=schema.outcome))
    if errors:
        raise InputErrors(errors)
    return Cohort(path=path, cases=cases, schema=schema, clinical_columns=clinical_columns)
