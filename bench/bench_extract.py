"""Benchmark: one full-size case, IMNRisk's extraction against plain pyradiomics, side by side.

A synthetic 512x512x100 volume at 0.66x0.66x2 mm with a ~4 cm textured tumour is written to
NRRD; each variant runs in its own fresh process (time of the extraction call, reading the files
included, after the tool's imports: pyradiomics' extractor is built, the peers' libraries and
IMNRisk's `features.import_first_case_modules` are imported before the clock; peak RSS and the
CPU of the whole process, imports included). Then a 124-case cohort is extracted once and re-run from the cache (whole CLI, wall time).
With --peers, the Original image with 64 grey levels too: pyradiomics, IMNRisk's plain settings and
the CPU peers nyxus, numpyradiomics and fastrad (bench/peers.py: each in its own venv under
.cache/peers/, created on first use), all in the same run, order rotated at each repeat; times are
also given as ratios to pyradiomics' defaults of the same run.

    .venv/bin/python bench/bench_extract.py [--repeat 3] [--skip-cohort] [--peers]
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
PLAIN = HERE / "params" / "plain_bincount64.yaml"  # Original image, 64 grey levels: what the peers compute
VARIANTS = {"pyradiomics": "pyradiomics 3.0.1 defaults (Original + wavelet)",
            "imnrisk": "imnrisk, the paper's settings (851)",
            "pyradiomics-plain": "pyradiomics, Original, binCount 64",
            "imnrisk-plain": "imnrisk, plain settings: Original, binCount 64",
            "nyxus": "nyxus 0.11.0, Original, 64 grey levels (1 thread)",
            "numpyradiomics": "numpyradiomics 0.0.5, Original, binCount 64",
            "fastrad": "fastrad 1.2.0 CPU, Original (bin width 25: no bin count)"}


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
    if variant.startswith("pyradiomics"):
        from radiomics import featureextractor
        if variant == "pyradiomics":
            extractor = featureextractor.RadiomicsFeatureExtractor()  # defaults: no preCrop, binWidth 25
            extractor.enableImageTypes(Original={}, Wavelet={})
            extractor.enableAllFeatures()
        else:
            extractor = featureextractor.RadiomicsFeatureExtractor(str(PLAIN))
        start = time.perf_counter()
        result = extractor.execute(image, mask)
        n = sum(not k.startswith("diagnostics_") for k in result)
    else:
        from IMNRiskLib.radiomics import features
        from IMNRiskLib.inputs import imaging
        settings = features.load_settings(PLAIN if variant == "imnrisk-plain" else None)
        features.import_first_case_modules()  # imports before the clock, as for pyradiomics and the peers
        start = time.perf_counter()
        loaded = imaging.load_case(image, mask)
        values, _ = features.compute_features(loaded, settings)
        n = len(values)
    print(json.dumps({"seconds": time.perf_counter() - start, "features": n}))


def run_child(variant: str, image: Path, mask: Path) -> dict:
    """Time, CPU and peak memory (max RSS of the child process) of one variant."""
    if variant in ("nyxus", "numpyradiomics", "fastrad"):
        import peers
        if variant == "nyxus":  # nyxus reads NIfTI
            image, mask = image.with_suffix(".nii.gz"), mask.with_suffix(".nii.gz")
        cmd = peers.command(variant, image, mask)
    else:
        cmd = [sys.executable, __file__, "--child", variant, str(image), str(mask)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{variant} failed")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_gb"] = usage.ru_maxrss / 1024 ** 2  # ru_maxrss is in KiB on Linux
    result["process_cpu_s"] = usage.ru_utime + usage.ru_stime  # the whole process, imports included
    return result


def run_variants(variants: list, image: Path, mask: Path, repeat: int) -> dict:
    """Each variant `repeat` times, the order rotated at each repeat; best time, worst peak."""
    runs: dict = {v: [] for v in variants}
    for k in range(repeat):
        for variant in variants[k % len(variants):] + variants[:k % len(variants)]:
            runs[variant].append(run_child(variant, image, mask))
    return {v: {"what": VARIANTS[v], "seconds": min(r["seconds"] for r in rs), "features": rs[0]["features"],
                "process_cpu_s": min(r["process_cpu_s"] for r in rs),
                "peak_rss_gb": max(r["peak_rss_gb"] for r in rs)} for v, rs in runs.items()}


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


def case_in_child(folder: Path, small: bool, nifti: bool) -> tuple:
    """make_case in a process of its own: the children are forked from this one, and Linux counts the
    parent's resident pages in a child's peak RSS until it execs (a 0.5 GB floor with the case made here)."""
    out = subprocess.run([sys.executable, __file__, "--make-case", str(folder), "small" if small else "full"],
                         check=True, capture_output=True, text=True).stdout
    image, mask = folder / "image.nrrd", folder / "mask.nrrd"
    if nifti:  # nyxus reads NIfTI
        subprocess.run([sys.executable, "-c", "import sys, SimpleITK as s\nfor p in sys.argv[1:]: "
                        "s.WriteImage(s.ReadImage(p), p[:-5] + '.nii.gz', True)", str(image), str(mask)], check=True)
    return image, mask, int(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-cohort", action="store_true")
    parser.add_argument("--peers", action="store_true", help="also the Original image, binCount 64: pyradiomics, "
                        "IMNRisk's plain settings, nyxus, numpyradiomics, fastrad (venvs under .cache/peers)")
    parser.add_argument("--smoke", action="store_true", help="a 160 x 160 x 40 case, results not written: "
                        "checks that every variant runs")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--make-case", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    if args.make_case:
        small = args.make_case[1] == "small"
        print(make_case(Path(args.make_case[0]), **({"shape": (40, 160, 160), "radius_mm": 10} if small else {}))[2])
        return None
    variants = ["pyradiomics", "imnrisk"]
    if args.peers:
        import peers
        for name in peers.INSTALL:  # venvs first: their creation is not timed
            peers.ensure_venv(name)
        variants += ["pyradiomics-plain", "imnrisk-plain", *peers.INSTALL]
    with tempfile.TemporaryDirectory() as tmp:
        image, mask, voxels = case_in_child(Path(tmp) / "full", args.smoke, args.peers)
        load = os.getloadavg()
        rows = run_variants(variants, image, mask, args.repeat)
        reference = rows["pyradiomics"]["seconds"]
        for row in rows.values():
            row["ratio_to_pyradiomics_defaults"] = row["seconds"] / reference
        report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                  "load_average_at_start": load, "load_average_at_end": os.getloadavg(),
                  "volume": "512x512x100 at 0.66x0.66x2 mm", "tumour_voxels": voxels, "repeat": args.repeat,
                  "per_case": rows, "time_ratio": rows["imnrisk"]["seconds"] / reference}
        if not args.skip_cohort:
            report["cohort"] = bench_cohort(Path(tmp) / "cohort")
    print(f"{'':18}{'features':>9}{'time (s)':>10}{'CPU (s)':>9}{'peak RSS (GB)':>15}{'ratio':>7}")
    for name, row in report["per_case"].items():
        print(f"{name:18}{row['features']:>9}{row['seconds']:>10.2f}{row['process_cpu_s']:>9.1f}"
              f"{row['peak_rss_gb']:>15.2f}{row['ratio_to_pyradiomics_defaults']:>7.3f}")
    print(f"time ratio imnrisk / pyradiomics defaults: {report['time_ratio']:.3f}; load {load[0]:.1f} at start")
    if "cohort" in report:
        c = report["cohort"]
        print(f"cohort of {c['cases']}: first run {c['first_run_s']:.1f} s, all-cached re-run "
              f"{c['cached_rerun_s']:.2f} s (whole CLI)")
    if args.smoke:
        return
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "extract.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
