"""DICOM output: the tumour mask as a DICOM Segmentation and the prediction as a TID 1500
Measurement Report (Comprehensive 3D SR), both built with highdicom and referencing the source
series' chosen phase (its slices, or its frames of an Enhanced MR object), so that a PACS stores
the result with the patient's study.

Only the source images' patient and study identifiers and IMNRisk's own result go in: no file
path, no model file name. highdicom (and pydicom) are the optional extra `imnrisk[dicom]`;
Slicer 5.12 ships both. `export_case` is the entry point (the command line and, later, the
Slicer module call it with a mask already on the chosen phase's grid).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk

from IMNRiskLib import RESEARCH_ONLY, __version__
from IMNRiskLib.core.errors import InputError
from IMNRiskLib.core.files import atomic_path, check_can_write, safe_outputs
from IMNRiskLib.inputs import imaging
from IMNRiskLib.inputs.dicomfiles import dicom_files
from IMNRiskLib.scoring.modelfile import ScoringModel

# Local codes (a "99" prefix marks a private coding scheme, PS3.16 section 8.2).
SCHEME = "99IMNRISK"
MANUFACTURER = "IMNRisk"
SEG_NAME, SR_NAME = "imnrisk_tumour_seg.dcm", "imnrisk_report_sr.dcm"
SEG_SERIES_NUMBER, SR_SERIES_NUMBER = 9901, 9902
TUMOUR_LABEL = "Primary breast tumour"
# SNOMED CT: what the segment is, where it is, and the procedure the report is about.
SCT_MORPHOLOGICALLY_ABNORMAL = ("49755003", "Morphologically abnormal structure")
SCT_PRIMARY_MALIGNANT_NEOPLASM = ("86049000", "Malignant neoplasm, primary")
SCT_BREAST = ("76752008", "Breast")
SCT_MRI_BREAST = ("241615005", "Magnetic resonance imaging of breast")
# Names of the report's items (local codes; meanings are what viewers show).
RADSCORE = ("RADSCORE", "Rad-Score")
PROBABILITY = ("IMNPROB", "IMN metastasis probability")
CI_LOW = ("IMNPROBCI95LO", "IMN metastasis probability, 95% CI lower limit")
CI_HIGH = ("IMNPROBCI95HI", "IMN metastasis probability, 95% CI upper limit")
RISK_GROUP = ("IMNRISKGROUP", "IMN metastasis risk group")
POINTS_TOTAL = ("PTS-total", "Nomogram total points")
INTENDED_USE = ("INTENDEDUSE", "Intended use")
RESEARCH_USE = ("RUO", RESEARCH_ONLY)
ISSUER_OF_PATIENT_ID = "IMNRisk"  # issuer of the user-entered identifier (Other Patient IDs Sequence)
TUMOUR_GROUP_ID, RISK_GROUP_ID = "IMNRisk primary tumour radiomics", "IMNRisk IMN metastasis risk"


def _hd():
    """highdicom, or a clear message that the optional extra is missing."""
    try:
        import highdicom  # optional dependency (extra dicom)
    except ImportError:
        raise InputError("DICOM output needs highdicom: pip install 'imnrisk[dicom]'", field="--dicom-out") from None
    return highdicom


def code(value: str, meaning: str, scheme: str = SCHEME):
    """A coded concept (SNOMED CT with scheme 'SCT', else IMNRisk's local scheme)."""
    return _hd().sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning[:64])


def _short(prefix: str, name: str) -> str:
    """A code value of at most 16 characters for a name (long code values trip highdicom's
    reader and many viewers): the prefix and a hash of the name."""
    return prefix + hashlib.sha256(name.encode()).hexdigest()[:16 - len(prefix)]


def feature_code(name: str):
    """The local code of a radiomics feature; its meaning is the pyradiomics name."""
    return code(_short("RF-", name), name)


POINTS_PREFIX = "Nomogram points: "


def points_code(predictor: str):
    """The local code of one predictor's nomogram points; the meaning names the predictor."""
    return code(_short("PT-", predictor), POINTS_PREFIX + predictor)


RISK_CODES = {"low": "RISK-LOW", "intermediate": "RISK-INTERMED", "high": "RISK-HIGH"}
VERDICT = ("IMNRISKVERDICT", "IMNRisk verdict")
VERDICT_CODES = {"within": "VERDICT-WITHIN", "extrapolation": "VERDICT-EXTRAP", "not_reliable": "VERDICT-NOTRELIABLE"}


