"""The scoring workflow without Qt: one controller that every face (the Slicer widget, the trame web
app) binds to, and that `make test` drives headless with slicer-core exactly as a face would.

`ScoringController` is a thin facade over one small part per role, as trame-slicer's SlicerApp owns
its managers: `inputs` (inputs.py: the inputs offered, the chosen one and its phase), `tumour`
(tumour.py: segmentation, segment, live size, tumour files via maskfile.py), `editors` (editors.py:
Segment Editor duties), `clinical` (form.py: model, clinical form, patient, features CSV), `scoring`
(results.py: Predict, result, results table, nomogram) and `dicom_export` (export.py: SEG + SR). The
facade keeps the one public API below, tells the listeners, and assembles state().

A face constructs it with the MRML scene, calls its methods when the user acts, and redraws from
`state()` whenever a listener is told of a change. The face decides nothing.

    c = ScoringController(scene, sequences_logic=None, show_volume=None, logic=None,
                          size_interval_s=0.25, clock=time.monotonic, pyradiomics_status=pyradiomics_status,
                          scene_debounce_s=0.0, require_patient_id=False)
        scene            a vtkMRMLScene (slicer.mrmlScene in Slicer)
        sequences_logic  Slicer's Sequences module logic (slicer.modules.sequences.logic()); when None a
                         vtkSlicerSequencesLogic is made and registered with the scene (headless, trame)
        show_volume      callable(volume_node): show this node in the slice views (the face's hook)
        size_interval_s, clock   the live segment size is recounted at most once per interval
        scene_debounce_s  0: rescan the scene on every node added/removed; > 0 (the Slicer widget): a
                         burst of node events becomes one rescan and one redraw (see refresh_inputs)
        pyradiomics_status       callable() -> {ok, version, message}: whether images can be scored
        require_patient_id  True (both faces): Predict stays disabled until a patient identifier is set
        dicom_sources    callable(node) -> the chosen phase's DICOM slices (file paths or pydicom datasets),
                         [] when the node is not from DICOM; `node` is the volume as loaded (a sequence's
                         data node at the chosen phase, not the proxy). In Slicer: instance_files(node,
                         slicer.dicomDatabase.fileForInstance). None: the face offers no DICOM export.
    remove = c.add_listener(callback)   callback(state_dict) after every change; remove() stops it
    c.state()                           JSON-able dict of all a face shows (keys below)
    c.refresh_inputs()                  rescan the scene (done by itself on node added/removed: at once, or
                                        with scene_debounce_s > 0 one rescan per burst, done by poll(),
                                        and one at the end of a scene batch/import)
    c.choose_input(input_id)            a sequence / vector volume node ID, "phases:<name>" or a volume ID;
                                        multi-phase inputs show their second phase (index 1)
    c.choose_phase(k)                   0-based; shown through the sequence browser's proxy node
    c.choose_segmentation(node_id)      (None: none) ; c.new_segmentation() makes one with a "tumour" segment
    c.choose_segment(segment_id)
    c.load_segmentation(path, label=1)  a tumour file (labelmap, .seg.nrrd, DICOM SEG, RTSTRUCT; label: the
                                        label value, segment number/label or ROI name) read by the library's
                                        imaging.load_mask onto the shown phase, as a new editable segmentation
                                        chosen as the tumour (returns its ID; None: reason in state()["error"])
    c.poll()                            flush a throttled segment-size update (call from a ~250 ms timer)
    c.load_model(path)                  builds the clinical form (every field "not entered")
    c.set_clinical(name, value)         a level or a number; None or "" unsets
    c.set_patient_id(text)              the patient identifier written into the results row (None or "" unsets)
    c.new_patient()                     forget the patient: identifier, clinical values, result and error
    c.allow_version_mismatch(flag)      score a model extracted with another pyradiomics/IMNRisk anyway
    c.set_image_is_phase(k)             a single-phase volume is phase k of its DCE series (None: not said)
    c.load_features_csv(path) / c.clear_features_csv()   score from one row of feature values
    c.predict()                         the result dict (or None: the reason is in state()["error"])
    c.clear()                           forget the result (the results table keeps its rows)
    c.nomogram_png(path, width_px=420)  the nomogram with this patient marked; the figure is closed
    c.export_gate()                     {enabled, reason}, as in state()["export"]: a fresh image result from DICOM
    c.export_would_overwrite(out_dir)   the SEG/SR files already in out_dir (ask before force=True)
    c.export_dicom(out_dir, force=False)  the tumour as DICOM SEG + the result as TID 1500 SR on the chosen
                                        phase's slices ({seg, sr} paths, or None: reason in state()["error"])
    c.set_dicom_sources(callable)       the face's DICOM lookup (see dicom_sources above)
    c.attach_editor(editor) / c.editor_enter(editor) / c.editor_exit(editor)
                                        Segment Editor duties (qMRMLSegmentEditorWidget or a look-alike);
                                        one editor holds the views at a time (entering one releases another)
    c.release_editors(app_exiting)      the face's teardown: exit each editor, or forget them uncalled
                                        once the application is exiting
    c.displayed_node()                  the one volume node shown, edited and scored (a proxy for a series)
    c.predict_gate()                    {enabled, reason}, as in state()["predict"]
    c.results_table                     the vtkMRMLTableNode that gets one row per prediction
    c.close()                           remove every observer

state() keys: inputs [{id, name, kind: sequence|vector|phases|volume, phases}], input (id or None),
phase, phase_count, displayed_node_id, segmentations [{id, name}], segmentation_id,
segments [{id, name}], segment_id, tumour_file {segmentation_id, warnings} or None (what loading a tumour
file said, e.g. that a DICOM mask's reference could not be checked), segment {voxels, ml, warning, note, pending} (note: a plausibility hint that
does not block Predict, e.g. a segment covering more of the image than any tumour), patient_id (or None), model {path, summary,
synthetic, banner, sha256, error, version_problems, version_mismatch_allowed} or None,
form [{name, title, type, levels, min, max, unit, value, status: "not entered"|"valid"|"invalid",
message}], image_is_phase, features_csv {path, id} or None, pyradiomics {ok, version, message}, predict {enabled, reason},
export {enabled, reason, written: {seg, sr} or None},
result (the scoring core's Prediction: verdict {state, reasons, headline}, radscore, probability, ci95,
ci_method, risk_group (None when not reliable), risk_group_computed, risk_thresholds, points, features,
domain {checked, outside [{kind, name, value, p01, p99, far, message}], warnings, note}, image {checked,
findings, note}, warnings, ignored_clinical, synthetic, banner; plus phase, segment, input, stale, source,
time, clinical) or None, error, results [row dicts of the table: time, model_sha256, input, phase, segment,
inputs, radscore, risk, ci95_low, ci95_high, risk_group, verdict, points, patient_id], results_table_id, notice.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

from IMNRiskLib import RESEARCH_ONLY
from IMNRiskLib.core.jsonio import json_clean
from IMNRiskLib.core.errors import InputError

from .editors import Editors
from .export import DicomExport, instance_files  # noqa: F401  (part of this module's API: the widget imports it)
from .form import ClinicalForm
from .inputs import Inputs
from .logic import ScoringLogic
from .observers import nodes_of_class
from .results import RESULT_COLUMNS, RESULTS_TABLE_NAME, Results  # noqa: F401  (names kept importable here)
from .tumour import Tumour, segment_voxels  # noqa: F401  (part of this module's API: tests import it)


def pyradiomics_status() -> Dict[str, Any]:
    """Whether pyradiomics imports here, its version, and one line with the fix when it does not."""
    try:
        import radiomics
        from radiomics import featureextractor  # noqa: F401  (its C extensions load here)
    except Exception as exc:  # missing, or built for another numpy/Python
        return {"ok": False, "version": None,
                "message": f"pyradiomics cannot be used ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}); "
                           "fix: reinstall the IMNRisk extension (it brings its own pyradiomics) and restart Slicer. "
                           "Meanwhile you can score from a features CSV."}
    where = Path(radiomics.__file__).resolve().parents[1]
    return {"ok": True, "version": str(radiomics.__version__),
            "message": f"features by pyradiomics {radiomics.__version__} from {where}"}


class ScoringController:
    """Everything the scoring panel does, on MRML nodes and plain values (see the module docstring):
    a facade that forwards each action to the part owning it and tells the faces once."""

    def __init__(self, scene, sequences_logic=None, show_volume: Optional[Callable[[Any], None]] = None,
                 logic: Optional[ScoringLogic] = None, size_interval_s: float = 0.25,
                 clock: Callable[[], float] = time.monotonic,
                 pyradiomics_status: Callable[[], Dict[str, Any]] = pyradiomics_status,
                 dicom_sources: Optional[Callable[[Any], List[Any]]] = None, scene_debounce_s: float = 0.0,
                 require_patient_id: bool = False):
        self._quiet = 0
        self._listeners: List[Callable[[Dict[str, Any]], None]] = []
        self.error: Optional[str] = None
        self.scene = scene
        self.logic = logic or ScoringLogic(scene)
        self.sequences_logic = sequences_logic or _own_sequences_logic(scene)
        self._segmentations_logic = _converter_rules(scene)
        self.show_volume = show_volume
        self.size_interval_s = size_interval_s
        self.clock = clock
        self.scene_debounce_s = scene_debounce_s
        self.require_patient_id = require_patient_id
        self.clinical = ClinicalForm(self, pyradiomics_status)
        self.dicom_export = DicomExport(self, dicom_sources)
        self.editors = Editors(self)
        self.tumour = Tumour(self)
        self.scoring = Results(self)
        self.inputs = Inputs(self)
        self.refresh_inputs(notify=False)

    # ------------------------------------------------------------------ what the parts share
    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Within it, scene events and changes tell no face (the controller itself is adding nodes)."""
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1

    def is_quiet(self) -> bool:
        return bool(self._quiet)

    def changed(self) -> None:
        """Keep views and editors on the chosen nodes and tell every listener the new state."""
        if self._quiet:
            return
        self.editors.sync()
        state = self.state()
        for callback in list(self._listeners):
            callback(state)

    def refuse(self, reason: str) -> None:
        """Say why an action was not done (state()["error"]) and tell the faces; returns None."""
        self.error = reason
        self.changed()

    def min_voxels(self) -> int:
        return self.clinical.min_voxels()

    def image_files(self) -> List[Any]:
        """The shown phase's DICOM slices from the face's lookup ([] when not from DICOM)."""
        return self.dicom_export.image_files()

    # ------------------------------------------------------------------ attributes the faces read
    rescans = property(lambda self: self.inputs.rescans, doc="scene rescans that told the faces")
    input_id = property(lambda self: self.inputs.input_id)
    segmentation_id = property(lambda self: self.tumour.segmentation_id)
    segment_id = property(lambda self: self.tumour.segment_id)
    patient_id = property(lambda self: self.clinical.patient_id)
    model = property(lambda self: self.clinical.model)
    model_path = property(lambda self: self.clinical.model_path)
    result = property(lambda self: self.scoring.result)
    dicom_sources = property(lambda self: self.dicom_export.dicom_sources)
    _editors = property(lambda self: self.editors.attached)

    # ------------------------------------------------------------------ listeners and scene
    def add_listener(self, callback: Callable[[Dict[str, Any]], None]) -> Callable[[], None]:
        """Call `callback(state)` after every change; returns a function that stops it."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def close(self) -> None:
        """Remove every observer this controller added (the face is going away)."""
        self.inputs.close()
        self.tumour.close()
        self._listeners = []

    def refresh_inputs(self, notify: bool = True) -> None:
        """Rescan the scene for inputs (see Inputs.refresh)."""
        self.inputs.refresh(notify)

    def poll(self) -> None:
        """Called by the face's timer: a settled burst of scene events, volumes whose image data arrived
        late, and the pending size update once its interval has passed."""
        changed = self.inputs.poll()
        changed = self.tumour.poll() or changed
        if changed:
            self.changed()

    # ------------------------------------------------------------------ input and phase
    def choose_input(self, input_id: Optional[str], notify: bool = True) -> None:
        """Show (and later score) this input; a multi-phase one at its second phase."""
        self.inputs.choose(input_id, notify)

    def displayed_node(self):
        """The one volume node shown in the views, given to the Segment Editor, and scored."""
        return self.inputs.displayed_node()

    def source_node(self):
        """The chosen phase's volume as it was loaded (where DICOM.instanceUIDs are)."""
        return self.inputs.source_node()

    def phase(self) -> int:
        return self.inputs.phase()

    def phase_count(self) -> int:
        return self.inputs.phase_count()

    def choose_phase(self, phase: int) -> None:
        """Show and score phase `phase` (0-based) of the chosen series."""
        self.inputs.choose_phase(phase)

    # ------------------------------------------------------------------ tumour
    def choose_segmentation(self, node_id: Optional[str]) -> None:
        """Contour in (and score) this segmentation node."""
        self.tumour.choose_segmentation(node_id)

    def new_segmentation(self, segment_name: str = "tumour") -> str:
        """A new segmentation on the shown image's grid with one empty segment; returns its ID."""
        return self.tumour.new_segmentation(segment_name)

    def choose_segment(self, segment_id: Optional[str]) -> None:
        self.tumour.choose_segment(segment_id)

    def load_segmentation(self, path: str, label: Union[int, str] = 1) -> Optional[str]:
        """A tumour file (labelmap, .seg.nrrd, DICOM SEG, RTSTRUCT) read by the library's mask loader
        onto the shown phase, as a new editable segmentation chosen as the tumour (see maskfile.py)."""
        return self.tumour.load_segmentation(path, label)

    # ------------------------------------------------------------------ Segment Editor duties
    def attach_editor(self, editor) -> None:
        """Keep this editor on the shown node and the chosen segmentation."""
        self.editors.attach(editor)

    def editor_enter(self, editor) -> None:
        """The editor takes the views and shortcuts; any other one is released first."""
        self.editors.enter(editor)

    def editor_exit(self, editor) -> None:
        """The editor gives the views and shortcuts back (only an attached one is called)."""
        self.editors.exit(editor)

    def release_editors(self, app_exiting: bool) -> List[Any]:
        """The face's teardown; returns the editors forgotten uncalled (the application is exiting)."""
        return self.editors.release(app_exiting)

    # ------------------------------------------------------------------ model and clinical form
    def load_model(self, path: Optional[str]) -> None:
        """Use this model file: its summary, version check and a fresh clinical form."""
        self.scoring.result = None
        self.clinical.load_model(path)
        if self.clinical.features_csv is not None and self.clinical.model is not None:
            self.load_features_csv(self.clinical.features_csv["path"], notify=False)
        self.tumour.segment_changed(force=True)
        self.changed()

    def set_image_is_phase(self, phase: Optional[int]) -> None:
        """Say which phase (0-based) of its DCE series a single-phase volume is (None: not said); the
        scoring core compares it with the phase the model was trained on."""
        self.clinical.set_image_is_phase(phase)
        self.scoring.mark_stale()
        self.changed()

    def allow_version_mismatch(self, allow: bool) -> None:
        self.clinical.allow_mismatch = bool(allow)
        self.changed()

    def set_clinical(self, name: str, value: Any) -> None:
        """Set (or unset with None / "") one clinical factor of the model's form."""
        self.clinical.set_clinical(name, value)
        self.scoring.mark_stale()
        self.changed()

    def set_patient_id(self, text: Optional[str]) -> None:
        """Set (or unset with None / "") the patient identifier; it goes into the results row only
        (no log line names it), and a change makes the shown result stale."""
        self.clinical.set_patient_id(text)
        self.scoring.mark_stale()
        self.changed()

    def new_patient(self) -> None:
        """Forget the patient (a new study is loaded): identifier, clinical values, result, error."""
        self.clinical.forget_patient()
        self.scoring.result = None
        self.error = None
        self.dicom_export.written = None
        self.changed()

    def form(self) -> List[Dict[str, Any]]:
        """One field per clinical factor the model needs, with its status from the scoring core."""
        return self.clinical.fields()

    def load_features_csv(self, path: Optional[str], notify: bool = True) -> None:
        """Score from one row of feature values (e.g. computed elsewhere) instead of the image."""
        self.error = self.clinical.load_features_csv(path)
        self.scoring.mark_stale()
        if notify:
            self.changed()

    def clear_features_csv(self) -> None:
        self.load_features_csv(None)

    def pyradiomics(self) -> Dict[str, Any]:
        return self.clinical.pyradiomics()

    # ------------------------------------------------------------------ predict and results
    def predict_gate(self) -> Dict[str, Any]:
        """Whether Predict can run and, if not, the first thing the user must do."""
        return self.scoring.gate()

    def predict(self) -> Optional[Dict[str, Any]]:
        """Score the shown node's chosen phase with the segment and the form (or the features CSV);
        appends a row to the results table. Errors land in state()["error"], not in a traceback."""
        self.error = None
        try:
            result = self.scoring.predict()
        except InputError as exc:
            return self.refuse(str(exc))
        self.dicom_export.written = None
        self.changed()
        return result

    def clear(self) -> None:
        """Forget the shown result (the results table keeps its rows)."""
        self.scoring.result = None
        self.error = None
        self.changed()

    @property
    def results_table(self):
        """The results table node of the scene (made again after the scene was closed or it was deleted)."""
        return self.scoring.table

    def results(self) -> List[Dict[str, str]]:
        return self.scoring.rows()

    def nomogram_png(self, path: str, width_px: int = 420) -> Optional[str]:
        """The nomogram with this patient marked (width_px wide); the figure is closed afterwards."""
        return self.scoring.nomogram_png(path, width_px)

    # ------------------------------------------------------------------ DICOM SEG + SR export
    def set_dicom_sources(self, dicom_sources: Optional[Callable[[Any], List[Any]]]) -> None:
        """The face's lookup of a node's DICOM slices (see the module docstring)."""
        self.dicom_export.set_sources(dicom_sources)
        self.changed()

    def export_gate(self) -> Dict[str, Any]:
        """Whether the result can be exported as DICOM SEG + SR and, if not, why."""
        return self.dicom_export.gate()

    def export_would_overwrite(self, out_dir: str) -> List[str]:
        """The SEG/SR files that exporting into out_dir would replace (the face asks first)."""
        return self.dicom_export.would_overwrite(out_dir)

    def export_dicom(self, out_dir: str, force: bool = False) -> Optional[Dict[str, str]]:
        """The tumour as DICOM SEG and the result as a TID 1500 SR on the chosen phase's slices;
        existing files only with force. Errors land in state()["error"], the paths in state()["export"]."""
        self.error = None
        try:
            written = self.dicom_export.export(out_dir, force)
        except InputError as exc:
            return self.refuse(str(exc))
        self.changed()
        return written

    # ------------------------------------------------------------------ state
    def state(self) -> Dict[str, Any]:
        """Everything a face shows, as plain JSON-able values."""
        shown = self.displayed_node()
        tumour = self.tumour
        csv = self.clinical.features_csv
        return json_clean({
            "inputs": [dict(i) for i in self.inputs.offered], "input": self.input_id,
            "phase": self.phase(), "phase_count": self.phase_count(),
            "displayed_node_id": shown.GetID() if shown is not None else None,
            "segmentations": [{"id": n.GetID(), "name": n.GetName()}
                              for n in nodes_of_class(self.scene, "vtkMRMLSegmentationNode")],
            "segmentation_id": tumour.segmentation_id, "segments": tumour.names(), "segment_id": tumour.segment_id,
            "tumour_file": tumour.file_state(), "segment": dict(tumour.size), "patient_id": self.patient_id,
            "model": self.clinical.model_state(), "form": self.form(),
            "features_csv": None if csv is None else {k: csv[k] for k in ("path", "id")},
            "image_is_phase": self.clinical.image_is_phase,
            "pyradiomics": {k: self.pyradiomics()[k] for k in ("ok", "version", "message")},
            "predict": self.predict_gate(), "result": self.scoring.shown(), "error": self.error,
            "results": self.results(), "export": {**self.export_gate(), "written": self.dicom_export.written},
            "results_table_id": self.results_table.GetID(), "notice": RESEARCH_ONLY})


def _own_sequences_logic(scene):
    """Headless (slicer-core, trame): a Sequences logic registered with this scene keeps proxies updated."""
    import slicer
    logic = slicer.vtkSlicerSequencesLogic()
    logic.SetMRMLScene(scene)
    return logic


def _converter_rules(scene):
    """Headless, nothing has registered the segmentation converters (Slicer's Segmentations
    module does it at start): without them an empty segment cannot be made to paint in."""
    import slicer
    if slicer.vtkSegmentationConverterFactory.GetInstance().GetConverterRules():
        return None
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    return logic
