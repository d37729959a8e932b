"""Where a phantom case's extraction spends its time, and what a small batch costs in one process
and on a pool: wall and CPU seconds (main process and workers), then cProfile's top lines.

    .venv/bin/python bench/profile_extract.py --cohort DIR [--cases 40] [--jobs 1 2] [--profile 5]

DIR holds a phantom's cohort.csv (`imnrisk synth`). The extraction is `features._run_local`, what
`imnrisk extract` runs, without the cache: each case with its second reader (Mask2) when the
manifest has one, both in one task as `extract_cohort` makes them (`--readers 1`: Mask only).
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
    parser.add_argument("--readers", type=int, choices=(1, 2), default=2, help="2: Mask2 too, where given")
    args = parser.parse_args()
    cohort = read_cohort(f"{args.cohort}/cohort.csv")
    settings = features.load_settings()
    jobs_of_cases = [case_job(features, c, settings, args.readers) for c in cohort.cases[:args.cases]]
    extracted = sum(len(job) for job in jobs_of_cases)
    run_job(features, jobs_of_cases[0])  # imports and first-call costs out of the timings
    for jobs in args.jobs:
        wall, cpu = time.perf_counter(), cpu_seconds()
        for _ in run_jobs(features, jobs_of_cases, jobs):
            pass
        cpu = cpu_seconds() - cpu
        print(f"{len(jobs_of_cases)} cases ({extracted} extractions), {jobs} job(s): "
              f"{time.perf_counter() - wall:.1f} s wall, {cpu:.1f} s CPU ({cpu / extracted:.3f} s an extraction)")
    if args.profile:
        profile = cProfile.Profile()
        start = time.perf_counter()
        profile.enable()
        for job in jobs_of_cases[1:args.profile + 1]:
            run_job(features, job)
        profile.disable()
        print(f"under cProfile: {(time.perf_counter() - start) / args.profile:.3f} s a case")
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.lines)


def case_job(features, case, settings, readers: int) -> list:
    """A case's tasks: Mask, and Mask2 when asked for and given."""
    tasks = [features._task(case, settings)]
    if readers == 2 and case.mask2 is not None:
        tasks.append(features._task(case, settings, reader=2))
    return tasks


def run_job(features, job: list) -> list:
    """One case's extractions as `imnrisk extract` runs them (one task a reader before `extract_tasks`)."""
    if hasattr(features, "extract_tasks"):
        return features.extract_tasks(job)
    return [features.extract_case(task) for task in job]


def run_jobs(features, jobs_of_cases: list, jobs: int):
    if hasattr(features, "extract_tasks"):
        return features._run_local(jobs_of_cases, jobs, features.extract_tasks)
    return features._run_local([task for job in jobs_of_cases for task in job], jobs)


if __name__ == "__main__":
    main()