# --------------------------------------------------------------------------- source series

def read_source(files: Sequence[Union[str, Path]]) -> List[Any]:
    """The chosen phase's slices as pydicom datasets, in the order the image was read."""
    import pydicom  # optional dependency (extra dicom)
    datasets = []
    for f in files:
        try:
            datasets.append(pydicom.dcmread(str(f)))
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types for a bad file
            raise InputError(f"cannot read DICOM file ({type(exc).__name__})", file=str(f)) from None
    return datasets


def source_files(image_folder: Union[str, Path], phase: Optional[int]) -> List[Path]:
    """The files of one phase of a DICOM folder (as imaging reads them; None: its only one), or an InputError."""
    return imaging.dicom_phases(Path(image_folder))[phase or 0]


def check_target(image: Union[str, Path], out_dir: Union[str, Path], force: bool,
                 inputs: Sequence[Any] = ()) -> None:
    """Before any work: the outputs may be written (none is an input of the run, an existing one only
    with force), the image is a DICOM folder, highdicom is there."""
    paths = output_paths(out_dir)
    safe_outputs([paths.seg, paths.sr], [image, *inputs], force)
    folder = Path(image)
    if not folder.is_dir() or not dicom_files(folder):
        raise InputError("--dicom-out needs the image to be a DICOM series folder (this is not one)",
                         file=str(folder), field="--image")
    _hd()


def mask_frames(mask: sitk.Image, sources: Sequence[Any]) -> Tuple[np.ndarray, List[Any]]:
    """The binary mask as (frames, rows, columns) and the source slices in the same order: each
    mask slice is matched to the slice at its position (so any file order works), and the mask
    must lie on the slices' grid (same size and in-plane orientation)."""
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in sources])
    iop = np.array([float(v) for v in sources[0].ImageOrientationPatient])
    array, order = _on_slices(mask, int(sources[0].Rows), int(sources[0].Columns), iop, positions)
    return array, [sources[i] for i in order]


def _on_slices(mask: sitk.Image, rows: int, cols: int, iop: np.ndarray, positions: np.ndarray
               ) -> Tuple[np.ndarray, List[int]]:
    """The mask as (slices, rows, columns) uint8 and, for each of its slices, the index of the source
    slice (or frame) at its position; the mask must have the slices' size and in-plane orientation."""
    array = sitk.GetArrayFromImage(mask).astype(bool)
    if array.shape != (len(positions), rows, cols):
        raise InputError(f"mask grid {'x'.join(map(str, array.shape[::-1]))} does not match the DICOM phase "
                         f"({cols}x{rows}x{len(positions)})", field="Mask")
    direction = np.array(mask.GetDirection()).reshape(3, 3)
    if not (np.allclose(direction[:, 0], iop[:3], atol=1e-4) and np.allclose(direction[:, 1], iop[3:], atol=1e-4)):
        raise InputError("mask orientation differs from the DICOM slices' orientation", field="Mask")
    order = []
    for k in range(len(positions)):
        gap = np.abs(positions - np.array(mask.TransformIndexToPhysicalPoint((0, 0, k)))).max(axis=1)
        if gap.min() > 1e-3:
            raise InputError(f"mask slice {k} is at no DICOM slice's position", field="Mask")
        order.append(int(gap.argmin()))
    return array.astype(np.uint8), order


@dataclass
class EnhancedPhase:
    """The scored phase of an Enhanced MR object: the dataset and its frames (0-based), one per slice."""

    dataset: Any
    frames: List[int]
    positions: np.ndarray  # (frames of the object, 3) Image Position (Patient)
    cosines: np.ndarray    # Image Orientation (Patient) of the object's frames


def enhanced_phase(path: Path, phase: Optional[int]) -> EnhancedPhase:
    """The frames of one phase of an Enhanced MR object, as `imaging` reads them (None: the only one)."""
    from IMNRiskLib.inputs import dicomimage  # start-up time: loaded when this step runs
    dataset = read_source([path])[0]
    positions, cosines, _, keys, _ = dicomimage.frame_table(dataset, path)
    frames = dicomimage.phase_frames(positions, cosines, keys, path)[phase or 0]
    return EnhancedPhase(dataset=dataset, frames=frames, positions=positions, cosines=cosines)


