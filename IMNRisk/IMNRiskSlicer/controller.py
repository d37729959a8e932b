"""The scoring workflow without Qt: one controller that every face (the Slicer widget, the trame web
app) binds to, and that `make test` drives headless with slicer-core exactly as a face would.

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
segments [{id, name}], segment_id, segment {voxels, ml, warning, note, pending} (note: a plausibility hint that
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

import datetime as _dt
import json
import math
import re
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import vtk

from IMNRiskLib import RESEARCH_ONLY
from IMNRiskLib.core.errors import InputError
from IMNRiskLib.scoring.core import SYNTHETIC_BANNER

from . import mrml
from .logic import ScoringLogic

RESULTS_TABLE_NAME = "IMNRisk results"
RESULT_COLUMNS = ["time", "model_sha256", "input", "phase", "segment", "inputs", "radscore", "risk",
                  "ci95_low", "ci95_high", "risk_group", "verdict", "points", "patient_id"]
SOURCE_ATTRIBUTE = "IMNRisk.SourceNodeID"   # on a sequence IMNRisk built from a vector volume or phase volumes
RESULTS_ATTRIBUTE = "IMNRisk.Results"
PHASE_NAME = re.compile(r"^(?P<stem>.*?)[\s_\-:.]*(?:phase|ph|t)?[\s_\-]*(?P<n>\d+)$", re.IGNORECASE)
KIND_ORDER = {"sequence": 0, "vector": 1, "phases": 2, "volume": 3}


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
    """Everything the scoring panel does, on MRML nodes and plain values (see the module docstring)."""

    def __init__(self, scene, sequences_logic=None, show_volume: Optional[Callable[[Any], None]] = None,
                 logic: Optional[ScoringLogic] = None, size_interval_s: float = 0.25,
                 clock: Callable[[], float] = time.monotonic,
                 pyradiomics_status: Callable[[], Dict[str, Any]] = pyradiomics_status,
                 dicom_sources: Optional[Callable[[Any], List[Any]]] = None, scene_debounce_s: float = 0.0,
                 require_patient_id: bool = False):
        self._quiet = 0
        self.scene_debounce_s = scene_debounce_s
        self._scene_due: Optional[float] = None      # when a coalesced rescan is due (None: none pending)
        self._scene_first: Optional[float] = None    # the first node event of the pending burst
        self.rescans = 0                             # scene rescans that told the faces (tests count them)
        self.scene = scene
        self.logic = logic or ScoringLogic(scene)
        self.sequences_logic = sequences_logic or self._own_sequences_logic(scene)
        self._segmentations_logic = self._converter_rules(scene)
        self.show_volume = show_volume
        self.size_interval_s = size_interval_s
        self.clock = clock
        self._pyradiomics_status = pyradiomics_status
        self._pyradiomics: Optional[Dict[str, Any]] = None
        self.dicom_sources = dicom_sources
        self._sources_cache: Optional[tuple] = None   # (result, node ID, sources or InputError)
        self._exported: Optional[Dict[str, str]] = None
        self._listeners: List[Callable[[Dict[str, Any]], None]] = []
        self._inputs: List[Dict[str, Any]] = []
        self._chosen_phases = 0
        self._groups: Dict[str, List[str]] = {}
        self.input_id: Optional[str] = None
        self._browser_id: Optional[str] = None
        self._single_id: Optional[str] = None
        self.segmentation_id: Optional[str] = None
        self.segment_id: Optional[str] = None
        self._size = {"voxels": 0, "ml": 0.0, "warning": "", "note": "", "pending": False}
        self.require_patient_id = require_patient_id
        self.patient_id: Optional[str] = None
        self._size_due = False
        self._size_last = -math.inf
        self.model = None
        self.model_path: Optional[str] = None
        self._model_error: Optional[str] = None
        self._version_problems: List[str] = []
        self._allow_mismatch = False
        self._image_is_phase: Optional[int] = None
        self._values: Dict[str, Any] = {}
        self._features_csv: Optional[Dict[str, Any]] = None
        self.result: Optional[Dict[str, Any]] = None
        self.error: Optional[str] = None
        self._editors: List[Any] = []
        self._editor_bound: Dict[int, tuple] = {}
        self._shown: Optional[str] = None
        self._seg_observers: List[tuple] = []
        self._browser_observer: Optional[tuple] = None
        self._scene_observers = [scene.AddObserver(event, _weak(self._on_scene_nodes))
                                 for event in (scene.NodeAddedEvent, scene.NodeRemovedEvent)]
        self._scene_observers += [scene.AddObserver(event, _weak(self._on_scene_settled))
                                  for event in (scene.EndBatchProcessEvent, scene.EndImportEvent)]
        self._results_table = self._find_or_make_results_table()
        self.refresh_inputs(notify=False)

    # ------------------------------------------------------------------ listeners and scene
    def add_listener(self, callback: Callable[[Dict[str, Any]], None]) -> Callable[[], None]:
        """Call `callback(state)` after every change; returns a function that stops it."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _changed(self) -> None:
        if self._quiet:
            return
        self._sync_views_and_editors()
        state = self.state()
        for callback in list(self._listeners):
            callback(state)

    def _refuse(self, reason: str) -> None:
        """Say why an action was not done (state()["error"]) and tell the faces; returns None."""
        self.error = reason
        self._changed()

    def close(self) -> None:
        """Remove every observer this controller added (the face is going away)."""
        for tag in self._scene_observers:
            self.scene.RemoveObserver(tag)
        self._scene_observers = []
        self._observe_segmentation(None)
        self._observe_browser(None)
        self._listeners = []

    @staticmethod
    def _own_sequences_logic(scene):
        """Headless (slicer-core, trame): a Sequences logic registered with this scene keeps proxies updated."""
        import slicer
        logic = slicer.vtkSlicerSequencesLogic()
        logic.SetMRMLScene(scene)
        return logic

    @staticmethod
    def _converter_rules(scene):
        """Headless, nothing has registered the segmentation converters (Slicer's Segmentations
        module does it at start): without them an empty segment cannot be made to paint in."""
        import slicer
        if slicer.vtkSegmentationConverterFactory.GetInstance().GetConverterRules():
            return None
        logic = slicer.vtkSlicerSegmentationsModuleLogic()
        logic.SetMRMLScene(scene)
        return logic

    def _on_scene_nodes(self, caller=None, event=None) -> None:
        """A node was added or removed: rescan now (debounce 0, scene idle) or coalesce the burst into one
        rescan that poll() does once the scene has been quiet for scene_debounce_s (at the latest 4
        intervals after the burst began), or that the end of a batch/import does."""
        if self._quiet:
            return
        if self.scene_debounce_s <= 0 and not self._scene_busy():
            self._rescan()
            return
        now = self.clock()
        self._scene_first = now if self._scene_due is None else self._scene_first
        self._scene_due = min(now + self.scene_debounce_s, self._scene_first + 4 * self.scene_debounce_s)

    def _scene_busy(self) -> bool:
        """Loading or closing a scene adds/removes many nodes: wait for its end event."""
        return bool(self.scene.IsBatchProcessing() or self.scene.IsImporting() or self.scene.IsClosing())

    def _on_scene_settled(self, caller=None, event=None) -> None:
        """A batch or import ended: its coalesced node events become one rescan now."""
        if self._scene_due is not None and not self._quiet and not self._scene_busy():
            self._rescan()

    def _rescan(self) -> None:
        """One rescan of the scene that tells the faces (the pending burst, if any, is done with)."""
        self._scene_due = self._scene_first = None
        self.rescans += 1
        self.refresh_inputs()

    def _flush_scene_events(self) -> None:
        """Before acting on a node ID the face passed: apply pending node events (none may be stale)."""
        if self._scene_due is not None and not self._scene_busy():
            self._scene_due = self._scene_first = None
            self.refresh_inputs(notify=False)

    def _node(self, node_id: Optional[str]):
        return self.scene.GetNodeByID(node_id) if node_id else None

    # ------------------------------------------------------------------ inputs offered
    def _is_proxy(self, node) -> bool:
        return self.sequences_logic.GetFirstBrowserNodeForProxyNode(node) is not None

    def refresh_inputs(self, notify: bool = True) -> None:
        """Which inputs to offer: sequences of volumes, vector (multi-volume) nodes, groups of
        per-phase volumes (names ending in a number), and single volumes; never proxies, label
        maps or the sequences IMNRisk built itself. Auto-selects a multi-phase input first."""
        inputs, singles = [], []
        for seq in self._nodes("vtkMRMLSequenceNode"):
            if seq.GetAttribute(SOURCE_ATTRIBUTE) or seq.GetNumberOfDataNodes() < 1:
                continue
            if "VolumeNode" not in (seq.GetDataNodeClassName() or "") or "LabelMap" in seq.GetDataNodeClassName():
                continue
            inputs.append({"id": seq.GetID(), "name": seq.GetName(), "kind": "sequence",
                           "phases": seq.GetNumberOfDataNodes()})
        for vol in self._nodes("vtkMRMLVolumeNode"):
            if vol.IsA("vtkMRMLLabelMapVolumeNode") or self._is_proxy(vol) or vol.GetImageData() is None:
                continue
            n = vol.GetImageData().GetNumberOfScalarComponents()
            if n > 1:
                inputs.append({"id": vol.GetID(), "name": vol.GetName(), "kind": "vector", "phases": n})
            else:
                singles.append(vol)
        self._groups = self._phase_groups(singles)
        for stem, ids in self._groups.items():
            inputs.append({"id": "phases:" + stem, "name": f"{stem} ({len(ids)} phase volumes)", "kind": "phases",
                           "phases": len(ids)})
        inputs += [{"id": v.GetID(), "name": v.GetName(), "kind": "volume", "phases": 1} for v in singles]
        self._inputs = sorted(inputs, key=lambda i: KIND_ORDER[i["kind"]])
        current = next((i for i in self._inputs if i["id"] == self.input_id), None)
        if current is not None and current["phases"] != self._chosen_phases:
            self.choose_input(current["id"], notify=False)  # it grew (e.g. still loading): default phase again
        elif current is None:
            self.input_id = None
            self._browser_id = self._single_id = None
            if self._inputs:
                self.choose_input(self._inputs[0]["id"], notify=False)
        self._refresh_segmentation_choice()
        if notify:
            self._changed()

    def _nodes(self, class_name: str) -> list:
        collection = self.scene.GetNodesByClass(class_name)
        return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]

    @staticmethod
    def _phase_groups(volumes) -> Dict[str, List[str]]:
        """Scalar volumes named like '<stem> <n>' with the same grid, >= 2 of them: one DCE series."""
        groups: Dict[str, List[tuple]] = {}
        for vol in volumes:
            match = PHASE_NAME.match(vol.GetName() or "")
            if match and match.group("stem").strip():
                groups.setdefault(match.group("stem").strip(), []).append((int(match.group("n")), vol))
        out = {}
        for stem, members in groups.items():
            dims = {m.GetImageData().GetDimensions() for _, m in members}
            if len(members) >= 2 and len(dims) == 1:
                out[stem] = [m.GetID() for _, m in sorted(members, key=lambda t: t[0])]
        return out

    # ------------------------------------------------------------------ input and phase
    def choose_input(self, input_id: Optional[str], notify: bool = True) -> None:
        """Show (and later score) this input; a multi-phase one through a sequence browser's
        proxy node, at its second phase."""
        if notify:
            self._flush_scene_events()
        self._quiet += 1
        try:
            self.input_id, self._browser_id, self._single_id = None, None, None
            entry = next((i for i in self._inputs if i["id"] == input_id), None)
            self._chosen_phases = entry["phases"] if entry else 0
            if entry is not None:
                self.input_id = input_id
                if entry["kind"] == "volume":
                    self._single_id = input_id
                else:
                    sequence = self._sequence_for(entry)
                    browser = self._browser_for(sequence)
                    self._browser_id = browser.GetID()
                    browser.SetSelectedItemNumber(1 if entry["phases"] > 1 else 0)
                    self._ensure_proxy(browser)
            self._observe_browser(self._node(self._browser_id))
            self._mark_stale()
        finally:
            self._quiet -= 1
        self._segment_changed(force=True)
        if notify:
            self._changed()

    def _sequence_for(self, entry: Dict[str, Any]):
        """The sequence node to browse: the input itself, or one IMNRisk builds once from a vector
        volume's components or from per-phase volumes (marked, so it is not offered again)."""
        if entry["kind"] == "sequence":
            return self._node(entry["id"])
        for seq in self._nodes("vtkMRMLSequenceNode"):
            if seq.GetAttribute(SOURCE_ATTRIBUTE) == entry["id"] and seq.GetNumberOfDataNodes() == entry["phases"]:
                return seq
        seq = self.scene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{entry['name']} phases")
        seq.SetAttribute(SOURCE_ATTRIBUTE, entry["id"])
        seq.SetIndexName("phase")
        seq.SetIndexUnit("")
        if entry["kind"] == "vector":
            vector = self._node(entry["id"])
            for k in range(entry["phases"]):
                phase = mrml.sitk_to_volume(mrml.volume_to_sitk(vector, k), self.scene, f"{entry['name']} phase {k}")
                seq.SetDataNodeAtValue(phase, str(k))
                self.scene.RemoveNode(phase)
        else:
            for k, node_id in enumerate(self._groups[entry["id"].split(":", 1)[1]]):
                seq.SetDataNodeAtValue(self._node(node_id), str(k))
        return seq

    def _browser_for(self, sequence):
        browser = self.sequences_logic.GetFirstBrowserNodeForSequenceNode(sequence)
        if browser is None:
            browser = self.scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{sequence.GetName()} browser")
            browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
        return browser

    def _ensure_proxy(self, browser):
        sequence = browser.GetMasterSequenceNode()
        if browser.GetProxyNode(sequence) is None:
            self.sequences_logic.UpdateProxyNodesFromSequences(browser)
        return browser.GetProxyNode(sequence)

    def displayed_node(self):
        """The one volume node shown in the views, given to the Segment Editor, and scored."""
        browser = self._node(self._browser_id)
        if browser is not None:
            return self._ensure_proxy(browser)
        return self._node(self._single_id)

    def phase(self) -> int:
        browser = self._node(self._browser_id)
        return int(browser.GetSelectedItemNumber()) if browser is not None else 0

    def phase_count(self) -> int:
        browser = self._node(self._browser_id)
        return int(browser.GetNumberOfItems()) if browser is not None else (1 if self._single_id else 0)

    def choose_phase(self, phase: int) -> None:
        """Show and score phase `phase` (0-based) of the chosen series."""
        browser = self._node(self._browser_id)
        n = self.phase_count()
        if browser is None or not 0 <= int(phase) < n:
            self._refuse(f"phase {phase} requested but the input has {n} phase(s)")
            return
        if int(phase) != self.phase():
            browser.SetSelectedItemNumber(int(phase))  # the browser observer marks the result stale
        self._changed()

    def _observe_browser(self, browser) -> None:
        if self._browser_observer:
            node, tag = self._browser_observer
            node.RemoveObserver(tag)
        self._browser_observer = None
        if browser is not None:
            self._browser_observer = (browser, browser.AddObserver(vtk.vtkCommand.ModifiedEvent, _weak(self._on_browser)))
            self._browser_phase = browser.GetSelectedItemNumber()

    def _on_browser(self, caller=None, event=None) -> None:
        """The phase may also change from Slicer's sequence toolbar: the shown phase is the scored one."""
        if caller is not None and caller.GetSelectedItemNumber() != getattr(self, "_browser_phase", None):
            self._browser_phase = caller.GetSelectedItemNumber()
            self._mark_stale()
            self._segment_changed(force=True)
            self._changed()

    # ------------------------------------------------------------------ segmentation and live size
    def _refresh_segmentation_choice(self) -> None:
        segs = self._nodes("vtkMRMLSegmentationNode")
        if self.segmentation_id not in {s.GetID() for s in segs}:
            self.segmentation_id = None
            self.segment_id = None
            self._observe_segmentation(None)
            if segs:
                self._select_segmentation(segs[0])

    def choose_segmentation(self, node_id: Optional[str]) -> None:
        """Contour in (and score) this segmentation node."""
        self._flush_scene_events()
        node = self._node(node_id)
        self.segmentation_id = self.segment_id = None
        self._observe_segmentation(None)
        if node is not None:
            self._select_segmentation(node)
        self._mark_stale()
        self._segment_changed(force=True)
        self._changed()

    def _select_segmentation(self, node) -> None:
        self.segmentation_id = node.GetID()
        segmentation = node.GetSegmentation()
        shown = self.displayed_node()
        if shown is not None and segmentation.GetNumberOfSegments() == 0:
            node.SetReferenceImageGeometryParameterFromVolumeNode(shown)  # paint on the image's grid
        self.segment_id = segmentation.GetNthSegmentID(0) if segmentation.GetNumberOfSegments() else None
        self._observe_segmentation(node)

    def new_segmentation(self, segment_name: str = "tumour") -> str:
        """A new segmentation on the shown image's grid with one empty segment; returns its ID."""
        self._quiet += 1
        try:
            node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "IMNRisk tumour")
            node.CreateDefaultDisplayNodes()
            shown = self.displayed_node()
            if shown is not None:
                node.SetReferenceImageGeometryParameterFromVolumeNode(shown)
            node.GetSegmentation().AddEmptySegment(segment_name, segment_name)
        finally:
            self._quiet -= 1
        self.choose_segmentation(node.GetID())
        return node.GetID()

    def choose_segment(self, segment_id: Optional[str]) -> None:
        self.segment_id = segment_id or None
        self._mark_stale()
        self._segment_changed(force=True)
        self._changed()

    def _observe_segmentation(self, node) -> None:
        for obj, tag in self._seg_observers:
            obj.RemoveObserver(tag)
        self._seg_observers = []
        if node is None:
            return
        import slicer
        segmentation = node.GetSegmentation()
        events = (slicer.vtkSegmentation.SourceRepresentationModified, slicer.vtkSegmentation.SegmentModified,
                  slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved)
        self._seg_observers = [(segmentation, segmentation.AddObserver(e, _weak(self._on_segmentation))) for e in events]

    def _on_segmentation(self, caller=None, event=None) -> None:
        """A stroke of the paint brush: throttled size update, the result becomes stale."""
        node = self._node(self.segmentation_id)
        if node is not None and (self.segment_id is None
                                 or node.GetSegmentation().GetSegment(self.segment_id) is None):
            segmentation = node.GetSegmentation()
            self.segment_id = segmentation.GetNthSegmentID(0) if segmentation.GetNumberOfSegments() else None
        self._mark_stale()
        if self._segment_changed():
            self._changed()

    def _segment_changed(self, force: bool = False) -> bool:
        """Recount now if forced or if the last count is older than the interval, else leave it
        pending for poll(); True when the shown size changed."""
        self._size_due = True
        if force or self.clock() - self._size_last >= self.size_interval_s:
            self._update_size()
            return True
        self._size["pending"] = True
        return False

    def poll(self) -> None:
        """Called by the face's timer: do the pending size update once the interval has passed, and
        pick up volumes whose image data arrived after they were added to the scene."""
        changed = False
        if self._scene_due is not None:   # a burst of node events: one rescan once it has settled
            if self.clock() >= self._scene_due and not self._scene_busy():
                self._rescan()            # (the faces are told by it)
        else:
            before = (list(self._inputs), self.input_id, self.phase())
            self._quiet += 1
            try:
                self.refresh_inputs(notify=False)
            finally:
                self._quiet -= 1
            changed = before != (self._inputs, self.input_id, self.phase())
        if self._size_due and self.clock() - self._size_last >= self.size_interval_s:
            self._update_size()
            changed = True
        if changed:
            self._changed()

    def _update_size(self) -> None:
        self._size_due = False
        self._size_last = self.clock()
        voxels, ml, warning, note = 0, 0.0, "", ""
        node = self._node(self.segmentation_id)
        if node is not None and self.segment_id:
            try:
                voxels, ml = segment_voxels(node, self.segment_id)
            except InputError as exc:
                warning = exc.message
            minimum = self._min_voxels()
            if not warning and voxels == 0:
                warning = "The segment is empty: paint the tumour."
            elif not warning and voxels < minimum:
                warning = f"Too small for texture features (at least {minimum} voxels)."
            note = self._share_note(voxels)
        self._size = {"voxels": int(voxels), "ml": float(ml), "warning": warning, "note": note, "pending": False}

    def _share_note(self, voxels: int) -> str:
        """The scoring core's tumour-share rule said early: a segment covering more of the shown image
        than a tumour can (a threshold that took the organ) will make the result "not reliable"."""
        from IMNRiskLib.scoring.domain import tumour_share_finding
        shown = self.displayed_node()
        data = shown.GetImageData() if shown is not None else None
        if not voxels or data is None:
            return ""
        found = tumour_share_finding(int(voxels), int(np.prod(data.GetDimensions())))
        return (found[0]["message"].capitalize() + ": the result will be \"not reliable\".") if found else ""

    def _min_voxels(self) -> int:
        if self.model is not None:
            return int(self.model.doc["extraction"]["imnrisk"]["min_tumour_voxels"])
        from IMNRiskLib.inputs import imaging
        return imaging.MIN_TUMOUR_VOXELS

    # ------------------------------------------------------------------ Segment Editor duties
    # One editor at a time: a face's editor holds the slice views' interaction and the keyboard
    # shortcuts only between editor_enter and editor_exit (in Slicer: while IMNRisk is the current
    # module, as Slicer's own Segment Editor module holds them only while it is current), and entering
    # a second editor releases the first. Teardown while the application exits touches no editor.
    def attach_editor(self, editor) -> None:
        """Keep this editor on the shown node and the chosen segmentation (segmentation first)."""
        if editor not in self._editors:
            self._editors.append(editor)
        self._editor_bound.pop(id(editor), None)
        self._sync_views_and_editors()

    def editor_enter(self, editor) -> None:
        """What Slicer's Segment Editor module does on enter: shortcuts, then the nodes; any other
        editor this controller drives is released first (one editor holds the views)."""
        for other in [e for e in self._editors if e is not editor]:
            self.editor_exit(other)
        editor.installKeyboardShortcuts()
        self.attach_editor(editor)

    def editor_exit(self, editor) -> None:
        """What Slicer's Segment Editor module does on exit: no active effect, no shortcuts, no view
        observers. Only an editor that is attached is called (exit, then cleanup, release it once)."""
        if editor not in self._editors:
            return
        editor.setActiveEffect(None)
        editor.uninstallKeyboardShortcuts()
        editor.removeViewObservations()
        self._editors.remove(editor)
        self._editor_bound.pop(id(editor), None)

    def release_editors(self, app_exiting: bool) -> List[Any]:
        """The face is going away: release every attached editor, or, once the application has begun
        to exit (its widgets and main window are being torn down), forget them without a call.
        Returns the editors that were forgotten uncalled."""
        editors, forgotten = list(self._editors), []
        for editor in editors:
            if app_exiting:
                self._editors.remove(editor)
                self._editor_bound.pop(id(editor), None)
                forgotten.append(editor)
            else:
                self.editor_exit(editor)
        return forgotten

    def _sync_views_and_editors(self) -> None:
        """Show the scored node in the views when it changes; re-bind an editor only when its
        (segmentation, source volume) pair changed, never per scene event."""
        shown = self.displayed_node()
        shown_id = shown.GetID() if shown is not None else None
        if shown_id != self._shown:
            self._shown = shown_id
            if shown is not None and self.show_volume is not None:
                self.show_volume(shown)
        segmentation = self._node(self.segmentation_id)
        wanted = (self.segmentation_id, shown_id)
        for editor in self._editors:
            if self._editor_bound.get(id(editor)) != wanted:
                editor.setSegmentationNode(segmentation)   # Slicer refuses a source volume before a segmentation
                editor.setSourceVolumeNode(shown)
                self._editor_bound[id(editor)] = wanted

    # ------------------------------------------------------------------ model and clinical form
    def load_model(self, path: Optional[str]) -> None:
        """Use this model file: its summary, version check and a fresh clinical form."""
        from IMNRiskLib.scoring import version_mismatches
        self.model, self.model_path, self._model_error, self._version_problems = None, path or None, None, []
        self._values = {}
        self.result = None
        if path:
            try:
                self.model = self.logic.load_model(path)
                if self.pyradiomics()["ok"]:
                    self._version_problems = version_mismatches(self.model)
            except InputError as exc:
                self._model_error = str(exc)
            except Exception as exc:  # a broken file must not break the panel
                self._model_error = f"{path}: cannot use this model ({type(exc).__name__}: {exc})"
        if self._features_csv is not None and self.model is not None:
            self.load_features_csv(self._features_csv["path"], notify=False)
        self._segment_changed(force=True)
        self._changed()

    def set_image_is_phase(self, phase: Optional[int]) -> None:
        """Say which phase (0-based) of its DCE series a single-phase volume is (None: not said); the
        scoring core compares it with the phase the model was trained on."""
        self._image_is_phase = None if phase is None or phase == "" else int(phase)
        self._mark_stale()
        self._changed()

    def allow_version_mismatch(self, allow: bool) -> None:
        self._allow_mismatch = bool(allow)
        self._changed()

    def set_clinical(self, name: str, value: Any) -> None:
        """Set (or unset with None / "") one clinical factor of the model's form."""
        if value is None or (isinstance(value, str) and not value.strip()):
            self._values.pop(name, None)
        else:
            self._values[name] = value
        self._mark_stale()
        self._changed()

    def set_patient_id(self, text: Optional[str]) -> None:
        """Set (or unset with None / "") the patient identifier; it goes into the results row only
        (no log line names it), and a change makes the shown result stale."""
        text = " ".join(str(text).split()) if text is not None else ""
        self.patient_id = text[:64] or None
        self._mark_stale()
        self._changed()

    def new_patient(self) -> None:
        """Forget the patient (a new study is loaded): identifier, clinical values, result, error."""
        self.patient_id = None
        self._values = {}
        self.result = None
        self.error = None
        self._exported = None
        self._changed()

    def form(self) -> List[Dict[str, Any]]:
        """One field per clinical factor the model needs, with its status from the scoring core
        ("not entered", "invalid" or "valid", and a note when outside the training range)."""
        if self.model is None:
            return []
        from IMNRiskLib.scoring import field_status
        schema = self.model.schema
        fields = []
        for name in self.model.factors:
            var = schema[name]
            value = self._values.get(name)
            status, message = field_status(self.model, name, value)
            fields.append({"name": name, "title": var.title, "type": var.type, "levels": list(var.levels or []),
                           "min": var.min, "max": var.max, "unit": var.unit,
                           "value": value if value is None or isinstance(value, (int, float, str)) else str(value),
                           "status": status, "message": message})
        return fields

    # ------------------------------------------------------------------ features CSV (no pyradiomics needed)
    def load_features_csv(self, path: Optional[str], notify: bool = True) -> None:
        """Score from one row of feature values (e.g. computed elsewhere) instead of the image."""
        self._features_csv = None
        self.error = None
        if path:
            try:
                from IMNRiskLib.radiomics.features import read_features
                frame = read_features(path)
                if len(frame) != 1:
                    raise InputError(f"{len(frame)} rows: one patient's feature values expected", file=str(path))
                if self.model is not None:
                    missing = [f for f in self.model.features if f not in frame.columns]
                    if missing:
                        raise InputError(f"lacks {len(missing)} feature(s) the model needs", file=str(path),
                                         field=missing[0])
                row = frame.iloc[0]
                self._features_csv = {"path": str(path), "id": str(frame.index[0]),
                                      "values": {k: float(v) for k, v in row.items()}}
            except InputError as exc:
                self.error = str(exc)
        self._mark_stale()
        if notify:
            self._changed()

    def clear_features_csv(self) -> None:
        self.load_features_csv(None)

    def pyradiomics(self) -> Dict[str, Any]:
        if self._pyradiomics is None:
            self._pyradiomics = self._pyradiomics_status()
        return self._pyradiomics

    # ------------------------------------------------------------------ predict
    def predict_gate(self) -> Dict[str, Any]:
        """Whether Predict can run and, if not, the first thing the user must do."""
        reason = None
        if self.model is None:
            reason = self._model_error or "Choose a model file."
        elif self._version_problems and not self._allow_mismatch:
            reason = "The model was trained with other software: " + "; ".join(self._version_problems)
        elif self._features_csv is None:
            if not self.pyradiomics()["ok"]:
                reason = self.pyradiomics()["message"]
            elif self.displayed_node() is None:
                reason = "Choose the DCE series (or a features CSV)."
            elif not (self.segmentation_id and self.segment_id):
                reason = "Choose or create a segmentation with the tumour segment."
            elif self._size["warning"] and not self._size["pending"]:
                reason = self._size["warning"]
        if reason is None and self.require_patient_id and not self.patient_id:
            reason = "Enter the patient identifier."
        if reason is None:
            unset = [f["title"] for f in self.form() if f["status"] != "valid"]
            if unset:
                reason = "Enter the clinical factors: " + ", ".join(unset)
        return {"enabled": reason is None, "reason": reason or "Score this patient"}

    def predict(self) -> Optional[Dict[str, Any]]:
        """Score the shown node's chosen phase with the segment and the form (or the features CSV);
        appends a row to the results table. Errors land in state()["error"], not in a traceback."""
        self.error = None
        if self._size["pending"]:
            self._update_size()
        gate = self.predict_gate()
        if not gate["enabled"]:
            return self._refuse(gate["reason"])
        try:
            result = self._score()
        except InputError as exc:
            return self._refuse(str(exc))
        self.result = result
        self._exported = None
        self._append_row(result)
        self._changed()
        return result

    def _score(self) -> Dict[str, Any]:
        """The scoring core's Prediction for the shown inputs (image or features CSV), plus what the
        results table records of where it came from. Nothing here judges the patient."""
        from IMNRiskLib.scoring import Case, Options, score_case
        from IMNRiskLib.scoring.core import declare_phase
        model = self.model
        clinical = {f["name"]: f["value"] for f in self.form()}
        options = Options(allow_version_mismatch=self._allow_mismatch, clinical_source="clinical factors")
        if self._features_csv is not None:
            case = Case.from_values(self._features_csv["values"], source=self._features_csv["path"])
            source, phase, segment, input_name = "features CSV", None, None, self._features_csv["path"]
        else:
            shown = self.displayed_node()
            segmentation = self._node(self.segmentation_id)
            case = self.logic.case(shown, segmentation, self.segment_id, model)
            case.loaded.phase, case.loaded.n_phases = self.phase(), max(self.phase_count(), 1)
            case.declared_phase = declare_phase(case.loaded, self._image_is_phase, shown.GetName())
            source, phase = "image", self.phase()
            segment = segmentation.GetSegmentation().GetSegment(self.segment_id).GetName()
            input_name = next((i["name"] for i in self._inputs if i["id"] == self.input_id), shown.GetName())
        result = score_case(model, case, clinical, options).to_dict()
        result.update({"phase": phase, "segment": segment, "input": input_name, "source": source, "stale": False,
                       "patient_id": self.patient_id,
                       "clinical": clinical, "time": _dt.datetime.now().isoformat(timespec="seconds")})
        return result

    def clear(self) -> None:
        """Forget the shown result (the results table keeps its rows)."""
        self.result = None
        self.error = None
        self._changed()

    def _mark_stale(self) -> None:
        if self.result is not None:
            self.result["stale"] = True

    # ------------------------------------------------------------------ DICOM SEG + SR export
    def set_dicom_sources(self, dicom_sources: Optional[Callable[[Any], List[Any]]]) -> None:
        """The face's lookup of a node's DICOM slices (see the module docstring)."""
        self.dicom_sources = dicom_sources
        self._sources_cache = None
        self._changed()

    def source_node(self):
        """The chosen phase's volume as it was loaded (where Slicer's DICOM module leaves
        DICOM.instanceUIDs): a sequence's data node, the phase volume of a group, the volume itself;
        for a vector (multi-volume) node, that node."""
        entry = next((i for i in self._inputs if i["id"] == self.input_id), None)
        if entry is None:
            return None
        if entry["kind"] == "sequence":
            return self._node(entry["id"]).GetNthDataNode(self.phase())
        if entry["kind"] == "phases":
            ids = self._groups.get(entry["id"].split(":", 1)[1], [])
            return self._node(ids[self.phase()]) if self.phase() < len(ids) else None
        return self._node(entry["id"])

    def _sources(self) -> List[Any]:
        """The chosen phase's DICOM slices from the face's lookup, once per result and node."""
        node = self.source_node()
        key = (id(self.result), node.GetID() if node is not None else None)
        if self._sources_cache is None or self._sources_cache[:2] != key:
            try:
                found = list(self.dicom_sources(node) or []) if (self.dicom_sources and node is not None) else []
            except InputError as exc:
                found = exc
            self._sources_cache = key + (found,)
        if isinstance(self._sources_cache[2], InputError):
            raise self._sources_cache[2]
        return self._sources_cache[2]

    def export_gate(self) -> Dict[str, Any]:
        """Whether the result can be exported as DICOM SEG + SR and, if not, why."""
        result, reason = self.result, None
        if result is None:
            reason = "Predict first: there is no result to export."
        elif result.get("stale"):
            reason = "The result is stale (an input changed since): press Predict again before exporting."
        elif result.get("source") != "image":
            reason = "This result was scored from a features CSV: there is no image and tumour to export."
        elif not _has_highdicom():
            reason = ("DICOM export needs highdicom, which this Python lacks (Slicer 5.12 ships it; "
                      "elsewhere: pip install highdicom).")
        else:
            try:
                if self.dicom_sources is None:
                    reason = "DICOM export is not available in this view."
                elif not self._sources():
                    reason = ("The input is not from DICOM (its volume lists no DICOM instances): load the series "
                              "with Slicer's DICOM module to export DICOM SEG + SR.")
            except InputError as exc:
                reason = str(exc)
        return {"enabled": reason is None,
                "reason": reason or "Export the tumour as DICOM SEG and the result as DICOM SR (TID 1500)"}

    def export_would_overwrite(self, out_dir: str) -> List[str]:
        """The SEG/SR files that exporting into out_dir would replace (the face asks first)."""
        from IMNRiskLib.outputs import dicomout
        paths = dicomout.output_paths(out_dir)
        return [str(p) for p in (paths.seg, paths.sr) if p.exists()]

    def export_dicom(self, out_dir: str, force: bool = False) -> Optional[Dict[str, str]]:
        """Write the tumour (the segment on the scored node's grid) as DICOM SEG and the result as a
        TID 1500 SR, referencing the chosen phase's slices; existing files only with force. Errors
        land in state()["error"] (nothing is half-written), the paths in state()["export"]."""
        from IMNRiskLib.outputs import dicomout
        self.error = None
        gate = self.export_gate()
        if not gate["enabled"]:
            return self._refuse(gate["reason"])
        try:
            sources = self._sources()
            if not all(hasattr(s, "SOPInstanceUID") for s in sources):
                sources = dicomout.read_source(sources)
            case = self.logic.tumour(self.displayed_node(), self._node(self.segmentation_id), self.segment_id,
                                     None, self._min_voxels())
            paths = dicomout.export(out_dir, sources, case.mask, self.result, self.model.doc, force)
        except InputError as exc:
            return self._refuse(str(exc))
        except OSError as exc:  # e.g. a read-only or full disk: the temporary files are gone already
            return self._refuse(f"{out_dir}: cannot write the DICOM files ({exc.strerror or type(exc).__name__})")
        self._exported = {"seg": str(paths.seg), "sr": str(paths.sr)}
        self._changed()
        return dict(self._exported)

    # ------------------------------------------------------------------ results table
    def _find_or_make_results_table(self):
        table = next((t for t in self._nodes("vtkMRMLTableNode") if t.GetAttribute(RESULTS_ATTRIBUTE)), None)
        if table is None:
            self._quiet += 1
            try:
                table = self.scene.AddNewNodeByClass("vtkMRMLTableNode", RESULTS_TABLE_NAME)
            finally:
                self._quiet -= 1
            table.SetAttribute(RESULTS_ATTRIBUTE, "1")
        for name in RESULT_COLUMNS:  # string columns (a table reset by a scene close has none)
            if table.GetTable().GetColumnByName(name) is None:
                table.AddColumn().SetName(name)
        return table

    @property
    def results_table(self):
        """The results table node of the scene (made again after the scene was closed or it was deleted)."""
        closing = self.scene.IsClosing() or self.scene.IsBatchProcessing()
        if not closing and (self._results_table is None or not self.scene.IsNodePresent(self._results_table)
                            or self._results_table.GetTable().GetNumberOfColumns() < len(RESULT_COLUMNS)):
            self._results_table = self._find_or_make_results_table()
        return self._results_table

    def _append_row(self, result: Dict[str, Any]) -> None:
        values = {"time": result["time"], "model_sha256": result["model_sha256"], "input": result["input"],
                  "phase": "" if result["phase"] is None else str(result["phase"]), "segment": result["segment"] or "",
                  "inputs": json.dumps(result["clinical"], sort_keys=True), "radscore": f"{result['radscore']:.6f}",
                  "risk": f"{result['probability']:.6f}", "ci95_low": f"{result['ci95'][0]:.6f}",
                  "ci95_high": f"{result['ci95'][1]:.6f}", "risk_group": result["risk_group"] or "withheld",
                  "verdict": result["verdict"]["state"],
                  "points": json.dumps({k: round(v, 3) for k, v in result["points"].items()}),
                  "patient_id": result.get("patient_id") or ""}
        node = self.results_table
        table = node.GetTable()
        row = table.InsertNextBlankRow()
        for c, name in enumerate(RESULT_COLUMNS):
            table.GetColumnByName(name).SetValue(row, values[name])
        table.Modified()
        node.Modified()

    def results(self) -> List[Dict[str, str]]:
        table = self.results_table.GetTable()
        names = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
        return [{n: table.GetValueByName(r, n).ToString() for n in names} for r in range(table.GetNumberOfRows())]

    # ------------------------------------------------------------------ nomogram
    def nomogram_png(self, path: str, width_px: int = 420) -> Optional[str]:
        """The nomogram drawn for the module panel (width_px wide), this patient marked; the
        matplotlib figure is closed afterwards (none accumulate in a long session)."""
        if self.model is None or self.result is None:
            return None
        from IMNRiskLib.outputs import figures
        import matplotlib.pyplot as plt
        labels = {v["name"]: v.get("label", v["name"]) for v in self.model.doc["clinical"]["schema"]["variables"]}
        fig = figures.nomogram(self.model.doc["nomogram"], labels, patient=self.result["points"],
                               notes=(self.result.get("domain") or {}).get("warnings"))
        try:
            dpi = 100
            w, h = fig.get_size_inches()
            fig.set_size_inches(width_px / dpi, h * width_px / dpi / w)
            for text in fig.findobj(match=lambda o: hasattr(o, "set_fontsize") and hasattr(o, "get_fontsize")):
                text.set_fontsize(max(5.0, text.get_fontsize() * 0.8))
            _fit_labels(fig)
            fig.savefig(path, dpi=dpi)
        finally:
            plt.close(fig)
        return path

    # ------------------------------------------------------------------ state
    def state(self) -> Dict[str, Any]:
        """Everything a face shows, as plain JSON-able values."""
        shown = self.displayed_node()
        segmentation = self._node(self.segmentation_id)
        segments = []
        if segmentation is not None:
            s = segmentation.GetSegmentation()
            segments = [{"id": s.GetNthSegmentID(i), "name": s.GetNthSegment(i).GetName()}
                        for i in range(s.GetNumberOfSegments())]
        model = None
        if self.model is not None or self._model_error:
            synthetic = bool(self.model is not None and self.model.doc["training"].get("synthetic"))
            model = {"path": self.model_path, "summary": self.model.summary() if self.model else None,
                     "synthetic": synthetic, "banner": SYNTHETIC_BANNER if synthetic else "",
                     "sha256": self.model.doc["sha256"] if self.model else None, "error": self._model_error,
                     "version_problems": list(self._version_problems),
                     "version_mismatch_allowed": self._allow_mismatch}
        result = None
        if self.result is not None:
            keys = ("verdict", "display", "radscore", "probability", "ci95", "risk_group", "risk_group_computed",
                    "risk_thresholds", "points", "phase", "n_phases", "segment", "input", "warnings", "stale",
                    "source", "time", "model_sha256", "clinical", "clinical_probability", "radiomics_probability",
                    "features", "ci_method", "domain", "image", "ignored_clinical", "tumour", "synthetic", "banner",
                    "patient_id")
            result = {k: self.result.get(k) for k in keys}
        csv = None if self._features_csv is None else {k: self._features_csv[k] for k in ("path", "id")}
        return _json_clean({
            "inputs": [dict(i) for i in self._inputs], "input": self.input_id,
            "phase": self.phase(), "phase_count": self.phase_count(),
            "displayed_node_id": shown.GetID() if shown is not None else None,
            "segmentations": [{"id": n.GetID(), "name": n.GetName()} for n in self._nodes("vtkMRMLSegmentationNode")],
            "segmentation_id": self.segmentation_id, "segments": segments, "segment_id": self.segment_id,
            "segment": dict(self._size), "patient_id": self.patient_id, "model": model, "form": self.form(), "features_csv": csv,
            "image_is_phase": self._image_is_phase,
            "pyradiomics": {k: self.pyradiomics()[k] for k in ("ok", "version", "message")},
            "predict": self.predict_gate(), "result": result, "error": self.error, "results": self.results(),
            "export": {**self.export_gate(), "written": self._exported},
            "results_table_id": self.results_table.GetID(), "notice": RESEARCH_ONLY})


