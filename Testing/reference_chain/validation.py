"""Validation of the whole pipeline without leakage: repeated stratified K-fold CV and Harrell's
bootstrap optimism correction (rms `validate`), every selection step refitted on each training
sample. The paper's protocol (features and factors selected once on every patient, then CV of the
coefficients only) is available too, labelled "leaky", so the inflation can be seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from IMNRiskLib.stats import evaluation
from .models import MODELS, TrainingOptions, fit_models, refit_frozen
from IMNRiskLib.inputs.schema import ClinicalSchema


def performance(y: np.ndarray, p: np.ndarray) -> Dict[str, Optional[float]]:
    """AUC, accuracy at 0.5, calibration intercept/slope and Brier of one set of predictions."""
    y, p = np.asarray(y, int), np.clip(np.asarray(p, float), 1e-12, 1 - 1e-12)
    out: Dict[str, Optional[float]] = {"auc": None, "accuracy": float(np.mean((p >= 0.5) == y)),
                                       "brier": float(np.mean((p - y) ** 2)), "slope": None, "intercept": None}
    if 0 < y.sum() < len(y):
        out["auc"] = evaluation.auc_delong(y, p).auc
        cal = evaluation.calibration(y, p)
        out["slope"], out["intercept"] = cal["slope"], cal["intercept"]
    return out


@dataclass
class Data:
    """What every fit needs: features, parsed clinical values, outcome, schema and options."""

    features: pd.DataFrame
    clinical: pd.DataFrame
    y: np.ndarray
    schema: ClinicalSchema
    options: TrainingOptions

    def take(self, idx: np.ndarray) -> "Data":
        return Data(self.features.iloc[idx], self.clinical.iloc[idx], self.y[idx], self.schema, self.options)


def _fold_task(args) -> Tuple[int, int, np.ndarray, pd.DataFrame, List[str]]:
    """Fit on the training part of one fold and predict its test part (worker entry point)."""
    number, data, repeat, train, test, frozen = args
    tr = data.take(train)
    if frozen is None:
        models = fit_models(tr.features, tr.clinical, tr.y, tr.schema, tr.options)
    else:  # the paper's protocol: the selection made on all patients, coefficients refitted
        factors, pipeline = frozen
        models = fit_models(tr.features, tr.clinical, tr.y, tr.schema, tr.options, factors=factors,
                            radiomics=refit_frozen(pipeline, tr.features, tr.y))
    te = data.take(test)
    used = models.radiomics.named_steps["radscore"].features_
    return number, repeat, test, models.predict(te.features, te.clinical), used


def _parallel(tasks: list, fn: Callable, jobs: int, desc: str, show_bar: bool):
    """Run fn over tasks on `jobs` processes (joblib), with a progress bar; yields results."""
    from joblib import Parallel, delayed
    from IMNRiskLib.core.progress import progress_bar
    bar = progress_bar(len(tasks), desc, "fit", enabled=show_bar)
    try:
        if jobs <= 1:
            for t in tasks:
                yield fn(t)
                bar.update(1)
        else:
            from IMNRiskLib.core.workers import loky_backend  # no worker outlives a killed run
            for result in Parallel(n_jobs=jobs, backend=loky_backend(jobs), return_as="generator_unordered",
                                   batch_size=1)(delayed(fn)(t) for t in tasks):
                yield result
                bar.update(1)
    finally:
        bar.close()


def repeated_cv(data: Data, folds: int = 5, repeats: int = 100, seed: int = 0, protocol: str = "nested",
                jobs: int = 1, show_bar: bool = True) -> Dict[str, object]:
    """Repeated stratified K-fold CV (a new split per repeat). Per model: AUC and accuracy
    (threshold 0.5) mean and SD over all folds, calibration slope of each repeat's pooled
    out-of-fold predictions (mean, SD, min, max); and how often each feature was selected."""
    frozen = None
    if protocol == "leaky":
        whole = fit_models(data.features, data.clinical, data.y, data.schema, data.options)
        frozen = (whole.factors, whole.radiomics)
    tasks = []
    for r in range(repeats):
        split = StratifiedKFold(folds, shuffle=True, random_state=seed + r).split(data.features, data.y)
        tasks += [(len(tasks) + k, data, r, train, test, frozen) for k, (train, test) in enumerate(split)]
    oof = {r: pd.DataFrame(index=data.features.index, columns=list(MODELS), dtype=float) for r in range(repeats)}
    fold_perf: Dict[str, List[Dict]] = {m: [] for m in MODELS}
    counts: Dict[str, int] = {}
    # results arrive in any order; sort them so that sums (and so the bytes of model.json) are reproducible
    results = sorted(_parallel(tasks, _fold_task, jobs, f"cv ({protocol})", show_bar), key=lambda r: r[0])
    for _, repeat, test, pred, used in results:
        for m in MODELS:
            oof[repeat].iloc[test, oof[repeat].columns.get_loc(m)] = pred[m].to_numpy()
            fold_perf[m].append(performance(data.y[test], pred[m].to_numpy()))
        for f in used:
            counts[f] = counts.get(f, 0) + 1
    out: Dict[str, object] = {"folds": folds, "repeats": repeats, "protocol": protocol, "models": {}}
    for m in MODELS:
        aucs = [f["auc"] for f in fold_perf[m] if f["auc"] is not None]
        accs = [f["accuracy"] for f in fold_perf[m]]
        slopes = [performance(data.y, oof[r][m].to_numpy())["slope"] for r in range(repeats)]
        slopes = [s for s in slopes if s is not None]
        out["models"][m] = {
            "folds": folds, "repeats": repeats, "auc_mean": _mean(aucs), "auc_sd": _sd(aucs),
            "accuracy_mean": _mean(accs), "accuracy_sd": _sd(accs), "slope_mean": _mean(slopes),
            "slope_sd": _sd(slopes), "slope_min": min(slopes) if slopes else None,
            "slope_max": max(slopes) if slopes else None,
            "auc_pooled_mean": _mean([performance(data.y, oof[r][m].to_numpy())["auc"] for r in range(repeats)])}
    out["cv_frequency"] = {f: c / len(tasks) for f, c in sorted(counts.items(), key=lambda kv: -kv[1])}
    return out


def _mean(values: Sequence[float]) -> Optional[float]:
    return float(np.mean(values)) if len(values) else None


def _sd(values: Sequence[float]) -> Optional[float]:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


# --------------------------------------------------------------------------- bootstrap

OPTIMISM_INDICES = ("auc", "slope", "intercept", "brier")


def optimism(y: np.ndarray, replicates) -> Dict[str, object]:
    """Harrell's bootstrap optimism (rms `validate`) from bootstrap replicates, each a tuple
    (resample indices, predictions of the model fitted on the resample for the resample, the
    same model's predictions for the original patients; None when the fit failed).

    Optimism of an index = mean over replicates of (apparent on the resample - test on the
    original sample); failed fits and one-class resamples are skipped and counted.
    """
    per_index: Dict[str, List[float]] = {k: [] for k in OPTIMISM_INDICES}
    used = skipped = 0
    for idx, p_boot, p_orig in replicates:
        if p_boot is None or y[idx].min() == y[idx].max():
            skipped += 1
            continue
        apparent, test = performance(y[idx], p_boot), performance(y, p_orig)
        # an index that cannot be computed on this replicate (e.g. a calibration slope under
        # separation) is left out for that index only: dropping the whole replicate would drop
        # the most overfitted fits and understate the optimism
        for k in OPTIMISM_INDICES:
            if apparent[k] is not None and test[k] is not None:
                per_index[k].append(apparent[k] - test[k])
        used += 1
    return {"b": used, "skipped": skipped, "b_per_index": {k: len(v) for k, v in per_index.items()},
            "optimism": {k: _mean(v) for k, v in per_index.items()}}


def bootstrap_samples(n: int, b: int, seed: int) -> List[np.ndarray]:
    """b resamples of n patients with replacement (seeded)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n, n) for _ in range(b)]