def refuse_a_whole_multiframe_object(sources: Sequence[Any]) -> None:
    """A multi-frame object given as a phase's slices (a viewer's volume lists its one instance for
    every phase): which of its frames the volume shows cannot be told from positions that all
    phases share, so the export is refused in one line rather than put on another phase."""
    if len(sources) == 1 and int(getattr(sources[0], "NumberOfFrames", 1) or 1) > 1:
        raise InputError("the shown volume comes from one multi-frame (Enhanced MR) object whose phases share "
                         "their slice positions: export it with `imnrisk predict --dicom-out` on the DICOM "
                         "folder, which knows the scored phase's frames", field="--image")


def enhanced_mask_frames(mask: sitk.Image, source: EnhancedPhase) -> Tuple[np.ndarray, List[int]]:
    """`mask_frames` for an Enhanced MR phase: the mask's slices and the frame (0-based) each lies on."""
    ds = source.dataset
    array, order = _on_slices(mask, int(ds.Rows), int(ds.Columns), source.cosines[source.frames[0]],
                              source.positions[source.frames])
    return array, [source.frames[i] for i in order]


# --------------------------------------------------------------------------- SEG

def build_seg(sources: Sequence[Any], frames: np.ndarray, on_frames: Optional[Sequence[int]] = None,
              positions: Optional[np.ndarray] = None):
    """A binary DICOM Segmentation of the primary tumour on the source slices, or, with `on_frames`
    (0-based, one per mask slice) and the object's frame `positions`, on those frames of one
    multi-frame source: its phases share the slice positions, and highdicom references every
    frame at a position, so each SEG frame keeps the reference to the scored phase's frame only."""
    hd = _hd()
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=TUMOUR_LABEL,
        segmented_property_category=code(*SCT_MORPHOLOGICALLY_ABNORMAL, scheme="SCT"),
        segmented_property_type=code(*SCT_PRIMARY_MALIGNANT_NEOPLASM, scheme="SCT"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        anatomic_regions=[code(*SCT_BREAST, scheme="SCT")],
        tracking_uid=hd.UID(), tracking_id=TUMOUR_GROUP_ID)
    planes = None if on_frames is None else [
        hd.PlanePositionSequence(coordinate_system=hd.CoordinateSystemNames.PATIENT,
                                 image_position=[float(v) for v in positions[f]]) for f in on_frames]
    seg = hd.seg.Segmentation(
        source_images=list(sources), pixel_array=frames, plane_positions=planes,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[description],
        series_instance_uid=hd.UID(), series_number=SEG_SERIES_NUMBER, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer=MANUFACTURER, manufacturer_model_name="IMNRisk",
        software_versions=__version__, device_serial_number="0",
        content_label="TUMOUR", content_description="IMNRisk tumour (research use only)",
        series_description="IMNRisk tumour SEG (research use only)", omit_empty_frames=False)
    if on_frames is not None:
        keep_references_to(seg, {f + 1 for f in on_frames})
    return seg


def keep_references_to(seg, frame_numbers: set) -> None:
    """Each SEG frame's source references cut to the frames `frame_numbers` (1-based, as DICOM numbers them)."""
    for item in seg.PerFrameFunctionalGroupsSequence:
        for derivation in item.get("DerivationImageSequence", []):
            kept = [ref for ref in derivation.SourceImageSequence if int(ref.ReferencedFrameNumber) in frame_numbers]
            if len(kept) != 1:
                raise ValueError(f"a SEG frame matches {len(kept)} frames of the scored phase")
            derivation.SourceImageSequence = kept


# --------------------------------------------------------------------------- SR

def algorithm_id(model: ScoringModel):
    """TID 4019: IMNRisk's version and the model's SHA-256, format version and creation date."""
    params = [f"model SHA-256 {model.sha256}", f"model format version {model.format_version}"]
    if model.created:
        params.append(f"model created {model.created}")
    return _hd().sr.AlgorithmIdentification(name="IMNRisk clinical-radiomics nomogram",
                                            version=__version__, parameters=params)


def _number(name, value: float, unit):
    """One TID 300 numeric measurement (the group carries the algorithm identification)."""
    return _hd().sr.Measurement(name=name, value=float(value), unit=unit)


