"""Per-call time of the clinical factor selection: `clinical.table2` (the printed Table 2) and
`clinical.table2_selection` (its decisions only, what every fit of the validation calls), on
bootstrap resamples of the shared 300-patient phantom's clinical table, for both tests.

    .venv/bin/python bench/bench_clinical.py [--calls 200] [--out bench/results/clinical.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from IMNRiskLib.modelling import clinical
from IMNRiskLib.app import training

ROOT = Path(__file__).resolve().parents[1]
# the test suite's shared phantom (its folder name ends with its parameter file's hash)
PHANTOM = max((ROOT / ".cache").glob("test-phantom-300-1*/"), default=ROOT / ".cache" / "test-phantom-300-1")


def per_call_ms(fn, frames, **options) -> float:
    """Median over the resamples of one call's CPU time (process_time: the machine is shared), in ms."""
    times = []
    for frame, y in frames:
        start = time.process_time()
        fn(frame, pd.Series(y, index=frame.index), **options)
        times.append(time.process_time() - start)
    return 1e3 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--patients", type=int, default=124, help="first n phantom patients (124: the paper)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    data = training.load_training_data(PHANTOM / "cohort.csv", PHANTOM / "features.csv")
    frame, y = data.clinical.iloc[:args.patients], data.y[:args.patients]
    rng = np.random.default_rng(0)
    frames = [(frame.iloc[idx], y[idx]) for idx in (rng.integers(0, len(y), len(y)) for _ in range(args.calls))]
    result = {"patients": len(y), "variables": len(data.schema.names), "calls": args.calls}
    for test in clinical.CLINICAL_TESTS:
        result[f"table2_{test}_ms"] = per_call_ms(clinical.table2, frames, schema=data.schema, test=test)
        if hasattr(clinical, "table2_selection"):
            result[f"table2_selection_{test}_ms"] = per_call_ms(clinical.table2_selection, frames,
                                                                schema=data.schema, test=test)
    result["load_average_1min"] = os.getloadavg()[0]  # 2 cores shared: CPU time grows with the load
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
