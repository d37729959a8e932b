"""Make the Slicer module's frozen test model and its sample DCE case (committed under
IMNRisk/Testing/Data/, registered with Slicer's SampleData module, used by the self-test).

    .venv/bin/python Testing/make_slicer_test_data.py

The model is trained (imnrisk train, no CV/bootstrap: only the frozen coefficients matter) on the
tests' 300-patient synthetic phantom with original-image features; the sample case is one phantom
patient's 8-phase DCE-MRI cropped around its tumour (a few hundred kB), with its tumour mask and
clinical values. Everything is synthetic: no patient data.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
import tempfile
from pathlib import Path

import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Testing"))
OUT = ROOT / "IMNRisk" / "Testing" / "Data"
MODEL = OUT / "IMNRiskTestModel.json"
CASE = OUT / "IMNRiskDemoDCE.seq.nrrd"
MASK = OUT / "IMNRiskDemoDCE-tumour.nrrd"
CLINICAL = OUT / "IMNRiskDemoDCE-clinical.json"
PATIENT = "SYN0001"
MARGIN_MM = 12.0


def train_model(phantom: Path) -> None:
    from conftest import run_cli
    with tempfile.TemporaryDirectory() as tmp:
        result = run_cli("train", phantom / "cohort.csv", "--features", phantom / "features.csv", "--out", tmp,
                         "--cv-repeats", "0", "--bootstrap", "0", "--seed", "1", "--jobs", "1", "--quiet", "--force")
        if result.returncode != 0:
            raise SystemExit(result.stderr)
        shutil.copyfile(Path(tmp) / "model.json", MODEL)


def crop_case(phantom: Path) -> dict:
    """The patient's DCE and mask cropped to the tumour's bounding box plus a margin."""
    with open(phantom / "cohort.csv", encoding="utf-8", newline="") as handle:
        row = next(r for r in csv.DictReader(handle) if r["ID"] == PATIENT)
    dce = sitk.ReadImage(str(phantom / row["Image"]))
    mask = sitk.ReadImage(str(phantom / row["Mask"]))
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    x, y, z, sx, sy, sz = stats.GetBoundingBox(int(row.get("Label") or 1))
    margin = [int(round(MARGIN_MM / s)) for s in mask.GetSpacing()]
    lo = [max(0, v - m) for v, m in zip((x, y, z), margin)]
    hi = [min(n, v + s + m) for v, s, m, n in zip((x, y, z), (sx, sy, sz), margin, mask.GetSize())]
    size = [h - l for l, h in zip(lo, hi)]
    mask_crop = sitk.RegionOfInterest(mask, size, lo)
    array = sitk.GetArrayFromImage(dce)  # (phase, k, j, i)
    phases = []
    for t in range(array.shape[0]):
        phase = sitk.GetImageFromArray(array[t, lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]])
        phase.CopyInformation(mask_crop)
        phases.append(phase)
    dce_crop = sitk.JoinSeries(phases)
    sitk.WriteImage(dce_crop, str(CASE), useCompression=True)
    sitk.WriteImage(mask_crop, str(MASK), useCompression=True)
    clinical_names = [k for k in row if k not in ("ID", "Image", "Mask", "Phase", "Label", "IMN")]
    return {"ID": PATIENT, "phase": int(row.get("Phase") or 1), "clinical": {k: row[k] for k in clinical_names},
            "note": "synthetic phantom patient (IMNRisk's generator): no real patient"}


def main() -> None:
    from conftest import phantom_with_features
    phantom = phantom_with_features()
    OUT.mkdir(parents=True, exist_ok=True)
    train_model(phantom)
    CLINICAL.write_text(json.dumps(crop_case(phantom), indent=2) + "\n", encoding="utf-8")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {', '.join(p.name for p in sorted(OUT.iterdir()))}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
