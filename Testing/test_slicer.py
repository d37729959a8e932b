"""The Slicer module: its MRML <-> SimpleITK glue and scoring, headless with the slicer-core wheel
(MRML without the application), against the file-based `imnrisk predict`; and a static check that
the .ui and the Python code agree."""

from __future__ import annotations

import ast
import json
import re
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import ROOT, pyradiomics_data, run_cli

sys.path.insert(0, str(ROOT / "IMNRisk"))
slicer = pytest.importorskip("slicer", reason="slicer-core is installed by make install (test extra)")
from IMNRiskLib.errors import InputError  # noqa: E402
from IMNRiskSlicer import mrml  # noqa: E402
from IMNRiskSlicer.logic import ScoringLogic, training_commands  # noqa: E402

UI = ROOT / "IMNRisk" / "Resources" / "UI" / "IMNRisk.ui"
MODULE = ROOT / "IMNRisk" / "IMNRisk.py"


# --------------------------------------------------------------------------- static UI check

def ui_widgets():
    return {w.get("name"): w.get("class") for w in ET.parse(UI).iter("widget")}


def parameter_fields():
    tree = ast.parse(MODULE.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(getattr(d, "id", None) == "parameterNodeWrapper"
                                                  for d in node.decorator_list):
            return {s.target.id for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError("no @parameterNodeWrapper class")


def test_every_widget_the_code_uses_exists_with_the_expected_class():
    widgets = ui_widgets()
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE.read_text(encoding="utf-8")))
    assert used and not used - set(widgets), sorted(used - set(widgets))
    expected = {"inputVolumeSelector": "qMRMLNodeComboBox", "segmentationSelector": "qMRMLNodeComboBox",
                "segmentSelector": "qMRMLSegmentSelectorWidget", "segmentEditorWidget": "qMRMLSegmentEditorWidget",
                "modelPathLineEdit": "ctkPathLineEdit", "cohortPathLineEdit": "ctkPathLineEdit",
                "outputFolderLineEdit": "ctkPathLineEdit", "pointsTableView": "qMRMLTableView",
                "featuresTableView": "qMRMLTableView", "phaseSpinBox": "QSpinBox", "predictButton": "QPushButton",
                "trainingProgressBar": "QProgressBar", "clinicalFormWidget": "QWidget"}
    for name, cls in expected.items():
        assert widgets.get(name) == cls, (name, widgets.get(name))
    assert sum(cls == "ctkCollapsibleButton" for cls in widgets.values()) >= 5


def test_every_slicer_parameter_name_is_a_parameter_node_field():
    fields = parameter_fields()
    names = [p.find("string").text for p in ET.parse(UI).iter("property") if p.get("name") == "SlicerParameterName"]
    assert names and set(names) <= fields, set(names) - fields
    assert {"inputVolume", "phase", "segmentation", "cvRepeats", "bootstrap"} <= set(names)
    # no parameter-node connector fits these: the code syncs them by hand
    text = MODULE.read_text(encoding="utf-8")
    assert "segmentId" in fields and "setCurrentSegmentID" in text
    for field, widget in (("modelPath", "modelPathLineEdit"), ("cohortPath", "cohortPathLineEdit"),
                          ("schemaPath", "schemaPathLineEdit"), ("outputFolder", "outputFolderLineEdit")):
        assert field in fields and f"self.ui.{widget}" in text and f"p.{field}" in text, field


