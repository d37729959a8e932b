"""The demo draws the paper protocol's report in a thread while IMNRisk's protocol trains: a run that
fails (or is stopped) meanwhile leaves neither model folder nor a staging folder behind, and waits
for the drawing to end before removing its folder."""

from __future__ import annotations

import argparse
import threading
import time

import pytest

from IMNRiskLib.app import demo, training
from IMNRiskLib.modelling import protocols
from IMNRiskLib.outputs import report


def test_a_failing_second_protocol_leaves_nothing_half_written(tmp_path, monkeypatch):
    drawing = {"finished": False, "thread": None}

    def fake_train(cohort, features, stage, options=None, **kwargs):
        if options.corr_method == "spearman":  # the paper's profile trains first and succeeds
            (stage / "model.json").write_text("{}", encoding="utf-8")
            return {"protocol": "paper"}
        raise KeyboardInterrupt  # IMNRisk's protocol is stopped while the paper's report draws

    def slow_render(stage, *_):
        drawing["thread"] = threading.current_thread().name
        time.sleep(0.5)
        (stage / "report.html").write_text("<html></html>", encoding="utf-8")
        drawing["finished"] = True
        return stage / "report.html"

    monkeypatch.setattr(training, "train", fake_train)
    monkeypatch.setattr(report, "render", slow_render)
    monkeypatch.setattr(protocols, "comparison_summary", lambda metrics: metrics)
    monkeypatch.setattr(demo, "print_training_summary", lambda metrics, target: None)
    args = argparse.Namespace(protocol="both", seed=0, cv_repeats=1, bootstrap=0, jobs=1, quiet=True)
    with pytest.raises(KeyboardInterrupt):
        demo._demo_train(tmp_path, tmp_path / "features.csv", args)
    assert drawing["thread"] == "imnrisk-report"  # drawn beside the training, not before it
    assert drawing["finished"]  # the clean-up waited for the drawing before deleting its folder
    for name in ("model-paper", "model"):
        assert not list((tmp_path / name).iterdir()), name  # no model, no report, no staging folder
