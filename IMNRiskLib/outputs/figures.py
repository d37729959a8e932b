"""Figures of the report (matplotlib): the paper's figures and more, one function per figure.

One colour per model everywhere (Okabe-Ito, colour-blind safe), labelled axes, legends placed
outside the curves. Each function returns a matplotlib Figure; `save` writes PNG (300 dpi) and SVG.
"""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd

MODEL_COLOURS = {"clinical": "#0072B2", "radiomics": "#E69F00", "combined": "#009E73"}
MODEL_LABELS = {"clinical": "Clinical", "radiomics": "Radiomics (Rad-Score)", "combined": "Clinical-radiomics"}
GREY, BLACK, VERMILLION, PURPLE = "#999999", "#000000", "#D55E00", "#CC79A7"
MODELS = ("clinical", "radiomics", "combined")


# every figure of the report has this size (inches) and this style, so they print at one font scale
FIGSIZE = (7.0, 4.4)
STYLE = {"font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
         "legend.fontsize": 7, "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "none",
         "figure.dpi": 100, "figure.autolayout": False, "figure.constrained_layout.use": False}
DPI = 300
PNG_ZLIB_LEVEL = 3  # see _save_png


def _plt():
    import matplotlib  # start-up time: matplotlib loads only when used
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # start-up time: matplotlib loads only when used
    plt.rcParams.update(STYLE)
    return plt


def save(fig, folder: Path, name: str) -> Dict[str, Path]:
    """Write the figure as PNG (300 dpi) and SVG at the one report size FIGSIZE (no tight crop,
    which would give every figure its own size); return both paths."""
    plt = _plt()
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"png": folder / f"{name}.png", "svg": folder / f"{name}.svg"}
    with plt.rc_context(STYLE):
        fig.set_size_inches(*FIGSIZE)
        fig.set_layout_engine("constrained")
        _layout_once(fig)
        _save_png(fig, paths["png"])
        fig.savefig(paths["svg"])
    plt.close(fig)
    return paths


def _layout_once(fig) -> None:
    """The constrained layout, computed once at DPI (as savefig computes it for the PNG), then the
    engine removed: savefig would otherwise lay out and draw the figure once more per file before
    drawing it (two layouts and four draws for PNG + SVG, now one and two). The PNG's pixels are
    those of savefig's own layout; the SVG keeps that layout (its own 72-dpi text metrics moved
    labels by at most ~2 pt)."""
    original = fig.dpi
    fig.dpi = DPI
    try:
        fig.get_layout_engine().execute(fig)
    except ValueError:  # as Figure.draw: a layout that cannot be made leaves the figure as it is
        pass
    finally:
        fig.dpi = original
    fig.set_layout_engine(None)  # no engine at all ("none" keeps a placeholder that savefig lays out)


def _save_png(fig, path: Path) -> None:
    """The figure as an RGB PNG at DPI, zlib level 3. Matplotlib's PNG is RGBA at level 6, but every
    report figure is opaque (white face), so its alpha channel is all 255: the same pixels without
    it, at level 3, take 0.55 s to encode for a report's 11 figures instead of 1.3 s, in files of
    about the same size (+5%). The metadata are matplotlib's (Software, dpi)."""
    import matplotlib  # start-up time: matplotlib loads only when used
    from PIL import Image, PngImagePlugin  # start-up time: PIL loads with matplotlib, only when used
    fig.savefig(io.BytesIO(), format="rgba", dpi=DPI)  # draws the Agg canvas as savefig draws a PNG
    rgba = np.asarray(fig.canvas.buffer_rgba())  # what matplotlib's PNG writer encodes
    if rgba[..., 3].min() < 255:  # a transparent figure keeps its alpha channel
        image = Image.fromarray(rgba, "RGBA")
    else:
        image = Image.fromarray(np.ascontiguousarray(rgba[..., :3]), "RGB")
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", f"Matplotlib version{matplotlib.__version__}, https://matplotlib.org/")
    image.save(path, format="png", dpi=(DPI, DPI), pnginfo=info, compress_level=PNG_ZLIB_LEVEL)


