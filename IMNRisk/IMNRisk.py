"""IMNRisk: internal mammary lymph node metastasis risk in 3D Slicer (research use only).

Thin glue: the GUI (scoring panel with an embedded Segment Editor and a clinical form generated
from the model's schema; training panel running in a background process) over IMNRiskLib and the
Qt-free logic of IMNRiskSlicer.
"""

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Union

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLSequenceNode, vtkMRMLTableNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

# Run from source (--additional-module-paths .../IMNRisk) the science package sits one folder up;
# installed as an extension it sits beside this file.
_HERE = Path(__file__).resolve().parent
for _candidate in (_HERE, _HERE.parent):
    if (_candidate / "IMNRiskLib" / "__init__.py").exists() and str(_candidate) not in sys.path:
        sys.path.insert(0, str(_candidate))
        break

from IMNRiskSlicer.logic import ScoringLogic, training_commands  # noqa: E402

RESEARCH_ONLY = "Research use only; not a medical device."
EDITOR_TAG = "IMNRiskSegmentEditor"
SETTINGS_MODEL = "IMNRisk/ModelPath"
# Python packages IMNRiskLib needs besides what Slicer ships; pyradiomics comes from SlicerRadiomics.
REQUIREMENTS = ["scikit-learn>=1.3", "statsmodels>=0.14", "pandas>=1.5", "glum>=3", "PyYAML>=6", "tqdm>=4.64",
                "jinja2>=3", "matplotlib>=3.7"]


