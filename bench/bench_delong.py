"""Benchmark: DeLong AUC variance and the paired test on 10^6 patients, IMNRisk against R's pROC.

    .venv/bin/python bench/bench_delong.py [--n 1000000]

Times IMNRisk's O(n log n) DeLong (AUC + variance + CI, then the paired test of two scores) and,
when Rscript with pROC is on the machine, pROC's `ci.auc(method="delong")` and
`roc.test(method="delong", paired=TRUE)` on the same data in the same run; checks they agree.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
R_CODE = r"""
suppressPackageStartupMessages(library(pROC))
d <- read.csv(commandArgs(TRUE)[1])
t0 <- proc.time()[["elapsed"]]
r1 <- roc(d$y, d$a, levels = c(0, 1), direction = "<", quiet = TRUE)
ci <- ci.auc(r1, method = "delong")
t1 <- proc.time()[["elapsed"]]
r2 <- roc(d$y, d$b, levels = c(0, 1), direction = "<", quiet = TRUE)
t2 <- proc.time()[["elapsed"]]
tt <- roc.test(r1, r2, method = "delong", paired = TRUE)
t3 <- proc.time()[["elapsed"]]
cat(sprintf('{"auc": %.15g, "ci_low": %.15g, "z": %.15g, "single_s": %.4f, "paired_s": %.4f}\n',
            as.numeric(auc(r1)), ci[1], tt$statistic, t1 - t0, (t3 - t2) + (t2 - t1) + (t1 - t0)))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    args = parser.parse_args()
    from IMNRiskLib.stats import evaluation
    rng = np.random.default_rng(0)
    y = (rng.random(args.n) < 0.17).astype(int)
    a = y * 1.2 + rng.standard_normal(args.n)
    b = y * 0.8 + rng.standard_normal(args.n)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        res = evaluation.auc_delong(y, a)
        t1 = time.perf_counter()
        test = evaluation.delong_test(y, a, b)
        t2 = time.perf_counter()
        times.append((t1 - t0, t2 - t0))
    single, paired = min(t[0] for t in times), min(t[1] for t in times)
    report = {"n": args.n, "imnrisk": {"single_s": single, "paired_s": paired, "auc": res.auc, "z": test["z"]}}
    print(f"n = {args.n:,}: IMNRisk AUC + DeLong CI {single:.2f} s; + paired test {paired:.2f} s")
    if shutil.which("Rscript"):
        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / "d.csv"
            np.savetxt(csv, np.column_stack([y, a, b]), delimiter=",", header="y,a,b", comments="", fmt="%.17g")
            script = Path(tmp) / "b.R"
            script.write_text(R_CODE)
            out = subprocess.run(["Rscript", str(script), str(csv)], capture_output=True, text=True)
        if out.returncode == 0:
            r = json.loads(out.stdout.strip().splitlines()[-1])
            report["pROC"] = r
            print(f"pROC: AUC + DeLong CI {r['single_s']:.2f} s; + paired test {r['paired_s']:.2f} s "
                  f"(ratio IMNRisk/pROC: {single / r['single_s']:.2f} and {paired / r['paired_s']:.2f})")
            print(f"agreement: |dAUC| = {abs(r['auc'] - res.auc):.1e}, |dCI| = {abs(r['ci_low'] - res.ci95[0]):.1e}, "
                  f"|dZ| = {abs(r['z'] - test['z']):.1e}")
        else:
            print("pROC not available:", out.stderr.strip().splitlines()[-1:])
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "delong.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
