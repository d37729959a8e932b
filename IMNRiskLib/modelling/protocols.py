"""Protocols: the paper's model-building chain as a named profile beside IMNRisk's default, and
every deviation of the default from the paper with its reason (one table, used by `train
--protocol`, the report, the README and a test).

`imnrisk train --protocol paper` runs the chain of Frontiers in Oncology 2025 (doi
10.3389/fonc.2025.1477866) in its order: Spearman |r| > 0.9 filter, collinearity, Mann-Whitney U,
z-score, LASSO logistic with 10-fold CV over glmnet's grid of 100 lambdas, forward selection
(no cap on the number of features), final logistic regression. `--protocol imnrisk` (the default)
is IMNRisk's chain. Both are validated the same way (nested CV, leaky CV and the bootstrap), so a
reader can see what each choice costs.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Dict, List, Optional
from IMNRiskLib.core.errors import InputError
from IMNRiskLib.modelling import lassogrid

PROTOCOLS = ("imnrisk", "paper")
DEFAULT_PROTOCOL = "imnrisk"

# The profile: TrainingOptions values that make the paper's chain (all others stay at their default).
PAPER_OPTIONS: Dict[str, object] = {
    "corr_method": "spearman",     # the paper: "correlation coefficient |r| > 0.9"; rank-based
    "lasso_folds": 10,             # the paper: LASSO with 10-fold cross-validation
    "n_lambdas": 100,              # glmnet's nlambda
    "lambda_ratio": 0.01,          # glmnet's lambda.min.ratio when patients < features
    "forward_cap": False,          # the paper names no limit on the Rad-Score's features
    "clinical_test": "wald",       # multivariable step by Wald p (the paper's one-step Wald rule)
    "clinical_collinear": None,    # the paper screens no collinear pair (a rank-deficient design is still refused)
}

DESCRIPTIONS = {
    "imnrisk": "IMNRisk's default chain: Pearson |r| > 0.9 (of a pair, the feature less associated with the "
               "outcome goes), forward VIF <= 10, Mann-Whitney U p < 0.05, z-score, LASSO (stratified 5-fold CV, "
               "lambda.min), forward selection by likelihood ratio (at most events/5 features), logistic Rad-Score",
    "paper": "the paper's chain in its order: Spearman |r| > 0.9, collinearity (VIF <= 10), Mann-Whitney U "
             "p < 0.05, z-score, LASSO with 10-fold CV over glmnet's 100-lambda grid (lambda.min), forward "
             "selection by likelihood ratio without a cap, logistic Rad-Score",
}

# Each step where IMNRisk's default differs from the paper (or where the paper is silent and a
# choice had to be made): what the paper did, what IMNRisk does, what --protocol paper does, why.
DEVIATIONS: List[Dict[str, str]] = [
    {"step": "Discretisation (extraction)",
     "paper": "not stated (pyradiomics' default is a fixed bin width of 25)",
     "imnrisk": "fixed bin count 64 after z-scoring x 100 (normalizeScale 100)",
     "profile": "as the features given (extraction is not part of train; pass --params to extract)",
     "why": "a width of 25 on normalised MR collapses a tumour to 1-2 grey levels; a width of 5 gave 200-500 "
            "levels in the low-pass wavelet bands (GLCM MCC alone 70% of the time); IBSI advises a fixed "
            "count for arbitrary-unit images",
     "evidence": "README 'Feature extraction'; DESIGN.md 'pyradiomics settings'; a test shows texture varies"},
    {"step": "Number of features",
     "paper": "850",
     "imnrisk": "851 (107 original + 8 x 93 wavelet, every class)",
     "profile": "as the features given",
     "why": "pyradiomics 3.0.1 computes 851 with every class enabled; the paper does not say which one it left out",
     "evidence": "IMNRiskLib/params/dce_mri.yaml; Testing/test_features.py"},
    {"step": "Feature stability (ICC)",
     "paper": "none (a second radiation oncologist reviewed the contours; no second reading was analysed)",
     "imnrisk": "when the manifest has a second reader's mask (Mask2): features with ICC(2,1) < 0.75 dropped "
                "first, recomputed in every training fold",
     "profile": "none (unless --icc-threshold is given)",
     "why": "a feature that two readers' contours do not reproduce measures the contour, not the tumour",
     "evidence": "IMNRiskLib/radiomics/stability.py; Testing/R/icc_reference.json (irr, psych)"},
    {"step": "Correlation filter",
     "paper": "|r| > 0.9 removed (correlation coefficient; which feature of a pair goes is not stated)",
     "imnrisk": "Pearson |r| > 0.9 on the features visited strongest-first (|AUC - 0.5|): of a pair, the one "
                "less associated with the outcome goes",
     "profile": "Spearman |r| > 0.9, same keep-the-stronger rule",
     "why": "Pearson measures the linear redundancy that the next linear steps (VIF, LASSO, logistic) suffer "
            "from and costs one matrix product; Spearman also removes features that are monotone but not "
            "linear transforms of each other",
     "evidence": "selection.CorrelationFilter / SpearmanFilter; test_protocols: Spearman filter equals scipy's "
                 "spearmanr, and the two funnels differ on the phantom"},
    {"step": "Collinearity",
     "paper": "'collinearity' removed (185 -> 123; method not stated)",
     "imnrisk": "forward VIF <= 10, strongest-first (at most n - 2 features)",
     "profile": "same",
     "why": "with more features than patients every VIF of the full set is infinite: a backward VIF elimination "
            "cannot start",
     "evidence": "selection.VIFFilter"},
    {"step": "Mann-Whitney U",
     "paper": "rank-sum test (123 -> 122; threshold not stated)",
     "imnrisk": "p < 0.05, normal approximation with continuity correction (the best feature kept if none pass)",
     "profile": "same",
     "why": "0.05 is the paper's significance level elsewhere",
     "evidence": "selection.MannWhitneyFilter"},
    {"step": "LASSO folds",
     "paper": "10-fold CV",
     "imnrisk": "stratified 5-fold CV on binomial deviance, fixed folds",
     "profile": "stratified 10-fold",
     "why": "with 19-21 events a 10-fold split leaves ~2 events per test fold (~1.6 inside a nested-CV training "
            "fold): the deviance curve is noise; 5 folds keep ~4 per fold",
     "evidence": "the cohort's counts; compare the two protocols' lambda CV curves (lasso_cv.csv)"},
    {"step": "LASSO lambda grid and rule",
     "paper": "glmnet (R 3.6.0): 100 lambdas down to 0.01 x lambda_max (n < p) or 1e-4 (n >= p); rule not stated",
     "imnrisk": "{lasso_grid}, lambda.min (--lasso-rule 1se offered)",
     "profile": "100 lambdas down to 0.01 x lambda_max, lambda.min",
     "why": "three decades (glmnet's sequence with lambda.min.ratio 1e-3) so that the CV minimum is never the "
            "grid's end; lambda.min lies far above it (0.13 x lambda_max on the tests' 300-patient phantom)",
     "evidence": "lasso_cv.csv of both protocols; Testing/R/lrt_reference.json: the grid equals glmnet's; "
                 "test_training: LASSO coefficients equal glmnet's to 1e-6"},
    {"step": "Forward selection",
     "paper": "forward selection after LASSO (criterion not stated; 4 features kept)",
     "imnrisk": "likelihood ratio p < 0.05, at most events/5 features",
     "profile": "likelihood ratio p < 0.05, no cap",
     "why": "at least 5 events per Rad-Score coefficient (the paper's 4 features on 21 events is the same limit)",
     "evidence": "selection.ForwardSelector; metrics.json selection.radscore"},
    {"step": "Clinical selection",
     "paper": "univariate logistic p < 0.1 -> multivariable, keep Wald p < 0.05 (one step)",
     "imnrisk": "univariate p < 0.1 -> of a collinear pair (Cramer's V or |Spearman| > 0.7) the weaker left "
                "out -> backward elimination by likelihood ratio (R drop1(test = 'LRT')), one term at a time, "
                "keep p < 0.05; the path is recorded",
     "profile": "univariate p < 0.1 -> multivariable, Wald p < 0.05",
     "why": "Wald p is unreliable for sparse levels: on the phantom location was dropped at Wald p 0.056 where "
            "the likelihood-ratio test gives 0.034",
     "evidence": "issue #12 (16 resampled phantoms: location kept 6/16, PR 1/16); bench/results/truth.json"},
    {"step": "Separated fits",
     "paper": "ML estimates printed as 0.00~Infinite",
     "imnrisk": "flagged as separation, Firth's penalised estimate shown and used",
     "profile": "same",
     "why": "an infinite odds ratio is not an estimate",
     "evidence": "Testing/R/reference.json (brglm2 AS_mean); test_statistics"},
    {"step": "Internal validation",
     "paper": "features and factors selected once on all 124 patients, then 5-fold CV x 100 of the coefficients "
              "and 1000 bootstraps (leaky: the selection saw every test patient)",
     "imnrisk": "nested: every selection step refitted inside each training fold and bootstrap resample; the "
                "leaky CV shown beside it",
     "profile": "both computed, as for the default",
     "why": "selection on all patients makes CV report more than new patients see",
     "evidence": "bench/results/truth.json: CV AUC minus AUC on fresh phantom patients, nested vs leaky; "
                 "test_truth_recovery"},
    {"step": "Calibration reported",
     "paper": "apparent slope 1.08 (training data) and CV slopes of frozen features",
     "imnrisk": "apparent beside the nested-CV and bootstrap-corrected slopes",
     "profile": "same",
     "why": "an apparent slope of a model fitted on the same data is 1 by construction",
     "evidence": "metrics.json models.*.cv.slope_mean, bootstrap.slope_corrected"},
]

_LASSO_GRID = f"{lassogrid.N_LAMBDAS} lambdas down to {lassogrid.LAMBDA_RATIO:g} x lambda_max"
DEVIATIONS = [{k: v.replace("{lasso_grid}", _LASSO_GRID) for k, v in row.items()} for row in DEVIATIONS]

COLUMNS = (("step", "step"), ("paper", "paper"), ("imnrisk", "IMNRisk default"),
           ("profile", "--protocol paper"), ("why", "why"), ("evidence", "evidence"))


def check_protocol(name: str) -> str:
    """The protocol's name, or an InputError naming --protocol."""
    if name not in PROTOCOLS:
        raise InputError(f"unknown protocol {name!r} (choose {', '.join(PROTOCOLS)})", field="--protocol")
    return name


