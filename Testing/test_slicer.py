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
    assert "SlicerRadiomics" not in top and "add_subdirectory(IMNRisk)" in top  # our SuperBuild brings pyradiomics


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
