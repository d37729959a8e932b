"""The browser face's non-UI parts, headless with slicer-core: a DCE study (4-D NRRD or a DICOM
folder split by IMNRiskLib's phase logic) becomes one sequence the controller shows at phase 2;
the saved mask is the segment; uploads and messages carry no file or patient name."""

from __future__ import annotations

import csv
import io
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import ROOT, run_cli

slicer = pytest.importorskip("slicer", reason="slicer-core (test extra) is needed for MRML")
sys.path.insert(0, str(ROOT / "IMNRisk"))

from IMNRiskLib.inputs import imaging  # noqa: E402
from IMNRiskSlicer.controller import ScoringController  # noqa: E402
from IMNRiskWeb import server, study  # noqa: E402


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dicom")
    result = run_cli("synth", folder, "--patients", "2", "--dicom", "--quiet", "--force")
    assert result.returncode == 0, result.stderr
    return folder / "cases" / "SYN0001"


def test_a_dicom_study_becomes_one_sequence_shown_at_phase_2(dicom_case):
    scene = slicer.vtkMRMLScene()
    controller = ScoringController(scene)
    sequence = study.load_study(scene, dicom_case / "dce_dicom")
    n = len(imaging.dicom_phases(dicom_case / "dce_dicom"))
    assert n > 2 and sequence.GetNumberOfDataNodes() == n
    state = controller.state()
    assert state["input"] == sequence.GetID() and state["phase"] == 1 and state["phase_count"] == n
    # the shown node holds what `imnrisk predict` reads as phase 1 of the folder, voxel for voxel
    from IMNRiskSlicer import mrml
    shown = mrml.volume_to_sitk(controller.displayed_node())
    expected, _, _ = imaging.load_phase(dicom_case / "dce_dicom", 1)
    assert np.array_equal(sitk.GetArrayFromImage(shown), sitk.GetArrayFromImage(expected))
    assert np.allclose(shown.GetOrigin(), expected.GetOrigin()) and np.allclose(shown.GetSpacing(), expected.GetSpacing())
    # a second study replaces the first (one patient at a time)
    again = study.load_study(scene, dicom_case / "dce_dicom")
    assert scene.GetNodesByClass("vtkMRMLSequenceNode").GetNumberOfItems() == 1
    assert controller.state()["input"] == again.GetID()


def test_the_saved_mask_is_the_segment_on_the_phase_grid(dicom_case, tmp_path):
    scene = slicer.vtkMRMLScene()
    controller = ScoringController(scene)
    study.load_study(scene, dicom_case / "dce_dicom")
    controller.new_segmentation()
    segmentation = scene.GetNodeByID(controller.segmentation_id)
    truth = sitk.ReadImage(str(dicom_case / "tumour.nrrd"))
    from IMNRiskSlicer import mrml
    labelmap = mrml.sitk_to_volume(truth, scene, "truth", "vtkMRMLLabelMapVolumeNode")
    slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation, "")
    segment_id = segmentation.GetSegmentation().GetNthSegmentID(1)
    out = study.mask_nrrd(scene, controller.displayed_node(), segmentation, segment_id, tmp_path / "mask.nrrd")
    saved = sitk.ReadImage(str(out))
    assert np.array_equal(sitk.GetArrayFromImage(saved) > 0, sitk.GetArrayFromImage(truth) > 0)
    assert not list(tmp_path.glob(".*tmp"))  # nothing half-written left beside it


def test_uploads_are_private_neutrally_named_and_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    uploads = study.Uploads()
    path = uploads.write([{"name": "DOE^JANE_dce.nii.gz", "content": [b"ab", b"cd"]}])
    assert path.read_bytes() == b"abcd" and path.name.endswith(".nii.gz") and "DOE" not in str(path)
    folder = uploads.write([{"name": "IM0001", "content": b"x"}, {"name": "IM0002", "content": b"y"}])
    assert folder.is_dir() and sorted(p.read_bytes() for p in folder.iterdir()) == [b"x", b"y"]
    assert (folder.stat().st_mode & 0o077) == 0 and (uploads.root.stat().st_mode & 0o077) == 0
    outside = tmp_path / "typed-study.nrrd"  # a study opened by its path on the workstation
    outside.write_bytes(b"keep")
    uploads.discard(outside)
    uploads.discard(path)  # the upload folder holding a replaced study goes, the others stay
    assert outside.read_bytes() == b"keep" and not path.exists() and folder.is_dir()
    uploads.close()
    assert not uploads.root.exists()


