"""`imnrisk pacs` against a real Orthanc on loopback: upload a phantom's DICOM series, retrieve,
score, store SEG + SR, read them back from Orthanc and compare with `imnrisk predict --json`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import orthanc_server
from conftest import run_cli
from dicom_cases import clinical_args, cohort_rows, make_dicom_phantom, patient_paths

hd = pytest.importorskip("highdicom", reason="highdicom missing: pip install 'imnrisk[dicom]'")
pytest.importorskip("pynetdicom", reason="pynetdicom missing: pip install 'imnrisk[dicom]'")
import pydicom  # noqa: E402

from IMNRiskLib.outputs import dicomout  # noqa: E402

PID = "SYN0002"  # the second of two uploaded patients: the study UID must pick the right one


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    reason = orthanc_server.why_unavailable()
    if reason:
        print(f"skipping the PACS round trip: {reason}")
        pytest.skip(reason)
    yield from orthanc_server.start(tmp_path_factory.mktemp("orthanc"))


@pytest.fixture(scope="module")
def dicom_phantom(tmp_path_factory) -> Path:
    return make_dicom_phantom(tmp_path_factory.mktemp("pacs-phantom") / "phantom")


@pytest.fixture(scope="module")
def uploaded(orthanc, dicom_phantom):
    """Both patients' series in Orthanc; the study UID of PID."""
    for pid in cohort_rows(dicom_phantom):
        orthanc.upload(sorted(patient_paths(dicom_phantom, pid)["image"].glob("*.dcm")))
    first = next(patient_paths(dicom_phantom, PID)["image"].glob("*.dcm"))
    assert orthanc.get_json("/statistics")["CountPatients"] == 2
    return pydicom.dcmread(first).StudyInstanceUID


def write_settings(folder: Path, orthanc, **extra) -> Path:
    settings = {"called_ae": orthanc_server.AET, "host": "127.0.0.1", "port": orthanc.dicom_port,
                "calling_ae": orthanc_server.CLIENT_AET, "move_port": orthanc.client_port, **extra}
    path = folder / "pacs.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in settings.items()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def model_path(trained_phantom) -> Path:
    return trained_phantom[0] / "model.json"


@pytest.fixture(scope="module")
def round_trip(orthanc, uploaded, dicom_phantom, model_path, tmp_path_factory):
    """imnrisk pacs (C-FIND, C-GET, score, C-STORE): (its JSON, its work folder)."""
    work = tmp_path_factory.mktemp("pacs-run")
    args = clinical_args(model_path, cohort_rows(dicom_phantom)[PID])
    result = run_cli("pacs", model_path, "--config", write_settings(work, orthanc), "--study", uploaded,
                     "--mask", patient_paths(dicom_phantom, PID)["mask"], *args, "--out", work / "out", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), work


