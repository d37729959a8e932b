"""The module's logic without Qt: scoring from MRML nodes, result tables, the training command.

`ScoringLogic` is what IMNRiskLogic (IMNRisk.py) adds to Slicer's ScriptedLoadableModuleLogic; it
needs only MRML, so it is tested headless with the slicer-core wheel.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import SimpleITK as sitk

# Only what Slicer itself ships is imported here (numpy, SimpleITK): the module must load before
# IMNRisk has asked to install pandas, scikit-learn & co.; those are imported where they are used.
from IMNRiskLib.inputs import imaging
from IMNRiskLib.scoring.modelfile import ScoringModel

from . import mrml


class ScoringLogic:
    """Score a contoured tumour with a model file; everything also callable from Python."""

    def __init__(self, scene=None):
        self._scene = scene
        self._models: Dict[str, Any] = {}

    @property
    def scene(self):
        if self._scene is None:
            import slicer
            self._scene = slicer.mrmlScene
        return self._scene

    def load_model(self, model: Union[str, Path, ScoringModel]) -> ScoringModel:
        """A ScoringModel from a path (cached while the file is unchanged) or as given."""
        if isinstance(model, ScoringModel):
            return model
        path = Path(model)
        key = f"{path.resolve()}:{path.stat().st_mtime_ns if path.exists() else 0}"
        if key not in self._models:
            self._models = {key: ScoringModel.load(path)}
        return self._models[key]

    def tumour(self, volume_node, segmentation_node, segment_id: str, phase: Optional[int] = None,
               min_voxels: int = imaging.MIN_TUMOUR_VOXELS) -> imaging.LoadedCase:
        """The chosen phase and the segment as a binary mask on its grid, checked as files are."""
        image = mrml.phase_image(volume_node, phase)
        imaging.check_image(image, volume_node.GetName())
        reference = mrml.reference_volume(volume_node, phase)
        mask = mrml.segment_to_sitk(segmentation_node, segment_id, reference, self.scene)
        warnings: List[str] = []
        mask = imaging.align_mask(mask, image, segmentation_node.GetName(), warnings)
        imaging.check_tumour_size(mask, segmentation_node.GetName(), min_voxels)
        imaging.check_one_region(mask, segment_id, segmentation_node.GetName())
        chosen = mrml.default_phase(volume_node) if phase is None else int(phase)
        return imaging.LoadedCase(image=image, mask=mask, phase=chosen, n_phases=mrml.phase_count(volume_node),
                                  warnings=warnings)

    def segment_size(self, volume_node, segmentation_node, segment_id: str, phase: Optional[int] = None):
        """(voxels, millilitres) of a segment on the image grid, for the live display."""
        mask = mrml.segment_to_sitk(segmentation_node, segment_id, mrml.reference_volume(volume_node, phase),
                                    self.scene)
        voxels = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
        return voxels, voxels * float(np.prod(mask.GetSpacing())) / 1000.0

    def case(self, volume_node, segmentation_node, segment_id: str, model: ScoringModel,
             phase: Optional[int] = None):
        """The scoring core's case for the shown phase and the segment (nodes -> SimpleITK, nothing else)."""
        from IMNRiskLib.scoring import Case, model_settings
        return Case(loaded=self.tumour(volume_node, segmentation_node, segment_id, phase,
                                       model_settings(model).min_tumour_voxels),
                    source=segmentation_node.GetName())

    def predict(self, volume_node, segmentation_node, segment_id: str, clinical: Dict[str, Any],
                model: Union[str, Path, ScoringModel], phase: Optional[int] = None,
                allow_version_mismatch: bool = False) -> Dict[str, Any]:
        """The scoring core's Prediction (as a dict) for nodes: the same numbers, warnings and verdict as
        `imnrisk predict` on the same image and mask files."""
        from IMNRiskLib.scoring import Options, score_case
        from IMNRiskLib.scoring.core import check_request
        scoring = self.load_model(model)
        options = Options(allow_version_mismatch=allow_version_mismatch, clinical_source="clinical factors")
        check_request(scoring, clinical, options)  # cheap checks before the segment is exported
        case = self.case(volume_node, segmentation_node, segment_id, scoring, phase)
        return score_case(scoring, case, clinical, options).to_dict()

    def results_to_tables(self, result: Dict[str, Any], points_table=None, features_table=None):
        """Nomogram points and feature values as table nodes (kept in the scene, saved with it)."""
        points_table = points_table or self.scene.AddNewNodeByClass("vtkMRMLTableNode", "IMNRisk points")
        features_table = features_table or self.scene.AddNewNodeByClass("vtkMRMLTableNode", "IMNRisk features")
        _fill_table(points_table, ["predictor", "points"], [[k, f"{v:.1f}"] for k, v in result["points"].items()])
        rows = [["verdict", result["verdict"]["headline"]], ["Rad-Score", f"{result['radscore']:.4f}"],
                ["probability", f"{result['probability']:.4f}"],
                ["95% CI", f"{result['ci95'][0]:.4f}-{result['ci95'][1]:.4f}"],
                ["risk group", result["risk_group"] or "withheld (not reliable)"]]
        rows += [[k, repr(v)] for k, v in result["features"].items()]
        _fill_table(features_table, ["quantity", "value"], rows)
        return points_table, features_table


def _fill_table(table_node, columns: List[str], rows: List[List[str]]) -> None:
    import vtk
    table = vtk.vtkTable()
    for name in columns:
        column = vtk.vtkStringArray()
        column.SetName(name)
        column.SetNumberOfValues(len(rows))
        table.AddColumn(column)
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            table.GetColumn(c).SetValue(r, str(value))
    table_node.SetAndObserveTable(table)


def python_executable() -> str:
    """The Python that runs IMNRiskLib in a background process: PythonSlicer inside Slicer."""
    exe = Path(sys.executable)
    candidate = exe.with_name("PythonSlicer" + (".exe" if os.name == "nt" else ""))
    return str(candidate) if candidate.exists() else sys.executable


def training_commands(cohort: str, out: str, features_csv: Optional[str] = None, schema: Optional[str] = None,
                  cv_repeats: int = 100, bootstrap: int = 1000, jobs: Optional[int] = None,
                  force: bool = False) -> List[str]:
    """argv of a background training run (extraction first when no features table is given).

    Training runs in its own process so that Slicer stays responsive; its progress bars arrive
    on stderr; killing it leaves no half-written output (every file is renamed into place)."""
    import IMNRiskLib
    jobs = jobs or os.cpu_count() or 1
    lib_parent = str(Path(IMNRiskLib.__file__).resolve().parents[1])
    script = ("import sys; sys.path.insert(0, {!r}); from IMNRiskLib.app.cli import main; "
              "sys.exit(main(sys.argv[1:]))").format(lib_parent)
    feats = features_csv or str(Path(out) / "features.csv")
    steps = []
    if not features_csv:
        steps.append(["extract", cohort, "--out", feats, "--jobs", str(jobs)] + (["--force"] if force else []))
    train = ["train", cohort, "--features", feats, "--out", out, "--cv-repeats", str(cv_repeats),
             "--bootstrap", str(bootstrap), "--jobs", str(jobs)]
    if schema:
        train += ["--schema", schema]
    if force or not features_csv:
        train.append("--force")
    steps.append(train)
    return [[python_executable(), "-c", script] + step for step in steps]
