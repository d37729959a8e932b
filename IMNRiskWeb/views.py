"""The page's three slice views: their layout (axial beside sagittal over coronal), each view's name
and orientation cube, and trame-slicer's per-effect logics (for the threshold's bounds)."""

from __future__ import annotations

from trame.widgets import html


def three_slices_layout():
    from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition
    return Layout(LayoutDirection.Horizontal, [
        ViewLayoutDefinition.axial_view(),
        Layout(LayoutDirection.Vertical, [ViewLayoutDefinition.sagittal_view(), ViewLayoutDefinition.coronal_view()]),
    ])


def effect_logics(editor_logic) -> list:
    """trame-slicer's per-effect logics of a SegmentEditorLogic (a private list in 2.0)."""
    return list(getattr(editor_logic, "_effect_logic", []) or [])


def named_slice_view_ui(server, view_id: str, view) -> None:
    """trame-slicer's slice view gutter plus the view's name (Axial, Sagittal, Coronal) and Slicer's
    orientation cube (its faces lettered R/L, A/P, S/I)."""
    import slicer
    from trame_slicer.app.ui import create_vertical_slice_view_gutter_ui
    create_vertical_slice_view_gutter_ui(server, view_id, view)
    node = getattr(view, "_view_node", None)
    name = node.GetOrientation() if node is not None and hasattr(node, "GetOrientation") else ""
    try:
        view.set_orientation_marker(slicer.vtkMRMLAbstractViewNode.OrientationMarkerTypeCube,
                                    slicer.vtkMRMLAbstractViewNode.OrientationMarkerSizeSmall)
    except AttributeError:
        pass
    # what the view node will draw, read back (trame-slicer skips the call silently without a view node)
    cube = node is not None and \
        node.GetOrientationMarkerType() == slicer.vtkMRMLAbstractViewNode.OrientationMarkerTypeCube
    marker = "cube" if cube else "none"
    html.Div(name, classes="imn-view-name", raw_attrs=[f'data-view="{name}"', f'data-marker="{marker}"'],
             style="position: absolute; top: 4px; left: 50%; transform: translateX(-50%); color: #ffd54f;"
                   " font-weight: bold; pointer-events: none; text-shadow: 0 0 3px black;")
