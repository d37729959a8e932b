"""Benchmark: `imnrisk train` on the default phantom (124 patients, 851 features) with the
paper's validation: 5-fold CV x 100 (nested, and the leaky protocol beside it) and 1000 bootstraps.

    .venv/bin/python bench/bench_train.py [--cohort DIR] [--jobs 2] [--cv-repeats 100] [--bootstrap 1000]

Without --cohort it synthesises and extracts the default phantom first (not timed).
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


def cli(*args) -> None:
    subprocess.run([sys.executable, "-m", "IMNRiskLib", *map(str, args)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cohort", help="a folder with cohort.csv and features.csv")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cv-repeats", type=int, default=100)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.cohort) if args.cohort else Path(tmp) / "phantom"
        if not args.cohort:
            cli("synth", folder, "--quiet")
            cli("extract", folder / "cohort.csv", "--out", folder / "features.csv", "--quiet")
        timings = {}
        for label, repeats, boot in (("fit only", 0, 0), ("nested+leaky CV", args.cv_repeats, 0),
                                     ("bootstrap", 0, args.bootstrap)):
            start = time.perf_counter()
            cli("train", folder / "cohort.csv", "--features", folder / "features.csv", "--out", Path(tmp) / "out",
                "--cv-repeats", repeats, "--bootstrap", boot, "--jobs", args.jobs, "--quiet", "--force")
            timings[label] = time.perf_counter() - start
            print(f"{label:18} {timings[label]:7.1f} s", flush=True)
    total = timings["nested+leaky CV"] + timings["bootstrap"] - timings["fit only"]
    print(f"whole validation (5x{args.cv_repeats} CV nested and leaky, {args.bootstrap} bootstraps) on {args.jobs} "
          f"core(s): {total:.0f} s")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "train.json").write_text(json.dumps({"jobs": args.jobs, "cv_repeats": args.cv_repeats,
                                                            "bootstrap": args.bootstrap, "seconds": timings,
                                                            "total_s": total}, indent=2) + "\n")


if __name__ == "__main__":
    main()
