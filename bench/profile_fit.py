"""Profile one fit of the whole chain (`models.fit_models`: clinical factors + selection Pipeline)
with cProfile on bootstrap resamples of a cohort; prints the per-fit time and the top lines.

    .venv/bin/python bench/profile_fit.py --cohort DIR [--fits 10] [--reference]

--reference profiles the frozen pre-speed-work copy (Testing/reference_chain) instead.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cohort", required=True, help="a folder with cohort.csv and features.csv")
    parser.add_argument("--fits", type=int, default=10)
    parser.add_argument("--reference", action="store_true")
    parser.add_argument("--lines", type=int, default=25)
    args = parser.parse_args()
    from IMNRiskLib.app.training import load_training_data
    from IMNRiskLib.resampling.validation import bootstrap_samples
    if args.reference:
        sys.path.insert(0, str(ROOT / "Testing"))
        from reference_chain.models import fit_models
    else:
        from IMNRiskLib.modelling.models import fit_models
    folder = Path(args.cohort)
    data = load_training_data(folder / "cohort.csv", folder / "features.csv")
    fit_models(data.features, data.clinical, data.y, data.schema, data.options)  # imports, caches
    samples = bootstrap_samples(len(data.y), args.fits, 0)
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    for idx in samples:
        d = data.take(idx)
        fit_models(d.features, d.clinical, d.y, d.schema, d.options)
    profile.disable()
    per_fit = (time.perf_counter() - start) / len(samples)
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(args.lines)
    print(f"{'reference' if args.reference else 'fast'} chain: {per_fit:.3f} s per fit (under cProfile), "
          f"{len(samples)} bootstrap fits")
    print(out.getvalue())


if __name__ == "__main__":
    main()
