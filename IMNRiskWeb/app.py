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
from .models import list_models
from .server import WebOptions
from .upload import ChunkedUpload, upload_input
from .views import effect_logics, named_slice_view_ui, three_slices_layout
from .warmup import warm_imports

POLL_SECONDS = 0.25
LAYOUT = "Axial, sagittal, coronal"
NOMOGRAM_WIDTH_PX = 1100  # drawn once at full size: the panel shows it scaled, a click opens it whole
ENTER_KEY = [("keydown_enter", "keydown.enter")]  # a text field's Enter (not one of VTextField's declared events)
THRESHOLD_DEFAULT_PERCENTILE = 99.5  # the threshold's default lower bound: the brightest 0.5% of the phase


def _later(call) -> None:
    """Run `call` on the event loop once the present handler has returned (its state sent)."""
    asyncio.get_event_loop().call_later(0.01, call)


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
        self._study_upload = ChunkedUpload(self.options.max_upload_mb)
        self._mask_upload = ChunkedUpload(self.options.max_upload_mb)
        self._study_path: Optional[Path] = None
        self._nomogram_for: Optional[Dict[str, Any]] = None  # the result the shown nomogram was drawn for
        self.last_action = time.monotonic()
        self.slicer_app = SlicerApp()
        sequences = self.slicer_app.register_module_logic(slicer.vtkSlicerSequencesLogic(), logic_name="Sequences")
        register_rca_factories(self.slicer_app.view_manager, self.server, slice_view_ui_f=named_slice_view_ui)
        self.layout_manager = LayoutManager(self.slicer_app.scene, self.slicer_app.view_manager, self.server)
        self.layout_manager.register_layout_dict({LAYOUT: three_slices_layout()})
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
        self.state.imn_mask_error = ""
        self.state.imn_mask_note = ""
        self.state.imn_mask_path = ""
        self.state.imn_mask_label = ""
        self.state.imn_study_dicom = False
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
        self.server.controller.on_client_connected.add(self._touch)  # the idle clock starts with the tab

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
        for logic in effect_logics(self.editor_logic):
            if isinstance(logic, ThresholdEffectLogic):
                return logic.name.threshold_slider.value
        return None

    def _publish(self, state: Dict[str, Any]) -> None:
        """The controller's state for the page, with every file path replaced."""
        state = study.without_paths(state, self._secrets)
        self.last_action = time.monotonic()
        with self.state:
            self.state.imn = state
            self.state.imn_phase_ui = state["phase"]
            result = state["result"]
            if not result or result["stale"]:
                self.state.imn_nomogram, self._nomogram_for = "", None
        if result and not result["stale"] and self._nomogram_for is not self.controller.result:
            self._nomogram_for = self.controller.result
            _later(self._draw_nomogram)

    def _draw_nomogram(self) -> None:
        """The nomogram of the shown result, drawn after the result has reached the page (the verdict
        and the numbers first; the drawing takes a few tenths of a second)."""
        if self._nomogram_for is None or self._nomogram_for is not self.controller.result:
            return
        picture = self._nomogram()
        with self.state:
            self.state.imn_nomogram = picture

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
        asyncio.get_event_loop().run_in_executor(None, warm_imports)

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

    def _touch(self, **_) -> None:
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
            self.uploads.discard(path)  # a refused upload is not kept
            return
        if self._study_path is not None and self._study_path != Path(path):
            self.uploads.discard(self._study_path)  # the previous study's upload, replaced by this one
        self._study_path = Path(path)
        with self.state:
            self.state.imn_mask_error, self.state.imn_mask_note = "", ""
        self.controller.new_patient()  # a new study is a new patient: no identifier, values or result kept
        sources = study.dicom_sources(path, self.controller.phase)
        self.controller.set_dicom_sources(sources)
        with self.state:
            self.state.imn_study_dicom = sources is not None
        self.controller.refresh_inputs()
        self.controller.choose_input(sequence.GetID())
        self.controller.new_segmentation()

    def _load_mask(self, path) -> None:
        """A segmentation file as the tumour: the controller reads it with the library's mask loader and
        the CLI's checks into a new editable segmentation; a bad file says why in one line beside the
        loader (without its name), the tumour as it was."""
        c = self.controller
        with self.state:
            self.state.imn_mask_error, self.state.imn_mask_note = "", ""
        if c.load_segmentation(str(path), self.state.imn_mask_label) is None:
            error, c.error = c.error, None  # said beside the loader, not under Predict
            self._publish(c.state())
            with self.state:
                self.state.imn_mask_error = study.redact(error, self._secrets + [str(path)])
            return
        warnings = (c.state().get("tumour_file") or {}).get("warnings") or []
        with self.state:
            self.state.imn_mask_note = study.redact(" ".join(warnings), self._secrets + [str(path)])

    def _on_upload_chunk(self, files: List[Dict[str, Any]]) -> None:
        """One chunk of a study upload; at its end the study is stored and opened."""
        self._receive(self._study_upload, files, "imn_load_error", self._open)

    def _on_mask_chunk(self, files: List[Dict[str, Any]]) -> None:
        """One chunk of a segmentation upload; at its end it is stored and loaded."""
        self._receive(self._mask_upload, files, "imn_mask_error", self._load_uploaded_mask)

    def _load_uploaded_mask(self, path: Path) -> None:
        """Load an uploaded segmentation; the file is removed once read (the segment holds its voxels)."""
        try:
            self._load_mask(path)
        finally:
            self.uploads.discard(path)

    def _receive(self, upload: ChunkedUpload, files: List[Dict[str, Any]], error: str, use) -> None:
        """Gather an upload under --max-upload-mb, store it under neutral names, then use it."""
        self._touch()
        done = upload.add(files)
        if done is None:
            return
        received, refusal = done
        try:
            if refusal:
                raise InputError(refusal)
            path = self.uploads.write(received)
        except InputError as exc:
            with self.state:
                self.state[error] = study.redact(str(exc), self._secrets)
            return
        use(path)

    def _on_open_path(self, typed: Optional[str] = None) -> None:
        typed = (self.state.imn_path if typed is None else typed or "").strip()
        if typed:
            self._open(Path(typed).expanduser())

    def _on_mask_path(self, typed: Optional[str] = None, label: Optional[str] = None) -> None:
        """Load the segmentation at the typed path (the page sends the field's text with the click or
        Enter, which may come before the field's state has reached the server)."""
        if label is not None:
            self.state.imn_mask_label = label
        typed = (self.state.imn_mask_path if typed is None else typed or "").strip()
        if typed:
            self._load_mask(Path(typed).expanduser())

    def _on_set_clinical(self, name: str, value: Any) -> None:
        self.controller.set_clinical(name, value)

    def _on_set_patient_id(self, value: Any) -> None:
        self.controller.set_patient_id(value)

    def _on_predict(self) -> None:
        self.controller.predict()

    def _on_results_csv(self) -> str:
        return study.results_csv(self.controller.results())

    def _on_dicom_zip(self):
        """The result as DICOM SEG + SR (with the patient identifier), zipped for download."""
        out = self.uploads.new_folder()
        try:
            written = self.controller.export_dicom(str(out))
            if not written:
                return None
            return self.server.protocol.addAttachment(study.zip_files([written["seg"], written["sr"]]))
        finally:
            self.uploads.discard(out)  # sent: nothing of it stays on the server

    def _on_mask_nrrd(self):
        c = self.controller
        segmentation = c.scene.GetNodeByID(c.segmentation_id) if c.segmentation_id else None
        if segmentation is None or not c.segment_id or c.displayed_node() is None:
            return None
        out = self.uploads.new_folder() / "mask.nrrd"
        try:
            study.mask_nrrd(c.scene, c.displayed_node(), segmentation, c.segment_id, out)
            return self.server.protocol.addAttachment(out.read_bytes())
        except InputError as exc:
            with self.state:
                self.state.imn_load_error = study.redact(str(exc), self._secrets)
            return None
        finally:
            self.uploads.discard(out)  # sent: nothing of it stays on the server

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
                            self._mask_loader()
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
        self.server.controller.trigger("imn_mask_chunk")(self._on_mask_chunk)
        self.server.controller.trigger("imn_dicom_zip")(self._on_dicom_zip)

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

    def _mask_loader(self) -> None:
        """Load an existing segmentation into the tumour segment: upload or path, and which label."""
        with html.Div(classes="mt-2", id="imn-mask-loader"):
            html.Div("Or load a segmentation (label map NRRD/NIfTI, .seg.nrrd, DICOM SEG, RTSTRUCT) into the "
                     "tumour segment, then correct it with the editor:", classes="imn-small")
            with html.Div(classes="d-flex flex-row align-center", style="gap: 8px;"):
                upload_input("imn_mask_chunk", "imn-mask-upload", "imn_mask_error", title="Upload a segmentation")
                v.VTextField(v_model=("imn_mask_path",), label="segmentation path", density="compact",
                             hide_details=True, id="imn-mask-path", __events=ENTER_KEY,
                             keydown_enter=(self._on_mask_path, "[imn_mask_path, imn_mask_label]"))
                v.VTextField(v_model=("imn_mask_label",), label="label", placeholder="1", persistent_placeholder=True,
                             density="compact", hide_details=True, id="imn-mask-label", style="max-width: 90px;",
                             title="label value, or segment / ROI name (as imnrisk predict --label)")
                v.VBtn("Load", click=(self._on_mask_path, "[imn_mask_path, imn_mask_label]"), id="imn-mask-open",
                      size="small")
            html.Div("{{ imn_mask_error }}", v_if=("imn_mask_error",), classes="text-error imn-small",
                     id="imn-mask-error")
            html.Div("{{ imn_mask_note }}", v_if=("imn_mask_note",), classes="text-warning imn-small",
                     id="imn-mask-note")

    def _study_card(self) -> None:
        with v.VCard(classes="mb-2"):
            v.VCardTitle("1. DCE study", classes="text-subtitle-1")
            with v.VCardText():
                html.Div("Upload a 4-D NRRD/NIfTI, a .seq.nrrd or a DICOM folder (at most "
                         "{{ imn_max_upload_mb }} MB), or type a path on this workstation. A new study starts "
                         "a new patient: the form and the result are cleared.", classes="imn-small")
                self.state.imn_uploading = False
                with html.Div(classes="d-flex flex-row align-center"):
                    upload_input("imn_upload_chunk", "imn-upload", "imn_load_error")
                    html.Span("file", classes="imn-small mr-4")
                    upload_input("imn_upload_chunk", "imn-upload-folder", "imn_load_error", folder=True)
                    html.Span("DICOM folder", classes="imn-small")
                    v.VProgressCircular(v_if=("imn_uploading",), indeterminate=True, size=20, classes="ml-2")
                with html.Div(classes="d-flex flex-row align-center"):
                    v.VTextField(v_model=("imn_path",), label="path", density="compact", hide_details=True,
                                 id="imn-path", __events=ENTER_KEY, keydown_enter=(self._on_open_path, "[imn_path]"))
                    v.VBtn("Open", click=(self._on_open_path, "[imn_path]"), id="imn-open", classes="ml-2")
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
                html.Div("{{ imn.model && imn.model.banner }}", classes="text-warning imn-small", id="imn-model-banner")
                html.Div("{{ imn.model && imn.model.error }}", classes="text-error imn-small", id="imn-model-error")
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
                    v.VBtn("DICOM SEG + SR", size="small", classes="ml-2", id="imn-download-dicom",
                           disabled=("!imn.export.enabled",), title=("imn.export.reason",),
                           click="utils.download('imnrisk-dicom.zip', trigger('imn_dicom_zip'), 'application/zip')")
                html.Div("{{ imn_study_dicom ? imn.export.reason : 'DICOM SEG + SR needs a DICOM study (its folder "
                         "uploaded or opened by path).' }}", v_if=("imn.result && !imn.export.enabled",),
                         classes="imn-small", id="imn-export-reason")
