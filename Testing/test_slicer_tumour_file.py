"""A tumour file loaded in the Slicer controller (issue #30 item 4): labelmap, DICOM SEG and RTSTRUCT,
read by the library's one mask loader onto the shown phase, put in the scene as an editable segment,
scored with the same Rad-Score as `imnrisk predict --mask` on the same files; a bad file is one line.

Headless with slicer-core; the SEG and RTSTRUCT come from writers no one here wrote (highdicom,
rt-utils), as in test_dicommask.py.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import ROOT

sys.path.insert(0, str(ROOT / "IMNRisk"))
slicer = pytest.importorskip("slicer", reason="slicer-core is installed by make install (test extra)")
pytest.importorskip("highdicom", reason="highdicom missing: pip install 'imnrisk[dicom]'")
pytest.importorskip("skimage", reason="scikit-image missing: pip install 'imnrisk[dicom]'")

from IMNRiskLib.inputs import imaging  # noqa: E402
from IMNRiskSlicer.controller import ScoringController, instance_files, segment_voxels  # noqa: E402
from test_dicommask import write_highdicom_seg, write_rtutils  # noqa: E402
from test_slicer import (assert_same_score, cli_predict, dicom_patient, dicom_scene, fill_form,  # noqa: E402,F401
                         model, widget)


@pytest.fixture(scope="module")
def files(dicom_patient, tmp_path_factory):
    """SYN0001's tumour as its NRRD labelmap, as a highdicom SEG and as an rt-utils RTSTRUCT (ROIs 'GTV'
    and 'Reader2'), the two DICOM objects on the slices of the phase `predict` scores by default."""
    import pydicom
    folder = tmp_path_factory.mktemp("tumour-files")
    phase = imaging.dicom_phases(dicom_patient["image"])[imaging.DEFAULT_PHASE]
    series = folder / "series"
    series.mkdir()
    for file in phase:
        (series / file.name).write_bytes(file.read_bytes())
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(dicom_patient["mask"]))).astype(bool)
    reader2 = np.zeros_like(mask)
    reader2[mask.shape[0] // 2, :4, :4] = True
    return {"labelmap": dicom_patient["mask"], "mask": mask,
            "seg": write_highdicom_seg([pydicom.dcmread(str(f)) for f in phase], {"Tumour": mask},
                                       folder / "seg.dcm"),
            "rtstruct": write_rtutils(series, {"GTV": mask, "Reader2": reader2}, folder / "rtstruct.dcm")}


def dicom_controller(dicom_patient, model, dicom_lookup=True):
    """The DICOM patient's DCE series in a scene (as Slicer's DICOM module loads it), the model loaded
    and the form filled; `dicom_lookup`: the face can find the shown phase's DICOM files."""
    model_path, clinical = model
    scene, _, _, _, database = dicom_scene(dicom_patient)
    sources = (lambda node: instance_files(node, database.get)) if dicom_lookup else None
    controller = ScoringController(scene, dicom_sources=sources)
    controller.load_model(str(model_path))
    fill_form(controller, clinical)
    return controller


@pytest.mark.parametrize("kind, label, cli_label", [("labelmap", "", "1"), ("seg", "Tumour", "Tumour"),
                                                    ("rtstruct", "gtv", "gtv")])
def test_a_tumour_file_becomes_an_editable_segment_scored_as_predict_mask_scores_it(
        model, dicom_patient, files, kind, label, cli_label):
    """Loaded onto the shown (default) phase as a new binary-labelmap segment chosen as the tumour, with
    the file's voxels; Predict gives the Rad-Score of `imnrisk predict --mask` on the same files."""
    model_path, clinical = model
    controller = dicom_controller(dicom_patient, model)
    before = {s["id"] for s in controller.state()["segmentations"]}
    node_id = controller.load_segmentation(str(files[kind]), label=label)
    state = controller.state()
    assert node_id is not None, state["error"]
    assert state["error"] is None and node_id not in before and state["segmentation_id"] == node_id
    assert state["phase"] == imaging.DEFAULT_PHASE
    node = controller.scene.GetNodeByID(node_id)
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 1 and state["segment_id"] == segmentation.GetNthSegmentID(0)
    assert segmentation.GetSourceRepresentationName() == \
        slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()  # the Segment Editor paints in it
    assert state["segment"]["voxels"] == int(files["mask"].sum()) > 0
    assert segment_voxels(node, state["segment_id"])[0] == int(files["mask"].sum())
    assert state["tumour_file"] == {"segmentation_id": node_id, "warnings": []}  # the reference was checked
    result = controller.predict()
    assert result is not None, controller.state()["error"]
    cli = cli_predict(model_path, clinical, dicom_patient["image"], files[kind], "--label", cli_label)
    assert_same_score(result, cli)


