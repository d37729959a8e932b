"""Step 2 of the screenshots: render IMNRisk.ui with plain-Qt stand-ins for Slicer's widgets and fill
it with what the real controller showed (panel_state.py). Slicer itself cannot run where these were
made, so the MRML widgets (node combo boxes, Segment Editor, table view) are drawn by stand-ins.

    .venv/bin/pip install -e '.[screenshots]'        # PySide6 (plain Qt, from PyPI)
    .venv/bin/python docs/screenshots/panel_state.py /tmp/shots
    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/render_panels.py /tmp/shots docs/screenshots
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6.QtCore import Property, QFile, Qt  # noqa: E402
from PySide6.QtGui import QPixmap  # noqa: E402
from PySide6.QtUiTools import QUiLoader  # noqa: E402
from PySide6.QtWidgets import (QApplication, QComboBox, QFormLayout, QGridLayout, QGroupBox, QHBoxLayout,  # noqa: E402
                               QLabel, QLineEdit, QListWidget, QPushButton, QTableWidget, QTableWidgetItem,
                               QToolButton, QVBoxLayout, QWidget)

UI = Path(__file__).resolve().parents[2] / "IMNRisk" / "Resources" / "UI" / "IMNRisk.ui"
EFFECTS = ["Paint", "Draw", "Erase", "Level tracing", "Grow from seeds", "Fill between", "Threshold", "Margin",
           "Hollow", "Smoothing", "Scissors", "Islands", "Logical"]


class qMRMLWidget(QWidget):
    pass


class qMRMLNodeComboBox(QComboBox):
    pass


class qMRMLSegmentSelectorWidget(QComboBox):
    pass


class ctkCollapsibleButton(QGroupBox):
    """Slicer's collapsible section: a titled box (its `text` is the title)."""

    def _get(self):
        return self.title()

    def _set(self, value):
        self.setTitle("\u25bc " + value)

    text = Property(str, _get, _set)


