"""The trame page: binds trame state and events to the Slicer module's ScoringController.

Every decision (which phase is shown, the form's states, whether Predict is enabled, stale
results, the results table, the patient identifier gate) is the controller's; this file only lays
out widgets, forwards what the user does to the controller and publishes `controller.state()` (file
paths removed) as the trame state `imn`. One instance serves one browser session (one process,
started by the launcher in server.py): nothing here is shared with another tab.
"""

from __future__ import annotations

import asyncio
import base64
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from trame.app import TrameApp
from trame.ui.vuetify3 import VAppLayout
from trame.widgets import client, html
from trame.widgets import vuetify3 as v

from IMNRiskLib import RESEARCH_ONLY
from IMNRiskLib.core.errors import InputError

from . import study
from .server import WebOptions

POLL_SECONDS = 0.25
LAYOUT = "Axial, sagittal, coronal"
NOMOGRAM_WIDTH_PX = 1100  # drawn once at full size: the panel shows it scaled, a click opens it whole
THRESHOLD_DEFAULT_PERCENTILE = 99.5  # the threshold's default lower bound: the brightest 0.5% of the phase


def list_models(folder: Optional[str], trusted_key: Optional[str] = None) -> Dict[str, str]:
    """The model files of a folder ({file name: path}, sorted): every *.json that reads as an IMNRisk
    model, and with a trusted key only those signed by it."""
    from IMNRiskLib.scoring.modelfile import read_model_document
    from IMNRiskLib.scoring.signing import verify_model
    found: Dict[str, str] = {}
    if not folder:
        return found
    for path in sorted(Path(folder).glob("*.json")):
        try:
            doc = read_model_document(path)
            if trusted_key:
                verify_model(doc, trusted_key, str(path))
        except (InputError, OSError, ValueError):
            continue
        found[path.name] = str(path)
    return found


class EditorAdapter:
    """trame-slicer's SegmentationEditor seen as the qMRMLSegmentEditorWidget the controller binds
    (setSegmentationNode, then setSourceVolumeNode)."""

    def __init__(self, editor):
        self.editor = editor
        self._segmentation = None

    def setSegmentationNode(self, node) -> None:  # noqa: N802 - the Qt widget's name
        self._segmentation = node

    def setSourceVolumeNode(self, node) -> None:  # noqa: N802
        if self._segmentation is not None and node is not None:
            self.editor.deactivate_effect()
            self.editor.set_active_segmentation(self._segmentation, node)


