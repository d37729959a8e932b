"""Benchmark: `imnrisk train` on the default phantom (124 patients, 851 features) with the
paper's validation: 5-fold CV x 100 (nested, and the leaky protocol beside it) and 1000 bootstraps,
timed as the one command a user runs (wall and CPU seconds; `--split`: the CV and the bootstrap
alone as well), and the same command without validation.

    .venv/bin/python bench/bench_train.py [--cohort DIR] [--jobs 2] [--cv-repeats 100] [--bootstrap 1000] [--split] [--numpy]

Without --cohort it synthesises and extracts the default phantom first (not timed). It also
times single fits of the whole chain, the current one and the frozen pre-speed-work copy
(Testing/reference_chain) interleaved on the same bootstrap resamples, so that the per-fit gain
can be read on a busy machine too; and it records the load average. The reference for the whole
command (issue 31: train <= 3x) is one extraction by pyradiomics 3.0.1 with its defaults
(Original + wavelet) on bench_extract.py's 512 x 512 x 100 case, timed in the same run
(--no-reference skips it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cli(*args, env: dict = None) -> None:
    subprocess.run([sys.executable, "-m", "IMNRiskLib", *map(str, args)], check=True,
                   env=None if env is None else {**os.environ, **env})


def timed_cli(*args, env: dict = None) -> dict:
    """Wall seconds of one command, and the CPU seconds of it and its workers (reaped children):
    the CPU figure does not grow when other work shares the machine, the wall figure does."""
    import resource
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    cli(*args, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": time.perf_counter() - start, "cpu_s": cpu}


def compiled_kernels() -> bool:
    """Whether the commands timed ran numba's kernels (IMNRiskLib/stats/kernels.py) or numpy's solvers."""
    from IMNRiskLib.stats import kernels
    return kernels.available()


def per_fit_seconds(folder: Path, fits: int) -> dict:
    """Median seconds of one fit of the whole chain, current and reference, interleaved."""
    import statistics
    sys.path.insert(0, str(HERE.parent / "Testing"))
    from IMNRiskLib.modelling.models import fit_models
    from IMNRiskLib.app.training import load_training_data
    from IMNRiskLib.resampling.validation import bootstrap_samples
    from reference_chain.models import fit_models as reference_fit
    data = load_training_data(folder / "cohort.csv", folder / "features.csv")
    times = {"current": [], "reference": []}
    for fn in (fit_models, reference_fit):  # warm up (imports)
        fn(data.features, data.clinical, data.y, data.schema, data.options)
    for idx in bootstrap_samples(len(data.y), fits, 1):
        d = data.take(idx)
        for label, fn in (("current", fit_models), ("reference", reference_fit)):
            start = time.perf_counter()
            fn(d.features, d.clinical, d.y, d.schema, d.options)
            times[label].append(time.perf_counter() - start)
    out = {k: statistics.median(v) for k, v in times.items()}
    out["speedup"] = out["reference"] / out["current"]
    return out


def pyradiomics_reference(folder: Path) -> dict:
    """One extraction by pyradiomics' defaults on the bench case, in a fresh process (bench_extract.py)."""
    sys.path.insert(0, str(HERE))
    from bench_extract import make_case, run_child
    image, mask, _ = make_case(folder)
    return run_child("pyradiomics", image, mask)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cohort", help="a folder with cohort.csv and features.csv")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cv-repeats", type=int, default=100)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--per-fit", type=int, default=5, help="fits timed per chain (0: skip)")
    parser.add_argument("--split", action="store_true", help="also time the CV and the bootstrap alone")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the pyradiomics-defaults extraction the whole command is compared with")
    parser.add_argument("--numpy", action="store_true",
                        help="also time the whole command with the numpy solvers (IMNRISK_COMPILED=0: no numba)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.cohort) if args.cohort else Path(tmp) / "phantom"
        if not args.cohort:
            cli("synth", folder, "--quiet")
            cli("extract", folder / "cohort.csv", "--out", folder / "features.csv", "--quiet")
        fit = per_fit_seconds(folder, args.per_fit) if args.per_fit else None
        if fit:
            print(f"one fit of the chain: {fit['current']:.3f} s (reference {fit['reference']:.3f} s, "
                  f"{fit['speedup']:.1f}x)", flush=True)
        runs = {}
        phases = [("fit only", 0, 0, None), ("whole: imnrisk train", args.cv_repeats, args.bootstrap, None)]
        if args.split:
            phases[1:1] = [("nested+leaky CV", args.cv_repeats, 0, None), ("bootstrap", 0, args.bootstrap, None)]
        if args.numpy:
            phases.append(("whole, numpy solvers", args.cv_repeats, args.bootstrap, {"IMNRISK_COMPILED": "0"}))
        for label, repeats, boot, env in phases:
            runs[label] = timed_cli("train", folder / "cohort.csv", "--features", folder / "features.csv", "--out",
                                    Path(tmp) / "out", "--cv-repeats", repeats, "--bootstrap", boot, "--jobs",
                                    args.jobs, "--quiet", "--force", env=env)
            print(f"{label:22} {runs[label]['wall_s']:7.1f} s wall, {runs[label]['cpu_s']:7.1f} s CPU", flush=True)
        reference = None if args.no_reference else pyradiomics_reference(Path(tmp) / "case")
    total = runs["whole: imnrisk train"]["wall_s"]
    print(f"imnrisk train with the whole validation (5x{args.cv_repeats} CV nested and leaky, {args.bootstrap} "
          f"bootstraps) on {args.jobs} core(s): {total:.0f} s")
    if reference:
        print(f"one pyradiomics-defaults extraction of the 512 x 512 x 100 case: {reference['seconds']:.1f} s; "
              f"train / extraction: {total / reference['seconds']:.2f} (target <= 3)")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "train.json").write_text(json.dumps({
        "jobs": args.jobs, "cv_repeats": args.cv_repeats, "bootstrap": args.bootstrap,
        "seconds": {k: v["wall_s"] for k, v in runs.items()}, "cpu_seconds": {k: v["cpu_s"] for k, v in runs.items()},
        "total_s": total, "one_fit_s": fit, "pyradiomics_defaults_extraction": reference,
        "train_over_extraction": total / reference["seconds"] if reference else None, "compiled_kernels": compiled_kernels(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, indent=2) + "\n")


if __name__ == "__main__":
    main()
