"""Training: from a cohort and its feature table to model.json, metrics.json and the tables and
figure data the report needs (`imnrisk train`)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import pandas as pd

from IMNRiskLib.stats import evaluation
from IMNRiskLib.modelling.clinical import table1, table2
from IMNRiskLib.inputs.cohort import read_cohort
from IMNRiskLib.core.errors import InputError
from IMNRiskLib.core.files import atomic_path, check_input_file, write_json
from IMNRiskLib.core.jsonio import json_clean
from IMNRiskLib.radiomics.settings import DEFAULT_PARAMS, load_settings, software_versions
from IMNRiskLib.scoring.modelwriter import model_document, sealed_document
from IMNRiskLib.modelling.protocols import describe as describe_protocol
from IMNRiskLib.modelling.models import EPV_WARNING, MODELS, FittedModels, TrainingOptions, fit_models
from IMNRiskLib.inputs.schema import load_schema
from IMNRiskLib.modelling.selection import funnel
from IMNRiskLib.radiomics.stability import (DEFAULT_ICC_THRESHOLD, feature_icc, icc_notes, icc_summary, icc_table, read_reader2,
                        reader_columns, with_reader2)
from IMNRiskLib.resampling.validation import Data, bootstrap_validation, performance, repeated_cv, start_workers

OUTPUTS = ("model.json", "metrics.json", "predictions.csv", "table1.csv", "table2.csv", "lasso_path.csv",
           "lasso_cv.csv", "cv_frequency.csv", "icc.csv")


def load_training_data(cohort_path: Union[str, Path], features_path: Union[str, Path],
                       schema_path: Optional[str] = None) -> Data:
    """The labelled patients of the cohort with their features; IDs must match."""
    from IMNRiskLib.radiomics.features import read_features  # start-up time: loaded when this step runs
    schema = load_schema(schema_path)
    cohort = read_cohort(cohort_path, schema, need_clinical=True, need_outcome=True, need_imaging=False)
    feats = read_features(features_path)
    labelled = [c.id for c in cohort.cases if c.outcome is not None]
    missing = [i for i in labelled if i not in feats.index]
    if len(missing) == len(labelled):
        raise InputError("no ID of the cohort is in the features table (IDs do not match)",
                         file=str(features_path), field="ID")
    if missing:
        raise InputError(f"no features for {len(missing)} patient(s) of the cohort, e.g. {', '.join(missing[:5])} "
                         "(re-run imnrisk extract, or remove them from the cohort)", file=str(features_path),
                         id=missing[0], field="ID")
    X = feats.loc[labelled].copy()  # one consolidated block: column reductions stay fast
    bad = X.columns[~np.isfinite(X.to_numpy()).all(axis=0)]
    if len(bad):
        raise InputError(f"{len(bad)} feature column(s) with missing or infinite values, e.g. {bad[0]}",
                         file=str(features_path), field=bad[0])
    if (X.std(axis=0) == 0).all():
        raise InputError("every feature is constant: nothing to learn from", file=str(features_path))
    y = cohort.outcome().loc[labelled].to_numpy().astype(int)
    try:
        evaluation.check_outcome(y, schema.outcome)
    except InputError as exc:
        raise exc.located(file=str(cohort_path)) from None
    if min(y.sum(), len(y) - y.sum()) < 5:
        raise InputError(f"{int(min(y.sum(), len(y) - y.sum()))} patient(s) in the smaller outcome class: "
                         "too few to build a model (at least 5 needed)", file=str(cohort_path), field=schema.outcome)
    return Data(plain_strings(X), plain_strings(cohort.clinical_frame().loc[labelled]), y, schema, TrainingOptions())


def plain_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its column names and text columns as plain Python strings (object dtype):
    the validation takes rows and looks up names ~10^5 times, several times slower on pandas 3's
    Arrow-backed string dtype. Values and names are unchanged."""
    columns = {name: (frame[name].astype(object) if pd.api.types.is_string_dtype(frame[name].dtype) else frame[name])
               for name in frame.columns}
    out = pd.DataFrame(columns, index=frame.index)  # one block per dtype
    out.columns = pd.Index(list(frame.columns), dtype=object)
    return out


def check_cv_folds(y: np.ndarray, cv_folds: int, cv_repeats: int, outcome: str) -> None:
    """Stratified K-fold CV needs at least K patients in each outcome class."""
    smaller = int(min(y.sum(), len(y) - y.sum()))
    if cv_repeats > 0 and cv_folds > smaller:
        raise InputError(f"--cv-folds {cv_folds} is more than the {smaller} patient(s) of the smaller {outcome} "
                         f"class: use --cv-folds {smaller} or fewer", field="--cv-folds")


# What a training run holds in memory, measured with tracemalloc and ru_maxrss on the 300-patient
# phantom (107 features): one bootstrap replicate's kept results 8.4 kB, one CV fold's 11 kB (rounded
# up to 12 kB), each plus its patients' indices (8 bytes each); a worker process with numpy, scipy,
# pandas, scikit-learn and statsmodels loaded 255 MB, plus its copies of the feature table. One fit of
# the whole pipeline took 0.67 s there (2 shared cores); its time is taken to grow with patients x features.
RESULT_BYTES = 12_000
PROCESS_BYTES = 255e6
TABLE_COPIES = 10
SECONDS_PER_FIT_PER_CELL = 0.67 / (300 * 107)


@dataclass
class ResourceEstimate:
    """Fits, peak memory and wall time a training run is expected to take (order of magnitude)."""

    fits: int
    memory_bytes: float
    seconds: float

    def describe(self) -> str:
        return (f"{self.fits} whole-pipeline fits, about {self.memory_bytes / 1e9:.3g} GB of memory and "
                f"{_duration(self.seconds)}")


def _duration(seconds: float) -> str:
    for unit, size in (("day(s)", 86400), ("hour(s)", 3600), ("minute(s)", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.0f} s"


def estimate_resources(n: int, p: int, cv_folds: int, cv_repeats: int, bootstrap: int, jobs: int) -> ResourceEstimate:
    """Memory and time of a training run from its sizes: n patients, p features, CV (nested and
    leaky: two runs of cv_repeats x cv_folds fits), bootstrap resamples and worker processes."""
    folds = 2 * cv_repeats * cv_folds
    per_result = RESULT_BYTES + 8.0 * n
    workers = max(jobs, 1) if folds + bootstrap > 0 else 0
    memory = (1 + workers) * (PROCESS_BYTES + TABLE_COPIES * 8.0 * n * p) + (folds + bootstrap) * per_result
    fits = 1 + folds + bootstrap
    return ResourceEstimate(fits, memory, fits * SECONDS_PER_FIT_PER_CELL * n * p / max(workers, 1))


def machine_memory() -> Optional[int]:
    """This machine's physical memory in bytes (None when it cannot be told)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def check_resources(estimate: ResourceEstimate, force: bool) -> None:
    """Refuse, before any fit, a run whose memory estimate exceeds the machine's memory (--force runs it anyway)."""
    total = machine_memory()
    if total is not None and estimate.memory_bytes > total and not force:
        raise InputError(f"this run needs {estimate.describe()}; this machine has {total / 1e9:.3g} GB: lower "
                         "--bootstrap, --cv-repeats or --jobs (or pass --force to try anyway)", field="--bootstrap")


def extraction_record(features_path: Union[str, Path]) -> Optional[Dict[str, Any]]:
    """The provenance beside features.csv, checked to describe this very table (its SHA-256);
    None when there is none. A provenance of another extraction would give the model wrong settings."""
    from IMNRiskLib.radiomics.features import output_paths, sha256_of_file  # start-up time: loaded when this step runs
    path = output_paths(features_path)["provenance"]
    if not path.exists():
        return None
    check_input_file(path, "provenance file")
    try:
        prov = json.loads(path.read_text(encoding="utf-8"))
        settings, versions = prov["settings"], prov["versions"]
        if not isinstance(settings, dict) or not isinstance(versions, dict) or \
                not isinstance(settings.get("pyradiomics"), dict) or not isinstance(settings.get("imnrisk"), dict):
            raise ValueError("settings or versions are not mappings")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, AttributeError, RecursionError) as exc:
        raise InputError(f"not a readable provenance file ({str(exc)[:100] or type(exc).__name__})",
                         file=str(path)) from None
    check_settings_digest(prov, path)
    recorded = prov.get("features_sha256")
    if recorded is not None and recorded != sha256_of_file(Path(features_path)):
        raise InputError(f"does not describe {Path(features_path).name}: its SHA-256 differs from the one this "
                         "provenance records (a table from another extraction, or an edited one); re-run "
                         "imnrisk extract", file=str(path), field="features_sha256")
    return prov


def check_settings_digest(prov: Dict[str, Any], path: Path) -> None:
    """A provenance's settings must be the ones its settings_sha256 records (computed as the
    extraction computed it): settings edited by hand would give the model settings its features
    were not extracted with, and predict would recompute with them."""
    recorded = prov.get("settings_sha256")
    if recorded is None:
        return  # older provenances: the features' SHA-256 binding still holds
    actual = hashlib.sha256(json.dumps(prov["settings"], sort_keys=True).encode()).hexdigest()
    if actual != recorded:
        raise InputError("its settings were edited: they no longer match the settings_sha256 this provenance "
                         "records (the features were extracted with other settings); re-run imnrisk extract",
                         file=str(path), field="settings")


def second_reader_table(features_path: Union[str, Path], reader2_path: Optional[Union[str, Path]],
                        icc_threshold: Optional[float], use_icc: bool = True) -> Optional[Path]:
    """The second reader's feature table for the ICC filter: the one given, else features_reader2.csv
    beside features.csv; None when there is none (or with use_icc False). Its provenance must describe
    it and pair it with this features.csv, extracted with the same settings."""
    from IMNRiskLib.radiomics.features import output_paths, sha256_of_file  # start-up time: loaded when this step runs
    if not use_icc:
        if reader2_path is not None or icc_threshold is not None:
            raise InputError("--no-icc cannot go with --features2 or --icc-threshold", field="--no-icc")
        return None
    if icc_threshold is not None and not 0.0 < icc_threshold <= 1.0:
        raise InputError(f"{icc_threshold:g} is not an ICC threshold (0 < t <= 1)", field="--icc-threshold")
    beside = output_paths(features_path)["reader2"]
    path = Path(reader2_path) if reader2_path is not None else (beside if beside.exists() else None)
    if path is None:
        if icc_threshold is not None:
            raise InputError(f"the ICC filter needs the second reader's features ({beside.name} from imnrisk extract "
                             "with a Mask2 column, or --features2)", field="--icc-threshold")
        return None
    prov2, prov1 = extraction_record(path), extraction_record(features_path)
    bound = (prov1 or {}).get("reader2_features_sha256")
    if bound is not None and bound != sha256_of_file(path):
        raise InputError(f"is not the second reader's table extracted with {Path(features_path).name} (its "
                         f"SHA-256 differs from the one {output_paths(features_path)['provenance'].name} records: "
                         "an edited table, or another extraction's); re-run imnrisk extract, or train with --no-icc",
                         file=str(path), field="reader2_features_sha256")
    paired = (prov2 or {}).get("reader1_features_sha256")
    if paired is not None and paired != sha256_of_file(Path(features_path)):
        raise InputError(f"was extracted beside another {Path(features_path).name} (its provenance records another "
                         "SHA-256): re-run imnrisk extract, or train with --no-icc", file=str(path),
                         field="reader1_features_sha256")
    if prov1 and prov2 and prov1.get("settings_sha256") != prov2.get("settings_sha256"):
        raise InputError("extracted with other settings than the first reader's table: an ICC between them says "
                         "nothing", file=str(path), field="settings_sha256")
    return path


def add_second_reader(data: Data, path: Path, threshold: float) -> Data:
    """The training data with the second reader's columns and the ICC filter switched on; refused
    when no feature reaches the threshold on all patients read twice."""
    reader2 = read_reader2(path, data.features.columns, list(data.features.index))
    features = with_reader2(data.features, reader2)
    icc = feature_icc(features)
    if not (icc >= threshold).any():
        raise InputError(f"no feature has ICC >= {threshold:g} (largest {icc.max():.3f}): lower --icc-threshold "
                         "or train with --no-icc", file=str(path), field="--icc-threshold")
    return Data(features, data.clinical, data.y, data.schema, replace(data.options, icc_threshold=threshold))


def apparent_metrics(y: np.ndarray, pred: pd.DataFrame) -> Dict[str, Dict[str, Any]]:
    """Apparent performance of the three models on the training cohort (metrics.json layout)."""
    out = {}
    for m in MODELS:
        p = pred[m].to_numpy()
        ev = evaluation.evaluate(y, p, probability=True)
        cal = ev["calibration"]
        out[m] = {"auc": ev["auc"], "ci95": ev["ci95"], "variance": ev["variance"], "brier": ev["brier"],
                  "calibration": {"intercept": cal["intercept"], "slope": cal["slope"], "citl": cal["citl"],
                                  "slope_p_vs_1": cal["slope_p_vs_1"]},
                  "hosmer_lemeshow": ev["hosmer_lemeshow"], "youden": ev["youden"],
                  "accuracy": performance(y, p)["accuracy"], "accuracy_vs_nir": ev["accuracy"],
                  "roc": {k: [None if not np.isfinite(v) else float(v) for v in vals]
                          for k, vals in evaluation.roc_points(y, p).items()},
                  "calibration_curves": evaluation.calibration_curves(y, p),
                  "net_benefit": ev["net_benefit"]}
    return out


def cv_accuracy_vs_nir(y: np.ndarray, cv: Dict[str, Any]) -> Dict[str, Any]:
    """The CV accuracy against the no-information rate: the out-of-fold correct count is taken as
    mean fold accuracy x n (rounded), tested like caret's confusionMatrix (exact binomial, one-sided)."""
    n = len(y)
    out = evaluation.accuracy_test(int(round(cv["accuracy_mean"] * n)), n, evaluation.no_information_rate(y))
    return {**out, "accuracy": cv["accuracy_mean"], "basis": "out-of-fold: mean fold accuracy x n patients, rounded"}


def candidate_clinical_df(data: Data) -> int:
    """Design columns of every clinical variable of the schema: the clinical parameters screened."""
    from IMNRiskLib.modelling.clinical import design, varying  # start-up time: loaded when this step runs
    return int(varying(design(data.clinical, data.schema, data.schema.names)).shape[1])


def sample_size(models: FittedModels, data: Data, pred: pd.DataFrame, metrics: Dict[str, Any]) -> Dict[str, Any]:
    """Events per variable counted honestly: against the final model's df, against every parameter
    really fitted (the Rad-Score's own coefficients too) and against every candidate screened (per
    selection step), with Riley et al.'s minimum sample size for the candidate and the final
    parameters (Cox-Snell R2 from the nested-CV C statistic, else from the apparent LR shrunk)."""
    y = data.y
    n, events = len(y), int(y.sum())
    limiting = min(events, n - events)
    final_df = len(models.combined.terms) - 1
    k_radscore = len(models.radiomics.named_steps["radscore"].coefficients)
    clinical_df = final_df - 1
    fitted = clinical_df + k_radscore
    features = len(reader_columns(data.features.columns))  # not the second reader's copies (ICC)
    clin_candidates = candidate_clinical_df(data)
    candidates = features + clin_candidates
    steps = funnel(models.radiomics, features)
    out: Dict[str, Any] = {
        "n": n, "events": events, "non_events": n - events, "limiting_events": limiting,
        "final_df": final_df, "epv_final": limiting / max(final_df, 1),
        "radscore_coefficients": k_radscore, "clinical_df": clinical_df, "fitted_parameters": fitted,
        "epv_fitted": limiting / max(fitted, 1),
        "candidate_features": features, "candidate_clinical_df": clin_candidates, "candidate_parameters": candidates,
        "epv_candidates": limiting / candidates,
        "per_step": [{"step": st["step"], "features": st["n"], "epv": limiting / st["n"] if st["n"] else None}
                     for st in steps]}
    prevalence = events / n
    p = np.clip(pred["combined"].to_numpy(), 1e-15, 1 - 1e-15)
    ll = float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))
    ll0 = events * np.log(prevalence) + (n - events) * np.log(1 - prevalence)
    r2_app = evaluation.cox_snell_r2_from_lr(2 * (ll - ll0), n)
    sources = []
    cv = metrics["models"]["combined"].get("cv")
    if cv and cv.get("auc_mean") is not None and cv["auc_mean"] > 0.5:
        sources.append((f"nested-CV C statistic {cv['auc_mean']:.3f} (Riley 2021 approximation)",
                        evaluation.cox_snell_r2_from_c(min(cv["auc_mean"], 0.999), prevalence)))
    shrink = evaluation.heuristic_shrinkage(r2_app, fitted, n) if 0 < r2_app < 1 else -1
    if shrink > 0:
        sources.append((f"apparent LR of the final model ({r2_app:.3f}) x heuristic shrinkage {shrink:.3f} "
                        f"({fitted} fitted parameters)", r2_app * shrink))
    out["r2_cs_apparent"] = r2_app
    out["riley"] = []
    for label, r2 in sources:
        for basis, params in (("candidate parameters", candidates), ("final model df", final_df)):
            try:
                res = evaluation.riley_sample_size(prevalence, params, r2)
            except InputError as exc:
                out["riley"].append({"r2_source": label, "basis": basis, "parameters": params, "error": str(exc)})
                continue
            out["riley"].append({"r2_source": label, "basis": basis, **res, "n_available": n, "met": n >= res["n"]})
    return out


def shrink_combined(models: FittedModels, data: Data, factor: float) -> Dict[str, Any]:
    """Replace the combined model by its uniformly shrunk version (Steyerberg); the record."""
    from IMNRiskLib.modelling.nomogram import RADSCORE  # start-up time: loaded when this step runs
    from IMNRiskLib.modelling.models import shrink_uniformly  # start-up time: loaded when this step runs
    Xc = models.clinical_design(data.clinical).assign(**{RADSCORE: models.radscore(data.features)})
    Xc = Xc[models.combined.terms[1:]]
    complete = Xc.notna().all(axis=1).to_numpy()
    models.combined, record = shrink_uniformly(models.combined, Xc[complete], data.y[complete], factor)
    if factor > 1:
        record["note"] = f"bootstrap slope {factor:.3f} > 1: the coefficients were expanded, not shrunk"
    return record


def check_shrink(shrink: Optional[str], bootstrap: int) -> None:
    """--shrink bootstrap needs the bootstrap's corrected slope."""
    if shrink not in (None, "none", "bootstrap"):
        raise InputError(f"unknown shrinkage '{shrink}' (none or bootstrap)", field="--shrink")
    if shrink == "bootstrap" and bootstrap <= 0:
        raise InputError("--shrink bootstrap needs --bootstrap 1 or more (the factor is the bootstrap-corrected "
                         "calibration slope)", field="--shrink")


def _calibration_summary(y: np.ndarray, p: np.ndarray) -> Dict[str, Any]:
    """Calibration intercept, slope, calibration-in-the-large, Brier and HL of one set of predictions."""
    ev = evaluation.evaluate(y, p, probability=True)
    cal = ev["calibration"]
    return {"intercept": cal["intercept"], "slope": cal["slope"], "citl": cal["citl"], "brier": ev["brier"],
            "mean_predicted": float(np.mean(p)), "observed": float(np.mean(y)),
            "hosmer_lemeshow": {k: ev["hosmer_lemeshow"][k] for k in ("chi2", "df", "p")}}


def acquisition_block(prov: Optional[Dict[str, Any]], data: Data, settings: Dict[str, Any]
                      ) -> Optional[Dict[str, Any]]:
    """model.json's `acquisition` block (aggregates of the training images: phase, phases, spacing,
    tumour volume, normalisation, mean intensity) from the provenance beside features.csv."""
    # start-up time: loaded when this step runs
    from IMNRiskLib.scoring.domain import INTENSITY_FEATURE, acquisition_profile
    if prov is None or not isinstance(prov.get("cases"), dict):
        return None
    intensities = data.features[INTENSITY_FEATURE].to_numpy(float) if INTENSITY_FEATURE in data.features else None
    return acquisition_profile(prov["cases"], [str(i) for i in data.features.index], settings, intensities)