def funnel(steps: List[Dict[str, Any]]):
    """Feature-selection funnel: features left after each step."""
    plt = _plt()
    names = {"all": "All features", "icc": "ICC >= threshold", "constant": "Non-constant", "corr": "|r| <= 0.9", "vif": "VIF <= 10",
             "mwu": "Mann-Whitney p < 0.05", "lasso": "LASSO", "forward": "Forward selection"}
    fig, ax = plt.subplots(figsize=FIGSIZE)
    labels = [names.get(s["step"], s["step"]) for s in steps]
    counts = [s["n"] for s in steps]
    bars = ax.barh(range(len(steps)), counts, color=MODEL_COLOURS["radiomics"])
    ax.set_yticks(range(len(steps)), labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("Number of features (log scale)")
    for bar, n in zip(bars, counts):
        ax.text(bar.get_width() * 1.08, bar.get_y() + bar.get_height() / 2, str(n), va="center")
    ax.set_xlim(0.8, max(counts) * 3)
    ax.set_title("Radiomics feature selection")
    return fig


def icc_distribution(icc: np.ndarray, threshold: float, icc_type: str = "ICC(2,1)"):
    """Histogram of every feature's inter-reader ICC, the threshold marked (undefined ICCs counted aside)."""
    plt = _plt()
    values = np.asarray(icc, float)
    defined = values[np.isfinite(values)]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    low = min(0.0, float(defined.min())) if len(defined) else 0.0
    bins = np.linspace(low, 1.0, int(round((1.0 - low) / 0.025)) + 1)
    ax.hist(defined[defined >= threshold], bins=bins, color=MODEL_COLOURS["combined"], label=f"kept (>= {threshold:g})")
    ax.hist(defined[defined < threshold], bins=bins, color=GREY, label=f"dropped (< {threshold:g})")
    ax.axvline(threshold, color=BLACK, ls="--", lw=0.8)
    ax.set_xlabel(f"{icc_type} between the two readers' contours")
    ax.set_ylabel("Number of features")
    undefined = int((~np.isfinite(values)).sum())
    ax.set_title(f"Feature stability: {int((defined >= threshold).sum())} of {len(values)} features kept"
                 + (f" ({undefined} undefined, dropped)" if undefined else ""))
    ax.legend(loc="upper left", frameon=False)
    return fig


def lasso(path: pd.DataFrame, cv: pd.DataFrame, lambda_min: float, lambda_1se: float):
    """LASSO coefficient path and the cross-validated deviance, lambda.min and lambda.1se marked."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=FIGSIZE)
    lam = np.log(path["lambda"].to_numpy())
    coefs = path.drop(columns="lambda")
    for col in coefs.columns:
        a.plot(lam, coefs[col], lw=1)
    for ax in (a, b):
        ax.axvline(math.log(lambda_min), color=BLACK, ls="--", lw=0.8)
        ax.axvline(math.log(lambda_1se), color=GREY, ls=":", lw=1)
        ax.set_xlabel("log(lambda)")
    a.set_ylabel("Coefficient (z-scored features)")
    a.set_title("LASSO coefficient path")
    b.errorbar(np.log(cv["lambda"]), cv["deviance"], yerr=cv["se"], fmt="o", ms=3, color=VERMILLION,
               ecolor=GREY, elinewidth=0.8)
    b.set_ylabel("Cross-validated binomial deviance")
    b.set_title("LASSO: choice of lambda (5-fold CV)")
    b.text(0.02, 0.97, "dashed: lambda.min\ndotted: lambda.1se", transform=b.transAxes, va="top", fontsize=8)
    return fig


def radscore_by_outcome(radscore: np.ndarray, y: np.ndarray, outcome: str = "IMN"):
    """Rad-Score of IMN-negative and IMN-positive patients (box and points)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    groups = [radscore[y == 0], radscore[y == 1]]
    ax.boxplot(groups, widths=0.5, showfliers=False, medianprops={"color": BLACK})
    rng = np.random.default_rng(0)
    for k, (g, colour) in enumerate(zip(groups, (MODEL_COLOURS["clinical"], VERMILLION)), start=1):
        ax.scatter(k + rng.uniform(-0.15, 0.15, len(g)), g, s=10, alpha=0.7, color=colour)
    ax.set_xticks([1, 2], [f"{outcome} negative (n = {len(groups[0])})", f"{outcome} positive (n = {len(groups[1])})"])
    ax.set_ylabel("Rad-Score")
    ax.set_title("Rad-Score by outcome")
    return fig


def cv_frequency(freq: Dict[str, float], top: int = 15):
    """How often each feature was selected across the cross-validation folds."""
    plt = _plt()
    items = sorted(freq.items(), key=lambda kv: -kv[1])[:top]
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.barh(range(len(items)), [v for _, v in items], color=MODEL_COLOURS["radiomics"])
    ax.set_yticks(range(len(items)), [k for k, _ in items], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("Share of CV training folds selecting the feature")
    ax.set_title("Feature selection stability (nested CV)")
    return fig


def roc(metrics: Dict[str, Any]):
    """ROC curves of the three models, AUC and DeLong 95% CI in the legend."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for m in MODELS:
        a = metrics["models"][m]["apparent"]
        fpr = 1 - np.array(a["roc"]["specificity"])
        tpr = np.array(a["roc"]["sensitivity"])
        order = np.lexsort((tpr, fpr))
        ax.plot(fpr[order], tpr[order], color=MODEL_COLOURS[m], lw=1.8,
                label=f"{MODEL_LABELS[m]}: apparent AUC {a['auc']:.3f} ({a['ci95'][0]:.3f}-{a['ci95'][1]:.3f})")
    ax.plot([0, 1], [0, 1], color=GREY, ls=":", lw=1)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("Sensitivity")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=7, frameon=True)
    ax.set_title("ROC curves on the training data (apparent)")
    return fig


def calibration(metrics: Dict[str, Any]):
    """Calibration of the three models: lowess curve, deciles with 95% CIs, the ideal line."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=FIGSIZE, sharey=True)
    for ax, m in zip(axes, MODELS):
        a = metrics["models"][m]["apparent"]
        curves = a["calibration_curves"]
        ax.plot([0, 1], [0, 1], color=GREY, ls=":", lw=1, label="Ideal")
        ax.plot(curves["lowess"]["predicted"], curves["lowess"]["observed"], color=MODEL_COLOURS[m], lw=1.8,
                label="Lowess")
        dec = curves["deciles"]
        x = [d["predicted"] for d in dec]
        yv = [d["observed"] for d in dec]
        err = np.clip(np.array([[d["observed"] - d["ci95"][0], d["ci95"][1] - d["observed"]] for d in dec]).T, 0, None)
        ax.errorbar(x, yv, yerr=err, fmt="o", ms=4, color=MODEL_COLOURS[m], mfc="white", ecolor=GREY,
                    elinewidth=0.8, label="Deciles (95% CI)")
        cal, hl = a["calibration"], a["hosmer_lemeshow"]
        text = (f"intercept {_f(cal['intercept'])}, slope {_f(cal['slope'])}\n"
                f"HL chi2 {_f(hl['chi2'], 2)}, df {hl['df']}, p {_f(hl['p'])}")
        ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", fontsize=6.5)
        ax.set_title(MODEL_LABELS[m])
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.05)
        ax.set_xlabel("Predicted probability")
    axes[0].set_ylabel("Observed proportion")
    axes[-1].legend(loc="lower right", fontsize=7)
    return fig


def decision_curves(metrics: Dict[str, Any]):
    """Net benefit of the three models, treat-all and treat-none."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    nb = metrics["models"]["combined"]["apparent"]["net_benefit"]
    t = np.array(nb["thresholds"])
    prevalence = metrics["cohort"]["events"] / metrics["cohort"]["n"]
    for m in MODELS:
        ax.plot(t, metrics["models"][m]["apparent"]["net_benefit"]["model"], color=MODEL_COLOURS[m], lw=1.8,
                label=MODEL_LABELS[m])
    ax.plot(t, nb["treat_all"], color=GREY, lw=1.2, label="Treat all")
    ax.axhline(0, color=BLACK, lw=1, label="Treat none")
    ax.set_ylim(-0.05, max(prevalence * 1.15, 0.05))
    ax.set_xlim(0, 1)
    ax.set_xlabel("Threshold probability")
    ax.set_ylabel("Net benefit")
    ax.legend(loc="upper right", fontsize=7)
    ax.set_title("Decision curves on the training data (apparent)")
    return fig


def _mark(ax, x: float, y: float, lo: float, hi: float) -> bool:
    """The patient's marker on an axis spanning [lo, hi]; beyond it, a hatched stub at the axis end
    with an arrow pointing outwards and "beyond the axis". True when it lay beyond."""
    if lo <= x <= hi:
        ax.plot([x], [y], "v", color=VERMILLION, ms=8, zorder=5)
        return False
    end, inward = (lo, 1) if x < lo else (hi, -1)
    ax.add_patch(_plt().Rectangle((min(end, end + 6 * inward), y - 0.14), 6, 0.28, fill=False, hatch="////",
                                  edgecolor=VERMILLION, lw=0.8, zorder=4))
    ax.plot([end], [y], "<" if inward > 0 else ">", color=VERMILLION, ms=7, zorder=5)
    ax.text(end, y - 0.22, "beyond the axis", ha="left" if inward > 0 else "right", va="top", fontsize=6,
            color=VERMILLION)
    return True


def nomogram(nomo: Dict[str, Any], factors_labels: Dict[str, str], patient: Optional[Dict[str, float]] = None,
             notes: Optional[List[str]] = None):
    """rms-style nomogram: a points axis, one axis per predictor, total points and risk;
    `patient` (points per predictor and "total") marks one patient on every axis (beyond an axis:
    hatched, "beyond the axis"); `notes` (e.g. the training-range warnings) are printed below."""
    plt = _plt()
    axes = nomo["axes"]
    rows = len(axes) + 3
    wrapped = [textwrap.wrap(f"! {note}", 120, break_on_hyphens=False) for note in notes or []]
    fig, ax = plt.subplots(figsize=(FIGSIZE[0], FIGSIZE[1] + 0.22 * sum(len(w) + 0.25 for w in wrapped)))
    ax.axis("off")
    y = rows

    def axis_line(y, ticks, labels, title, xmax=100.0):
        ax.plot([min(ticks), max(ticks)], [y, y], color=BLACK, lw=1)
        for tick, label in zip(ticks, labels):
            ax.plot([tick, tick], [y, y + 0.12], color=BLACK, lw=1)
            ax.text(tick, y + 0.18, label, ha="center", va="bottom", fontsize=7)
        ax.text(-4, y, title, ha="right", va="center", fontsize=8)

    axis_line(y, list(range(0, 101, 10)), [str(v) for v in range(0, 101, 10)], "Points")
    for a in axes:
        y -= 1
        if a["name"] == "radscore":
            from matplotlib.ticker import MaxNLocator  # start-up time: matplotlib loads only when used
            lo, hi = a["values"]
            ticks_rs = [v for v in MaxNLocator(7).tick_values(lo, hi) if lo <= v <= hi]
            pts = np.interp(ticks_rs, [lo, hi], a["points"])
            axis_line(y, list(pts), [f"{v:.1f}" for v in ticks_rs], "Rad-Score")
        else:
            order = np.argsort(a["points"], kind="stable")
            pts = [a["points"][i] for i in order]
            labels = [str(a["values"][i]) for i in order]
            axis_line(y, pts, labels, factors_labels.get(a["name"], a["name"]))
        if patient is not None and a["name"] in patient:
            _mark(ax, patient[a["name"]], y, min(a["points"]), max(a["points"]))
    total_max = sum(max(a["points"]) for a in axes)
    y -= 1.3
    total_ticks = np.linspace(0, math.ceil(total_max / 20) * 20, 6)
    ax.plot([0, 100], [y, y], color=BLACK, lw=1)
    for k, tick in enumerate(total_ticks):
        x = tick * 100 / total_ticks[-1]
        ax.plot([x, x], [y, y + 0.12], color=BLACK, lw=1)
        ax.text(x, y + 0.18, f"{tick:.0f}", ha="center", va="bottom", fontsize=7)
    ax.text(-4, y, "Total points", ha="right", va="center", fontsize=8)
    if patient is not None:
        _mark(ax, patient["total"] * 100 / total_ticks[-1], y, 0.0, 100.0)
    y -= 1
    risks, xs = [], []
    for r in nomo["risk_axis"]:
        x = r["total_points"] * 100 / total_ticks[-1]
        if 0 <= x <= 100 and (not xs or x - xs[-1] >= 6):  # labels that would overlap are left out
            risks.append(r)
            xs.append(x)
    if risks:
        ax.plot([min(xs), max(xs)], [y, y], color=BLACK, lw=1)
        for x, r in zip(xs, risks):
            ax.plot([x, x], [y, y + 0.12], color=BLACK, lw=1)
            ax.text(x, y + 0.18, f"{r['probability']:g}", ha="center", va="bottom", fontsize=7)
    ax.text(-4, y, "Risk of IMN metastasis", ha="right", va="center", fontsize=8)
    y -= 0.6
    for lines in wrapped:
        ax.text(-35, y, "\n".join(lines), ha="left", va="top", fontsize=6, color=VERMILLION)
        y -= 0.4 * len(lines) + 0.1
    ax.set_xlim(-35, 105)
    ax.set_ylim(y, rows + 0.8)
    ax.set_title("Nomogram of the clinical-radiomics model")
    return fig


def cv_protocols(metrics: Dict[str, Any]):
    """Cross-validated AUC, nested (validated) first, then the leaky protocol and the apparent AUC;
    the AUC axis starts at 0 so that bar lengths compare (chance, 0.5, dotted)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    width, handles = 0.26, []
    for k, (key, label, hatch) in enumerate((("cv", "CV, nested (validated)", ""),
                                             ("cv_leaky", "CV, leaky (paper)", "//"),
                                             ("apparent", "Apparent (training data)", ".."))):
        vals, errs = [], []
        for m in MODELS:
            entry = metrics["models"][m].get(key, {})
            vals.append(entry.get("auc") if key == "apparent" else entry.get("auc_mean"))
            errs.append(0 if key == "apparent" else (entry.get("auc_sd") or 0))
        x = np.arange(3) + (k - 1) * width
        handles.append(ax.bar(x, [v or 0 for v in vals], width, yerr=None if key == "apparent" else errs,
                              color=[MODEL_COLOURS[m] for m in MODELS], alpha=[1.0, 0.55, 0.35][k], hatch=hatch,
                              edgecolor=BLACK, lw=0.5, label=label, capsize=2))
    handles.append(ax.axhline(0.5, color=GREY, ls=":", lw=1, label="Chance (0.5)"))
    ax.set_xticks(range(3), [MODEL_LABELS[m] for m in MODELS])
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("AUC (CV: mean +- SD over folds)")
    ax.legend(handles=handles, fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, frameon=False)
    ax.set_title("Validation: how much the leak inflates", pad=22)
    return fig


def calibration_validated(metrics: Dict[str, Any]):
    """Calibration curves (lowess) that new patients would see: nested-CV out-of-fold predictions
    (averaged over repeats) beside the apparent curve, and the shrunk combined model when trained
    with --shrink; validated slopes in each panel."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=FIGSIZE, sharey=True)
    shrink = metrics.get("shrinkage")
    for ax, m in zip(axes, MODELS):
        e = metrics["models"][m]
        ax.plot([0, 1], [0, 1], color=GREY, ls=":", lw=1, label="Ideal")
        app = e["apparent"]["calibration_curves"]["lowess"]
        ax.plot(app["predicted"], app["observed"], color=GREY, lw=1.4, label="Apparent")
        cv_curve = (e.get("cv") or {}).get("calibration_curves")
        if cv_curve:
            ax.plot(cv_curve["lowess"]["predicted"], cv_curve["lowess"]["observed"], color=MODEL_COLOURS[m],
                    lw=1.8, label="Nested CV (out-of-fold)")
        if m == "combined" and shrink:
            sc = shrink["calibration_curves"]["lowess"]
            ax.plot(sc["predicted"], sc["observed"], color=VERMILLION, lw=1.4, ls="--", label="Shrunk (apparent)")
        cv, boot = e.get("cv") or {}, e.get("bootstrap") or {}
        ax.text(0.03, 0.97, f"slope: nested CV {_f(cv.get('slope_mean'))}\nbootstrap {_f(boot.get('slope_corrected'))}"
                f", apparent {_f(e['apparent']['calibration']['slope'])}", transform=ax.transAxes, va="top",
                fontsize=6.5)
        ax.set_title(MODEL_LABELS[m])
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.05)
        ax.set_xlabel("Predicted probability")
        ax.legend(loc="lower right", fontsize=6)
    axes[0].set_ylabel("Observed proportion")
    return fig


def _f(v: Optional[float], nd: int = 3) -> str:
    return "-" if v is None else f"{v:.{nd}f}"
