"""`imnrisk train --dask`: CV folds and bootstrap fits on a Dask distributed cluster give the
results of a local run with the same seed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli
from IMNRiskLib.app import training
from IMNRiskLib.resampling import validation

distributed = pytest.importorskip("dask.distributed", reason="dask[distributed] is not installed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp://",
                                    host="127.0.0.1", dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def data(phantom):
    d = training.load_training_data(phantom / "cohort.csv", phantom / "features.csv")
    keep = np.sort(np.random.default_rng(3).choice(len(d.y), 150, replace=False))  # fewer patients: quicker fits
    return d.take(keep)


def test_cv_and_bootstrap_on_dask_equal_the_local_run(data, cluster):
    with distributed.Client(cluster) as client:
        for protocol in ("nested", "leaky"):
            local = validation.repeated_cv(data, 5, 1, 0, protocol, jobs=1, show_bar=False)
            remote = validation.repeated_cv(data, 5, 1, 0, protocol, show_bar=False, dask=client)
            assert remote == local
        apparent = {m: {"auc": 0.8, "slope": 1.0, "intercept": 0.0, "brier": 0.1} for m in validation.MODELS}
        local = validation.bootstrap_validation(data, apparent, b=4, seed=0, jobs=1, show_bar=False)
        with distributed.get_task_stream(client) as stream:
            remote = validation.bootstrap_validation(data, apparent, b=4, seed=0, show_bar=False, dask=client)
        assert remote == local
        assert len(stream.data) > 0  # the fits ran on the cluster


def test_cli_train_dask_equals_local(phantom, cluster, tmp_path):
    args = ["train", phantom / "cohort.csv", "--features", phantom / "features.csv", "--cv-repeats", "1",
            "--bootstrap", "2", "--quiet"]
    local = run_cli(*args, "--out", tmp_path / "local", "--jobs", "1")
    assert local.returncode == 0, local.stderr
    remote = run_cli(*args, "--out", tmp_path / "dask", "--dask", cluster.scheduler_address)
    assert remote.returncode == 0, remote.stderr
    read = lambda d: json.loads((tmp_path / d / "metrics.json").read_text(encoding="utf-8"))  # noqa: E731
    assert read("dask") == read("local")


def test_cli_train_dask_unreachable_scheduler_is_one_line(phantom, tmp_path):
    result = run_cli("train", phantom / "cohort.csv", "--features", phantom / "features.csv", "--out", tmp_path / "o",
                     "--cv-repeats", "1", "--bootstrap", "0", "--quiet", "--dask", "tcp://127.0.0.1:9")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "--dask" in result.stderr
