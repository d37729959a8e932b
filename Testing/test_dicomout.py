"""`imnrisk predict --dicom-out`: the tumour as DICOM SEG and the result as a TID 1500 SR, read back
with highdicom, checked with dciodvfy where Debian's dicom3tools is installed, and private."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import run_cli
from dicom_cases import clinical_args, cohort_rows, make_dicom_phantom, patient_paths

hd = pytest.importorskip("highdicom", reason="highdicom missing: pip install 'imnrisk[dicom]'")
import pydicom  # noqa: E402  (highdicom brings it)

from IMNRiskLib import RESEARCH_ONLY, __version__  # noqa: E402
from IMNRiskLib.outputs import dicomout
from IMNRiskLib.inputs import imaging

PID = "SYN0001"


@pytest.fixture(scope="module")
def dicom_phantom(tmp_path_factory) -> Path:
    return make_dicom_phantom(tmp_path_factory.mktemp("dicom-phantom") / "phantom")


@pytest.fixture(scope="module")
def model_path(trained_phantom) -> Path:
    return trained_phantom[0] / "model.json"


@pytest.fixture(scope="module")
def predicted(dicom_phantom, model_path, tmp_path_factory):
    """predict --json --dicom-out on one DICOM patient: (result, SEG path, SR path, out folder)."""
    out = tmp_path_factory.mktemp("dicom-out") / "results"
    paths = patient_paths(dicom_phantom, PID)
    result = run_cli("predict", model_path, "--image", paths["image"], "--mask", paths["mask"],
                     *clinical_args(model_path, cohort_rows(dicom_phantom)[PID]), "--json", "--dicom-out", out)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), out / dicomout.SEG_NAME, out / dicomout.SR_NAME, out


def chosen_phase_files(dicom_phantom: Path, phase: int):
    return imaging.dicom_phases(patient_paths(dicom_phantom, PID)["image"])[phase]


def test_sr_holds_every_value_of_predict_json(predicted, model_path):
    result, _, sr_path, _ = predicted
    back = dicomout.read_report(sr_path)
    for key in ("radscore", "probability", "ci95", "risk_group", "points", "features"):
        assert back[key] == result[key], key  # FD values: the doubles themselves, not rounded DS text
    assert set(back["features"]) == set(json.loads(model_path.read_text())["radiomics"]["features"])
    assert back["notice"] == RESEARCH_ONLY
    sha = json.loads(model_path.read_text())["sha256"]
    assert back["algorithm"]["Algorithm Version"] == [__version__]
    assert f"model SHA-256 {sha}" in back["algorithm"]["Algorithm Parameters"]
    assert back["tracking"] == [dicomout.TUMOUR_GROUP_ID, dicomout.RISK_GROUP_ID]


def test_sr_references_the_seg_and_the_source_series(predicted, dicom_phantom):
    result, seg_path, sr_path, _ = predicted
    seg, sr = pydicom.dcmread(seg_path), hd.sr.srread(str(sr_path))
    source = pydicom.dcmread(chosen_phase_files(dicom_phantom, result["phase"])[0])
    items = list(_content_items(pydicom.dcmread(sr_path)))
    image = [i for i in items if i.ValueType == "IMAGE"]
    assert len(image) == 1 and image[0].ConceptNameCodeSequence[0].CodeMeaning == "Referenced Segment"
    ref = image[0].ReferencedSOPSequence[0]
    assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (seg.SOPClassUID, seg.SOPInstanceUID)
    assert list(np.atleast_1d(ref.ReferencedSegmentNumber)) == [1]
    series = [i.UID for i in items if i.ValueType == "UIDREF"
              and i.ConceptNameCodeSequence[0].CodeMeaning == "Source Series for Segmentation"]
    assert series == [source.SeriesInstanceUID]
    evidence = {s.SeriesInstanceUID: {i.ReferencedSOPInstanceUID for i in s.ReferencedSOPSequence}
                for st in sr.CurrentRequestedProcedureEvidenceSequence for s in st.ReferencedSeriesSequence}
    assert seg.SOPInstanceUID in evidence[seg.SeriesInstanceUID]
    assert source.SOPInstanceUID in evidence[source.SeriesInstanceUID]
    assert sr.StudyInstanceUID == seg.StudyInstanceUID == source.StudyInstanceUID


def _content_items(ds):
    """Every SR content item, depth first."""
    for item in ds.get("ContentSequence", []):
        yield item
        yield from _content_items(item)


def test_seg_is_the_mask_on_the_chosen_phase(predicted, dicom_phantom):
    result, seg_path, _, _ = predicted
    seg = hd.seg.segread(str(seg_path))
    files = chosen_phase_files(dicom_phantom, result["phase"])
    sources = [pydicom.dcmread(f) for f in files]
    assert result["phase"] == imaging.DEFAULT_PHASE
    assert {s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence} == {sources[0].SeriesInstanceUID}
    phase_uids = [s.SOPInstanceUID for s in sources]
    other_phase = [pydicom.dcmread(f).SOPInstanceUID for f in chosen_phase_files(dicom_phantom, 0)]
    referenced = {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == set(phase_uids) and not referenced & set(other_phase)
    frames = seg.get_pixels_by_source_instance(phase_uids, segment_numbers=[1])[..., 0]
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(patient_paths(dicom_phantom, PID)["mask"])))
    assert mask.sum() > 0 and np.array_equal(frames.astype(bool), mask.astype(bool))
    segment = seg.SegmentSequence[0]
    assert segment.SegmentLabel == dicomout.TUMOUR_LABEL
    assert (segment.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator,
            segment.SegmentedPropertyTypeCodeSequence[0].CodeValue) == ("SCT", dicomout.SCT_PRIMARY_MALIGNANT_NEOPLASM[0])
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == dicomout.SCT_MORPHOLOGICALLY_ABNORMAL[0]
    assert segment.AnatomicRegionSequence[0].CodeValue == dicomout.SCT_BREAST[0]


@pytest.mark.skipif(shutil.which("dciodvfy") is None,
                    reason="dciodvfy missing (Debian: apt-get install dicom3tools; .ci/run does it as root)")
def test_dciodvfy_finds_no_error(predicted):
    _, seg_path, sr_path, _ = predicted
    for path, iod in ((seg_path, "Segmentation"), (sr_path, "Comprehensive3DSR")):
        out = subprocess.run(["dciodvfy", str(path)], capture_output=True, encoding="utf-8", errors="replace")
        text = out.stdout + out.stderr
        assert iod in text, text
        assert [line for line in text.splitlines() if line.startswith("Error")] == [], text


def _strings(ds, found=None):
    """Every text value in a dataset, nested sequences included (bulk pixel data left out)."""
    found = [] if found is None else found
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _strings(item, found)
        elif elem.VR in ("AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC",
                         "UI", "UR", "UT"):
            values = elem.value if isinstance(elem.value, (list, pydicom.multival.MultiValue)) else [elem.value]
            found += [(elem.keyword, str(v)) for v in values]
    return found


def test_seg_and_sr_carry_the_patient_and_no_input_path(predicted, dicom_phantom, model_path):
    result, seg_path, sr_path, out = predicted
    source = pydicom.dcmread(chosen_phase_files(dicom_phantom, result["phase"])[0])
    assert str(source.PatientName).startswith("SYNTHETIC^")  # the phantom keeps synthetic names
    inputs = [str(dicom_phantom), str(model_path), str(out), "tumour.nrrd", "dce_dicom", "model.json",
              model_path.parent.name, dicom_phantom.parent.name]
    for path in (seg_path, sr_path):
        ds = pydicom.dcmread(path)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                        "StudyDate", "StudyID", "AccessionNumber"):
            assert str(ds.get(keyword, "")) == str(source.get(keyword, "")), (path.name, keyword)
        values = _strings(ds)
        assert values
        leaks = [(k, v) for k, v in values if "/" in v or "\\" in v or any(i in v for i in inputs)]
        assert leaks == [], (path.name, leaks)
        clinical = {a.split("=", 1)[1] for a in clinical_args(model_path, cohort_rows(dicom_phantom)[PID])[1:]}
        assert clinical and not [(k, v) for k, v in values if v in clinical], path.name  # values entered stay out


def test_not_a_dicom_image_is_exit_2_and_writes_nothing(dicom_phantom, model_path, tmp_path):
    paths = patient_paths(dicom_phantom, PID)
    nrrd = tmp_path / "image.nrrd"
    sitk.WriteImage(sitk.ReadImage(str(paths["mask"])), str(nrrd))
    out = tmp_path / "dicom"
    result = run_cli("predict", model_path, "--image", nrrd, "--mask", paths["mask"],
                     *clinical_args(model_path, cohort_rows(dicom_phantom)[PID]), "--dicom-out", out)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(nrrd) in lines[0] and "--image" in lines[0] and "DICOM" in lines[0]
    assert "Traceback" not in result.stderr and not out.exists()


def test_existing_outputs_are_kept_without_force(predicted, dicom_phantom, model_path):
    _, seg_path, sr_path, out = predicted
    before = seg_path.read_bytes(), sr_path.read_bytes()
    paths = patient_paths(dicom_phantom, PID)
    result = run_cli("predict", model_path, "--image", paths["image"], "--mask", paths["mask"],
                     *clinical_args(model_path, cohort_rows(dicom_phantom)[PID]), "--dicom-out", out)
    assert result.returncode == 2 and "--force" in result.stderr
    assert (seg_path.read_bytes(), sr_path.read_bytes()) == before
    assert sorted(p.name for p in out.iterdir()) == sorted([dicomout.SEG_NAME, dicomout.SR_NAME])  # no temp left


def test_tree_lines_show_the_report(predicted):
    _, _, sr_path, _ = predicted
    lines = [text for _, text in dicomout.tree_lines(sr_path)]
    assert lines[0] == "CONTAINER Imaging Measurement Report"
    for expected in ("Rad-Score", "IMN metastasis probability", "Nomogram total points", "risk group", "Algorithm Parameters", RESEARCH_ONLY):
        assert any(expected in line for line in lines), expected


def test_mask_frames_follow_slice_positions_not_file_order(dicom_phantom):
    files = chosen_phase_files(dicom_phantom, 1)
    sources = dicomout.read_source(files)
    mask = imaging.load_case(patient_paths(dicom_phantom, PID)["image"], patient_paths(dicom_phantom, PID)["mask"]).mask
    shuffled = sources[::-1][:3] + sources[::-1][3:][::-1]
    frames, ordered = dicomout.mask_frames(mask, shuffled)
    assert [d.SOPInstanceUID for d in ordered] == [d.SOPInstanceUID for d in sources]
    assert np.array_equal(frames, sitk.GetArrayFromImage(mask))
    moved = sitk.Image(mask)
    moved.SetOrigin([o + 5.0 for o in mask.GetOrigin()])
    with pytest.raises(dicomout.InputError, match="no DICOM slice"):
        dicomout.mask_frames(moved, sources)


def test_every_code_value_is_short(predicted):
    """Code values of at most 16 characters (no LongCodeValue, which highdicom's reader and many
    viewers do not follow), local ones declared in the SR's coding scheme identification."""
    _, seg_path, sr_path, _ = predicted
    for path in (seg_path, sr_path):
        ds = pydicom.dcmread(path)
        values = _strings(ds)
        assert [v for k, v in values if k == "CodeValue" and len(v) > 16] == []
        assert "LongCodeValue" not in {k for k, _ in values}
    schemes = {i.CodingSchemeDesignator for i in pydicom.dcmread(sr_path).CodingSchemeIdentificationSequence}
    assert dicomout.SCHEME in schemes
