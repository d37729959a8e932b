"""IBSI-1's digital phantom through IMNRisk's own extraction path: its features and this
installation's conformance table (`ibsi` holds the mapping and the criterion)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

import pandas as pd

from IMNRiskLib.inputs import imaging
from IMNRiskLib.radiomics import features
from IMNRiskLib.radiomics.settings import load_settings
from IMNRiskLib.radiomics.ibsi import checks_frame, conformance, read_reference


def phantom_features(folder: Union[str, Path], ibsi_variants: bool = False) -> Dict[str, float]:
    """Extract the IBSI-1 phantom through IMNRisk's own path (imaging.load_case, compute_features)
    with the folder's `phantom_params.yaml`."""
    folder = Path(folder)
    settings = load_settings(folder / "phantom_params.yaml")
    settings.ibsi_variants = ibsi_variants
    loaded = imaging.load_case(folder / "phantom.nii.gz", folder / "mask.nii.gz", None, 1, settings.min_tumour_voxels)
    values, _ = features.compute_features(loaded, settings)
    return values


def measure_phantom(folder: Union[str, Path]) -> pd.DataFrame:
    """The conformance table of this installation on the phantom (pyradiomics' own and the variants)."""
    import radiomics  # pyradiomics' version only; it loads with the extraction anyway
    values = phantom_features(folder, ibsi_variants=True)
    return checks_frame(conformance(values, read_reference(Path(folder) / "ibsi_1_dig_phantom_reference.csv")),
                        str(radiomics.__version__))
