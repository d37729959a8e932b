"""DICOM files by content, not extension: the one test (the Part 10 'DICM' marker) that image
reading, mask reading and DICOM output share."""

from __future__ import annotations

from pathlib import Path
from typing import List


def is_dicom_file(path: Path) -> bool:
    """DICOM files carry 'DICM' at byte 128 (Part 10); extension is no guide."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def dicom_files(folder: Path) -> List[Path]:
    """Every DICOM file under a folder (any depth), sorted by path."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_dicom_file(p))