def train(cohort_path, features_path, out_dir, schema_path=None, options: Optional[TrainingOptions] = None,
          cv_folds: int = 5, cv_repeats: int = 100, bootstrap: int = 1000, jobs: int = 1, show_bar: bool = True,
          shrink: Optional[str] = None, reader2_path=None, icc_threshold: Optional[float] = None,
          use_icc: bool = True, keep_replicates: bool = True, dask=None, force: bool = False) -> Dict[str, Any]:
    """Fit the three models, validate them (nested and leaky CV, bootstrap), write the outputs.
    shrink="bootstrap": the combined model saved is shrunk by its bootstrap-corrected slope. With a
    second reader's table (given, or features_reader2.csv beside features.csv), features with
    ICC(2,1) below `icc_threshold` (default 0.75) are dropped first, inside every fit. `dask`: a Dask
    scheduler address (or Client) that runs the CV folds and bootstrap fits instead of `jobs` local
    processes (same results)."""
    data, prov, reader2 = checked_inputs(cohort_path, features_path, schema_path, options or TrainingOptions(),
                                         cv_folds, cv_repeats, bootstrap, jobs, dask, shrink, reader2_path,
                                         icc_threshold, use_icc, force)
    if dask is None and (cv_repeats > 0 or bootstrap > 0):
        start_workers(jobs)  # inputs checked: their start-up overlaps the final fit
    if reader2 is not None:  # the second reader's features beside the first's: an ICC step in every fit
        data = add_second_reader(data, reader2, DEFAULT_ICC_THRESHOLD if icc_threshold is None else icc_threshold)
    models = fit_models(data.features, data.clinical, data.y, data.schema, data.options, encoded=data.encoding())
    pred = models.predict(data.features, data.clinical)
    metrics = apparent_record(models, data, pred)
    if cv_repeats > 0:
        add_cross_validation(metrics, data, cv_folds, cv_repeats, jobs, show_bar, dask, models)
    boot = add_bootstrap(metrics, data, pred, bootstrap, jobs, show_bar, dask) if bootstrap > 0 else {}
    add_sample_size(metrics, models, data, pred)
    if shrink == "bootstrap":
        pred = shrink_by_bootstrap(metrics, models, data, pred)
    settings, versions = extraction_settings(prov, metrics)
    metrics = json_clean(metrics)
    doc = sealed_model(models, data, metrics, settings, versions, prov, Path(cohort_path),
                       boot.get("replicates") if keep_replicates else None)
    write_outputs(Path(out_dir), metrics, pred, models, data, doc)
    return metrics


def check_counts(cv_folds: int, cv_repeats: int, bootstrap: int) -> None:
    """Folds, repeats and resamples a run can have (before any file is read)."""
    if cv_folds < 2:
        raise InputError("--cv-folds must be 2 or more", field="--cv-folds")
    if cv_repeats < 0 or bootstrap < 0:
        raise InputError("--cv-repeats and --bootstrap must be 0 or more", field="--cv-repeats")


def checked_inputs(cohort_path, features_path, schema_path, options: TrainingOptions, cv_folds: int,
                   cv_repeats: int, bootstrap: int, jobs: int, dask, shrink: Optional[str], reader2_path,
                   icc_threshold: Optional[float], use_icc: bool, force: bool):
    """The training data, the features' provenance and the second reader's table (or None), every input and
    option checked before the long work."""
    data = load_training_data(cohort_path, features_path, schema_path)
    data.options = options
    check_cv_folds(data.y, cv_folds, cv_repeats, data.schema.outcome)
    check_resources(estimate_resources(len(data.y), data.features.shape[1], cv_folds, cv_repeats, bootstrap,
                                       1 if dask is not None else jobs), force)
    check_shrink(shrink, bootstrap)
    prov = extraction_record(features_path)  # checked before the long work, not after it
    return data, prov, second_reader_table(features_path, reader2_path, icc_threshold, use_icc)


