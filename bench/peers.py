"""Other CPU radiomics tools, each in its own venv under .cache/peers/ (never a dependency of
IMNRisk), timed by bench_extract.py --peers on the Original image with 64 grey levels.

Each peer runs in a fresh process of its venv's Python: the code below reads the case, computes
every feature class the tool has for the Original image (shape, first order, GLCM, GLRLM, GLSZM,
GLDM, NGTDM), and prints the seconds of that call and the number of features as JSON.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
PEERS_DIR = Path(os.environ.get("IMNRISK_PEERS_DIR", ROOT / ".cache" / "peers"))
TORCH_CPU = sorted(Path("/opt/wheels").glob("torch-*+cpu-cp311-*.whl")) if Path("/opt/wheels").is_dir() else []
# the pyradiomics wheel `make install` built (its sdist does not build without numpy in pip's build env)
PYRADIOMICS_WHEEL = sorted((ROOT / ".cache" / "wheels").glob("*/pyradiomics-3.0.1-*.whl"))

# pip arguments per peer, in order. fastrad 1.2.0 asks for Python >= 3.12 but runs on 3.11 (checked
# on the bench case); it needs torch (the CPU build when a local wheel exists) and pyradiomics.
INSTALL: Dict[str, List[List[str]]] = {
    "nyxus": [["nyxus==0.11.0", "SimpleITK"]],
    "numpyradiomics": [["numpyradiomics==0.0.5", "SimpleITK"]],
    "fastrad": ([[str(TORCH_CPU[-1])]] if TORCH_CPU else [["torch"]]) + [
        ["--ignore-requires-python", "--no-deps", "fastrad==1.2.0"],
        ["numpy<2.5", "loguru", "matplotlib", "nibabel", "pandas", "pydicom", "requests", "scipy", "seaborn",
         "SimpleITK", "pykwalify", "PyWavelets", "six"],
        ["--no-deps", str(PYRADIOMICS_WHEEL[-1]) if PYRADIOMICS_WHEEL else "pyradiomics==3.0.1"]],
}

CHILD = {
    "nyxus": """
import json, sys, time
import nyxus
image, mask = sys.argv[1], sys.argv[2]
start = time.perf_counter()
frame = nyxus.Nyxus3D(["*3D_ALL*"], coarse_gray_depth=64, n_feature_calc_threads=1).featurize_files(
    [image], [mask], False)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "features": int(frame.shape[1] - 4)}))
""",
    "numpyradiomics": """
import json, sys, time
import numpy as np, SimpleITK as sitk
import numpyradiomics as npr
start = time.perf_counter()
img = sitk.ReadImage(sys.argv[1]); msk = sitk.ReadImage(sys.argv[2])
image = sitk.GetArrayFromImage(img); mask = sitk.GetArrayFromImage(msk) > 0
# numpyradiomics takes whole arrays (minutes on 26 M voxels): the ROI's box plus one voxel, as fastrad crops
box = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in np.nonzero(mask))
image, mask = image[box].astype(np.float64), mask[box]
spacing = img.GetSpacing()[::-1]
out = {}
out.update(npr.shape(mask, spacing=spacing))
out.update(npr.firstorder(image, mask, voxelVolume=float(np.prod(spacing)), binCount=64))
for name in ("glcm", "glrlm", "glszm", "gldm", "ngtdm"):
    out.update({f"{name}_{k}": v for k, v in getattr(npr, name)(image, mask, binCount=64).items()})
print(json.dumps({"seconds": time.perf_counter() - start, "features": len(out)}))
""",
    "fastrad": """
import json, sys, time
import numpy as np, SimpleITK as sitk, torch
torch.set_num_threads(1)
from fastrad import FeatureExtractor, FeatureSettings
from fastrad.image import MedicalImage, Mask
start = time.perf_counter()
img = sitk.ReadImage(sys.argv[1]); msk = sitk.ReadImage(sys.argv[2])
spacing = tuple(float(s) for s in img.GetSpacing()[::-1])
image = MedicalImage(torch.from_numpy(sitk.GetArrayFromImage(img).astype(np.float32)), spacing)
mask = Mask(torch.from_numpy(sitk.GetArrayFromImage(msk)), spacing)
settings = FeatureSettings(device="cpu", spacing=spacing)  # fastrad has a bin width only (25)
out = FeatureExtractor(settings).extract(image, mask)
print(json.dumps({"seconds": time.perf_counter() - start, "features": len(out)}))
""",
}


def python_of(peer: str) -> Path:
    return PEERS_DIR / peer / "bin" / "python"


def ensure_venv(peer: str) -> Path:
    """The peer's venv, created and installed once (a marker file says it is complete)."""
    marker = PEERS_DIR / peer / ".installed"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEERS_DIR / peer)], check=True)
        for args in INSTALL[peer]:
            subprocess.run([str(python_of(peer)), "-m", "pip", "install", "-q", *args], check=True,
                           env={**os.environ, "PIP_CONSTRAINT": ""})
        marker.write_text("ok\n")
    return python_of(peer)


def command(peer: str, image: Path, mask: Path) -> List[str]:
    """The command that times one peer on one case (nyxus reads NIfTI: pass .nii.gz files to it)."""
    return [str(ensure_venv(peer)), "-c", CHILD[peer], str(image), str(mask)]


if __name__ == "__main__":  # create every peer's venv now (they are cached under PEERS_DIR)
    for name in INSTALL:
        print(name, ensure_venv(name))
