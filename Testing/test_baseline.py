"""Our extraction reproduces pyradiomics' own baseline values on its real test images.

The baseline CSVs of the pyradiomics sdist hold, per case, the settings they were made with (the
`diagnostics_Configuration_Settings` row). Passing those settings through IMNRisk's extraction
must give the baseline values: the settings reach pyradiomics unchanged. Shape values tolerate
1e-3 relative (the baseline's mesh shape was computed in full-python mode), all others 1e-6.
"""

from __future__ import annotations

import ast
import math

import pandas as pd
import pytest

from conftest import CASES, pyradiomics_data
from IMNRiskLib.radiomics import features
from IMNRiskLib.inputs import imaging

CLASSES = ("firstorder", "shape", "glcm", "glrlm", "glszm", "gldm", "ngtdm")


def baseline(cls: str) -> pd.DataFrame:
    return pd.read_csv(pyradiomics_data() / "baseline" / f"baseline_{cls}.csv", index_col=0)


@pytest.mark.parametrize("case", CASES)
def test_original_features_equal_pyradiomics_baseline(case):
    data = pyradiomics_data()
    checked = 0
    for cls in CLASSES:
        table = baseline(cls)
        settings_row = ast.literal_eval(table.loc["diagnostics_Configuration_Settings", case])
        params = {"imageType": {"Original": {}}, "featureClass": {cls: None}, "setting": settings_row}
        settings = features.settings_from_dict(params, source=f"baseline_{cls}.csv")
        assert settings.smoothing_sigma_mm == 0  # a plain pyradiomics file: IMNRisk adds nothing
        loaded = imaging.load_case(data / f"{case}_image.nrrd", data / f"{case}_label.nrrd",
                                   label=settings_row.get("label", 1), min_voxels=1)
        ours, _ = features.compute_features(loaded, settings)
        expected = {k: float(v) for k, v in table[case].items() if k.startswith("original_")}
        assert set(ours) == set(expected), cls
        rel = 1e-3 if cls == "shape" else 1e-6
        for name, value in expected.items():
            assert math.isclose(ours[name], value, rel_tol=rel, abs_tol=1e-9), (case, name, ours[name], value)
            checked += 1
    assert checked >= 100