class IMNRiskWebApp(TrameApp):
    """One patient at a time in one browser tab: study, phase, contour, clinical form, result."""

    def __init__(self, server=None, options: Optional[WebOptions] = None, uploads: Optional[study.Uploads] = None):
        super().__init__(server)
        self.options = options or WebOptions()
        model = self.options.model
        import slicer
        from trame_slicer import module as trame_slicer_module
        from trame_slicer.app.logic.segmentation import SegmentEditorLogic
        from trame_slicer.core import LayoutManager, SlicerApp
        from trame_slicer.rca_view import register_rca_factories
        from IMNRiskSlicer.controller import ScoringController

        self.server.enable_module(trame_slicer_module)
        self.uploads = uploads or study.Uploads()
        self.models = list_models(self.options.models_dir, self.options.trusted_key)
        if model and Path(model).name not in self.models:
            self.models = {Path(model).name: str(model), **self.models}
        self._secrets: List[str] = [str(self.uploads.root)] + [p for m in self.models.values()
                                                                 for p in (m, str(Path(m).resolve()))]
        for extra in (self.options.models_dir, self.options.trusted_key):
            if extra:
                self._secrets += [str(extra), str(Path(extra).resolve())]
        self._upload: List[Dict[str, Any]] = []
        self._upload_bytes = 0
        self.last_action = time.monotonic()
        self.slicer_app = SlicerApp()
        sequences = self.slicer_app.register_module_logic(slicer.vtkSlicerSequencesLogic(), logic_name="Sequences")
        register_rca_factories(self.slicer_app.view_manager, self.server, slice_view_ui_f=_named_slice_view_ui)
        self.layout_manager = LayoutManager(self.slicer_app.scene, self.slicer_app.view_manager, self.server)
        self.layout_manager.register_layout_dict({LAYOUT: _three_slices_layout()})
        self.layout_manager.set_layout(LAYOUT)
        self.editor_logic = SegmentEditorLogic(self.server, self.slicer_app)
        self._thresholded = None
        self.slicer_app.segmentation_editor.active_effect_name_changed.connect(self._on_effect_name)
        self.controller = ScoringController(self.slicer_app.scene, sequences_logic=sequences,
                                            show_volume=self._show_volume, require_patient_id=True)
        self.controller.attach_editor(EditorAdapter(self.slicer_app.segmentation_editor))
        self.controller.add_listener(self._publish)
        self.state.imn_phase_ui = 0
        self.state.imn_nomogram = ""
        self.state.imn_busy = ""
        self.state.imn_load_error = ""
        self.state.imn_nomogram_open = False
        self.state.imn_ended = ""
        self.state.imn_max_upload_mb = self.options.max_upload_mb
        self.state.imn_models = list(self.models)
        self.state.imn_model_name = Path(model).name if model else (next(iter(self.models)) if len(self.models) == 1 else None)
        self.state.trame__title = "IMNRisk"
        self._build_ui()
        if self.state.imn_model_name:
            self._on_model_chosen(self.state.imn_model_name)
        self._publish(self.controller.state())
        self.state.change("imn_phase_ui")(self._on_phase_ui)
        self.state.change("imn_model_name")(self._on_model_name)
        self.server.controller.on_server_ready.add(self._start_polling)

    # ------------------------------------------------------------------ controller -> page
    def _show_volume(self, node) -> None:
        self.slicer_app.display_manager.show_volume(node, do_reset_views=True)

    def _on_effect_name(self, _name: str = "") -> None:
        """When the threshold effect starts on a new image: its default range is the brightest voxels
        of the shown phase (from the 99.5th percentile up), not trame-slicer's automatic range, which
        takes the whole organ. The user reads and types the bounds beside the slider."""
        import numpy as np
        from trame_slicer.segmentation import SegmentationEffectThreshold
        from vtk.util import numpy_support
        editor = self.slicer_app.segmentation_editor
        effect, node = editor.active_effect, editor.active_volume_node
        if not isinstance(effect, SegmentationEffectThreshold) or node is None or node is self._thresholded:
            return
        data = node.GetImageData()
        key = self._threshold_key()
        if key is None or data is None or data.GetPointData().GetScalars() is None:
            return
        self._thresholded = node
        values = numpy_support.vtk_to_numpy(data.GetPointData().GetScalars())
        low, high = float(np.percentile(values, THRESHOLD_DEFAULT_PERCENTILE)), float(values.max())
        effect.set_threshold_min_max_values((low, high))
        with self.state:
            self.state[key] = [low, high]

    def _threshold_key(self) -> Optional[str]:
        """The trame state name of trame-slicer's threshold range ([low, high])."""
        from trame_slicer.app.logic.segmentation.threshold_effect_logic import ThresholdEffectLogic
        for logic in _effect_logics(self.editor_logic):
            if isinstance(logic, ThresholdEffectLogic):
                return logic.name.threshold_slider.value
        return None

    def _publish(self, state: Dict[str, Any]) -> None:
        """The controller's state for the page, with every file path replaced."""
        state = _without_paths(state, self._secrets)
        self.last_action = time.monotonic()
        with self.state:
            self.state.imn = state
            self.state.imn_phase_ui = state["phase"]
            result = state["result"]
            self.state.imn_nomogram = self._nomogram() if result and not result["stale"] else ""

    def _nomogram(self) -> str:
        """The nomogram with this patient marked, as a data URL (drawn by the controller)."""
        with tempfile.NamedTemporaryFile(suffix=".png", dir=self.uploads.root, delete=False) as handle:
            path = Path(handle.name)
        try:
            if not self.controller.nomogram_png(str(path), width_px=NOMOGRAM_WIDTH_PX):
                return ""
            return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
        finally:
            path.unlink(missing_ok=True)

    def _start_polling(self, **_):
        asyncio.get_event_loop().create_task(self._poll())

    async def _poll(self) -> None:
        """The controller's throttled segment-size update (the live mL while painting), and the
        session's end after --idle-minutes without a user action."""
        while True:
            await asyncio.sleep(POLL_SECONDS)
            self.controller.poll()
            if time.monotonic() - self.last_action > 60.0 * self.options.idle_minutes:
                with self.state:
                    self.state.imn_ended = (f"This session ended after {self.options.idle_minutes:g} minutes without "
                                            "use; its uploads were removed. Reload the page for a new one.")
                await asyncio.sleep(1.0)  # the page gets the message before the socket closes
                await self.server.stop()
                return

    def _touch(self) -> None:
        """A user action: the idle clock starts again."""
        self.last_action = time.monotonic()

    # ------------------------------------------------------------------ page -> controller
    def _on_model_name(self, imn_model_name, **_):
        if imn_model_name and self.models.get(imn_model_name) != self.controller.model_path:
            self._on_model_chosen(imn_model_name)

    def _on_model_chosen(self, name: str) -> None:
        """Use one of the listed models (its signature checked again when a trusted key is set)."""
        path = self.models.get(name)
        if path is None:
            return
        if self.options.trusted_key:
            from IMNRiskLib.scoring.signing import load_trusted
            try:
                load_trusted(path, self.options.trusted_key)
            except InputError as exc:
                with self.state:
                    self.state.imn_load_error = study.redact(str(exc), self._secrets)
                return
        self.controller.load_model(path)

    def _on_phase_ui(self, imn_phase_ui, **_):
        if imn_phase_ui is not None and int(imn_phase_ui) != self.controller.phase():
            self.controller.choose_phase(int(imn_phase_ui))

    def _open(self, path) -> None:
        """Read a study (uploaded or typed path), show its second phase, start an empty tumour segment."""
        with self.state:
            self.state.imn_load_error = ""
        try:
            sequence = study.load_study(self.slicer_app.scene, path)
        except InputError as exc:
            with self.state:
                self.state.imn_load_error = study.redact(str(exc), self._secrets + [str(path)])
            return
        self.controller.new_patient()  # a new study is a new patient: no identifier, values or result kept
        self.controller.refresh_inputs()
        self.controller.choose_input(sequence.GetID())
        self.controller.new_segmentation()

    def _on_upload_chunk(self, files: List[Dict[str, Any]]) -> None:
        """One chunk of an upload (the page sends ~10 MB at a time; an empty list ends it). Beyond
        --max-upload-mb the rest is dropped and the upload refused (the page refuses it first)."""
        self._touch()
        limit = self.options.max_upload_mb * 1_000_000
        if files:
            if self._upload_bytes <= limit:
                self._upload_bytes += sum(len(study._content(f)) for f in files)
                self._upload = self._upload + list(files) if self._upload_bytes <= limit else []
            return
        upload, size = self._upload, self._upload_bytes
        self._upload, self._upload_bytes = [], 0
        if size > limit:
            with self.state:
                self.state.imn_load_error = study.upload_refusal(size, self.options.max_upload_mb)
            return
        try:
            path = self.uploads.write(upload)
        except InputError as exc:
            with self.state:
                self.state.imn_load_error = study.redact(str(exc), self._secrets)
            return
        self._open(path)

    def _on_open_path(self) -> None:
        typed = (self.state.imn_path or "").strip()
        if typed:
            self._open(Path(typed).expanduser())

    def _on_set_clinical(self, name: str, value: Any) -> None:
        self.controller.set_clinical(name, value)

    def _on_set_patient_id(self, value: Any) -> None:
        self.controller.set_patient_id(value)

    def _on_predict(self) -> None:
        self.controller.predict()

    def _on_results_csv(self) -> str:
        return study.results_csv(self.controller.results())

    def _on_mask_nrrd(self):
        c = self.controller
        segmentation = c.scene.GetNodeByID(c.segmentation_id) if c.segmentation_id else None
        if segmentation is None or not c.segment_id or c.displayed_node() is None:
            return None
        out = self.uploads.new_folder() / "mask.nrrd"
        try:
            study.mask_nrrd(c.scene, c.displayed_node(), segmentation, c.segment_id, out)
        except InputError as exc:
            with self.state:
                self.state.imn_load_error = str(exc)
            return None
        return self.server.protocol.addAttachment(out.read_bytes())

    # ------------------------------------------------------------------ layout
    def _build_ui(self) -> None:
        from trame_slicer.app.ui.segmentation import SegmentEditorUI

        with VAppLayout(self.server, theme="dark") as self.ui:
            client.Style("html { overflow-y: auto; } .imn-panel { width: 430px; overflow-y: auto; }"
                         " .imn-small { font-size: 0.8rem; } #imn-nomogram { cursor: zoom-in; }")
            with v.VAppBar(density="compact"):
                v.VToolbarTitle("IMNRisk: IMN metastasis risk")
                html.Span(RESEARCH_ONLY, id="imn-notice", classes="text-warning mx-4")
                v.VProgressLinear(indeterminate=True, absolute=True, location="bottom", color="primary",
                                  active=("!!trame__busy",))
            with v.VMain(), html.Div(classes="d-flex flex-row", style="height: calc(100vh - 48px);"):
                with v.VOverlay(model_value=("!!imn_ended",), persistent=True, classes="align-center justify-center"):
                    v.VAlert("{{ imn_ended }}", type="info", id="imn-ended")
                with html.Div(classes="imn-panel pa-2"):
                    self._study_card()
                    with v.VCard(classes="mb-2", v_if=("imn.displayed_node_id",), id="imn-tumour"):
                        v.VCardTitle("2. Tumour", classes="text-subtitle-1")
                        with v.VCardText():
                            html.Div("{{ imn.segment.voxels }} voxels, {{ imn.segment.ml.toFixed(2) }} mL",
                                     id="imn-volume", classes="text-h6",
                                     raw_attrs=[':data-voxels="imn.segment.voxels"', ':data-ml="imn.segment.ml"'])
                            html.Div("{{ imn.segment.warning }}", classes="text-warning imn-small")
                            html.Div("{{ imn.segment.note }}", v_if=("imn.segment.note",), id="imn-segment-note",
                                     classes="text-error imn-small")
                            self.segment_editor_ui = SegmentEditorUI()
                            with html.Div(classes="d-flex flex-row align-center mt-1", id="imn-undo-redo"):
                                html.Span("Undo / redo the last edits:", classes="imn-small mr-2")
                                self.segment_editor_ui.build_undo_redo_buttons()
                            self._threshold_fields()
                    self._form_card()
                    self._result_card()
                with html.Div(classes="flex-grow-1 d-flex", style="position: relative;"):
                    self.layout_manager.initialize_layout_grid(self.ui)
        self.editor_logic.set_ui(self.segment_editor_ui)
        self.state.imn_path = ""
        self.server.controller.trigger("imn_set_clinical")(self._on_set_clinical)
        self.server.controller.trigger("imn_set_patient_id")(self._on_set_patient_id)
        self.server.controller.trigger("imn_upload_chunk")(self._on_upload_chunk)
        self.server.controller.trigger("imn_results_csv")(self._on_results_csv)
        self.server.controller.trigger("imn_mask_nrrd")(self._on_mask_nrrd)

    def _threshold_fields(self) -> None:
        """The threshold range as numbers the user reads and types, inside trame-slicer's threshold
        panel (shown with it), bound to the same state as its slider."""
        from trame_slicer.segmentation import SegmentationEffectThreshold
        key = self._threshold_key()
        panel = self.segment_editor_ui.get_effect_ui(SegmentationEffectThreshold)
        if key is None or panel is None:
            return
        with panel, html.Div(classes="d-flex flex-row pt-2", style="gap: 8px;", id="imn-threshold-bounds"):
            for i, label in ((0, "lower bound"), (1, "upper bound")):
                other = f"{key}[{1 - i}]"
                pair = f"[Number($event.target.value), {other}]" if i == 0 else f"[{other}, Number($event.target.value)]"
                v.VTextField(model_value=(f"{key}[{i}].toPrecision(6)",), label=label, type="number",
                             density="compact", hide_details=True, id=f"imn-threshold-{'low' if i == 0 else 'high'}",
                             change=f"{key} = {pair}")

    def _upload_input(self, folder: bool) -> None:
        """A file (or folder) input that refuses an upload over --max-upload-mb before sending it,
        then sends it in chunks (trame-slicer's chunk loader) to imn_upload_chunk."""
        send = ("const files = $event.target.files; if (!files || !files.length) return;"
                " const total = [...files].reduce((s, f) => s + f.size, 0);"
                " if (total > imn_max_upload_mb * 1e6) { imn_load_error = 'Refused: the upload is '"
                " + Math.ceil(total / 1e6) + ' MB; this server accepts at most ' + imn_max_upload_mb"
                " + ' MB (imnrisk web --max-upload-mb).'; return; }"
                " imn_load_error = ''; imn_uploading = true;"
                " window.load_files_by_chunks(files, { trigger_name: 'imn_upload_chunk' })"
                ".finally(() => { imn_uploading = false; });")
        # hide_input: the chosen file's name (often the patient's) is not shown on the page
        v.VFileInput(multiple=True, prepend_icon="mdi-folder-upload" if folder else "mdi-file-upload",
                     hide_input=True, hide_details=True, id="imn-upload-folder" if folder else "imn-upload",
                     change=send, disabled=("imn_uploading",), raw_attrs=["webkitdirectory"] if folder else [],
                     title="Upload a DICOM folder" if folder else "Upload a file", style="flex: 0 0 auto;")

    def _study_card(self) -> None:
        with v.VCard(classes="mb-2"):
            v.VCardTitle("1. DCE study", classes="text-subtitle-1")
            with v.VCardText():
                html.Div("Upload a 4-D NRRD/NIfTI, a .seq.nrrd or a DICOM folder (at most "
                         "{{ imn_max_upload_mb }} MB), or type a path on this workstation. A new study starts "
                         "a new patient: the form and the result are cleared.", classes="imn-small")
                self.state.imn_uploading = False
                with html.Div(classes="d-flex flex-row align-center"):
                    self._upload_input(folder=False)
                    html.Span("file", classes="imn-small mr-4")
                    self._upload_input(folder=True)
                    html.Span("DICOM folder", classes="imn-small")
                    v.VProgressCircular(v_if=("imn_uploading",), indeterminate=True, size=20, classes="ml-2")
                with html.Div(classes="d-flex flex-row align-center"):
                    v.VTextField(v_model=("imn_path",), label="path", density="compact", hide_details=True,
                                 id="imn-path", keydown_enter=self._on_open_path)
                    v.VBtn("Open", click=self._on_open_path, id="imn-open", classes="ml-2")
                html.Div("{{ imn_load_error }}", v_if=("imn_load_error",), classes="text-error imn-small",
                         id="imn-load-error")
                with html.Div(v_if=("imn.phase_count >= 1",), id="imn-phase-box"):
                    html.Div("Phase {{ imn.phase + 1 }} of {{ imn.phase_count }} (scored and shown)",
                             id="imn-phase", raw_attrs=[':data-phase="imn.phase"'])
                    v.VSlider(v_if=("imn.phase_count > 1",),v_model=("imn_phase_ui",), min=0, max=("imn.phase_count - 1",), step=1,
                              show_ticks="always", hide_details=True, id="imn-phase-slider")

    def _form_card(self) -> None:
        with v.VCard(classes="mb-2"):
            v.VCardTitle("3. Clinical factors", classes="text-subtitle-1")
            with v.VCardText():
                html.Div(id="imn-patient", raw_attrs=[':data-patient-id="imn.patient_id || \'\'"'])
                v.VTextField(model_value=("imn.patient_id || ''",), label="Patient identifier",
                             placeholder="required before Predict", persistent_placeholder=True, density="compact",
                             id="imn-patient-id", autocomplete="off", classes="mb-2",
                             hint=("imn.patient_id ? '' : 'not entered'",), persistent_hint=True,
                             change="trigger('imn_set_patient_id', [$event.target.value])")
                v.VSelect(v_if=("imn_models.length > 1",), items=("imn_models",), v_model=("imn_model_name",),
                          label="Model", density="compact", hide_details=True, id="imn-model", classes="mb-2")
                html.Div("{{ imn.model ? imn.model.summary : (imn_models.length ? 'Choose a model.' : "
                         "'No model: start with --model MODEL.json or --models FOLDER') }}",
                         classes="imn-small", style="white-space: pre-line", id="imn-model-summary")
                html.Div("{{ imn.model && imn.model.banner }}", classes="text-warning imn-small")
                html.Div("{{ imn.model && imn.model.error }}", classes="text-error imn-small")
                with html.Div(v_if=("imn.model && imn.model.version_problems.length",), classes="imn-small"):
                    html.Div("{{ imn.model.version_problems.join('; ') }}", classes="text-warning")
                    v.VCheckbox(label="Score anyway (feature values may differ)", density="compact",
                                hide_details=True, model_value=("imn.model.version_mismatch_allowed",),
                                update_modelValue=(self.controller.allow_version_mismatch, "[$event]"),
                                id="imn-allow-mismatch")
                with html.Div(v_for="f in imn.form", key="f.name", classes="mb-1",
                              raw_attrs=[':data-field="f.name"', ':data-status="f.status"', ':data-value="f.value"']):
                    v.VSelect(v_if=("f.levels.length",), items=("f.levels",), model_value=("f.value",),
                              label=("f.title",), placeholder="not entered", persistent_placeholder=True,
                              hint=("f.status == 'valid' ? (f.message || '') : f.status + (f.message && f.status != 'not entered' ? ': ' + f.message : '')",),
                              persistent_hint=True, density="compact", clearable=True,
                              id=("'imn-field-' + f.name",),
                              update_modelValue="trigger('imn_set_clinical', [f.name, $event])")
                    v.VTextField(v_else=True, type="number", model_value=("f.value",),
                                 label=("f.title + (f.unit ? ' (' + f.unit + ')' : '')",),
                                 placeholder="not entered", persistent_placeholder=True,
                                 hint=("f.status == 'valid' ? (f.message || '') : f.status + (f.message && f.status != 'not entered' ? ': ' + f.message : '')",),
                                 persistent_hint=True, density="compact", id=("'imn-field-' + f.name",),
                                 change="trigger('imn_set_clinical', [f.name, $event.target.value])")
                v.VBtn("Predict", click=self._on_predict, disabled=("!imn.predict.enabled",), color="primary",
                       id="imn-predict", classes="mt-2")
                html.Div("{{ imn.predict.reason }}", v_if=("!imn.predict.enabled",), classes="imn-small",
                         id="imn-predict-reason")
                html.Div("{{ imn.error }}", v_if=("imn.error",), classes="text-error imn-small", id="imn-error")

    def _result_card(self) -> None:
        with v.VCard(classes="mb-2"):
            v.VCardTitle("4. Result", classes="text-subtitle-1")
            with v.VCardText():
                html.Div("Results cleared: an input changed. Press Predict again.", id="imn-stale",
                         v_if=("imn.result && imn.result.stale",), classes="text-warning")
                with html.Div(v_if=("imn.result && !imn.result.stale",), id="imn-result"):
                    # the scoring core's words, the verdict first; the number below it is a research detail
                    # when the verdict is "not reliable" (and the risk group is withheld)
                    html.Div("{{ imn.result.display.headline }}", id="imn-verdict",
                             raw_attrs=[':data-state="imn.result.verdict.state"'],
                             classes=("imn.result.verdict.state == 'not_reliable' ? 'text-h6 text-error' : "
                                      "(imn.result.verdict.state == 'extrapolation' ? 'text-warning' : 'text-success')",))
                    html.Div("{{ imn.result.display.banner }}", v_if=("imn.result.display.banner",), id="imn-banner",
                             classes="text-error font-weight-bold")
                    html.Div("IMN metastasis risk {{ imn.result.display.risk }}", id="imn-risk",
                             classes=("imn.result.verdict.state == 'not_reliable' ? 'imn-small' : 'text-h6'",),
                             raw_attrs=[':data-probability="JSON.stringify(imn.result.probability)"'])
                    html.Div("Risk group: {{ imn.result.display.group }}", id="imn-group")
                    html.Div("Rad-Score {{ imn.result.display.radscore }}; nomogram points "
                             "{{ imn.result.display.points }}", id="imn-radscore",
                             raw_attrs=[':data-radscore="JSON.stringify(imn.result.radscore)"'])
                    with html.Ul(classes="imn-small text-warning", id="imn-warnings"):
                        html.Li("{{ w }}", v_for="w in imn.result.warnings", key="w")
                    html.Img(src=("imn_nomogram",), v_if=("imn_nomogram",), style="width: 100%;",
                             id="imn-nomogram", title="Click to open the nomogram at full size",
                             click="imn_nomogram_open = true")
                    with v.VDialog(v_model=("imn_nomogram_open",), max_width="1200px", width="95vw"):
                        with v.VCard(id="imn-nomogram-dialog"):
                            html.Img(src=("imn_nomogram",), style="width: 100%;", id="imn-nomogram-full")
                            with v.VCardActions():
                                v.VBtn("Close", click="imn_nomogram_open = false", id="imn-nomogram-close")
                with html.Div(v_if=("imn.results.length",), classes="mt-2"):
                    html.Div("{{ imn.results.length }} prediction(s) this session", id="imn-results-count")
                    with html.Table(classes="imn-small", style="width: 100%;"):
                        with html.Tr():
                            for name in ("time", "patient_id", "phase", "verdict", "risk", "risk_group"):
                                html.Th(name)
                        with html.Tr(v_for="r in imn.results", key="r.time"):
                            for name in ("time", "patient_id", "phase", "verdict", "risk", "risk_group"):
                                html.Td(f"{{{{ r.{name} }}}}")
                with html.Div(classes="d-flex flex-row mt-2"):
                    v.VBtn("Results CSV", size="small", id="imn-download-csv", disabled=("!imn.results.length",),
                           click="utils.download('imnrisk-results.csv', trigger('imn_results_csv'), 'text/csv')")
                    v.VBtn("Mask NRRD", size="small", classes="ml-2", id="imn-download-mask",
                           disabled=("!imn.segment.voxels",),
                           click="utils.download('imnrisk-mask.nrrd', trigger('imn_mask_nrrd'), "
                                 "'application/octet-stream')")


