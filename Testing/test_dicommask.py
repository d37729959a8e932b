"""Masks from DICOM (IMNRiskLib.inputs.dicommask): DICOM SEG and RTSTRUCT written by writers no one here wrote
(highdicom, dcmqi's itkimage2segimage, rt-utils) from the phantom's tumour, read back onto the image's
grid; bad input (a missing ROI, an open contour, another frame of reference) refused with exit 2.

Measured here (phantom patient SYN0001, 1089 tumour voxels): SEG from highdicom and from dcmqi read back
to the exact voxels; the rt-utils RTSTRUCT to the exact voxels too (Dice 1.000, the 851 features of
compute_features identical), also for a ring with a hole and an island in the hole. The tests assert
Dice >= RTSTRUCT_MIN_DICE and the features within RTSTRUCT_FEATURE_TOLERANCE (relative), the tolerance
stated in the README.
"""

from __future__ import annotations

import copy
import csv
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import run_cli
from dicom_cases import clinical_args, cohort_rows, make_dicom_phantom, patient_paths

hd = pytest.importorskip("highdicom", reason="highdicom missing: pip install 'imnrisk[dicom]'")
pytest.importorskip("skimage", reason="scikit-image missing: pip install 'imnrisk[dicom]'")
import pydicom  # noqa: E402  (highdicom brings it)
from scipy import ndimage  # noqa: E402

from IMNRiskLib.inputs import dicommask, imaging  # noqa: E402
from IMNRiskLib.core.errors import InputError  # noqa: E402

PID, OTHER = "SYN0001", "SYN0002"
RTSTRUCT_MIN_DICE = 0.97
# Relative difference allowed between the features of the RTSTRUCT's mask and the labelmap's; the
# measured difference is 0 (identical voxels), so this only absorbs floating-point noise.
RTSTRUCT_FEATURE_TOLERANCE = 1e-6
CATEGORY = hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure")
NEOPLASM = hd.sr.CodedConcept("108369006", "SCT", "Neoplasm")


# --------------------------------------------------------------------------- writers (not ours)

def write_highdicom_seg(sources, segments, path: Path, fractional: bool = False) -> Path:
    """A DICOM SEG by highdicom: `segments` maps label -> (z, y, x) array on the source slices."""
    kind = hd.seg.SegmentationTypeValues.FRACTIONAL if fractional else hd.seg.SegmentationTypeValues.BINARY
    descriptions = [hd.seg.SegmentDescription(segment_number=i, segment_label=label,
                                              segmented_property_category=CATEGORY, segmented_property_type=NEOPLASM,
                                              algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
                    for i, label in enumerate(segments, 1)]
    arrays = list(segments.values())
    pixels = np.stack(arrays, axis=-1) if len(arrays) > 1 else arrays[0]
    seg = hd.seg.Segmentation(source_images=sources, pixel_array=pixels, segmentation_type=kind,
                              segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=100,
                              sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test",
                              manufacturer_model_name="test", software_versions="0", device_serial_number="0",
                              max_fractional_value=255 if fractional else None)
    seg.save_as(str(path))
    return path


def write_rtutils(series_folder: Path, rois, path: Path) -> Path:
    """An RTSTRUCT by rt-utils: `rois` maps ROI name -> (z, y, x) boolean array (rt-utils wants y, x, z)."""
    rt_utils = pytest.importorskip("rt_utils", reason="rt-utils missing: pip install 'imnrisk[dicom-test]'")
    rtstruct = rt_utils.RTStructBuilder.create_new(dicom_series_path=str(series_folder))
    for name, array in rois.items():
        rtstruct.add_roi(mask=np.transpose(array.astype(bool), (1, 2, 0)), name=name)
    rtstruct.save(str(path))
    return path


def dcmqi_tool() -> str:
    """itkimage2segimage from the dcmqi package (beside this Python, or on PATH); skip without it."""
    beside = Path(sys.executable).parent / "itkimage2segimage"
    tool = str(beside) if beside.exists() else shutil.which("itkimage2segimage")
    if not tool:
        pytest.skip("dcmqi's itkimage2segimage missing: pip install 'imnrisk[dicom-test]' (x86-64 Linux/Windows)")
    return tool


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b)))


