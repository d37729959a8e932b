"""The tumour: the chosen segmentation and segment, its live size, and segmentation files loaded into
the scene (the scoring controller's tumour part)."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Union

import numpy as np

from IMNRiskLib.core.errors import InputError

from .observers import nodes_of_class, weak_observer


class Tumour:
    """Which segmentation and segment hold the tumour, and how big it is while it is painted."""

    def __init__(self, owner):
        self.owner = owner
        self.scene = owner.scene
        self.segmentation_id: Optional[str] = None
        self.segment_id: Optional[str] = None
        self.size: Dict[str, Any] = {"voxels": 0, "ml": 0.0, "warning": "", "note": "", "pending": False}
        self._file: Optional[Dict[str, Any]] = None   # what loading a tumour file said (e.g. an unchecked reference)
        self._size_due = False
        self._size_last = -math.inf
        self._seg_observers: List[tuple] = []

    def close(self) -> None:
        self._observe(None)

    def node(self):
        """The chosen segmentation node (None: none)."""
        return self.scene.GetNodeByID(self.segmentation_id) if self.segmentation_id else None

    # ------------------------------------------------------------------ choice
    def refresh_choice(self) -> None:
        """After a rescan: keep the chosen segmentation if it is still there, else take the first."""
        segs = nodes_of_class(self.scene, "vtkMRMLSegmentationNode")
        if self.segmentation_id not in {s.GetID() for s in segs}:
            self.segmentation_id = None
            self.segment_id = None
            self._observe(None)
            if segs:
                self._select(segs[0])

    def choose_segmentation(self, node_id: Optional[str]) -> None:
        """Contour in (and score) this segmentation node."""
        self.owner.inputs.flush_scene_events()
        node = self.scene.GetNodeByID(node_id) if node_id else None
        self.segmentation_id = self.segment_id = None
        self._observe(None)
        if node is not None:
            self._select(node)
        self.owner.scoring.mark_stale()
        self.segment_changed(force=True)
        self.owner.changed()

    def _select(self, node) -> None:
        self.segmentation_id = node.GetID()
        segmentation = node.GetSegmentation()
        shown = self.owner.displayed_node()
        if shown is not None and segmentation.GetNumberOfSegments() == 0:
            node.SetReferenceImageGeometryParameterFromVolumeNode(shown)  # paint on the image's grid
        self.segment_id = segmentation.GetNthSegmentID(0) if segmentation.GetNumberOfSegments() else None
        self._observe(node)

    def new_segmentation(self, segment_name: str = "tumour") -> str:
        """A new segmentation on the shown image's grid with one empty segment; returns its ID."""
        with self.owner.quiet():
            node = self._new_node("IMNRisk tumour")
            node.GetSegmentation().AddEmptySegment(segment_name, segment_name)
        self.choose_segmentation(node.GetID())
        return node.GetID()

    def _new_node(self, name: str):
        """A segmentation node with display nodes, on the shown image's grid."""
        node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        node.CreateDefaultDisplayNodes()
        shown = self.owner.displayed_node()
        if shown is not None:
            node.SetReferenceImageGeometryParameterFromVolumeNode(shown)
        return node

    def choose_segment(self, segment_id: Optional[str]) -> None:
        self.segment_id = segment_id or None
        self.owner.scoring.mark_stale()
        self.segment_changed(force=True)
        self.owner.changed()

    def segment_name(self) -> str:
        return self.node().GetSegmentation().GetSegment(self.segment_id).GetName()

    def names(self) -> List[Dict[str, str]]:
        """The chosen segmentation's segments, as a face lists them."""
        node = self.node()
        if node is None:
            return []
        s = node.GetSegmentation()
        return [{"id": s.GetNthSegmentID(i), "name": s.GetNthSegment(i).GetName()}
                for i in range(s.GetNumberOfSegments())]

    # ------------------------------------------------------------------ a segmentation file
    def load_segmentation(self, path: str, label: Union[int, str] = 1) -> Optional[str]:
        """A tumour file as a new editable segmentation chosen as the tumour: a labelmap (NRRD,
        NIfTI), a .seg.nrrd, a DICOM SEG or an RTSTRUCT, read and placed on the shown phase by
        IMNRiskLib.inputs.imaging.load_mask with the CLI's checks. Returns the node ID (None: the reason is
        in state()["error"])."""
        from .maskfile import read_tumour_file
        self.owner.inputs.flush_scene_events()
        shown = self.owner.displayed_node()
        if shown is None:
            return self.owner.refuse("Choose the DCE series first: a tumour file is placed on the shown image.")
        warnings: List[str] = []
        try:
            label = mask_label(label)
            mask = read_tumour_file(path, label, shown, self.owner.image_files(), self.owner.min_voxels(),
                                    warnings)
            node = self._node_from_mask(mask, _node_name(path), _segment_name(label))
        except InputError as exc:
            return self.owner.refuse(str(exc.located(file=str(path) if path else None)))
        self.owner.error = None
        self._file = {"segmentation_id": node.GetID(), "warnings": list(warnings)}
        self.choose_segmentation(node.GetID())
        return node.GetID()

    def _node_from_mask(self, mask, name: str, segment_name: str):
        """A new segmentation node holding the mask as one segment (none is left when that fails)."""
        from .maskfile import segmentation_from_mask
        with self.owner.quiet():
            node = self._new_node(name)
            try:
                segmentation_from_mask(mask, node, segment_name, self.scene)
            except InputError:
                self.scene.RemoveNode(node)
                raise
        return node

    def file_state(self) -> Optional[Dict[str, Any]]:
        """What loading the chosen segmentation from a file said (None: it was not loaded from a file)."""
        if self._file is None or self._file["segmentation_id"] != self.segmentation_id:
            return None
        return dict(self._file)

    # ------------------------------------------------------------------ live size
    def _observe(self, node) -> None:
        for obj, tag in self._seg_observers:
            obj.RemoveObserver(tag)
        self._seg_observers = []
        if node is None:
            return
        import slicer
        segmentation = node.GetSegmentation()
        events = (slicer.vtkSegmentation.SourceRepresentationModified, slicer.vtkSegmentation.SegmentModified,
                  slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved)
        self._seg_observers = [(segmentation, segmentation.AddObserver(e, weak_observer(self._on_segmentation)))
                               for e in events]

    def _on_segmentation(self, caller=None, event=None) -> None:
        """A stroke of the paint brush: throttled size update, the result becomes stale."""
        node = self.node()
        if node is not None and (self.segment_id is None
                                 or node.GetSegmentation().GetSegment(self.segment_id) is None):
            segmentation = node.GetSegmentation()
            self.segment_id = segmentation.GetNthSegmentID(0) if segmentation.GetNumberOfSegments() else None
        self.owner.scoring.mark_stale()
        if self.segment_changed():
            self.owner.changed()

    def segment_changed(self, force: bool = False) -> bool:
        """Recount now if forced or if the last count is older than the interval, else leave it
        pending for poll(); True when the shown size changed."""
        self._size_due = True
        if force or self.owner.clock() - self._size_last >= self.owner.size_interval_s:
            self.update_size()
            return True
        self.size["pending"] = True
        return False

    def poll(self) -> bool:
        """The pending size update once the interval has passed; True when it was done."""
        if self._size_due and self.owner.clock() - self._size_last >= self.owner.size_interval_s:
            self.update_size()
            return True
        return False

    def update_size(self) -> None:
        self._size_due = False
        self._size_last = self.owner.clock()
        voxels, ml, warning, note = 0, 0.0, "", ""
        node = self.node()
        if node is not None and self.segment_id:
            try:
                voxels, ml = segment_voxels(node, self.segment_id)
            except InputError as exc:
                warning = exc.message
            minimum = self.owner.min_voxels()
            if not warning and voxels == 0:
                warning = "The segment is empty: paint the tumour."
            elif not warning and voxels < minimum:
                warning = f"Too small for texture features (at least {minimum} voxels)."
            note = self._share_note(voxels)
        self.size = {"voxels": int(voxels), "ml": float(ml), "warning": warning, "note": note, "pending": False}

    def _share_note(self, voxels: int) -> str:
        """The scoring core's tumour-share rule said early: a segment covering more of the shown image
        than a tumour can (a threshold that took the organ) will make the result "not reliable"."""
        from IMNRiskLib.scoring.domain import tumour_share_finding
        shown = self.owner.displayed_node()
        data = shown.GetImageData() if shown is not None else None
        if not voxels or data is None:
            return ""
        found = tumour_share_finding(int(voxels), int(np.prod(data.GetDimensions())))
        return (found[0]["message"].capitalize() + ": the result will be \"not reliable\".") if found else ""


