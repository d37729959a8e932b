"""The Slicer module: its MRML <-> SimpleITK glue and scoring, headless with the slicer-core wheel
(MRML without the application), against the file-based `imnrisk predict`; and a static check that
the .ui and the Python code agree."""

from __future__ import annotations

import ast
import json
import math
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import ROOT, pyradiomics_data, run_cli

sys.path.insert(0, str(ROOT / "IMNRisk"))
slicer = pytest.importorskip("slicer", reason="slicer-core is installed by make install (test extra)")
from IMNRiskLib.core.errors import InputError  # noqa: E402
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
    expected = {"inputComboBox": "QComboBox", "segmentationSelector": "qMRMLNodeComboBox",
                "segmentSelector": "qMRMLSegmentSelectorWidget", "segmentEditorPlaceholder": "QWidget",
                "modelPathLineEdit": "ctkPathLineEdit", "cohortPathLineEdit": "ctkPathLineEdit",
                "outputFolderLineEdit": "ctkPathLineEdit", "resultsTableView": "qMRMLTableView",
                "featuresCsvPathLineEdit": "ctkPathLineEdit", "allowMismatchCheckBox": "QCheckBox",
                "phaseSpinBox": "QSpinBox", "predictButton": "QPushButton", "panelTabs": "QTabWidget",
                "exportDicomButton": "QPushButton", "exportDicomLabel": "QLabel",
                "trainingProgressBar": "QProgressBar", "trainingLog": "QPlainTextEdit", "clinicalFormWidget": "QWidget"}
    for name, cls in expected.items():
        assert widgets.get(name) == cls, (name, widgets.get(name))
    assert sum(cls == "ctkCollapsibleButton" for cls in widgets.values()) >= 5
    # no .ui in Slicer core embeds the Segment Editor: IMNRisk.py makes it, as Slicer's SegmentEditor.py does
    assert "qMRMLSegmentEditorWidget" not in UI.read_text(encoding="utf-8")


def test_training_is_a_separate_tab_from_scoring():
    """Item 10: the scoring workflow and the training panel are two tabs of the module."""
    root = ET.parse(UI).getroot()
    tabs = next(w for w in root.iter("widget") if w.get("name") == "panelTabs")
    pages = {page.get("name"): {w.get("name") for w in page.iter("widget")} for page in tabs.findall("widget")}
    assert set(pages) == {"scoringTab", "trainingTab"}
    assert {"predictButton", "segmentEditorPlaceholder", "inputComboBox"} <= pages["scoringTab"]
    assert {"trainButton", "cancelTrainingButton", "trainingLog"} <= pages["trainingTab"]
    assert not pages["scoringTab"] & {"trainButton", "cohortPathLineEdit"}


def test_the_widget_binds_qt_to_the_controller_and_decides_nothing():
    """The goal of #10: scoring behaviour lives in the controller; the widget forwards and redraws."""
    text = MODULE.read_text(encoding="utf-8")
    widget = text[text.index("class IMNRiskWidget"):text.index("class IMNRiskLogic")]
    for call in ("choose_input", "choose_phase", "choose_segmentation", "choose_segment", "load_model",
                 "set_clinical", "predict()", "new_segmentation", "editor_enter", "editor_exit", "poll()",
                 "load_features_csv", "allow_version_mismatch", "nomogram_png", "export_dicom",
                 "export_would_overwrite"):
        assert f"controller.{call}" in widget, call
    for decided_elsewhere in ("segment_size(", "phaseCount", "referenceVolume", "GetFirstNodeByClass",
                              "SetReferenceImageGeometryParameterFromVolumeNode", "qt.QProcess"):
        assert decided_elsewhere not in widget, decided_elsewhere


def test_every_slicer_parameter_name_is_a_parameter_node_field():
    fields = parameter_fields()
    names = [p.find("string").text for p in ET.parse(UI).iter("property") if p.get("name") == "SlicerParameterName"]
    assert names and set(names) <= fields, set(names) - fields
    assert {"cvRepeats", "bootstrap"} <= set(names)
    # no parameter-node connector fits these: the code syncs them by hand
    text = MODULE.read_text(encoding="utf-8")
    assert "setCurrentSegmentID" in text
    for field, widget in (("modelPath", "modelPathLineEdit"), ("cohortPath", "cohortPathLineEdit"),
                          ("schemaPath", "schemaPathLineEdit"), ("outputFolder", "outputFolderLineEdit")):
        assert field in fields and f"self.ui.{widget}" in text and f".{field} = " in text, field


