"""Validation of the whole pipeline without leakage: repeated stratified K-fold CV and Harrell's
bootstrap optimism correction (rms `validate`), every selection step refitted on each training
sample. The paper's protocol (features and factors selected once on every patient, then CV of the
coefficients only) is available too, labelled "leaky", so the inflation can be seen.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from IMNRiskLib.stats import evaluation
from IMNRiskLib.modelling.clinical import EncodedClinical, encode_clinical
from IMNRiskLib.modelling.models import MODELS, FittedModels, TrainingOptions, fit_models, refit_frozen
from IMNRiskLib.inputs.schema import ClinicalSchema
from IMNRiskLib.scoring.uncertainty import compact_replicate
from IMNRiskLib.core.workers import loky_backend
from IMNRiskLib.core.progress import progress_bar, stop_if_asked
from IMNRiskLib.core.errors import InputError


def performance(y: np.ndarray, p: np.ndarray) -> Dict[str, Optional[float]]:
    """AUC, accuracy at 0.5, calibration intercept/slope and Brier of one set of predictions."""
    y, p = np.asarray(y, int), np.clip(np.asarray(p, float), 1e-12, 1 - 1e-12)
    out: Dict[str, Optional[float]] = {"auc": None, "accuracy": float(np.mean((p >= 0.5) == y)),
                                       "brier": float(np.mean((p - y) ** 2)), "slope": None, "intercept": None}
    if 0 < y.sum() < len(y):
        out["auc"] = evaluation.auc(y, p)
        out["intercept"], out["slope"] = calibration_line(y, p)
    return out


def calibration_line(y: np.ndarray, p: np.ndarray) -> Tuple[Optional[float], Optional[float]]:
    """Calibration intercept and slope of `evaluation.calibration` (probabilities strictly inside
    (0, 1), both classes present). The validation needs ~10^4 of them: a plain Newton fit gives
    the same MLE when it converges to a moderate estimate; anything else (separation, huge
    estimates) is left to statsmodels as before."""
    from IMNRiskLib.stats.logistic import fit_ml_arrays  # start-up time: loaded when this step runs
    lp = np.log(p / (1.0 - p))
    if len(y) < 3 or y.min() == y.max():
        return None, None
    design = np.column_stack([np.ones_like(lp), lp])
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        beta, _, _, _, separation = fit_ml_arrays(y.astype(float), design)
    if not separation and np.isfinite(beta).all() and np.abs(beta).max() < 40:
        return float(beta[0]), float(beta[1])
    if completely_separates(y, lp):  # no MLE, and statsmodels finds none (~80 ms to say so)
        return None, None
    fit = evaluation.glm_logistic(y, design)  # what evaluation.calibration fits for these two
    return (None, None) if fit is None else (float(fit.params[0]), float(fit.params[1]))


def completely_separates(y: np.ndarray, score: np.ndarray) -> bool:
    """Whether a threshold on score puts every event on one side and every non-event on the other
    (no tie between them): the logistic MLE on score does not exist (its estimate runs off)."""
    events, others = score[y == 1], score[y == 0]
    return bool(events.min() > others.max() or events.max() < others.min())


@dataclass
class Data:
    """What every fit needs: features, parsed clinical values, outcome, schema and options."""

    features: pd.DataFrame
    clinical: pd.DataFrame
    y: np.ndarray
    schema: ClinicalSchema
    options: TrainingOptions
    encoded: Optional[EncodedClinical] = None  # the clinical table encoded once (`encoding`), taken with the rows

    def take(self, idx: np.ndarray) -> "Data":
        return Data(self.features.iloc[idx], self.clinical.iloc[idx], self.y[idx], self.schema, self.options,
                    self.encoding().take(idx))

    def encoding(self) -> EncodedClinical:
        """The clinical table's encoding, made on first use: each resample takes its rows."""
        if self.encoded is None:
            self.encoded = encode_clinical(self.clinical, self.schema)
        return self.encoded