class IMNRisk(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "IMNRisk"
        self.parent.categories = ["Radiomics"]
        self.parent.dependencies = []
        self.parent.contributors = ["The IMNRisk developers"]
        self.parent.helpText = (
            "Internal mammary lymph node metastasis risk from the second phase of a breast DCE-MRI "
            "(Rad-Score) and clinical factors, as a clinical-radiomics nomogram. " + RESEARCH_ONLY)
        self.parent.acknowledgementText = (
            "Method: Frontiers in Oncology 2025, doi 10.3389/fonc.2025.1477866. Features: pyradiomics.")


def ensure_dependencies(ask: bool = True) -> bool:
    """Install missing Python packages on first use, with the user's consent (never at import)."""
    missing = []
    for module, requirement in (("sklearn", "scikit-learn"), ("statsmodels", "statsmodels"), ("pandas", "pandas"),
                                ("glum", "glum"), ("yaml", "PyYAML"), ("tqdm", "tqdm"), ("jinja2", "jinja2"),
                                ("matplotlib", "matplotlib")):
        try:
            __import__(module)
        except ImportError:
            missing.append(requirement)
    try:
        import radiomics  # noqa: F401
    except ImportError:
        slicer.util.errorDisplay("pyradiomics is missing: install the SlicerRadiomics extension from the "
                                 "Extensions Manager, restart Slicer and open IMNRisk again.")
        return False
    if not missing:
        return True
    if ask and not slicer.util.confirmOkCancelDisplay(
            f"IMNRisk needs these Python packages: {', '.join(missing)}. Install them now?"):
        return False
    wanted = [r for r in REQUIREMENTS if r.split(">")[0].split("=")[0] in missing]
    with slicer.util.WaitCursor():
        if hasattr(slicer, "packaging") and hasattr(slicer.packaging, "pip_ensure"):
            slicer.packaging.pip_ensure(wanted)       # Slicer >= 5.12
        else:
            slicer.util.pip_install(" ".join(wanted))
    return True


@parameterNodeWrapper
class IMNRiskParameterNode:
    """Everything the panels need, saved with the scene."""

    inputVolume: Union[vtkMRMLScalarVolumeNode, vtkMRMLSequenceNode]
    phase: Annotated[int, WithinRange(0, 99)] = 1
    segmentation: vtkMRMLSegmentationNode
    segmentId: str = ""
    modelPath: str = ""
    clinicalValues: str = "{}"
    pointsTable: vtkMRMLTableNode
    featuresTable: vtkMRMLTableNode
    cohortPath: str = ""
    schemaPath: str = ""
    outputFolder: str = ""
    cvRepeats: Annotated[int, WithinRange(0, 1000)] = 100
    bootstrap: Annotated[int, WithinRange(0, 10000)] = 1000


class IMNRiskWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._clinicalWidgets = {}
        self._process = None
        self._queue = []

    # ------------------------------------------------------------------ set-up
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/IMNRisk.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = IMNRiskLogic()
        self.ui.researchLabel.text = RESEARCH_ONLY

        editorNode = slicer.mrmlScene.GetSingletonNode(EDITOR_TAG, "vtkMRMLSegmentEditorNode")
        if editorNode is None:
            editorNode = slicer.mrmlScene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
            editorNode.UnRegister(None)
            editorNode.SetSingletonTag(EDITOR_TAG)
            editorNode = slicer.mrmlScene.AddNode(editorNode)
        self.ui.segmentEditorWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(editorNode)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        # the segment selector has no parameter-node connector: synced by hand
        self.ui.segmentSelector.connect("currentSegmentChanged(QString)", self.onSegmentChanged)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onInputChanged)
        self.ui.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onInputChanged)
        self.ui.phaseSpinBox.connect("valueChanged(int)", self.onInputChanged)
        # path line edits are synced by hand: the wrapper's ctkPathLineEdit connector needs pathlib.Path
        # fields, and an empty path must stay empty (Path("") is ".")
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.onModelChanged)
        for edit in (self.ui.cohortPathLineEdit, self.ui.schemaPathLineEdit, self.ui.outputFolderLineEdit):
            edit.connect("currentPathChanged(QString)", self.onTrainingPathsChanged)
        self.ui.predictButton.connect("clicked(bool)", self.onPredict)
        self.ui.trainButton.connect("clicked(bool)", self.onTrain)
        self.ui.cancelTrainingButton.connect("clicked(bool)", self.onCancelTraining)
        self.ui.openReportButton.connect("clicked(bool)", self.onOpenReport)
        self.ui.useModelButton.connect("clicked(bool)", self.onUseTrainedModel)
        self.initializeParameterNode()
        saved = qt.QSettings().value(SETTINGS_MODEL)
        if saved and not self._parameterNode.modelPath:
            self._parameterNode.modelPath = saved

    def cleanup(self):
        self.removeObservers()
        self.onCancelTraining()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateState)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateState)
            self.onModelChanged(self._parameterNode.modelPath)
            self.updateState()

    # ------------------------------------------------------------------ scoring panel
    def updateState(self, caller=None, event=None):
        p = self._parameterNode
        if p is None:
            return
        for edit, value in ((self.ui.modelPathLineEdit, p.modelPath), (self.ui.cohortPathLineEdit, p.cohortPath),
                            (self.ui.schemaPathLineEdit, p.schemaPath), (self.ui.outputFolderLineEdit, p.outputFolder)):
            if edit.currentPath != value:
                edit.currentPath = value
        segmentation = p.segmentation
        self.ui.segmentSelector.setCurrentNode(segmentation)
        if p.segmentId and self.ui.segmentSelector.currentSegmentID() != p.segmentId:
            self.ui.segmentSelector.setCurrentSegmentID(p.segmentId)
        ready = bool(p.inputVolume and segmentation and p.segmentId and p.modelPath)
        self.ui.predictButton.enabled = ready
        self.ui.predictButton.toolTip = "Score this patient" if ready else \
            "Choose the DCE series, a segmentation with the tumour segment and a model file"
        self._showSegmentSize()

    def onInputChanged(self, *args):
        p = self._parameterNode
        if p is None or not p.inputVolume:
            return
        reference = self.logic.referenceVolume(p.inputVolume, p.phase)
        self.ui.phaseSpinBox.maximum = max(0, self.logic.phaseCount(p.inputVolume) - 1)
        if reference is not None:
            slicer.util.setSliceViewerLayers(background=reference, fit=False)  # show the chosen phase
            self.ui.segmentEditorWidget.setSourceVolumeNode(reference)
        if p.segmentation:
            self.ui.segmentEditorWidget.setSegmentationNode(p.segmentation)
            if reference is not None:
                p.segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference)
        self.updateState()

    def onSegmentChanged(self, segmentId):
        if self._parameterNode and self._parameterNode.segmentId != segmentId:
            self._parameterNode.segmentId = segmentId or ""

    def _showSegmentSize(self):
        p = self._parameterNode
        text, warn = "-", ""
        if p and p.inputVolume and p.segmentation and p.segmentId:
            try:
                voxels, ml = self.logic.segment_size(p.inputVolume, p.segmentation, p.segmentId, p.phase)
                text = f"{voxels} voxels, {ml:.2f} mL"
                if voxels < 64:
                    warn = "Too small for texture features (at least 64 voxels)."
            except Exception as exc:  # an empty segment, a missing one: say so, no traceback
                warn = str(exc)
        self.ui.segmentSizeLabel.text = text
        self.ui.segmentWarningLabel.text = warn

    def onTrainingPathsChanged(self, *args):
        p = self._parameterNode
        if p is None:
            return
        p.cohortPath = self.ui.cohortPathLineEdit.currentPath
        p.schemaPath = self.ui.schemaPathLineEdit.currentPath
        p.outputFolder = self.ui.outputFolderLineEdit.currentPath

    def onModelChanged(self, path):
        """Show the model's summary and build the clinical form from its schema."""
        if self._parameterNode is not None and self._parameterNode.modelPath != path:
            self._parameterNode.modelPath = path
        self._clinicalWidgets = {}
        form = self.ui.clinicalFormWidget.layout()
        while form.count():
            item = form.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        if not path or not os.path.exists(path):
            self.ui.modelSummaryLabel.text = "No model file selected."
            return
        try:
            model = self.logic.load_model(path)
        except Exception as exc:
            self.ui.modelSummaryLabel.text = f"Cannot use this model: {exc}"
            return
        qt.QSettings().setValue(SETTINGS_MODEL, path)
        summary = model.summary()
        if model.doc["training"].get("synthetic"):
            summary = "TRAINED ON SYNTHETIC DATA (demo model): not for patients.\n" + summary
        self.ui.modelSummaryLabel.text = summary
        values = json.loads(self._parameterNode.clinicalValues or "{}") if self._parameterNode else {}
        schema = model.schema
        for name in model.factors:
            var = schema[name]
            if var.type == "continuous":
                widget = qt.QDoubleSpinBox()
                widget.setRange(var.min if var.min is not None else -1e6, var.max if var.max is not None else 1e6)
                widget.suffix = f" {var.unit}" if var.unit else ""
                if name in values:
                    widget.value = float(values[name])
                widget.connect("valueChanged(double)", self.onClinicalChanged)
            else:
                widget = qt.QComboBox()
                widget.addItems(list(var.levels))
                if values.get(name) in var.levels:
                    widget.currentText = values[name]
                widget.connect("currentIndexChanged(int)", self.onClinicalChanged)
            form.addRow(var.title + ":", widget)
            self._clinicalWidgets[name] = widget
        self.onClinicalChanged()

    def clinicalValues(self):
        out = {}
        for name, widget in self._clinicalWidgets.items():
            out[name] = widget.value if isinstance(widget, qt.QDoubleSpinBox) else widget.currentText
        return out

    def onClinicalChanged(self, *args):
        if self._parameterNode:
            self._parameterNode.clinicalValues = json.dumps(self.clinicalValues())

    def onPredict(self):
        if not ensure_dependencies():
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Scoring failed.", waitCursor=True):
            result = self.logic.predict(p.inputVolume, p.segmentation, p.segmentId, self.clinicalValues(),
                                        p.modelPath, p.phase)
            p.pointsTable, p.featuresTable = self.logic.results_to_tables(result, p.pointsTable, p.featuresTable)
            self.ui.radscoreLabel.text = f"{result['radscore']:.3f}"
            self.ui.riskLabel.text = (f"{100 * result['probability']:.1f}% (95% CI {100 * result['ci95'][0]:.1f}-"
                                      f"{100 * result['ci95'][1]:.1f}%)")
            t = result["risk_thresholds"]
            self.ui.riskGroupLabel.text = (f"{result['risk_group']} (low < {t['low']:.3f} <= intermediate < "
                                           f"{t['high']:.3f} <= high)")
            self.ui.pointsLabel.text = ", ".join(f"{k} {v:.1f}" for k, v in result["points"].items())
            self.ui.pointsTableView.setMRMLTableNode(p.pointsTable)
            self.ui.featuresTableView.setMRMLTableNode(p.featuresTable)
            self._showNomogram(result)

    def _showNomogram(self, result):
        from IMNRiskLib import figures
        model = self.logic.load_model(self._parameterNode.modelPath)
        labels = {v["name"]: v.get("label", v["name"]) for v in model.doc["clinical"]["schema"]["variables"]}
        fig = figures.nomogram(model.doc["nomogram"], labels, patient=result["points"])
        path = os.path.join(tempfile.gettempdir(), "imnrisk-nomogram.png")
        fig.savefig(path, dpi=90, bbox_inches="tight")
        self.ui.nomogramLabel.setPixmap(qt.QPixmap(path))

    # ------------------------------------------------------------------ training panel
    def onTrain(self):
        if not ensure_dependencies():
            return
        p = self._parameterNode
        if not (p.cohortPath and p.outputFolder):
            slicer.util.errorDisplay("Choose the cohort CSV and an output folder.")
            return
        self._queue = training_commands(p.cohortPath, p.outputFolder, schema=p.schemaPath or None,
                                        cv_repeats=p.cvRepeats, bootstrap=p.bootstrap, force=True)
        self.ui.trainingLog.clear()
        self.ui.trainButton.enabled = False
        self.ui.cancelTrainingButton.enabled = True
        self._runNext()

    def _runNext(self):
        if not self._queue:
            self._trainingFinished(True)
            return
        argv = self._queue.pop(0)
        self._process = qt.QProcess()
        self._process.setProcessChannelMode(qt.QProcess.MergedChannels)
        self._process.connect("readyRead()", self._onProcessOutput)
        self._process.connect("finished(int,QProcess::ExitStatus)", self._onProcessFinished)
        self._process.start(argv[0], argv[1:])

    def _onProcessOutput(self):
        text = bytes(self._process.readAll()).decode("utf-8", "replace")
        for line in text.replace("\r", "\n").splitlines():
            if "%|" in line:  # a progress bar: "cv (nested):  26%|..."
                try:
                    self.ui.trainingProgressBar.value = int(line.split("%|")[0].split()[-1])
                    self.ui.trainingProgressBar.format = line.split(":")[0] + " %p%"
                except ValueError:
                    pass
            elif line.strip():
                self.ui.trainingLog.appendPlainText(line)

    def _onProcessFinished(self, code, status):
        if code == 0:
            self._runNext()
        else:
            self._trainingFinished(False)

    def onCancelTraining(self):
        self._queue = []
        if self._process is not None and self._process.state() != qt.QProcess.NotRunning:
            self._process.kill()  # outputs are renamed into place only when complete
            self.ui.trainingLog.appendPlainText("Cancelled; nothing half-written was left.")

    def _trainingFinished(self, ok):
        self.ui.trainButton.enabled = True
        self.ui.cancelTrainingButton.enabled = False
        out = Path(self._parameterNode.outputFolder)
        if ok and (out / "metrics.json").exists():
            metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
            aucs = ", ".join(f"{m} {metrics['models'][m]['apparent']['auc']:.3f}"
                             for m in ("clinical", "radiomics", "combined"))
            self.ui.trainingResultLabel.text = f"AUC: {aucs}"
            self.ui.openReportButton.enabled = (out / "report.html").exists()
            self.ui.useModelButton.enabled = (out / "model.json").exists()
        elif not ok:
            self.ui.trainingResultLabel.text = "Training stopped: see the log."

    def onOpenReport(self):
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(Path(self._parameterNode.outputFolder) / "report.html")))

    def onUseTrainedModel(self):
        self._parameterNode.modelPath = str(Path(self._parameterNode.outputFolder) / "model.json")


