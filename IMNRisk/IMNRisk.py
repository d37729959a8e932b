"""IMNRisk: internal mammary lymph node metastasis risk in 3D Slicer (research use only).

The widget only binds Qt to Qt-free code: IMNRiskSlicer.controller.ScoringController owns every
behaviour of the scoring tab (inputs, phase through the sequence browser's proxy node, segment size,
clinical form, Predict gating, stale results, results table, version checks) and
IMNRiskSlicer.runner.TrainingRun runs and cancels training; both are tested headless with slicer-core.
"""

import hashlib
import os
import sys
import tempfile
from pathlib import Path

import qt
import slicer
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

try:  # Slicer's translation functions (the 5.10+ template); slicer-core (headless tests) has none
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:
    def _(text):
        return text

    def translate(context, text):
        return text

from IMNRiskSlicer.selftest import add_library_to_path

# Installed as an extension, IMNRiskLib sits beside this file; run from the source tree
# (--additional-module-paths .../IMNRisk) it sits one folder up.
_HERE = Path(__file__).resolve().parent
_LIBRARY = add_library_to_path(_HERE)

from IMNRiskSlicer import dependencies  # noqa: E402
from IMNRiskSlicer.controller import ScoringController, instance_files, pyradiomics_status  # noqa: E402
from IMNRiskSlicer.logic import ScoringLogic, python_executable, training_commands  # noqa: E402
from IMNRiskSlicer.runner import TrainingRun  # noqa: E402

RESEARCH_ONLY = _("Research use only; not a medical device.")
DOCUMENTATION_URL = "https://github.com/imnrisk/SlicerIMNRisk#using-imnrisk-in-3d-slicer"
EDITOR_TAG = "IMNRiskSegmentEditor"
SCENE_DEBOUNCE_S = 0.25  # node added/removed events within this are one rescan (done by the poll timer)
SETTINGS_MODEL = "IMNRisk/ModelPath"
REQUIREMENTS_TXT = _HERE / "Resources" / "requirements.txt"
VERDICT_STYLES = {"not_reliable": "background: #f8d7da; font-weight: bold; padding: 2px",
                  "extrapolation": "background: #fff3cd; padding: 2px"}
NOT_ENTERED = "- not entered -"
POLL_MS = 250