def segment_voxels(segmentation_node, segment_id: str):
    """(voxels, mL) of one segment counted on its own binary labelmap (no export, no scene node),
    cheap enough to follow the paint brush."""
    import slicer
    from vtk.util import numpy_support
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        raise InputError(f"segment '{segment_id}' not found in '{segmentation_node.GetName()}'", field="Segment")
    name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    labelmap = segment.GetRepresentation(name)
    if labelmap is None:
        segmentation_node.GetSegmentation().CreateRepresentation(name)
        labelmap = segment.GetRepresentation(name)
    if labelmap is None or labelmap.GetPointData().GetScalars() is None:
        return 0, 0.0
    extent = labelmap.GetExtent()
    if extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4]:
        return 0, 0.0
    scalars = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())
    voxels = int(np.count_nonzero(scalars == segment.GetLabelValue()))
    return voxels, voxels * float(np.prod(labelmap.GetSpacing())) / 1000.0


def mask_label(label: Union[int, str, None]) -> Union[int, str]:
    """Which tumour in a mask file, as `--label` takes it: a label value (1 when not given) or a
    segment / ROI name."""
    text = "" if label is None else str(label).strip()
    if not text:
        return 1
    if text.lstrip("-").isdigit():
        if int(text) < 1:
            raise InputError(f"label {text} must be 1 or more (0 is background)", field="Label")
        return int(text)
    return text


def _node_name(path: str) -> str:
    """The segmentation node's name: the file's name without its extensions."""
    from pathlib import Path
    name = Path(str(path)).name
    for ending in (".seg.nrrd", ".nii.gz", ".nrrd", ".nii", ".nhdr", ".mha", ".dcm"):
        if name.lower().endswith(ending):
            return name[:-len(ending)] or name
    return name


def _segment_name(label: Union[int, str]) -> str:
    """The segment's name: the ROI / segment label asked for, or 'tumour' for a label number."""
    text = str(label).strip()
    return "tumour" if not text or text.lstrip("-").isdigit() else text