def _fold_task(args) -> Tuple[int, int, np.ndarray, pd.DataFrame, List[str], Dict[str, Dict]]:
    """Fit on the training part of one fold, predict its test part and measure those predictions
    (worker entry point: the ~1500 `performance` calls run in parallel, not after the fits)."""
    number, data, repeat, train, test, frozen = args
    tr = data.take(train)
    if frozen is None:
        models = fit_models(tr.features, tr.clinical, tr.y, tr.schema, tr.options, encoded=tr.encoded,
                            full_record=False)
    else:  # the paper's protocol: the selection made on all patients, coefficients refitted
        factors, pipeline = frozen
        models = fit_models(tr.features, tr.clinical, tr.y, tr.schema, tr.options, factors=factors,
                            radiomics=refit_frozen(pipeline, tr.features, tr.y), encoded=tr.encoded)
    te = data.take(test)
    used = models.radiomics.named_steps["radscore"].features_
    pred = models.predict(te.features, te.clinical, te.encoded)
    return number, repeat, test, pred, used, {m: performance(data.y[test], pred[m].to_numpy()) for m in MODELS}


# tasks go in chunks: the Data is pickled once per chunk, not once per fit; chunks small enough that
# no worker idles long while the other finishes the last one
CHUNKS_PER_WORKER = 25


def _run_chunk(fn: Callable, chunk: list) -> list:
    """Worker entry point: fn over a chunk of tasks (they share one Data, pickled once)."""
    return [fn(t) for t in chunk]


