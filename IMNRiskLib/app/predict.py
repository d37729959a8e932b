"""Predict for cohorts: score a cohort's feature table with a frozen model, and validate a frozen
model externally (`imnrisk validate`). One patient is scored by the scoring core (`scoring`)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict

import numpy as np

from IMNRiskLib import RESEARCH_ONLY
from IMNRiskLib.scoring import domain
from IMNRiskLib.radiomics import features
from IMNRiskLib.core.errors import InputError
from IMNRiskLib.core.files import atomic_path, safe_outputs, write_json
from IMNRiskLib.core.jsonio import json_clean
from IMNRiskLib.scoring.modelfile import ScoringModel
from IMNRiskLib.scoring import model_settings, score_values
from IMNRiskLib.scoring.core import verdict

if TYPE_CHECKING:  # pandas and scipy (evaluation) load only for cohorts: scoring one patient needs neither
    import pandas as pd


def score_cohort(model: ScoringModel, feats: pd.DataFrame, clinical: pd.DataFrame) -> pd.DataFrame:
    """Rad-Score, the three models' probabilities and the verdict on the training ranges (the scoring
    core's rules; the images are not seen here) for every patient of a cohort."""
    import pandas as pd  # start-up time: pandas loads only when used
    missing = [f for f in model.features if f not in feats.columns]
    if missing:
        raise InputError(f"features table lacks {len(missing)} feature(s) the model needs, e.g. {missing[0]}",
                         field=missing[0])
    rows = {}
    for pid in feats.index:
        values = feats.loc[pid, model.features].to_dict()
        bad = [f for f, v in values.items() if not np.isfinite(float(v))]
        if bad:
            raise InputError(f"feature value is missing or not finite ({values[bad[0]]})", id=pid, field=bad[0])
        row = {k: clinical.loc[pid, k] for k in model.factors}
        if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in row.values()):
            raise InputError("a clinical factor the model needs is missing", id=pid,
                             field=next(k for k, v in row.items() if v is None or v != v))
        numbers = score_values(model, values, row)
        judged = verdict(domain.check(model.domain, values, numbers["radscore"], row), {})
        rows[pid] = {"radscore": numbers["radscore"], "radiomics": numbers["radiomics_probability"],
                     "clinical": numbers["clinical_probability"], "combined": numbers["probability"],
                     "verdict": judged.state}
    return pd.DataFrame.from_dict(rows, orient="index")


def validate_external(model_path, cohort_path, out_dir, features_path=None, jobs: int = 1, recalibrate: bool = False,
                      force: bool = False, show_bar: bool = True) -> Dict[str, Any]:
    """External validation of a frozen model: discrimination, calibration-in-the-large and slope,
    Hosmer-Lemeshow, Brier and decision curves on a new labelled cohort."""
    from IMNRiskLib.stats import evaluation  # start-up time: loaded when this step runs
    from IMNRiskLib.inputs.cohort import read_cohort  # start-up time: loaded when this step runs
    model = ScoringModel.load(model_path)
    out = Path(out_dir)
    names = ("validation.json", "predictions.csv") + (("model_recalibrated.json",) if recalibrate else ())
    outputs = safe_outputs([out / n for n in names], [model_path, cohort_path, features_path], force, folder=out)
    schema = model.schema
    cohort = read_cohort(cohort_path, schema, need_outcome=True, need_imaging=features_path is None)
    missing_cols = [f for f in model.factors if f not in cohort.clinical_columns]
    if missing_cols:
        raise InputError(f"missing clinical column(s) the model needs: {', '.join(missing_cols)}", file=str(cohort_path))
    if features_path is None:
        run = features.extract_cohort(cohort, model_settings(model), out / ".imnrisk-cache", jobs=jobs,
                                      show_bar=show_bar, second_reader=False)  # a frozen model needs one reading
        if run.failures:
            f = run.failures[0]
            raise InputError(f"{len(run.failures)} case(s) could not be extracted, e.g. {f['reason']}",
                             file=f["file"], id=f["ID"], field=f["field"] or None)
        feats = run.features
    else:
        feats = features.read_features(features_path)
    labelled = [c.id for c in cohort.cases if c.outcome is not None and c.id in feats.index]
    absent = [c.id for c in cohort.cases if c.outcome is not None and c.id not in feats.index]
    if absent:
        raise InputError(f"no features for {len(absent)} patient(s)", file=str(features_path), id=absent[0], field="ID")
    try:
        pred = score_cohort(model, feats.loc[labelled], cohort.clinical_frame().loc[labelled])
    except InputError as exc:
        in_features = features_path is not None and exc.field in model.features
        raise exc.located(file=str(features_path if in_features else cohort_path)) from None
    verdicts = pred.pop("verdict")
    y = cohort.outcome().loc[labelled].to_numpy()
    try:
        y = evaluation.check_outcome(y, schema.outcome)
    except InputError as exc:
        raise exc.located(file=str(cohort_path)) from None
    result: Dict[str, Any] = {"n": int(len(y)), "events": int(y.sum()), "model_sha256": model.sha256,
                              "models": {}, "notice": RESEARCH_ONLY,
                              # the scoring core's verdict on the training ranges, per patient (manifest IDs)
                              "verdicts": {state: int(n) for state, n in Counter(verdicts).items()},
                              "not_reliable_ids": [str(i) for i in verdicts.index[verdicts == "not_reliable"]]}
    for m in ("clinical", "radiomics", "combined"):
        # HL df = g: a frozen model scored on patients it never saw
        result["models"][m] = evaluation.evaluate(y, pred[m].to_numpy(), probability=True, external=True)
    result["delong"] = [{"a": a, "b": b, **{k: v for k, v in evaluation.delong_test(y, pred[a], pred[b]).items()
                                             if k in ("z", "p")}}
                        for a, b in (("clinical", "radiomics"), ("clinical", "combined"), ("radiomics", "combined"))]
    cal = result["models"]["combined"]["calibration"]
    with outputs.staged(last="validation.json") as stage:  # all outputs or none (the caller holds the lock)
        if recalibrate and cal["intercept"] is not None:
            write_json(stage / "model_recalibrated.json", model.recalibrated(cal["intercept"], cal["slope"]))
            result["recalibrated_model"] = "model_recalibrated.json"  # a name, not a path
        result = json_clean(result)
        with atomic_path(stage / "predictions.csv") as tmp:
            pred.assign(**{schema.outcome: y}).to_csv(tmp, index_label="ID", float_format="%.10g")
        write_json(stage / "validation.json", result)
    return result