def test_messages_for_the_page_carry_no_path():
    text = "/srv/pacs/DOE_JANE/dce.nrrd: image file not found (model /home/u/m.json)"
    cleaned = study.redact(text, ["/home/u/m.json"])
    assert "/srv" not in cleaned and "DOE_JANE" not in cleaned and "m.json" not in cleaned
    assert "image file not found" in cleaned


def test_results_csv_has_one_row_per_prediction():
    rows = [{"time": "t1", "risk": "0.25"}, {"time": "t2", "risk": "0.75"}]
    parsed = list(csv.DictReader(io.StringIO(study.results_csv(rows))))
    assert parsed == rows and study.results_csv([]) == ""


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("127.8.0.3", True), ("localhost", True),
                                           ("::1", True), ("0.0.0.0", False), ("192.168.1.7", False)])
def test_which_hosts_need_a_token(host, loopback):
    assert server.is_loopback(host) is loopback
    env = {}
    if loopback:
        assert server.choose_token(host, environ=env) is None
    else:
        with pytest.raises(study.InputError):
            server.choose_token(host, environ=env)
    assert len(server.choose_token(host, random_token=True, environ=env)) >= 24
    assert server.choose_token(host, environ={server.TOKEN_ENV: "x" * 20}) == "x" * 20
    with pytest.raises(study.InputError):
        server.choose_token(host, environ={server.TOKEN_ENV: "short"})


def shown_study(dicom_case, **controller_options):
    """A scene and controller with the DICOM study open at phase 2 and an empty tumour segment."""
    scene = slicer.vtkMRMLScene()
    controller = ScoringController(scene, **controller_options)
    study.load_study(scene, dicom_case / "dce_dicom")
    controller.set_dicom_sources(study.dicom_sources(dicom_case / "dce_dicom", controller.phase))
    controller.new_segmentation()
    return scene, controller


def write_seg(dicom_case, tmp_path):
    """A DICOM SEG of the tumour on the scored phase's slices, written by highdicom (test_dicommask's writer)."""
    import pydicom
    from test_dicommask import write_highdicom_seg
    files = imaging.dicom_phases(dicom_case / "dce_dicom")[imaging.DEFAULT_PHASE]
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(dicom_case / "tumour.nrrd"))) > 0
    return write_highdicom_seg([pydicom.dcmread(str(f)) for f in files], {"GTV": truth}, tmp_path / "seg.dcm")


def write_rtstruct(dicom_case, tmp_path):
    """An RTSTRUCT of the tumour (ROI 'GTV') on the scored phase's slices, by rt-utils (test_dicommask's writer)."""
    import shutil
    from test_dicommask import write_rtutils
    series = tmp_path / "series"
    series.mkdir()
    for f in imaging.dicom_phases(dicom_case / "dce_dicom")[imaging.DEFAULT_PHASE]:
        shutil.copy(f, series / f.name)
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(dicom_case / "tumour.nrrd"))) > 0
    return write_rtutils(series, {"GTV": truth}, tmp_path / "rtstruct.dcm")


def test_a_segmentation_file_becomes_the_tumour_segment_checked_as_the_cli_checks(dicom_case, tmp_path):
    """#26 item 2, what the page calls: a label map, a DICOM SEG and an RTSTRUCT become the tumour
    segment voxel for voxel (the controller's load_segmentation, imaging.load_mask underneath) on a
    study loaded as the page loads it; the study itself given as the mask is refused in one line."""
    pytest.importorskip("highdicom")
    scene, controller = shown_study(dicom_case)
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(dicom_case / "tumour.nrrd"))) > 0
    for path, label in ((dicom_case / "tumour.nrrd", ""), (write_seg(dicom_case, tmp_path), "GTV"),
                        (write_rtstruct(dicom_case, tmp_path), "gtv")):
        assert controller.load_segmentation(str(path), label) is not None, controller.state()["error"]
        assert controller.state()["segment"]["voxels"] == int(truth.sum())
        saved = study.mask_nrrd(scene, controller.displayed_node(), scene.GetNodeByID(controller.segmentation_id),
                                controller.segment_id, tmp_path / "saved.nrrd")
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(saved))) > 0, truth)
    assert controller.load_segmentation(str(dicom_case / "dce_dicom"), "") is None
    assert "\n" not in controller.state()["error"]
    assert controller.state()["segment"]["voxels"] == int(truth.sum())  # the tumour as it was


