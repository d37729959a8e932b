"""Benchmark: how training time grows with the number of patients n and of features p.

    .venv/bin/python bench/bench_scale.py [--data /var/tmp/imnrisk-scale] [--build] [--jobs 2]
                                          [--cv-repeats 2] [--bootstrap 20] [--fits 3] [--n 124 500 2000]

For each n in {124, 500, 2000} and p in {851, 1688} (IMNRisk's dce_mri.yaml, and
bench/params/dce_mri_1700.yaml: the same plus LoG at 5 sigmas and 4 intensity filters) it times
(a) one fit of the whole chain (`models.fit_models`, current chain only, median over --fits
bootstrap resamples, in process, 1 BLAS thread) and (b) the wall time of `imnrisk train` (--jobs)
fit only, with a small fixed validation (5-fold CV x --cv-repeats nested + leaky, --bootstrap
bootstraps) and with twice that validation: the difference of the last two over the added chain
fits (5 x R nested folds + B bootstraps) is the wall seconds per validation fit, the fixed costs
(start-up, worker pools, report) cancelling; the paper's validation (5 x 100 CV, 1000 bootstraps)
is EXTRAPOLATED from it (fixed + 1500 x per fit), not run. It also fits the growth exponents
(log time on log n, per p) and the ratio of times 1688 / 851 features at each n.

The phantom tables are built once (--build, ~40 CPU minutes; kept outside the repo, under --data):
n = 124 is the default phantom (`imnrisk synth`, seed 0); n = 500 and 2,000 are 4 slices of 500
patients (seeds 1-4), each synthesised, extracted with both settings and its images deleted (a
2,000-patient cohort's images would take 32 GB); the 2,000 cohort is the 4 slices with the IDs made
unique (S1-..S4-), its provenance the slices' merged (same settings) and bound to the joined table.
First reader only: the Mask2 column is dropped before extraction, so there is no second reader's
table and no ICC filter in these fits (the default phantom's bench_train.py has one).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SETTINGS = {851: ROOT / "IMNRiskLib" / "params" / "dce_mri.yaml", 1688: HERE / "params" / "dce_mri_1700.yaml"}
SLICES = {0: 124, 1: 500, 2: 500, 3: 500, 4: 500}  # seed: patients (seed 0 = the default phantom)
COHORTS = {124: [0], 500: [1], 2000: [1, 2, 3, 4]}  # n: the slices it joins
FOLDS, PAPER_REPEATS, PAPER_BOOTSTRAP = 5, 100, 1000


def say(text: str) -> None:
    """A progress line on stderr, with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def cli(*args) -> None:
    subprocess.run([sys.executable, "-m", "IMNRiskLib", *map(str, args)], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)  # the summaries of train; errors go to stderr


def features_name(p: int) -> str:
    return f"features_p{p}.csv"


def first_reader_manifest(source: Path, target: Path) -> None:
    """The manifest without its Mask2 column: extract then reads the first reader only."""
    import pandas as pd
    frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    frame.drop(columns=["Mask2"], errors="ignore").to_csv(target, index=False)