def array_of(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image).astype(bool)


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def dicom_phantom(tmp_path_factory) -> Path:
    return make_dicom_phantom(tmp_path_factory.mktemp("dicommask-phantom") / "phantom")


def phase_case(phantom: Path, pid: str, folder: Path) -> SimpleNamespace:
    """One patient: its DICOM image folder, the scored phase's slices (also copied alone into a folder,
    as rt-utils and dcmqi want one series), the tumour and second reader's masks as arrays."""
    paths = patient_paths(phantom, pid)
    files = imaging.dicom_phases(paths["image"])[imaging.DEFAULT_PHASE]
    series = folder / f"series-{pid.lower()[-1]}"
    series.mkdir(parents=True)
    for file in files:
        shutil.copy(file, series / file.name)
    return SimpleNamespace(
        image=paths["image"], series=series, sources=[pydicom.dcmread(str(f)) for f in files],
        mask_path=paths["mask"], mask=array_of(sitk.ReadImage(str(paths["mask"]))),
        reader2=array_of(sitk.ReadImage(str(paths["mask"]).replace("tumour.nrrd", "tumour_reader2.nrrd"))))


@pytest.fixture(scope="module")
def case(dicom_phantom, tmp_path_factory) -> SimpleNamespace:
    return phase_case(dicom_phantom, PID, tmp_path_factory.mktemp("dicommask-series"))


@pytest.fixture(scope="module")
def rtstruct(case, tmp_path_factory) -> Path:
    """rt-utils' RTSTRUCT of SYN0001 with two ROIs: 'GTV' (the tumour) and 'Reader2'."""
    out = tmp_path_factory.mktemp("dicommask-rt") / "rtstruct.dcm"
    return write_rtutils(case.series, {"GTV": case.mask, "Reader2": case.reader2}, out)


_PHASES = {}


def load(case, mask_path, label, image=None):
    """imaging.load_mask as load_case calls it (the image's phase read once per test module)."""
    image = image or case.image
    if image not in _PHASES:
        _PHASES[image] = imaging.load_phase(image)[0]
    warnings = []
    mask = imaging.load_mask(mask_path, label, _PHASES[image], warnings, image_path=image)
    return SimpleNamespace(mask=mask, warnings=warnings, image=_PHASES[image])


# --------------------------------------------------------------------------- DICOM SEG

def test_highdicom_seg_reads_back_to_the_exact_voxels_by_number_and_by_label(case, tmp_path):
    """A two-segment SEG (tumour, second reader) by highdicom: each segment, chosen by number or by
    label (any case), is the labelmap it was written from, voxel for voxel, with no warning."""
    seg = write_highdicom_seg(case.sources, {"Tumour": case.mask, "Reader 2": case.reader2}, tmp_path / "seg.dcm")
    for label, expected in ((1, case.mask), ("tumour", case.mask), (2, case.reader2), ("READER 2", case.reader2)):
        loaded = load(case, seg, label)
        assert np.array_equal(array_of(loaded.mask), expected), label
        assert loaded.warnings == []
    with pytest.raises(InputError, match=r"no segment 'Node'; segments: 1 'Tumour', 2 'Reader 2'"):
        load(case, seg, "Node")


def test_fractional_seg_is_thresholded_at_one_half(case, tmp_path):
    """A FRACTIONAL SEG: voxels of fraction 0.8 (the tumour) are kept, a 0.3 shell around it is not."""
    shell = ndimage.binary_dilation(case.mask, iterations=2) & ~case.mask
    fraction = (0.8 * case.mask + 0.3 * shell).astype(np.float32)
    seg = write_highdicom_seg(case.sources, {"Tumour": fraction}, tmp_path / "fractional.dcm", fractional=True)
    assert pydicom.dcmread(str(seg)).SegmentationType == "FRACTIONAL"
    assert np.array_equal(array_of(load(case, seg, 1).mask), case.mask)
    assert dicommask.FRACTIONAL_THRESHOLD == 0.5


