"""DCE images from DICOM beyond one classic series (IMNRiskLib.inputs.dicomimage): Enhanced MR multi-frame objects
(highdicom's Legacy Converted Enhanced MR, and true Enhanced MR objects with the phase in the Frame
Content's Temporal Position Index or in a Dimension Index value) and one series per phase; the phantom
cohort in each `synth --dicom-form`, with its SEG and RTSTRUCT masks, extracts the NRRD form's
features; bad input (a missing frame, mixed orientations, two series claiming one phase, a derived
series) is refused with exit 2 and one line.
"""

from __future__ import annotations

import copy
import csv
import json
import shutil
import subprocess
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import run_cli
from dicom_cases import DICOM_PATIENTS, DICOM_SEED, clinical_args, cohort_rows

hd = pytest.importorskip("highdicom", reason="highdicom missing: pip install 'imnrisk[dicom]'")
pytest.importorskip("skimage", reason="scikit-image missing: pip install 'imnrisk[dicom]'")
import pydicom  # noqa: E402  (highdicom brings it)

from IMNRiskLib.inputs import dicomimage, imaging  # noqa: E402
from IMNRiskLib.outputs import dicomout  # noqa: E402
from IMNRiskLib.app import synthdicom
from IMNRiskLib.core.errors import InputError  # noqa: E402

PID = "SYN0001"
FORMS = ("classic", "enhanced", "per-phase")
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
TEMPORAL_POSITION_INDEX, FRAME_CONTENT = 0x00209128, 0x00209111


# --------------------------------------------------------------------------- the phantom in every form

@pytest.fixture(scope="module")
def cohorts(tmp_path_factory) -> dict:
    """The same two phantom patients as NRRD and in each DICOM form (synth, same seed)."""
    root = tmp_path_factory.mktemp("dicomimage")
    out = {}
    for form in ("nrrd",) + FORMS:
        extra = [] if form == "nrrd" else ["--dicom-form", form]
        result = run_cli("synth", root / form, "--patients", DICOM_PATIENTS, "--seed", DICOM_SEED, *extra,
                         "--jobs", "1", "--quiet", "--force")
        assert result.returncode == 0, result.stderr
        out[form] = root / form
    return out


def image_of(cohorts, form: str, pid: str = PID) -> Path:
    return cohorts[form] / "cases" / pid / ("dce.nrrd" if form == "nrrd" else synthdicom.IMAGE_FOLDER)


def enhanced_file(cohorts) -> Path:
    return image_of(cohorts, "enhanced") / synthdicom.ENHANCED_NAME


def same_volume(a: sitk.Image, b: sitk.Image) -> bool:
    """Same voxels and the same geometry (origin, spacing, direction) to 1e-6 mm."""
    return (np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-6)
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-6)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6))


def test_each_dicom_form_reads_the_nrrd_phase_and_says_how_it_ordered_the_phases(cohorts):
    """Every phase of the classic, enhanced and per-phase forms is the NRRD form's phase, voxel for voxel,
    in the same geometry; the notes say which container and which ordering was used."""
    expected_notes = {"classic": "one DICOM series, phases ordered by TemporalPositionIdentifier",
                      "enhanced": "one Legacy Converted Enhanced MR object (320 frames), phases ordered by "
                                  "TemporalPositionIdentifier",
                      "per-phase": "8 DICOM series, one per phase, ordered by TriggerTime then SeriesNumber"}
    for phase in (0, 1, 7):
        reference, _, n = imaging.load_phase(image_of(cohorts, "nrrd"), phase)
        assert n == 8
        for form in FORMS:
            notes = []
            image, chosen, count = imaging.load_phase(image_of(cohorts, form), phase, notes)
            assert (chosen, count) == (phase, 8), form
            assert same_volume(image, reference), (form, phase)
            assert notes == [expected_notes[form]], notes
    assert pydicom.dcmread(str(enhanced_file(cohorts)), stop_before_pixels=True).NumberOfFrames == 320


def test_classic_slices_state_their_real_slice_spacing(cohorts):
    """synth wrote SpacingBetweenSlices 1 for 2 mm slices (GDCM's 2-D default); now the grid's spacing."""
    files = sorted(image_of(cohorts, "classic").glob("*.dcm"))
    header = pydicom.dcmread(str(files[0]), stop_before_pixels=True)
    assert float(header.SpacingBetweenSlices) == float(header.SliceThickness) == 2.0


# --------------------------------------------------------------------------- the cohort, every form, every mask

