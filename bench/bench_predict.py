"""Benchmark: scoring one full-size patient (`imnrisk predict`: only the model's features, on the
cropped tumour) against a full 851-feature extraction by plain pyradiomics with its defaults, in the
same run, side by side: wall time (what a user waits) and CPU time (user + system, less disturbed
when other work shares the machine).

    .venv/bin/python bench/bench_predict.py [--model model.json] [--bootstrap-model model.json]

Without --model it trains a quick model on a 60-patient phantom first (not timed). The patient
is bench_extract.py's 512x512x100 volume at 0.66x0.66x2 mm with a ~4 cm tumour. With
--bootstrap-model (a model trained with bootstrap replicates) it also times `predict --ci
bootstrap`, which extracts the union of the replicates' features. Writes bench/results/predict.json.
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
sys.path.insert(0, str(HERE))
from bench_extract import make_case, run_child  # noqa: E402

HEAVY = ("matplotlib", "statsmodels", "sklearn", "pandas", "scipy.stats")


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "IMNRiskLib", *map(str, args)], check=True, capture_output=True,
                          text=True)


def timed_cli(*args) -> dict:
    """Wall and CPU seconds (user + system of the child) of one whole command, and its output."""
    before = os.times()
    start = time.perf_counter()
    out = cli(*args)
    wall = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"wall_s": wall, "cpu_s": cpu, "stdout": out.stdout}


def best(runs: list) -> dict:
    return {"wall_s": min(r["wall_s"] for r in runs), "cpu_s": min(r["cpu_s"] for r in runs)}


def clinical_args(doc: dict, names) -> list:
    """NAME=VALUE for each factor: the last level, or a number inside a continuous variable's range."""
    schema = {v["name"]: v for v in doc["clinical"]["schema"]["variables"]}

    def value(v: dict) -> str:
        if v.get("levels"):
            return v["levels"][-1]
        return f"{(v.get('min', 0) + v.get('max', 2 * v.get('min', 0) + 2)) / 2:g}"
    return [f"{f}={value(schema[f])}" for f in names]


def import_check() -> dict:
    """Which heavy libraries the scoring modules load, and how long importing them takes."""
    code = ("import sys, time, json; t = time.perf_counter(); import IMNRiskLib.app.cli, IMNRiskLib.app.predict; "
            f"print(json.dumps({{'s': time.perf_counter() - t, 'loaded': [m for m in {HEAVY!r} if m in sys.modules]}}))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model")
    parser.add_argument("--bootstrap-model", help="a model.json with bootstrap replicates: also time --ci bootstrap")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = Path(args.model) if args.model else tmp / "model" / "model.json"
        if not args.model:
            cli("synth", tmp / "phantom", "--patients", "60", "--quiet")
            cli("extract", tmp / "phantom" / "cohort.csv", "--out", tmp / "features.csv", "--quiet")
            cli("train", tmp / "phantom" / "cohort.csv", "--features", tmp / "features.csv", "--out", tmp / "model",
                "--cv-repeats", "0", "--bootstrap", "0", "--quiet")
        doc = json.loads(model.read_text())
        clinical = clinical_args(doc, doc["clinical"]["factors"])
        image, mask, voxels = make_case(tmp / "full")
        runs = [timed_cli("predict", model, "--image", image, "--mask", mask, "--json", "--clinical", *clinical)
                for _ in range(args.repeats)]
        features = list(json.loads(runs[-1]["stdout"])["features"])
        from IMNRiskLib.scoring.modelfile import ScoringModel
        from IMNRiskLib.scoring import score_case
        from IMNRiskLib.scoring.core import case_from_files
        scoring = ScoringModel.load(model)
        values = dict(c.split("=", 1) for c in clinical)
        in_process = []
        for _ in range(args.repeats):  # what the Slicer module sees: libraries already imported
            start = time.perf_counter()
            score_case(scoring, case_from_files(scoring, image, mask), values)
            in_process.append(time.perf_counter() - start)
        boot = None
        if args.bootstrap_model:
            bdoc = json.loads(Path(args.bootstrap_model).read_text())
            from IMNRiskLib.scoring.modelfile import ScoringModel
            bmodel = ScoringModel(bdoc)
            bclin = clinical_args(bdoc, bmodel.ci_factors)
            common = ["predict", args.bootstrap_model, "--image", image, "--mask", mask, "--json", "--clinical", *bclin]
            boot = {"wald": best([timed_cli(*common) for _ in range(args.repeats)]),
                    "bootstrap": best([timed_cli(*common, "--ci", "bootstrap") for _ in range(args.repeats)]),
                    "replicates": bdoc["uncertainty"]["b"], "features_model": len(bdoc["radiomics"]["features"]),
                    "features_union": len(bmodel.ci_features),
                    "model_json_bytes": Path(args.bootstrap_model).stat().st_size}
        before = os.times()
        full = run_child("pyradiomics", image, mask)
        after = os.times()
        full_cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    ours = best(runs)
    imports = import_check()
    print(f"imnrisk predict, {len(features)} features ({', '.join(features)}), whole command: "
          f"{ours['wall_s']:.2f} s wall, {ours['cpu_s']:.2f} s CPU; in process (libraries loaded, as in Slicer): "
          f"{min(in_process):.2f} s")
    print(f"plain pyradiomics defaults, 851 features, whole child process: {full['seconds']:.2f} s wall "
          f"(extraction call), {full_cpu:.2f} s CPU")
    print(f"ratio (predict / pyradiomics): {ours['wall_s'] / full['seconds']:.3f} wall, {ours['cpu_s'] / full_cpu:.3f} CPU")
    print(f"importing the scoring modules: {imports['s']:.2f} s; heavy libraries loaded: {imports['loaded'] or 'none'}")
    if boot:
        print(f"--ci bootstrap ({boot['replicates']} replicates, {boot['features_union']} features to extract instead "
              f"of {boot['features_model']}): {boot['bootstrap']['wall_s']:.2f} s wall, {boot['bootstrap']['cpu_s']:.2f} s "
              f"CPU, against {boot['wald']['wall_s']:.2f} s / {boot['wald']['cpu_s']:.2f} s with the Wald CI; "
              f"model.json {boot['model_json_bytes'] / 1e6:.2f} MB")
    load = os.getloadavg()
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "predict.json").write_text(json.dumps(
        {"predict_s": ours["wall_s"], "predict_cpu_s": ours["cpu_s"], "predict_in_process_s": min(in_process),
         "features": features, "pyradiomics_full_s": full["seconds"], "pyradiomics_full_cpu_s": full_cpu,
         "ratio": ours["wall_s"] / full["seconds"], "ratio_cpu": ours["cpu_s"] / full_cpu,
         "import_s": imports["s"], "heavy_modules_loaded": imports["loaded"], "ci_bootstrap": boot,
         "load_average_1_5_15": list(load), "cpus": os.cpu_count()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
