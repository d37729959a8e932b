"""Scoring: one patient with a frozen model, through one core that every face (the command line,
`validate`, `pacs`, the Slicer module and the web page) calls and only renders.

`score_case(model, case, clinical, options) -> Prediction`: Rad-Score, risk with its CI, risk group,
nomogram points, the model features' values, warnings and the verdict (within the model's domain /
extrapolation / not reliable). Importing this package needs neither scikit-learn, statsmodels nor
matplotlib: Slicer scores with what it ships.
"""

from IMNRiskLib.scoring.compat import check_versions, model_settings, version_mismatches
from IMNRiskLib.scoring.core import (Case, Options, Prediction, Verdict, field_status, read_clinical, score_case, score_values,
                   SYNTHETIC_BANNER)

__all__ = ["Case", "Options", "Prediction", "Verdict", "SYNTHETIC_BANNER", "check_versions", "field_status",
           "model_settings", "read_clinical", "score_case", "score_values", "version_mismatches"]
