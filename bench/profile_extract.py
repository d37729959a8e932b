"""Where a phantom case's extraction spends its time, and what a small batch costs in one process
and on a pool: wall and CPU seconds (main process and workers), then cProfile's top lines.

    .venv/bin/python bench/profile_extract.py --cohort DIR [--cases 40] [--jobs 1 2] [--profile 5]

DIR holds a phantom's cohort.csv (`imnrisk synth`). The extraction is `features._run_local`, what
`imnrisk extract` runs, without the cache.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import time


def cpu_seconds() -> float:
    """CPU of this process and its reaped children (the pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    from IMNRiskLib.radiomics import features
    from IMNRiskLib.inputs.cohort import read_cohort
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", required=True)
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--profile", type=int, default=5, help="cases under cProfile (0: none)")
    parser.add_argument("--lines", type=int, default=12, help="cProfile lines to print")
    parser.add_argument("--sort", default="tottime", help="cProfile order (tottime, cumtime)")
    args = parser.parse_args()
    cohort = read_cohort(f"{args.cohort}/cohort.csv")
    settings = features.load_settings()
    tasks = [dict(features._task(c, settings), number=k) for k, c in enumerate(cohort.cases[:args.cases])]
    features.extract_case(tasks[0])  # imports and first-call costs out of the timings
    for jobs in args.jobs:
        wall, cpu = time.perf_counter(), cpu_seconds()
        done = sum(1 for _ in features._run_local(tasks, jobs))
        print(f"{done} cases, {jobs} job(s): {time.perf_counter() - wall:.1f} s wall, {cpu_seconds() - cpu:.1f} s CPU")
    if args.profile:
        profile = cProfile.Profile()
        start = time.perf_counter()
        profile.enable()
        for task in tasks[1:args.profile + 1]:
            features.extract_case(task)
        profile.disable()
        print(f"under cProfile: {(time.perf_counter() - start) / args.profile:.3f} s a case")
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.lines)


if __name__ == "__main__":
    main()
