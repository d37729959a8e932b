"""What the browser face adds to the controller, without any UI: reading a DCE study into the MRML
scene as a sequence of phases (IMNRiskLib's phase logic, so DICOM phases split as `imnrisk` splits
them), saving the mask and the results table, and keeping file names out of what the page shows.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import SimpleITK as sitk

from IMNRiskLib.inputs import imaging
from IMNRiskLib.core.errors import InputError

STUDY_NAME = "Study"  # the only name the page shows for a study: never a file or patient name
STUDY_ATTRIBUTE = "IMNRiskWeb.Study"


def read_phases(path: Union[str, Path]) -> List[sitk.Image]:
    """Every phase of a DCE study (4-D NRRD/NIfTI, Slicer .seq.nrrd, a DICOM folder, a folder of
    per-phase files) as float 3-D images, read by IMNRiskLib.inputs.imaging as `imnrisk predict` reads them."""
    first, _, n = imaging.load_phase(path, 0)
    return [first] + [imaging.load_phase(path, k)[0] for k in range(1, n)]


def remove_study(scene) -> None:
    """Forget the previous study: its sequence, browser, proxy volume and segmentations."""
    doomed = []
    for cls in ("vtkMRMLSequenceBrowserNode", "vtkMRMLSequenceNode", "vtkMRMLScalarVolumeNode",
                "vtkMRMLSegmentationNode"):
        nodes = scene.GetNodesByClass(cls)
        for i in range(nodes.GetNumberOfItems()):
            node = nodes.GetItemAsObject(i)
            if cls == "vtkMRMLSegmentationNode" or node.GetAttribute(STUDY_ATTRIBUTE) or \
                    node.GetName().startswith(STUDY_NAME):
                doomed.append(node)
    for node in doomed:
        if scene.IsNodePresent(node):
            scene.RemoveNode(node)


def add_study(scene, phases: Sequence[sitk.Image]):
    """A sequence node named "Study" holding one scalar volume per phase (index = 0-based phase),
    built aside and added to the scene whole, so that observers see every phase at once."""
    import slicer
    from IMNRiskSlicer import mrml
    workspace = slicer.vtkMRMLScene()
    sequence = slicer.vtkMRMLSequenceNode()
    sequence.SetName(STUDY_NAME)
    sequence.SetAttribute(STUDY_ATTRIBUTE, "1")
    sequence.SetIndexName("phase")
    sequence.SetIndexUnit("")
    for k, image in enumerate(phases):
        sequence.SetDataNodeAtValue(mrml.sitk_to_volume(image, workspace, f"{STUDY_NAME} phase {k}"), str(k))
    workspace.Clear(1)
    return scene.AddNode(sequence)


def load_study(scene, path: Union[str, Path]):
    """Replace the scene's study by the one at `path`; returns the new sequence node."""
    phases = read_phases(path)
    remove_study(scene)
    return add_study(scene, phases)


def mask_nrrd(scene, volume_node, segmentation_node, segment_id: str, out: Union[str, Path]) -> Path:
    """Write the segment as a binary label map on the shown phase's grid (what `imnrisk predict
    --mask` reads back); written to a temporary name and renamed."""
    from IMNRiskLib.core.files import atomic_path
    from IMNRiskSlicer import mrml
    mask = mrml.segment_to_sitk(segmentation_node, segment_id, volume_node, scene)
    with atomic_path(out) as tmp:
        sitk.WriteImage(mask, str(tmp.with_suffix(".nrrd")), True)
        tmp.with_suffix(".nrrd").replace(tmp)
    return Path(out)


def dicom_sources(path: Union[str, Path], phase: Callable[[], int]) -> Optional[Callable[[Any], List[Path]]]:
    """For a DICOM study: the controller's lookup of the shown phase's slices, or its frames of an
    Enhanced MR object (for the SEG + SR export); None for any other study (no DICOM to reference)."""
    path = Path(path)
    if not (path.is_dir() and imaging._dicom_files(path)):
        return None
    from IMNRiskLib.outputs import dicomout
    from IMNRiskLib.inputs.dicomimage import enhanced_object
    several = enhanced_object(path, imaging._dicom_files(path)) is not None or len(imaging.dicom_phases(path)) > 1
    return lambda _node: dicomout.phase_sources(path, phase() if several else None)