def _has_highdicom() -> bool:
    """Whether highdicom (which writes the SEG and SR) imports here."""
    try:
        import highdicom  # noqa: F401
    except ImportError:
        return False
    return True


def instance_files(node, file_for_instance: Callable[[str], str]) -> List[str]:
    """The files of a volume node's DICOM instances (its "DICOM.instanceUIDs" attribute, set by
    Slicer's DICOM module) through a database lookup; [] when the node is not from DICOM."""
    uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split() if node is not None else []
    files = [file_for_instance(uid) or "" for uid in uids]
    missing = [uid for uid, f in zip(uids, files) if not f]
    if missing:
        raise InputError(f"{len(missing)} of the {len(uids)} DICOM instances of '{node.GetName()}' are not in "
                         f"the DICOM database (e.g. {missing[0]})", field="DICOM database")
    return files


def segment_voxels(segmentation_node, segment_id: str):
    """(voxels, mL) of one segment counted on its own binary labelmap (no export, no scene node),
    cheap enough to follow the paint brush."""
    import slicer
    from vtk.util import numpy_support
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        raise InputError(f"segment '{segment_id}' not found in '{segmentation_node.GetName()}'", field="Segment")
    name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    labelmap = segment.GetRepresentation(name)
    if labelmap is None:
        segmentation_node.GetSegmentation().CreateRepresentation(name)
        labelmap = segment.GetRepresentation(name)
    if labelmap is None or labelmap.GetPointData().GetScalars() is None:
        return 0, 0.0
    extent = labelmap.GetExtent()
    if extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4]:
        return 0, 0.0
    scalars = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())
    voxels = int(np.count_nonzero(scalars == segment.GetLabelValue()))
    return voxels, voxels * float(np.prod(labelmap.GetSpacing())) / 1000.0


def _fit_labels(fig) -> None:
    """Widen the axes' left limit until the axis titles fit a narrow figure (none cut off)."""
    fig.subplots_adjust(left=0.01, right=0.99)
    for ax in fig.axes:
        for _ in range(12):
            fig.canvas.draw()
            renderer = fig.canvas.get_renderer()
            left = min((t.get_window_extent(renderer).x0 for t in ax.texts), default=0.0)
            if left >= 2:
                break
            lo, hi = ax.get_xlim()
            ax.set_xlim(lo - 0.08 * (hi - lo), hi)


def _weak(method):
    """An observer callback that does not keep the controller alive (no scene <-> controller cycle,
    whose collection would leave a half-cleared controller still observing)."""
    ref = weakref.WeakMethod(method)

    def call(caller=None, event=None):
        bound = ref()
        if bound is not None:
            bound(caller, event)
    return call


def _json_clean(obj):
    """Plain JSON types (numpy scalars -> Python, NaN -> None)."""
    if isinstance(obj, dict):
        return {str(k): _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj
