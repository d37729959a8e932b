"""Benchmark: one full-size case, IMNRisk's extraction against plain pyradiomics, side by side.

A synthetic 512x512x100 volume at 0.66x0.66x2 mm with a ~4 cm textured tumour is written to
NRRD; each variant runs in its own fresh process (time of the extraction call, peak RSS of the
process). Then a 124-case cohort is extracted once and re-run from the cache (whole CLI, wall time).

    .venv/bin/python bench/bench_extract.py [--repeat 3] [--skip-cohort]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHAPE = (100, 512, 512)  # z, y, x
SPACING = (0.66, 0.66, 2.0)


def make_case(folder: Path, shape=SHAPE, spacing=SPACING, radius_mm=20.0, seed=0) -> tuple:
    """A breast-like noisy volume with an enhancing, internally heterogeneous ellipsoid tumour."""
    import SimpleITK as sitk
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    cz, cy, cx = shape[0] // 2, shape[1] // 2, shape[2] // 2
    r = np.sqrt(((z - cz) * spacing[2]) ** 2 + ((y - cy) * spacing[1] / 1.2) ** 2 + ((x - cx) * spacing[0]) ** 2)
    image = 300 + 40 * rng.standard_normal(shape, dtype=np.float32)
    tumour = r <= radius_mm
    image[tumour] += 500 + 120 * rng.standard_normal(int(tumour.sum()), dtype=np.float32)
    img = sitk.GetImageFromArray(image.astype(np.int16))
    img.SetSpacing(spacing)
    msk = sitk.GetImageFromArray(tumour.astype(np.uint8))
    msk.CopyInformation(img)
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(folder / "image.nrrd"), True)
    sitk.WriteImage(msk, str(folder / "mask.nrrd"), True)
    return folder / "image.nrrd", folder / "mask.nrrd", int(tumour.sum())


def child(variant: str, image: str, mask: str) -> None:
    """Run one extraction in this (fresh) process and print its time as JSON."""
    import logging
    import radiomics
    radiomics.setVerbosity(logging.ERROR)
    if variant == "pyradiomics":
        from radiomics import featureextractor
        extractor = featureextractor.RadiomicsFeatureExtractor()  # defaults: no preCrop, binWidth 25
        extractor.enableImageTypes(Original={}, Wavelet={})
        extractor.enableAllFeatures()
        start = time.perf_counter()
        result = extractor.execute(image, mask)
        n = sum(not k.startswith("diagnostics_") for k in result)
    else:
        from IMNRiskLib.radiomics import features
        from IMNRiskLib.inputs import imaging
        settings = features.load_settings()
        start = time.perf_counter()
        loaded = imaging.load_case(image, mask)
        values, _ = features.compute_features(loaded, settings)
        n = len(values)
    print(json.dumps({"seconds": time.perf_counter() - start, "features": n}))


def run_child(variant: str, image: Path, mask: Path) -> dict:
    """Time and peak memory (max RSS of the child process) of one variant."""
    proc = subprocess.Popen([sys.executable, __file__, "--child", variant, str(image), str(mask)],
                            stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{variant} failed")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_gb"] = usage.ru_maxrss / 1024 ** 2  # ru_maxrss is in KiB on Linux
    return result


def bench_cohort(folder: Path, n: int = 124) -> dict:
    """Extract a cohort once, then time the all-cached re-run of the whole CLI."""
    import pandas as pd
    rows = []
    for i in range(n):
        img, msk, _ = make_case(folder / f"P{i:03d}", shape=(40, 160, 160), spacing=(0.9, 0.9, 2.0),
                                radius_mm=8 + (i % 7), seed=i)
        rows.append({"ID": f"P{i:03d}", "Image": str(img), "Mask": str(msk)})
    pd.DataFrame(rows).to_csv(folder / "cohort.csv", index=False)
    cmd = [sys.executable, "-m", "IMNRiskLib", "extract", str(folder / "cohort.csv"), "--out",
           str(folder / "features.csv"), "--quiet", "--force"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    first = time.perf_counter() - start
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return {"cases": n, "first_run_s": first, "cached_rerun_s": min(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-cohort", action="store_true")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    with tempfile.TemporaryDirectory() as tmp:
        image, mask, voxels = make_case(Path(tmp) / "full")
        rows = {}
        for variant in ("pyradiomics", "imnrisk"):
            runs = [run_child(variant, image, mask) for _ in range(args.repeat)]
            rows[variant] = {"seconds": min(r["seconds"] for r in runs), "features": runs[0]["features"],
                             "peak_rss_gb": max(r["peak_rss_gb"] for r in runs)}
        report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                  "volume": "512x512x100 at 0.66x0.66x2 mm", "tumour_voxels": voxels, "per_case": rows,
                  "time_ratio": rows["imnrisk"]["seconds"] / rows["pyradiomics"]["seconds"]}
        if not args.skip_cohort:
            report["cohort"] = bench_cohort(Path(tmp) / "cohort")
    print(f"{'':14}{'features':>9}{'time (s)':>10}{'peak RSS (GB)':>15}")
    for name, row in report["per_case"].items():
        print(f"{name:14}{row['features']:>9}{row['seconds']:>10.2f}{row['peak_rss_gb']:>15.2f}")
    print(f"time ratio imnrisk / pyradiomics defaults: {report['time_ratio']:.2f}")
    if "cohort" in report:
        c = report["cohort"]
        print(f"cohort of {c['cases']}: first run {c['first_run_s']:.1f} s, all-cached re-run "
              f"{c['cached_rerun_s']:.2f} s (whole CLI)")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "extract.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