def build_slice(folder: Path, seed: int, patients: int, jobs: int) -> None:
    """Synthesise one slice, extract it with both settings, then delete its images."""
    if all((folder / features_name(p)).exists() for p in SETTINGS):
        return
    if not (folder / "cohort_full.csv").exists():
        say(f"synth slice seed {seed}: {patients} patients -> {folder}")
        shutil.rmtree(folder, ignore_errors=True)
        cli("synth", folder, "--patients", patients, "--seed", seed, "--quiet")
        (folder / "cohort.csv").rename(folder / "cohort_full.csv")
        first_reader_manifest(folder / "cohort_full.csv", folder / "cohort.csv")
    for p, params in SETTINGS.items():
        out = folder / features_name(p)
        if not out.exists():
            say(f"extract slice seed {seed} with {params.name} ({jobs} jobs)")
            cli("extract", folder / "cohort.csv", "--out", out, "--params", params, "--jobs", jobs, "--quiet")
            with open(out) as table:
                count = len(table.readline().rstrip("\n").split(",")) - 1
                rows = sum(1 for _ in table)
            if count != p:
                raise SystemExit(f"{out}: {count} features, expected {p}")
            say(f"slice seed {seed}: {rows} of {patients} patients extracted, {count} features")
    shutil.rmtree(folder / "cases", ignore_errors=True)
    shutil.rmtree(folder / ".imnrisk-cache", ignore_errors=True)  # keyed on the deleted images


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def join_slices(data: Path, n: int, seeds: List[int]) -> Path:
    """The n-patient cohort: its slices' manifests and tables, IDs prefixed S<seed>- (unique),
    only the patients every table has; each provenance the slices' merged, bound to the joined table."""
    import pandas as pd
    folder = data / f"n{n}"
    if all((folder / features_name(p)).exists() for p in SETTINGS):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    prefix = (lambda s, i: i) if seeds == [0] else (lambda s, i: f"S{s}-{i}")
    tables = {p: [] for p in SETTINGS}
    manifests, provs = [], {p: [] for p in SETTINGS}
    for seed in seeds:
        src = data / f"slice{seed}"
        man = pd.read_csv(src / "cohort.csv", dtype=str, keep_default_na=False)
        keep = set(man["ID"])
        for p in SETTINGS:
            table = pd.read_csv(src / features_name(p), index_col=0)
            keep &= set(table.index.astype(str))
            table.index = [prefix(seed, i) for i in table.index.astype(str)]
            tables[p].append(table)
            provs[p].append((seed, json.loads((src / f"features_p{p}.provenance.json").read_text())))
        man = man[man["ID"].isin(keep)].copy()
        for col in ("Image", "Mask"):  # the images are deleted; the paths say where they were
            man[col] = [f"../slice{seed}/{v}" for v in man[col]]
        man["ID"] = [prefix(seed, i) for i in man["ID"]]
        manifests.append(man)
    cohort = pd.concat(manifests, ignore_index=True)
    cohort.to_csv(folder / "cohort.csv", index=False)
    for p in SETTINGS:
        table = pd.concat(tables[p]).loc[cohort["ID"]]
        table.index.name = "ID"
        out = folder / features_name(p)
        tmp = out.with_suffix(".tmp")
        table.to_csv(tmp, float_format="%.17g")
        first = provs[p][0][1]
        if any(pr["settings_sha256"] != first["settings_sha256"] for _, pr in provs[p]):
            raise SystemExit(f"the slices of n={n} were extracted with different settings ({p} features)")
        merged = dict(first, n_cases=sum(pr["n_cases"] for _, pr in provs[p]),
                      n_extracted=sum(pr["n_extracted"] for _, pr in provs[p]),
                      cases={prefix(s, i): v for s, pr in provs[p] for i, v in pr["cases"].items()},
                      failures=[dict(f, ID=prefix(s, f.get("ID", ""))) for s, pr in provs[p] for f in pr["failures"]],
                      features_sha256=sha256(tmp),
                      joined_from=[{"slice": f"slice{s}", "features_sha256": pr["features_sha256"]}
                                   for s, pr in provs[p]])
        (folder / f"features_p{p}.provenance.json").write_text(json.dumps(merged, indent=1) + "\n")
        tmp.rename(out)
    say(f"joined n={n}: {len(cohort)} patients from slice(s) {seeds}")
    return folder


def build_tables(data: Path, jobs: int) -> None:
    """Every slice, then every cohort (skipping what exists)."""
    for seed, patients in SLICES.items():
        build_slice(data / f"slice{seed}", seed, patients, jobs)
    for n, seeds in COHORTS.items():
        join_slices(data, n, seeds)


def one_fit_seconds(folder: Path, p: int, fits: int, blas_threads: Optional[int] = 1) -> Dict:
    """Median seconds of one fit of the whole chain (current chain) on `fits` bootstrap resamples,
    with each fit's funnel (features kept by each step) and, on the first resample, each step's time.
    BLAS threads limited to `blas_threads` (None: the library's default), as joblib's loky workers
    of `imnrisk train --jobs 2` run on 2 cores (1 each): with 2 OpenBLAS threads on a shared
    machine one fit took up to 10x longer (5.3 s against 0.5 s at n = 500)."""
    from IMNRiskLib.modelling.models import fit_models
    from IMNRiskLib.modelling.selection import funnel
    from IMNRiskLib.app.training import load_training_data
    from IMNRiskLib.resampling.validation import bootstrap_samples
    data = load_training_data(folder / "cohort.csv", folder / features_name(p))
    from threadpoolctl import threadpool_limits
    samples = bootstrap_samples(len(data.y), fits, 1)
    times, funnels = [], []
    with threadpool_limits(blas_threads):
        steps = step_seconds(data.take(samples[0]), data.take(samples[0][:124]))
        for idx in samples:
            d = data.take(idx)
            start = time.perf_counter()
            fitted = fit_models(d.features, d.clinical, d.y, d.schema, d.options)
            times.append(time.perf_counter() - start)
            funnels.append({f["step"]: f["n"] for f in funnel(fitted.radiomics, p)})
    return {"median_s": statistics.median(times), "fits_s": times, "funnels": funnels,
            "steps_s": steps}