class IMNRiskLogic(ScriptedLoadableModuleLogic, ScoringLogic):
    """IMNRiskLogic().predict(volumeNode, segmentationNode, segmentId, clinical, model) from Python."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        ScoringLogic.__init__(self)

    def getParameterNode(self):
        return IMNRiskParameterNode(super().getParameterNode())

    def phaseCount(self, node):
        from IMNRiskSlicer import mrml
        return mrml.phase_count(node)

    def referenceVolume(self, node, phase):
        from IMNRiskSlicer import mrml
        return mrml.reference_volume(node, phase)


class IMNRiskTest(ScriptedLoadableModuleTest):
    """Runs in real Slicer (ctest / slicer.testing.runUnitTest): scoring and training from the logic."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_score_a_painted_tumour()
        self.setUp()
        self.test_train_from_the_panel_logic()

    def _small_model(self, folder):
        """A model trained on a small synthetic phantom (a few minutes at most)."""
        import subprocess
        for step in training_commands(str(folder / "phantom" / "cohort.csv"), str(folder / "model"),
                                      cv_repeats=0, bootstrap=0, jobs=2):
            subprocess.run(step, check=True)
        return folder / "model" / "model.json"

    def _phantom(self, folder, patients=30):
        import subprocess
        from IMNRiskSlicer.logic import python_executable
        lib = str(Path(__file__).resolve().parent.parent)
        subprocess.run([python_executable(), "-c", f"import sys; sys.path.insert(0, {lib!r}); "
                        "from IMNRiskLib.cli import main; sys.exit(main(sys.argv[1:]))", "synth",
                        str(folder / "phantom"), "--patients", str(patients), "--quiet"], check=True)

    def test_score_a_painted_tumour(self):
        import numpy as np
        import SampleData
        self.assertTrue(ensure_dependencies(ask=False))
        volume = SampleData.SampleDataLogic().downloadMRBrainTumor1()  # a real MR volume
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        segment_id = segmentation.GetSegmentation().AddEmptySegment("tumour")
        array = slicer.util.arrayFromVolume(volume)
        k, j, i = np.indices(array.shape)
        centre = np.array(array.shape) // 2
        sphere = (((k - centre[0]) / 6.0) ** 2 + ((j - centre[1]) / 12.0) ** 2 + ((i - centre[2]) / 12.0) ** 2 <= 1)
        slicer.util.updateSegmentBinaryLabelmapFromArray(sphere.astype(np.uint8), segmentation, segment_id, volume)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            self._phantom(tmp)
            model_path = self._small_model(tmp)
            widget = slicer.modules.imnrisk.widgetRepresentation().self()
            parameters = widget.logic.getParameterNode()
            parameters.inputVolume, parameters.segmentation = volume, segmentation
            parameters.segmentId, parameters.modelPath = segment_id, str(model_path)
            for name, box in widget._clinicalWidgets.items():  # fill the generated form
                if isinstance(box, qt.QComboBox):
                    box.currentIndex = box.count - 1
            widget.onPredict()
            result = widget.logic.predict(volume, segmentation, segment_id, widget.clinicalValues(), str(model_path))
            self.assertTrue(0.0 <= result["probability"] <= 1.0)
            self.assertTrue(np.isfinite(result["radscore"]))
            self.assertTrue(np.isfinite(result["points"]["total"]))
            self.assertIsNotNone(parameters.pointsTable)
            self.assertGreater(parameters.featuresTable.GetNumberOfRows(), 4)
            self.delayDisplay("Scoring test passed")

    def test_train_from_the_panel_logic(self):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            self._phantom(tmp, patients=30)
            model_path = self._small_model(tmp)
            doc = json.loads(model_path.read_text(encoding="utf-8"))
            self.assertEqual(doc["format"], "imnrisk-model")
            self.assertTrue((tmp / "model" / "report.html").exists())
            self.delayDisplay("Training test passed")