def _three_slices_layout():
    from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition
    return Layout(LayoutDirection.Horizontal, [
        ViewLayoutDefinition.axial_view(),
        Layout(LayoutDirection.Vertical, [ViewLayoutDefinition.sagittal_view(), ViewLayoutDefinition.coronal_view()]),
    ])


def _effect_logics(editor_logic) -> list:
    """trame-slicer's per-effect logics of a SegmentEditorLogic (a private list in 2.0)."""
    return list(getattr(editor_logic, "_effect_logic", []) or [])


def _named_slice_view_ui(server, view_id: str, view) -> None:
    """trame-slicer's slice view gutter plus the view's name (Axial, Sagittal, Coronal) and Slicer's
    orientation cube (its faces lettered R/L, A/P, S/I)."""
    import slicer
    from trame_slicer.app.ui import create_vertical_slice_view_gutter_ui
    create_vertical_slice_view_gutter_ui(server, view_id, view)
    node = getattr(view, "_view_node", None)
    name = node.GetOrientation() if node is not None and hasattr(node, "GetOrientation") else ""
    try:
        view.set_orientation_marker(slicer.vtkMRMLAbstractViewNode.OrientationMarkerTypeCube,
                                    slicer.vtkMRMLAbstractViewNode.OrientationMarkerSizeSmall)
    except AttributeError:
        pass
    html.Div(name, classes="imn-view-name", raw_attrs=[f'data-view="{name}"'],
             style="position: absolute; top: 4px; left: 50%; transform: translateX(-50%); color: #ffd54f;"
                   " font-weight: bold; pointer-events: none; text-shadow: 0 0 3px black;")


def _without_paths(state: Dict[str, Any], secrets: List[str]) -> Dict[str, Any]:
    """The controller's state minus file paths: no model path, no features-CSV path, messages redacted
    (the pyradiomics line too: it names the install folder)."""
    state = dict(state)
    if state.get("pyradiomics"):
        state["pyradiomics"] = {**state["pyradiomics"], "message": study.redact(state["pyradiomics"]["message"], secrets)}
    if state.get("model"):
        state["model"] = {k: study.redact(val, secrets) for k, val in state["model"].items() if k != "path"}
    if state.get("features_csv"):
        state["features_csv"] = {"id": state["features_csv"].get("id")}
    state["error"] = study.redact(state.get("error"), secrets)
    if state.get("result"):
        result = dict(state["result"])
        result["warnings"] = [study.redact(w, secrets) for w in result.get("warnings") or []]
        if result.get("display"):
            result["display"] = {k: study.redact(v, secrets) for k, v in result["display"].items()}
        state["result"] = result
    state["predict"] = {**state["predict"], "reason": study.redact(state["predict"]["reason"], secrets)}
    return state