class IMNRisk(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("IMNRisk")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = ["Sequences", "Segmentations"]
        self.parent.contributors = ["The IMNRisk developers"]
        self.parent.helpText = _(
            "Internal mammary lymph node metastasis risk from the second phase of a breast DCE-MRI "
            "(Rad-Score) and clinical factors, as a clinical-radiomics nomogram. Needs Slicer 5.10 or newer. "
            "Research use only; not a medical device. "
            'See the <a href="{url}">module documentation</a>.').format(url=DOCUMENTATION_URL)
        self.parent.acknowledgementText = _(
            "Method: Frontiers in Oncology 2025, doi 10.3389/fonc.2025.1477866. Features: pyradiomics.")
        slicer.app.connect("startupCompleted()", registerSampleData)


SAMPLE_FILES = ("IMNRiskDemoDCE.seq.nrrd", "IMNRiskDemoDCE-tumour.nrrd", "IMNRiskTestModel.json")


def sha256(path):
    """SampleData's checksum form, 'SHA256:<hex digest>', of a file."""
    return "SHA256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def registerSampleData():
    """The sample DCE case (a synthetic phantom patient) and the demo model, one click in SampleData,
    in their own category, each file checked against its SHA-256 when loaded (the 5.12 template)."""
    import SampleData
    data = _HERE / "Testing" / "Data"
    logic = SampleData.SampleDataLogic
    if hasattr(logic, "registerCustomSampleDataCategory"):  # Slicer >= 5.12; 5.10 makes the category itself
        logic.registerCustomSampleDataCategory("IMNRisk", title=_("IMNRisk"))
    logic.registerCustomSampleDataSource(
        category="IMNRisk", sampleName="IMNRiskDemoDCE",
        thumbnailFileName=str(_HERE / "Resources" / "Icons" / "IMNRisk.png"),
        uris=[(data / name).as_uri() for name in SAMPLE_FILES],
        fileNames=["IMNRiskDemoDCE.seq.nrrd", "IMNRiskDemoDCE-tumour.nrrd", "IMNRiskDemoModel.json"],
        checksums=[sha256(data / name) for name in SAMPLE_FILES],
        nodeNames=["IMNRiskDemoDCE", "IMNRiskDemoDCE tumour", None],
        loadFileTypes=["SequenceFile", "SegmentationFile", None], loadFiles=[True, True, False])


def slicerPackaging():
    """slicer.packaging (Slicer >= 5.11) imported explicitly (`import slicer` does not import it), or
    None on Slicer 5.10, which has only slicer.util.pip_install."""
    try:
        import slicer.packaging as packaging
    except ImportError:
        return None
    return packaging if hasattr(packaging, "pip_ensure") else None


def ensureExtras(purpose, ask=True):
    """Install the training/report extras (requirements.txt) on first use, after one prompt, with
    Slicer's own packages pinned by a constraints file; ask for a restart when a loaded module changed.
    The decisions are dependencies.install_extras' (Qt-free); this only supplies the dialogs and pip."""
    packaging = slicerPackaging()

    def runPip(requirements, constraints):
        if packaging is not None:
            packaging.pip_ensure(requirements, constraints=str(constraints), prompt_install=False,
                                 prompt_restart=False, requester="IMNRisk")
        else:
            with slicer.util.WaitCursor():
                slicer.util.pip_install(dependencies.pip_install_arguments(requirements, constraints))

    temporary = Path(getattr(slicer.app, "temporaryPath", "") or tempfile.gettempdir())
    outcome = dependencies.install_extras(
        dependencies.read_requirements(REQUIREMENTS_TXT), purpose,
        confirm=lambda text: slicer.util.confirmOkCancelDisplay(text, _("IMNRisk - Install Python packages")),
        run_pip=runPip, constraints_path=temporary / "IMNRisk-constraints.txt", ask=ask)
    if outcome.restart:
        if slicer.util.confirmYesNoDisplay(
                _("Packages already loaded in this session changed version: {changed}. Restart Slicer now?")
                .format(changed="; ".join(outcome.restart)), _("IMNRisk - Restart needed")):
            slicer.util.restart()
    elif not outcome.ok and outcome.message:
        slicer.util.errorDisplay(outcome.message)
    return outcome.ok


@parameterNodeWrapper
class IMNRiskParameterNode:
    """What is saved with the scene besides the controller's MRML nodes."""

    modelPath: str = ""
    cohortPath: str = ""
    schemaPath: str = ""
    outputFolder: str = ""
    cvRepeats: int = 100
    bootstrap: int = 1000


class IMNRiskWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.controller = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._formWidgets = {}
        self._formModel = None
        self._updating = False
        self._run = None
        self._timer = None
        self._quitting = False
        self._effectFactory = None
        self.segmentEditorWidget = None

    # ------------------------------------------------------------------ set-up
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/IMNRisk.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        self.segmentEditorWidget = self._createSegmentEditor()
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = IMNRiskLogic()
        self.ui.researchLabel.text = RESEARCH_ONLY
        self.controller = ScoringController(slicer.mrmlScene, sequences_logic=slicer.modules.sequences.logic(),
                                            show_volume=self._showVolume, logic=self.logic,
                                            dicom_sources=self._dicomSources, scene_debounce_s=SCENE_DEBOUNCE_S,
                                            require_patient_id=True)
        self.controller.add_listener(self.updateGUIFromState)
        self._showEnvironment()

        slicer.app.connect("aboutToQuit()", self.onAboutToQuit)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.inputComboBox.connect("currentIndexChanged(int)", self.onInputChosen)
        self.ui.phaseSpinBox.connect("valueChanged(int)", lambda k: self._act(self.controller.choose_phase, k))
        self.ui.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onSegmentationChosen)
        self.ui.segmentSelector.connect("currentSegmentChanged(QString)",
                                        lambda sid: self._act(self.controller.choose_segment, sid or None))
        self.ui.newSegmentationButton.connect("clicked(bool)", lambda: self._act(self.controller.new_segmentation))
        self.ui.loadSegmentationButton.connect("clicked(bool)", self.onLoadSegmentation)
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.onModelChosen)
        self.ui.featuresCsvPathLineEdit.connect("currentPathChanged(QString)", self.onFeaturesCsvChosen)
        self.ui.allowMismatchCheckBox.connect("toggled(bool)",
                                              lambda on: self._act(self.controller.allow_version_mismatch, on))
        self.ui.predictButton.connect("clicked(bool)", self.onPredict)
        self.ui.exportDicomButton.connect("clicked(bool)", self.onExportDicom)
        for edit in (self.ui.cohortPathLineEdit, self.ui.schemaPathLineEdit, self.ui.outputFolderLineEdit):
            edit.connect("currentPathChanged(QString)", self.onTrainingPathsChanged)
        self.ui.trainButton.connect("clicked(bool)", self.onTrain)
        self.ui.panelTabs.connect("currentChanged(int)", self.onTabChanged)
        self.ui.cancelTrainingButton.connect("clicked(bool)", self.onCancelTraining)
        self.ui.openReportButton.connect("clicked(bool)", self.onOpenReport)
        self.ui.useModelButton.connect("clicked(bool)", self.onUseTrainedModel)
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_MS)
        self._timer.connect("timeout()", self.onTimer)
        self._timer.start()
        self.initializeParameterNode()
        saved = qt.QSettings().value(SETTINGS_MODEL)
        if saved and not self._parameterNode.modelPath:
            self._parameterNode.modelPath = saved
        self.ui.modelPathLineEdit.currentPath = self._parameterNode.modelPath
        self.updateGUIFromState(self.controller.state())

    def _createSegmentEditor(self):
        """The Segment Editor, made here as Slicer's Segment Editor module makes its own (not in the .ui):
        its parameter node (IMNRisk's own singleton, so Slicer's module keeps its settings) before the
        scene, effects registered later added as they come; the controller chooses its nodes."""
        editor = slicer.qMRMLSegmentEditorWidget()
        editor.setMaximumNumberOfUndoStates(10)
        editor.segmentationNodeSelectorVisible = False
        editor.sourceVolumeNodeSelectorVisible = False
        editor.setMRMLSegmentEditorNode(self._editorNode())
        editor.setMRMLScene(slicer.mrmlScene)
        self.ui.segmentEditorPlaceholder.layout().addWidget(editor)
        self._effectFactory = slicer.qSlicerSegmentEditorEffectFactory.instance()
        self._effectFactory.connect("effectRegistered(QString)", self.onEffectRegistered)
        return editor

    def onEffectRegistered(self):
        self.segmentEditorWidget.updateEffectList()

    def _applicationExiting(self):
        """Whether the application has begun to exit: aboutToQuit was seen, or Qt's event loop has
        ended (Slicer unloads modules, which calls cleanup(), from aboutToQuit after the loop)."""
        if self._quitting:
            return True
        try:
            return qt.QThread.currentThread().loopLevel() == 0
        except (AttributeError, TypeError):  # not wrapped: rely on aboutToQuit
            return False

    def onAboutToQuit(self):
        self._quitting = True

    def _editorNode(self):
        node = slicer.mrmlScene.GetSingletonNode(EDITOR_TAG, "vtkMRMLSegmentEditorNode")
        if node is None:
            node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
            node.UnRegister(None)
            node.SetSingletonTag(EDITOR_TAG)
            node = slicer.mrmlScene.AddNode(node)
        return node

    def _showVolume(self, node):
        """Show the scored node in the slice views, only while the module is open (a volume loaded
        elsewhere must not take over the views)."""
        if node is not None and self.parent.isEntered:
            slicer.util.setSliceViewerLayers(background=node, fit=True)

    def _showEnvironment(self):
        import numpy
        status = pyradiomics_status()
        problems = dependencies.environment_problems(
            slicer.app.applicationVersion, sys.version.split()[0], numpy.__version__, status["version"],
            None if status["ok"] else status["message"].split(";")[0])
        self.ui.environmentLabel.text = "\n".join(problems)
        self.ui.environmentLabel.visible = bool(problems)

    def cleanup(self):
        """Module unload (application exit) or reload: stop observing and polling, end a training run;
        the editor is released only while the application is not exiting (on exit, exit() has already
        released it when the main window closed, and its widgets are being torn down)."""
        self.removeObservers()
        if self._timer is not None:
            self._timer.stop()
        self.onCancelTraining()
        if self._effectFactory is not None:
            self._effectFactory.disconnect("effectRegistered(QString)", self.onEffectRegistered)
        if self.controller is not None:
            self.controller.release_editors(app_exiting=self._applicationExiting())
            self.controller.close()
        slicer.app.disconnect("aboutToQuit()", self.onAboutToQuit)  # a reloaded widget leaves no slot behind

    def enter(self):
        self.initializeParameterNode()
        self.controller.editor_enter(self.segmentEditorWidget)
        self.controller.refresh_inputs()
        self._showVolume(self.controller.displayed_node())

    def exit(self):
        self.controller.editor_exit(self.segmentEditorWidget)
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)
        self.segmentEditorWidget.setSegmentationNode(None)
        self.segmentEditorWidget.removeViewObservations()

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()
        self.controller.refresh_inputs()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, parameterNode):
        if self._parameterNode and self._parameterNodeGuiTag:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            p = self._parameterNode
            for edit, value in ((self.ui.cohortPathLineEdit, p.cohortPath), (self.ui.schemaPathLineEdit, p.schemaPath),
                                (self.ui.outputFolderLineEdit, p.outputFolder)):
                edit.currentPath = value

    # ------------------------------------------------------------------ scoring: Qt -> controller
    def _act(self, method, *args):
        """Forward a user action to the controller, unless the GUI is being redrawn from its state."""
        if not self._updating:
            method(*args)

    def onInputChosen(self, index):
        self._act(self.controller.choose_input, self.ui.inputComboBox.itemData(index))

    def onSegmentationChosen(self, node):
        self._act(self.controller.choose_segmentation, node.GetID() if node else None)

    def onLoadSegmentation(self):
        """Ask for a tumour file; the controller reads it (the library's mask loader, as `predict --mask`)."""
        path = qt.QFileDialog.getOpenFileName(
            None, _("Tumour file"), "",
            _("Tumour masks (*.nrrd *.nhdr *.nii *.nii.gz *.mha *.dcm);;DICOM SEG or RTSTRUCT (*);;All files (*)"))
        if path:
            with slicer.util.WaitCursor():
                self.controller.load_segmentation(path, label=self.ui.tumourLabelLineEdit.text)

    def onModelChosen(self, path):
        if self._updating:
            return
        if self._parameterNode is not None:
            self._parameterNode.modelPath = path
        if path:
            qt.QSettings().setValue(SETTINGS_MODEL, path)
        with slicer.util.WaitCursor():
            self.controller.load_model(path or None)

    def onFeaturesCsvChosen(self, path):
        if not self._updating and (not path or ensureExtras(_("Scoring from a features CSV"))):
            self.controller.load_features_csv(path or None)

    def onFormChanged(self, name, widget):
        if self._updating:
            return
        if isinstance(widget, qt.QComboBox):
            value = None if widget.currentIndex <= 0 else widget.currentText
        else:
            value = widget.text.strip() or None
        self.controller.set_clinical(name, value)

    def onPatientIdChanged(self, widget):
        if not self._updating:
            self.controller.set_patient_id(widget.text.strip() or None)

    def onPredict(self):
        """Score with what Slicer and the extension ship; the nomogram figure only when matplotlib
        (a training/report extra) is there: scoring never installs anything."""
        with slicer.util.WaitCursor():
            result = self.controller.predict()
            if result is not None and dependencies.importable("matplotlib"):
                path = os.path.join(tempfile.gettempdir(), f"imnrisk-nomogram-{os.getpid()}.png")
                if self.controller.nomogram_png(path, width_px=max(300, min(420, self.ui.nomogramLabel.width or 420))):
                    self.ui.nomogramLabel.setPixmap(qt.QPixmap(path))
            elif result is not None:
                self.ui.nomogramLabel.text = _("The nomogram figure needs matplotlib, installed with the training "
                                               "packages (tab Train a model); the points are listed above.")

    def onExportDicom(self):
        """Ask for a folder (and before replacing files in it), then let the controller write SEG + SR."""
        folder = qt.QFileDialog.getExistingDirectory(None, _("Folder for the DICOM SEG and SR"))
        if not folder:
            return
        existing = self.controller.export_would_overwrite(folder)
        if existing and not slicer.util.confirmOkCancelDisplay(_("Replace {files}?").format(files=", ".join(existing))):
            return
        with slicer.util.WaitCursor():
            self.controller.export_dicom(folder, force=bool(existing))

    @staticmethod
    def _dicomSources(node):
        """The chosen phase's slices: the node's DICOM.instanceUIDs through Slicer's DICOM database."""
        database = getattr(slicer, "dicomDatabase", None)
        if database is None or not database.isOpen:
            return []
        return instance_files(node, database.fileForInstance)

    def onTimer(self):
        self.controller.poll()
        if self._run is not None:
            self._pollTraining()

    # ------------------------------------------------------------------ scoring: state -> Qt
    def updateGUIFromState(self, state):
        """Redraw the scoring tab from the controller's state (the widget decides nothing)."""
        self._updating = True
        try:
            self._showInputs(state)
            self._showTumour(state)
            self._showModel(state)
            self._showForm(state)
            self._showResult(state)
        finally:
            self._updating = False

    def _showInputs(self, state):
        box = self.ui.inputComboBox
        wanted = [(i["name"] + (f" ({i['phases']} phases)" if i["phases"] > 1 and i["kind"] != "phases" else ""), i["id"])
                  for i in state["inputs"]]
        if [(box.itemText(k), box.itemData(k)) for k in range(box.count)] != wanted:
            box.clear()
            for text, input_id in wanted:
                box.addItem(text, input_id)
        box.currentIndex = next((k for k, (_, i) in enumerate(wanted) if i == state["input"]), -1)
        self.ui.phaseSpinBox.maximum = max(0, state["phase_count"] - 1)
        self.ui.phaseSpinBox.value = state["phase"]
        self.ui.phaseSpinBox.enabled = state["phase_count"] > 1
        self.ui.phaseInfoLabel.text = (_("Showing, contouring and scoring phase {phase} of {count}").format(
            phase=state["phase"], count=state["phase_count"]) if state["phase_count"] > 1 else "")

    def _showTumour(self, state):
        node = slicer.mrmlScene.GetNodeByID(state["segmentation_id"]) if state["segmentation_id"] else None
        self.ui.segmentationSelector.setCurrentNode(node)
        self.ui.segmentSelector.setCurrentNode(node)
        if state["segment_id"] and self.ui.segmentSelector.currentSegmentID() != state["segment_id"]:
            self.ui.segmentSelector.setCurrentSegmentID(state["segment_id"])
        size = state["segment"]
        self.ui.segmentSizeLabel.text = (_("{voxels} voxels, {ml} mL").format(voxels=size["voxels"], ml=f"{size['ml']:.2f}")
                                         if state["segment_id"] else "-")
        self.ui.segmentWarningLabel.text = size["warning"]
        self.ui.tumourFileNoteLabel.text = "; ".join((state["tumour_file"] or {}).get("warnings") or [])

    def _showModel(self, state):
        model = state["model"]
        self.ui.syntheticBannerLabel.text = model["banner"] if model else ""
        self.ui.syntheticBannerLabel.visible = bool(model and model["banner"])
        summary = (model["summary"] or model["error"]) if model else _("No model file selected.")
        if state["pyradiomics"]["ok"]:
            summary += "\n" + state["pyradiomics"]["message"]  # which pyradiomics scores (and trains)
        self.ui.modelSummaryLabel.text = summary
        problems = model["version_problems"] if model else []
        self.ui.versionLabel.text = (_("Trained with other software: ") + "; ".join(problems)) if problems else ""
        self.ui.allowMismatchCheckBox.visible = bool(problems)
        self.ui.allowMismatchCheckBox.checked = bool(model and model["version_mismatch_allowed"])
        if not state["pyradiomics"]["ok"]:
            self.ui.environmentLabel.text = state["pyradiomics"]["message"]
            self.ui.environmentLabel.visible = True

    def _showForm(self, state):
        sha = state["model"]["sha256"] if state["model"] else None
        if sha != self._formModel:
            self._buildForm(state["form"])
            self._formModel = sha
        patient = getattr(self, "_patientIdEdit", None)
        if patient is not None and patient.text != (state["patient_id"] or ""):
            patient.text = state["patient_id"] or ""
        for field in state["form"]:
            widget = self._formWidgets.get(field["name"])
            if widget is None:
                continue
            if isinstance(widget, qt.QComboBox):
                widget.currentIndex = 0 if field["value"] is None else max(0, widget.findText(str(field["value"])))
            elif widget.text != ("" if field["value"] is None else str(field["value"])):
                widget.text = "" if field["value"] is None else str(field["value"])
            widget.toolTip = field["message"] or field["status"]
            widget.styleSheet = "" if field["status"] == "valid" else "background: #fff3cd"

    def _buildForm(self, fields):
        form = self.ui.clinicalFormWidget.layout()
        while form.count():
            item = form.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self._formWidgets = {}
        patient = qt.QLineEdit()
        patient.placeholderText = _("required before Predict")
        patient.connect("editingFinished()", lambda w=patient: self.onPatientIdChanged(w))
        form.addRow(_("Patient ID:"), patient)
        self._patientIdEdit = patient
        for field in fields:
            if field["levels"]:
                widget = qt.QComboBox()
                widget.addItems([NOT_ENTERED] + [str(level) for level in field["levels"]])
                widget.connect("currentIndexChanged(int)", lambda _, n=field["name"], w=widget: self.onFormChanged(n, w))
            else:
                widget = qt.QLineEdit()
                bounds = [f"{v:g}" for v in (field["min"], field["max"]) if v is not None]
                widget.placeholderText = (f"{'-'.join(bounds)} " if bounds else "") + (field["unit"] or "")
                widget.connect("editingFinished()", lambda n=field["name"], w=widget: self.onFormChanged(n, w))
            form.addRow(field["title"] + ":", widget)
            self._formWidgets[field["name"]] = widget

    def _showResult(self, state):
        gate = state["predict"]
        self.ui.predictButton.enabled = gate["enabled"]
        self.ui.predictButton.toolTip = gate["reason"]
        self.ui.predictReasonLabel.text = "" if gate["enabled"] else gate["reason"]
        result = state["result"]
        self.ui.staleLabel.text = (_("An input changed since this result: press Predict again.")
                                   if result and result["stale"] else "")
        self.ui.staleLabel.visible = bool(result and result["stale"])
        if result is None:
            for label in (self.ui.radscoreLabel, self.ui.riskLabel, self.ui.riskGroupLabel, self.ui.pointsLabel):
                label.text = "-"
            self.ui.warningsLabel.text = ""
            self.ui.verdictLabel.text = ""
            self.ui.nomogramLabel.clear()
        else:
            shown = result["display"]  # the scoring core's words: the verdict leads, above the numbers
            self.ui.verdictLabel.text = shown["headline"]
            self.ui.verdictLabel.styleSheet = VERDICT_STYLES.get(shown["state"], "")
            self.ui.radscoreLabel.text = shown["radscore"]
            self.ui.riskLabel.text = shown["risk"]
            self.ui.riskGroupLabel.text = shown["group"]
            self.ui.pointsLabel.text = shown["points"]
            self.ui.warningsLabel.text = "\n".join(([shown["banner"]] if shown["banner"] else []) + result["warnings"])
        export = state["export"]
        self.ui.exportDicomButton.enabled = export["enabled"]
        self.ui.exportDicomButton.toolTip = export["reason"]
        written = export["written"]
        self.ui.exportDicomLabel.text = (_("Written: {seg} and {sr}").format(seg=written["seg"], sr=written["sr"]) if written
                                         else "" if export["enabled"] or result is None else export["reason"])
        self.ui.errorLabel.text = state["error"] or ""
        table = slicer.mrmlScene.GetNodeByID(state["results_table_id"])
        if self.ui.resultsTableView.mrmlTableNode() is not table:
            self.ui.resultsTableView.setMRMLTableNode(table)

    # ------------------------------------------------------------------ training tab (TrainingRun, polled)
    def onTrainingPathsChanged(self, *args):
        p = self._parameterNode
        if p is None:
            return
        p.cohortPath = self.ui.cohortPathLineEdit.currentPath
        p.schemaPath = self.ui.schemaPathLineEdit.currentPath
        p.outputFolder = self.ui.outputFolderLineEdit.currentPath

    def onTabChanged(self, index):
        """Opening the training tab says what Train will install (nothing is installed yet)."""
        if index == 1:
            self.ui.extrasStatusLabel.text = dependencies.extras_status(dependencies.read_requirements(REQUIREMENTS_TXT))

    def onTrain(self):
        if not ensureExtras(_("Training")):
            return
        self.ui.extrasStatusLabel.text = ""
        p = self._parameterNode
        if not (p.cohortPath and p.outputFolder):
            slicer.util.errorDisplay(_("Choose the cohort CSV and an output folder."))
            return
        self.startTraining(training_commands(p.cohortPath, p.outputFolder, schema=p.schemaPath or None,
                                             cv_repeats=p.cvRepeats, bootstrap=p.bootstrap, force=True))

    def startTraining(self, commands):
        self.ui.trainingLog.clear()
        self.ui.trainingResultLabel.text = ""
        self.ui.trainingProgressBar.value = 0
        self.ui.trainButton.enabled = False
        self.ui.cancelTrainingButton.enabled = True
        self._run = TrainingRun(commands)
        self._run.start()

    def _pollTraining(self):
        status = self._run.poll()
        for line in status["lines"]:
            self.ui.trainingLog.appendPlainText(line)
        if status["progress"] is not None:
            self.ui.trainingProgressBar.value = status["progress"]
            self.ui.trainingProgressBar.format = f"step {status['step']}/{status['steps']} {status['stage']} %p%"
        if not status["running"]:
            self._trainingFinished(status)

    def onCancelTraining(self):
        if self._run is not None and self._run.running:
            self._run.cancel()
            self._pollTraining()

    def _trainingFinished(self, status):
        import json
        self._run = None
        self.ui.trainButton.enabled = True
        self.ui.cancelTrainingButton.enabled = False
        out = Path(self._parameterNode.outputFolder) if self._parameterNode else None
        if status["cancelled"]:
            self.ui.trainingResultLabel.text = _("Cancelled: every training process stopped; nothing half-written was left.")
        elif status["returncode"] != 0:
            self.ui.trainingResultLabel.text = _("Training failed: {error}").format(error=status["error"])
        elif out is not None and (out / "metrics.json").exists():
            metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
            aucs = ", ".join(f"{m} {metrics['models'][m]['apparent']['auc']:.3f}"
                             for m in ("clinical", "radiomics", "combined"))
            self.ui.trainingResultLabel.text = _("Done. Apparent AUC: {aucs}").format(aucs=aucs)
            self.ui.openReportButton.enabled = (out / "report.html").exists()
            self.ui.useModelButton.enabled = (out / "model.json").exists()

    def onOpenReport(self):
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(Path(self._parameterNode.outputFolder) / "report.html")))

    def onUseTrainedModel(self):
        self.ui.panelTabs.currentIndex = 0
        self.ui.modelPathLineEdit.currentPath = str(Path(self._parameterNode.outputFolder) / "model.json")