def test_the_module_follows_slicer_conventions():
    text = MODULE.read_text(encoding="utf-8")
    for needle in ("class IMNRisk(ScriptedLoadableModule)", "class IMNRiskWidget(ScriptedLoadableModuleWidget",
                   "class IMNRiskLogic(ScriptedLoadableModuleLogic", "class IMNRiskTest(ScriptedLoadableModuleTest)",
                   "@parameterNodeWrapper", "connectGui(self.ui)", "pip_ensure", "pip_install", "SetSingletonTag",
                   "qt.QProcess"):
        assert needle in text, needle
    tree = ast.parse(text)
    top_calls = [n for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    assert not top_calls  # nothing (e.g. a pip install) runs at import time
    cmake = (ROOT / "IMNRisk" / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "WITH_GENERIC_TESTS" in cmake and "slicer_add_python_unittest" in cmake
    for script in re.findall(r"^\s+(IMNRiskSlicer/\S+\.py)", cmake, re.M):
        assert (ROOT / "IMNRisk" / script).exists(), script
    top = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "EXTENSION_DEPENDS \"SlicerRadiomics\"" in top and "add_subdirectory(IMNRisk)" in top


# --------------------------------------------------------------------------- headless MRML logic

def read_volume(scene, path, class_name="vtkMRMLScalarVolumeNode"):
    node = scene.AddNewNodeByClass(class_name, path.stem)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    return node


def breast1_scene():
    """A scene with breast1 as a volume node and its label as a segmentation (the MRML path)."""
    data = pyradiomics_data()
    scene = slicer.vtkMRMLScene()
    volume = read_volume(scene, data / "breast1_image.nrrd")
    segmentation, segment_id = segmentation_from_labelmap(scene, data / "breast1_label.nrrd")
    return scene, volume, segmentation, segment_id


def segmentation_from_labelmap(scene, path):
    labelmap = read_volume(scene, path, "vtkMRMLLabelMapVolumeNode")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "tumour")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
    return segmentation, segmentation.GetSegmentation().GetNthSegmentID(0)


@pytest.fixture(scope="module")
def model(trained_phantom):
    out, _, _ = trained_phantom
    doc = json.loads((out / "model.json").read_text(encoding="utf-8"))
    levels = {v["name"]: v.get("levels") for v in doc["clinical"]["schema"]["variables"]}
    clinical = {f: levels[f][-1] for f in doc["clinical"]["factors"]}
    return out / "model.json", clinical


def cli_predict(model_path, clinical, image, mask, *extra):
    result = run_cli("predict", model_path, "--image", image, "--mask", mask, "--json", *extra,
                     "--clinical", *[f"{k}={v}" for k, v in clinical.items()])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_same_score(ours, theirs):
    assert ours["radscore"] == pytest.approx(theirs["radscore"], rel=0, abs=1e-9)
    assert ours["probability"] == pytest.approx(theirs["probability"], rel=1e-9)
    assert ours["points"] == pytest.approx(theirs["points"], rel=1e-9)


def test_volume_node_to_sitk_equals_reading_the_file():
    """Same voxels at the same physical points (Slicer may store a left-handed grid with its k axis
    reversed; the physical image is what must agree)."""
    scene = slicer.vtkMRMLScene()
    path = pyradiomics_data() / "brain1_image.nrrd"  # a non-identity, left-handed direction
    image = mrml.volume_to_sitk(read_volume(scene, path))
    ref = sitk.ReadImage(str(path))
    assert ref.GetDirection() != (1, 0, 0, 0, 1, 0, 0, 0, 1)
    np.testing.assert_allclose(image.GetSpacing(), ref.GetSpacing(), atol=1e-9)
    for corner in ((0, 0, 0), tuple(s - 1 for s in ref.GetSize())):
        point = ref.TransformIndexToPhysicalPoint(corner)
        index = image.TransformPhysicalPointToIndex(point)
        np.testing.assert_allclose(image.TransformIndexToPhysicalPoint(index), point, atol=1e-4)
        assert image[index] == ref[corner]
    resampled = sitk.Resample(image, ref, sitk.Transform(), sitk.sitkNearestNeighbor)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(resampled), sitk.GetArrayFromImage(ref))


def test_scoring_breast1_from_nodes_equals_imnrisk_predict_on_the_files(model):
    model_path, clinical = model
    data = pyradiomics_data()
    scene, volume, segmentation, segment_id = breast1_scene()
    logic = ScoringLogic(scene)
    ours = logic.predict(volume, segmentation, segment_id, clinical, model_path)
    assert_same_score(ours, cli_predict(model_path, clinical, data / "breast1_image.nrrd", data / "breast1_label.nrrd"))
    voxels, ml = logic.segment_size(volume, segmentation, segment_id)
    assert voxels == int((sitk.GetArrayFromImage(sitk.ReadImage(str(data / "breast1_label.nrrd"))) == 1).sum())
    points, feats = logic.results_to_tables(ours)
    assert points.GetNumberOfRows() == len(ours["points"]) and feats.GetNumberOfRows() == 4 + len(ours["features"])