def _chunks(tasks: list, workers: int) -> List[list]:
    size = max(1, -(-len(tasks) // (workers * CHUNKS_PER_WORKER)))
    return [tasks[i:i + size] for i in range(0, len(tasks), size)]


_warming: List = []  # the thread starting the local workers (start_workers), joined before they are used


def start_workers(jobs: int) -> None:
    """Start the `jobs` local worker processes and their imports in the background (~2 s), so that
    they are ready when the validation begins, not after it began; the data loading and the
    final fit run meanwhile."""
    if jobs <= 1:
        return

    def warm() -> None:
        try:
            from joblib import Parallel, delayed  # start-up time: joblib loads only when used
            from IMNRiskLib.stats import kernels  # start-up time: loaded when this step runs
            kernels.warm_up()  # compiled here once if the cache is cold, so the workers only load it
            Parallel(n_jobs=jobs, backend=loky_backend(jobs), batch_size=1)(delayed(_ready)() for _ in range(jobs))
        except Exception:  # noqa: BLE001 - a failed warm-up only costs the time it would have saved
            pass
    thread = threading.Thread(target=warm, name="imnrisk-start-workers", daemon=True)
    thread.start()
    _warming.append(thread)


def _ready() -> bool:
    """A worker's first task: unpickling it imported this module and what a fit needs; the
    compiled kernels are loaded from their cache."""
    from IMNRiskLib.stats import kernels  # start-up time: loaded when this step runs
    kernels.warm_up()
    return True


def _parallel(tasks: list, fn: Callable, jobs: int, desc: str, show_bar: bool, dask: Optional[str] = None):
    """Run fn over tasks on `jobs` processes (joblib), or on a Dask distributed scheduler at
    address `dask` (or a dask.distributed Client), with a progress bar; yields results in any
    order (callers sort them by task number, so results do not depend on where fits ran)."""
    while _warming:
        _warming.pop().join()
    stop_if_asked()
    bar = progress_bar(len(tasks), desc, "fit", enabled=show_bar)
    try:
        if dask is not None:
            stream = _dask_chunks(_chunks(tasks, _dask_workers(dask)), fn, dask)
        elif jobs <= 1:
            stream = ([fn(t)] for t in tasks)
        else:
            from joblib import Parallel, delayed  # start-up time: joblib loads only when used
            from IMNRiskLib.core.workers import loky_backend  # no worker outlives a killed run
            stream = Parallel(n_jobs=jobs, backend=loky_backend(jobs), return_as="generator_unordered",
                              batch_size=1)(delayed(_run_chunk)(fn, c) for c in _chunks(tasks, jobs))
        for results in stream:
            stop_if_asked()
            yield from results
            bar.update(len(results))
    finally:
        bar.close()


def _dask_client(address):
    """A Client for an address (or the Client given); InputError when unreachable."""
    try:
        from dask.distributed import Client  # optional dependency (extra dask)
    except ImportError:
        raise InputError("--dask needs dask[distributed]: pip install 'imnrisk[dask]'", field="--dask") from None
    if isinstance(address, Client):
        return address, False
    try:
        return Client(address, timeout=10), True
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"cannot reach the Dask scheduler at {address} ({exc})", field="--dask") from None


def _dask_workers(address) -> int:
    client, own = _dask_client(address)
    try:
        return max(1, sum(client.nthreads().values()))
    finally:
        if own:
            client.close()


def _dask_chunks(chunks: List[list], fn: Callable, address):
    """Yield each chunk's results from a Dask distributed scheduler."""
    from dask.distributed import as_completed  # optional dependency (extra dask)
    client, own = _dask_client(address)
    try:
        futures = [client.submit(_run_chunk, fn, c, pure=False) for c in chunks]
        for future in as_completed(futures):
            yield future.result()
    finally:
        if own:
            client.close()


def repeated_cv(data: Data, folds: int = 5, repeats: int = 100, seed: int = 0, protocol: str = "nested",
                jobs: int = 1, show_bar: bool = True, dask: Optional[str] = None,
                whole: Optional[FittedModels] = None) -> Dict[str, object]:
    """Repeated stratified K-fold CV (a new split per repeat). Per model: AUC and accuracy
    (threshold 0.5) mean and SD over all folds, calibration slope of each repeat's pooled
    out-of-fold predictions (mean, SD, min, max); and how often each feature was selected.
    `whole`: the models fitted on every patient with data's options, when fitted already (the
    leaky protocol's selection; else fitted here, the same fit)."""
    frozen = None
    if protocol == "leaky":
        if whole is None:
            whole = fit_models(data.features, data.clinical, data.y, data.schema, data.options,
                               encoded=data.encoding())
        frozen = (whole.factors, whole.radiomics)
    tasks = []
    for r in range(repeats):
        split = StratifiedKFold(folds, shuffle=True, random_state=seed + r).split(data.features, data.y)
        tasks += [(len(tasks) + k, data, r, train, test, frozen) for k, (train, test) in enumerate(split)]
    oof = {r: pd.DataFrame(index=data.features.index, columns=list(MODELS), dtype=float) for r in range(repeats)}
    fold_perf: Dict[str, List[Dict]] = {m: [] for m in MODELS}
    counts: Dict[str, int] = {}
    # results arrive in any order; sort them so that sums (and so the bytes of model.json) are reproducible
    results = sorted(_parallel(tasks, _fold_task, jobs, f"cv ({protocol})", show_bar, dask), key=lambda r: r[0])
    for _, repeat, test, pred, used, perf in results:
        for m in MODELS:
            oof[repeat].iloc[test, oof[repeat].columns.get_loc(m)] = pred[m].to_numpy()
            fold_perf[m].append(perf[m])
        for f in used:
            counts[f] = counts.get(f, 0) + 1
    out: Dict[str, object] = {"folds": folds, "repeats": repeats, "protocol": protocol, "models": {}}
    for m in MODELS:
        aucs = [f["auc"] for f in fold_perf[m] if f["auc"] is not None]
        accs = [f["accuracy"] for f in fold_perf[m]]
        pooled = [performance(data.y, oof[r][m].to_numpy()) for r in range(repeats)]  # each repeat's, once
        slopes = [p["slope"] for p in pooled if p["slope"] is not None]
        out["models"][m] = {
            "folds": folds, "repeats": repeats, "auc_mean": _mean(aucs), "auc_sd": _sd(aucs),
            "accuracy_mean": _mean(accs), "accuracy_sd": _sd(accs), "slope_mean": _mean(slopes),
            "slope_sd": _sd(slopes), "slope_min": min(slopes) if slopes else None,
            "slope_max": max(slopes) if slopes else None,
            "auc_pooled_mean": _mean([p["auc"] for p in pooled]),
            # validated calibration curve: each patient's out-of-fold prediction averaged over the repeats
            "calibration_curves": evaluation.calibration_curves(
                data.y, np.mean([oof[r][m].to_numpy() for r in range(repeats)], axis=0))}
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
    return optimism_of([replicate_performance(y, idx, p_boot, p_orig) for idx, p_boot, p_orig in replicates])


def replicate_performance(y: np.ndarray, idx: np.ndarray, p_boot: Optional[np.ndarray], p_orig: Optional[np.ndarray]
                          ) -> Optional[Tuple[Dict, Dict]]:
    """(apparent performance on the resample, test performance on the original patients) of one
    bootstrap replicate; None when its fit failed or the resample has one outcome class."""
    if p_boot is None or y[idx].min() == y[idx].max():
        return None
    return performance(y[idx], p_boot), performance(y, p_orig)


def optimism_of(performances: Sequence[Optional[Tuple[Dict, Dict]]]) -> Dict[str, object]:
    """`optimism` from each replicate's `replicate_performance` (None: skipped)."""
    per_index: Dict[str, List[float]] = {k: [] for k in OPTIMISM_INDICES}
    used = skipped = 0
    for perf in performances:
        if perf is None:
            skipped += 1
            continue
        apparent, test = perf
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
    """Fit on one bootstrap resample and measure the fit on it and on the original patients
    (worker entry point): (number, {model: replicate_performance}, compact replicate)."""
    number, data, idx = args
    boot = data.take(idx)
    try:
        models = fit_models(boot.features, boot.clinical, boot.y, boot.schema, boot.options, encoded=boot.encoded,
                            full_record=False)
    except (ValueError, np.linalg.LinAlgError):
        return number, {m: None for m in MODELS}, None
    p_boot = models.predict(boot.features, boot.clinical, boot.encoded)
    p_orig = models.predict(data.features, data.clinical, data.encoding())
    return (number, {m: replicate_performance(data.y, idx, p_boot[m].to_numpy(), p_orig[m].to_numpy()) for m in MODELS},
            compact_replicate(models))  # uncertainty hook: what predict --ci bootstrap needs


def bootstrap_validation(data: Data, apparent: Dict[str, Dict[str, float]], b: int = 1000, seed: int = 0,
                         jobs: int = 1, show_bar: bool = True, dask: Optional[str] = None) -> Dict[str, Dict[str, object]]:
    """Optimism-corrected AUC, calibration slope/intercept and Brier of the three models, the
    whole pipeline refitted on each of b bootstrap resamples."""
    samples = bootstrap_samples(len(data.y), b, seed)
    results = sorted(_parallel([(k, data, s) for k, s in enumerate(samples)], _boot_task, jobs, "bootstrap",
                               show_bar, dask), key=lambda r: r[0])
    out = {}
    for m in MODELS:
        res = optimism_of([perf[m] for _, perf, _ in results])
        corrected = {f"{k}_corrected": (None if apparent[m].get(k) is None or res["optimism"][k] is None
                                         else apparent[m][k] - res["optimism"][k]) for k in OPTIMISM_INDICES}
        out[m] = {"b": res["b"], "skipped": res["skipped"], "b_per_index": res["b_per_index"],
                  **{f"optimism_{k}": v for k, v in res["optimism"].items()}, **corrected}
    out["replicates"] = [r[2] for r in results]  # uncertainty hook: compact replicates in replicate order
    return out
