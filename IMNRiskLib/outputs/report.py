"""Report: one self-contained HTML file (figures embedded, opens offline) with the paper's tables
and figures and more, rendered from the saved training results (`imnrisk report DIR`)."""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import html
import json
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pandas as pd

from IMNRiskLib import RESEARCH_ONLY, __version__
from IMNRiskLib.outputs import figures
from IMNRiskLib.radiomics import ibsi
from IMNRiskLib.core.errors import InputError
from IMNRiskLib.stats.evaluation import classification, hl_df_statement
from IMNRiskLib.core.files import write_text

REQUIRED = ("metrics.json", "model.json", "predictions.csv", "table1.csv", "table2.csv", "lasso_path.csv",
            "lasso_cv.csv")
FIGURES = ("funnel", "lasso", "radscore_by_outcome", "cv_frequency", "roc", "nomogram", "calibration",
           "decision_curves", "cv_protocols", "calibration_validated")


def _f(v, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:.{nd}f}" if isinstance(v, (float, np.floating)) else str(v)


def _p(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    return "< 0.001" if v < 0.001 else f"{v:.3f}"


def _table(frame: pd.DataFrame, caption: str) -> str:
    table = frame.to_html(index=False, na_rep="", border=0, classes="t", escape=True).replace(
        "<thead>", f"<caption>{html.escape(caption)}</caption><thead>", 1)
    return f'<div class="scroll">{table}</div>'  # wide tables scroll instead of spilling


def _yes_no(value: Any) -> str:
    """True/False (or 'True'/'False' read back from a CSV) as yes/no; empty stays empty."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() in ("", "nan"):
        return ""
    return "yes" if str(value).strip().lower() in ("true", "1", "1.0", "yes") else "no"


def _table1_for_people(table1: pd.DataFrame, outcome: str) -> pd.DataFrame:
    """Table 1 as the report shows it: the variables' labels, column headers in words, p formatted."""
    t1 = table1.drop(columns=["variable"]).rename(columns={"label": "variable"})
    t1["p"] = t1["p"].map(lambda v: _p(float(v)) if str(v) not in ("", "nan") else "")
    return t1.rename(columns={"level": "level / summary", "imn_positive": f"{outcome} positive",
                              "imn_positive_pct": f"{outcome} positive %", "imn_negative": f"{outcome} negative",
                              "imn_negative_pct": f"{outcome} negative %", "total_pct": "total %",
                              "missing": "missing values"})


TABLE2_COLUMNS = {"variable": "variable", "level": "level",
                  "uni_or": "Univariable OR", "uni_ci_low": "Univariable OR 95% CI lower",
                  "uni_ci_high": "Univariable OR 95% CI upper", "uni_p": "Univariable p",
                  "multi_or": "Multivariable OR", "multi_ci_low": "Multivariable OR 95% CI lower",
                  "multi_ci_high": "Multivariable OR 95% CI upper", "multi_p": "Multivariable p",
                  "selected": "selected", "separation": "separation (Firth estimate)", "firth_or": "Firth OR", "firth_p": "Firth p"}


def _table2_for_people(table2: pd.DataFrame, labels: Dict[str, str]) -> pd.DataFrame:
    """Table 2 as the report shows it: numbers rounded, yes/no for flags, the variables' labels and
    column headers in words (TABLE2_COLUMNS), not the CSV's column names."""
    t2 = table2.copy()
    for col in ("uni_or", "uni_ci_low", "uni_ci_high", "multi_or", "multi_ci_low", "multi_ci_high", "firth_or"):
        t2[col] = t2[col].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    for col in ("uni_p", "multi_p", "firth_p"):
        t2[col] = t2[col].map(lambda v: "" if pd.isna(v) else _p(v))
    for col in ("selected", "separation"):
        t2[col] = t2[col].map(_yes_no)
    t2["variable"] = t2["variable"].map(lambda v: labels.get(v, v))
    return t2[list(TABLE2_COLUMNS)].rename(columns=TABLE2_COLUMNS)


def load_results(folder: Path) -> Dict[str, Any]:
    """Everything the report reads; a missing file is an InputError naming it."""
    missing = [name for name in REQUIRED if not (folder / name).exists()]
    if missing:
        raise InputError(f"not a complete training folder: missing {', '.join(missing)} (run imnrisk train)",
                         file=str(folder))
    try:
        results = _read_results(folder)
    except (ValueError, KeyError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"a file of the training folder is damaged ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__}); "
                         "re-run imnrisk train", file=str(folder)) from None
    problem = metrics_problem(results["metrics"])
    if problem:
        raise InputError(f"not the metrics of imnrisk train: {problem}; re-run imnrisk train",
                         file=str(folder / "metrics.json"))
    return results


# The keys of metrics.json every reader may rely on (DESIGN: training results), checked before rendering.
METRICS_KEYS = ("cohort.n", "cohort.events", "delong", "selection.funnel", "selection.radscore",
                "selection.clinical_factors") + tuple(
    f"models.{m}.apparent.{k}" for m in ("clinical", "radiomics", "combined")
    for k in ("auc", "ci95", "brier", "calibration", "hosmer_lemeshow"))


def metrics_problem(metrics) -> str:
    """The first fixed key metrics.json lacks ('' when it has them all)."""
    for dotted in METRICS_KEYS:
        value = metrics
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                return f"key {dotted} is missing"
            value = value[part]
    return ""


def _read_results(folder: Path) -> Dict[str, Any]:
    from IMNRiskLib.scoring.modelfile import ScoringModel  # start-up time: loaded when this step runs
    return {"metrics": json.loads((folder / "metrics.json").read_text(encoding="utf-8")),
            "model": ScoringModel.load(folder / "model.json"),
            "predictions": pd.read_csv(folder / "predictions.csv", index_col=0),
            "table1": pd.read_csv(folder / "table1.csv", keep_default_na=False),
            "table2": pd.read_csv(folder / "table2.csv"),
            "lasso_path": pd.read_csv(folder / "lasso_path.csv"), "lasso_cv": pd.read_csv(folder / "lasso_cv.csv")}


def make_figures(res: Dict[str, Any], folder: Path, jobs: int = 1) -> Dict[str, Dict[str, Path]]:
    """Every figure of the report, as PNG (300 dpi) and SVG in folder/figures. With jobs > 1, every
    other figure is drawn by one of the validation's worker processes (joblib's reusable loky pool,
    warm after a training) while this process draws the rest: the report's ~3 s of drawing is the
    last step of a training, with a core idle."""
    makers = figure_makers(res, folder)
    names = list(makers)
    if jobs <= 1 or len(names) < 2:
        return draw_figures(makers, names, folder)
    from joblib import Parallel, delayed  # start-up time: joblib loads only when used
    from IMNRiskLib.core.workers import loky_backend  # start-up time: as above
    elsewhere = names[1::2]
    # a generator: joblib dispatches the task from its own thread while this one draws
    theirs = Parallel(n_jobs=jobs, backend=loky_backend(jobs), return_as="generator")(
        [delayed(_draw_saved)(folder, elsewhere)])
    drawn = draw_figures(makers, names[0::2], folder)
    for part in theirs:
        drawn.update(part)
    return {name: drawn[name] for name in names}


def _draw_saved(folder: Path, names) -> Dict[str, Dict[str, Path]]:
    """Worker entry point: draw `names` from the results saved in folder."""
    return draw_figures(figure_makers(_read_results(folder), folder), names, folder)


def draw_figures(makers: Dict[str, Any], names, folder: Path) -> Dict[str, Dict[str, Path]]:
    """Draw and save the named figures (each made, saved and closed in turn)."""
    return {name: figures.save(makers[name](), folder / "figures", name) for name in names}


def figure_makers(res: Dict[str, Any], folder: Path) -> Dict[str, Any]:
    """The report's figures by name, each a function that draws it."""
    m, model, pred = res["metrics"], res["model"], res["predictions"]
    outcome = model.outcome
    labels = model.labels
    sel = m["selection"]
    makers = {
        "funnel": lambda: figures.funnel(sel["funnel"]),
        "lasso": lambda: figures.lasso(res["lasso_path"], res["lasso_cv"], sel["lasso"]["lambda_min"],
                                       sel["lasso"]["lambda_1se"]),
        "radscore_by_outcome": lambda: figures.radscore_by_outcome(pred["radscore"].to_numpy(),
                                                                   pred[outcome].to_numpy(), outcome),
        "cv_frequency": lambda: figures.cv_frequency(sel.get("cv_frequency") or {f: 1.0 for f in model.features}),
        "roc": lambda: figures.roc(m), "nomogram": lambda: figures.nomogram(model.nomogram, labels),
        "calibration": lambda: figures.calibration(m), "decision_curves": lambda: figures.decision_curves(m),
        "cv_protocols": lambda: figures.cv_protocols(m), "calibration_validated": lambda: figures.calibration_validated(m)}
    if "icc" in sel and (folder / "icc.csv").exists():  # a second reader's contours: feature stability
        makers["icc"] = lambda: figures.icc_distribution(pd.read_csv(folder / "icc.csv")["icc"].to_numpy(float),
                                                         sel["icc"]["threshold"], sel["icc"]["type"])
    return makers


def _img(paths: Dict[str, Path], alt: str) -> str:
    data = base64.b64encode(paths["png"].read_bytes()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def _risk_table(res: Dict[str, Any]) -> pd.DataFrame:
    """Sensitivity, specificity, PPV, NPV at the stored thresholds and the counts per group."""
    model, pred = res["model"], res["predictions"]
    outcome = model.outcome
    y, p = pred[outcome].to_numpy().astype(int), pred["combined"].to_numpy()
    t = model.risk_thresholds
    rows = []
    for name, thr in (("low / not low", t["low"]), ("high / not high", t["high"])):
        c = classification(y, p, thr)
        rows.append({"threshold": name, "probability >=": _f(thr), "sensitivity": _f(c["sensitivity"]),
                     "specificity": _f(c["specificity"]), "PPV": _f(c["ppv"]), "NPV": _f(c["npv"])})
    groups = np.where(p >= t["high"], "high", np.where(p < t["low"], "low", "intermediate"))
    counts = pd.DataFrame({"group": groups, "y": y}).groupby("group")["y"].agg(["count", "sum"])
    for g in ("low", "intermediate", "high"):
        if g in counts.index:
            rows.append({"threshold": f"group {g}", "probability >=": "", "sensitivity": "",
                         "specificity": "", "PPV": f"{int(counts.loc[g, 'sum'])} events",
                         "NPV": f"{int(counts.loc[g, 'count'])} patients"})
    return pd.DataFrame(rows)


def _checklist(res: Dict[str, Any]) -> pd.DataFrame:
    """TRIPOD+AI / Radiomics Quality Score items the software can fill in from this run."""
    m, model = res["metrics"], res["model"]
    cv = m["models"]["combined"].get("cv") or {}
    boot = m["models"]["combined"].get("bootstrap") or {}
    rows = [
        ("TRIPOD 5/6", "Source of data, outcome", f"cohort manifest; outcome {model.outcome}"
         + (" (SYNTHETIC phantom)" if model.synthetic else "")),
        ("TRIPOD 8", "Sample size, events", f"n = {m['cohort']['n']}, events = {m['cohort']['events']}, EPV = {_f(m['cohort']['epv'], 1)}"),
        ("TRIPOD 9", "Missing data", "complete cases per model (see Table 1 'missing')"),
        ("TRIPOD 10a/b", "Predictor handling and selection", "schema coding; univariate p < 0.1 then multivariable p < 0.05; "
         "radiomics: |r| > 0.9, VIF, MWU, LASSO (CV lambda), forward LR"),
        ("TRIPOD 10d", "Performance measures", "AUC (DeLong CI), calibration intercept/slope, HL, Brier, DCA"),
        ("TRIPOD 10b/AI", "Internal validation", f"nested {cv.get('folds', '-')}-fold CV x {cv.get('repeats', '-')}; "
         f"bootstrap optimism (B = {boot.get('b', '-')}) with the whole pipeline refitted"),
        ("TRIPOD 15a", "Full model", "model.json: all coefficients, z-score means/SDs, nomogram"),
        ("TRIPOD 16", "Model performance", "sections 5, 7, 8, 9 of this report"),
        ("TRIPOD+AI 18", "Software and versions", ", ".join(f"{k} {v}" for k, v in model.software.items())),
        ("RQS 1", "Image protocol quality", "for the author: acquisition protocol to be reported"),
        ("RQS 2/3", "Multiple segmentations, phantom study", _segmentations_item(m)),
        ("RQS 4", "Imaging at multiple time points", "for the author"),
        ("RQS 5", "Feature reduction / multiple testing", "yes: correlation, VIF, MWU, LASSO inside each fold"),
        ("RQS 6", "Multivariable analysis with non-radiomics features", "yes: clinical-radiomics model"),
        ("RQS 9/10", "Discrimination and calibration statistics", "yes, with resampling"),
        ("RQS 12", "Validation", "internal (CV + bootstrap); external: imnrisk validate on a new cohort (for the author)"),
        ("RQS 15", "Decision curve analysis", "yes (section 8)"),
        ("RQS 16", "Open science", "settings hash and model.json shareable (no patient data)"),
        ("TRIPOD 4b, 5c, 11, 21, 22", "Study dates, setting, risk groups rationale, limitations, funding", "for the author"),
    ]
    # CLEAR / IBSI items filled from the extraction settings and the phantom's conformance table
    rows[-1:-1] = ibsi.reporting_items(model.extraction, model.software, model.features)
    return pd.DataFrame(rows, columns=["item", "topic", "this run"])


def _segmentations_item(m: Dict[str, Any]) -> str:
    """RQS 2: whether features were filtered by inter-reader agreement in this run."""
    icc = m["selection"].get("icc")
    if not icc:
        return "for the author (no second reader's masks, Mask2, in this run)"
    return (f"yes: two readers on {icc['n_patients']} patients, features with {icc['type']} < {icc['threshold']:g} "
            "dropped before selection (inside each fold)")


def _ibsi_section() -> str:
    """The conformance table on IBSI-1's digital phantom (shipped, generated by ibsi.py; see README)."""
    table = ibsi.load_table()
    return (f"<p>{html.escape(ibsi.summary_sentence(table).replace('`', ''))}</p>"
            f"{_table(ibsi.class_summary(table), 'Per pyradiomics class: features with an IBSI name, matching on the phantom, deviations and why')}"
            f"{_table(ibsi.variants_summary(table), 'IBSI variants of the IBSI profile (imnrisk: ibsi_variants: true) on the phantom')}"
            f"<p>{html.escape(ibsi.WAVELET_NOTE)}</p>")


def _validated_table(m: Dict[str, Any]) -> pd.DataFrame:
    """Validated discrimination and calibration slope of each model first, apparent beside them."""
    rows = []
    for k in ("clinical", "radiomics", "combined"):
        e = m["models"][k]
        cv, boot, app = e.get("cv") or {}, e.get("bootstrap") or {}, e["apparent"]
        rows.append({"model": figures.MODEL_LABELS[k],
                     "nested-CV AUC": f"{_f(cv.get('auc_mean'))} ± {_f(cv.get('auc_sd'))}" if cv else "-",
                     "bootstrap-corrected AUC": _f(boot.get("auc_corrected")),
                     "nested-CV calibration slope": f"{_f(cv.get('slope_mean'))} ± {_f(cv.get('slope_sd'))}" if cv else "-",
                     "bootstrap-corrected slope": _f(boot.get("slope_corrected")),
                     "apparent AUC": _f(app["auc"]), "apparent slope": _f(app["calibration"]["slope"])})
    return pd.DataFrame(rows)


def _accuracy_table(m: Dict[str, Any]) -> pd.DataFrame:
    """Every accuracy beside the no-information rate, with caret's one-sided exact binomial p."""
    rows = []
    for k in ("clinical", "radiomics", "combined"):
        e = m["models"][k]
        for label, entry in (("nested CV", (e.get("cv") or {}).get("accuracy_vs_nir")),
                             ("leaky CV", (e.get("cv_leaky") or {}).get("accuracy_vs_nir")),
                             ("apparent (training data)", e["apparent"].get("accuracy_vs_nir"))):
            if entry:
                rows.append({"model": figures.MODEL_LABELS[k], "estimate": label,
                             "accuracy (threshold 0.5)": f"{_f(100 * entry['accuracy'], 1)}%",
                             "no-information rate": f"{_f(100 * entry['nir'], 1)}%",
                             "p (accuracy > NIR)": _p(entry["p_accuracy_gt_nir"])})
    return pd.DataFrame(rows)


def _epv_section(m: Dict[str, Any]) -> str:
    """Events per variable against the final df, every fitted parameter and every candidate, per
    selection step, and Riley et al.'s minimum sample size."""
    ss = m.get("sample_size")
    if not ss:
        return f"<p>Events per variable of the combined model {_f(m['cohort']['epv'], 1)}.</p>"
    text = (f"<p>Events per variable (EPV; {ss['limiting_events']} events in the smaller outcome class): "
            f"<b>{_f(ss['epv_final'], 1)}</b> against the final combined model's {ss['final_df']} df; "
            f"<b>{_f(ss['epv_fitted'], 1)}</b> against the {ss['fitted_parameters']} parameters really fitted "
            f"({ss['radscore_coefficients']} Rad-Score coefficients + {ss['clinical_df']} clinical df); "
            f"<b>{_f(ss['epv_candidates'], 3)}</b> against the {ss['candidate_parameters']} candidate parameters "
            f"screened ({ss['candidate_features']} radiomics features + {ss['candidate_clinical_df']} clinical df). "
            "Selection on the outcome spends those candidates: the final model's EPV flatters the design.</p>")
    steps = pd.DataFrame([{"selection step": st["step"], "features left": st["features"],
                           "events per feature": _f(st["epv"], 3)} for st in ss["per_step"]])
    riley = pd.DataFrame([{"anticipated Cox-Snell R2 from": r["r2_source"], "parameters": f"{r['parameters']} ({r['basis']})",
                           "Cox-Snell R2": _f(r.get("r2_cs")), "n (criterion 1: shrinkage >= 0.9)": r["criteria"][0]["n"] if "criteria" in r else "-",
                           "n (2: optimism in Nagelkerke R2 <= 0.05)": r["criteria"][1]["n"] if "criteria" in r else "-",
                           "n (3: risk +-0.05)": r["criteria"][2]["n"] if "criteria" in r else "-",
                           "minimum n": r.get("n", r.get("error")), "this cohort": ss["n"],
                           "met": ("yes" if r.get("met") else "no") if "n" in r else "-"}
                          for r in ss.get("riley", [])])
    out = text + _table(steps, "Events per candidate feature at each selection step")
    if len(riley):
        out += _table(riley, "Minimum sample size (Riley et al. 2020, BMJ; as R pmsampsize type 'b')")
    return out


def _shrinkage_section(m: Dict[str, Any]) -> str:
    """Apparent calibration of the combined model before and after uniform shrinkage."""
    shr = m.get("shrinkage")
    if not shr:
        return ("<p>The saved combined model is not shrunk (train with <code>--shrink bootstrap</code> to shrink its "
                "coefficients by the bootstrap-corrected calibration slope).</p>")
    rows = []
    for label, c in (("as fitted", shr["apparent_unshrunk"]), (f"shrunk (factor {_f(shr['factor'])})", shr["apparent_shrunk"])):
        rows.append({"combined model": label, "intercept": _f(c["intercept"]), "slope": _f(c["slope"]),
                     "calibration-in-the-large": _f(c["citl"]), "mean predicted": _f(c["mean_predicted"]),
                     "observed rate": _f(c["observed"]), "Brier": _f(c["brier"]),
                     "HL chi2 (df)": f"{_f(c['hosmer_lemeshow']['chi2'], 2)} ({c['hosmer_lemeshow']['df']})"})
    return (f"<p>{html.escape(shr['method'])}: coefficients x {_f(shr['factor'])}, intercept "
            f"{_f(shr['intercept_before'])} -> {_f(shr['intercept_after'])}. model.json holds the shrunk model; predict uses it.</p>"
            + _table(pd.DataFrame(rows), "Apparent calibration of the combined model, as fitted and shrunk (training cohort)"))


def _protocol_section(folder: Path, m: Dict[str, Any]) -> str:
    """The run's protocol, the deviations of IMNRisk's default from the paper (protocols.py), and,
    when the demo trained both protocols (protocols.json), their validated numbers side by side."""
    from IMNRiskLib.modelling import protocols  # start-up time: loaded when this step runs
    info = m.get("protocol") or protocols.describe(protocols.DEFAULT_PROTOCOL)
    parts = [f"<p>This run: <b>{html.escape(info['name'])}</b> protocol ({html.escape(info['description'])}).</p>",
             _table(pd.DataFrame(protocols.deviation_rows()),
                    "Deviations of IMNRisk's default from the paper, what --protocol paper does, and why")]
    path = folder / "protocols.json"
    if path.exists():
        rows = []
        for c in json.loads(path.read_text(encoding="utf-8"))["protocols"]:
            for model in ("radiomics", "combined"):
                e = c["models"][model]
                rows.append({"protocol": c["protocol"], "model": figures.MODEL_LABELS[model],
                             "validation run": ", ".join(c.get("validation") or []) or "none",
                             "nested-CV AUC": _f(e["nested_auc"]), "nested-CV slope": _f(e["nested_slope"]),
                             "bootstrap AUC / slope": f"{_f(e['bootstrap_auc'])} / {_f(e['bootstrap_slope'])}",
                             "leaky-CV AUC": _f(e["leaky_auc"]), "apparent AUC": _f(e["apparent_auc"]),
                             "Rad-Score features": ", ".join(c["features"]) or "none",
                             "clinical factors": (", ".join(c["clinical_factors"]) or "none")
                             if model == "combined" else "(not in this model)"})
        parts.append(_table(pd.DataFrame(rows), "The two protocols on the same cohort (validated numbers first)"))
    return "".join(parts)


def _icc_section(m: Dict[str, Any], figs: Dict[str, Dict[str, Path]]) -> str:
    """Feature stability between two readers: the ICC distribution and the selected features' ICC."""
    icc = m["selection"].get("icc")
    if not icc or "icc" not in figs:
        return ("<p>Feature stability: no second reader's contours (manifest column Mask2), so no ICC filter; "
                "every feature entered selection.</p>")
    rows = pd.DataFrame([{"feature": f, icc["type"]: _f(v)} for f, v in icc["selected"].items()])
    undefined = f", {icc['n_undefined']} undefined (no variance) dropped" if icc["n_undefined"] else ""
    return (f"<h3>Feature stability ({html.escape(icc['type'])})</h3>"
            f"<p>{html.escape(icc['description'])}, between the two readers' contours (Mask and Mask2) of "
            f"{icc['n_patients']} patients. Features with ICC below {icc['threshold']:g} were dropped before any "
            f"other selection step: {icc['n_kept']} of {icc['n_features']} kept{undefined}; "
            "in cross-validation and the bootstrap the ICC is recomputed on each training sample.</p>"
            f"{_img(figs['icc'], 'ICC of every feature between the two readers (dashed: threshold)')}"
            f"{_table(rows, 'ICC of the Rad-Score features (all patients read twice)')}")


def render(folder, jobs: int = 1) -> Path:
    """Write folder/report.html (and figures/*.png, *.svg) from the saved results; jobs > 1 when a
    warm worker pool is there to draw half the figures (`make_figures`)."""
    folder = Path(folder)
    res = load_results(folder)
    figs = make_figures(res, folder, jobs)
    m, model = res["metrics"], res["model"]
    settings_hash = hashlib.sha256(json.dumps(model.extraction, sort_keys=True).encode()).hexdigest()
    disc, delong, cal, validation = _model_tables(m)
    outcome = model.outcome
    t1 = _table1_for_people(res["table1"], outcome)
    t2 = _table2_for_people(res["table2"], {name: label or name
                                            for name, label in model.labels.items()})
    missing = _missing_table(res["table1"])
    combined_terms = ", ".join(f"{t} {c:+.3f}" for t, c in model.coefficients("combined").items())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in m.get("notes", []))
    synthetic = model.synthetic
    # the report travels: no folder or cohort name in it (either may be a patient's or a study's name)
    cohort_name = f"{m['cohort']['n']} patients, {m['cohort']['events']} events"
    body = f"""
<header><h1>IMNRisk report: {html.escape(cohort_name)}</h1>
<p class="warn">{html.escape(RESEARCH_ONLY)}{' Trained on SYNTHETIC phantom data: a demonstration, not a clinical model.' if synthetic else ''}</p>
<p>Generated {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by IMNRisk {__version__};
pyradiomics {html.escape(str(model.software.get('pyradiomics', '?')))}; extraction settings SHA-256 <code>{settings_hash[:16]}</code>;
model SHA-256 <code>{model.sha256[:16]}</code>.</p></header>
{_fallback_box(m)}
<h2>Validated performance (what new patients can expect)</h2>
<p>Nested CV refits every selection step inside each training fold; the bootstrap corrects for optimism
(Harrell). The apparent numbers, computed on the patients the models were fitted on, stand beside them:
they are optimistic (an apparent calibration slope of 1 says nothing).</p>
{_table(_validated_table(m), 'Validated discrimination and calibration slope, apparent beside them')}
{_img(figs['calibration_validated'], 'Validated calibration: nested-CV out-of-fold curve against the apparent one')}
{_table(_accuracy_table(m), 'Accuracy beside the no-information rate (always predicting the majority class); one-sided exact binomial test of accuracy > NIR, as caret confusionMatrix')}
{_shrinkage_section(m)}
<h2>1. Cohort</h2>
<p>n = {m['cohort']['n']} patients, {m['cohort']['events']} with IMN metastasis.</p>
{_epv_section(m)}
{_table(t1, 'Table 1. Characteristics by outcome (counts, column %; p by chi-square or Fisher, t-test or Mann-Whitney U)')}
<p>Missing values per variable (each model uses complete cases):</p>{_table(missing, 'Missing data') if len(missing) else '<p>none</p>'}
<h2>2. Clinical model</h2>
{_table(t2, 'Table 2. Univariate and multivariable logistic regression (OR, Wald 95% CI, p); separation: Firth estimate')}
<p>Selected clinical factors: <b>{html.escape(', '.join(m['selection']['clinical_factors']))}</b>.</p>
{_clinical_selection_section(m)}
<h2>3. Radiomics</h2>
{_icc_section(m, figs)}
{_img(figs['funnel'], 'Feature-selection funnel')}
{_img(figs['lasso'], 'LASSO coefficient path and cross-validated deviance')}
<p class="formula">{html.escape(m['selection']['radscore']['formula'])}</p>
{_img(figs['radscore_by_outcome'], 'Rad-Score by outcome')}
{_img(figs['cv_frequency'], 'Feature selection frequency across CV folds')}
<h2>4. Discrimination</h2>
{_img(figs['roc'], 'ROC curves of the three models')}
<p>On the training data (apparent): optimistic; the validated AUCs are in the first section and section 8.</p>
{_table(disc, 'Apparent AUC with DeLong 95% CI, on the training data')}
{_table(delong, 'DeLong tests (paired), on the training data (apparent)')}
<h2>5. Nomogram</h2>
{_img(figs['nomogram'], 'Nomogram of the clinical-radiomics model')}
<p>Combined model (log-odds): {html.escape(combined_terms)}.</p>
<h2>6. Calibration</h2>
{_img(figs['calibration'], 'Calibration curves')}
{_table(cal, 'Apparent calibration and Hosmer-Lemeshow test, on the training data (validated slopes: first section)')}
<h2>7. Decision curves</h2>
{_img(figs['decision_curves'], 'Decision curves')}
<p>{html.escape(_dca_range(m))}</p>
<h2>8. Validation</h2>
{_img(figs['cv_protocols'], 'Nested against leaky cross-validation')}
{_table(validation, 'Internal validation: repeated stratified CV (mean ± SD over folds) and bootstrap optimism correction')}
<p>Nested: every selection step refitted inside each training fold. Leaky: features and clinical factors selected once
on all patients (the paper's protocol), only coefficients refitted; it reports more than new patients will see.</p>
<h2>9. Risk groups</h2>
<p>{html.escape(model.risk_explanation)}.</p>
{_table(_risk_table(res), 'Risk groups on the training data (apparent)')}
<h2>10. TRIPOD+AI / Radiomics Quality Score / CLEAR</h2>
{_table(_checklist(res), 'Checklist items filled from this run; the others are for the author')}
<h2>11. IBSI conformance of the features</h2>
{_ibsi_section()}
<h2>12. Protocol: deviations from the paper</h2>
{_protocol_section(folder, m)}
<h2>Notes</h2><ul>{notes or '<li>none</li>'}</ul>
"""
    write_text(folder / "report.html", _html_page(cohort_name, body))
    return folder / "report.html"


def _model_tables(m: Dict[str, Any]) -> tuple:
    """The report's per-model tables: apparent discrimination, DeLong tests, apparent calibration with
    Hosmer-Lemeshow, and internal validation (nested and leaky CV, bootstrap)."""
    models = ("clinical", "radiomics", "combined")
    disc = pd.DataFrame([{"model": figures.MODEL_LABELS[k], "apparent AUC": _f(m["models"][k]["apparent"]["auc"]),
                          "95% CI (DeLong)": f"{_f(m['models'][k]['apparent']['ci95'][0])}-{_f(m['models'][k]['apparent']['ci95'][1])}",
                          "apparent Brier score": _f(m["models"][k]["apparent"]["brier"])} for k in models])
    delong = pd.DataFrame([{"comparison": f"{d['a']} vs {d['b']}", "Z": _f(d["z"], 4), "p": _p(d["p"])}
                           for d in m["delong"]])
    cal = pd.DataFrame([{"model": figures.MODEL_LABELS[k],
                         "apparent intercept": _f(m["models"][k]["apparent"]["calibration"]["intercept"]),
                         "apparent slope": _f(m["models"][k]["apparent"]["calibration"]["slope"]),
                         "calibration-in-the-large": _f(m["models"][k]["apparent"]["calibration"]["citl"]),
                         "HL chi2": _f(m["models"][k]["apparent"]["hosmer_lemeshow"]["chi2"]),
                         "HL df": m["models"][k]["apparent"]["hosmer_lemeshow"]["df"],
                         "HL p": _p(m["models"][k]["apparent"]["hosmer_lemeshow"]["p"]),
                         "HL df rule": hl_df_statement(m["models"][k]["apparent"]["hosmer_lemeshow"])[0],
                         "HL note": hl_df_statement(m["models"][k]["apparent"]["hosmer_lemeshow"])[1] or ""}
                        for k in models])
    val_rows = []
    for k in models:
        e = m["models"][k]
        row = {"model": figures.MODEL_LABELS[k]}
        for key, label in (("cv", "nested CV"), ("cv_leaky", "leaky CV")):
            if key in e:
                row[f"{label} AUC"] = f"{_f(e[key]['auc_mean'])} ± {_f(e[key]['auc_sd'])}"
                row[f"{label} accuracy"] = f"{_f(100 * e[key]['accuracy_mean'], 1)}% ± {_f(100 * (e[key]['accuracy_sd'] or 0), 1)}%"
        if "cv" in e:
            c = e["cv"]
            row["nested slope mean/SD/min/max"] = f"{_f(c['slope_mean'])} / {_f(c['slope_sd'])} / {_f(c.get('slope_min'))} / {_f(c.get('slope_max'))}"
        if "bootstrap" in e:
            b = e["bootstrap"]
            row["bootstrap-corrected AUC / slope"] = f"{_f(b['auc_corrected'])} / {_f(b['slope_corrected'])} (B = {b['b']})"
        row["apparent AUC (training data)"] = _f(e["apparent"]["auc"])
        val_rows.append(row)
    return disc, delong, cal, pd.DataFrame(val_rows)


def _missing_table(table1: pd.DataFrame) -> pd.DataFrame:
    """Missing values per variable, from Table 1 (variables with none are left out)."""
    missing = table1.loc[table1["missing"].astype(str).str.strip().isin(["", "nan"]) == False,  # noqa: E712
                                ["label", "missing"]].rename(columns={"label": "variable"})
    missing["missing"] = missing["missing"].astype(float).astype(int)
    return missing


def _html_page(title: str, body: str) -> str:
    """The self-contained HTML page around the report's body (styles inline, no external file)."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>IMNRisk report: {html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
h2{{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}} .warn{{background:#fff3cd;padding:.5em;border-left:4px solid #D55E00}}
table.t{{border-collapse:collapse;font-size:12px;margin:.6em 0}} table.t td,table.t th{{padding:2px 6px;border-bottom:1px solid #eee;text-align:left}}
caption{{text-align:left;font-weight:bold;padding:.3em 0}} figure{{margin:1em 0}} img{{max-width:100%}} figcaption{{font-size:12px;color:#555}}
.formula{{font-family:monospace;background:#f4f4f4;padding:.5em}} .scroll{{overflow-x:auto}}</style></head>
<body>{body}</body></html>
"""


ASSOCIATION_SHOWN = 0.5  # pairs of entered clinical variables this associated are listed


def _fallback_box(m: Dict[str, Any]) -> str:
    """A warning box listing every selection step that kept nothing (and what was used instead)."""
    fallbacks = m.get("selection", {}).get("fallbacks") or []
    if not fallbacks:
        return ""
    items = "".join(f"<li>{html.escape(f)}</li>" for f in fallbacks)
    return (f'<div class="warn fallback"><b>Warning: a selection step kept nothing; a fallback was used.</b>'
            f"<ul>{items}</ul></div>")


def _clinical_selection_section(m: Dict[str, Any]) -> str:
    """How the clinical factors were chosen: collinear pairs left out, then the backward
    elimination path (likelihood ratio) and the kept factors' drop-one tests."""
    rec = m.get("selection", {}).get("clinical_selection") or {}
    if not rec:
        return ""
    test = {"lrt": "likelihood-ratio test (R drop1(test = \"LRT\"))", "wald": "Wald p (the paper)"}.get(rec.get("test"), "?")
    out = [f"<h3>Clinical selection</h3><p>Entered the multivariable step (univariate p): "
           f"{html.escape(', '.join(rec.get('entered', [])) or 'none')}; elimination by {html.escape(test)}.</p>"]
    strong = [a for a in rec.get("associations", []) if (a["value"] or 0) >= ASSOCIATION_SHOWN]
    if strong:
        left_out = {(c["dropped"], c["kept"]) for c in rec.get("collinear", [])}
        pairs = pd.DataFrame([{"pair": f"{a['a']} / {a['b']}", "measure": a["measure"], "value": _f(a["value"], 2),
                               "choice": (f"{a['a']} left out" if (a["a"], a["b"]) in left_out else
                                          f"{a['b']} left out" if (a["b"], a["a"]) in left_out else "both kept")}
                              for a in strong])
        out.append(_table(pairs, f"Associated candidates (|Cramer's V| or |Spearman| >= {ASSOCIATION_SHOWN:g})"))
    if rec.get("collinear"):
        pairs = pd.DataFrame([{"left out": c["dropped"], "kept": c["kept"], "measure": c["measure"],
                               "value": _f(c["value"], 2), "univariate p kept": _p(c["p_kept"]),
                               "univariate p left out": _p(c["p_dropped"])} for c in rec["collinear"]])
        out.append(_table(pairs, "Collinear candidates: the one weaker in the univariate screen left out before the multivariable step"))
    if rec.get("test") == "lrt":
        path = pd.DataFrame([{"step": s["step"], "removed": s["removed"], "LR chi2": _f(s["chi2"]), "df": s["df"],
                              "p": _p(s["p"])} for s in rec.get("path", [])])
        out.append(_table(path, "Backward elimination: the variable with the largest LRT p removed at each step")
                   if len(path) else "<p>Backward elimination removed no variable.</p>")
        final = pd.DataFrame([{"kept": f["term"], "LR chi2": _f(f["chi2"]), "df": f["df"], "p": _p(f["p"])}
                              for f in rec.get("final", [])])
        if len(final):
            out.append(_table(final, "Kept factors: drop-one likelihood-ratio test in the final model"))
    return "\n".join(out)


def _dca_range(m: Dict[str, Any]) -> str:
    """The thresholds where the combined model has the highest net benefit of all strategies."""
    nb = {k: np.array(m["models"][k]["apparent"]["net_benefit"]["model"]) for k in ("clinical", "radiomics", "combined")}
    t = np.array(m["models"]["combined"]["apparent"]["net_benefit"]["thresholds"])
    treat_all = np.array(m["models"]["combined"]["apparent"]["net_benefit"]["treat_all"])
    best = (nb["combined"] >= np.maximum.reduce([nb["clinical"], nb["radiomics"], treat_all, np.zeros_like(t)]) - 1e-12) \
        & (nb["combined"] > 0)
    where = "On the training data (apparent, optimistic)"
    if not best.any():
        return f"{where}, the combined model never has the highest net benefit."
    idx = np.flatnonzero(best)
    return (f"{where}, the combined model has the highest net benefit at {len(idx)} of 99 thresholds, between "
            f"{t[idx.min()]:.2f} and {t[idx.max()]:.2f}.")
