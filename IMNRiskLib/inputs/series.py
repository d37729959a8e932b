"""Which phase, and the checks of a DICOM series' headers (one acquisition, even slice spacing, time
tags): shared by the classic readers in `imaging` and the other DICOM readers."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from IMNRiskLib.core.errors import InputError


DEFAULT_PHASE = 1


# DICOM tags used to split a multi-phase series into phases, in order of preference.
TEMPORAL_TAGS = (("0020|0100", "TemporalPositionIdentifier"), ("0018|1060", "TriggerTime"),
                 ("0008|0032", "AcquisitionTime"))


# Slices of one phase must be evenly spaced (a gap means a missing slice): relative tolerance.
SLICE_SPACING_TOLERANCE = 0.01


def _time_value(text: str) -> float:
    """DICOM TM (HHMMSS.frac) or a number, as seconds/number for ordering."""
    text = text.strip()
    try:
        if re.fullmatch(r"\d{6}(\.\d+)?", text):
            return int(text[:2]) * 3600 + int(text[2:4]) * 60 + float(text[4:])
        return float(text)
    except ValueError:
        return math.nan


def _meta(header: sitk.ImageFileReader, tag: str) -> str:
    return header.GetMetaData(tag).strip() if header.HasMetaDataKey(tag) else ""


def _where(folder: Path, files: Sequence[Path]) -> str:
    """Where a series lies, relative to the folder the user gave ('.' for the folder itself)."""
    parents = sorted({str(p.parent.relative_to(folder)) for p in files})
    return parents[0] + (f" (+{len(parents) - 1} more)" if len(parents) > 1 else "")


def check_one_acquisition(headers: Sequence[Tuple[Path, sitk.ImageFileReader]], folder: Path) -> None:
    """A DICOM input is one acquisition: one series, or one series per phase of the same study with
    the same slices. Another patient's or another sequence's series (e.g. in a subfolder) is refused."""
    series: Dict[str, list] = {}
    for path, header in headers:
        series.setdefault(_meta(header, "0020|000e"), []).append((path, header))
    if len(series) == 1:
        return
    listing = "; ".join(f"{len(items)} file(s) in {_where(folder, [p for p, _ in items])}"
                        for items in series.values())
    hint = "give the folder of one series"
    for tag, what in (("0010|0020", "patients"), ("0020|000d", "studies")):
        if len({_meta(h, tag) for _, h in headers}) > 1:
            raise InputError(f"folder holds {len(series)} DICOM series of different {what} ({listing}); {hint}",
                             file=str(folder))
    layouts = set()
    for items in series.values():
        if any(len({_meta(h, tag) for _, h in items}) > 1 for tag, _ in TEMPORAL_TAGS[:2]):
            raise InputError(f"folder holds {len(series)} DICOM series, one of them multi-phase ({listing}); {hint}",
                             file=str(folder))
        layouts.add((_meta(items[0][1], "0020|0037"),
                     tuple(sorted(round(_slice_position(h), 2) for _, h in items))))
    if len(layouts) > 1:
        raise InputError(f"folder holds {len(series)} DICOM series with different slices, not phases of one "
                         f"acquisition ({listing}); {hint}", file=str(folder))


def check_slice_spacing(positions: Sequence[float], folder: Path, phase: int) -> None:
    """Slices of a phase must be evenly spaced: a larger gap is a missing slice, a zero gap a duplicate."""
    if len(positions) < 3:
        return
    gaps = np.diff(np.asarray(positions, dtype=float))
    median = float(np.median(gaps))
    if float(gaps.min()) <= 1e-6 * max(1.0, abs(median)):
        raise InputError(f"DICOM phase {phase}: two slices at the same position (a duplicate slice)",
                         file=str(folder))
    if float(gaps.max() - gaps.min()) > SLICE_SPACING_TOLERANCE * median:
        raise InputError(f"DICOM phase {phase}: non-uniform slice spacing ({gaps.min():.3g} to {gaps.max():.3g} mm "
                         f"between slices): a slice is missing", file=str(folder))


def _choose_phase(n_phases: int, phase: Optional[int], source: str) -> int:
    """The phase to use: the requested one, else the second (index 1) of a multi-phase series."""
    if phase is None:
        return DEFAULT_PHASE if n_phases > 1 else 0
    if phase < 0:
        raise InputError(f"phase {phase} is negative (0-based: 0..{n_phases - 1})", file=source, field="Phase")
    if phase >= n_phases:
        raise InputError(f"phase {phase} requested but the series has {n_phases} phase(s) "
                         f"(0-based: 0..{n_phases - 1})", file=source, field="Phase")
    return phase


def _slice_position(reader: sitk.ImageFileReader) -> float:
    """Position of a slice along its normal (to order slices within a phase)."""
    try:
        ipp = [float(x) for x in reader.GetMetaData("0020|0032").split("\\")]
        iop = [float(x) for x in reader.GetMetaData("0020|0037").split("\\")]
        normal = np.cross(iop[:3], iop[3:])
        return float(np.dot(normal, ipp))
    except (RuntimeError, ValueError):
        return float(reader.GetMetaData("0020|0013")) if reader.HasMetaDataKey("0020|0013") else 0.0