def test_the_module_follows_slicer_conventions():
    text = MODULE.read_text(encoding="utf-8")
    for needle in ("class IMNRisk(ScriptedLoadableModule)", "class IMNRiskWidget(ScriptedLoadableModuleWidget",
                   "class IMNRiskLogic(ScriptedLoadableModuleLogic", "class IMNRiskTest(ScriptedLoadableModuleTest)",
                   "@parameterNodeWrapper", "connectGui(self.ui)", "pip_ensure", "pip_install", "SetSingletonTag",
                   "TrainingRun", "qt.QTimer", "registerCustomSampleDataSource", '"Quantification"'):
        assert needle in text, needle
    tree = ast.parse(text)
    top_calls = [n for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    assert not top_calls  # nothing (e.g. a pip install) runs at import time
    cmake = (ROOT / "IMNRisk" / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "WITH_GENERIC_TESTS" in cmake and "slicer_add_python_unittest" in cmake
    listed = set(re.findall(r"^\s+(IMNRiskSlicer/\S+\.py)", cmake, re.M))
    shipped = {f"IMNRiskSlicer/{p.name}" for p in (ROOT / "IMNRisk" / "IMNRiskSlicer").glob("*.py")}
    assert listed == shipped, shipped ^ listed  # an installed extension has every file it imports
    resources = set(re.findall(r"^\s+((?:Resources|Testing)/\S+)", cmake, re.M))
    for name in ("Resources/requirements.txt", "Testing/Data/IMNRiskTestModel.json", "Testing/Data/IMNRiskDemoDCE.seq.nrrd",
                 "Testing/Data/IMNRiskDemoDCE-tumour.nrrd", "Testing/Data/IMNRiskDemoDCE-clinical.json"):
        assert name in resources and (ROOT / "IMNRisk" / name).exists(), name
    top = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "SlicerRadiomics" not in top and "add_subdirectory(IMNRisk)" in top  # our SuperBuild brings pyradiomics


def test_the_module_follows_the_5_12_template():
    """Issue 27 item 3: translatable strings with a fallback, a help link, the self-test under
    Testing/Python registered with slicer_add_python_unittest, no EXTENSION_CATEGORY in CMake."""
    text = MODULE.read_text(encoding="utf-8")
    assert "from slicer.i18n import tr as _" in text and "except ImportError:" in text
    assert 'translate("qSlicerAbstractCoreModule", "Quantification")' in text
    tree = ast.parse(text)
    translated = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "_"]
    assert len(translated) >= 20 and all(isinstance(n.args[0], ast.Constant) for n in translated)  # literals for lupdate
    assert not [n for n in translated if isinstance(n.args[0], ast.JoinedStr)]
    assert '<a href="{url}">module documentation</a>' in text and "DOCUMENTATION_URL = \"https://" in text
    cmake = (ROOT / "IMNRisk" / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "add_subdirectory(Testing)" in cmake
    assert (ROOT / "IMNRisk" / "Testing" / "CMakeLists.txt").read_text().strip() == "add_subdirectory(Python)"
    python_tests = (ROOT / "IMNRisk" / "Testing" / "Python" / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "slicer_add_python_unittest(SCRIPT IMNRiskModuleTest.py)" in python_tests
    selftest_file = (ROOT / "IMNRisk" / "Testing" / "Python" / "IMNRiskModuleTest.py").read_text(encoding="utf-8")
    assert "class IMNRiskModuleTest(ScriptedLoadableModuleTest)" in selftest_file
    ast.parse(selftest_file)
    top = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "set(EXTENSION_CATEGORY" not in top
    assert re.search(r"cmake_minimum_required\(VERSION 3\.20\.6\.\.\.3\.28\.0 FATAL_ERROR\)", top)


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
    assert points.GetNumberOfRows() == len(ours["points"]) and feats.GetNumberOfRows() == 5 + len(ours["features"])


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
            "import IMNRiskSlicer.logic, IMNRiskSlicer.mrml, IMNRiskSlicer.controller, IMNRiskSlicer.dependencies\n"
            "import IMNRiskSlicer.runner, IMNRiskSlicer.selftest\n").format(str(ROOT / "IMNRisk"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", errors="replace", cwd=ROOT)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- the controller (issue #10)

from IMNRiskSlicer import selftest  # noqa: E402
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
    array = voxels_of(reference)
    k, j, i = np.indices(array.shape)
    blob = (((k - centre[0]) / radii[0]) ** 2 + ((j - centre[1]) / radii[1]) ** 2
            + ((i - centre[2]) / radii[2]) ** 2 <= 1).astype(np.uint8)
    selftest.paint_mask(segmentation, segment_id, blob, reference, merge=True)
    return blob


def fill_form(controller, clinical):
    for name, value in clinical.items():
        controller.set_clinical(name, value)


def breast1_controller(model_path, clinical):
    """A controller on breast1 with its tumour segment chosen, the model loaded and the form filled:
    (controller, volume, segmentation, segment_id)."""
    scene, volume, segmentation, segment_id = breast1_scene()
    controller = ScoringController(scene)
    controller.choose_input(volume.GetID())
    controller.choose_segmentation(segmentation.GetID())
    controller.choose_segment(segment_id)
    controller.load_model(str(model_path))
    fill_form(controller, clinical)
    return controller, volume, segmentation, segment_id


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


def test_one_editor_holds_the_views_and_teardown_on_exit_touches_no_editor():
    """Issue 27 item 2: entering a second editor releases the first; exit then cleanup releases an
    editor once; once the application is exiting, teardown forgets editors without calling them."""
    scene = slicer.vtkMRMLScene()
    controller = ScoringController(scene)
    add_sequence(scene, dce_phases(2))
    first, second = RecordingEditor(), RecordingEditor()
    controller.editor_enter(first)
    controller.editor_enter(second)
    assert [c[0] for c in first.calls][-3:] == ["setActiveEffect", "uninstallKeyboardShortcuts", "removeViewObservations"]
    n_first = len(first.calls)
    controller.new_segmentation()
    assert len(first.calls) == n_first and second.calls[-1][0] == "setSourceVolumeNode"  # only the held one follows
    controller.editor_exit(second)
    n_second = len(second.calls)
    controller.editor_exit(second)
    assert controller.release_editors(app_exiting=False) == [] and len(second.calls) == n_second  # released once
    controller.editor_enter(first)
    n_first = len(first.calls)
    assert controller.release_editors(app_exiting=True) == [first] and len(first.calls) == n_first
    controller.choose_phase(0)
    assert len(first.calls) == n_first  # forgotten: never driven again


def test_a_burst_of_scene_node_events_is_one_rescan_and_one_redraw():
    """Issue 27 item 2: with a debounce (the Slicer widget's), adding many nodes redraws once, after
    the burst has settled (poll), not once per node; a batch (scene load) is one rescan at its end."""
    clock = FakeClock()
    scene = slicer.vtkMRMLScene()
    controller = ScoringController(scene, clock=clock, scene_debounce_s=0.25)
    editor = RecordingEditor()
    controller.editor_enter(editor)
    heard = []
    controller.add_listener(heard.append)
    bound_on_enter = len(editor.calls)
    for k, image in enumerate(dce_phases(3)):
        mrml.sitk_to_volume(image, scene, f"DCE {k + 1}")
        clock.now += 0.1   # node events 0.1 s apart: still one burst
    for k in range(20):
        scene.AddNewNodeByClass("vtkMRMLTableNode", f"table {k}")
    controller.poll()
    assert heard == [] and controller.rescans == 0
    clock.now += 0.25
    controller.poll()
    assert len(heard) == 1 and controller.rescans == 1
    assert heard[0]["inputs"][0]["kind"] == "phases" and heard[0]["inputs"][0]["phases"] == 3
    assert [c[0] for c in editor.calls[bound_on_enter:]] == ["setSegmentationNode", "setSourceVolumeNode"]  # once
    controller.poll()
    assert len(heard) == 1  # nothing new: no redraw
    clock.now += 10
    for k in range(1000):  # a never-ending stream still redraws at the latest 4 intervals after it began
        scene.AddNewNodeByClass("vtkMRMLTableNode", f"more {k}")
        clock.now += 0.01 if k % 100 else 0.0
        controller.poll()
    assert controller.rescans >= 2
    immediate = ScoringController(slicer.vtkMRMLScene())
    heard_now = []
    immediate.add_listener(heard_now.append)
    immediate.scene.StartState(immediate.scene.BatchProcessState)
    for k in range(10):
        immediate.scene.AddNewNodeByClass("vtkMRMLTableNode", f"t{k}")
    assert heard_now == []
    immediate.scene.EndState(immediate.scene.BatchProcessState)
    assert immediate.rescans == 1 and len(heard_now) >= 1


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
    assert next(f for f in controller.state()["form"] if f["name"] == name)["status"] == "invalid"
    fill_form(controller, clinical)
    assert all(f["status"] == "valid" for f in controller.state()["form"])
    assert controller.state()["predict"]["enabled"], controller.state()["predict"]
    controller.set_clinical(name, None)
    assert not controller.state()["predict"]["enabled"]


def test_the_patient_identifier_gates_predict_goes_into_the_results_row_and_a_new_patient_clears_all(model):
    """#26 item 2: with require_patient_id (both faces), Predict waits for the identifier, which is
    written into the results row; new_patient() forgets identifier, clinical values and result."""
    model_path, clinical = model
    scene, volume, segmentation, segment_id = breast1_scene()
    controller = ScoringController(scene, require_patient_id=True)
    controller.choose_input(volume.GetID())
    controller.choose_segmentation(segmentation.GetID())
    controller.choose_segment(segment_id)
    controller.load_model(str(model_path))
    fill_form(controller, clinical)
    gate = controller.state()["predict"]
    assert not gate["enabled"] and gate["reason"] == "Enter the patient identifier."
    controller.set_patient_id("  MRN  0042 ")
    assert controller.state()["patient_id"] == "MRN 0042" and controller.state()["predict"]["enabled"]
    assert controller.predict() is not None, controller.state()["error"]
    assert [r["patient_id"] for r in controller.state()["results"]] == ["MRN 0042"]
    assert controller.state()["result"]["patient_id"] == "MRN 0042"
    controller.set_patient_id("MRN 0043")
    assert controller.state()["result"]["stale"]  # another patient: the shown result is not theirs
    controller.new_patient()
    state = controller.state()
    assert state["patient_id"] is None and state["result"] is None
    assert all(f["status"] == "not entered" for f in state["form"]) and not state["predict"]["enabled"]
    assert len(state["results"]) == 1  # the session's table keeps its rows
    assert ScoringController(slicer.vtkMRMLScene()).require_patient_id is False  # a library caller opts in
    controller.close()


def test_a_segment_covering_more_than_a_tumour_can_is_noted_live_without_blocking_predict(model):
    """#26 item 4: the scoring core's tumour-share rule (> 25% of the image: not reliable), said
    while contouring, as a note that does not block Predict."""
    from IMNRiskLib.scoring.domain import MAX_TUMOUR_SHARE
    model_path, clinical = model
    controller, volume, segmentation, segment_id = breast1_controller(model_path, clinical)
    assert controller.state()["segment"]["note"] == ""
    whole = np.ones(volume.GetImageData().GetDimensions()[::-1], dtype=np.uint8)
    assert whole.sum() * 1.0 / whole.size > MAX_TUMOUR_SHARE
    selftest.paint_mask(segmentation, segment_id, whole, volume, merge=False)
    controller.choose_segment(segment_id)  # recounts at once (a stroke is recounted within 0.25 s)
    note = controller.state()["segment"]["note"]
    assert "covers 100% of the image" in note and "not reliable" in note
    assert controller.state()["predict"]["enabled"]
    controller.close()


def ready_on_a_sequence(model_path, clinical):
    """A controller on a 3-phase sequence with breast1's tumour segment and the form filled: ready to predict."""
    scene = slicer.vtkMRMLScene()
    controller = ScoringController(scene)
    add_sequence(scene, dce_phases(3))
    segmentation, segment_id = segmentation_from_labelmap(scene, pyradiomics_data() / "breast1_label.nrrd")
    controller.choose_segmentation(segmentation.GetID())
    controller.load_model(str(model_path))
    fill_form(controller, clinical)
    return scene, controller, segmentation, segment_id


def test_results_become_stale_when_any_input_changes(model):
    """Defect 5: a shown result is marked stale by a new clinical value, phase, segment stroke or input."""
    model_path, clinical = model
    scene, controller, segmentation, segment_id = ready_on_a_sequence(model_path, clinical)
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
    from IMNRiskLib.scoring.modelfile import seal
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
        assert controller.state()["result"]["banner"].startswith("TRAINED ON SYNTHETIC DATA")


def test_a_patient_outside_the_training_ranges_is_named_in_state_and_on_the_nomogram(model, tmp_path):
    """#12.10: breast1 scored with the phantom model: state() names every feature outside its training
    range (as `imnrisk predict --json` does), and the nomogram prints the warnings; a model file
    without ranges scores and says it is unchecked."""
    from IMNRiskLib.scoring.modelfile import seal
    model_path, clinical = model
    data = pyradiomics_data()
    scene, volume, segmentation, segment_id = breast1_scene()
    controller = ScoringController(scene)
    controller.load_model(str(model_path))
    fill_form(controller, clinical)
    assert controller.predict() is not None, controller.state()["error"]
    result = controller.state()["result"]
    cli = cli_predict(model_path, clinical, data / "breast1_image.nrrd", data / "breast1_label.nrrd")
    assert result["domain"]["outside"] and result["domain"] == cli["domain"]
    assert all(f["message"] in result["warnings"] for f in result["domain"]["outside"])
    assert result["ci_method"] == "Wald, conditional on the Rad-Score"
    import matplotlib.pyplot as plt
    drawn = []
    real = plt.Figure.savefig
    plt.Figure.savefig = lambda fig, *a, **k: (drawn.append([t.get_text() for ax in fig.axes for t in ax.texts]),
                                              real(fig, *a, **k))
    try:
        controller.nomogram_png(str(tmp_path / "nomogram.png"))
    finally:
        plt.Figure.savefig = real
    assert any(result["domain"]["outside"][0]["message"] in " ".join(t.split()) for t in drawn[0])  # wrapped
    doc = json.loads(model_path.read_text(encoding="utf-8"))
    old = tmp_path / "old.json"
    old.write_text(json.dumps(seal({k: v for k, v in doc.items() if k not in ("sha256", "domain", "uncertainty")})),
                   encoding="utf-8")
    controller.load_model(str(old))
    fill_form(controller, clinical)
    assert controller.predict() is not None, controller.state()["error"]
    shown = controller.state()["result"]
    assert shown["domain"]["checked"] is True and "nomogram's axes" in shown["domain"]["note"]  # the ranges it still knows
    assert shown["verdict"] == result["verdict"]  # breast1 stays not reliable (its image is not the training images)


def test_each_prediction_appends_one_row_to_the_results_table(model):
    """Defect 6: time, model SHA-256, phase, segment, inputs, Rad-Score, risk with CI and points,
    in a table node of the scene (saved with it)."""
    model_path, clinical = model
    scene, controller, segmentation, segment_id = ready_on_a_sequence(model_path, clinical)
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
    scene.Clear(0)   # File > Close scene: a new study gets a new table in the new scene
    add_sequence(scene, dce_phases(3))
    segmentation, segment_id = segmentation_from_labelmap(scene, pyradiomics_data() / "breast1_label.nrrd")
    controller.poll()
    controller.choose_segmentation(segmentation.GetID())
    assert controller.predict() is not None, controller.state()["error"]
    table = scene.GetNodeByID(controller.state()["results_table_id"])
    assert table is not None and scene.IsNodePresent(table) and table.GetNumberOfRows() == 1


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
    from IMNRiskLib.scoring.modelfile import seal
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


# --------------------------------------------------------------------------- DICOM SEG + SR export (issue #14)

from IMNRiskSlicer.controller import instance_files  # noqa: E402

DICOM_PID = "SYN0001"


@pytest.fixture(scope="module")
def dicom_patient(tmp_path_factory):
    """A phantom patient as DICOM (`imnrisk synth --dicom`): its image folder and tumour mask."""
    pytest.importorskip("highdicom", reason="highdicom missing: pip install 'imnrisk[dicom]'")
    from dicom_cases import make_dicom_phantom, patient_paths
    phantom = make_dicom_phantom(tmp_path_factory.mktemp("slicer-dicom") / "phantom")
    return patient_paths(phantom, DICOM_PID)


def dicom_scene(paths):
    """The patient's DCE phases as a sequence whose data nodes carry DICOM.instanceUIDs, as Slicer's
    DICOM module loads a series; a dict UID -> file stands for the DICOM database."""
    import pydicom
    from IMNRiskLib.inputs import imaging
    images, uids, database = [], [], {}
    for files in imaging.dicom_phases(paths["image"]):
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames([str(f) for f in files])
        images.append(reader.Execute())
        uids.append([str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files])
        database.update(zip(uids[-1], map(str, files)))
    scene = slicer.vtkMRMLScene()
    sequence = add_sequence(scene, images, "DCE DICOM")
    for k, phase_uids in enumerate(uids):
        sequence.GetNthDataNode(k).SetAttribute("DICOM.instanceUIDs", " ".join(phase_uids))
    segmentation, segment_id = segmentation_from_labelmap(scene, paths["mask"])
    return scene, segmentation, segment_id, uids, database


def scored_dicom_controller(model, paths, phase):
    """A controller that scored the DICOM patient's phase `phase` with its tumour."""
    model_path, clinical = model
    scene, segmentation, segment_id, uids, database = dicom_scene(paths)
    controller = ScoringController(scene, dicom_sources=lambda node: instance_files(node, database.get))
    controller.choose_segmentation(segmentation.GetID())
    controller.choose_segment(segment_id)
    controller.load_model(str(model_path))
    fill_form(controller, clinical)
    controller.choose_phase(phase)
    assert controller.state()["export"]["reason"].startswith("Predict first")
    result = controller.predict()
    assert result is not None, controller.state()["error"]
    return controller, result, uids


def test_the_result_is_exported_as_seg_and_sr_on_the_chosen_phase(model, dicom_patient, tmp_path):
    """Issue #14 in Slicer: SEG + SR of the controller's result, its values exactly, the SEG on the
    chosen (non-default) phase's slices with the painted mask; the same numbers as `imnrisk predict`."""
    import highdicom as hd
    from IMNRiskLib.outputs import dicomout
    model_path, clinical = model
    controller, result, uids = scored_dicom_controller(model, dicom_patient, phase=2)
    assert result["phase"] == 2
    assert controller.state()["export"]["enabled"], controller.state()["export"]
    written = controller.export_dicom(str(tmp_path / "out"))
    assert written is not None, controller.state()["error"]
    assert controller.state()["export"]["written"] == written and controller.state()["error"] is None
    back = dicomout.read_report(written["sr"])
    for key in ("radscore", "probability", "risk_group", "points", "features"):
        assert back[key] == result[key], key
    assert back["verdict"] == result["verdict"]["state"]  # the verdict travels with the number
    assert back["ci95"] == list(result["ci95"])
    assert back["algorithm"]["Algorithm Parameters"][0] == f"model SHA-256 {result['model_sha256']}"
    seg = hd.seg.segread(written["seg"])
    referenced = {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == set(uids[2]) and not referenced & set(uids[1])
    frames = seg.get_pixels_by_source_instance(uids[2], segment_numbers=[1])[..., 0]
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(dicom_patient["mask"])))
    assert mask.sum() > 0 and np.array_equal(frames.astype(bool), mask.astype(bool))
    cli = cli_predict(model_path, clinical, dicom_patient["image"], dicom_patient["mask"], "--phase", "2")
    assert_same_score(result, cli)
    before = [Path(written[k]).read_bytes() for k in ("seg", "sr")]
    assert controller.export_would_overwrite(str(tmp_path / "out")) == [written["seg"], written["sr"]]
    assert controller.export_dicom(str(tmp_path / "out")) is None
    assert "exists" in controller.state()["error"] and [Path(written[k]).read_bytes() for k in ("seg", "sr")] == before
    assert controller.export_dicom(str(tmp_path / "out"), force=True) is not None
    assert dicomout.read_report(written["sr"])["radscore"] == result["radscore"]
    name = next(iter(clinical))
    controller.set_clinical(name, next(f["levels"][0] for f in controller.state()["form"] if f["name"] == name))
    gate = controller.state()["export"]
    assert not gate["enabled"] and "stale" in gate["reason"]
    assert controller.export_dicom(str(tmp_path / "stale")) is None
    assert "stale" in controller.state()["error"] and not (tmp_path / "stale").exists()


def test_export_is_refused_with_a_reason_without_a_fresh_dicom_result(model, tmp_path, monkeypatch):
    """No result, a non-DICOM input, a features-CSV result, no highdicom: refused, saying why,
    nothing written; an instance missing from the DICOM database is named."""
    model_path, clinical = model
    scene, volume, segmentation, segment_id = breast1_scene()
    controller = ScoringController(scene, dicom_sources=lambda node: instance_files(node, {}.get))
    controller.load_model(str(model_path))
    fill_form(controller, clinical)
    out = tmp_path / "out"
    assert controller.export_dicom(str(out)) is None and "Predict first" in controller.state()["error"]
    result = controller.predict()
    assert result is not None, controller.state()["error"]
    gate = controller.state()["export"]
    assert not gate["enabled"] and "not from DICOM" in gate["reason"]
    assert controller.export_dicom(str(out)) is None and "not from DICOM" in controller.state()["error"]
    monkeypatch.setitem(sys.modules, "highdicom", None)  # as in a Python without it
    assert "needs highdicom" in controller.state()["export"]["reason"]
    monkeypatch.undo()
    csv = tmp_path / "one.csv"
    csv.write_text("ID," + ",".join(result["features"]) + "\nP1,"
                   + ",".join(repr(v) for v in result["features"].values()) + "\n", encoding="utf-8")
    controller.load_features_csv(str(csv))
    assert controller.predict() is not None
    assert "features CSV" in controller.state()["export"]["reason"]
    assert controller.export_dicom(str(out)) is None and not out.exists()
    volume.SetAttribute("DICOM.instanceUIDs", "2.25.1 2.25.2")
    with pytest.raises(InputError, match="2 of the 2 DICOM instances .* not in the DICOM database"):
        instance_files(volume, {}.get)
    assert instance_files(volume, {"2.25.1": "/a.dcm", "2.25.2": "/b.dcm"}.get) == ["/a.dcm", "/b.dcm"]
    assert instance_files(None, {}.get) == []


# --------------------------------------------------------------------------- self-test logic, dependencies, training

from IMNRiskSlicer import dependencies  # noqa: E402
from IMNRiskSlicer.runner import TrainingRun  # noqa: E402


def test_self_test_logic_scores_the_painted_demo_case_with_the_frozen_test_model():
    """Item 7: what IMNRiskTest does in Slicer (frozen model, sample case, paint, form, Predict,
    table), headless; the number equals `imnrisk predict` on the committed files."""
    scene = slicer.vtkMRMLScene()
    controller = ScoringController(scene)
    selftest.load_demo_case(scene)
    checked = selftest.score_demo_case(controller)
    result = checked["result"]
    assert result["phase"] == 1 and checked["state"]["segment"]["voxels"] == checked["voxels"] >= 64
    clinical = selftest.demo_clinical(controller.model)
    reference = cli_predict(selftest.TEST_MODEL, clinical, selftest.DEMO_CASE, selftest.DEMO_MASK)
    assert_same_score(result, reference)
    assert sum(p.stat().st_size for p in selftest.DATA_DIR.iterdir()) < 5e6


def test_the_frozen_test_model_comes_from_its_script_and_is_synthetic():
    doc = json.loads(selftest.TEST_MODEL.read_text(encoding="utf-8"))
    script = (ROOT / "Testing" / "make_slicer_test_data.py").read_text(encoding="utf-8")
    assert doc["training"]["synthetic"] is True and doc["training"]["n"] >= 80
    assert doc["training"]["events"] >= 5 and "IMNRiskTestModel.json" in script
    meta = json.loads(selftest.DEMO_CLINICAL.read_text(encoding="utf-8"))
    assert meta["ID"] in script and set(doc["clinical"]["factors"]) <= set(meta["clinical"])


def test_the_library_is_found_beside_an_installed_module_and_above_a_source_tree(tmp_path):
    """Item 7: an installed extension has IMNRiskLib beside IMNRisk.py (the old self-test looked
    one folder up, where there is none)."""
    installed = tmp_path / "lib" / "Slicer-5.10" / "qt-scripted-modules"
    (installed / "IMNRiskLib").mkdir(parents=True)
    (installed / "IMNRiskLib" / "__init__.py").write_text("", encoding="utf-8")
    assert selftest.library_parent(installed) == installed
    assert selftest.library_parent(ROOT / "IMNRisk") == ROOT
    assert selftest.library_parent(tmp_path) is None
    text = MODULE.read_text(encoding="utf-8")
    assert "Path(__file__).resolve().parent.parent)" not in text and "add_library_to_path(_HERE)" in text


def test_requirements_file_is_read_and_checked_by_version_not_importability():
    """Item 9: one requirements.txt; a package installed at too old a version counts as unmet."""
    requirements = dependencies.read_requirements()
    names = {dependencies.requirement_name(r) for r in requirements}
    assert {"scikit-learn", "statsmodels", "pandas"} <= names and "pyradiomics" not in names
    assert not names & {dependencies.canonical(n) for n in dependencies.SLICER_SHIPPED}  # never asks to move them
    fake = {"scikit-learn": "1.0.2", "statsmodels": None}
    problems = dependencies.unmet(requirements, lambda name: fake.get(name, "99.0"))
    assert "scikit-learn>=1.3 (have 1.0.2)" in problems and "statsmodels>=0.14 (missing)" in problems
    assert len(problems) == 2
    assert dependencies.unmet(requirements) == []  # this environment fits
    assert dependencies.satisfies("2.0.2", ">=1.26,<3") and not dependencies.satisfies("3.0", ">=1.26,<3")


def test_the_module_installs_through_pip_ensure_imported_explicitly_or_pip_install():
    """Issue 27 item 1: `import slicer` does not import slicer.packaging, so the module imports it;
    pip_ensure gets the constraints and no prompts of its own (IMNRisk's one prompt was asked)."""
    text = MODULE.read_text(encoding="utf-8")
    body = text[text.index("def slicerPackaging"):text.index("@parameterNodeWrapper")]
    assert "import slicer.packaging" in body and 'getattr(slicer, "packaging"' not in text
    assert "constraints=str(constraints)" in body and "prompt_install=False" in body and 'requester="IMNRisk"' in body
    assert "pip_install(dependencies.pip_install_arguments(" in body and body.count("confirmOkCancelDisplay") == 1
    assert "slicer.util.restart()" in body
    widget = text[text.index("class IMNRiskWidget"):text.index("class IMNRiskLogic")]
    for handler in ("def onModelChosen", "def onPredict"):   # scoring installs nothing
        part = widget[widget.index(handler):widget.index("\n    def ", widget.index(handler) + 10)]
        assert "ensureExtras" not in part and "pip" not in part, handler
    assert 'ensureExtras(_("Training"))' in widget


def test_constraints_pin_every_shipped_package_at_the_running_version(tmp_path):
    """The constraints file comes from the running Python: numpy and scipy at exactly the versions
    installed here; a shipped module without pip metadata (Slicer's VTK) is guarded by '<0'."""
    from importlib import metadata
    lines = dependencies.constraint_lines()
    assert f"numpy=={metadata.version('numpy')}" in lines and f"scipy=={metadata.version('scipy')}" in lines
    assert f"SimpleITK=={metadata.version('SimpleITK')}" in lines
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+(==[^\s]+|<0)", line) for line in lines), lines
    fake = {"numpy": "2.4.6", "scipy": "1.17.1", "pyradiomics": "3.0.1"}
    faked = dependencies.constraint_lines(installed=fake.get, importable_module=lambda m: m == "vtk")
    assert faked == ["numpy==2.4.6", "scipy==1.17.1", "vtk<0", "pyradiomics==3.0.1"]
    path = dependencies.write_constraints(tmp_path / "c.txt", faked)
    assert [line for line in path.read_text().splitlines() if not line.startswith("#")] == faked
    assert dependencies.pip_install_arguments(["statsmodels>=0.14"], path) == ["-c", str(path), "statsmodels>=0.14"]


def test_extras_are_installed_once_asked_with_the_constraints_and_a_restart_is_asked_when_needed(tmp_path):
    """The decisions of install_extras, driven with stand-ins for the dialog and pip."""
    requirements = ["scikit-learn>=1.3", "statsmodels>=0.14"]
    have = {"scikit-learn": None, "statsmodels": "0.14.6", "numpy": "2.4.6"}
    asked, pip_calls = [], []

    def run_pip(wanted, constraints):
        pip_calls.append((wanted, constraints.read_text(encoding="utf-8")))
        have["scikit-learn"] = "1.9.1"

    common = dict(purpose="Training", run_pip=run_pip, constraints_path=tmp_path / "c.txt",
                  installed=lambda name: have.get(name))
    declined = dependencies.install_extras(requirements, confirm=lambda text: asked.append(text) or False, **common)
    assert not declined.ok and declined.asked and pip_calls == [] and "Not installed: scikit-learn>=1.3" in declined.message
    assert "scikit-learn>=1.3 (missing)" in asked[0] and "stay at their current versions" in asked[0]
    versions = iter([{"numpy": "2.4.6", "scipy": "1.17.1"}, {"numpy": "2.4.6", "scipy": "1.17.1", "scikit-learn": "1.9.1"}])
    done = dependencies.install_extras(requirements, confirm=lambda text: True, versions=lambda: next(versions),
                                       loaded=lambda: ["numpy", "scipy"], **common)
    assert done.ok and done.restart == [] and done.installed == ["scikit-learn"]
    (wanted, constraints), = pip_calls
    assert wanted == ["scikit-learn>=1.3"] and "\nnumpy==" in constraints and "\nscipy==" in constraints
    again = dependencies.install_extras(requirements, confirm=lambda text: pytest.fail("asked again"), **common)
    assert again.ok and len(pip_calls) == 1  # nothing missing: no prompt, no pip

    def failing_pip(wanted, constraints):
        raise RuntimeError("ResolutionImpossible: numpy==2.4.6 conflicts with scikit-learn==1.3.2")

    have["scikit-learn"] = None
    failed = dependencies.install_extras(["scikit-learn==1.3.2"], "Training", confirm=lambda text: True,
                                         run_pip=failing_pip, constraints_path=tmp_path / "c.txt",
                                         installed=lambda name: have.get(name))
    assert not failed.ok and "ResolutionImpossible" in failed.message and "kept at their versions" in failed.message
    before, after = {"pandas": "2.2.3", "numpy": "2.4.6"}, {"pandas": "3.1.1", "numpy": "2.4.6"}
    top = {"pandas": ["pandas"], "numpy": ["numpy"]}
    assert dependencies.restart_needed(before, after, ["pandas.core", "numpy"], top) == ["pandas 2.2.3 -> 3.1.1"]
    assert dependencies.restart_needed(before, after, ["numpy"], top) == []   # pandas was not loaded


def test_the_scoring_path_uses_only_what_slicer_and_the_extension_ship():
    """Issue 27 item 1: with every training/report extra made unimportable (sys.modules None), the
    sample case is scored through the controller, and the third-party modules it loaded are all
    ones Slicer 5.10+ or the extension ships."""
    import subprocess
    blocked = ["sklearn", "statsmodels", "matplotlib", "pandas", "glum", "yaml", "tqdm", "jinja2", "numba",
               "tabmat", "formulaic", "patsy", "joblib", "threadpoolctl", "pyarrow", "dask", "distributed"]
    code = f"""
import json, sys
sys.path.insert(0, {str(ROOT / "IMNRisk")!r}); sys.path.insert(0, {str(ROOT)!r})
before = set(sys.modules)
for name in {blocked!r}:
    sys.modules[name] = None
import slicer
from IMNRiskSlicer import selftest
from IMNRiskSlicer.controller import ScoringController
scene = slicer.vtkMRMLScene()
controller = ScoringController(scene)
selftest.load_demo_case(scene)
result = selftest.score_demo_case(controller)["result"]
loaded = sorted({{m.split(".")[0] for m, v in sys.modules.items() if v is not None}} - {{m.split(".")[0] for m in before}})
print(json.dumps({{"radscore": result["radscore"], "loaded": loaded}}))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", errors="replace",
                         cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert math.isfinite(out["radscore"])
    stdlib = set(sys.stdlib_module_names)
    third_party = {m for m in out["loaded"] if m and m not in stdlib and not m.startswith("_")}
    shipped = {"numpy", "scipy", "SimpleITK", "vtk", "vtkmodules", "slicer", "slicer_core", "slicer_layer_dm",
               "pydicom", "highdicom", "jpeg_ls", "PIL", "six", "dateutil", "packaging", "typing_extensions",
               "radiomics", "pywt", "pykwalify", "ruamel", "docopt", "IMNRiskLib", "IMNRiskSlicer",
               "swig_runtime_data5", "cython_runtime"}
    assert third_party <= shipped, sorted(third_party - shipped)
    assert {"radiomics", "SimpleITK", "numpy"} <= third_party


def test_module_start_names_what_runs_when_slicer_is_too_old_and_how_to_fix_pyradiomics():
    """Item 9: minimum Slicer 5.10 stated with the running Slicer, Python, numpy, pyradiomics."""
    old = dependencies.environment_problems("5.8.1", "3.9.10", "1.26.4", "3.0.1")
    assert len(old) == 1 and all(v in old[0] for v in ("5.10", "Slicer 5.8.1", "Python 3.9.10", "numpy 1.26.4",
                                                       "pyradiomics 3.0.1"))
    assert dependencies.environment_problems("5.10.0", "3.12.10", "2.0.2", "3.0.1") == []
    broken = dependencies.environment_problems("5.12.0", "3.12.10", "2.4.6", None, "ImportError: _cmatrices")
    assert len(broken) == 1 and "\n" not in broken[0] and "reinstall the IMNRisk extension" in broken[0]
    assert "features CSV" in broken[0]


def process_alive(pid: int) -> bool:
    import os
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie awaiting its parent's wait is gone for our purpose
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_cancel_ends_the_whole_training_process_tree(tmp_path):
    """Item 10: the run and the workers it started (as a process pool does) all end on Cancel."""
    pids = tmp_path / "pids.txt"
    code = ("import subprocess, sys, time, os\n"
            "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']) for _ in range(2)]\n"
            f"open({str(pids)!r}, 'w').write(' '.join(str(p.pid) for p in kids) + ' ' + str(os.getpid()))\n"
            "print('working', flush=True)\n"
            "time.sleep(120)\n")
    run = TrainingRun([[sys.executable, "-c", code], [sys.executable, "-c", "print('never')"]])
    run.start()
    import time
    deadline = time.monotonic() + 60
    while not (pids.exists() and len(pids.read_text().split()) == 3) and time.monotonic() < deadline:
        run.poll()
        time.sleep(0.05)
    started = [int(p) for p in pids.read_text().split()]
    assert all(process_alive(p) for p in started)
    run.cancel()
    status = run.wait(timeout=30)
    assert not status["running"] and status["cancelled"] and status["step"] == 1
    assert not [p for p in started if process_alive(p)]
    assert "never" not in status["lines"]


def test_a_cancelled_run_has_ended_when_cancel_returns():
    """The widget shows "Cancelled" from the poll right after cancel(): the end of the output must
    be queued by then, even when the reader thread lags behind the kill (a busy CI machine did)."""
    import time

    class LaggingReader(TrainingRun):
        def _read(self, process):
            while process.poll() is None:
                time.sleep(0.01)
            time.sleep(0.5)  # the pipe is closed; the thread has not yet been scheduled
            super()._read(process)

    run = LaggingReader([[sys.executable, "-c", "import time; print('working', flush=True); time.sleep(60)"]])
    run.start()
    time.sleep(0.2)
    run.cancel()
    status = run.poll()
    assert not status["running"] and status["cancelled"]


def test_a_failed_training_run_shows_its_reason():
    """Item 10: the last error line of the failing step, not 'see the log'."""
    run = TrainingRun([[sys.executable, "-m", "IMNRiskLib", "train", "/no/such/cohort.csv", "--features",
                        "/no/such/features.csv", "--out", "/tmp/never-written-imnrisk"]])
    run.start()
    status = run.wait(timeout=120)
    assert status["returncode"] == 2 and not status["cancelled"]
    assert status["error"] and "/no/such/cohort.csv" in status["error"] and "error" in status["error"]
    text = MODULE.read_text(encoding="utf-8")
    assert "see the log" not in text and "TrainingRun" in text


def test_a_training_run_goes_through_its_steps_and_reports_progress():
    script = "import sys; [print(f'stage: {p:3d}%|###', file=sys.stderr, end='\\r', flush=True) for p in (10, 60)]"
    run = TrainingRun([[sys.executable, "-c", script], [sys.executable, "-c", "print('done')"]])
    run.start()
    status = run.wait(timeout=60)
    assert status["returncode"] == 0 and status["step"] == 2 and "done" in status["lines"]
    assert run.progress == 60 and run.stage == "stage"


def test_screenshots_are_committed_pngs_of_the_two_tabs_at_panel_width():
    """Packaging: the screenshot URLs point at these files; they are rendered from IMNRisk.ui by the
    committed scripts (plain-Qt stand-ins, filled from a real headless controller run)."""
    from matplotlib.image import imread
    shots = ROOT / "docs" / "screenshots"
    for name in ("scoring.png", "training.png"):
        pixels = imread(shots / name)
        assert pixels.shape[1] == 420 and pixels.shape[0] >= 600, (name, pixels.shape)
        assert pixels.std() > 0.05  # not a blank page
    render = (shots / "render_panels.py").read_text(encoding="utf-8")
    assert "IMNRisk.ui" in render and "QUiLoader" in render
    assert "ScoringController" in (shots / "panel_state.py").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- the widget's bindings, run

@pytest.fixture()
def widget(monkeypatch):
    """IMNRisk.py's widget on a real slicer-core scene, with Slicer's application layer stood in."""
    import fake_slicer_app
    scene = slicer.vtkMRMLScene()
    scene.RegisterNodeClass(slicer.vtkMRMLSegmentEditorNode())  # Slicer's Segmentations module does this
    sequences = slicer.vtkSlicerSequencesLogic()
    sequences.SetMRMLScene(scene)
    record = fake_slicer_app.install(monkeypatch, scene, sequences)
    module = fake_slicer_app.import_module(monkeypatch, MODULE)
    w = module.IMNRiskWidget()
    w.setup()
    w.enter()
    yield w, scene, record, module
    w.cleanup()


def test_the_widget_drives_the_scoring_workflow_through_the_controller(widget):
    """The widget's own code, run: inputs listed, second phase shown, editor fed segmentation
    first, form 'not entered' gating Predict, Predict fills the labels and the table view."""
    import time
    from IMNRiskSlicer import selftest
    w, scene, record, module = widget
    ui = w.ui
    sequence = selftest.load_demo_case(scene)
    w.onTimer()   # the load's node events are one burst: not rescanned until it has settled
    assert ui.inputComboBox.itemData(ui.inputComboBox.currentIndex) is None
    time.sleep(module.SCENE_DEBOUNCE_S)
    w.onTimer()
    assert ui.inputComboBox.itemData(ui.inputComboBox.currentIndex) == sequence.GetID()
    assert ui.phaseSpinBox.value == 1 and ui.phaseSpinBox.maximum == 7
    proxy = scene.GetNodeByID(w.controller.state()["displayed_node_id"])
    assert record["shown"][-1] is proxy
    ui.phaseSpinBox.value = 3
    assert w.controller.state()["phase"] == 3
    ui.phaseSpinBox.value = 1
    ui.modelPathLineEdit.currentPath = str(selftest.TEST_MODEL)
    assert len(w._formWidgets) == len(w.controller.model.factors)
    assert all(box.currentIndex == 0 for box in w._formWidgets.values())  # "not entered"
    ui.newSegmentationButton.click()
    assert record["editors"] == [w.segmentEditorWidget]
    assert ui.segmentEditorPlaceholder.layout().widgets == [w.segmentEditorWidget]
    editor = [c[0] for c in w.segmentEditorWidget.calls]
    assert editor.index("installKeyboardShortcuts") < editor.index("setSegmentationNode")
    assert editor[editor.index("setSegmentationNode") + 1] == "setSourceVolumeNode"
    assert w.segmentEditorWidget.sourceVolumeNodeID() == proxy.GetID()
    state = w.controller.state()
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(selftest.DEMO_MASK))) > 0
    selftest.paint_mask(scene.GetNodeByID(state["segmentation_id"]), state["segment_id"], mask, proxy)
    w.controller.size_interval_s = 0.0
    w.onTimer()
    assert ui.segmentSizeLabel.text.startswith(f"{int(mask.sum())} voxels")
    assert not ui.predictButton.enabled and ui.predictReasonLabel.text == "Enter the patient identifier."
    w._patientIdEdit.text = "DEMO-0001"  # typed, then Enter/Tab
    w._patientIdEdit.emit("editingFinished()")
    assert w.controller.state()["patient_id"] == "DEMO-0001"
    assert not ui.predictButton.enabled and "Enter the clinical factors" in ui.predictReasonLabel.text
    for name, value in selftest.demo_clinical(w.controller.model).items():
        box = w._formWidgets[name]
        box.currentIndex = box.findText(value)
    assert ui.predictButton.enabled, ui.predictButton.toolTip
    ui.predictButton.click()
    result = w.controller.state()["result"]
    assert ui.radscoreLabel.text == f"{result['radscore']:.3f}" and "95% CI" in ui.riskLabel.text
    assert ui.nomogramLabel.pixmap is not None and ui.resultsTableView.mrmlTableNode().GetNumberOfRows() == 1
    assert "SYNTHETIC" in ui.warningsLabel.text and ui.syntheticBannerLabel.visible
    assert ui.verdictLabel.text == result["verdict"]["headline"]  # the verdict above the numbers
    assert ui.riskGroupLabel.text == result["display"]["group"] and ui.riskLabel.text == result["display"]["risk"]
    assert not ui.exportDicomButton.enabled and "not from DICOM" in ui.exportDicomButton.toolTip
    assert record["confirm"] == [] and record["pip"] == []  # scoring asked for and installed nothing
    box = next(iter(w._formWidgets.values()))
    box.currentIndex = 0
    assert ui.staleLabel.visible and not ui.predictButton.enabled
    w.exit()
    assert [c[0] for c in w.segmentEditorWidget.calls[-3:]] == ["setActiveEffect", "uninstallKeyboardShortcuts",
                                                                "removeViewObservations"]


def test_the_widget_training_tab_reports_a_failure_and_cancels(widget, tmp_path):
    import time
    w, scene, record, module = widget
    ui = w.ui
    w.startTraining([[sys.executable, "-m", "IMNRiskLib", "train", str(tmp_path / "none.csv"), "--features",
                      str(tmp_path / "none.csv"), "--out", str(tmp_path / "out")]])
    deadline = time.monotonic() + 300
    while w._run is not None and time.monotonic() < deadline:
        w.onTimer()
        time.sleep(0.05)
    assert ui.trainingResultLabel.text.startswith("Training failed: ") and "none.csv" in ui.trainingResultLabel.text
    assert ui.trainButton.enabled and not ui.cancelTrainingButton.enabled
    w.startTraining([[sys.executable, "-c", "import time; print('working', flush=True); time.sleep(60)"]])
    deadline = time.monotonic() + 300  # a generous bound per step, not a timing: a busy CI machine is slow
    while "working" not in ui.trainingLog.plain and time.monotonic() < deadline:
        w.onTimer()
        time.sleep(0.05)
    ui.cancelTrainingButton.click()
    assert ui.trainingResultLabel.text.startswith("Cancelled") and ui.trainButton.enabled


def test_sample_data_registers_the_committed_demo_case_and_model(widget, monkeypatch):
    """Packaging: one click in SampleData gives the sample DCE case, its tumour and the demo model
    (small committed files: a new user can try the module without data of their own)."""
    import types
    from urllib.parse import unquote, urlparse
    w, scene, record, module = widget
    registered = []
    logic = types.SimpleNamespace(registerCustomSampleDataSource=lambda **kw: registered.append(kw))
    monkeypatch.setitem(sys.modules, "SampleData", types.SimpleNamespace(SampleDataLogic=logic))
    module.registerSampleData()   # Slicer 5.10: no registerCustomSampleDataCategory, the source makes it
    (source,) = registered
    categories = []
    logic.registerCustomSampleDataCategory = lambda category, title: categories.append((category, title))
    module.registerSampleData()   # Slicer 5.12: the category first, with a translatable title
    assert categories == [("IMNRisk", "IMNRisk")] and len(registered) == 2
    paths = [Path(unquote(urlparse(uri).path)) for uri in source["uris"]]
    assert all(p.exists() for p in paths) and sum(p.stat().st_size for p in paths) < 5e6
    assert source["loadFileTypes"][:2] == ["SequenceFile", "SegmentationFile"]
    assert json.loads(paths[2].read_text(encoding="utf-8"))["format"] == "imnrisk-model"
    assert len({len(source[k]) for k in ("uris", "fileNames", "nodeNames", "loadFileTypes", "loadFiles",
                                         "checksums")}) == 1
    import hashlib
    assert source["checksums"] == ["SHA256:" + hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    assert source["category"] == "IMNRisk"


def test_the_widget_asks_once_on_train_and_installs_with_the_constraints(widget, monkeypatch, tmp_path):
    """Issue 27 item 1, the widget's glue: opening the training tab says what Train installs; Train
    asks once, then Slicer 5.10's pip_install gets '-c constraints' first, or 5.12's pip_ensure (imported
    as slicer.packaging) gets constraints= and no prompt of its own; a decline installs nothing."""
    import types
    from importlib import metadata
    w, scene, record, module = widget
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# extras\nimnrisk-no-such-package>=1\n", encoding="utf-8")
    monkeypatch.setattr(module, "REQUIREMENTS_TXT", requirements)
    monkeypatch.setattr(slicer.app, "temporaryPath", str(tmp_path))
    w.ui.panelTabs.emit("currentChanged(int)", 1)
    assert "imnrisk-no-such-package>=1" in w.ui.extrasStatusLabel.text and record["confirm"] == []
    record["answer"] = False
    w.onTrain()
    assert len(record["confirm"]) == 1 and record["pip"] == [] and w._run is None
    record["answer"] = True
    w.onTrain()
    constraints = tmp_path / "IMNRisk-constraints.txt"
    assert record["pip"] == [["-c", str(constraints), "imnrisk-no-such-package>=1"]]
    assert f"\nnumpy=={metadata.version('numpy')}\n" in constraints.read_text(encoding="utf-8")
    assert "Still missing" in record["errors"][-1] and w._run is None   # pip "ran" but installed nothing
    ensured = []
    packaging = types.ModuleType("slicer.packaging")
    packaging.pip_ensure = lambda reqs, **kw: ensured.append((reqs, kw))
    monkeypatch.setitem(sys.modules, "slicer.packaging", packaging)
    monkeypatch.setattr(slicer, "packaging", packaging, raising=False)
    w.onTrain()
    (reqs, kw), = ensured
    assert reqs == ["imnrisk-no-such-package>=1"] and kw["constraints"] == str(constraints)
    assert kw["prompt_install"] is False and kw["requester"] == "IMNRisk" and len(record["pip"]) == 1
    assert len(record["confirm"]) == 3   # one question per Train press, IMNRisk's own


def test_the_widget_releases_its_editor_on_reload_but_not_while_slicer_exits(widget):
    """Issue 27 item 2: the editor is made in Python and put in the placeholder; cleanup() on a module
    reload (event loop running) releases it; cleanup() from Slicer's aboutToQuit (loop ended) does
    not call it; exit() before cleanup() releases it once."""
    w, scene, record, module = widget
    editor = w.segmentEditorWidget
    assert ("aboutToQuit()", w.onAboutToQuit) in record["app_connections"]
    assert ("effectRegistered(QString)" in record["effect_factory"].handlers)
    assert editor.segmentationNodeSelectorVisible is False and editor.sourceVolumeNodeSelectorVisible is False
    names = [c[0] for c in editor.calls]
    assert names.index("setMRMLSegmentEditorNode") < names.index("setMRMLScene")  # as Slicer's SegmentEditor.py
    record["loop_level"] = 0          # aboutToQuit: Slicer unloads modules after the event loop ended
    before = len(editor.calls)
    w.cleanup()
    assert len(editor.calls) == before and ("aboutToQuit()", w.onAboutToQuit) not in record["app_connections"]
    w2 = module.IMNRiskWidget()
    w2.setup()
    w2.enter()
    record["loop_level"] = 1          # a reload from the running application
    w2.cleanup()
    assert [c[0] for c in w2.segmentEditorWidget.calls[-3:]] == ["setActiveEffect", "uninstallKeyboardShortcuts",
                                                                 "removeViewObservations"]
    w3 = module.IMNRiskWidget()
    w3.setup()
    w3.enter()
    w3.exit()                          # the main window's close selects no module first
    calls = len(w3.segmentEditorWidget.calls)
    w3.onAboutToQuit()
    record["loop_level"] = 1
    w3.cleanup()
    assert len(w3.segmentEditorWidget.calls) == calls