def _manifest(cohorts, folder: Path) -> Path:
    """One manifest with each patient once per (image form, mask form), IDs saying which."""
    rows = list(csv.DictReader(open(cohorts["nrrd"] / "cohort.csv", encoding="utf-8", newline="")))
    table = []
    combos = [("nrrd", "nrrd")] + [(form, mask) for form in FORMS for mask in ("seg", "rtstruct")]
    for form, mask in combos:
        for row in rows:
            case = cohorts[form] / "cases" / row["ID"]
            path = {"nrrd": case / "tumour.nrrd", "seg": case / synthdicom.SEG_NAME,
                    "rtstruct": case / synthdicom.RTSTRUCT_NAME}[mask]
            table.append({**row, "ID": f"{row['ID']}-{form}-{mask}", "Image": str(image_of(cohorts, form, row["ID"])),
                          "Mask": str(path), "Label": synthdicom.ROI_NAME if mask == "rtstruct" else "1"})
            table[-1].pop("Mask2", None)
    manifest = folder / "forms.csv"
    with open(manifest, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    return manifest


@pytest.fixture(scope="module")
def extracted(cohorts, tmp_path_factory) -> SimpleNamespace:
    """`imnrisk extract` of the manifest above (original-image features): table, provenance, stderr."""
    import pandas as pd
    pytest.importorskip("rt_utils", reason="rt-utils missing (synth writes no RTSTRUCT): pip install "
                                           "'imnrisk[dicom-test]'")
    folder = tmp_path_factory.mktemp("dicomimage-extract")
    params = Path(__file__).parent / "data" / "original_only.yaml"
    result = run_cli("extract", _manifest(cohorts, folder), "--out", folder / "features.csv", "--params", params,
                     "--jobs", "1", "--quiet", "--force")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(StringIO((folder / "features.csv").read_text(encoding="utf-8")), dtype={"ID": str})
    provenance = json.loads((folder / "features.provenance.json").read_text(encoding="utf-8"))
    return SimpleNamespace(table=table.set_index("ID"), provenance=provenance, stderr=result.stderr)


def test_every_dicom_form_with_seg_or_rtstruct_extracts_the_nrrd_features(extracted, cohorts):
    """SEG on every image form: the NRRD form's features exactly; the rt-utils RTSTRUCT: within the
    tolerance test_dicommask measured and the README states."""
    from test_dicommask import RTSTRUCT_FEATURE_TOLERANCE
    table = extracted.table
    numeric = [c for c in table.columns if c.startswith("original_")]
    assert len(numeric) > 90
    worst = {}
    for pid in cohort_rows(cohorts["nrrd"]):
        reference = table.loc[f"{pid}-nrrd-nrrd", numeric].astype(float)
        for form in FORMS:
            seg = table.loc[f"{pid}-{form}-seg", numeric].astype(float)
            assert (seg == reference).all(), (pid, form, list(seg.index[seg != reference])[:5])
            rt = table.loc[f"{pid}-{form}-rtstruct", numeric].astype(float)
            relative = float(((rt - reference).abs() / reference.abs().clip(lower=1e-12)).max())
            worst[form] = max(worst.get(form, 0.0), relative)
            assert relative <= RTSTRUCT_FEATURE_TOLERANCE, (pid, form, relative)
    print(f"\n{len(numeric)} features, SEG exact in every form; RTSTRUCT largest relative difference: {worst}")


def test_extract_says_the_phase_choice_in_its_output_and_provenance(extracted):
    cases = extracted.provenance["cases"]
    enhanced = cases[f"{PID}-enhanced-seg"]["phases"]
    assert enhanced == ("8 phases (one Legacy Converted Enhanced MR object (320 frames), phases ordered by "
                        "TemporalPositionIdentifier); phase 1 (0-based) scored, as requested")  # Phase 1 in cohort.csv
    assert "ordered by TriggerTime then SeriesNumber" in cases[f"{PID}-per-phase-rtstruct"]["phases"]
    assert cases[f"{PID}-nrrd-nrrd"]["phases"].startswith("8 phases; phase 1 (0-based) scored")
    assert f"imnrisk extract: phases of {DICOM_PATIENTS * 2} case(s): {enhanced}" in extracted.stderr


# --------------------------------------------------------------------------- Enhanced MR objects made by hand

def reorder_frames(ds, order) -> pydicom.Dataset:
    """A copy of a multi-frame object holding the frames `order` names, in that order."""
    out = copy.deepcopy(ds)
    out.PerFrameFunctionalGroupsSequence = [out.PerFrameFunctionalGroupsSequence[i] for i in order]
    out.PixelData = np.ascontiguousarray(ds.pixel_array[list(order)]).tobytes()
    out.NumberOfFrames = len(order)
    return out


def as_enhanced_mr(ds, via: str) -> pydicom.Dataset:
    """The legacy-converted object made an Enhanced MR object as a scanner writes it: the phase in the
    Frame Content (Temporal Position Index, or a Dimension Index value pointing at it), pixel spacing
    in every frame's own group instead of the shared one."""
    out = copy.deepcopy(ds)
    out.SOPClassUID = out.file_meta.MediaStorageSOPClassUID = ENHANCED_MR
    measures = out.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence
    del out.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence
    if via == "dimension":
        item = pydicom.Dataset()
        item.DimensionIndexPointer, item.FunctionalGroupPointer = TEMPORAL_POSITION_INDEX, FRAME_CONTENT
        out.DimensionIndexSequence = [item]
    for frame in out.PerFrameFunctionalGroupsSequence:
        phase = int(frame.UnassignedPerFrameConvertedAttributesSequence[0].TemporalPositionIdentifier)
        del frame.UnassignedPerFrameConvertedAttributesSequence  # no TemporalPositionIdentifier, no TriggerTime
        content = frame.FrameContentSequence[0]
        if via == "index":
            content.TemporalPositionIndex = phase
        else:
            content.DimensionIndexValues = phase
        frame.PixelMeasuresSequence = copy.deepcopy(measures)
    return out


@pytest.fixture(scope="module")
def legacy(cohorts) -> pydicom.Dataset:
    return pydicom.dcmread(str(enhanced_file(cohorts)))


def save(ds, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(folder / "object.dcm"), enforce_file_format=True)
    return folder


def test_enhanced_mr_phases_from_frame_content_or_dimension_index_with_per_frame_groups(cohorts, legacy, tmp_path):
    """A true Enhanced MR object, its phase in the Temporal Position Index or in a Dimension Index value,
    its frames stored in reverse: each phase is the NRRD form's phase."""
    reversed_order = list(range(int(legacy.NumberOfFrames)))[::-1]
    for via in ("index", "dimension"):
        folder = save(reorder_frames(as_enhanced_mr(legacy, via), reversed_order), tmp_path / via)
        for phase in (0, 1, 7):
            notes = []
            image, _, n = imaging.load_phase(folder, phase, notes)
            assert n == 8 and same_volume(image, imaging.load_phase(image_of(cohorts, "nrrd"), phase)[0]), (via, phase)
            assert notes == ["one Enhanced MR object (320 frames), phases ordered by TemporalPositionIndex"], notes


# --------------------------------------------------------------------------- predict: the same answer, or one line

@pytest.fixture(scope="module")
def predict(quick_model, cohorts):
    """`imnrisk predict --json` of the phantom patient with an image and the NRRD tumour mask."""
    clinical = clinical_args(quick_model, cohort_rows(cohorts["nrrd"])[PID])

    def run(image: Path, *extra):
        return run_cli("predict", quick_model, "--image", image, "--mask",
                       cohorts["nrrd"] / "cases" / PID / "tumour.nrrd", *clinical, "--json", *extra)
    return run


def test_frames_stored_in_reverse_give_the_nrrd_forms_radscore(predict, cohorts, legacy, tmp_path):
    """The issue's measurement: the legacy-converted object with its frames in reverse order was read as
    one stack of 320 slices; it now scores as the NRRD image does, and says which phase it scored."""
    folder = save(reorder_frames(legacy, list(range(int(legacy.NumberOfFrames)))[::-1]), tmp_path / "reversed")
    by_nrrd, by_enhanced = predict(image_of(cohorts, "nrrd")), predict(folder)
    assert by_nrrd.returncode == 0 and by_enhanced.returncode == 0, by_enhanced.stderr
    assert json.loads(by_enhanced.stdout)["radscore"] == json.loads(by_nrrd.stdout)["radscore"]
    assert ("imnrisk predict: image: 8 phases (one Legacy Converted Enhanced MR object (320 frames), phases "
            "ordered by TemporalPositionIdentifier); phase 1 (0-based) scored") in by_enhanced.stderr


def one_line_exit_2(result, *needles) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("imnrisk: error: "), result.stderr
    assert "Traceback" not in result.stderr and "SYNTHETIC" not in result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_an_enhanced_mr_with_a_missing_frame_is_refused_naming_the_phase(predict, legacy, tmp_path):
    positions = [i for i, frame in enumerate(legacy.PerFrameFunctionalGroupsSequence)
                 if int(frame.UnassignedPerFrameConvertedAttributesSequence[0].TemporalPositionIdentifier) == 4]
    kept = [i for i in range(int(legacy.NumberOfFrames)) if i != positions[len(positions) // 2]]
    folder = save(reorder_frames(legacy, kept), tmp_path / "missing")
    one_line_exit_2(predict(folder), "Enhanced MR phase 3 has 39 frame(s) where the other phases have 40",
                    "a frame is missing")


def test_an_enhanced_mr_with_mixed_orientations_is_refused(predict, legacy, tmp_path):
    """Frames of one phase say (in their own group, over the shared one) they are sagittal."""
    out = copy.deepcopy(legacy)
    for frame in out.PerFrameFunctionalGroupsSequence:
        if int(frame.UnassignedPerFrameConvertedAttributesSequence[0].TemporalPositionIdentifier) == 6:
            item = pydicom.Dataset()
            item.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
            frame.PlaneOrientationSequence = [item]
    one_line_exit_2(predict(save(out, tmp_path / "mixed")), "Enhanced MR frames have 2 different orientations")


def _copy_series(source: Path, target: Path, series_number: int, **changes) -> None:
    """A copy of one phase's series as another series (new UIDs), with header changes."""
    target.mkdir()
    uid = hd.UID()
    for file in sorted(source.glob("*.dcm")):
        ds = pydicom.dcmread(str(file))
        ds.SeriesInstanceUID, ds.SeriesNumber = uid, series_number
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = hd.UID()
        for key, value in changes.items():
            setattr(ds, key, value)
        ds.save_as(str(target / file.name))


def test_two_series_claiming_one_phase_are_refused_naming_both(predict, cohorts, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(image_of(cohorts, "per-phase"), study)
    _copy_series(study / "phase03", study / "again", 9)
    one_line_exit_2(predict(study), "two DICOM series claim the same phase (TriggerTime 120000.0)",
                    "series number 3 (phase03)", "series number 9 (again)")


def test_a_subtraction_series_is_named_not_taken_as_a_phase(predict, cohorts, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(image_of(cohorts, "per-phase"), study)
    _copy_series(study / "phase02", study / "sub", 20, TriggerTime="999000",
                 ImageType=["DERIVED", "SECONDARY", "SUBTRACTION"])
    one_line_exit_2(predict(study), "series number 20 (sub) is DERIVED/SUBTRACTION",
                    "ImageType DERIVED\\SECONDARY\\SUBTRACTION", "not an acquired phase")


def test_series_without_trigger_times_are_ordered_by_acquisition_time_not_series_number(cohorts, tmp_path):
    """No TriggerTime, Series Numbers in reverse order of acquisition: the acquisition time decides."""
    study = tmp_path / "study"
    shutil.copytree(image_of(cohorts, "per-phase"), study)
    for file in study.rglob("*.dcm"):
        ds = pydicom.dcmread(str(file))
        del ds.TriggerTime
        ds.SeriesNumber = 9 - int(ds.SeriesNumber)
        ds.save_as(str(file))
    for phase in (0, 1, 7):
        notes = []
        image, _, n = imaging.load_phase(study, phase, notes)
        assert n == 8 and same_volume(image, imaging.load_phase(image_of(cohorts, "nrrd"), phase)[0]), phase
        assert notes == ["8 DICOM series, one per phase, ordered by AcquisitionTime then SeriesNumber"], notes


def test_series_on_another_frame_of_reference_are_not_phases(cohorts, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(image_of(cohorts, "per-phase"), study)
    for file in (study / "phase05").glob("*.dcm"):
        ds = pydicom.dcmread(str(file))
        ds.FrameOfReferenceUID = "2.25.1"
        ds.save_as(str(file))
    with pytest.raises(InputError, match="8 DICOM series on 2 Frames of Reference"):
        imaging.load_phase(study)


# --------------------------------------------------------------------------- dciodvfy

def test_written_enhanced_mr_and_rtstruct_pass_dciodvfy(cohorts):
    """dicom3tools' validator (Debian dicom3tools; .ci/run installs it) finds no error in the Enhanced MR
    object and the RTSTRUCT that `synth --dicom-form enhanced` writes."""
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy missing: apt-get install dicom3tools (.ci/run installs it)")
    case = cohorts["enhanced"] / "cases" / PID
    objects = [enhanced_file(cohorts), case / synthdicom.RTSTRUCT_NAME]
    if not objects[1].exists():
        pytest.skip("rt-utils missing (synth wrote no RTSTRUCT): pip install 'imnrisk[dicom-test]'")
    for path in objects:
        result = subprocess.run([tool, str(path)], capture_output=True, text=True)
        errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], (path.name, errors[:10])


def test_dicomimage_keyword_lookup_prefers_the_frames_own_group():
    """A frame's own functional group overrides the shared one (the standard's rule)."""
    def group(**values):
        item, outer = pydicom.Dataset(), pydicom.Dataset()
        for key, value in values.items():
            setattr(item, key, value)
        outer.PixelMeasuresSequence = [item]
        return outer
    per_frame, shared = group(PixelSpacing=[0.5, 0.5]), group(PixelSpacing=[0.9, 0.9], SliceThickness=2)
    assert [float(v) for v in dicomimage.frame_value([per_frame, shared], "PixelSpacing")] == [0.5, 0.5]
    assert float(dicomimage.frame_value([per_frame, shared], "SliceThickness")) == 2.0
    assert dicomimage.frame_value([per_frame, shared], "TemporalPositionIndex") is None


def test_dicom_out_on_an_enhanced_mr_image_marks_the_scored_phase_frames(predict, cohorts, tmp_path):
    """predict --dicom-out on an Enhanced MR object: the SEG lies on the object's frames of the scored
    phase (each SEG frame references that phase's frame at its position, not the other phases' frames
    there), its pixels are the tumour mask, and the SR carries predict's numbers and references both."""
    out = tmp_path / "out"
    result = predict(image_of(cohorts, "enhanced"), "--dicom-out", out)
    assert result.returncode == 0, result.stderr
    scored = json.loads(result.stdout)
    source = pydicom.dcmread(str(enhanced_file(cohorts)))
    positions, cosines, _, keys, _ = dicomimage.frame_table(source, enhanced_file(cohorts))
    phase_frames = dicomimage.phase_frames(positions, cosines, keys, enhanced_file(cohorts))[scored["phase"]]
    seg = hd.seg.segread(str(out / dicomout.SEG_NAME))
    assert [s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence] == [source.SeriesInstanceUID]
    referenced = [int(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber) - 1
                  for item in seg.PerFrameFunctionalGroupsSequence]
    assert sorted(referenced) == sorted(phase_frames)
    assert all(len(item.DerivationImageSequence[0].SourceImageSequence) == 1 for item in seg.PerFrameFunctionalGroupsSequence)
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(cohorts["nrrd"] / "cases" / PID / "tumour.nrrd"))).astype(bool)
    by_frame = dict(zip(referenced, seg.pixel_array.reshape(-1, *mask.shape[1:])))
    stacked = np.array([by_frame[f] for f in phase_frames]).astype(bool)  # the phase's frames ascending, as read
    assert mask.sum() > 0 and np.array_equal(stacked, mask)
    back = dicomout.read_report(out / dicomout.SR_NAME)
    for key in ("radscore", "probability", "ci95", "points", "features"):
        assert back[key] == scored[key], key
    if shutil.which("dciodvfy"):
        for name, iod in ((dicomout.SEG_NAME, "Segmentation"), (dicomout.SR_NAME, "Comprehensive3DSR")):
            text = subprocess.run(["dciodvfy", str(out / name)], capture_output=True, encoding="utf-8",
                                  errors="replace").stderr
            assert iod in text and not [line for line in text.splitlines() if line.startswith("Error")], text


def test_an_enhanced_mr_object_given_as_one_phase_slices_is_refused_in_one_line(cohorts, tmp_path):
    """What a viewer's volume from an Enhanced MR object lists (its one instance): the export cannot
    tell which phase's frames the volume is, and says so instead of writing a SEG on another phase."""
    loaded = imaging.load_case(image_of(cohorts, "enhanced"), cohorts["nrrd"] / "cases" / PID / "tumour.nrrd")
    with pytest.raises(InputError, match="multi-frame .Enhanced MR. object") as refused:
        dicomout.export(tmp_path / "out", [pydicom.dcmread(str(enhanced_file(cohorts)))], loaded.mask, {}, None)
    assert "\n" not in str(refused.value) and not (tmp_path / "out").exists()


def test_the_enhanced_form_and_its_masks_are_the_same_bytes_for_the_same_seed(cohorts, tmp_path):
    """highdicom and rt-utils stamp times and fresh UIDs; synth fixes them (same seed, same bytes)."""
    again = tmp_path / "again"
    result = run_cli("synth", again, "--patients", DICOM_PATIENTS, "--seed", DICOM_SEED, "--dicom-form", "enhanced",
                     "--jobs", "1", "--quiet", "--force")
    assert result.returncode == 0, result.stderr
    for name in (f"{synthdicom.IMAGE_FOLDER}/{synthdicom.ENHANCED_NAME}", synthdicom.SEG_NAME, synthdicom.RTSTRUCT_NAME):
        first, second = (root / "cases" / PID / name for root in (cohorts["enhanced"], again))
        assert first.read_bytes() == second.read_bytes(), name
