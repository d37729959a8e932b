"""The browser face for a clinic (#26), in Chromium with real mouse and keyboard (test_web's harness):
an existing segmentation loaded (by path and by upload, a DICOM SEG among them) and then edited
before Predict; the DICOM SEG + SR download carrying the patient identifier; the model picker of
`--models DIR`; threshold bounds typed; an idle session ending and removing its uploads.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import phantom_with_features, pyradiomics_data, run_cli
from dicom_cases import make_dicom_phantom
from IMNRiskLib.inputs import imaging
from test_web import (REASON, WebServer, browser, download, effect_button, fill_form, new_page,  # noqa: F401
                      open_path, paint_two_slices, server, state_sent, voxels, wait_voxels, web_model)

pytestmark = pytest.mark.skipif(bool(REASON), reason=REASON or "ok")
IDLE_MINUTES = 0.1  # the session ends 6 s after its last user action


@pytest.fixture(scope="module")
def dicom_study(tmp_path_factory) -> Path:
    """A synthetic patient as a DICOM folder (all phases), its tumour label map and a DICOM SEG of it."""
    pytest.importorskip("highdicom")
    import pydicom
    from test_dicommask import write_highdicom_seg
    case = make_dicom_phantom(tmp_path_factory.mktemp("web-dicom") / "phantom") / "cases" / "SYN0001"
    files = imaging.dicom_phases(case / "dce_dicom")[imaging.DEFAULT_PHASE]
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(case / "tumour.nrrd"))) > 0
    write_highdicom_seg([pydicom.dcmread(str(f)) for f in files], {"Reader2": np.zeros_like(truth), "GTV": truth},
                        case / "tumour_seg.dcm")
    return case


def seg_nrrd(case: Path, folder: Path) -> Path:
    """The tumour as Slicer saves a segmentation (.seg.nrrd): segment "GTV" (label 1) beside an "Edema"
    segment (label 2, a few voxels in a corner), on the tumour mask's grid."""
    tumour = sitk.ReadImage(str(case / "tumour.nrrd"))
    labels = sitk.GetArrayFromImage(tumour).astype(np.uint8)
    labels[labels > 0] = 1
    labels[:2, :2, :2] = 2
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(tumour)
    for key, value in {"Segment0_ID": "Segment_1", "Segment0_Name": "Edema", "Segment0_LabelValue": "2",
                       "Segment0_Layer": "0", "Segment1_ID": "Segment_2", "Segment1_Name": "GTV",
                       "Segment1_LabelValue": "1", "Segment1_Layer": "0"}.items():
        image.SetMetaData(key, value)
    path = folder / "tumour.seg.nrrd"
    sitk.WriteImage(image, str(path), True)
    return path


def test_a_loaded_segmentation_is_edited_scored_and_exported_with_the_patient_id(server, browser, dicom_study,
                                                                                  web_model, tmp_path):
    """#26 items 2 and 4: a wrong file refused in one line; a label map by path, then a DICOM SEG and a
    Slicer .seg.nrrd by upload (their segment named), fill the tumour segment voxel for voxel; a brush
    stroke changes it; Predict equals `imnrisk predict` on the edited mask; the DICOM download carries
    the identifier, the log does not."""
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(dicom_study / "tumour.nrrd"))) > 0
    intensities = tmp_path / "DOE_JANE_phase2.nrrd"  # an image given as the mask: refused, its name not shown
    sitk.WriteImage(imaging.load_phase(dicom_study / "dce_dicom", 1)[0], str(intensities))
    page = new_page(browser, server.url)
    open_path(page, dicom_study / "dce_dicom")

    page.fill("#imn-mask-path", str(intensities))
    page.press("#imn-mask-path", "Enter")
    page.wait_for_selector("#imn-mask-error")
    error = page.inner_text("#imn-mask-error")
    assert "label map" in error or "intensity image" in error, error
    assert "\n" not in error.strip() and "DOE_JANE" not in error and str(tmp_path) not in error
    assert wait_voxels(page, "v === 0") == 0  # the segment is as it was

    page.click("#imn-mask-label")
    page.keyboard.type("GTV")  # the SEG's second segment, by name (keyboard)
    state_sent(page)
    page.set_input_files("#imn-mask-upload", str(dicom_study / "tumour_seg.dcm"))
    assert wait_voxels(page, f"v === {int(truth.sum())}") == int(truth.sum())
    assert page.locator("#imn-mask-error").count() == 0
    assert paint_two_slices(page, 0.5, 0.5, 6, 3) > int(truth.sum())  # the loaded segment edited with the brush

    page.set_input_files("#imn-mask-upload", str(seg_nrrd(dicom_study, tmp_path)))  # Slicer's .seg.nrrd, "GTV"
    assert wait_voxels(page, f"v === {int(truth.sum())}") == int(truth.sum())
    assert page.locator("#imn-mask-error").count() == 0

    page.fill("#imn-mask-label", "")
    page.fill("#imn-mask-path", str(dicom_study / "tumour.nrrd"))  # a label map by path replaces the segment
    page.click("#imn-mask-open")
    loaded = wait_voxels(page, f"v === {int(truth.sum())}")
    edited = paint_two_slices(page, 0.5, 0.5, 6, 3)
    assert edited > loaded

    fill_form(page, patient_id="PAT-SEG-0042")
    page.wait_for_function("() => !document.querySelector('#imn-predict').disabled")
    page.click("#imn-predict")
    page.wait_for_selector("#imn-result")
    scored = sitk.GetArrayFromImage(sitk.ReadImage(str(download(page, "#imn-download-mask", tmp_path / "m.nrrd"))))
    final = voxels(page)  # the live size once the last stroke has been counted (Predict counts it first)
    assert int(np.count_nonzero(scored)) == final >= edited and (scored[truth] > 0).all()
    clinical = {f.get_attribute("data-field"): f.get_attribute("data-value") for f in page.locator("[data-field]").all()}
    cli = run_cli("predict", web_model, "--image", dicom_study / "dce_dicom", "--mask", tmp_path / "m.nrrd", "--json",
                  "--clinical", *[f"{k}={v}" for k, v in clinical.items()])
    assert cli.returncode == 0, cli.stderr
    shown = json.loads(page.get_attribute("#imn-risk", "data-probability"))
    assert shown == pytest.approx(json.loads(cli.stdout)["probability"], abs=1e-9)

    import pydicom
    page.wait_for_function("() => !document.querySelector('#imn-download-dicom').disabled")
    archive = zipfile.ZipFile(download(page, "#imn-download-dicom", tmp_path / "dicom.zip"))
    assert len(archive.namelist()) == 2
    for name in archive.namelist():
        ds = pydicom.dcmread(io.BytesIO(archive.read(name)))
        assert ds.OtherPatientIDsSequence[0].PatientID == "PAT-SEG-0042"
    rows = list(csv.DictReader(download(page, "#imn-download-csv", tmp_path / "r.csv").open(encoding="utf-8")))
    assert rows[-1]["patient_id"] == "PAT-SEG-0042"
    page.close()
    assert "PAT-SEG-0042" not in server.output() and "DOE_JANE" not in server.output()


