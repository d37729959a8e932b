"""Truth recovery: does the pipeline find what a phantom was built from? Repeated training sets
are drawn from a phantom cohort (whose truth.json knows the generating factors and each patient's
imaging phenotype); each is trained as a user would, and scored on the phantom's other patients,
who played no part in it (fresh patients).

Per training set: which clinical factors were kept (true: tumour location, PR, ALN; every other
one is non-causal), the Spearman correlation of the Rad-Score with the true phenotype on the fresh
patients, and the bias of nested (and leaky) CV: CV AUC on the training set minus the AUC on fresh
patients. Used by Testing/test_truth_recovery.py (4 sets) and bench/bench_truth.py (16+).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from scipy.stats import spearmanr

from IMNRiskLib.stats import evaluation
from IMNRiskLib.modelling.models import MODELS, TrainingOptions, fit_models
from IMNRiskLib.resampling.validation import Data, repeated_cv

TRUE_FACTORS = ("tumor_location", "pr", "aln_metastases")  # synth.TRUTH's clinical terms


def load_phantom(folder: Union[str, Path], features_csv: Optional[Union[str, Path]] = None):
    """A phantom's training data (cohort.csv + features.csv) and each patient's true phenotype."""
    from IMNRiskLib.app.training import load_training_data  # start-up time: loaded when this step runs
    folder = Path(folder)
    data = load_training_data(folder / "cohort.csv", features_csv or folder / "features.csv")
    latent = json.loads((folder / "truth.json").read_text(encoding="utf-8"))["patients_latent"]
    phenotype = np.array([latent[i]["phenotype"] for i in data.features.index], float)
    return data, phenotype


def draw_training_set(y: np.ndarray, n_train: int, rng: np.random.Generator) -> np.ndarray:
    """n_train patients without replacement, stratified on the outcome (the cohort's event rate)."""
    events, others = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    k = int(round(n_train * len(events) / len(y)))
    return np.sort(np.concatenate([rng.choice(events, k, replace=False), rng.choice(others, n_train - k, replace=False)]))


def one_set(data: Data, phenotype: np.ndarray, train: np.ndarray, seed: int, cv_folds: int, cv_repeats: int,
            jobs: int = 1) -> Dict[str, object]:
    """Train on `train`, score the other patients; CV (nested and leaky) on the training set."""
    start = time.perf_counter()
    fresh = np.setdiff1d(np.arange(len(data.y)), train)
    tr, te = data.take(train), data.take(fresh)
    models = fit_models(tr.features, tr.clinical, tr.y, tr.schema, tr.options)
    pred = models.predict(te.features, te.clinical)
    out: Dict[str, object] = {
        "factors": list(models.factors), "features": list(models.radiomics.named_steps["radscore"].features_),
        "radscore_spearman": float(spearmanr(pred["radscore"], phenotype[fresh])[0]),
        "n_train": int(len(train)), "events_train": int(tr.y.sum()), "n_fresh": int(len(fresh)),
        "events_fresh": int(te.y.sum()), "models": {}}
    for m in MODELS:
        d = evaluation.auc_delong(te.y, pred[m].to_numpy())
        out["models"][m] = {"fresh_auc": float(d.auc), "fresh_auc_variance": float(d.variance)}
    for protocol, key in (("nested", "nested"), ("leaky", "leaky")):
        cv = repeated_cv(tr, cv_folds, cv_repeats, seed, protocol, jobs, show_bar=False)
        for m in MODELS:
            entry = out["models"][m]
            entry[f"{key}_auc"] = cv["models"][m]["auc_mean"]
            entry[f"{key}_bias"] = cv["models"][m]["auc_mean"] - entry["fresh_auc"]
    out["seconds"] = time.perf_counter() - start
    return out


def summarise(sets: List[Dict[str, object]], factors: Sequence[str]) -> Dict[str, object]:
    """Over the training sets: how often each factor was kept, the Rad-Score's correlation with the
    true phenotype, and each model's CV bias (mean, SD, and its sampling SD for one set from the
    DeLong variance of the fresh AUC, the CV AUC's taken as the same at the training set's size)."""
    k = len(sets)
    kept = {f: sum(f in s["factors"] for s in sets) / k for f in factors}
    non_causal = [f for f in factors if f not in TRUE_FACTORS]
    rho = [s["radscore_spearman"] for s in sets]
    out: Dict[str, object] = {
        "sets": k, "kept": kept, "true_factors": list(TRUE_FACTORS),
        "any_non_causal_kept": sum(any(f in s["factors"] for f in non_causal) for s in sets) / k,
        "radscore_spearman": {"mean": float(np.mean(rho)), "min": float(np.min(rho)), "max": float(np.max(rho))},
        "models": {}}
    for m in MODELS:
        entry: Dict[str, object] = {}
        for key in ("fresh_auc", "nested_auc", "leaky_auc", "nested_bias", "leaky_bias"):
            v = np.array([s["models"][m][key] for s in sets], float)
            entry[key] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if k > 1 else None}
        var_one = [s["models"][m]["fresh_auc_variance"] * (1 + s["n_fresh"] / s["n_train"]) for s in sets]
        entry["bias_sampling_sd_one_set"] = float(np.sqrt(np.mean(var_one)))
        out["models"][m] = entry
    return out


def recovery(data: Data, phenotype: np.ndarray, n_sets: int = 4, n_train: int = 124, seed: int = 0,
             cv_folds: int = 5, cv_repeats: int = 1, options: Optional[TrainingOptions] = None, jobs: int = 1,
             say=None) -> Dict[str, object]:
    """Train on n_sets training sets of n_train patients drawn from the phantom; the per-set
    results and their summary."""
    if options is not None:
        data = Data(data.features, data.clinical, data.y, data.schema, options)
    sets = []
    for k in range(n_sets):
        train = draw_training_set(data.y, n_train, np.random.default_rng([seed, k]))
        sets.append(one_set(data, phenotype, train, seed + k, cv_folds, cv_repeats, jobs))
        if say:
            s = sets[-1]
            say(f"set {k + 1}/{n_sets}: factors {', '.join(s['factors'])}; Rad-Score rho {s['radscore_spearman']:.2f}; "
                f"combined nested bias {s['models']['combined']['nested_bias']:+.3f}, leaky "
                f"{s['models']['combined']['leaky_bias']:+.3f} ({s['seconds']:.0f} s)")
    return {"settings": {"n_sets": n_sets, "n_train": n_train, "n_total": int(len(data.y)), "seed": seed,
                         "cv_folds": cv_folds, "cv_repeats": cv_repeats, "protocol": data.options.protocol},
            "summary": summarise(sets, data.schema.names), "sets": sets}