def _tumour_group(result: Dict[str, Any], seg, algo, source_series_uid: str):
    """TID 1411 on the SEG's segment: each model feature's value and the Rad-Score."""
    hd = _hd()
    from pydicom.sr.codedict import codes  # optional dependency (extra dicom)
    unitless = codes.UCUM.NoUnits
    measurements = [_number(feature_code(f), v, unitless) for f, v in result["features"].items()]
    measurements.append(_number(code(*RADSCORE), result["radscore"], unitless))
    segment = hd.sr.ReferencedSegment(
        sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=1,
        source_series=hd.sr.SourceSeriesForSegmentation(source_series_uid))
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=TUMOUR_GROUP_ID),
        referenced_segment=segment, finding_type=code(*SCT_PRIMARY_MALIGNANT_NEOPLASM, scheme="SCT"),
        finding_sites=[hd.sr.FindingSite(code(*SCT_BREAST, scheme="SCT"))], algorithm_id=algo,
        measurements=measurements)


def _risk_group(result: Dict[str, Any], algo):
    """TID 1501: probability with its 95% CI, nomogram points, risk group, intended use."""
    hd = _hd()
    from pydicom.sr.codedict import codes  # optional dependency (extra dicom)
    ratio, points = codes.UCUM.NoUnits, code("{points}", "points", scheme="UCUM")
    lo, hi = result["ci95"]
    measurements = [_number(code(*PROBABILITY), result["probability"], ratio),
                    _number(code(*CI_LOW), lo, ratio), _number(code(*CI_HIGH), hi, ratio)]
    for predictor, value in result["points"].items():
        name = code(*POINTS_TOTAL) if predictor == "total" else points_code(predictor)
        measurements.append(_number(name, value, points))
    group = result["risk_group"]  # None when the verdict is "not reliable": no group is reported
    evaluations = [hd.sr.QualitativeEvaluation(code(*RISK_GROUP), code(RISK_CODES[group], f"{group} risk"))] \
        if group else []
    state = (result.get("verdict") or {}).get("state")
    if state in VERDICT_CODES:  # the scoring core's verdict travels with the number (meaning <= 64 characters)
        evaluations.append(hd.sr.QualitativeEvaluation(code(*VERDICT), code(VERDICT_CODES[state],
                                                                               state.replace("_", " "))))
    evaluations.append(hd.sr.QualitativeEvaluation(code(*INTENDED_USE), code(*RESEARCH_USE)))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=RISK_GROUP_ID),
        finding_type=code(*SCT_PRIMARY_MALIGNANT_NEOPLASM, scheme="SCT"),
        finding_sites=[hd.sr.FindingSite(code(*SCT_BREAST, scheme="SCT"))], algorithm_id=algo,
        measurements=measurements, qualitative_evaluations=evaluations)


def build_sr(result: Dict[str, Any], model: ScoringModel, sources: Sequence[Any], seg):
    """A TID 1500 Measurement Report of one prediction, referencing the SEG and the source series."""
    hd = _hd()
    from pydicom.sr.codedict import codes  # optional dependency (extra dicom)
    algo = algorithm_id(model)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="IMNRisk", manufacturer_name=MANUFACTURER, model_name="IMNRisk"))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=code(*SCT_MRI_BREAST, scheme="SCT"),
        imaging_measurements=[_tumour_group(result, seg, algo, sources[0].SeriesInstanceUID),
                              _risk_group(result, algo)])
    sr = hd.sr.Comprehensive3DSR(
        evidence=list(sources) + [seg], content=report[0], series_instance_uid=hd.UID(),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, series_description="IMNRisk IMN risk SR (research use only)")
    sr.CodingSchemeIdentificationSequence = [_local_scheme()]
    return sr


def _local_scheme():
    """Coding Scheme Identification of IMNRisk's local codes (PS3.3 C.12.1.1.3)."""
    from pydicom.dataset import Dataset  # optional dependency (extra dicom)
    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeName = "IMNRisk local codes"
    item.CodingSchemeResponsibleOrganization = "IMNRisk project"
    return item


def add_patient_identifier(dataset, identifier: Optional[str]) -> None:
    """The identifier the user typed (the web page's required field) as an Other Patient ID issued by
    IMNRisk, beside the source images' own Patient ID, which stays as it is (the PACS files by it)."""
    if not identifier:
        return
    from pydicom.dataset import Dataset  # optional dependency (extra dicom)
    item = Dataset()
    item.PatientID = str(identifier)[:64]
    item.IssuerOfPatientID = ISSUER_OF_PATIENT_ID
    item.TypeOfPatientID = "TEXT"
    dataset.OtherPatientIDsSequence = [item]