def _same(a, b, key: str) -> None:
    """Equal values: exactly for text, to 1e-12 relative for numbers (the CI's quadratic form
    x'Cx may differ in its last bit between processes: BLAS picks kernels by memory alignment)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), key
        for k in a:
            _same(a[k], b[k], f"{key}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), key
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{key}[{i}]")
    elif isinstance(a, float):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300), (key, a, b)
    else:
        assert a == b, key


def test_round_trip_values_from_orthanc_equal_predict_json(round_trip, orthanc, uploaded, dicom_phantom,
                                                           model_path, tmp_path):
    pacs_result, _ = round_trip
    paths = patient_paths(dicom_phantom, PID)
    local = run_cli("predict", model_path, "--image", paths["image"], "--mask", paths["mask"],
                    *clinical_args(model_path, cohort_rows(dicom_phantom)[PID]), "--json")
    assert local.returncode == 0, local.stderr
    expected = json.loads(local.stdout)
    srs, segs = orthanc.series_files(uploaded, "SR"), orthanc.series_files(uploaded, "SEG")
    assert len(srs) == 1 and len(segs) == 1
    (tmp_path / "sr.dcm").write_bytes(srs[0])
    back = dicomout.read_report(tmp_path / "sr.dcm")
    for key in ("radscore", "probability", "ci95", "risk_group", "points", "features"):
        assert back[key] == pacs_result[key], key  # what was stored is what the command computed
        _same(back[key], expected[key], key)  # and what predict --json gives on the original files
    sha = json.loads(model_path.read_text())["sha256"]
    assert f"model SHA-256 {sha}" in back["algorithm"]["Algorithm Parameters"]


def test_round_trip_seg_and_sr_belong_to_the_study(round_trip, orthanc, uploaded, dicom_phantom):
    source = pydicom.dcmread(next(patient_paths(dicom_phantom, PID)["image"].glob("*.dcm")))
    seg = pydicom.dcmread(pydicom.filebase.DicomBytesIO(orthanc.series_files(uploaded, "SEG")[0]))
    sr = pydicom.dcmread(pydicom.filebase.DicomBytesIO(orthanc.series_files(uploaded, "SR")[0]))
    for ds in (seg, sr):
        assert (ds.StudyInstanceUID, ds.PatientID, str(ds.PatientName)) == \
            (source.StudyInstanceUID, source.PatientID, str(source.PatientName))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    evidence = {i.ReferencedSOPInstanceUID for st in sr.CurrentRequestedProcedureEvidenceSequence
                for s in st.ReferencedSeriesSequence for i in s.ReferencedSOPSequence}
    assert seg.SOPInstanceUID in evidence


def test_retrieved_series_is_the_uploaded_one(round_trip, dicom_phantom):
    pacs_result, _ = round_trip
    retrieved = sorted(pydicom.dcmread(p).SOPInstanceUID for p in Path(pacs_result["files"]["source"]).glob("*.dcm"))
    sent = sorted(pydicom.dcmread(p).SOPInstanceUID for p in patient_paths(dicom_phantom, PID)["image"].glob("*.dcm"))
    assert retrieved == sent


def test_c_move_retrieves_the_same_series(orthanc, uploaded, dicom_phantom, model_path, tmp_path, round_trip):
    args = clinical_args(model_path, cohort_rows(dicom_phantom)[PID])
    result = run_cli("pacs", model_path, "--config", write_settings(tmp_path, orthanc, retrieve="move"),
                     "--study", uploaded, "--mask", patient_paths(dicom_phantom, PID)["mask"], *args,
                     "--out", tmp_path / "out", "--json", "--no-store")
    assert result.returncode == 0, result.stderr
    moved = json.loads(result.stdout)
    assert not moved["stored"] and len(orthanc.series_files(uploaded, "SR")) == 1
    n = len(list(Path(moved["files"]["source"]).glob("*.dcm")))
    assert n == len(list(patient_paths(dicom_phantom, PID)["image"].glob("*.dcm")))
    assert moved["radscore"] == round_trip[0]["radscore"]


@pytest.mark.parametrize("line, field", [("password: secret\n", "password"), ("port: 70000\n", "port"),
                                         ("retrieve: ftp\n", "retrieve")])
def test_bad_settings_are_exit_2_naming_the_field(tmp_path, model_path, line, field):
    config = tmp_path / "pacs.yaml"
    config.write_text("called_ae: ORTHANC\nhost: 127.0.0.1\nport: 4242\n" + line, encoding="utf-8")
    result = run_cli("pacs", model_path, "--config", config, "--study", "1.2.3", "--mask", "m.nrrd",
                     "--out", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and str(config) in result.stderr and field in result.stderr


def test_unreachable_pacs_is_exit_2(tmp_path, model_path):
    config = tmp_path / "pacs.yaml"
    port = orthanc_server.free_port()
    config.write_text(f"called_ae: NOBODY\nhost: 127.0.0.1\nport: {port}\ntimeout: 5\n", encoding="utf-8")
    doc = json.loads(Path(model_path).read_text(encoding="utf-8"))
    levels = {v["name"]: v.get("levels") for v in doc["clinical"]["schema"]["variables"]}
    result = run_cli("pacs", model_path, "--config", config, "--study", "1.2.3", "--mask", "m.nrrd",
                     "--out", tmp_path / "out", "--clinical", *[f"{f}={levels[f][0]}" for f in doc["clinical"]["factors"]])
    assert result.returncode == 2 and "no association" in result.stderr and str(config) in result.stderr
