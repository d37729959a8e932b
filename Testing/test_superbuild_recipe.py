"""The Slicer extension's SuperBuild step for pyradiomics, run as its CMake command line runs it, with
Slicer 5.12's Python (3.12) and numpy (2.4.6): the wheel it builds imports and reproduces the pyradiomics
baseline on breast1.

SuperBuild/External_python-pyradiomics.cmake runs
`env PYTHONNOUSERSITE=1 CC=<cc> <PythonSlicer> tools/pyradiomics_wheel.py --cache <work>/cache
--no-user-cache --build-requirements-dir <work>/build-requirements --install --prefix <python_packages_DIR>`.
Here PythonSlicer is a scratch Python 3.12 venv holding what Slicer 5.12 ships that pyradiomics imports
(numpy 2.4.6 and SimpleITK 2.5.5; scipy is imported only by the LBP3D filter, so it is left out), and
the sdist the SuperBuild would download is seeded from the repository's .cache/sdist (same SHA-256).
The extraction runs in that venv with PYTHONPATH=the prefix's site-packages, as Slicer's launcher
sets it; the comparison (pandas, the baseline CSVs) runs here.

One slow test (a venv, two wheels, a C build: about 30 s with a warm pip cache). Skipped, saying why,
when no Python 3.12 exists or pip cannot reach a package index; a build or extraction failure fails.
"""

from __future__ import annotations

import ast
import glob
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SDIST, pyradiomics_data
from test_baseline import CLASSES, baseline
from test_slicer_pip import NETWORK_TROUBLE

SLICER_512 = {"numpy": "2.4.6", "SimpleITK": "2.5.5"}  # Slicer 5.12's SuperBuild pins
CASE = "breast1"

pytestmark = pytest.mark.slow

EXTRACT = r"""
import json, sys
import numpy, radiomics
from radiomics import featureextractor
job = json.loads(open(sys.argv[1], encoding="utf-8").read())
out = {"numpy": numpy.__version__, "numpy_file": numpy.__file__, "radiomics_file": radiomics.__file__,
       "radiomics_version": radiomics.__version__, "c_extensions": radiomics.cMatrices is not None
       and radiomics.cShape is not None, "features": {}}
for cls, settings in job["settings"].items():
    params = {"imageType": {"Original": {}}, "featureClass": {cls: None}, "setting": settings}
    result = featureextractor.RadiomicsFeatureExtractor(params).execute(job["image"], job["mask"])
    out["features"][cls] = {k: float(v) for k, v in result.items() if k.startswith("original_")}
open(sys.argv[2], "w", encoding="utf-8").write(json.dumps(out))
"""


def python312() -> str | None:
    """A working Python 3.12: this one, python3.12 on PATH, or one of pyenv's versions (a pyenv shim
    on PATH may not resolve, so each candidate is run once)."""
    if sys.version_info[:2] == (3, 12):
        return sys.executable
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = [shutil.which("python3.12")] + sorted(glob.glob(os.path.join(pyenv, "versions", "3.12*", "bin",
                                                                              "python3.12")), reverse=True)
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys, venv; print(sys.executable)"], capture_output=True,
                               encoding="utf-8")
        if probe.returncode == 0:
            return probe.stdout.strip()
    return None


def run(*command: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a command, capturing its output (no check: the caller decides skip or fail)."""
    return subprocess.run([str(c) for c in command], capture_output=True, encoding="utf-8", errors="replace",
                          env=env, cwd=cwd, timeout=1200)


def skip_if_offline(result: subprocess.CompletedProcess, what: str) -> None:
    """Skip (saying why) when a failed pip run failed for want of a package index; fail otherwise."""
    if result.returncode == 0:
        return
    trouble = next((t for t in NETWORK_TROUBLE if t in result.stderr), None)
    if trouble:
        pytest.skip(f"{what}: pip cannot reach a package index ({trouble})")
    raise AssertionError(f"{what} failed:\n{result.stderr[-3000:]}")


def clean_env() -> dict:
    """This process's environment without PYTHONPATH/PYTHONHOME (pytest's own must not leak in)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def slicer_like_python(where: Path) -> Path:
    """A Python 3.12 venv holding Slicer 5.12's numpy and SimpleITK."""
    interpreter = python312()
    if interpreter is None:
        pytest.skip("no Python 3.12 here (python3.12 on PATH or a pyenv 3.12.x): Slicer 5.12's Python is 3.12")
    made = run(interpreter, "-m", "venv", where / "venv", env=clean_env())
    if made.returncode != 0:
        pytest.skip(f"{interpreter} -m venv is unavailable: {made.stderr.strip()[-200:]}")
    python = where / "venv" / "bin" / "python"
    pins = [f"{name}=={version}" for name, version in SLICER_512.items()]
    skip_if_offline(run(python, "-m", "pip", "--disable-pip-version-check", "install", "-q", *pins,
                        env=clean_env()), "installing " + " ".join(pins))
    return python


