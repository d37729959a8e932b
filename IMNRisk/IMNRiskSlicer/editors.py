"""Segment Editor duties of the scoring controller: which editors it drives, and keeping them and the
slice views on the shown volume and the chosen segmentation.

One editor at a time: a face's editor holds the slice views' interaction and the keyboard shortcuts
only between enter and exit (in Slicer: while IMNRisk is the current module, as Slicer's own Segment
Editor module holds them only while it is current), and entering a second editor releases the first.
Teardown while the application exits touches no editor.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional


class Editors:
    """The Segment Editors (qMRMLSegmentEditorWidget or look-alikes) the controller keeps in step."""

    def __init__(self, owner):
        self.owner = owner
        self.attached: List[Any] = []
        self._bound: Dict[int, tuple] = {}
        self._shown: Optional[str] = None

    def attach(self, editor) -> None:
        """Keep this editor on the shown node and the chosen segmentation (segmentation first)."""
        if editor not in self.attached:
            self.attached.append(editor)
        self._bound.pop(id(editor), None)
        self.sync()

    def enter(self, editor) -> None:
        """What Slicer's Segment Editor module does on enter: shortcuts, then the nodes; any other
        editor this controller drives is released first (one editor holds the views)."""
        for other in [e for e in self.attached if e is not editor]:
            self.exit(other)
        editor.installKeyboardShortcuts()
        self.attach(editor)

    def exit(self, editor) -> None:
        """What Slicer's Segment Editor module does on exit: no active effect, no shortcuts, no view
        observers. Only an editor that is attached is called (exit, then cleanup, release it once)."""
        if editor not in self.attached:
            return
        editor.setActiveEffect(None)
        editor.uninstallKeyboardShortcuts()
        editor.removeViewObservations()
        self.attached.remove(editor)
        self._bound.pop(id(editor), None)

    def release(self, app_exiting: bool) -> List[Any]:
        """The face is going away: release every attached editor, or, once the application has begun
        to exit (its widgets and main window are being torn down), forget them without a call.
        Returns the editors that were forgotten uncalled."""
        forgotten = []
        for editor in list(self.attached):
            if app_exiting:
                self.attached.remove(editor)
                self._bound.pop(id(editor), None)
                forgotten.append(editor)
            else:
                self.exit(editor)
        return forgotten

    def sync(self) -> None:
        """Show the scored node in the views when it changes; re-bind an editor only when its
        (segmentation, source volume) pair changed, never per scene event."""
        shown = self.owner.displayed_node()
        shown_id = shown.GetID() if shown is not None else None
        if shown_id != self._shown:
            self._shown = shown_id
            if shown is not None and self.owner.show_volume is not None:
                self.owner.show_volume(shown)
        segmentation = self.owner.tumour.node()
        wanted = (self.owner.tumour.segmentation_id, shown_id)
        for editor in self.attached:
            if self._bound.get(id(editor)) != wanted:
                editor.setSegmentationNode(segmentation)   # Slicer refuses a source volume before a segmentation
                editor.setSourceVolumeNode(shown)
                self._bound[id(editor)] = wanted