def apparent_record(models: FittedModels, data: Data, pred: pd.DataFrame) -> Dict[str, Any]:
    """metrics.json's start: the cohort, each model's apparent performance, DeLong, what was selected."""
    options = data.options
    n, events = len(data.y), int(data.y.sum())
    apparent = apparent_metrics(data.y, pred)
    # no cohort name: the folder's name may be a patient's or a study's
    metrics: Dict[str, Any] = {"cohort": {"n": n, "events": events}, "models": {}, "notes": list(models.notes)}
    metrics["protocol"] = describe_protocol(options.protocol)  # which chain built the models (protocols.py)
    n_predictors = len(models.combined.terms) - 1
    metrics["cohort"]["epv"] = min(events, n - events) / max(n_predictors, 1)
    if metrics["cohort"]["epv"] < EPV_WARNING:
        metrics["notes"].append(f"events per variable {metrics['cohort']['epv']:.1f} < {EPV_WARNING}: "
                                "coefficients may be unstable and optimistic")
    for m in MODELS:
        metrics["models"][m] = {"apparent": apparent[m]}
    metrics["delong"] = [{"a": a, "b": b, **{k: v for k, v in evaluation.delong_test(
        data.y, pred[a], pred[b]).items() if k in ("z", "p")}}
        for a, b in (("clinical", "radiomics"), ("clinical", "combined"), ("radiomics", "combined"))]
    lasso = models.radiomics.named_steps["lasso"]
    metrics["selection"] = {
        "funnel": funnel(models.radiomics, len(reader_columns(data.features.columns))),
        "radscore": {"intercept": models.radiomics.named_steps["radscore"].intercept,
                     "coefficients": models.radiomics.named_steps["radscore"].coefficients,
                     "formula": models.radiomics.named_steps["radscore"].formula()},
        "clinical_factors": models.factors,
        "lasso": {"lambda_min": lasso.lambda_min_, "lambda_1se": lasso.lambda_1se_, "rule": lasso.rule},
        "clinical_selection": models.clinical_selection, "fallbacks": list(models.fallbacks)}
    icc_step = models.radiomics.named_steps.get("icc")
    if icc_step is not None:
        used = models.radiomics.named_steps["radscore"].features_
        metrics["selection"]["icc"] = icc_summary(icc_step.icc_, icc_step.selected_, used, options.icc_threshold,
                                                  icc_step.n_patients_)
        metrics["notes"] += icc_notes(metrics["selection"]["icc"])
    return metrics


def add_cross_validation(metrics: Dict[str, Any], data: Data, cv_folds: int, cv_repeats: int, jobs: int,
                         show_bar: bool, dask, models: Optional[FittedModels] = None) -> None:
    """Nested and leaky repeated CV of every model (and the features' CV selection frequency);
    `models`: the fit on every patient, the leaky protocol's selection (not fitted twice)."""
    for protocol, key in (("nested", "cv"), ("leaky", "cv_leaky")):
        cv = repeated_cv(data, cv_folds, cv_repeats, data.options.seed, protocol, jobs, show_bar, dask, models)
        for m in MODELS:
            metrics["models"][m][key] = cv["models"][m]
            metrics["models"][m][key]["accuracy_vs_nir"] = cv_accuracy_vs_nir(data.y, cv["models"][m])
        if protocol == "nested":
            metrics["selection"]["cv_frequency"] = cv["cv_frequency"]


BOOTSTRAP_KEYS = ("b", "skipped", "b_per_index", "auc_corrected", "slope_corrected", "intercept_corrected",
                  "brier_corrected", "optimism_auc", "optimism_slope")


def add_bootstrap(metrics: Dict[str, Any], data: Data, pred: pd.DataFrame, bootstrap: int, jobs: int,
                  show_bar: bool, dask) -> Dict[str, Any]:
    """Bootstrap optimism correction of every model; returns the bootstrap's result (its replicates)."""
    boot = bootstrap_validation(data, {m: performance(data.y, pred[m].to_numpy()) for m in MODELS},
                                bootstrap, data.options.seed, jobs, show_bar, dask)
    for m in MODELS:
        metrics["models"][m]["bootstrap"] = {k: boot[m][k] for k in BOOTSTRAP_KEYS}
    return boot


def add_sample_size(metrics: Dict[str, Any], models: FittedModels, data: Data, pred: pd.DataFrame) -> None:
    """Sample size (Riley's criteria), events per variable and the no-information rate."""
    metrics["sample_size"] = sample_size(models, data, pred, metrics)
    metrics["cohort"]["epv_fitted"] = metrics["sample_size"]["epv_fitted"]
    metrics["cohort"]["epv_candidates"] = metrics["sample_size"]["epv_candidates"]
    metrics["cohort"]["nir"] = evaluation.no_information_rate(data.y)