def test_dcmqi_seg_reads_back_to_the_exact_voxels(case, tmp_path):
    """dcmqi's itkimage2segimage (the converter Slicer's QuantitativeReporting uses) from the tumour NRRD."""
    tool = dcmqi_tool()
    meta = tmp_path / "meta.json"
    meta.write_text('{"ContentCreatorName": "Test^Writer", "ClinicalTrialSeriesID": "1", '
                    '"ClinicalTrialTimePointID": "1", "SeriesDescription": "Tumour", "SeriesNumber": "300", '
                    '"InstanceNumber": "1", "BodyPartExamined": "BREAST", "segmentAttributes": [[{"labelID": 1, '
                    '"SegmentDescription": "Tumour", "SegmentLabel": "Tumour", "SegmentAlgorithmType": "MANUAL", '
                    '"SegmentedPropertyCategoryCodeSequence": {"CodeValue": "49755003", "CodingSchemeDesignator": '
                    '"SCT", "CodeMeaning": "Morphologically Altered Structure"}, "SegmentedPropertyTypeCodeSequence":'
                    ' {"CodeValue": "108369006", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Neoplasm"}, '
                    '"recommendedDisplayRGBValue": [255, 0, 0]}]], "ContentLabel": "SEGMENTATION", '
                    '"ContentDescription": "Tumour", "ClinicalTrialCoordinatingCenterName": "test"}', encoding="utf-8")
    out = tmp_path / "dcmqi-seg.dcm"
    result = subprocess.run([tool, "--inputImageList", str(case.mask_path), "--inputDICOMDirectory", str(case.series),
                             "--inputMetadata", str(meta), "--outputDICOM", str(out)], capture_output=True, text=True)
    assert result.returncode == 0 and out.exists(), result.stdout[-2000:] + result.stderr[-2000:]
    loaded = load(case, out, "Tumour")
    assert np.array_equal(array_of(loaded.mask), case.mask)
    assert loaded.warnings == []


def test_a_seg_is_placed_by_geometry_on_an_nrrd_image_with_a_warning(case, tmp_path):
    """The scored phase saved as NRRD: the SEG lands on the same voxels (physical placement), and the
    user is told the reference to the image could not be checked."""
    nrrd = tmp_path / "phase.nrrd"
    sitk.WriteImage(imaging.load_phase(case.image)[0], str(nrrd))
    seg = write_highdicom_seg(case.sources, {"Tumour": case.mask}, tmp_path / "seg.dcm")
    loaded = load(case, seg, 1, image=nrrd)
    assert np.array_equal(array_of(loaded.mask), case.mask)
    assert any("image is not DICOM" in w for w in loaded.warnings), loaded.warnings