@pytest.fixture(scope="module")
def models_dir(web_model, tmp_path_factory) -> Path:
    """Two models: the quick one (no validation) and one with 3 bootstrap repeats (validated AUCs)."""
    folder = tmp_path_factory.mktemp("web-models")
    shutil.copy(web_model, folder / "a-quick.json")
    cohort = phantom_with_features()
    out = tmp_path_factory.mktemp("web-model-b")
    trained = run_cli("train", cohort / "cohort.csv", "--features", cohort / "features.csv", "--out", out,
                      "--cv-repeats", "0", "--bootstrap", "3", "--quiet", "--force")
    assert trained.returncode == 0, trained.stderr
    shutil.copy(out / "model.json", folder / "b-bootstrap.json")
    return folder


def summary_lines(page) -> list:
    return [line for line in page.inner_text("#imn-model-summary").splitlines() if line.strip()]


def type_bounds(page, low: float, high: float) -> None:
    """Type the threshold's bounds (keyboard) and wait until the slider holds them."""
    for field, value in (("#imn-threshold-low", low), ("#imn-threshold-high", high)):
        page.click(field)
        page.keyboard.press("Control+A")
        page.keyboard.type(f"{value:.6g}")
        page.keyboard.press("Tab")
    thumbs = "[...document.querySelectorAll('#imn-tumour [role=slider]')].map(t => Number(t.getAttribute('aria-valuenow')))"
    page.wait_for_function(f"() => {{ const v = {thumbs}; return Math.abs(v[0] - {low:.6g}) <= 1e-3 * Math.abs({low:.6g})"
                           f" && Math.abs(v[1] - {high:.6g}) <= 1e-3 * Math.abs({high:.6g}); }}")
    state_sent(page)


