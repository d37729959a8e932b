"""Predict and what it leaves: the gate, the scoring core's result, the results table, the nomogram
figure (the scoring controller's results part). Nothing here judges the patient: the scoring core does."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any, Dict, List, Optional

from IMNRiskLib.core.errors import InputError

from .observers import nodes_of_class

RESULTS_TABLE_NAME = "IMNRisk results"
RESULT_COLUMNS = ["time", "model_sha256", "input", "phase", "segment", "inputs", "radscore", "risk",
                  "ci95_low", "ci95_high", "risk_group", "verdict", "points", "patient_id"]
RESULTS_ATTRIBUTE = "IMNRisk.Results"
RESULT_KEYS = ("verdict", "display", "radscore", "probability", "ci95", "risk_group", "risk_group_computed",
               "risk_thresholds", "points", "phase", "n_phases", "segment", "input", "warnings", "stale",
               "source", "time", "model_sha256", "clinical", "clinical_probability", "radiomics_probability",
               "features", "ci_method", "domain", "image", "ignored_clinical", "tumour", "synthetic", "banner",
               "patient_id")


class Results:
    """The shown result, whether Predict may run, and the scene's table of every prediction."""

    def __init__(self, owner):
        self.owner = owner
        self.scene = owner.scene
        self.result: Optional[Dict[str, Any]] = None
        self._table = self._find_or_make_table()

    # ------------------------------------------------------------------ predict
    def gate(self) -> Dict[str, Any]:
        """Whether Predict can run and, if not, the first thing the user must do."""
        owner, form, tumour = self.owner, self.owner.clinical, self.owner.tumour
        reason = None
        if form.model is None:
            reason = form.model_error or "Choose a model file."
        elif form.version_problems and not form.allow_mismatch:
            reason = "The model was trained with other software: " + "; ".join(form.version_problems)
        elif form.features_csv is None:
            if not form.pyradiomics()["ok"]:
                reason = form.pyradiomics()["message"]
            elif owner.displayed_node() is None:
                reason = "Choose the DCE series (or a features CSV)."
            elif not (tumour.segmentation_id and tumour.segment_id):
                reason = "Choose or create a segmentation with the tumour segment."
            elif tumour.size["warning"] and not tumour.size["pending"]:
                reason = tumour.size["warning"]
        if reason is None and owner.require_patient_id and not form.patient_id:
            reason = "Enter the patient identifier."
        if reason is None:
            unset = [f["title"] for f in form.fields() if f["status"] != "valid"]
            if unset:
                reason = "Enter the clinical factors: " + ", ".join(unset)
        return {"enabled": reason is None, "reason": reason or "Score this patient"}

    def score(self) -> Dict[str, Any]:
        """The scoring core's Prediction for the shown inputs (image or features CSV), plus what the
        results table records of where it came from."""
        from IMNRiskLib.scoring import Case, Options, score_case
        from IMNRiskLib.scoring.core import declare_phase
        owner, form = self.owner, self.owner.clinical
        clinical = {f["name"]: f["value"] for f in form.fields()}
        options = Options(allow_version_mismatch=form.allow_mismatch, clinical_source="clinical factors")
        if form.features_csv is not None:
            case = Case.from_values(form.features_csv["values"], source=form.features_csv["path"])
            source, phase, segment, input_name = "features CSV", None, None, form.features_csv["path"]
        else:
            shown = owner.displayed_node()
            case = owner.logic.case(shown, owner.tumour.node(), owner.tumour.segment_id, form.model)
            case.loaded.phase, case.loaded.n_phases = owner.phase(), max(owner.phase_count(), 1)
            case.declared_phase = declare_phase(case.loaded, form.image_is_phase, shown.GetName())
            source, phase, segment = "image", owner.phase(), owner.tumour.segment_name()
            input_name = owner.inputs.input_name(shown.GetName())
        result = score_case(form.model, case, clinical, options).to_dict()
        result.update({"phase": phase, "segment": segment, "input": input_name, "source": source, "stale": False,
                       "patient_id": form.patient_id,
                       "clinical": clinical, "time": _dt.datetime.now().isoformat(timespec="seconds")})
        return result

    def predict(self) -> Optional[Dict[str, Any]]:
        """Score, keep the result and add its row; None with the reason when it cannot be done."""
        if self.owner.tumour.size["pending"]:
            self.owner.tumour.update_size()
        gate = self.gate()
        if not gate["enabled"]:
            raise InputError(gate["reason"])
        self.result = self.score()
        self._append_row(self.result)
        return self.result

    def mark_stale(self) -> None:
        if self.result is not None:
            self.result["stale"] = True

    def shown(self) -> Optional[Dict[str, Any]]:
        """The result as a face shows it (None: no result)."""
        return None if self.result is None else {k: self.result.get(k) for k in RESULT_KEYS}

    # ------------------------------------------------------------------ results table
    def _find_or_make_table(self):
        table = next((t for t in nodes_of_class(self.scene, "vtkMRMLTableNode") if t.GetAttribute(RESULTS_ATTRIBUTE)),
                     None)
        if table is None:
            with self.owner.quiet():
                table = self.scene.AddNewNodeByClass("vtkMRMLTableNode", RESULTS_TABLE_NAME)
            table.SetAttribute(RESULTS_ATTRIBUTE, "1")
        for name in RESULT_COLUMNS:  # string columns (a table reset by a scene close has none)
            if table.GetTable().GetColumnByName(name) is None:
                table.AddColumn().SetName(name)
        return table

    @property
    def table(self):
        """The results table node of the scene (made again after the scene was closed or it was deleted)."""
        closing = self.scene.IsClosing() or self.scene.IsBatchProcessing()
        if not closing and (self._table is None or not self.scene.IsNodePresent(self._table)
                            or self._table.GetTable().GetNumberOfColumns() < len(RESULT_COLUMNS)):
            self._table = self._find_or_make_table()
        return self._table

    def _append_row(self, result: Dict[str, Any]) -> None:
        values = {"time": result["time"], "model_sha256": result["model_sha256"], "input": result["input"],
                  "phase": "" if result["phase"] is None else str(result["phase"]), "segment": result["segment"] or "",
                  "inputs": json.dumps(result["clinical"], sort_keys=True), "radscore": f"{result['radscore']:.6f}",
                  "risk": f"{result['probability']:.6f}", "ci95_low": f"{result['ci95'][0]:.6f}",
                  "ci95_high": f"{result['ci95'][1]:.6f}", "risk_group": result["risk_group"] or "withheld",
                  "verdict": result["verdict"]["state"],
                  "points": json.dumps({k: round(v, 3) for k, v in result["points"].items()}),
                  "patient_id": result.get("patient_id") or ""}
        node = self.table
        table = node.GetTable()
        row = table.InsertNextBlankRow()
        for name in RESULT_COLUMNS:
            table.GetColumnByName(name).SetValue(row, values[name])
        table.Modified()
        node.Modified()

    def rows(self) -> List[Dict[str, str]]:
        table = self.table.GetTable()
        names = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
        return [{n: table.GetValueByName(r, n).ToString() for n in names} for r in range(table.GetNumberOfRows())]

    # ------------------------------------------------------------------ nomogram
    def nomogram_png(self, path: str, width_px: int = 420) -> Optional[str]:
        """The nomogram drawn for the module panel (width_px wide), this patient marked; the
        matplotlib figure is closed afterwards (none accumulate in a long session)."""
        model = self.owner.clinical.model
        if model is None or self.result is None:
            return None
        from IMNRiskLib.outputs import figures
        import matplotlib.pyplot as plt
        fig = figures.nomogram(model.nomogram, model.labels, patient=self.result["points"],
                               notes=(self.result.get("domain") or {}).get("warnings"))
        try:
            dpi = 100
            w, h = fig.get_size_inches()
            fig.set_size_inches(width_px / dpi, h * width_px / dpi / w)
            for text in fig.findobj(match=lambda o: hasattr(o, "set_fontsize") and hasattr(o, "get_fontsize")):
                text.set_fontsize(max(5.0, text.get_fontsize() * 0.8))
            _fit_labels(fig)
            fig.savefig(path, dpi=dpi)
        finally:
            plt.close(fig)
        return path


def _fit_labels(fig) -> None:
    """Widen the axes' left limit until the axis titles fit a narrow figure (none cut off)."""
    fig.subplots_adjust(left=0.01, right=0.99)
    for ax in fig.axes:
        for _ in range(12):
            fig.canvas.draw()
            renderer = fig.canvas.get_renderer()
            left = min((t.get_window_extent(renderer).x0 for t in ax.texts), default=0.0)
            if left >= 2:
                break
            lo, hi = ax.get_xlim()
            ax.set_xlim(lo - 0.08 * (hi - lo), hi)
