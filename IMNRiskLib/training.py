"""Training: from a cohort and its feature table to model.json, metrics.json and the tables and
figure data the report needs (`imnrisk train`)."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import pandas as pd

from . import evaluation, RESEARCH_ONLY
from .clinical import table1, table2
from .cohort import read_cohort
from .errors import InputError
from .files import atomic_path, write_json
from .modelfile import FORMAT, FORMAT_VERSION, seal
from .models import (EPV_WARNING, MODELS, FittedModels, TrainingOptions, build_nomogram, fit_models,
                     risk_thresholds)
from .schema import load_schema
from .selection import funnel, standardisation
from .validation import Data, bootstrap_validation, performance, repeated_cv

OUTPUTS = ("model.json", "metrics.json", "predictions.csv", "table1.csv", "table2.csv", "lasso_path.csv",
           "lasso_cv.csv", "cv_frequency.csv")


def load_training_data(cohort_path: Union[str, Path], features_path: Union[str, Path],
                       schema_path: Optional[str] = None) -> Data:
    """The labelled patients of the cohort with their features; IDs must match."""
    from .features import read_features
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
    return Data(X, cohort.clinical_frame().loc[labelled], y, schema, TrainingOptions())


def check_cv_folds(y: np.ndarray, cv_folds: int, cv_repeats: int, outcome: str) -> None:
    """Stratified K-fold CV needs at least K patients in each outcome class."""
    smaller = int(min(y.sum(), len(y) - y.sum()))
    if cv_repeats > 0 and cv_folds > smaller:
        raise InputError(f"--cv-folds {cv_folds} is more than the {smaller} patient(s) of the smaller {outcome} "
                         f"class: use --cv-folds {smaller} or fewer", field="--cv-folds")


def extraction_record(features_path: Union[str, Path]) -> Optional[Dict[str, Any]]:
    """The provenance beside features.csv, checked to describe this very table (its SHA-256);
    None when there is none. A provenance of another extraction would give the model wrong settings."""
    from .features import output_paths, sha256_of_file
    from .files import check_input_file
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
    recorded = prov.get("features_sha256")
    if recorded is not None and recorded != sha256_of_file(Path(features_path)):
        raise InputError(f"does not describe {Path(features_path).name}: its SHA-256 differs from the one this "
                         "provenance records (a table from another extraction, or an edited one); re-run "
                         "imnrisk extract", file=str(path), field="features_sha256")
    return prov


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
                  "accuracy": performance(y, p)["accuracy"],
                  "roc": {k: [None if not np.isfinite(v) else float(v) for v in vals]
                          for k, vals in evaluation.roc_points(y, p).items()},
                  "calibration_curves": evaluation.calibration_curves(y, p),
                  "net_benefit": ev["net_benefit"]}
    return out


def model_document(models: FittedModels, data: Data, metrics: Dict[str, Any], settings: Dict[str, Any],
                   options: TrainingOptions, synthetic: bool, versions: Dict[str, str]) -> Dict[str, Any]:
    """model.json: what scoring needs, and aggregate training numbers only."""
    rs = models.radscore(data.features)
    pipeline = models.radiomics
    radscore = pipeline.named_steps["radscore"]
    # the nomogram's Rad-Score axis: mean +- 3 SD of the training Rad-Scores (aggregates, not a patient's value)
    rs_range = [float(rs.mean() - 3 * rs.std()), float(rs.mean() + 3 * rs.std())]
    nomogram = build_nomogram(models.combined, data.schema, models.factors, rs_range)
    pred = models.predict(data.features, data.clinical)
    lasso = pipeline.named_steps["lasso"]
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "notice": RESEARCH_ONLY, "software": versions,
        "extraction": settings,
        "radiomics": {"features": radscore.features_, "standardisation": standardisation(pipeline),
                      "radscore": {"intercept": radscore.intercept, "coefficients": radscore.coefficients},
                      "formula": radscore.formula(), "funnel": funnel(pipeline, data.features.shape[1]),
                      "lasso": {"rule": lasso.rule, "lambda_min": lasso.lambda_min_, "lambda_1se": lasso.lambda_1se_}},
        "clinical": {"schema": data.schema.to_dict(), "factors": models.factors,
                     "terms": models.clinical.terms, "coefficients": models.clinical.coef.tolist(),
                     "covariance": models.clinical.cov.tolist(), "method": models.clinical.method},
        "combined": {"terms": models.combined.terms, "coefficients": models.combined.coef.tolist(),
                     "covariance": models.combined.cov.tolist(), "method": models.combined.method},
        "nomogram": nomogram.to_dict(),
        "risk_groups": risk_thresholds(data.y, pred["combined"].to_numpy()),
        "training": {"n": int(len(data.y)), "events": int(data.y.sum()), "synthetic": synthetic,
                     "options": asdict(options),
                     "apparent": {m: {k: metrics["models"][m]["apparent"][k] for k in ("auc", "ci95", "brier")}
                                  for m in MODELS},
                     "cv": {m: {k: v for k, v in metrics["models"][m].get("cv", {}).items()} for m in MODELS},
                     "bootstrap": {m: metrics["models"][m].get("bootstrap", {}) for m in MODELS}},
    }


def _json_ready(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)),
                      parse_constant=lambda c: None)


def train(cohort_path, features_path, out_dir, schema_path=None, options: Optional[TrainingOptions] = None,
          cv_folds: int = 5, cv_repeats: int = 100, bootstrap: int = 1000, jobs: int = 1, show_bar: bool = True,
          say=print, dask=None) -> Dict[str, Any]:
    """Fit the three models, validate them (nested and leaky CV, bootstrap), write the outputs.
    `dask`: a Dask scheduler address (or Client) that runs the CV folds and bootstrap fits instead
    of `jobs` local processes (same results)."""
    from .evaluation import _json_clean
    from .features import DEFAULT_PARAMS, load_settings, software_versions
    options = options or TrainingOptions()
    data = load_training_data(cohort_path, features_path, schema_path)
    data.options = options
    check_cv_folds(data.y, cv_folds, cv_repeats, data.schema.outcome)
    prov = extraction_record(features_path)  # checked before the long work, not after it
    out = Path(out_dir)
    n, events = len(data.y), int(data.y.sum())

    models = fit_models(data.features, data.clinical, data.y, data.schema, options)
    pred = models.predict(data.features, data.clinical)
    apparent = apparent_metrics(data.y, pred)
    # no cohort name: the folder's name may be a patient's or a study's
    metrics: Dict[str, Any] = {"cohort": {"n": n, "events": events}, "models": {}, "notes": list(models.notes)}
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
        "funnel": funnel(models.radiomics, data.features.shape[1]),
        "radscore": {"intercept": models.radiomics.named_steps["radscore"].intercept,
                     "coefficients": models.radiomics.named_steps["radscore"].coefficients,
                     "formula": models.radiomics.named_steps["radscore"].formula()},
        "clinical_factors": models.factors,
        "lasso": {"lambda_min": lasso.lambda_min_, "lambda_1se": lasso.lambda_1se_, "rule": lasso.rule}}
    if cv_repeats > 0:
        for protocol, key in (("nested", "cv"), ("leaky", "cv_leaky")):
            cv = repeated_cv(data, cv_folds, cv_repeats, options.seed, protocol, jobs, show_bar, dask)
            for m in MODELS:
                metrics["models"][m][key] = cv["models"][m]
            if protocol == "nested":
                metrics["selection"]["cv_frequency"] = cv["cv_frequency"]
    if bootstrap > 0:
        boot = bootstrap_validation(data, {m: performance(data.y, pred[m].to_numpy()) for m in MODELS},
                                    bootstrap, options.seed, jobs, show_bar, dask)
        for m in MODELS:
            b = boot[m]
            metrics["models"][m]["bootstrap"] = {"b": b["b"], "skipped": b["skipped"], "b_per_index": b["b_per_index"],
                                                 "auc_corrected": b["auc_corrected"],
                                                 "slope_corrected": b["slope_corrected"],
                                                 "intercept_corrected": b["intercept_corrected"],
                                                 "brier_corrected": b["brier_corrected"],
                                                 "optimism_auc": b["optimism_auc"],
                                                 "optimism_slope": b["optimism_slope"]}
    if prov is not None:
        settings, versions = prov["settings"], prov["versions"]
        if "features_sha256" not in prov:
            metrics["notes"].append("the provenance beside features.csv predates SHA-256 binding: re-run imnrisk "
                                    "extract to make sure it describes this table")
    else:
        settings, versions = load_settings(DEFAULT_PARAMS).to_dict(), software_versions()
        metrics["notes"].append("no provenance beside features.csv: the model records IMNRisk's default "
                                "extraction settings; check that they are the ones used")
    synthetic = (Path(cohort_path).parent / "truth.json").exists()
    metrics = _json_clean(_json_ready(metrics))
    doc = seal(_json_clean(_json_ready(model_document(models, data, metrics, settings, options, synthetic,
                                                      versions))))

    # every output written atomically; the model last, so a model.json means a finished run
    write_json(out / "metrics.json", metrics)
    with atomic_path(out / "predictions.csv") as tmp:
        pred.assign(**{data.schema.outcome: data.y}).to_csv(tmp, index_label="ID", float_format="%.10g")
    for name, frame in (("table1.csv", table1(data.clinical, pd.Series(data.y, index=data.clinical.index), data.schema)),
                        ("table2.csv", table2(data.clinical, pd.Series(data.y, index=data.clinical.index),
                                              data.schema, options.entry_p, options.keep_p).table)):
        with atomic_path(out / name) as tmp:
            frame.to_csv(tmp, index=False)
    with atomic_path(out / "lasso_path.csv") as tmp:
        pd.DataFrame(lasso.path_, columns=lasso.coef_.index).assign(**{"lambda": lasso.lambdas_}).to_csv(tmp, index=False)
    with atomic_path(out / "lasso_cv.csv") as tmp:
        pd.DataFrame({"lambda": lasso.lambdas_, "deviance": lasso.cv_mean_, "se": lasso.cv_se_}).to_csv(tmp, index=False)
    with atomic_path(out / "cv_frequency.csv") as tmp:
        pd.Series(metrics["selection"].get("cv_frequency", {}), name="frequency").rename_axis("feature").to_csv(tmp)
    write_json(out / "model.json", doc)
    return metrics