def test_the_dicom_export_carries_the_patient_identifier_beside_the_source_patient_id(dicom_case, quick_model,
                                                                                       tmp_path):
    """#26 item 4: the identifier typed on the page goes into the SEG and the SR (Other Patient IDs,
    issuer IMNRisk); the source series' own Patient ID stays."""
    pydicom = pytest.importorskip("pydicom")
    pytest.importorskip("highdicom")
    from IMNRiskLib.outputs import dicomout
    scene, controller = shown_study(dicom_case, require_patient_id=True)
    assert controller.load_segmentation(str(dicom_case / "tumour.nrrd")) is not None
    controller.load_model(str(quick_model))
    controller.set_patient_id("PAT-EXPORT-42")
    for field in controller.form():
        controller.set_clinical(field["name"], field["levels"][0] if field["levels"] else 50)
    assert controller.predict() is not None, controller.state()["error"]
    assert controller.export_gate()["enabled"], controller.export_gate()["reason"]
    written = controller.export_dicom(str(tmp_path / "out"))
    source = pydicom.dcmread(str(imaging.dicom_phases(dicom_case / "dce_dicom")[1][0]))
    for path in (written["seg"], written["sr"]):
        ds = pydicom.dcmread(path)
        other = ds.OtherPatientIDsSequence[0]
        assert (other.PatientID, other.IssuerOfPatientID) == ("PAT-EXPORT-42", dicomout.ISSUER_OF_PATIENT_ID)
        assert ds.PatientID == source.PatientID
    archive = study.zip_files([written["seg"], written["sr"]])
    import zipfile
    assert sorted(zipfile.ZipFile(io.BytesIO(archive)).namelist()) == sorted(
        [dicomout.SEG_NAME, dicomout.SR_NAME])
    assert controller.results()[-1]["patient_id"] == "PAT-EXPORT-42"


def test_an_enhanced_mr_study_exports_its_seg_on_the_shown_phase_frames(quick_model, tmp_path):
    """A study stored as one Enhanced MR object: the page's export writes the SEG on that object's
    frames of the shown phase (one reference per SEG frame, to that phase's frame)."""
    pydicom = pytest.importorskip("pydicom")
    pytest.importorskip("highdicom")
    from IMNRiskLib.inputs import dicomimage
    result = run_cli("synth", tmp_path / "enhanced", "--patients", "2", "--dicom-form", "enhanced", "--quiet", "--force")
    assert result.returncode == 0, result.stderr
    case = tmp_path / "enhanced" / "cases" / "SYN0001"
    scene = slicer.vtkMRMLScene()
    controller = ScoringController(scene)
    study.load_study(scene, case / "dce_dicom")
    controller.set_dicom_sources(study.dicom_sources(case / "dce_dicom", controller.phase))
    controller.new_segmentation()
    assert controller.load_segmentation(str(case / "tumour.nrrd")) is not None, controller.state()["error"]
    controller.load_model(str(quick_model))
    for field in controller.form():
        controller.set_clinical(field["name"], field["levels"][0] if field["levels"] else 50)
    assert controller.predict() is not None, controller.state()["error"]
    assert controller.export_gate()["enabled"], controller.export_gate()["reason"]
    written = controller.export_dicom(str(tmp_path / "out"))
    enhanced = dicomimage.enhanced_object(case / "dce_dicom", imaging._dicom_files(case / "dce_dicom"))
    source = pydicom.dcmread(str(enhanced))
    positions, cosines, _, keys, _ = dicomimage.frame_table(source, enhanced)
    shown = dicomimage.phase_frames(positions, cosines, keys, enhanced)[controller.state()["phase"]]
    seg = pydicom.dcmread(written["seg"])
    references = [item.DerivationImageSequence[0].SourceImageSequence for item in seg.PerFrameFunctionalGroupsSequence]
    assert all(len(r) == 1 and r[0].ReferencedSOPInstanceUID == source.SOPInstanceUID for r in references)
    assert sorted(int(r[0].ReferencedFrameNumber) - 1 for r in references) == sorted(shown)
