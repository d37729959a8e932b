"""Which DCE inputs the scene offers, the chosen one and its phase: the scoring controller's inputs part.

Multi-phase inputs (a sequence, a vector volume, per-phase volumes) are shown through a sequence
browser's proxy node, so the node in the views, the one edited and the one scored are the same node.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional

import vtk

from . import mrml
from .observers import nodes_of_class, weak_observer

SOURCE_ATTRIBUTE = "IMNRisk.SourceNodeID"   # on a sequence IMNRisk built from a vector volume or phase volumes
PHASE_NAME = re.compile(r"^(?P<stem>.*?)[\s_\-:.]*(?:phase|ph|t)?[\s_\-]*(?P<n>\d+)$", re.IGNORECASE)
KIND_ORDER = {"sequence": 0, "vector": 1, "phases": 2, "volume": 3}


class Inputs:
    """The inputs offered, the chosen one, its phase and the scene events that change them."""

    def __init__(self, owner):
        self.owner = owner
        self.scene = owner.scene
        self._scene_due: Optional[float] = None      # when a coalesced rescan is due (None: none pending)
        self._scene_first: Optional[float] = None    # the first node event of the pending burst
        self.rescans = 0                             # scene rescans that told the faces (tests count them)
        self.offered: List[Dict[str, Any]] = []
        self._chosen_phases = 0
        self._groups: Dict[str, List[str]] = {}
        self.input_id: Optional[str] = None
        self._browser_id: Optional[str] = None
        self._single_id: Optional[str] = None
        self._browser_observer: Optional[tuple] = None
        self._browser_phase: Optional[int] = None
        scene = self.scene
        self._scene_observers = [scene.AddObserver(event, weak_observer(self._on_scene_nodes))
                                 for event in (scene.NodeAddedEvent, scene.NodeRemovedEvent)]
        self._scene_observers += [scene.AddObserver(event, weak_observer(self._on_scene_settled))
                                  for event in (scene.EndBatchProcessEvent, scene.EndImportEvent)]

    def close(self) -> None:
        """Remove the scene and browser observers."""
        for tag in self._scene_observers:
            self.scene.RemoveObserver(tag)
        self._scene_observers = []
        self._observe_browser(None)

    def _node(self, node_id: Optional[str]):
        return self.scene.GetNodeByID(node_id) if node_id else None

    # ------------------------------------------------------------------ scene events
    def _on_scene_nodes(self, caller=None, event=None) -> None:
        """A node was added or removed: rescan now (debounce 0, scene idle) or coalesce the burst into one
        rescan that poll() does once the scene has been quiet for scene_debounce_s (at the latest 4
        intervals after the burst began), or that the end of a batch/import does."""
        if self.owner.is_quiet():
            return
        debounce = self.owner.scene_debounce_s
        if debounce <= 0 and not self.scene_busy():
            self._rescan()
            return
        now = self.owner.clock()
        self._scene_first = now if self._scene_due is None else self._scene_first
        self._scene_due = min(now + debounce, self._scene_first + 4 * debounce)

    def scene_busy(self) -> bool:
        """Loading or closing a scene adds/removes many nodes: wait for its end event."""
        return bool(self.scene.IsBatchProcessing() or self.scene.IsImporting() or self.scene.IsClosing())

    def _on_scene_settled(self, caller=None, event=None) -> None:
        """A batch or import ended: its coalesced node events become one rescan now."""
        if self._scene_due is not None and not self.owner.is_quiet() and not self.scene_busy():
            self._rescan()

    def _rescan(self) -> None:
        """One rescan of the scene that tells the faces (the pending burst, if any, is done with)."""
        self._scene_due = self._scene_first = None
        self.rescans += 1
        self.refresh()

    def flush_scene_events(self) -> None:
        """Before acting on a node ID the face passed: apply pending node events (none may be stale)."""
        if self._scene_due is not None and not self.scene_busy():
            self._scene_due = self._scene_first = None
            self.refresh(notify=False)

    def poll(self) -> bool:
        """The pending rescan once the burst has settled (it tells the faces itself), else a quiet rescan
        that picks up image data arriving late; True when the faces must be told."""
        if self._scene_due is not None:
            if self.owner.clock() >= self._scene_due and not self.scene_busy():
                self._rescan()
            return False
        before = (list(self.offered), self.input_id, self.phase())
        with self.owner.quiet():
            self.refresh(notify=False)
        return before != (self.offered, self.input_id, self.phase())

    # ------------------------------------------------------------------ inputs offered
    def _is_proxy(self, node) -> bool:
        return self.owner.sequences_logic.GetFirstBrowserNodeForProxyNode(node) is not None

    def refresh(self, notify: bool = True) -> None:
        """Which inputs to offer: sequences of volumes, vector (multi-volume) nodes, groups of
        per-phase volumes (names ending in a number), and single volumes; never proxies, label
        maps or the sequences IMNRisk built itself. Auto-selects a multi-phase input first."""
        inputs, singles = [], []
        for seq in nodes_of_class(self.scene, "vtkMRMLSequenceNode"):
            if seq.GetAttribute(SOURCE_ATTRIBUTE) or seq.GetNumberOfDataNodes() < 1:
                continue
            if "VolumeNode" not in (seq.GetDataNodeClassName() or "") or "LabelMap" in seq.GetDataNodeClassName():
                continue
            inputs.append({"id": seq.GetID(), "name": seq.GetName(), "kind": "sequence",
                           "phases": seq.GetNumberOfDataNodes()})
        for vol in nodes_of_class(self.scene, "vtkMRMLVolumeNode"):
            if vol.IsA("vtkMRMLLabelMapVolumeNode") or self._is_proxy(vol) or vol.GetImageData() is None:
                continue
            n = vol.GetImageData().GetNumberOfScalarComponents()
            if n > 1:
                inputs.append({"id": vol.GetID(), "name": vol.GetName(), "kind": "vector", "phases": n})
            else:
                singles.append(vol)
        self._groups = phase_groups(singles)
        for stem, ids in self._groups.items():
            inputs.append({"id": "phases:" + stem, "name": f"{stem} ({len(ids)} phase volumes)", "kind": "phases",
                           "phases": len(ids)})
        inputs += [{"id": v.GetID(), "name": v.GetName(), "kind": "volume", "phases": 1} for v in singles]
        self.offered = sorted(inputs, key=lambda i: KIND_ORDER[i["kind"]])
        current = self.entry()
        if current is not None and current["phases"] != self._chosen_phases:
            self.choose(current["id"], notify=False)  # it grew (e.g. still loading): default phase again
        elif current is None:
            self.input_id = None
            self._browser_id = self._single_id = None
            if self.offered:
                self.choose(self.offered[0]["id"], notify=False)
        self.owner.tumour.refresh_choice()
        if notify:
            self.owner.changed()

    def entry(self) -> Optional[Dict[str, Any]]:
        """The chosen input's entry of the offer (None: none chosen)."""
        return next((i for i in self.offered if i["id"] == self.input_id), None)

    def input_name(self, default: str) -> str:
        """The chosen input's name as offered (the results table records it)."""
        entry = self.entry()
        return entry["name"] if entry is not None else default

    # ------------------------------------------------------------------ input and phase
    def choose(self, input_id: Optional[str], notify: bool = True) -> None:
        """Show (and later score) this input; a multi-phase one through a sequence browser's
        proxy node, at its second phase."""
        if notify:
            self.flush_scene_events()
        with self.owner.quiet():
            self.input_id, self._browser_id, self._single_id = None, None, None
            entry = next((i for i in self.offered if i["id"] == input_id), None)
            self._chosen_phases = entry["phases"] if entry else 0
            if entry is not None:
                self.input_id = input_id
                if entry["kind"] == "volume":
                    self._single_id = input_id
                else:
                    browser = self._browser_for(self._sequence_for(entry))
                    self._browser_id = browser.GetID()
                    browser.SetSelectedItemNumber(1 if entry["phases"] > 1 else 0)
                    self._ensure_proxy(browser)
            self._observe_browser(self._node(self._browser_id))
            self.owner.scoring.mark_stale()
        self.owner.tumour.segment_changed(force=True)
        if notify:
            self.owner.changed()

    def _sequence_for(self, entry: Dict[str, Any]):
        """The sequence node to browse: the input itself, or one IMNRisk builds once from a vector
        volume's components or from per-phase volumes (marked, so it is not offered again)."""
        if entry["kind"] == "sequence":
            return self._node(entry["id"])
        for seq in nodes_of_class(self.scene, "vtkMRMLSequenceNode"):
            if seq.GetAttribute(SOURCE_ATTRIBUTE) == entry["id"] and seq.GetNumberOfDataNodes() == entry["phases"]:
                return seq
        seq = self.scene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{entry['name']} phases")
        seq.SetAttribute(SOURCE_ATTRIBUTE, entry["id"])
        seq.SetIndexName("phase")
        seq.SetIndexUnit("")
        if entry["kind"] == "vector":
            vector = self._node(entry["id"])
            for k in range(entry["phases"]):
                phase = mrml.sitk_to_volume(mrml.volume_to_sitk(vector, k), self.scene, f"{entry['name']} phase {k}")
                seq.SetDataNodeAtValue(phase, str(k))
                self.scene.RemoveNode(phase)
        else:
            for k, node_id in enumerate(self._groups[entry["id"].split(":", 1)[1]]):
                seq.SetDataNodeAtValue(self._node(node_id), str(k))
        return seq

    def _browser_for(self, sequence):
        browser = self.owner.sequences_logic.GetFirstBrowserNodeForSequenceNode(sequence)
        if browser is None:
            browser = self.scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{sequence.GetName()} browser")
            browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
        return browser

    def _ensure_proxy(self, browser):
        sequence = browser.GetMasterSequenceNode()
        if browser.GetProxyNode(sequence) is None:
            self.owner.sequences_logic.UpdateProxyNodesFromSequences(browser)
        return browser.GetProxyNode(sequence)

    def displayed_node(self):
        """The one volume node shown in the views, given to the Segment Editor, and scored."""
        browser = self._node(self._browser_id)
        if browser is not None:
            return self._ensure_proxy(browser)
        return self._node(self._single_id)

    def phase(self) -> int:
        browser = self._node(self._browser_id)
        return int(browser.GetSelectedItemNumber()) if browser is not None else 0

    def phase_count(self) -> int:
        browser = self._node(self._browser_id)
        return int(browser.GetNumberOfItems()) if browser is not None else (1 if self._single_id else 0)

    def choose_phase(self, phase: int) -> None:
        """Show and score phase `phase` (0-based) of the chosen series."""
        browser = self._node(self._browser_id)
        n = self.phase_count()
        if browser is None or not 0 <= int(phase) < n:
            self.owner.refuse(f"phase {phase} requested but the input has {n} phase(s)")
            return
        if int(phase) != self.phase():
            browser.SetSelectedItemNumber(int(phase))  # the browser observer marks the result stale
        self.owner.changed()

    def _observe_browser(self, browser) -> None:
        if self._browser_observer:
            node, tag = self._browser_observer
            node.RemoveObserver(tag)
        self._browser_observer = None
        if browser is not None:
            tag = browser.AddObserver(vtk.vtkCommand.ModifiedEvent, weak_observer(self._on_browser))
            self._browser_observer = (browser, tag)
            self._browser_phase = browser.GetSelectedItemNumber()

    def _on_browser(self, caller=None, event=None) -> None:
        """The phase may also change from Slicer's sequence toolbar: the shown phase is the scored one."""
        if caller is not None and caller.GetSelectedItemNumber() != self._browser_phase:
            self._browser_phase = caller.GetSelectedItemNumber()
            self.owner.scoring.mark_stale()
            self.owner.tumour.segment_changed(force=True)
            self.owner.changed()

    def source_node(self):
        """The chosen phase's volume as it was loaded (where Slicer's DICOM module leaves
        DICOM.instanceUIDs): a sequence's data node, the phase volume of a group, the volume itself;
        for a vector (multi-volume) node, that node."""
        entry = self.entry()
        if entry is None:
            return None
        if entry["kind"] == "sequence":
            return self._node(entry["id"]).GetNthDataNode(self.phase())
        if entry["kind"] == "phases":
            ids = self._groups.get(entry["id"].split(":", 1)[1], [])
            return self._node(ids[self.phase()]) if self.phase() < len(ids) else None
        return self._node(entry["id"])


def phase_groups(volumes) -> Dict[str, List[str]]:
    """Scalar volumes named like '<stem> <n>' with the same grid, >= 2 of them: one DCE series."""
    groups: Dict[str, List[tuple]] = {}
    for vol in volumes:
        match = PHASE_NAME.match(vol.GetName() or "")
        if match and match.group("stem").strip():
            groups.setdefault(match.group("stem").strip(), []).append((int(match.group("n")), vol))
    out = {}
    for stem, members in groups.items():
        dims = {m.GetImageData().GetDimensions() for _, m in members}
        if len(members) >= 2 and len(dims) == 1:
            out[stem] = [m.GetID() for _, m in sorted(members, key=lambda t: t[0])]
    return out