class ctkPathLineEdit(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.edit = QLineEdit()
        row.addWidget(self.edit)
        row.addWidget(QToolButton(text="..."))


class qMRMLSegmentEditorWidget(QWidget):
    """Stand-in for Slicer's Segment Editor: undo/redo, effect buttons, segment list."""

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        bar = QHBoxLayout()
        for text in ("Add", "Remove", "Show 3D", "Undo"):
            bar.addWidget(QPushButton(text))
        layout.addLayout(bar)
        self.segments = QListWidget()
        self.segments.setMaximumHeight(48)
        layout.addWidget(self.segments)
        grid = QGridLayout()
        for k, name in enumerate(EFFECTS):
            button = QToolButton(text=name.replace(" ", "\n") if len(name) > 9 else name)
            button.setCheckable(True)
            button.setChecked(name == "Paint")
            button.setMinimumWidth(60)
            grid.addWidget(button, k // 5, k % 5)
        layout.addLayout(grid)
        layout.addWidget(QLabel("Paint: brush 5.0%   [x] Sphere brush"))


class qMRMLTableView(QTableWidget):
    pass


def load_ui():
    loader = QUiLoader()
    for cls in (qMRMLWidget, qMRMLNodeComboBox, qMRMLSegmentSelectorWidget, ctkCollapsibleButton, ctkPathLineEdit,
                qMRMLTableView):
        loader.registerCustomWidget(cls)
    handle = QFile(str(UI))
    handle.open(QFile.ReadOnly)
    panel = loader.load(handle)
    handle.close()
    return panel


def find(panel, name):
    widget = panel.findChild(QWidget, name)
    if widget is None:
        raise SystemExit(f"{name} is not in {UI}")
    return widget


def fill_scoring(panel, state, nomogram: Path):
    """The scoring tab as the widget's updateGUIFromState() draws this state."""
    find(panel, "researchLabel").setText(state["notice"])
    find(panel, "environmentLabel").hide()
    box = find(panel, "inputComboBox")
    for i in state["inputs"]:
        box.addItem(f"{i['name']} ({i['phases']} phases)" if i["phases"] > 1 else i["name"])
    spin = find(panel, "phaseSpinBox")
    spin.setMaximum(state["phase_count"] - 1)
    spin.setValue(state["phase"])
    find(panel, "phaseInfoLabel").setText(f"Showing, contouring and scoring phase {state['phase']} of "
                                          f"{state['phase_count']}")
    find(panel, "segmentationSelector").addItem(next(s["name"] for s in state["segmentations"]
                                                     if s["id"] == state["segmentation_id"]))
    find(panel, "segmentSelector").addItem(state["segments"][0]["name"])
    editor = qMRMLSegmentEditorWidget()   # made in Python and put in the placeholder, as IMNRisk.py does
    find(panel, "segmentEditorPlaceholder").layout().addWidget(editor)
    editor.segments.addItem("\u25a0 " + state["segments"][0]["name"])
    size = state["segment"]
    find(panel, "segmentSizeLabel").setText(f"{size['voxels']} voxels, {size['ml']:.2f} mL")
    find(panel, "segmentWarningLabel").hide()
    model = state["model"]
    find(panel, "modelPathLineEdit").edit.setText(".../IMNRisk/Testing/Data/IMNRiskTestModel.json")
    find(panel, "syntheticBannerLabel").setText(model["banner"])
    find(panel, "modelSummaryLabel").setText(model["summary"])
    find(panel, "versionLabel").hide()
    find(panel, "allowMismatchCheckBox").hide()
    form = find(panel, "clinicalFormWidget").layout()
    for field in state["form"]:
        combo = QComboBox()
        combo.addItems(["- not entered -"] + field["levels"])
        combo.setCurrentText(str(field["value"]))
        form.addRow(field["title"] + ":", combo)
    result = state["result"]
    find(panel, "predictButton").setEnabled(state["predict"]["enabled"])
    find(panel, "predictReasonLabel").hide()
    find(panel, "staleLabel").hide()
    lo, hi = result["ci95"]
    t = result["risk_thresholds"]
    find(panel, "radscoreLabel").setText(f"{result['radscore']:.3f}")
    find(panel, "riskLabel").setText(f"{100 * result['probability']:.1f}% (95% CI {100 * lo:.1f}-{100 * hi:.1f}%)")
    find(panel, "riskGroupLabel").setText(f"{result['risk_group']} (low < {t['low']:.3f} <= intermediate < "
                                          f"{t['high']:.3f} <= high)")
    find(panel, "pointsLabel").setText(", ".join(f"{k} {v:.1f}" for k, v in result["points"].items()))
    find(panel, "warningsLabel").setText("\n".join(result["warnings"]))
    find(panel, "errorLabel").hide()
    find(panel, "nomogramLabel").setPixmap(QPixmap(str(nomogram)))
    table = find(panel, "resultsTableView")
    columns = ["time", "phase", "segment", "radscore", "risk", "risk_group"]
    table.setColumnCount(len(columns))
    table.setHorizontalHeaderLabels(columns)
    table.setRowCount(len(state["results"]))
    for r, row in enumerate(state["results"]):
        for c, name in enumerate(columns):
            table.setItem(r, c, QTableWidgetItem(row[name]))
    table.setMaximumHeight(80)


def fill_training(panel, training, notice):
    find(panel, "researchLabel").setText(notice)
    find(panel, "environmentLabel").hide()
    find(panel, "panelTabs").setCurrentIndex(1)
    for name in ("inputsCollapsibleButton", "tumourCollapsibleButton", "modelCollapsibleButton",
                 "clinicalCollapsibleButton", "resultsCollapsibleButton"):
        find(panel, name).hide()  # the hidden tab would otherwise set the stacked pages' height
    find(panel, "cohortPathLineEdit").edit.setText(training["cohort"])
    find(panel, "outputFolderLineEdit").edit.setText(training["output"])
    find(panel, "schemaPathLineEdit").edit.setPlaceholderText("Empty: the paper's variables")
    find(panel, "cvRepeatsSpinBox").setValue(2)
    find(panel, "bootstrapSpinBox").setValue(10)
    find(panel, "trainingProgressBar").setValue(100)
    find(panel, "trainingResultLabel").setText(training["result"])
    log = find(panel, "trainingLog")
    log.setPlainText("\n".join(training["lines"]))
    log.setFixedHeight(330)
    find(panel, "openReportButton").setEnabled(True)
    find(panel, "useModelButton").setEnabled(True)


def grab(panel, path: Path, height: int):
    panel.resize(420, height)
    panel.show()
    QApplication.processEvents()
    panel.grab().save(str(path))
    print(f"wrote {path} ({panel.width()}x{panel.height()})")


def main():
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setStyle("Fusion")
    state = json.loads((source / "state.json").read_text(encoding="utf-8"))
    panel = load_ui()
    fill_scoring(panel, state, source / "nomogram.png")
    grab(panel, target / "scoring.png", max(900, panel.sizeHint().height()))
    panel = load_ui()
    fill_training(panel, json.loads((source / "training.json").read_text(encoding="utf-8")), state["notice"])
    grab(panel, target / "training.png", 720)


if __name__ == "__main__":
    main()
