"""Benchmark: truth recovery on the phantom (issue #12.11). Training sets of 124 patients (the
paper's size) are drawn from a larger phantom, each trained as a user would and scored on the
phantom's other patients; records how often each true factor (tumour location, PR, ALN) and any
non-causal factor is kept, the Rad-Score's Spearman correlation with the true imaging phenotype,
and the nested- and leaky-CV AUC bias against fresh patients, with times.

    .venv/bin/python bench/bench_truth.py [--cohort DIR] [--sets 16] [--train 124] [--cv-repeats 2]
        [--protocol imnrisk|paper|both] [--jobs 2]

--cohort: a phantom folder with cohort.csv, features.csv and truth.json (e.g. the tests' shared
.cache/test-phantom-300-1-*, original-image features). Without it, a 600-patient phantom (seed 2)
is synthesised and extracted with every feature (851) into .cache/bench-truth-600-2 (once; long).
Results: bench/results/truth.json (with --cohort: truth_phantom<patients>.json). CPU-heavy: run it once, not in a loop.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def cli(*args) -> None:
    subprocess.run([sys.executable, "-m", "IMNRiskLib", *map(str, args)], check=True)


def default_phantom(patients: int = 600, seed: int = 2) -> Path:
    """The bench's own phantom, made once (synth + extract with the default 851 features)."""
    folder = ROOT / ".cache" / f"bench-truth-{patients}-{seed}"
    if not (folder / "features.csv").exists():
        cli("synth", folder, "--patients", patients, "--seed", seed, "--quiet", "--force")
        cli("extract", folder / "cohort.csv", "--out", folder / "features.csv", "--quiet", "--force")
    return folder


def readme_table(doc: dict) -> str:
    """The README's table: each protocol's recovery figures beside what the paper reports."""
    from IMNRiskLib.app.recovery import TRUE_FACTORS
    names = list(doc["protocols"])
    rows = [("true factors kept (location / PR / ALN)", "location, PR, ALN (one cohort)",
             [" / ".join(f"{r['summary']['kept'][f]:.0%}" for f in TRUE_FACTORS) for r in doc["protocols"].values()]),
            ("any non-causal factor kept", "-", [f"{r['summary']['any_non_causal_kept']:.0%}" for r in doc["protocols"].values()]),
            ("Rad-Score Spearman with the true phenotype (fresh patients), mean [min, max]", "-",
             [f"{r['summary']['radscore_spearman']['mean']:.2f} [{r['summary']['radscore_spearman']['min']:.2f}, "
              f"{r['summary']['radscore_spearman']['max']:.2f}]" for r in doc["protocols"].values()])]
    paper_auc = {"clinical": "0.913", "radiomics": "0.831", "combined": "0.964"}
    for m in ("clinical", "radiomics", "combined"):
        rows.append((f"{m}: AUC on fresh patients (paper: apparent)", paper_auc[m],
                     [f"{r['summary']['models'][m]['fresh_auc']['mean']:.3f}" for r in doc["protocols"].values()]))
        rows.append((f"{m}: nested-CV AUC - fresh AUC, mean (SD)", "-",
                     [f"{r['summary']['models'][m]['nested_bias']['mean']:+.3f} ({r['summary']['models'][m]['nested_bias']['sd']:.3f})"
                      for r in doc["protocols"].values()]))
        rows.append((f"{m}: leaky-CV AUC - fresh AUC, mean (SD)", "-",
                     [f"{r['summary']['models'][m]['leaky_bias']['mean']:+.3f} ({r['summary']['models'][m]['leaky_bias']['sd']:.3f})"
                      for r in doc["protocols"].values()]))
    lines = ["| | paper | " + " | ".join(f"IMNRisk, {n} protocol" for n in names) + " |",
             "|---|---|" + "---|" * len(names)]
    lines += [f"| {label} | {paper} | " + " | ".join(values) + " |" for label, paper, values in rows]
    return "\n".join(lines)


def main() -> None:
    from IMNRiskLib.modelling import protocols
    from IMNRiskLib.app import recovery
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cohort", help="phantom folder (cohort.csv, features.csv, truth.json)")
    parser.add_argument("--sets", type=int, default=16)
    parser.add_argument("--train", type=int, default=124)
    parser.add_argument("--cv-repeats", type=int, default=2)
    parser.add_argument("--protocol", choices=("imnrisk", "paper", "both"), default="imnrisk")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = Path(args.cohort) if args.cohort else default_phantom()
    data, phenotype = recovery.load_phantom(folder)
    runs = {}
    for name in [p for p in protocols.PROTOCOLS if args.protocol in (p, "both")]:
        start = time.perf_counter()
        result = recovery.recovery(data, phenotype, n_sets=args.sets, n_train=args.train, seed=args.seed,
                                   cv_repeats=args.cv_repeats, options=protocols.training_options(name),
                                   jobs=args.jobs, say=lambda m: print(f"[{name}] {m}", flush=True))
        result["seconds"] = time.perf_counter() - start
        runs[name] = result
        s = result["summary"]
        print(f"[{name}] {args.sets} sets in {result['seconds']:.0f} s: kept " +
              ", ".join(f"{f} {s['kept'][f]:.0%}" for f in recovery.TRUE_FACTORS) +
              f", any non-causal {s['any_non_causal_kept']:.0%}; Rad-Score rho {s['radscore_spearman']['mean']:.2f}; " +
              "; ".join(f"{m} nested bias {s['models'][m]['nested_bias']['mean']:+.3f} leaky "
                        f"{s['models'][m]['leaky_bias']['mean']:+.3f}" for m in ("radiomics", "combined")), flush=True)
    (HERE / "results").mkdir(exist_ok=True)
    doc = {"phantom": {"patients": int(len(data.y)), "events": int(data.y.sum()), "features": int(data.features.shape[1]),
                       "folder": folder.name},
           "jobs": args.jobs, "protocols": runs}
    name = f"truth_phantom{len(data.y)}.json" if args.cohort else "truth.json"  # a given cohort keeps the default's file
    (HERE / "results" / name).write_text(json.dumps(doc, indent=1) + "\n")
    print(readme_table(doc))


if __name__ == "__main__":
    main()
