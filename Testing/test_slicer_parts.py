"""The Slicer controller's layout (issue #28 item 4): a thin facade over one small part per role, no
part judging a patient (the scoring core does), no file over ~600 lines."""

from __future__ import annotations

import ast
import inspect
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "IMNRisk"))
pytest.importorskip("slicer", reason="slicer-core is installed by make install (test extra)")
from IMNRiskSlicer import controller  # noqa: E402

PACKAGE = ROOT / "IMNRisk" / "IMNRiskSlicer"
PARTS = {"inputs": "inputs.py", "tumour": "tumour.py", "editors": "editors.py", "clinical": "form.py",
         "scoring": "results.py", "dicom_export": "export.py"}


def test_every_file_of_the_slicer_package_is_small_and_none_judges_a_patient():
    for path in PACKAGE.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert len(text.splitlines()) <= 600, path.name
        for judged in ("risk_group(", "domain.check(", "check_acquisition(", "_range_warnings", ".radscore(",
                       ".probability(", "compute_features("):
            assert judged not in text, (path.name, judged)


def test_the_controller_is_a_thin_facade_over_its_parts():
    """Each role lives in its own module; the facade's methods forward (a few lines each), only
    state() assembles what the faces show."""
    source = inspect.getsource(controller.ScoringController)
    tree = ast.parse(source)
    methods = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    long = {m.name: m.end_lineno - m.lineno for m in methods
            if m.end_lineno - m.lineno > 12 and m.name not in ("__init__", "state")}
    assert not long, long
    init = next(m for m in methods if m.name == "__init__")
    made = {t.attr: c.func.id for n in ast.walk(init) if isinstance(n, ast.Assign)
            for t in n.targets if isinstance(t, ast.Attribute)
            for c in [n.value] if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
    for attribute, module in PARTS.items():
        cls = made[attribute]
        assert getattr(controller, cls).__module__ == f"IMNRiskSlicer.{module[:-3]}", attribute
