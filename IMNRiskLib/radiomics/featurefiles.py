"""The files of an extraction: features.csv, its provenance and failures written as one set, read
back checked; failures and paths as they may travel (no patient's folder names)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

if TYPE_CHECKING:  # pandas and the cohort (pandas) load only where used
    import pandas as pd
    from IMNRiskLib.inputs.cohort import Case

from IMNRiskLib.core.errors import InputError
from IMNRiskLib.core.files import check_input_file, output_set, write_json


@dataclass
class ExtractionRun:
    """Outcome of extracting a cohort: the feature table, failures and provenance."""

    features: pd.DataFrame
    failures: List[Dict[str, Any]]
    provenance: Dict[str, Any]
    cached: int = 0
    warnings: List[str] = field(default_factory=list)
    reader2: Optional["ExtractionRun"] = None  # the second reader's masks (Mask2), when the manifest has them


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_ABSOLUTE_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?[\\/][^\s:;,'\"()]+")


def scrub_paths(text: str, known: Dict[str, str]) -> str:
    """Text that may travel: known paths replaced by their role (e.g. Image), any other absolute path
    by '<path>' (a folder name can be a patient's name)."""
    for path, role in sorted(known.items(), key=lambda kv: -len(kv[0])):
        if path:
            text = text.replace(path, role)
    return _ABSOLUTE_PATH.sub("<path>", text)


def _travelling_failure(case: Case, result: Dict[str, Any], mask_role: str = "Mask") -> Dict[str, str]:
    """The failure as features.failures.csv and the provenance show it: which input (Image, Mask or
    Mask2) instead of its path, and a reason without paths (stderr keeps the full paths for the user)."""
    known = {str(case.image): "Image", str(case.mask): mask_role,
             str(Path(case.image).resolve()): "Image", str(Path(case.mask).resolve()): mask_role}
    file = result.get("file") or ""
    role = known.get(file) or known.get(str(Path(file).resolve()) if file else "", "")
    if not role and file:
        role = "Image" if file.startswith(str(case.image)) else (mask_role if file.startswith(str(case.mask)) else "")
    return {"public_file": role, "public_reason": scrub_paths(result.get("public_error") or result["error"], known)}


def output_paths(out: Union[str, Path]) -> Dict[str, Path]:
    """features.csv and the files written beside it."""
    out = Path(out)
    stem = out.name[:-4] if out.name.lower().endswith(".csv") else out.name
    return {"features": out, "provenance": out.with_name(stem + ".provenance.json"),
            "failures": out.with_name(stem + ".failures.csv"),
            "reader2": out.with_name(stem + "_reader2.csv"),  # the second reader's (Mask2) table
            "reader2_provenance": out.with_name(stem + "_reader2.provenance.json")}


def write_run(run: ExtractionRun, out: Union[str, Path]) -> Dict[str, Path]:
    """Write features.csv, its provenance (bound to it by the table's SHA-256) and the failures as one
    set: all three or none (the previous set stays whole when anything fails, disk full included).
    With a second reader, features_reader2.csv and its provenance too, each provenance also
    recording the other table's SHA-256 (the pair is bound)."""
    import pandas as pd  # start-up time: pandas loads only when used
    paths = output_paths(out)
    with output_set(paths["features"].parent, last=paths["features"].name) as stage:
        staged = {k: stage / p.name for k, p in paths.items()}
        run.features.to_csv(staged["features"], float_format="%.17g")
        sha = {"features_sha256": sha256_of_file(staged["features"])}
        if run.reader2 is not None:
            run.reader2.features.to_csv(staged["reader2"], float_format="%.17g")
            sha2 = sha256_of_file(staged["reader2"])
            write_json(staged["reader2_provenance"], {**run.reader2.provenance, "features_sha256": sha2,
                                                      "reader1_features_sha256": sha["features_sha256"]})
            sha["reader2_features_sha256"] = sha2
        write_json(staged["provenance"], {**run.provenance, **sha})
        public = [{"ID": f["ID"], "file": f.get("public_file", ""), "field": f["field"],
                   "reason": f.get("public_reason", f["reason"])} for f in run.failures]
        pd.DataFrame(public, columns=["ID", "file", "field", "reason"]).to_csv(staged["failures"], index=False)
    return paths


def read_features(path: Union[str, Path]) -> pd.DataFrame:
    """Read a features.csv back (ID index, float columns); bad files raise InputError."""
    import pandas as pd  # start-up time: pandas loads only when used
    path = check_input_file(path, "features file")
    try:
        frame = pd.read_csv(path, dtype={"ID": str}).set_index("ID")
    except (ValueError, KeyError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"not a features table with an ID column ({(str(exc).splitlines() or [''])[0]})",
                         file=str(path)) from None
    duplicated = frame.index[frame.index.duplicated()].unique()
    if len(duplicated):
        raise InputError(f"{len(duplicated)} ID(s) appear more than once", file=str(path), id=duplicated[0],
                         field="ID")
    non_numeric = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        column = frame[non_numeric[0]]
        bad = column[pd.to_numeric(column, errors="coerce").isna() & column.notna()]
        value = str(bad.iloc[0]) if len(bad) else ""
        others = f" (non-numeric feature columns: {', '.join(non_numeric[:5])})" if len(non_numeric) > 1 else ""
        raise InputError(f"'{value[:40]}' is not a number{others}", file=str(path),
                         id=str(bad.index[0]) if len(bad) else None, field=non_numeric[0])
    return frame.astype(float)