def test_a_folder_with_one_mask_object_is_read_and_with_two_is_refused(case, rtstruct, tmp_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    write_highdicom_seg(case.sources, {"Tumour": case.mask}, folder / "object-without-extension")
    assert np.array_equal(array_of(load(case, folder, 1).mask), case.mask)
    shutil.copy(rtstruct, folder / "rt.dcm")
    with pytest.raises(InputError, match=r"folder holds 2 DICOM mask objects"):
        load(case, folder, 1)


def test_a_study_folder_holding_the_image_and_its_rtstruct_is_both_image_and_mask(case, rtstruct, tmp_path):
    """As a planning system exports a study: the image's slices and the RTSTRUCT in one folder, given as
    Image and as Mask; the image reader leaves the RTSTRUCT out, the mask reader finds it."""
    study = tmp_path / "study"
    shutil.copytree(case.series, study)
    shutil.copy(rtstruct, study / "RS.dcm")
    loaded = imaging.load_case(study, study, None, "GTV")
    assert np.array_equal(array_of(loaded.mask), case.mask)
    assert loaded.n_phases == 1 and loaded.warnings == []


# --------------------------------------------------------------------------- RTSTRUCT

@pytest.fixture(scope="module")
def rtstruct_measured(case, rtstruct):
    """Dice and the 851 features' largest relative difference, RTSTRUCT read back vs the labelmap."""
    from IMNRiskLib.radiomics.features import compute_features
    from IMNRiskLib.radiomics.settings import load_settings
    settings = load_settings()
    from_labelmap = imaging.load_case(case.image, case.mask_path, None, 1)
    from_rtstruct = imaging.load_case(case.image, rtstruct, None, "gtv")
    a, _ = compute_features(from_labelmap, settings)
    b, _ = compute_features(from_rtstruct, settings)
    rel = {k: abs(b[k] - a[k]) / max(abs(a[k]), 1e-12) for k in a}
    worst = max(rel, key=rel.get)
    print(f"\nRTSTRUCT (rt-utils) vs labelmap: Dice {dice(array_of(from_rtstruct.mask), case.mask):.4f}, "
          f"{len(a)} features, largest relative difference {rel[worst]:.3g} ({worst})")
    return SimpleNamespace(dice=dice(array_of(from_rtstruct.mask), case.mask), features=a, rel=rel,
                           warnings=from_rtstruct.warnings)


def test_rtutils_rtstruct_reads_back_within_the_stated_dice_and_feature_tolerance(rtstruct_measured):
    assert rtstruct_measured.dice >= RTSTRUCT_MIN_DICE
    assert len(rtstruct_measured.features) == 851
    assert max(rtstruct_measured.rel.values()) <= RTSTRUCT_FEATURE_TOLERANCE
    assert rtstruct_measured.warnings == []


def test_rtstruct_holes_and_islands_follow_the_even_odd_rule(case, tmp_path):
    """A ring (the tumour less its core) with an island in the hole on one slice, written by rt-utils as
    nested contours: the hole stays empty, the island is filled, the ring is whole."""
    core = ndimage.binary_erosion(case.mask, iterations=3)
    assert core.sum() > 20
    z = int(np.flatnonzero(core.any(axis=(1, 2)))[len(np.flatnonzero(core.any(axis=(1, 2)))) // 2])
    ys, xs = np.nonzero(core[z])
    y, x = int(round(ys.mean())), int(round(xs.mean()))
    island = np.zeros_like(case.mask)
    island[z, y - 1:y + 2, x] = island[z, y, x - 1:x + 2] = True  # a plus sign, clear of the ring
    ring = (case.mask & ~core) | island
    rt = write_rtutils(case.series, {"Ring": ring}, tmp_path / "ring.dcm")
    contours = pydicom.dcmread(str(rt)).ROIContourSequence[0].ContourSequence
    assert len(contours) > len({float(c.ContourData[2]) for c in contours})  # nested contours on some slices
    got = array_of(load(case, rt, "ring").mask)
    assert dice(got, ring) >= RTSTRUCT_MIN_DICE
    assert not (got & core & ~island).any()  # the holes are empty
    assert (got & island).sum() == island.sum()  # the island is filled
    assert np.array_equal(got, ring)  # measured: exact


def _shift_contours(source: Path, target: Path, dz_mm: float, which=None) -> Path:
    ds = pydicom.dcmread(str(source))
    for index, contour in enumerate(ds.ROIContourSequence[0].ContourSequence):
        if which is None or index == which:
            points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
            points[:, 2] += dz_mm
            contour.ContourData = [f"{v:.6g}" for v in points.ravel()]
    ds.save_as(str(target))
    return target


def test_contours_between_slices_go_to_the_nearest_slice_and_beyond_half_a_slice_are_refused(case, rtstruct,
                                                                                            tmp_path):
    """Slices are 2 mm apart: contours 0.8 mm off their slice land on it (with a warning); a contour
    placed 3 mm below the first slice (1.5 slices) is refused."""
    shifted = _shift_contours(rtstruct, tmp_path / "shifted.dcm", 0.8)
    loaded = load(case, shifted, "GTV")
    assert np.array_equal(array_of(loaded.mask), case.mask)
    assert any("between the image's slices" in w and "0.80 mm" in w for w in loaded.warnings), loaded.warnings
    ds = pydicom.dcmread(str(rtstruct))
    z0 = float(ds.ROIContourSequence[0].ContourSequence[0].ContourData[2])
    outside = _shift_contours(rtstruct, tmp_path / "outside.dcm", -z0 - 3.0, which=0)
    with pytest.raises(InputError, match=r"contour 1 lies 3.0 mm from the nearest image slice"):
        load(case, outside, "GTV")


def test_contours_drawn_on_thicker_slices_fill_every_image_slice_they_cover(case, rtstruct, tmp_path):
    """The scored phase resampled to 1 mm slices starting 0.5 mm up (an NRRD image): contours drawn on
    the 2 mm series each fill the two 1 mm slices within half their spacing, so slice k holds the
    contour of 2 mm slice (k + 1) // 2 -- the labelmap's slice, exactly."""
    phase = imaging.load_phase(case.image)[0]
    size = list(phase.GetSize())
    size[2] *= 2
    origin = list(phase.GetOrigin())
    origin[2] += 0.5
    thin = sitk.Resample(phase, size, sitk.Transform(), sitk.sitkLinear, origin, (0.9, 0.9, 1.0), phase.GetDirection())
    sitk.WriteImage(thin, str(tmp_path / "thin.nrrd"))
    loaded = load(case, rtstruct, "GTV", image=tmp_path / "thin.nrrd")
    expected = np.stack([case.mask[min((k + 1) // 2, case.mask.shape[0] - 1)] for k in range(size[2])])
    assert np.array_equal(array_of(loaded.mask), expected)
    assert any("contours are 2.00 mm apart, the image's slices 1.00 mm" in w for w in loaded.warnings)


def test_rtstruct_on_another_series_or_patient_is_refused_without_showing_the_patient(case, rtstruct, tmp_path):
    ds = pydicom.dcmread(str(rtstruct))
    item = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    other = copy.deepcopy(ds)
    other.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]\
        .SeriesInstanceUID = "1.2.3.4"
    other.save_as(str(tmp_path / "other-series.dcm"))
    with pytest.raises(InputError) as err:
        load(case, tmp_path / "other-series.dcm", "GTV")
    assert "references series 1.2.3.4" in str(err.value) and item.SeriesInstanceUID in str(err.value)
    other = copy.deepcopy(ds)
    other.PatientID = "SOMEONE-ELSE-42"
    other.save_as(str(tmp_path / "other-patient.dcm"))
    with pytest.raises(InputError, match="another patient") as err:
        load(case, tmp_path / "other-patient.dcm", "GTV")
    assert "SOMEONE-ELSE-42" not in str(err.value) and ds.PatientID not in str(err.value)


def test_an_rtstruct_with_several_rois_needs_a_name(case, rtstruct):
    with pytest.raises(InputError, match=r"holds 2 ROIs \('GTV', 'Reader2'\); name the tumour's ROI"):
        load(case, rtstruct, 1)


# --------------------------------------------------------------------------- the manifest and predict

def test_extract_takes_rtstruct_and_seg_in_the_manifest_with_the_labelmaps_features(dicom_phantom, case, rtstruct,
                                                                                     tmp_path):
    """cohort.csv with Mask = an RTSTRUCT (Label GTV) for one patient and a SEG (Label 1) for the other:
    `imnrisk extract` gives the features of the NRRD labelmaps, exactly."""
    other = phase_case(dicom_phantom, OTHER, tmp_path / "other")
    seg = write_highdicom_seg(other.sources, {"Tumour": other.mask}, tmp_path / "other-seg.dcm")
    rows = list(csv.DictReader(open(dicom_phantom / "cohort.csv", encoding="utf-8", newline="")))
    for row in rows:
        row["Image"] = str(dicom_phantom / row["Image"])
        row["Mask"] = str(dicom_phantom / row["Mask"])
        row.pop("Mask2", None)
    dicom_rows = copy.deepcopy(rows)
    dicom_rows[0].update(Mask=str(rtstruct), Label="GTV")
    dicom_rows[1].update(Mask=str(seg), Label="1")
    params = Path(__file__).parent / "data" / "original_only.yaml"
    tables = {}
    for name, table in (("nrrd", rows), ("dicom", dicom_rows)):
        manifest = tmp_path / f"{name}.csv"
        with open(manifest, "w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
        result = run_cli("extract", manifest, "--out", tmp_path / f"{name}-features.csv", "--params", params,
                         "--jobs", "1", "--quiet", "--force")
        assert result.returncode == 0, result.stderr
        tables[name] = (tmp_path / f"{name}-features.csv").read_text(encoding="utf-8")
    import pandas as pd
    from io import StringIO
    nrrd, dicom = (pd.read_csv(StringIO(tables[k]), dtype={"ID": str}).set_index("ID") for k in ("nrrd", "dicom"))
    numeric = [c for c in nrrd.columns if c.startswith("original_")]
    assert len(numeric) > 90
    pd.testing.assert_frame_equal(nrrd[numeric], dicom[numeric], rtol=0, atol=0)


@pytest.fixture(scope="module")
def predict_cli(quick_model, dicom_phantom, case):
    """Run `imnrisk predict` on SYN0001's DICOM image with a given mask and label."""
    clinical = clinical_args(quick_model, cohort_rows(dicom_phantom)[PID])

    def run(mask: Path, label: str):
        return run_cli("predict", quick_model, "--image", case.image, "--mask", mask, "--label", label,
                       *clinical, "--json")
    return run


def test_predict_scores_an_rtstruct_as_its_labelmap(predict_cli, case, rtstruct):
    import json
    by_labelmap, by_rtstruct = predict_cli(case.mask_path, "1"), predict_cli(rtstruct, "gtv")
    assert by_labelmap.returncode == 0 and by_rtstruct.returncode == 0, by_rtstruct.stderr
    assert json.loads(by_rtstruct.stdout)["radscore"] == json.loads(by_labelmap.stdout)["radscore"]


def _one_line_exit_2(result, *needles):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("imnrisk: error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "SYNTHETIC" not in result.stderr + result.stdout and PID not in lines[0].split(": error: ")[1]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_predict_refuses_an_rtstruct_without_the_named_roi_listing_its_rois(predict_cli, rtstruct):
    _one_line_exit_2(predict_cli(rtstruct, "Tumour"), "no ROI named 'Tumour'", "'GTV'", "'Reader2'")


def test_predict_refuses_an_open_contour(predict_cli, rtstruct, tmp_path):
    ds = pydicom.dcmread(str(rtstruct))
    ds.ROIContourSequence[0].ContourSequence[2].ContourGeometricType = "OPEN_PLANAR"
    ds.save_as(str(tmp_path / "open.dcm"))
    _one_line_exit_2(predict_cli(tmp_path / "open.dcm", "GTV"), "contour 3 of", "OPEN_PLANAR", "closed")


def test_predict_refuses_a_seg_on_another_frame_of_reference_naming_both(predict_cli, dicom_phantom, case, tmp_path):
    """A SEG drawn on the other phantom patient's image, given with SYN0001's image."""
    other = phase_case(dicom_phantom, OTHER, tmp_path / "other")
    seg = write_highdicom_seg(other.sources, {"Tumour": other.mask}, tmp_path / "seg.dcm")
    line = _one_line_exit_2(predict_cli(seg, "1"), "another Frame of Reference",
                            str(other.sources[0].FrameOfReferenceUID), str(case.sources[0].FrameOfReferenceUID))
    assert OTHER not in line.split(": error: ")[1]
