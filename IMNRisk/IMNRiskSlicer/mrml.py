"""MRML <-> SimpleITK glue: volume nodes (scalar, vector/multi-volume, sequences) and segments.

Works on node objects only (no file names), so it runs in Slicer and under the slicer-core wheel
alike. Slicer's volumes are RAS; ITK images are LPS: the IJK-to-RAS matrix is split into spacing,
direction and origin and the first two axes are flipped.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import SimpleITK as sitk

from IMNRiskLib.core.errors import InputError

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def _ijk_to_ras(node) -> np.ndarray:
    import vtk
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _geometry(node):
    """(spacing, direction (LPS, row-major), origin (LPS)) of a volume node."""
    m = _ijk_to_ras(node)
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    direction = LPS_FROM_RAS @ (m[:3, :3] / spacing)
    origin = LPS_FROM_RAS @ m[:3, 3]
    return spacing, direction, origin


def _array(node, component: Optional[int] = None) -> np.ndarray:
    """Voxel array (k, j, i) of a volume node's image data (one component of a vector volume)."""
    from vtk.util import numpy_support
    image = node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise InputError(f"volume '{node.GetName()}' has no image data")
    dims = image.GetDimensions()
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    components = image.GetNumberOfScalarComponents()
    array = scalars.reshape(dims[2], dims[1], dims[0], components) if components > 1 else \
        scalars.reshape(dims[2], dims[1], dims[0])
    if components > 1:
        if component is None:
            raise InputError(f"volume '{node.GetName()}' has {components} components: choose a phase")
        if component >= components:
            raise InputError(f"phase {component} requested but '{node.GetName()}' has {components} phase(s)",
                             field="Phase")
        array = array[..., component]
    return np.ascontiguousarray(array)


def volume_to_sitk(node, component: Optional[int] = None) -> sitk.Image:
    """A SimpleITK image (LPS) of a scalar volume node, or of one component of a vector volume."""
    spacing, direction, origin = _geometry(node)
    image = sitk.GetImageFromArray(_array(node, component))
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in direction.ravel()])
    image.SetOrigin([float(v) for v in origin])
    return image


def phase_count(node) -> int:
    """Number of phases a node offers: sequence items, vector components, or 1."""
    if node.IsA("vtkMRMLSequenceNode"):
        return node.GetNumberOfDataNodes()
    image = node.GetImageData() if hasattr(node, "GetImageData") else None
    return image.GetNumberOfScalarComponents() if image is not None else 1


def default_phase(node) -> int:
    """The second phase of a multi-phase series (the paper's), else the only one."""
    return 1 if phase_count(node) > 1 else 0


def phase_image(node, phase: Optional[int] = None) -> sitk.Image:
    """The chosen phase of a DCE series given as a sequence node, a vector (multi-volume) node,
    or a plain scalar volume; as a float SimpleITK image."""
    n = phase_count(node)
    phase = default_phase(node) if phase is None else int(phase)
    if phase >= n:
        raise InputError(f"phase {phase} requested but '{node.GetName()}' has {n} phase(s)", field="Phase")
    if node.IsA("vtkMRMLSequenceNode"):
        image = volume_to_sitk(node.GetNthDataNode(phase))
    elif n > 1:
        image = volume_to_sitk(node, phase)
    else:
        image = volume_to_sitk(node)
    return sitk.Cast(image, sitk.sitkFloat32)


def reference_volume(node, phase: Optional[int] = None):
    """A scalar volume node on the image grid (for exporting a segment onto it)."""
    if node.IsA("vtkMRMLSequenceNode"):
        return node.GetNthDataNode(default_phase(node) if phase is None else int(phase))
    return node


def segment_to_sitk(segmentation_node, segment_id: str, reference_node, scene) -> sitk.Image:
    """Binary mask (UInt8) of one segment exported onto the reference volume's grid."""
    import slicer
    import vtk
    if not segment_id or segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
        raise InputError(f"segment '{segment_id}' not found in '{segmentation_node.GetName()}'", field="Segment")
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "IMNRisk temporary mask")
    try:
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segment_id)
        logic = slicer.vtkSlicerSegmentationsModuleLogic
        if not logic.ExportSegmentsToLabelmapNode(segmentation_node, ids, labelmap, reference_node):
            raise InputError(f"segment '{segment_id}' could not be exported to the image grid", field="Segment")
        if labelmap.GetImageData() is None:
            raise InputError(f"segment '{segment_id}' is empty: paint the tumour first", field="Segment")
        mask = volume_to_sitk(labelmap)
    finally:
        scene.RemoveNode(labelmap)
    array = sitk.GetArrayViewFromImage(mask)
    if not np.any(array):
        raise InputError(f"segment '{segment_id}' is empty: paint the tumour first", field="Segment")
    binary = sitk.GetImageFromArray((array > 0).astype(np.uint8))
    binary.CopyInformation(mask)
    return binary


def sitk_to_volume(image: sitk.Image, scene, name: str, class_name: str = "vtkMRMLScalarVolumeNode"):
    """A new volume node holding a SimpleITK image (for tests and for showing results)."""
    import vtk
    from vtk.util import numpy_support
    array = sitk.GetArrayFromImage(image)
    node = scene.AddNewNodeByClass(class_name, name)
    data = vtk.vtkImageData()
    data.SetDimensions(image.GetSize()[0], image.GetSize()[1], image.GetSize()[2])
    flat = array.reshape(-1) if array.ndim == 3 else array.reshape(-1, array.shape[-1])
    vtk_array = numpy_support.numpy_to_vtk(np.ascontiguousarray(flat), deep=True)
    data.GetPointData().SetScalars(vtk_array)
    node.SetAndObserveImageData(data)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    ras = LPS_FROM_RAS @ direction
    matrix = vtk.vtkMatrix4x4()
    spacing = np.array(image.GetSpacing())
    origin = LPS_FROM_RAS @ np.array(image.GetOrigin())
    for r in range(3):
        for c in range(3):
            matrix.SetElement(r, c, ras[r, c] * spacing[c])
        matrix.SetElement(r, 3, origin[r])
    node.SetIJKToRASMatrix(matrix)
    return node


def sequence_from_sitk(image: sitk.Image, scene, name: str):
    """A sequence node (one scalar volume per phase) from a 4-D SimpleITK image, as Slicer loads a
    .seq.nrrd; the phase volumes are copied into the sequence and not left in the scene."""
    array = sitk.GetArrayFromImage(image)          # (phase, k, j, i)
    reference = sitk.Extract(image, list(image.GetSize()[:3]) + [0], [0, 0, 0, 0]) if image.GetDimension() == 4 \
        else image
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    for t in range(array.shape[0]):
        phase = sitk.GetImageFromArray(array[t])
        phase.CopyInformation(reference)
        node = sitk_to_volume(phase, scene, f"{name} phase {t}")
        sequence.SetDataNodeAtValue(node, str(t))
        scene.RemoveNode(node)
    return sequence
