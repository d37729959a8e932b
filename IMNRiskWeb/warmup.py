"""What a session imports ahead of the user's first Predict: the first nomogram (matplotlib,
pandas), the DICOM export check (highdicom) and the feature extraction (pyradiomics) otherwise
import on that click, about a second and a half of a 2 s Predict (bench_web.py, profiled)."""

from __future__ import annotations

import importlib

AHEAD = ("radiomics.featureextractor", "IMNRiskLib.scoring", "IMNRiskLib.outputs.figures", "matplotlib.pyplot", "highdicom")


def warm_imports() -> None:
    """Import the modules a Predict needs (in a worker thread while the user loads and contours;
    a missing optional one is skipped: Predict says so when it is needed)."""
    for name in AHEAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optional extra absent or broken is reported where it is used
            continue