def choices(name: str) -> Dict[str, object]:
    """The TrainingOptions values a protocol sets (only those TrainingOptions has: never claim a
    choice that is not made)."""
    from IMNRiskLib.modelling.models import TrainingOptions  # start-up time: loaded when this step runs
    check_protocol(name)
    known = {f.name for f in fields(TrainingOptions)}
    return {k: v for k, v in PAPER_OPTIONS.items() if k in known} if name == "paper" else {}


def training_options(name: str = DEFAULT_PROTOCOL, **overrides):
    """TrainingOptions of a protocol (its named choices), with `overrides` (e.g. seed) on top."""
    from IMNRiskLib.modelling.models import TrainingOptions  # start-up time: loaded when this step runs
    return replace(TrainingOptions(), protocol=name, **{**choices(name), **overrides})


def use_icc(protocol: str, threshold: Optional[float], no_icc: bool) -> bool:
    """The ICC filter runs when a second reading exists, except with --no-icc and under the paper's
    protocol (the paper had no ICC step) unless --icc-threshold asks for it."""
    return not no_icc and (protocol != "paper" or threshold is not None)


def describe(name: str) -> Dict[str, object]:
    """What metrics.json and model.json record about the protocol of a run."""
    return {"name": name, "description": DESCRIPTIONS[name], "choices": choices(name)}