def test_multiphase_sequence_and_vector_volume_default_to_the_second_phase(model, tmp_path):
    model_path, clinical = model
    data = pyradiomics_data()
    base = sitk.ReadImage(str(data / "breast1_image.nrrd"))
    phases = [sitk.Cast(sitk.Cast(base, sitk.sitkFloat32) * (1.0 + 0.7 * t) + 10.0 * t, sitk.sitkInt16)
              for t in range(4)]
    for p in phases:
        p.CopyInformation(base)
    four_d = tmp_path / "dce.nrrd"
    sitk.WriteImage(sitk.JoinSeries(phases), str(four_d))
    reference = cli_predict(model_path, clinical, four_d, data / "breast1_label.nrrd")
    scene = slicer.vtkMRMLScene()
    segmentation, segment_id = segmentation_from_labelmap(scene, data / "breast1_label.nrrd")
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "DCE")
    for t, p in enumerate(phases):
        sequence.SetDataNodeAtValue(mrml.sitk_to_volume(p, scene, f"phase {t}"), str(t))
    vector = mrml.sitk_to_volume(sitk.Compose(phases), scene, "DCE vector", "vtkMRMLVectorVolumeNode")
    logic = ScoringLogic(scene)
    for node in (sequence, vector):
        assert mrml.phase_count(node) == 4
        ours = logic.predict(node, segmentation, segment_id, clinical, model_path)
        assert ours["phase"] == 1
        assert_same_score(ours, reference)
    third = logic.predict(sequence, segmentation, segment_id, clinical, model_path, phase=3)
    assert_same_score(third, cli_predict(model_path, clinical, four_d, data / "breast1_label.nrrd", "--phase", "3"))
    with pytest.raises(InputError, match="phase 5 requested"):
        logic.predict(vector, segmentation, segment_id, clinical, model_path, phase=5)


def test_non_identity_direction_gives_the_same_score_as_the_files(model, tmp_path):
    model_path, clinical = model
    data = pyradiomics_data()
    image, label = (sitk.ReadImage(str(data / f"breast1_{k}.nrrd")) for k in ("image", "label"))
    direction = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # rotated 90 degrees about z (LPS)
    for img in (image, label):
        img.SetDirection(direction)
        img.SetOrigin((12.5, -40.0, 7.0))
    sitk.WriteImage(image, str(tmp_path / "img.nrrd"))
    sitk.WriteImage(label, str(tmp_path / "lab.nrrd"))
    scene = slicer.vtkMRMLScene()
    volume = read_volume(scene, tmp_path / "img.nrrd")
    segmentation, segment_id = segmentation_from_labelmap(scene, tmp_path / "lab.nrrd")
    ours = ScoringLogic(scene).predict(volume, segmentation, segment_id, clinical, model_path)
    assert_same_score(ours, cli_predict(model_path, clinical, tmp_path / "img.nrrd", tmp_path / "lab.nrrd"))


def test_empty_segment_and_bad_clinical_values_are_clear_errors(model):
    model_path, clinical = model
    scene, volume, segmentation, segment_id = breast1_scene()
    empty = segmentation.GetSegmentation().AddEmptySegment("nothing yet")
    logic = ScoringLogic(scene)
    with pytest.raises(InputError, match="segment 'nothing yet' is empty: paint the tumour first|is empty"):
        logic.predict(volume, segmentation, empty, clinical, model_path)
    with pytest.raises(InputError, match="not found"):
        logic.predict(volume, segmentation, "no-such-segment", clinical, model_path)
    name = next(iter(clinical))
    with pytest.raises(InputError, match=f"{name}: unknown value 'bogus'"):
        logic.predict(volume, segmentation, segment_id, {**clinical, name: "bogus"}, model_path)


def test_training_commands_run_imnrisk_in_a_separate_process(tmp_path):
    steps = training_commands(str(tmp_path / "cohort.csv"), str(tmp_path / "out"), cv_repeats=3, bootstrap=10, jobs=1)
    assert [s[3] for s in steps] == ["extract", "train"]
    assert steps[1][steps[1].index("--cv-repeats") + 1] == "3" and "--force" in steps[1]
    import subprocess
    version = subprocess.run(steps[0][:3] + ["--version"], capture_output=True, encoding="utf-8", errors="replace")
    assert version.returncode == 0 and version.stdout.startswith("imnrisk ")


