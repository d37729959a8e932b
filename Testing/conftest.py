"""Shared fixtures: the real images of the pyradiomics sdist, and small synthetic volumes."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
SDIST = ROOT / ".cache" / "sdist" / "pyradiomics-3.0.1.tar.gz"
DATA = ROOT / ".cache" / "pyradiomics-data"
CASES = ("brain1", "brain2", "breast1", "lung1", "lung2")


def pyradiomics_data() -> Path:
    """The sdist's data/ folder (real images and baselines), unpacked once from the file
    that `make install` downloaded; nothing of it is committed."""
    marker = DATA / "baseline" / "baseline_glcm.csv"
    if not marker.exists():
        if not SDIST.exists():
            pytest.fail(f"{SDIST} missing: run `make install` first")
        tmp = DATA.with_name(DATA.name + f".tmp{os.getpid()}")
        with tarfile.open(SDIST) as tar:
            members = [m for m in tar.getmembers() if "/data/" in m.name and m.isfile()]
            for m in members:
                m.name = m.name.split("/data/", 1)[1]
            tar.extractall(tmp, members=members)
        try:
            tmp.rename(DATA)
        except OSError:  # another test worker got there first
            pass
    return DATA


@pytest.fixture(scope="session")
def pyrad_data() -> Path:
    return pyradiomics_data()


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """Run `imnrisk` as a user would (a separate process), capturing output."""
    return subprocess.run([sys.executable, "-m", "IMNRiskLib", *map(str, args)], capture_output=True,
                          encoding="utf-8", errors="replace",
                          cwd=cwd, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def assert_refused(result, *fragments) -> None:
    """A refusal as users get it: exit 2, no traceback or internal error, every fragment in the error."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def make_volume(shape=(20, 40, 40), spacing=(0.8, 0.8, 2.0), seed=0, origin=(0.0, 0.0, 0.0),
                direction=None) -> sitk.Image:
    """A noisy textured 3-D volume (z, y, x shape) for small imaging tests."""
    rng = np.random.default_rng(seed)
    array = (100 + 20 * rng.standard_normal(shape)).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def make_blob_mask(reference: sitk.Image, center=None, radius=6, label=1) -> sitk.Image:
    """A spherical (in voxels) label on the reference grid."""
    size = reference.GetSize()
    zz, yy, xx = np.indices(size[::-1])
    cz, cy, cx = center if center is not None else [s // 2 for s in size[::-1]]
    r = np.sqrt(((zz - cz) * 2) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2)
    mask = sitk.GetImageFromArray(((r <= radius) * label).astype(np.uint8))
    mask.CopyInformation(reference)
    return mask


PHANTOM_PATIENTS, PHANTOM_SEED = 300, 1


def phantom_with_features() -> Path:
    """A 300-patient phantom (seed 1) with original-image features, made once and shared by all
    test workers and runs (a file lock serialises the first build; inputs fix the content)."""
    import fcntl
    import hashlib
    params = ROOT / "Testing" / "data" / "original_only.yaml"  # its content is part of the cache's name
    digest = hashlib.sha256(params.read_bytes()).hexdigest()[:8]
    folder = ROOT / ".cache" / f"test-phantom-{PHANTOM_PATIENTS}-{PHANTOM_SEED}-{digest}"
    done = folder / "features.csv"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(str(folder) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            for args in (["synth", folder, "--patients", PHANTOM_PATIENTS, "--seed", PHANTOM_SEED, "--quiet", "--force"],
                         ["extract", folder / "cohort.csv", "--out", done, "--params",
                          params, "--quiet", "--force"]):
                result = run_cli(*args)
                assert result.returncode == 0, result.stderr
                if args[0] == "synth":  # the shared phantom is read once (Mask only): tests see one table
                    single_reader(folder / "cohort.csv")
    return folder


def single_reader(manifest: Path) -> None:
    """Drop the second reader's column (Mask2) from a manifest, as the shared phantom was first built."""
    import pandas as pd
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    frame.drop(columns=["Mask2"], errors="ignore").to_csv(manifest, index=False)


@pytest.fixture(scope="session")
def phantom() -> Path:
    return phantom_with_features()


@pytest.fixture(scope="session")
def trained_phantom(phantom, tmp_path_factory):
    """imnrisk train on the 300-patient phantom (3 repeats of 5-fold CV, 20 bootstraps):
    (output folder, metrics.json, what the command printed)."""
    import json
    out = tmp_path_factory.mktemp("train")
    result = run_cli("train", phantom / "cohort.csv", "--features", phantom / "features.csv", "--out", out,
                     "--cv-repeats", "3", "--bootstrap", "20", "--jobs", "2", "--quiet", "--force")
    assert result.returncode == 0, result.stderr
    return out, json.loads((out / "metrics.json").read_text(encoding="utf-8")), result.stderr


@pytest.fixture(scope="session")
def quick_model(phantom, tmp_path_factory) -> Path:
    """model.json trained on the shared phantom without CV or bootstrap (a few seconds)."""
    out = tmp_path_factory.mktemp("quick-model")
    result = run_cli("train", phantom / "cohort.csv", "--features", phantom / "features.csv", "--out", out,
                     "--cv-repeats", "0", "--bootstrap", "0", "--quiet", "--force")
    assert result.returncode == 0, result.stderr
    return out / "model.json"