def test_the_model_picker_and_typed_threshold_bounds(models_dir, browser, tmp_path):
    """#26 items 3 and 5: `--models DIR` lists both models; picking one (mouse) shows its summary, validated
    performance before the apparent AUC, with the synthetic-data banner; picking the other changes it.
    The threshold's bounds typed (keyboard) are the range applied; the whole range gets the page's
    volume warning."""
    srv = WebServer(None, tmp_path, args=["--models", models_dir])
    try:
        page = new_page(browser, srv.url)
        assert "Choose a model" in page.inner_text("#imn-model-summary")
        assert page.locator("#imn-predict").is_disabled()
        seen = {}
        for name in ("b-bootstrap.json", "a-quick.json"):
            before = page.inner_text("#imn-model-summary")  # the summary shown before the pick
            page.locator("#imn-model").locator("xpath=ancestor::*[contains(@class,'v-field')]").first.click()
            page.locator(".v-overlay--active .v-list-item", has_text=name).click()
            page.wait_for_function(f"() => window.trame.state.state.imn_model_name === {json.dumps(name)} && "
                                   "document.querySelector('#imn-model-summary').innerText.includes('Validated') && "
                                   f"document.querySelector('#imn-model-summary').innerText !== {json.dumps(before)}")
            lines = summary_lines(page)
            validated = next(i for i, line in enumerate(lines) if line.startswith("Validated"))
            apparent = next(i for i, line in enumerate(lines) if "apparent" in line.lower())
            assert validated < apparent, lines  # validated performance leads
            assert page.inner_text("#imn-model-banner").startswith("TRAINED ON SYNTHETIC DATA")
            seen[name] = lines[validated]
        assert "bootstrap-corrected AUC (B = 3)" in seen["b-bootstrap.json"]
        assert seen["a-quick.json"].startswith("Validated AUC: none")

        study = tmp_path / "study.nrrd"
        shutil.copy(phantom_with_features() / "cases" / "SYN0001" / "dce.nrrd", study)
        open_path(page, study)
        effect_button(page, "mdi-auto-fix").click()
        page.wait_for_selector("#imn-threshold-low")
        phase2 = sitk.GetArrayFromImage(imaging.load_phase(study, 1)[0])
        # the whole range typed: the segment takes the organ, and the page warns before Predict
        type_bounds(page, float(phase2.min()), float(phase2.max()))
        page.locator("#imn-tumour button:has-text('Apply')").click()
        page.wait_for_selector("#imn-segment-note")
        assert "not reliable" in page.inner_text("#imn-segment-note")
        page.locator("#imn-tumour button:has(.mdi-undo)").click()
        wait_voxels(page, "v === 0")
        if not page.locator("#imn-threshold-low").is_visible():  # the undo left the effect
            effect_button(page, "mdi-auto-fix").click()
            page.wait_for_selector("#imn-threshold-low")
        low, high = (float(np.percentile(phase2, 99.0)), float(np.percentile(phase2, 99.9)))
        type_bounds(page, low, high)
        page.locator("#imn-tumour button:has-text('Apply')").click()
        applied = wait_voxels(page, "v > 0")
        assert page.locator("#imn-segment-note").count() == 0
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(download(page, "#imn-download-mask", tmp_path / "t.nrrd")))) > 0
        inside = phase2[mask]
        assert int(mask.sum()) == applied
        assert inside.min() >= float(f"{low:.6g}") - 1e-3 and inside.max() <= float(f"{high:.6g}") + 1e-3
        assert applied == int(((phase2 >= float(f"{low:.6g}")) & (phase2 <= float(f"{high:.6g}"))).sum())
        page.close()
    finally:
        srv.stop()


def test_a_trusted_key_leaves_only_its_signed_models_in_the_picker(web_model, browser, tmp_path):
    """#26 item 6 in the browser: `imnrisk web --models DIR --trusted-key KEY.pub` offers only the models
    that key signed (two here, beside an unsigned one); the one picked shows its summary."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(web_model, folder / "b-unsigned.json")
    assert run_cli("keygen", tmp_path / "site").returncode == 0
    signed = run_cli("sign", web_model, "--key", tmp_path / "site.key", "--out", folder / "a-signed.json")
    assert signed.returncode == 0, signed.stderr
    shutil.copy(folder / "a-signed.json", folder / "c-signed.json")
    srv = WebServer(None, tmp_path, args=["--models", folder, "--trusted-key", tmp_path / "site.pub"])
    try:
        page = new_page(browser, srv.url)
        page.locator("#imn-model").locator("xpath=ancestor::*[contains(@class,'v-field')]").first.click()
        items = page.locator(".v-overlay--active .v-list-item")
        items.first.wait_for()
        assert [t.strip() for t in items.all_inner_texts()] == ["a-signed.json", "c-signed.json"]
        items.nth(1).click()
        page.wait_for_function("() => window.trame.state.state.imn_model_name === 'c-signed.json' && "
                               "document.querySelector('#imn-model-summary').innerText.includes('Validated')")
        page.close()
    finally:
        srv.stop()


def test_an_idle_session_ends_and_removes_its_uploads(web_model, browser, tmp_path):
    """#26 items 1 and 7: after --idle-minutes without a user action the session says so on the page,
    ends, and its uploads are gone; the launcher goes on and gives the next tab a new session."""
    srv = WebServer(web_model, tmp_path, args=["--idle-minutes", IDLE_MINUTES])
    try:
        page = new_page(browser, srv.url)
        page.set_input_files("#imn-upload", str(pyradiomics_data() / "breast1_image.nrrd"))
        page.wait_for_selector("#imn-phase")
        assert len(srv.uploads()) == 1 and any(srv.uploads()[0].glob("upload*/*"))
        page.wait_for_selector("#imn-ended")
        assert f"ended after {IDLE_MINUTES:g} minutes without use" in page.inner_text("#imn-ended")
        deadline = time.monotonic() + 120
        while srv.uploads() and time.monotonic() < deadline:
            time.sleep(0.5)  # the session process removes its folder as it ends
        assert not srv.uploads()
        page.close()
        again = new_page(browser, srv.url)
        assert again.locator("#imn-ended").count() == 0 and srv.process.poll() is None
        again.close()
    finally:
        srv.stop()