def superbuild_install(python: Path, build: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """The SuperBuild's install command (same arguments and environment) with `python` as PythonSlicer;
    returns python_packages_DIR and the finished run."""
    work = build / "python-pyradiomics"
    prefix = build / "python-packages-install"
    (work / "cache" / "sdist").mkdir(parents=True)
    shutil.copyfile(SDIST, work / "cache" / "sdist" / SDIST.name)  # what the SuperBuild would download
    env = {**clean_env(), "PYTHONNOUSERSITE": "1", "CC": os.environ.get("CC") or shutil.which("cc") or "gcc"}
    result = run(python, ROOT / "tools" / "pyradiomics_wheel.py", "--cache", work / "cache", "--no-user-cache",
                 "--build-requirements-dir", work / "build-requirements", "--install", "--prefix", prefix,
                 env=env, cwd=work)
    return prefix, result


def site_packages(python: Path, prefix: Path) -> Path:
    """The prefix's site-packages as the venv's Python lays it out (Slicer's PYTHON_SITE_PACKAGES_SUBDIR)."""
    code = "import sys, sysconfig; print(sysconfig.get_path('purelib', vars={'base': sys.argv[1]}))"
    return Path(run(python, "-c", code, prefix, env=clean_env()).stdout.strip())


def baseline_settings() -> dict:
    """Per feature class, the settings breast1's baseline was made with (its Configuration_Settings row)."""
    return {cls: ast.literal_eval(baseline(cls).loc["diagnostics_Configuration_Settings", CASE]) for cls in CLASSES}


def test_superbuild_recipe_on_python312_numpy24_reproduces_breast1_baseline(tmp_path):
    """Build and install as the SuperBuild does, then import and extract breast1 in the 3.12 venv."""
    assert SDIST.exists(), f"{SDIST} missing: run `make install` first"
    python = slicer_like_python(tmp_path)
    prefix, built = superbuild_install(python, tmp_path / "build")
    skip_if_offline(built, "the SuperBuild's pyradiomics step")
    assert "cp312" in built.stdout.strip(), built.stdout  # the wheel's path: built for this Python
    packages = site_packages(python, prefix)
    assert (packages / "radiomics").is_dir(), sorted(p.name for p in packages.iterdir())
    assert not (packages / "numpy").exists(), "the recipe put its own numpy in the extension's prefix"

    data = pyradiomics_data()
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"image": str(data / f"{CASE}_image.nrrd"), "mask": str(data / f"{CASE}_label.nrrd"),
                               "settings": baseline_settings()}), encoding="utf-8")
    (tmp_path / "extract.py").write_text(EXTRACT, encoding="utf-8")
    out = tmp_path / "out.json"
    extracted = run(python, tmp_path / "extract.py", job, out, env={**clean_env(), "PYTHONPATH": str(packages)})
    assert extracted.returncode == 0, extracted.stderr[-3000:]
    found = json.loads(out.read_text(encoding="utf-8"))

    assert found["numpy"] == SLICER_512["numpy"]  # the recipe left Slicer's numpy where it was
    assert Path(found["numpy_file"]).is_relative_to(tmp_path / "venv")
    assert Path(found["radiomics_file"]).is_relative_to(packages)
    assert found["radiomics_version"].lstrip("v") == "3.0.1" and found["c_extensions"]  # versioneer: "v3.0.1"
    checked = 0
    for cls in CLASSES:
        expected = {k: float(v) for k, v in baseline(cls)[CASE].items() if k.startswith("original_")}
        ours = found["features"][cls]
        assert set(ours) == set(expected), cls
        rel = 1e-3 if cls == "shape" else 1e-6
        for name, value in expected.items():
            assert math.isclose(ours[name], value, rel_tol=rel, abs_tol=1e-9), (name, ours[name], value)
            checked += 1
    assert checked >= 100