class IMNRiskLogic(ScriptedLoadableModuleLogic, ScoringLogic):
    """IMNRiskLogic().predict(volumeNode, segmentationNode, segmentId, clinical, model) from Python."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        ScoringLogic.__init__(self)

    def getParameterNode(self):
        return IMNRiskParameterNode(super().getParameterNode())


class IMNRiskTest(ScriptedLoadableModuleTest):
    """Runs in real Slicer (ctest / slicer.testing.runUnitTest): the scoring tab driven through its
    widgets on the sample case with the frozen test model, and Cancel of a training run."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_score_the_sample_case_through_the_gui()
        self.setUp()
        self.test_cancel_stops_a_training_run()

    def _widget(self):
        slicer.util.selectModule("IMNRisk")
        return slicer.modules.imnrisk.widgetRepresentation().self()

    def test_score_the_sample_case_through_the_gui(self):
        import SimpleITK as sitk
        from IMNRiskSlicer import selftest
        sequence = slicer.util.loadNodeFromFile(str(selftest.DEMO_CASE), "SequenceFile")
        widget = self._widget()
        ui = widget.ui
        slicer.app.processEvents()
        index = ui.inputComboBox.findData(sequence.GetID())
        self.assertGreaterEqual(index, 0, "the sample DCE sequence is offered")
        ui.inputComboBox.currentIndex = index
        self.assertEqual(ui.phaseSpinBox.value, 1, "a DCE series opens at its second phase")
        ui.modelPathLineEdit.currentPath = str(selftest.TEST_MODEL)
        ui.newSegmentationButton.click()
        state = widget.controller.state()
        proxy = slicer.mrmlScene.GetNodeByID(state["displayed_node_id"])
        self.assertEqual(widget.segmentEditorWidget.sourceVolumeNodeID(), proxy.GetID())
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(selftest.DEMO_MASK))) > 0
        segmentation = slicer.mrmlScene.GetNodeByID(state["segmentation_id"])
        selftest.paint_mask(segmentation, state["segment_id"], mask, proxy)  # what the Paint strokes leave
        slicer.util.delayDisplay("painted", 2 * POLL_MS)
        self.assertIn(f"{int(mask.sum())} voxels", ui.segmentSizeLabel.text)
        self.assertFalse(ui.predictButton.enabled, "Predict waits for the clinical form")
        for name, value in selftest.demo_clinical(widget.controller.model).items():
            box = widget._formWidgets[name]
            box.currentIndex = box.findText(value)
        self.assertTrue(ui.predictButton.enabled, ui.predictButton.toolTip)
        ui.predictButton.click()
        table = ui.resultsTableView.mrmlTableNode()
        self.assertEqual(table.GetNumberOfRows(), 1)
        self.assertNotEqual(ui.radscoreLabel.text, "-")
        if dependencies.importable("matplotlib"):   # the figure is a report extra; scoring needs none
            self.assertFalse(ui.nomogramLabel.pixmap.isNull())
        else:
            self.assertIn("matplotlib", ui.nomogramLabel.text)
        headless = selftest.score_demo_case(ScoringController(slicer.mrmlScene,
                                                              sequences_logic=slicer.modules.sequences.logic()))
        self.assertAlmostEqual(float(table.GetCellText(0, 6)), headless["result"]["radscore"], places=5)
        self.delayDisplay("Scoring test passed")

    def test_cancel_stops_a_training_run(self):
        widget = self._widget()
        widget.startTraining([[python_executable(), "-c", "import time; print('working', flush=True); time.sleep(120)"]])
        slicer.util.delayDisplay("training", 1000)
        widget.ui.cancelTrainingButton.click()
        self.assertIn("Cancelled", widget.ui.trainingResultLabel.text)
        self.assertTrue(widget.ui.trainButton.enabled)
        self.delayDisplay("Training cancel test passed")