def zip_files(paths: Iterable[Union[str, Path]]) -> bytes:
    """Files as one zip archive (by their base names), for one download."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in paths:
            archive.write(str(path), Path(path).name)
    return buffer.getvalue()


def results_csv(rows: Iterable[Dict[str, Any]]) -> str:
    """The results table (one row per prediction) as CSV text."""
    rows = list(rows)
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


class Uploads:
    """A private temporary folder for uploaded files (mode 0700), removed by close() and at exit;
    files are stored under neutral names so that no patient's file name reaches a log."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="imnrisk-web-"))
        self._count = 0

    def new_folder(self) -> Path:
        self._count += 1
        folder = self.root / f"upload{self._count}"
        folder.mkdir(mode=0o700)
        return folder

    def write(self, files: Sequence[Dict[str, Any]]) -> Path:
        """Store one upload (a 4-D file, or the files of a DICOM folder); returns what to read."""
        if not files:
            raise InputError("no file was uploaded")
        folder = self.new_folder()
        paths = []
        for i, item in enumerate(files):
            suffix = _suffix(str(item.get("name", "")))
            target = folder / f"file{i:05d}{suffix}"
            target.write_bytes(_content(item))
            paths.append(target)
        if len(paths) == 1 and paths[0].suffix:
            return paths[0]
        return folder

    def discard(self, path: Union[str, Path, None]) -> None:
        """Remove the upload (or download) folder holding `path`; a path outside this session's folder
        (a study typed by its path on the workstation) is never touched."""
        if path is None:
            return
        try:
            parts = Path(path).resolve().relative_to(self.root.resolve()).parts
        except ValueError:
            return
        if parts:
            shutil.rmtree(self.root / parts[0], ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _suffix(name: str) -> str:
    """The image suffix of an uploaded name (.nrrd, .nii.gz, ...), else none (DICOM slices)."""
    lower = name.lower()
    for suffix in sorted(imaging.IMAGE_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return suffix
    return ""


def _content(item: Dict[str, Any]) -> bytes:
    """The bytes of one file as trame's file input sends it (one buffer or a list of chunks)."""
    content = item.get("content", b"")
    if isinstance(content, (list, tuple)):
        return b"".join(content)
    return bytes(content)


def redact(text: Any, secrets: Iterable[Union[str, Path]]) -> Any:
    """Text for the page: every known path (uploads folder, model file, a typed path) replaced by
    a neutral word, so neither file paths nor patient-named files reach the browser."""
    if not isinstance(text, str):
        return text
    for secret in sorted({str(s) for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "the file")
    return re.sub(r"(?<![\w.])/(?:[\w.\-]+/)+[\w.\-]*", "the file", text)


def upload_refusal(size_bytes: int, limit_mb: int) -> str:
    """What the page says when an upload is over the server's limit."""
    return (f"Refused: the upload is {-(-size_bytes // 1_000_000)} MB; this server accepts at most {limit_mb} MB "
            "(imnrisk web --max-upload-mb).")


def without_paths(state: Dict[str, Any], secrets: List[str]) -> Dict[str, Any]:
    """The controller's state for the page minus file paths: no model, features-CSV or export path,
    messages redacted (the pyradiomics line too: it names the install folder)."""
    state = dict(state)
    if state.get("pyradiomics"):
        state["pyradiomics"] = {**state["pyradiomics"], "message": redact(state["pyradiomics"]["message"], secrets)}
    if state.get("model"):
        state["model"] = {k: redact(val, secrets) for k, val in state["model"].items() if k != "path"}
    if state.get("features_csv"):
        state["features_csv"] = {"id": state["features_csv"].get("id")}
    state["error"] = redact(state.get("error"), secrets)
    if state.get("result"):
        result = dict(state["result"])
        result["warnings"] = [redact(w, secrets) for w in result.get("warnings") or []]
        if result.get("display"):
            result["display"] = {k: redact(v, secrets) for k, v in result["display"].items()}
        state["result"] = result
    state["predict"] = {**state["predict"], "reason": redact(state["predict"]["reason"], secrets)}
    if state.get("export"):
        state["export"] = {"enabled": state["export"]["enabled"], "reason": redact(state["export"]["reason"], secrets),
                           "written": bool(state["export"].get("written"))}
    return state
