"""The self-test's logic without Qt: load the frozen test model and the sample DCE case, paint the
tumour into a new segment, fill the form, predict, check the results table. IMNRiskTest runs it in
Slicer (through the widget); `make test` runs it headless with slicer-core.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import SimpleITK as sitk

DATA_DIR = Path(__file__).resolve().parents[1] / "Testing" / "Data"
TEST_MODEL = DATA_DIR / "IMNRiskTestModel.json"
DEMO_CASE = DATA_DIR / "IMNRiskDemoDCE.seq.nrrd"
DEMO_MASK = DATA_DIR / "IMNRiskDemoDCE-tumour.nrrd"
DEMO_CLINICAL = DATA_DIR / "IMNRiskDemoDCE-clinical.json"


def library_parent(module_dir: Path) -> Optional[Path]:
    """The folder holding IMNRiskLib: beside the module file (installed extension) or one level up
    (run from the source tree)."""
    for candidate in (module_dir, module_dir.parent):
        if (candidate / "IMNRiskLib" / "__init__.py").exists():
            return candidate
    return None


def add_library_to_path(module_dir: Path) -> Optional[Path]:
    parent = library_parent(Path(module_dir))
    if parent is not None and str(parent) not in sys.path:
        sys.path.insert(0, str(parent))
    return parent


def demo_clinical(model) -> Dict[str, str]:
    """The sample patient's values of the factors the model needs."""
    values = json.loads(DEMO_CLINICAL.read_text(encoding="utf-8"))["clinical"]
    return {name: values[name] for name in model.factors}


def paint_mask(segmentation_node, segment_id: str, mask: np.ndarray, reference_node, merge: bool = False) -> None:
    """Write a (k, j, i) binary array into a segment on the reference grid, as the Paint effect's
    strokes end up (slicer.util.updateSegmentBinaryLabelmapFromArray without the application);
    merge=True adds it to what is there, as one more brush stroke."""
    import slicer
    import vtk
    from vtk.util import numpy_support
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(mask.shape[2], mask.shape[1], mask.shape[0])
    matrix = vtk.vtkMatrix4x4()
    reference_node.GetIJKToRASMatrix(matrix)
    image.SetImageToWorldMatrix(matrix)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(np.ascontiguousarray(mask, dtype=np.uint8).reshape(-1),
                                                               deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    mode = logic.MODE_MERGE_MAX if merge else logic.MODE_REPLACE
    if not logic.SetBinaryLabelmapToSegment(image, segmentation_node, segment_id, mode):
        raise RuntimeError("could not paint the segment")


def score_demo_case(controller, model_path: Path = TEST_MODEL) -> Dict[str, Any]:
    """Drive a controller as a user would on the sample case; returns the result and what was checked."""
    controller.load_model(str(model_path))
    sequence_inputs = [i for i in controller.state()["inputs"] if i["kind"] == "sequence"]
    if not sequence_inputs:
        raise AssertionError(f"the sample DCE sequence is not offered: {controller.state()['inputs']}")
    controller.choose_input(sequence_inputs[0]["id"])
    state = controller.state()
    if state["phase"] != 1:
        raise AssertionError(f"a DCE series must open at its second phase, not {state['phase']}")
    controller.new_segmentation()
    state = controller.state()
    proxy = controller.scene.GetNodeByID(state["displayed_node_id"])
    segmentation = controller.scene.GetNodeByID(state["segmentation_id"])
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(DEMO_MASK))) > 0
    paint_mask(segmentation, state["segment_id"], mask, proxy)
    controller.poll()
    for name, value in demo_clinical(controller.model).items():
        if controller.state()["predict"]["enabled"]:
            raise AssertionError("Predict was enabled before the clinical form was complete")
        controller.set_clinical(name, value)
    before = len(controller.state()["results"])
    result = controller.predict()
    if result is None:
        raise AssertionError(f"prediction failed: {controller.state()['error']}")
    rows = controller.state()["results"]
    if len(rows) != before + 1 or abs(float(rows[-1]["radscore"]) - result["radscore"]) > 1e-5:
        raise AssertionError(f"the results table did not get this prediction: {rows[-1:]}")
    return {"result": result, "voxels": int(mask.sum()), "state": controller.state()}


def load_demo_case(scene, name: str = "IMNRiskDemoDCE"):
    """Headless stand-in for SampleData: the sample case as a sequence node."""
    from . import mrml
    return mrml.sequence_from_sitk(sitk.ReadImage(str(DEMO_CASE)), scene, name)