def deviation_rows() -> List[Dict[str, str]]:
    """The deviation table with display headers, in order."""
    return [{header: row[key] for key, header in COLUMNS} for row in DEVIATIONS]


def deviation_markdown() -> str:
    """The deviation table as Markdown (the README holds exactly this text; a test checks it)."""
    headers = [h for _, h in COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in DEVIATIONS:
        lines.append("| " + " | ".join(row[k].replace("|", "\\|") for k, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def comparison_summary(metrics: Dict[str, object]) -> Dict[str, object]:
    """One protocol's validated numbers and selections, for the side-by-side table of the demo."""
    models = metrics["models"]
    out: Dict[str, object] = {"protocol": (metrics.get("protocol") or {}).get("name", DEFAULT_PROTOCOL),
                              "features": list(metrics["selection"]["radscore"]["coefficients"]),
                              "clinical_factors": list(metrics["selection"]["clinical_factors"]),
                              "funnel": metrics["selection"]["funnel"], "models": {}}
    for m in ("radiomics", "combined"):
        e = models[m]
        cv, leaky, boot = e.get("cv") or {}, e.get("cv_leaky") or {}, e.get("bootstrap") or {}
        out["models"][m] = {"apparent_auc": e["apparent"]["auc"], "nested_auc": cv.get("auc_mean"),
                            "nested_slope": cv.get("slope_mean"), "leaky_auc": leaky.get("auc_mean"),
                            "bootstrap_auc": boot.get("auc_corrected"), "bootstrap_slope": boot.get("slope_corrected")}
    combined = models["combined"]
    out["validation"] = [name for key, name in (("cv", "nested CV"), ("cv_leaky", "leaky CV"), ("bootstrap", "bootstrap"))
                         if combined.get(key)]
    return out


if __name__ == "__main__":  # `python -m IMNRiskLib.modelling.protocols` prints the README's table
    print(deviation_markdown(), end="")