def step_seconds(d, warm_up) -> Dict[str, float]:
    """Seconds of each step of one fit (the clinical selection, then the radiomics chain step by
    step, as the Pipeline runs them): where the time goes as n and p grow. `warm_up` (a small
    sample) is fitted first, untimed, for the imports."""
    from IMNRiskLib.modelling.models import fit_models, select_factors
    fit_models(warm_up.features, warm_up.clinical, warm_up.y, warm_up.schema, warm_up.options)
    start = time.perf_counter()
    select_factors(d.clinical, d.y, d.schema, d.options)
    out = {"clinical": time.perf_counter() - start}
    X = d.features
    pipeline = d.options.pipeline()
    for name, step in pipeline.steps:
        start = time.perf_counter()
        if name == pipeline.steps[-1][0]:
            step.fit(X, d.y)
        else:
            X = step.fit_transform(X, d.y)
        out[name] = time.perf_counter() - start
    return out


def train_seconds(folder: Path, p: int, out: Path, repeats: int, boot: int, jobs: int) -> float:
    """Wall seconds of one `imnrisk train` run."""
    start = time.perf_counter()
    cli("train", folder / "cohort.csv", "--features", folder / features_name(p), "--out", out,
        "--cv-repeats", repeats, "--bootstrap", boot, "--jobs", jobs, "--quiet", "--force")
    return time.perf_counter() - start


def growth_exponent(ns: List[int], ts: List[float]) -> float:
    """Least-squares slope of log t on log n (t ~ n^slope)."""
    x, y = [math.log(v) for v in ns], [math.log(v) for v in ts]
    mx, my = statistics.fmean(x), statistics.fmean(y)
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / sum((a - mx) ** 2 for a in x)


def measure(data: Path, args: argparse.Namespace) -> List[Dict]:
    """Every cell of the grid: one fit, and the fit-only, small- and double-validation train runs."""
    rows = []
    fits = FOLDS * args.cv_repeats + args.bootstrap  # chain refits of the small validation (nested CV + bootstrap)
    paper_fits = FOLDS * PAPER_REPEATS + PAPER_BOOTSTRAP
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.n:
            folder = data / f"n{n}"
            for p in SETTINGS:
                say(f"n={n} p={p}: one fit x {args.fits}")
                fit = one_fit_seconds(folder, p, args.fits, args.blas_threads or None)
                one = fit["median_s"]
                say(f"n={n} p={p}: one fit {one:.3f} s; train, fit only")
                fit_only = train_seconds(folder, p, Path(tmp) / "out", 0, 0, args.jobs)
                say(f"n={n} p={p}: fit only {fit_only:.1f} s; train, {FOLDS}x{args.cv_repeats} CV + "
                    f"{args.bootstrap} bootstraps")
                small = train_seconds(folder, p, Path(tmp) / "out", args.cv_repeats, args.bootstrap, args.jobs)
                say(f"n={n} p={p}: small validation {small:.1f} s; train, {FOLDS}x{2 * args.cv_repeats} CV + "
                    f"{2 * args.bootstrap} bootstraps")
                double = train_seconds(folder, p, Path(tmp) / "out", 2 * args.cv_repeats, 2 * args.bootstrap, args.jobs)
                per_fit = (double - small) / fits  # the fixed costs (start-up, worker pools, report) cancel
                fixed = small - per_fit * fits
                row = {"n": n, "p": p, "one_fit_s": one, "train_fit_only_s": fit_only, "train_small_validation_s": small,
                       "train_double_validation_s": double, "validation_fits": fits,
                       "seconds_per_validation_fit": per_fit, "fixed_s": fixed,
                       "extrapolated_paper_validation_s": fixed + per_fit * paper_fits,
                       "extrapolated_paper_validation_from_one_fit_s": fit_only + one * paper_fits / args.jobs,
                       "one_fit_detail": fit}
                say(f"n={n} p={p}: double validation {double:.1f} s: {per_fit:.3f} s per validation fit, fixed "
                    f"{fixed:.1f} s, paper's validation extrapolated {row['extrapolated_paper_validation_s']:.0f} s")
                rows.append(row)
    return rows


def summary(rows: List[Dict]) -> Dict:
    """Growth exponents in n per p, and the time ratio 1688 / 851 features at each n."""
    out = {"exponent_n": {}, "ratio_p": {}}
    for key in ("one_fit_s", "seconds_per_validation_fit"):
        out["exponent_n"][key] = {}
        for p in SETTINGS:
            cells = sorted((r["n"], r[key]) for r in rows if r["p"] == p and r[key] > 0)
            if len(cells) >= 2:
                out["exponent_n"][key][str(p)] = growth_exponent([c[0] for c in cells], [c[1] for c in cells])
        low, high = sorted(SETTINGS)
        out["ratio_p"][key] = {str(r["n"]): r[key] / s[key] for r in rows if r["p"] == high
                               for s in rows if s["p"] == low and s["n"] == r["n"] and s[key] > 0}
    return out