def test_the_module_logic_loads_before_optional_packages_are_installed():
    """Slicer ships numpy and SimpleITK, not pandas & co: importing the logic must not need them
    (IMNRisk asks before installing them, on first use)."""
    import subprocess
    code = ("import builtins, sys; sys.path.insert(0, {!r}); real = builtins.__import__\n"
            "def guard(name, *a, **k):\n"
            "    if name.split('.')[0] in ('pandas', 'sklearn', 'statsmodels', 'yaml', 'glum', 'radiomics', "
            "'tqdm', 'matplotlib', 'scipy'):\n"
            "        raise ImportError(name)\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = guard\n"
            "import IMNRiskSlicer.logic, IMNRiskSlicer.mrml\n").format(str(ROOT / "IMNRisk"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", errors="replace", cwd=ROOT)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- the controller (issue #10)

from IMNRiskSlicer.controller import ScoringController, segment_voxels  # noqa: E402


def dce_phases(n=4):
    """n phases of breast1 with distinct intensities (a DCE series whose phases score differently)."""
    base = sitk.ReadImage(str(pyradiomics_data() / "breast1_image.nrrd"))
    phases = [sitk.Cast(sitk.Cast(base, sitk.sitkFloat32) * (1.0 + 0.7 * t) + 10.0 * t, sitk.sitkInt16)
              for t in range(n)]
    for p in phases:
        p.CopyInformation(base)
    return phases


def add_sequence(scene, phases, name="DCE"):
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    for t, p in enumerate(phases):
        node = mrml.sitk_to_volume(p, scene, f"{name} item {t}")
        sequence.SetDataNodeAtValue(node, str(t))
        scene.RemoveNode(node)
    return sequence


def voxels_of(node) -> np.ndarray:
    return sitk.GetArrayFromImage(mrml.volume_to_sitk(node))


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class RecordingEditor:
    """Records what the controller asks of a qMRMLSegmentEditorWidget, in order."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args: self.calls.append((name, args[0].GetID() if args and hasattr(args[0], "GetID")
                                                else (args[0] if args else None)))


def paint(segmentation, segment_id, reference, centre, radii):
    """One brush stroke as the Paint effect applies it: an ellipsoid (in voxels, k j i) merged into
    the segment's binary labelmap on the reference grid (no scene node involved)."""
    from vtk.util import numpy_support
    import vtk
    array = voxels_of(reference)
    k, j, i = np.indices(array.shape)
    blob = (((k - centre[0]) / radii[0]) ** 2 + ((j - centre[1]) / radii[1]) ** 2
            + ((i - centre[2]) / radii[2]) ** 2 <= 1).astype(np.uint8)
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    matrix = vtk.vtkMatrix4x4()
    reference.GetIJKToRASMatrix(matrix)
    image.SetImageToWorldMatrix(matrix)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(blob.reshape(-1), deep=True,
                                                               array_type=vtk.VTK_UNSIGNED_CHAR))
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    assert logic.SetBinaryLabelmapToSegment(image, segmentation, segment_id, logic.MODE_MERGE_MAX)
    return blob


def fill_form(controller, clinical):
    for name, value in clinical.items():
        controller.set_clinical(name, value)


def test_sequence_proxy_node_is_shown_edited_and_scored_at_the_chosen_phase(model, tmp_path):
    """Defect 1: the node in the views and the editor is the browser's proxy, in the scene, and the
    number scored is computed on that same node at the chosen phase."""
    model_path, clinical = model
    phases = dce_phases()
    four_d = tmp_path / "dce.nrrd"
    sitk.WriteImage(sitk.JoinSeries(phases), str(four_d))
    scene = slicer.vtkMRMLScene()
    shown = []
    controller = ScoringController(scene, show_volume=shown.append)
    add_sequence(scene, phases)
    editor = RecordingEditor()
    controller.editor_enter(editor)
    segmentation, segment_id = segmentation_from_labelmap(scene, pyradiomics_data() / "breast1_label.nrrd")
    controller.choose_segmentation(segmentation.GetID())
    controller.choose_segment(segment_id)
    controller.load_model(str(model_path))
    fill_form(controller, clinical)
    controller.choose_phase(3)
    state = controller.state()
    proxy = scene.GetNodeByID(state["displayed_node_id"])
    assert proxy is not None and scene.IsNodePresent(proxy)
    assert controller.sequences_logic.GetFirstBrowserNodeForProxyNode(proxy) is not None
    np.testing.assert_array_equal(voxels_of(proxy), sitk.GetArrayFromImage(phases[3]))
    assert shown and shown[-1] is proxy
    assert ("setSourceVolumeNode", proxy.GetID()) in editor.calls
    assert state["phase"] == 3 and state["phase_count"] == 4
    result = controller.predict()
    assert result is not None, controller.state()["error"]
    assert result["phase"] == 3
    assert_same_score(result, cli_predict(model_path, clinical, four_d, pyradiomics_data() / "breast1_label.nrrd",
                                          "--phase", "3"))


def test_every_multiphase_input_defaults_to_the_second_phase_and_proxies_are_not_offered():
    """Defect 2: a sequence, a vector (multi-volume) node and per-phase volumes all open at phase
    1; proxies, label maps and IMNRisk's own sequences are not inputs; a scalar volume is phase 0."""
    phases = dce_phases(3)
    scene = slicer.vtkMRMLScene()
    controller = ScoringController(scene)
    sequence = add_sequence(scene, phases)              # the sequence grows while "loading"
    assert controller.state()["input"] == sequence.GetID() and controller.state()["phase"] == 1
    vector = mrml.sitk_to_volume(sitk.Compose(phases), scene, "DCE vector", "vtkMRMLVectorVolumeNode")
    for t, p in enumerate(phases):
        mrml.sitk_to_volume(p, scene, f"Ax DCE phase {t + 1}")
    mrml.sitk_to_volume(sitk.ReadImage(str(pyradiomics_data() / "breast1_label.nrrd")), scene, "label",
                        "vtkMRMLLabelMapVolumeNode")
    single = mrml.sitk_to_volume(phases[0], scene, "T2")
    controller.poll()
    offered = {i["id"]: i for i in controller.state()["inputs"]}
    kinds = sorted(i["kind"] for i in offered.values())
    assert kinds.count("sequence") == 1 and kinds.count("vector") == 1 and kinds.count("phases") == 1
    proxy_ids = set()
    for input_id, entry in offered.items():
        controller.choose_input(input_id)
        state = controller.state()
        if entry["kind"] == "volume":
            assert state["phase"] == 0 and state["phase_count"] == 1
            continue
        assert state["phase"] == 1 and state["phase_count"] == 3, entry
        shown = voxels_of(scene.GetNodeByID(state["displayed_node_id"]))
        np.testing.assert_array_equal(shown, sitk.GetArrayFromImage(phases[1]))
        proxy_ids.add(state["displayed_node_id"])
    names = {i["name"] for i in controller.state()["inputs"]}
    assert "label" not in names and "T2" in names
    assert not proxy_ids & set(offered) and not proxy_ids & {i["id"] for i in controller.state()["inputs"]}
    assert vector.GetID() in offered and single.GetID() in offered


def test_segment_editor_gets_the_segmentation_before_the_source_volume_and_is_released_on_exit():
    """Defect 3: enter installs shortcuts and sets the segmentation first; exit clears the active
    effect, uninstalls shortcuts and view observers, and the editor is no longer driven."""
    scene = slicer.vtkMRMLScene()
    controller = ScoringController(scene)
    add_sequence(scene, dce_phases(3))
    editor = RecordingEditor()
    controller.editor_enter(editor)
    controller.new_segmentation()
    names = [c[0] for c in editor.calls]
    assert names[0] == "installKeyboardShortcuts"
    last_seg = max(i for i, n in enumerate(names) if n == "setSegmentationNode")
    assert names[last_seg + 1] == "setSourceVolumeNode"
    assert editor.calls[last_seg] == ("setSegmentationNode", controller.state()["segmentation_id"])
    assert editor.calls[last_seg + 1] == ("setSourceVolumeNode", controller.state()["displayed_node_id"])
    before = len(editor.calls)
    controller.choose_phase(2)   # same proxy node: the editor keeps its source volume, now showing phase 2
    assert len(editor.calls) == before
    controller.editor_exit(editor)
    assert [c[0] for c in editor.calls[before:]] == ["setActiveEffect", "uninstallKeyboardShortcuts",
                                                     "removeViewObservations"]
    assert editor.calls[before] == ("setActiveEffect", None)
    controller.new_segmentation()
    assert len(editor.calls) == before + 3


def test_live_segment_size_follows_painting_throttled_without_temporary_nodes():
    """Defect 4: counted from the segment's own labelmap, no node added per stroke, at most one
    recount per interval, the last stroke always shown after poll()."""
    scene = slicer.vtkMRMLScene()
    clock = FakeClock()
    controller = ScoringController(scene, size_interval_s=0.25, clock=clock)
    add_sequence(scene, dce_phases(2))
    controller.new_segmentation()
    state = controller.state()
    segmentation, segment_id = scene.GetNodeByID(state["segmentation_id"]), state["segment_id"]
    reference = scene.GetNodeByID(state["displayed_node_id"])
    added = []
    tag = scene.AddObserver(scene.NodeAddedEvent, lambda *a: added.append(1))
    updates = []
    controller.add_listener(lambda s: updates.append(s["segment"]["voxels"]))
    total = None
    for stroke in range(5):
        blob = paint(segmentation, segment_id, reference, (2, 40 + 3 * stroke, 60), (1.5, 6, 6))
        total = blob if total is None else np.maximum(total, blob)
        clock.now += 0.05
    scene.RemoveObserver(tag)
    assert not added
    assert controller.state()["segment"]["pending"]
    assert len(set(updates)) <= 2  # the first stroke, then held back by the throttle
    clock.now += 0.3
    controller.poll()
    size = controller.state()["segment"]
    spacing = np.prod(mrml.volume_to_sitk(reference).GetSpacing())
    assert size["voxels"] == int(total.sum()) and not size["pending"]
    assert size["ml"] == pytest.approx(total.sum() * spacing / 1000.0, rel=1e-9)
    assert segment_voxels(segmentation, segment_id)[0] == int(total.sum())


def test_clinical_form_starts_not_entered_and_gates_predict(model):
    """Defect 5: no value is pre-filled; Predict stays disabled, saying why, until every factor
    the model needs is valid; a bad value is marked, not accepted."""
    model_path, clinical = model
    scene, volume, segmentation, segment_id = breast1_scene()
    controller = ScoringController(scene)
    controller.load_model(str(model_path))
    form = controller.state()["form"]
    assert [f["name"] for f in form] == list(clinical)
    assert all(f["status"] == "not entered" and f["value"] is None for f in form)
    gate = controller.state()["predict"]
    assert not gate["enabled"] and form[0]["title"] in gate["reason"]
    assert controller.predict() is None and controller.state()["results"] == []
    name = next(iter(clinical))
    controller.set_clinical(name, "bogus")
    assert next(f for f in controller.state()["form"] if f["name"] == name)["status"] == "out of range"
    fill_form(controller, clinical)
    assert all(f["status"] == "valid" for f in controller.state()["form"])
    assert controller.state()["predict"]["enabled"], controller.state()["predict"]
    controller.set_clinical(name, None)
    assert not controller.state()["predict"]["enabled"]


def test_results_become_stale_when_any_input_changes(model):
    """Defect 5: a shown result is marked stale by a new clinical value, phase, segment stroke or input."""
    model_path, clinical = model
    scene = slicer.vtkMRMLScene()
    controller = ScoringController(scene)
    add_sequence(scene, dce_phases(3))
    segmentation, segment_id = segmentation_from_labelmap(scene, pyradiomics_data() / "breast1_label.nrrd")
    controller.choose_segmentation(segmentation.GetID())
    controller.load_model(str(model_path))
    fill_form(controller, clinical)
    reference = scene.GetNodeByID(controller.state()["displayed_node_id"])
    name, levels = next(iter(clinical)), next(f["levels"] for f in controller.state()["form"])
    changes = [lambda: controller.set_clinical(name, levels[0]), lambda: controller.choose_phase(2),
               lambda: paint(segmentation, segment_id, reference, (2, 30, 30), (1, 2, 2)),
               lambda: controller.choose_segment(segment_id)]
    for change in changes:
        assert controller.predict() is not None, controller.state()["error"]
        assert controller.state()["result"]["stale"] is False
        change()
        assert controller.state()["result"]["stale"] is True, change
    controller.clear()
    assert controller.state()["result"] is None and len(controller.state()["results"]) == len(changes)


def test_every_prediction_warning_and_out_of_range_radscore_is_shown(model, tmp_path):
    """Defect 5: a Rad-Score outside the training range (the nomogram axis) is said, with the
    prediction's own warnings; nothing is dropped."""
    from IMNRiskLib.modelfile import seal
    model_path, clinical = model
    doc = json.loads(model_path.read_text(encoding="utf-8"))
    axis = next(a for a in doc["nomogram"]["axes"] if a["name"] == "radscore")
    scene, volume, segmentation, segment_id = breast1_scene()
    controller = ScoringController(scene)
    controller.load_model(str(model_path))
    fill_form(controller, clinical)
    radscore = controller.predict()["radscore"]
    axis["values"] = [radscore + 1.0, radscore + 2.0]   # a model whose training range excludes this patient
    narrow = tmp_path / "narrow.json"
    narrow.write_text(json.dumps(seal({k: v for k, v in doc.items() if k != "sha256"})), encoding="utf-8")
    controller.load_model(str(narrow))
    fill_form(controller, clinical)
    result = controller.predict()
    assert result["radscore"] == pytest.approx(radscore)
    shown = controller.state()["result"]["warnings"]
    assert any("outside the training range" in w for w in shown), shown
    if doc["training"].get("synthetic"):
        assert any("SYNTHETIC" in w for w in shown)


def test_each_prediction_appends_one_row_to_the_results_table(model):
    """Defect 6: time, model SHA-256, phase, segment, inputs, Rad-Score, risk with CI and points,
    in a table node of the scene (saved with it)."""
    model_path, clinical = model
    scene = slicer.vtkMRMLScene()
    controller = ScoringController(scene)
    add_sequence(scene, dce_phases(3))
    segmentation, segment_id = segmentation_from_labelmap(scene, pyradiomics_data() / "breast1_label.nrrd")
    controller.choose_segmentation(segmentation.GetID())
    controller.load_model(str(model_path))
    fill_form(controller, clinical)
    first = controller.predict()
    controller.choose_phase(2)
    second = controller.predict()
    table = scene.GetNodeByID(controller.state()["results_table_id"])
    assert table.IsA("vtkMRMLTableNode") and table.GetNumberOfRows() == 2
    rows = controller.state()["results"]
    sha = json.loads(model_path.read_text(encoding="utf-8"))["sha256"]
    for row, result in zip(rows, (first, second)):
        assert row["model_sha256"] == sha and row["phase"] == str(result["phase"])
        assert row["segment"] == segmentation.GetSegmentation().GetSegment(segment_id).GetName()
        assert json.loads(row["inputs"]) == clinical
        assert float(row["radscore"]) == pytest.approx(result["radscore"], abs=1e-6)
        assert float(row["risk"]) == pytest.approx(result["probability"], abs=1e-6)
        assert [float(row["ci95_low"]), float(row["ci95_high"])] == pytest.approx(result["ci95"], abs=1e-6)
        assert json.loads(row["points"])["total"] == pytest.approx(result["points"]["total"], abs=1e-3)
    assert [r["phase"] for r in rows] == ["1", "2"] and rows[0]["radscore"] != rows[1]["radscore"]


def test_nomogram_fits_the_panel_marks_the_patient_and_is_closed(model, tmp_path):
    """Defect 6: 420 px wide, the patient's markers drawn (vermilion), no figure left open."""
    import matplotlib.pyplot as plt
    from matplotlib.image import imread
    model_path, clinical = model
    scene, volume, segmentation, segment_id = breast1_scene()
    controller = ScoringController(scene)
    controller.load_model(str(model_path))
    fill_form(controller, clinical)
    controller.predict()
    open_before = set(plt.get_fignums())
    path = controller.nomogram_png(str(tmp_path / "nomogram.png"), width_px=420)
    assert set(plt.get_fignums()) == open_before
    pixels = imread(path)
    assert pixels.shape[1] == 420 and pixels.shape[0] < 420
    vermilion = (np.abs(pixels[..., 0] - 0xD5 / 255) < 0.08) & (np.abs(pixels[..., 1] - 0x5E / 255) < 0.08) \
        & (np.abs(pixels[..., 2] - 0.0) < 0.08)
    assert vermilion.sum() > 20


def other_software_model(model_path, tmp_path):
    from IMNRiskLib.modelfile import seal
    doc = json.loads(model_path.read_text(encoding="utf-8"))
    doc["software"]["pyradiomics"] = "2.2.0"
    path = tmp_path / "old_pyradiomics.json"
    path.write_text(json.dumps(seal({k: v for k, v in doc.items() if k != "sha256"})), encoding="utf-8")
    return path


def test_predict_refuses_a_model_from_other_extraction_software_unless_allowed(model, tmp_path):
    """Item 8: the CLI and the controller refuse a model whose recorded pyradiomics differs from
    the running one, with a clear message; --allow-version-mismatch scores and warns."""
    model_path, clinical = model
    data = pyradiomics_data()
    old = other_software_model(model_path, tmp_path)
    args = ["predict", old, "--image", data / "breast1_image.nrrd", "--mask", data / "breast1_label.nrrd", "--json",
            "--clinical", *[f"{k}={v}" for k, v in clinical.items()]]
    refused = run_cli(*args)
    assert refused.returncode == 2 and "pyradiomics 2.2.0 in the model" in refused.stderr
    assert "Traceback" not in refused.stderr and refused.stdout == ""
    allowed = run_cli(*args, "--allow-version-mismatch")
    assert allowed.returncode == 0 and "version mismatch allowed" in allowed.stderr
    assert_same_score(json.loads(allowed.stdout), cli_predict(model_path, clinical, data / "breast1_image.nrrd",
                                                              data / "breast1_label.nrrd"))
    scene, volume, segmentation, segment_id = breast1_scene()
    with pytest.raises(InputError, match="pyradiomics 2.2.0"):
        ScoringLogic(scene).predict(volume, segmentation, segment_id, clinical, old)
    controller = ScoringController(scene)
    controller.load_model(str(old))
    fill_form(controller, clinical)
    gate = controller.state()["predict"]
    assert not gate["enabled"] and "pyradiomics 2.2.0" in gate["reason"]
    controller.allow_version_mismatch(True)
    assert controller.predict() is not None
    assert any("version mismatch allowed" in w for w in controller.state()["result"]["warnings"])


def test_without_pyradiomics_a_patient_is_scored_from_a_features_csv(model, tmp_path):
    """Item 8: if pyradiomics cannot load, the panel says so in one line with the fix, and a
    features CSV (one row) still gives the same score."""
    model_path, clinical = model
    scene, volume, segmentation, segment_id = breast1_scene()
    reference = ScoringLogic(scene).predict(volume, segmentation, segment_id, clinical, model_path)
    csv = tmp_path / "one_patient.csv"
    csv.write_text("ID," + ",".join(reference["features"]) + "\nP1,"
                   + ",".join(repr(v) for v in reference["features"].values()) + "\n", encoding="utf-8")
    broken = {"ok": False, "version": None, "message": "pyradiomics cannot be used (ImportError); fix: reinstall"}
    controller = ScoringController(scene, pyradiomics_status=lambda: dict(broken))
    controller.load_model(str(model_path))
    fill_form(controller, clinical)
    gate = controller.state()["predict"]
    assert not gate["enabled"] and gate["reason"] == broken["message"] and "\n" not in gate["reason"]
    controller.load_features_csv(str(csv))
    assert controller.state()["features_csv"]["id"] == "P1"
    result = controller.predict()
    assert result is not None, controller.state()["error"]
    assert_same_score(result, reference)
    two = tmp_path / "two.csv"
    two.write_text(csv.read_text(encoding="utf-8") + "P2," + ",".join("1" for _ in reference["features"]) + "\n",
                   encoding="utf-8")
    controller.load_features_csv(str(two))
    assert "2 rows" in controller.state()["error"] and controller.state()["features_csv"] is None


def test_state_is_json_and_listeners_hear_every_change(model):
    model_path, clinical = model
    scene, volume, segmentation, segment_id = breast1_scene()
    controller = ScoringController(scene)
    heard = []
    stop = controller.add_listener(heard.append)
    controller.load_model(str(model_path))
    fill_form(controller, clinical)
    controller.predict()
    assert len(heard) >= 2 + len(clinical)
    json.dumps(controller.state(), allow_nan=False)
    stop()
    controller.clear()
    assert heard[-1]["result"] is not None
    controller.close()