# --------------------------------------------------------------------------- writing

@dataclass
class DicomResults:
    """The two written files."""

    seg: Path
    sr: Path


def output_paths(out_dir: Union[str, Path]) -> DicomResults:
    out = Path(out_dir)
    return DicomResults(seg=out / SEG_NAME, sr=out / SR_NAME)


def _save(dataset, path: Path) -> None:
    """Write a DICOM Part 10 file atomically."""
    with atomic_path(path) as tmp:
        dataset.save_as(str(tmp), enforce_file_format=True)


def export(out_dir: Union[str, Path], sources: Union[Sequence[Any], EnhancedPhase], mask: sitk.Image,
           result: Dict[str, Any], model: ScoringModel, force: bool = False) -> DicomResults:
    """Write SEG and SR of one prediction from the chosen phase's slices (pydicom datasets, any
    order) or its frames of an Enhanced MR object (`enhanced_phase`) and the tumour mask on their
    grid (SimpleITK, LPS). Nothing is written on error.

    The Slicer module can call this directly: the slices from the volume node's
    "DICOM.instanceUIDs" through the DICOM database, the mask exported on the volume's grid."""
    paths = output_paths(out_dir)
    for p in (paths.seg, paths.sr):
        check_can_write(p, force)
    try:
        if isinstance(sources, EnhancedPhase):
            frames, on_frames = enhanced_mask_frames(mask, sources)
            seg = build_seg([sources.dataset], frames, on_frames, sources.positions)
            sources = [sources.dataset]
        else:
            refuse_a_whole_multiframe_object(sources)
            frames, sources = mask_frames(mask, sources)
            seg = build_seg(sources, frames)
        sr = build_sr(result, model, sources, seg)
        for dataset in (seg, sr):
            add_patient_identifier(dataset, result.get("patient_id"))
    except (ValueError, AttributeError) as exc:  # highdicom's checks of the source images
        raise InputError(f"cannot build DICOM SEG/SR on this series ({str(exc).splitlines()[0][:160]})",
                         id=_patient_id(sources), field="--image") from None
    _save(seg, paths.seg)
    _save(sr, paths.sr)
    return paths


def export_case(out_dir: Union[str, Path], image_folder: Union[str, Path], mask_path: Union[str, Path],
                result: Dict[str, Any], model: ScoringModel, label: Union[int, str] = 1,
                force: bool = False) -> DicomResults:
    """SEG + SR for a scored patient (`Prediction.to_dict()`) on a DICOM folder (same phase and mask as scored)."""
    phase = result["phase"] if (result.get("n_phases") or 2) > 1 else None  # a single-phase series has one
    sources = phase_sources(image_folder, phase)
    case = imaging.load_case(image_folder, mask_path, phase, label, model.min_tumour_voxels)
    return export(out_dir, as_sources(sources), case.mask, result, model, force)


def phase_sources(image_folder: Union[str, Path], phase: Optional[int]) -> Union[List[Path], EnhancedPhase]:
    """What the SEG goes on for one phase of a DICOM folder: that phase's files, or its frames of
    the folder's Enhanced MR object."""
    from IMNRiskLib.inputs.dicomimage import enhanced_object  # start-up time: loaded when this step runs
    folder = Path(image_folder)
    enhanced = enhanced_object(folder, imaging._dicom_files(folder))
    return enhanced_phase(enhanced, phase) if enhanced is not None else source_files(folder, phase)


def as_sources(sources: Union[Sequence[Any], EnhancedPhase]) -> Union[List[Any], EnhancedPhase]:
    """`export`'s sources: an Enhanced MR phase as it is, slices as pydicom datasets (files read)."""
    if isinstance(sources, EnhancedPhase) or all(hasattr(s, "SOPInstanceUID") for s in sources):
        return sources
    return read_source(sources)


def _patient_id(sources: Union[Sequence[Any], EnhancedPhase]) -> Optional[str]:
    first = sources.dataset if isinstance(sources, EnhancedPhase) else sources[0]
    return str(getattr(first, "PatientID", "")) or None