def figure(result: Dict, path: Path) -> None:
    """Log-log seconds of one fit of the chain against n, one line per feature count, with the
    fitted exponent (the per-validation-fit times, differences of two runs, stay in the JSON)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter
    rows = result["cells"]
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
    for p, colour in zip(SETTINGS, ("tab:blue", "tab:red")):
        cells = sorted((r["n"], r["one_fit_s"]) for r in rows if r["p"] == p)
        slope = result["exponent_n"]["one_fit_s"].get(str(p))
        label = f"{p} features" + (f" (time ~ n^{slope:.2f})" if slope is not None else "")
        ax.plot([c[0] for c in cells], [c[1] for c in cells], "o-", color=colour, label=label)
        for n, t in cells:
            ax.annotate(f"{t:.2f} s", (n, t), textcoords="offset points", xytext=(4, -12), fontsize=7, color=colour)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ns = sorted({r["n"] for r in rows})
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(ns)
    ax.set_xticklabels([str(v) for v in ns])
    ax.set_xlabel("phantom patients n")
    ax.set_ylabel("seconds, one fit of the whole chain (median)")
    ax.set_title(f"IMNRisk training: one fit vs n and features\n{result['measured']}, load "
                 f"{result['load_average_before'][0]:.1f} -> {result['load_average_after'][0]:.1f} on 2 cores",
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/var/tmp/imnrisk-scale", help="folder of the cached phantom tables")
    parser.add_argument("--build", action="store_true", help="build the tables that are missing (~40 CPU min)")
    parser.add_argument("--build-only", action="store_true", help="build the tables, time nothing")
    parser.add_argument("--replot", action="store_true", help="redraw scale.png from scale.json, time nothing")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cv-repeats", type=int, default=2, help="repeats of 5-fold CV of the small validation")
    parser.add_argument("--bootstrap", type=int, default=20, help="bootstraps of the small validation")
    parser.add_argument("--fits", type=int, default=3, help="fits timed per cell for the one-fit median")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads of the in-process fits (1, as train's workers; 0: the library default)")
    parser.add_argument("--n", type=int, nargs="+", default=sorted(COHORTS), choices=sorted(COHORTS),
                        help="cohort sizes to time (scale.json then holds these only)")
    args = parser.parse_args()
    data = Path(args.data)
    if args.replot:
        figure(json.loads((HERE / "results" / "scale.json").read_text()), HERE / "results" / "scale.png")
        return
    if args.build or args.build_only:
        build_tables(data, args.jobs)
    if args.build_only:
        return
    missing = [f"n{n}/{features_name(p)}" for n in args.n for p in SETTINGS
               if not (data / f"n{n}" / features_name(p)).exists()]
    if missing:
        raise SystemExit(f"{data}: no {', '.join(missing)}: run with --build")
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = measure(data, args)
    result = {"started": started, "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "jobs": args.jobs, "blas_threads_one_fit": args.blas_threads or "default",
              "cv_repeats": args.cv_repeats, "bootstrap": args.bootstrap, "fits": args.fits,
              "paper_validation": f"{FOLDS}-fold CV x {PAPER_REPEATS} nested + leaky, {PAPER_BOOTSTRAP} bootstraps "
                                  "(extrapolated from the measured per-fit time, not run)",
              "first_reader_only": True, "cells": rows, **summary(rows),
              "load_average_before": load_before, "load_average_after": os.getloadavg()}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "scale.json").write_text(json.dumps(result, indent=2) + "\n")
    figure(result, HERE / "results" / "scale.png")
    print(f"{'n':>5} {'p':>5} {'one fit s':>10} {'fit-only train s':>17} {'small val s':>12} {'double val s':>13} "
          f"{'s/val fit':>10} {'paper val s (extrap.)':>22}")
    for r in rows:
        print(f"{r['n']:5} {r['p']:5} {r['one_fit_s']:10.3f} {r['train_fit_only_s']:17.1f} "
              f"{r['train_small_validation_s']:12.1f} {r['train_double_validation_s']:13.1f} "
              f"{r['seconds_per_validation_fit']:10.3f} {r['extrapolated_paper_validation_s']:22.0f}")
    print("growth exponents in n:", json.dumps(result["exponent_n"]))


if __name__ == "__main__":
    main()