def shrink_by_bootstrap(metrics: Dict[str, Any], models: FittedModels, data: Data, pred: pd.DataFrame
                        ) -> pd.DataFrame:
    """--shrink bootstrap: the combined model shrunk by its bootstrap-corrected slope; the new predictions."""
    factor = metrics["models"]["combined"]["bootstrap"]["slope_corrected"]
    if factor is None or not np.isfinite(factor) or factor <= 0:
        raise InputError(f"--shrink bootstrap: the bootstrap-corrected slope could not be estimated ({factor}); "
                         "train without --shrink or with more --bootstrap resamples", field="--shrink")
    unshrunk = pred["combined"].to_numpy()
    record = shrink_combined(models, data, float(factor))
    pred = models.predict(data.features, data.clinical).assign(combined_unshrunk=unshrunk)
    shrunk_ev = evaluation.evaluate(data.y, pred["combined"].to_numpy(), probability=True)
    metrics["shrinkage"] = {**record, "apparent_unshrunk": _calibration_summary(data.y, unshrunk),
                            "apparent_shrunk": _calibration_summary(data.y, pred["combined"].to_numpy()),
                            "calibration_curves": evaluation.calibration_curves(data.y, pred["combined"].to_numpy()),
                            "brier_shrunk": shrunk_ev["brier"]}
    metrics["notes"].append(f"combined model shrunk by the bootstrap-corrected calibration slope {factor:.3f} "
                            "(model.json and predict use the shrunk model)")
    return pred


def extraction_settings(prov: Optional[Dict[str, Any]], metrics: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The extraction settings and software versions the model records: the provenance's, else the defaults (noted)."""
    if prov is not None:
        if "features_sha256" not in prov:
            metrics["notes"].append("the provenance beside features.csv predates SHA-256 binding: re-run imnrisk "
                                    "extract to make sure it describes this table")
        return prov["settings"], prov["versions"]
    metrics["notes"].append("no provenance beside features.csv: the model records IMNRisk's default "
                            "extraction settings; check that they are the ones used")
    return load_settings(DEFAULT_PARAMS).to_dict(), software_versions()


def sealed_model(models: FittedModels, data: Data, metrics: Dict[str, Any], settings: Dict[str, Any],
                 versions: Dict[str, Any], prov: Optional[Dict[str, Any]], cohort_path: Path,
                 replicates) -> Dict[str, Any]:
    """model.json's document, with the training images' profile and any shrinkage, sealed."""
    synthetic = (cohort_path.parent / "truth.json").exists()
    document = model_document(models, data.features, data.clinical, data.y, data.schema, metrics, settings,
                              data.options, synthetic, versions, replicates)
    return sealed_document(document, acquisition_block(prov, data, settings), metrics.get("shrinkage"))


def write_outputs(out: Path, metrics: Dict[str, Any], pred: pd.DataFrame, models: FittedModels, data: Data,
                  doc: Dict[str, Any]) -> None:
    """Every output written atomically; the model last, so a model.json means a finished run."""
    options, y = data.options, pd.Series(data.y, index=data.clinical.index)
    write_json(out / "metrics.json", metrics)
    with atomic_path(out / "predictions.csv") as tmp:
        pred.assign(**{data.schema.outcome: data.y}).to_csv(tmp, index_label="ID", float_format="%.10g")
    for name, frame in (("table1.csv", table1(data.clinical, y, data.schema)),
                        ("table2.csv", table2(data.clinical, y, data.schema, options.entry_p, options.keep_p,
                                              test=options.clinical_test,
                                              collinear=options.clinical_collinear).table)):
        with atomic_path(out / name) as tmp:
            frame.to_csv(tmp, index=False)
    lasso = models.radiomics.named_steps["lasso"]
    with atomic_path(out / "lasso_path.csv") as tmp:
        pd.DataFrame(lasso.path_, columns=lasso.coef_.index).assign(**{"lambda": lasso.lambdas_}).to_csv(tmp, index=False)
    with atomic_path(out / "lasso_cv.csv") as tmp:
        pd.DataFrame({"lambda": lasso.lambdas_, "deviance": lasso.cv_mean_, "se": lasso.cv_se_}).to_csv(tmp, index=False)
    with atomic_path(out / "cv_frequency.csv") as tmp:
        pd.Series(metrics["selection"].get("cv_frequency", {}), name="frequency").rename_axis("feature").to_csv(tmp)
    icc_step = models.radiomics.named_steps.get("icc")
    if icc_step is not None:
        used = models.radiomics.named_steps["radscore"].features_
        with atomic_path(out / "icc.csv") as tmp:
            icc_table(icc_step.icc_, icc_step.selected_, used).to_csv(tmp, index=False, float_format="%.10g")
    write_json(out / "model.json", doc)
