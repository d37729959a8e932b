"""What `imnrisk train`, `validate` and `demo` print when they finish: the validated numbers first."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List

from IMNRiskLib.core.errors import InputError

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def say(message: str) -> None:
    """Progress and summaries go to stderr; stdout is kept for results (e.g. --json)."""
    print(message, file=sys.stderr, flush=True)


def report_errors(errors: List[InputError]) -> None:
    """Each problem as the one line `imnrisk: error: <file, ID, field: reason>`."""
    for err in errors:
        say(f"imnrisk: error: {err}")


def number_text(value, digits: int = 3, scale: float = 1.0) -> str:
    """A number for people, '-' when it could not be estimated (e.g. under separation)."""
    return "-" if value is None else f"{value * scale:.{digits}f}"


def print_training_summary(metrics: dict, out: Path) -> None:
    """`imnrisk train`: apparent AUCs, the Rad-Score, the clinical factors, then the validated numbers."""
    apparent = {m: metrics["models"][m]["apparent"] for m in ("clinical", "radiomics", "combined")}
    aucs = ", ".join(f"{m} {number_text(a['auc'])} ({number_text(a['ci95'][0])}-{number_text(a['ci95'][1])})" for m, a in apparent.items())
    delong = ", ".join(f"{d['a']} vs {d['b']} p = {number_text(d['p'])}" for d in metrics["delong"])
    protocol = (metrics.get("protocol") or {}).get("name", "imnrisk")
    say(f"imnrisk train ({protocol} protocol): n = {metrics['cohort']['n']} ({metrics['cohort']['events']} events); "
        f"apparent AUC {aucs}")
    say(f"  {metrics['selection']['radscore']['formula']}")
    say(f"  clinical factors: {', '.join(metrics['selection']['clinical_factors'])}; DeLong: {delong}")
    icc = metrics["selection"].get("icc")
    if icc:
        say(f"  {icc['type']} of the Rad-Score features (2 readers, {icc['n_patients']} patients): "
            + ", ".join(f"{f} {number_text(v)}" for f, v in icc["selected"].items()))
    cv = metrics["models"]["combined"].get("cv")
    if cv:
        leaky = metrics["models"]["combined"]["cv_leaky"]
        say(f"  combined, {cv['folds']}-fold CV x {cv['repeats']}: AUC {number_text(cv['auc_mean'])} +- {number_text(cv['auc_sd'])} "
            f"(nested) vs {number_text(leaky['auc_mean'])} +- {number_text(leaky['auc_sd'])} (leaky: selection on all patients); "
            f"accuracy {number_text(cv['accuracy_mean'], 1, 100)}% +- {number_text(cv['accuracy_sd'], 1, 100)}%")
    boot = metrics["models"]["combined"].get("bootstrap")
    if boot:
        say(f"  bootstrap ({boot['b']}): optimism-corrected AUC {number_text(boot['auc_corrected'])}, "
            f"slope {number_text(boot['slope_corrected'])}")
    fallbacks = metrics["selection"].get("fallbacks", [])
    for fallback in fallbacks:  # a selection step kept nothing: never silent
        say(f"  WARNING {fallback}")
    print_validation_summary(metrics)
    for note in metrics.get("notes", []):
        if note not in fallbacks:
            say(f"  note: {note}")
    say(f"  -> {out / 'model.json'}, {out / 'metrics.json'}")


def print_validation_summary(metrics: dict) -> None:
    """Calibration slope (validated first), accuracy beside the no-information rate, EPV counts."""
    c = metrics["models"]["combined"]
    cv, boot = c.get("cv") or {}, c.get("bootstrap") or {}
    say(f"  combined calibration slope: nested CV {number_text(cv.get('slope_mean'))}, bootstrap-corrected "
        f"{number_text(boot.get('slope_corrected'))} (apparent {number_text(c['apparent']['calibration']['slope'])})")
    acc = [f"apparent {number_text(c['apparent']['accuracy_vs_nir']['accuracy'], 1, 100)}% "
           f"(p vs NIR {number_text(c['apparent']['accuracy_vs_nir']['p_accuracy_gt_nir'])})"]
    if cv.get("accuracy_vs_nir"):
        acc.append(f"nested CV {number_text(cv['accuracy_vs_nir']['accuracy'], 1, 100)}% "
                   f"(p vs NIR {number_text(cv['accuracy_vs_nir']['p_accuracy_gt_nir'])})")
    say(f"  combined accuracy at 0.5: {', '.join(acc)}; no-information rate {number_text(metrics['cohort']['nir'], 1, 100)}%")
    ss = metrics.get("sample_size")
    if ss:
        say(f"  events per variable: {ss['limiting_events']} events / {ss['final_df']} final df = {number_text(ss['epv_final'], 1)}; "
            f"/ {ss['fitted_parameters']} fitted ({ss['radscore_coefficients']} Rad-Score coefficients + "
            f"{ss['clinical_df']} clinical df) = {number_text(ss['epv_fitted'], 1)}; / {ss['candidate_parameters']} candidates "
            f"screened ({ss['candidate_features']} features + {ss['candidate_clinical_df']} clinical df) = "
            f"{number_text(ss['epv_candidates'], 3)}")
        riley = next((r for r in ss.get("riley", []) if "n" in r and r["basis"] == "candidate parameters"), None)
        if riley:
            say(f"  Riley minimum n for {riley['parameters']} candidate parameters (Cox-Snell R2 {number_text(riley['r2_cs'])} "
                f"from {riley['r2_source']}): {riley['n']} (this cohort: {ss['n']})")
    shr = metrics.get("shrinkage")
    if shr:
        say(f"  shrinkage: factor {number_text(shr['factor'])}, intercept {number_text(shr['intercept_before'])} -> "
            f"{number_text(shr['intercept_after'])}")


def demo_closing_line(metrics: dict, seconds: float, report: Path) -> str:
    """The demo's last line: the validated AUCs first (nested CV, bootstrap-corrected, or a word that
    the run had none), the apparent ones after them and labelled, then DeLong and the report."""
    models = ("clinical", "radiomics", "combined")
    entries = {m: metrics["models"][m] for m in models}
    validated = []
    if all(entries[m].get("cv") for m in models):
        validated.append("nested-CV AUC " + ", ".join(
            f"{m} {number_text(entries[m]['cv'].get('auc_mean'))} +- {number_text(entries[m]['cv'].get('auc_sd'))}" for m in models))
    if all(entries[m].get("bootstrap") for m in models):
        validated.append("bootstrap-corrected AUC " + ", ".join(
            f"{m} {number_text(entries[m]['bootstrap'].get('auc_corrected'))}" for m in models))
    if len(validated) < 2:
        absent = [name for key, name in (("cv", "nested CV"), ("bootstrap", "bootstrap"))
                  if not all(entries[m].get(key) for m in models)]
        validated.append(f"no {' and no '.join(absent)} in this run")
    apparent = ", ".join(f"{m} {number_text(entries[m]['apparent']['auc'])}" for m in models)
    p = {f"{d['a']}-{d['b']}": d["p"] for d in metrics["delong"]}
    lead = "; ".join(validated)
    return (f"imnrisk demo: done in {seconds:.0f} s. {lead[0].upper()}{lead[1:]}; apparent AUC (training data, "
            f"optimistic) {apparent}; DeLong p (apparent) clinical-combined {number_text(p['clinical-combined'])}, "
            f"radiomics-combined {number_text(p['radiomics-combined'])}; report {report} (synthetic data: a demonstration, "
            "not a clinical model)")


def print_external_summary(result: Dict[str, Any], out: Path) -> None:
    """`imnrisk validate`: the combined model's discrimination and calibration, the verdicts, HL, accuracy."""
    c = result["models"]["combined"]
    cal = c["calibration"]
    say(f"imnrisk validate: n = {result['n']} ({result['events']} events); combined AUC {number_text(c['auc'])} "
        f"({number_text(c['ci95'][0])}-{number_text(c['ci95'][1])}); calibration-in-the-large {number_text(cal['citl'])}, slope "
        f"{number_text(cal['slope'])}; Brier {number_text(c['brier'])}; HL p {number_text(c['hosmer_lemeshow']['p'])}"
        f" -> {out}")
    counts = result.get("verdicts") or {}
    say("  verdicts on the training ranges (the scoring core's rules): "
        + ", ".join(f"{state.replace('_', ' ')} {counts.get(state, 0)}" for state in ("within", "extrapolation",
                                                                                      "not_reliable")))
    from IMNRiskLib.stats.evaluation import hl_df_statement  # scipy only when a validation is printed (start-up time)
    hl, acc = c["hosmer_lemeshow"], c["accuracy"]
    rule, note = hl_df_statement(hl)
    say(f"  Hosmer-Lemeshow chi2 {number_text(hl['chi2'])}, df {hl['df']} = {rule}" + (f"; note: {note}" if note else ""))
    say(f"  accuracy at 0.5 {number_text(acc['accuracy'], 1, 100)}% vs no-information rate {number_text(acc['nir'], 1, 100)}%: "
        f"one-sided exact binomial p = {number_text(acc['p_accuracy_gt_nir'])}")


def protocols_side_by_side(compared: Dict[str, Dict[str, Any]]) -> str:
    """`imnrisk demo` with several protocols: each one's nested-CV numbers on one line."""
    return ("imnrisk demo: protocols side by side, combined model: " + "; ".join(
        f"{p} nested-CV AUC {number_text(c['models']['combined']['nested_auc'])} slope "
        f"{number_text(c['models']['combined']['nested_slope'])} (leaky AUC {number_text(c['models']['combined']['leaky_auc'])}), "
        f"{len(c['features'])} features" for p, c in compared.items()))
