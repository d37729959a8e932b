"""Benchmark: scoring one full-size patient (`imnrisk predict`: only the model's features, on the
cropped tumour) against a full 851-feature extraction by plain pyradiomics with its defaults.

    .venv/bin/python bench/bench_predict.py [--model model.json]

Without --model it trains a quick model on a 60-patient phantom first (not timed). The patient
is bench_extract.py's 512x512x100 volume at 0.66x0.66x2 mm with a ~4 cm tumour.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_extract import make_case, run_child  # noqa: E402


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "IMNRiskLib", *map(str, args)], check=True, capture_output=True,
                          text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model")
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
        levels = {v["name"]: v.get("levels", ["0"]) for v in doc["clinical"]["schema"]["variables"]}
        clinical = [f"{f}={levels[f][-1]}" for f in doc["clinical"]["factors"]]
        image, mask, voxels = make_case(tmp / "full")
        times = []
        for _ in range(3):
            start = time.perf_counter()
            out = cli("predict", model, "--image", image, "--mask", mask, "--json", "--clinical", *clinical)
            times.append(time.perf_counter() - start)
        features = list(json.loads(out.stdout)["features"])
        from IMNRiskLib.modelfile import ScoringModel
        from IMNRiskLib.predict import predict_patient
        scoring = ScoringModel.load(model)
        values = dict(c.split("=", 1) for c in clinical)
        in_process = []
        for _ in range(3):  # what the Slicer module sees: libraries already imported
            start = time.perf_counter()
            predict_patient(scoring, image, mask, clinical=values)
            in_process.append(time.perf_counter() - start)
        full = run_child("pyradiomics", image, mask)
    ours = min(times)
    print(f"imnrisk predict, {len(features)} features ({', '.join(features)}): {min(in_process):.2f} s in process "
          f"(libraries loaded, as in Slicer); {ours:.2f} s as a whole command (with Python start-up and imports)")
    print(f"plain pyradiomics defaults, 851 features (extraction call only): {full['seconds']:.2f} s")
    print(f"ratio: {ours / full['seconds']:.2f}")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "predict.json").write_text(json.dumps(
        {"predict_s": ours, "predict_in_process_s": min(in_process), "features": features, "pyradiomics_full_s": full["seconds"],
         "ratio": ours / full["seconds"]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
