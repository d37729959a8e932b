"""Cohort manifest: read `cohort.csv` and check it against the clinical schema.

The manifest is pyradiomics-batch compatible: `ID`, `Image`, `Mask` (paths relative to the CSV),
optional `Mask2` (a second reader's contour of the same tumour on the same image, for feature
stability (ICC); empty for a patient read once), optional `Phase` (0-based; default the second phase, 1) and `Label` (a label value, or a segment
name of a Slicer .seg.nrrd; default 1), the outcome `IMN` (1, 0, or empty for patients to score)
and one column per clinical variable. Every problem is reported at once, each with ID and column.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import pandas as pd

from IMNRiskLib.core.errors import InputError, InputErrors
from IMNRiskLib.inputs.schema import ClinicalSchema, load_schema
from IMNRiskLib.core.files import check_input_file

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


class ManifestDialect(csv.Dialect):
    """The one CSV dialect of a manifest (what Excel and pandas write): comma-separated, fields in
    double quotes when they hold a comma or a quote (doubled), spaces after a comma ignored. Strict:
    a stray quote is an error, not guessed around; nothing is inferred (no index column, no types)."""

    delimiter = ","
    quotechar = '"'
    doublequote = True
    skipinitialspace = True
    lineterminator = "\n"
    quoting = csv.QUOTE_MINIMAL
    strict = True


def _manifest_text(path: Path) -> str:
    """The manifest's text: UTF-8 (a byte-order mark is dropped); a NUL byte or invalid UTF-8 is an
    error naming its line (a binary file, or a UTF-16 export)."""
    data = path.read_bytes()
    if b"\0" in data:
        line = data[:data.index(b"\0")].count(b"\n") + 1
        raise InputError(f"line {line} holds a NUL byte: not a text CSV (a binary file, or saved as UTF-16? "
                         "save it as CSV UTF-8)", file=str(path))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(f"line {line} is not UTF-8 text (save the manifest as CSV UTF-8)", file=str(path)) from None


def _manifest_rows(path: Path) -> Tuple[List[str], List[Tuple[int, List[str]]]]:
    """The header and the (line number, fields) of each record, read with ManifestDialect. A record's
    line is the one it starts on; blank lines are skipped."""
    reader = csv.reader(io.StringIO(_manifest_text(path), newline=""), dialect=ManifestDialect)
    rows: List[Tuple[int, List[str]]] = []
    start = 1
    try:
        for fields in reader:
            if fields:
                rows.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InputError(f"line {start}: not a readable CSV record ({exc})", file=str(path)) from None
    if not rows:
        raise InputError("the manifest is empty (no header line)", file=str(path))
    (_, header), records = rows[0], rows[1:]
    return [h.strip() for h in header], records


def _read_csv(path: Path) -> Tuple[pd.DataFrame, List[int]]:
    """Read the manifest as text (no type guessing: '01' stays '01', 'NA' stays visible) with the
    strict ManifestDialect; returns the table and the line each row starts on.

    Each record has as many fields as the header. One exception, stated: an Excel-style trailing
    delimiter (a last field that is empty, on the header or on the records) is an empty trailing
    column and is dropped; it never shifts the other columns. A field with a line break (a quoted
    newline) is refused, naming its line.
    """
    check_input_file(path, "cohort file")
    header, records = _manifest_rows(path)
    name = str(path)
    while header and header[-1] == "" and all(len(r) < len(header) or r[len(header) - 1].strip() == ""
                                              for _, r in records):
        header = header[:-1]  # a trailing delimiter on the header line: an empty, unnamed last column
    if "" in header:
        raise InputError(f"column {header.index('') + 1} of the header has no name", file=name)
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise InputError(f"column(s) named twice in the header: {', '.join(duplicated)}", file=name)
    table, lines = [], []
    for line, fields in records:
        if len(fields) > len(header) and all(f.strip() == "" for f in fields[len(header):]):
            fields = fields[:len(header)]  # a trailing delimiter: empty trailing fields, dropped
        if len(fields) != len(header):
            raise InputError(f"line {line} has {len(fields)} field(s), the header {len(header)}: a stray or missing "
                             "delimiter (quote fields that hold a comma)", file=name)
        broken = [h for h, f in zip(header, fields) if "\n" in f or "\r" in f]
        if broken:
            raise InputError(f"line {line}: the value holds a line break (a quoted newline); one record is one line",
                             file=name, field=broken[0])
        table.append(fields)
        lines.append(line)
    return pd.DataFrame(table, columns=header, dtype=str), lines


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
    frame, lines = _read_csv(path)
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
    for row_number, row in zip(lines, frame.to_dict("records")):  # the line each record starts on
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
