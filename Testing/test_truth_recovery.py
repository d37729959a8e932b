"""Truth recovery on the phantom (issue #12.11): 4 training sets of 124 patients drawn from the
shared 300-patient phantom, each trained as a user would and scored on the 176 others (fresh
patients). bench/bench_truth.py runs the same on more sets; its figures are in the README."""

from __future__ import annotations

import numpy as np
import pytest

from IMNRiskLib.app import recovery

N_SETS, N_TRAIN, CV_REPEATS = 4, 124, 2


@pytest.fixture(scope="module")
def result(phantom):
    data, phenotype = recovery.load_phantom(phantom)
    return recovery.recovery(data, phenotype, n_sets=N_SETS, n_train=N_TRAIN, seed=0, cv_repeats=CV_REPEATS)


def test_training_sets_are_stratified_and_leave_fresh_patients(result):
    n_total = result["settings"]["n_total"]
    for s in result["sets"]:
        events = s["events_train"] + s["events_fresh"]
        assert s["n_train"] == N_TRAIN and s["n_fresh"] == n_total - N_TRAIN
        assert s["events_train"] == round(N_TRAIN * events / n_total)


def test_aln_is_recovered_in_every_set_and_no_more_than_one_set_keeps_a_non_causal_factor(result):
    kept = result["summary"]["kept"]
    assert kept["aln_metastases"] == 1.0, kept
    assert result["summary"]["any_non_causal_kept"] <= 1 / N_SETS, kept


def test_radscore_tracks_the_true_phenotype_on_fresh_patients(result):
    rho = result["summary"]["radscore_spearman"]
    assert rho["mean"] > 0.3 and rho["min"] > 0, rho


def test_nested_cv_is_unbiased_against_fresh_patients(result):
    """|mean(nested CV AUC - fresh AUC)| within 3 sampling SDs of a mean of N_SETS sets: the SD of
    one set's bias is the larger of the spread seen across the sets and the DeLong SD of the fresh
    AUC (the CV AUC's variance taken as the same at the training set's size)."""
    for m in ("radiomics", "combined"):
        e = result["summary"]["models"][m]
        sd_one = max(e["nested_bias"]["sd"], e["bias_sampling_sd_one_set"])
        bound = 3 * sd_one / np.sqrt(N_SETS)
        assert abs(e["nested_bias"]["mean"]) < bound, (m, e["nested_bias"], bound)


def test_the_leaky_protocol_is_more_optimistic_than_the_nested_one(result):
    """Same CV splits, so the paired difference is the leak: selection that saw the test folds."""
    diff = [s["models"]["radiomics"]["leaky_bias"] - s["models"]["radiomics"]["nested_bias"] for s in result["sets"]]
    assert np.mean(diff) > 0, diff
