"""Step 1 of the screenshots: run the real scoring controller headless (slicer-core) on the sample
case with the frozen test model, and a real short training run, and save what the panels would show.

    .venv/bin/python docs/screenshots/panel_state.py OUT_DIR
writes OUT_DIR/state.json, OUT_DIR/nomogram.png and OUT_DIR/training.json for render_panels.py.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "IMNRisk"), str(ROOT)]


def scoring_state(out: Path) -> None:
    import slicer
    from IMNRiskSlicer import selftest
    from IMNRiskSlicer.controller import ScoringController
    scene = slicer.vtkMRMLScene()
    controller = ScoringController(scene)
    selftest.load_demo_case(scene)
    selftest.score_demo_case(controller)
    controller.nomogram_png(str(out / "nomogram.png"), width_px=340)
    (out / "state.json").write_text(json.dumps(controller.state(), indent=1), encoding="utf-8")


def training_state(out: Path) -> None:
    from IMNRiskSlicer.logic import training_commands
    from IMNRiskSlicer.runner import TrainingRun
    phantom = max((ROOT / ".cache").glob("test-phantom-300-1*/"), default=ROOT / ".cache" / "test-phantom-300-1")
    with tempfile.TemporaryDirectory() as tmp:
        commands = training_commands(str(phantom / "cohort.csv"), tmp, features_csv=str(phantom / "features.csv"),
                                     cv_repeats=2, bootstrap=10, jobs=2, force=True)
        run = TrainingRun(commands)
        run.start()
        status = run.wait(timeout=900)
        metrics = json.loads((Path(tmp) / "metrics.json").read_text(encoding="utf-8"))
    aucs = ", ".join(f"{m} {metrics['models'][m]['apparent']['auc']:.3f}" for m in ("clinical", "radiomics", "combined"))
    (out / "training.json").write_text(json.dumps({"lines": status["lines"], "result": f"Done. Apparent AUC: {aucs}",
                                                   "cohort": "phantom/cohort.csv", "output": "phantom-model/"},
                                                  indent=1), encoding="utf-8")


if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    scoring_state(target)
    if "--scoring-only" not in sys.argv:
        training_state(target)