def test_without_the_image_dicom_files_a_dicom_mask_is_placed_and_the_unchecked_reference_said(
        model, dicom_patient, files):
    """A face that cannot find the image's DICOM files: the SEG is placed by patient coordinates, and the
    library's warning that its reference was not checked is in the state (not silently dropped)."""
    controller = dicom_controller(dicom_patient, model, dicom_lookup=False)
    node_id = controller.load_segmentation(str(files["seg"]), label=1)
    assert node_id is not None, controller.state()["error"]
    warnings = controller.state()["tumour_file"]["warnings"]
    assert len(warnings) == 1 and "not DICOM" in warnings[0]
    controller.choose_segmentation(None)
    assert controller.state()["tumour_file"] is None  # said of the loaded segmentation only


@pytest.mark.parametrize("case, needles", [
    ("missing ROI", ("no ROI named 'Tumour'", "'GTV'", "'Reader2'")),
    ("label 0", ("label 0 must be 1 or more",)),
    ("not a mask", ("not-a-mask.nrrd",)),
    ("missing file", ("missing.nrrd",)),
])
def test_a_bad_tumour_file_is_one_line_and_changes_nothing(model, dicom_patient, files, tmp_path, case, needles):
    """A wrong ROI name, label 0, a damaged file, a missing file: one line in state()["error"] naming
    the problem (and the file), no segmentation added, the chosen one kept."""
    controller = dicom_controller(dicom_patient, model)
    garbage = tmp_path / "not-a-mask.nrrd"
    garbage.write_bytes(b"NRRD0004\ntype: what\n\n\x00\x01")
    path, label = {"missing ROI": (files["rtstruct"], "Tumour"), "label 0": (files["labelmap"], "0"),
                   "not a mask": (garbage, ""), "missing file": (tmp_path / "missing.nrrd", "")}[case]
    before = controller.state()
    assert controller.load_segmentation(str(path), label=label) is None
    state = controller.state()
    assert state["error"] and "\n" not in state["error"] and "Traceback" not in state["error"]
    for needle in needles:
        assert needle in state["error"], (needle, state["error"])
    assert state["segmentations"] == before["segmentations"]
    assert state["segmentation_id"] == before["segmentation_id"] and state["tumour_file"] is None


def test_a_tumour_file_without_an_image_shown_is_refused(model):
    controller = ScoringController(slicer.vtkMRMLScene())
    assert controller.load_segmentation(str(ROOT / "README.md")) is None
    assert "Choose the DCE series first" in controller.state()["error"]


def test_the_widget_button_asks_for_a_file_and_lets_the_controller_load_it(widget, monkeypatch, tmp_path):
    """The widget's own code, run: the button asks for a file, passes it and the label field on, and
    redraws the tumour from the controller's state; a bad file's line is shown, nothing else decided."""
    import time
    from IMNRiskSlicer import selftest
    w, scene, record, module = widget
    selftest.load_demo_case(scene)
    time.sleep(module.SCENE_DEBOUNCE_S)
    w.onTimer()
    chosen = []
    monkeypatch.setattr(sys.modules["qt"], "QFileDialog", types.SimpleNamespace(
        getOpenFileName=lambda *args: chosen.pop(0) if chosen else ""), raising=False)
    w.ui.loadSegmentationButton.click()  # the dialog cancelled: nothing happens
    assert w.controller.state()["segmentation_id"] is None and w.controller.state()["error"] is None
    chosen.append(str(selftest.DEMO_MASK))
    w.ui.tumourLabelLineEdit.text = ""
    w.ui.loadSegmentationButton.click()
    state = w.controller.state()
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(selftest.DEMO_MASK))) > 0
    assert state["error"] is None and state["segmentation_id"] is not None
    assert w.ui.segmentationSelector.currentNode().GetID() == state["segmentation_id"]
    assert w.ui.segmentSizeLabel.text.startswith(f"{int(mask.sum())} voxels")
    assert w.ui.tumourFileNoteLabel.text == ""
    chosen.append(str(selftest.DEMO_MASK))
    w.ui.tumourLabelLineEdit.text = "7"
    w.ui.loadSegmentationButton.click()
    assert "label" in w.ui.errorLabel.text.lower() and str(selftest.DEMO_MASK) in w.ui.errorLabel.text
    assert w.controller.state()["segmentation_id"] == state["segmentation_id"]