def _boot_task(args):
    number, data, idx = args
    boot = data.take(idx)
    try:
        models = fit_models(boot.features, boot.clinical, boot.y, boot.schema, boot.options)
    except (ValueError, np.linalg.LinAlgError):
        return number, idx, None, None
    return number, idx, models.predict(boot.features, boot.clinical), models.predict(data.features, data.clinical)


def bootstrap_validation(data: Data, apparent: Dict[str, Dict[str, float]], b: int = 1000, seed: int = 0,
                         jobs: int = 1, show_bar: bool = True) -> Dict[str, Dict[str, object]]:
    """Optimism-corrected AUC, calibration slope/intercept and Brier of the three models, the
    whole pipeline refitted on each of b bootstrap resamples."""
    samples = bootstrap_samples(len(data.y), b, seed)
    results = sorted(_parallel([(k, data, s) for k, s in enumerate(samples)], _boot_task, jobs, "bootstrap",
                               show_bar), key=lambda r: r[0])
    out = {}
    for m in MODELS:
        replicates = [(idx, None if pb is None else pb[m].to_numpy(), None if po is None else po[m].to_numpy())
                      for _, idx, pb, po in results]
        res = optimism(data.y, replicates)
        corrected = {f"{k}_corrected": (None if apparent[m].get(k) is None or res["optimism"][k] is None
                                         else apparent[m][k] - res["optimism"][k]) for k in OPTIMISM_INDICES}
        out[m] = {"b": res["b"], "skipped": res["skipped"], "b_per_index": res["b_per_index"],
                  **{f"optimism_{k}": v for k, v in res["optimism"].items()}, **corrected}
    return out