# --------------------------------------------------------------------------- reading back

def read_report(sr_path: Union[str, Path]) -> Dict[str, Any]:
    """The values of an IMNRisk SR in `imnrisk predict --json` form (plus the algorithm and the
    references), read with highdicom: what a PACS user would get back."""
    hd = _hd()
    sr = hd.sr.srread(str(sr_path))
    report = sr.content
    tumour = report.get_volumetric_roi_measurement_groups()[0]
    risk = report.get_image_measurement_groups()[0]
    features = {m.name.meaning: m.value for m in tumour.get_measurements()
                if m.name.scheme_designator == SCHEME and m.name.value != RADSCORE[0]}
    by_code = {m.name.value: m.value for m in risk.get_measurements()}
    points = {m.name.meaning[len(POINTS_PREFIX):]: m.value for m in risk.get_measurements()
              if m.name.meaning.startswith(POINTS_PREFIX)}
    points["total"] = by_code[POINTS_TOTAL[0]]
    evaluations = {e.name.value: e.value for e in risk.get_qualitative_evaluations()}
    radscore = next(m.value for m in tumour.get_measurements() if m.name.value == RADSCORE[0])
    return {"radscore": radscore, "probability": by_code[PROBABILITY[0]],
            "ci95": [by_code[CI_LOW[0]], by_code[CI_HIGH[0]]],
            "risk_group": evaluations[RISK_GROUP[0]].meaning.split(" risk")[0] if RISK_GROUP[0] in evaluations else None,
            "verdict": evaluations[VERDICT[0]].meaning.replace(" ", "_") if VERDICT[0] in evaluations else None,
            "points": points,
            "features": features, "notice": evaluations[INTENDED_USE[0]].meaning,
            "algorithm": _algorithm_texts(tumour), "referenced_segment": tumour.referenced_segment,
            "tracking": [tumour.tracking_identifier, risk.tracking_identifier]}


def _algorithm_texts(group) -> Dict[str, List[str]]:
    """Algorithm name, version and parameters of a measurement group (TID 4019 texts)."""
    out: Dict[str, List[str]] = {}
    for item in group[0].ContentSequence:
        if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeValue in ("111001", "111002", "111003"):
            out.setdefault(item.ConceptNameCodeSequence[0].CodeMeaning, []).append(item.TextValue)
    return out


def tree_lines(sr_path: Union[str, Path], max_numbers: int = 8) -> List[Tuple[int, str]]:
    """The SR's content tree as (depth, text) lines, a long run of measurements shortened to its
    first ones, a count, and its last: for the README's picture and for reading an SR without a viewer."""
    import pydicom  # optional dependency (extra dicom)
    ds = pydicom.dcmread(str(sr_path))
    lines: List[Tuple[int, str]] = [(0, f"CONTAINER {ds.ConceptNameCodeSequence[0].CodeMeaning}")]

    def walk(items, depth: int) -> None:
        numbers = [i for i, item in enumerate(items) if item.ValueType == "NUM"]
        hidden = set(numbers[max_numbers - 1:-1]) if len(numbers) > max_numbers else set()
        for i, item in enumerate(items):
            if i in hidden:
                if i == min(hidden):
                    lines.append((depth, f"... {len(hidden)} more NUM items"))
                continue
            lines.append((depth, _item_text(item)))
            if "ContentSequence" in item and item.ValueType == "CONTAINER":
                walk(item.ContentSequence, depth + 1)
    walk(ds.ContentSequence, 1)
    return lines


def _item_text(item) -> str:
    """One content item as 'RELATIONSHIP TYPE name = value'."""
    name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
    vt = item.ValueType
    if vt == "NUM":
        mv = item.MeasuredValueSequence[0]
        value = f"= {float(mv.NumericValue):.6g} [{mv.MeasurementUnitsCodeSequence[0].CodeValue}]"
    elif vt == "CODE":
        value = f"= {item.ConceptCodeSequence[0].CodeMeaning}"
    elif vt in ("TEXT", "UIDREF"):
        value = f"= {item.TextValue if vt == 'TEXT' else item.UID}"
    elif vt == "IMAGE":
        value = f"-> segment {item.ReferencedSOPSequence[0].get('ReferencedSegmentNumber', '')} of the SEG"
    else:
        value = ""
    return f"{item.RelationshipType} {vt} {name} {value}".rstrip()
