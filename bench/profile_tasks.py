"""CPU time of the validation's tasks, and of each selection step inside them: a bootstrap
replicate (`validation._boot_task`: the whole chain on a resample of the cohort, then its
predictions and performance on the resample and on the cohort), a nested-CV fold (`_fold_task`)
or a leaky-CV fold (selection frozen). The data are loaded as `imnrisk train` loads them, with the
second reader's table beside features.csv when there (the ICC filter then runs in every fit).

    .venv/bin/python bench/profile_tasks.py --cohort DIR [--kind boot|nested|leaky] [--tasks 20] [--profile]
        [--sort cumulative|tottime]

statsmodels (which a calibration line asks in the rare fits Newton leaves alone, once per worker
process) is imported before the timing, so that a few tasks do not carry a second of imports.

CPU seconds (`time.process_time`, one process, OMP_NUM_THREADS=1 as in the workers) do not grow
much when the machine is shared; to compare with other code, run the same command with
PYTHONPATH pointing at that code's checkout (e.g. `git worktree add /tmp/old 529e068`).
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import os
import pstats
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def timed_steps(accumulated: collections.Counter) -> None:
    """Wrap each selection step's fit (and the clinical selection) to add its CPU time up."""
    from IMNRiskLib.modelling import models, selection

    def wrap(owner, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                accumulated[label] += time.process_time() - start
        setattr(owner, name, timed)
    for step in ("ICCFilter", "ConstantFilter", "CorrelationFilter", "SpearmanFilter", "VIFFilter", "MannWhitneyFilter",
                 "ZScore", "LassoSelector", "ForwardSelector", "RadScore"):
        if hasattr(selection, step):
            wrap(getattr(selection, step), "fit", step)
    wrap(models, "select_factors", "clinical factors")


def warm_fallbacks() -> None:
    """Import what a task's rare fallbacks load (statsmodels, for a calibration line Newton leaves
    alone), once per process as in a worker, so that 20 tasks do not carry a second of imports."""
    import numpy as np
    from IMNRiskLib.stats import evaluation
    evaluation.glm_logistic(np.array([0, 1, 0, 1, 1, 0]), np.column_stack([np.ones(6), np.arange(6.0)]))


def tasks_of(kind: str, folder: Path, count: int, protocol: str = "imnrisk"):
    """`count` tasks of one kind on the cohort in folder, and the function that runs one; the
    paper protocol without the second reader (it has no ICC filter), as `imnrisk train` runs it."""
    from sklearn.model_selection import StratifiedKFold
    from IMNRiskLib.resampling import validation
    from IMNRiskLib.modelling.models import fit_models
    from IMNRiskLib.app.training import add_second_reader, load_training_data
    from IMNRiskLib.modelling.protocols import training_options
    data = load_training_data(folder / "cohort.csv", folder / "features.csv")
    data.options = training_options(protocol)
    if protocol == "imnrisk" and (folder / "features_reader2.csv").exists():
        data = add_second_reader(data, folder / "features_reader2.csv", 0.75)
    whole = fit_models(data.features, data.clinical, data.y, data.schema, data.options)  # imports, caches
    warm_fallbacks()
    if kind == "boot":
        samples = validation.bootstrap_samples(len(data.y), count, 0)
        return [(k, data, s) for k, s in enumerate(samples)], validation._boot_task
    frozen = (whole.factors, whole.radiomics) if kind == "leaky" else None
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(data.features, data.y))
    return [(k, data, 0, tr, te, frozen) for k, (tr, te) in enumerate((folds * count)[:count])], validation._fold_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cohort", required=True, help="a folder with cohort.csv and features.csv")
    parser.add_argument("--kind", choices=("boot", "nested", "leaky"), default="boot")
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--protocol", choices=("imnrisk", "paper"), default="imnrisk")
    parser.add_argument("--profile", action="store_true", help="also print cProfile's top lines (slower)")
    parser.add_argument("--sort", default="cumulative", help="cProfile order: cumulative or tottime")
    args = parser.parse_args()
    steps: collections.Counter = collections.Counter()
    tasks, run = tasks_of(args.kind, Path(args.cohort), args.tasks, args.protocol)
    timed_steps(steps)
    profile = cProfile.Profile()
    start = time.process_time()
    if args.profile:
        profile.enable()
    for task in tasks:
        run(task)
    profile.disable()
    per_task = (time.process_time() - start) / len(tasks)
    print(f"{args.kind} task: {per_task * 1000:.1f} ms CPU per task ({len(tasks)} tasks)")
    print("  " + ", ".join(f"{name} {seconds / len(tasks) * 1000:.1f} ms" for name, seconds in steps.most_common()))
    if args.profile:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(args.sort).print_stats(40)
        print(out.getvalue())


if __name__ == "__main__":
    main()
