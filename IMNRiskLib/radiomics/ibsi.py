"""IBSI conformance: pyradiomics feature names mapped to IBSI tags, IBSI's matching criterion, the
conformance of an extraction on IBSI-1's digital phantom, and the IBSI variants of the features where
pyradiomics follows another convention (the opt-in `imnrisk: ibsi_variants` profile).

The mapping is defined here once; the phantom test, the README's table and the report use it.
`python tools/ibsi_phantom.py Testing/data/ibsi` in a source checkout re-measures the phantom (`phantom`),
rewrites the shipped table (`data/ibsi_conformance.csv`) and the README's section.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from IMNRiskLib.radiomics.values import real_value

if TYPE_CHECKING:  # pandas loads in the functions that build tables: scoring a patient needs none
    import pandas as pd

IBSI_SUFFIX = "_IBSI"  # an IBSI variant's column: pyradiomics' name + this suffix, beside pyradiomics' own
SHIPPED_TABLE = Path(__file__).parents[1] / "data" / "ibsi_conformance.csv"
README_START, README_END = "<!-- ibsi-conformance:start -->", "<!-- ibsi-conformance:end -->"
CRITERION = "value rounded to 3 significant digits, then within the reference's tolerance"

# pyradiomics class -> (IBSI feature family, suffix of the IBSI tag: how pyradiomics aggregates in 3-D)
CLASSES: Dict[str, Tuple[str, str]] = {
    "shape": ("morphology", ""),
    "firstorder": ("intensity statistics / histogram", ""),
    "glcm": ("GLCM, 3D averaged over 13 directions", "_3D_avg"),
    "glrlm": ("GLRLM, 3D averaged over 13 directions", "_3D_avg"),
    "glszm": ("GLSZM, 3D (26-connected)", "_3D"),
    "gldm": ("NGLDM, 3D (distance 1, alpha 0)", "_3D"),
    "ngtdm": ("NGTDM, 3D (distance 1)", "_3D"),
}

_TAGS: Dict[str, Dict[str, str]] = {
    "shape": {"MeshVolume": "morph_volume", "VoxelVolume": "morph_vol_approx", "SurfaceArea": "morph_area_mesh",
              "SurfaceVolumeRatio": "morph_av", "Sphericity": "morph_sphericity", "Compactness1": "morph_comp_1",
              "Compactness2": "morph_comp_2", "SphericalDisproportion": "morph_sph_dispr",
              "Maximum3DDiameter": "morph_diam", "MajorAxisLength": "morph_pca_maj_axis",
              "MinorAxisLength": "morph_pca_min_axis", "LeastAxisLength": "morph_pca_least_axis",
              "Elongation": "morph_pca_elongation", "Flatness": "morph_pca_flatness"},
    # pyradiomics computes these on the intensities (stat_), Entropy and Uniformity on the bins (ih_)
    "firstorder": {"Energy": "stat_energy", "Entropy": "ih_entropy", "Minimum": "stat_min",
                   "10Percentile": "stat_p10", "90Percentile": "stat_p90", "Maximum": "stat_max",
                   "Mean": "stat_mean", "Median": "stat_median", "InterquartileRange": "stat_iqr",
                   "Range": "stat_range", "MeanAbsoluteDeviation": "stat_mad",
                   "RobustMeanAbsoluteDeviation": "stat_rmad", "RootMeanSquared": "stat_rms",
                   "Skewness": "stat_skew", "Kurtosis": "stat_kurt", "Variance": "stat_var",
                   "Uniformity": "ih_uniformity"},
    "glcm": {"Autocorrelation": "cm_auto_corr", "JointAverage": "cm_joint_avg", "ClusterProminence": "cm_clust_prom",
             "ClusterShade": "cm_clust_shade", "ClusterTendency": "cm_clust_tend", "Contrast": "cm_contrast",
             "Correlation": "cm_corr", "DifferenceAverage": "cm_diff_avg", "DifferenceEntropy": "cm_diff_entr",
             "DifferenceVariance": "cm_diff_var", "JointEnergy": "cm_energy", "JointEntropy": "cm_joint_entr",
             "Imc1": "cm_info_corr1", "Imc2": "cm_info_corr2", "Idm": "cm_inv_diff_mom",
             "Idmn": "cm_inv_diff_mom_norm", "Id": "cm_inv_diff", "Idn": "cm_inv_diff_norm",
             "InverseVariance": "cm_inv_var", "MaximumProbability": "cm_joint_max", "SumAverage": "cm_sum_avg",
             "SumEntropy": "cm_sum_entr", "SumSquares": "cm_joint_var"},
    "glrlm": {"ShortRunEmphasis": "rlm_sre", "LongRunEmphasis": "rlm_lre", "LowGrayLevelRunEmphasis": "rlm_lgre",
              "HighGrayLevelRunEmphasis": "rlm_hgre", "ShortRunLowGrayLevelEmphasis": "rlm_srlge",
              "ShortRunHighGrayLevelEmphasis": "rlm_srhge", "LongRunLowGrayLevelEmphasis": "rlm_lrlge",
              "LongRunHighGrayLevelEmphasis": "rlm_lrhge", "GrayLevelNonUniformity": "rlm_glnu",
              "GrayLevelNonUniformityNormalized": "rlm_glnu_norm", "RunLengthNonUniformity": "rlm_rlnu",
              "RunLengthNonUniformityNormalized": "rlm_rlnu_norm", "RunPercentage": "rlm_r_perc",
              "GrayLevelVariance": "rlm_gl_var", "RunVariance": "rlm_rl_var", "RunEntropy": "rlm_rl_entr"},
    "glszm": {"SmallAreaEmphasis": "szm_sze", "LargeAreaEmphasis": "szm_lze", "LowGrayLevelZoneEmphasis": "szm_lgze",
              "HighGrayLevelZoneEmphasis": "szm_hgze", "SmallAreaLowGrayLevelEmphasis": "szm_szlge",
              "SmallAreaHighGrayLevelEmphasis": "szm_szhge", "LargeAreaLowGrayLevelEmphasis": "szm_lzlge",
              "LargeAreaHighGrayLevelEmphasis": "szm_lzhge", "GrayLevelNonUniformity": "szm_glnu",
              "GrayLevelNonUniformityNormalized": "szm_glnu_norm", "SizeZoneNonUniformity": "szm_zsnu",
              "SizeZoneNonUniformityNormalized": "szm_zsnu_norm", "ZonePercentage": "szm_z_perc",
              "GrayLevelVariance": "szm_gl_var", "ZoneVariance": "szm_zs_var", "ZoneEntropy": "szm_zs_entr"},
    "gldm": {"SmallDependenceEmphasis": "ngl_lde", "LargeDependenceEmphasis": "ngl_hde",
             "LowGrayLevelEmphasis": "ngl_lgce", "HighGrayLevelEmphasis": "ngl_hgce",
             "SmallDependenceLowGrayLevelEmphasis": "ngl_ldlge", "SmallDependenceHighGrayLevelEmphasis": "ngl_ldhge",
             "LargeDependenceLowGrayLevelEmphasis": "ngl_hdlge", "LargeDependenceHighGrayLevelEmphasis": "ngl_hdhge",
             "GrayLevelNonUniformity": "ngl_glnu", "DependenceNonUniformity": "ngl_dcnu",
             "DependenceNonUniformityNormalized": "ngl_dcnu_norm", "GrayLevelVariance": "ngl_gl_var",
             "DependenceVariance": "ngl_dc_var", "DependenceEntropy": "ngl_dc_entr"},
    "ngtdm": {"Coarseness": "ngt_coarseness", "Contrast": "ngt_contrast", "Busyness": "ngt_busyness",
              "Complexity": "ngt_complexity", "Strength": "ngt_strength"},
}

# "class_Feature" -> IBSI tag, e.g. "glcm_Contrast" -> "cm_contrast_3D_avg"
IBSI_TAGS: Dict[str, str] = {f"{cls}_{feature}": tag + CLASSES[cls][1]
                             for cls, tags in _TAGS.items() for feature, tag in tags.items()}

# pyradiomics features without an IBSI counterpart (not counted as mapped)
UNMAPPED: Dict[str, str] = {
    "shape_Maximum2DDiameterSlice": "IBSI defines only the 3-D maximum diameter",
    "shape_Maximum2DDiameterColumn": "IBSI defines only the 3-D maximum diameter",
    "shape_Maximum2DDiameterRow": "IBSI defines only the 3-D maximum diameter",
    "firstorder_TotalEnergy": "energy times the voxel volume: not an IBSI feature",
    "firstorder_StandardDeviation": "IBSI defines the variance only",
    "glcm_MCC": "maximal correlation coefficient: not an IBSI feature",
}

# pyradiomics' deprecated shape features: computed only when named in the parameter file
DEPRECATED = ("shape_Compactness1", "shape_Compactness2", "shape_SphericalDisproportion")

_AXIS_REASON = ("covariance of the voxel coordinates divided by N, IBSI's by N - 1 "
                "(IBSI's length = sqrt(N/(N-1)) x pyradiomics')")
# Known conventions where pyradiomics differs from IBSI; the IBSI profile adds the IBSI variant of each.
# Elongation and Flatness are ratios of the same eigenvalues: the N or N - 1 factor cancels, no variant.
CONVENTIONS: Dict[str, str] = {
    "shape_MajorAxisLength": _AXIS_REASON,
    "shape_MinorAxisLength": _AXIS_REASON,
    "shape_LeastAxisLength": _AXIS_REASON,
    "firstorder_Kurtosis": "Pearson's kurtosis, IBSI's is the excess kurtosis (Pearson - 3)",
}


def split_name(name: str) -> Tuple[str, str, str]:
    """(image type, class, feature) of a column name such as `wavelet-LLH_glcm_Contrast`."""
    image_type, cls, feature = name.split("_", 2)
    return image_type, cls, feature


def pyradiomics_feature(feature: str) -> str:
    """The pyradiomics feature (or column) an IBSI variant is computed from (`Kurtosis_IBSI` -> `Kurtosis`)."""
    return feature[: -len(IBSI_SUFFIX)] if feature.endswith(IBSI_SUFFIX) else feature


def ibsi_tag(name: str) -> Optional[str]:
    """IBSI tag of a feature column (a variant has its base feature's tag), or None."""
    _, cls, feature = split_name(name)
    return IBSI_TAGS.get(f"{cls}_{pyradiomics_feature(feature)}")


# --------------------------------------------------------------------------- the IBSI variants

def excess_kurtosis(kurtosis: float, voxels: int) -> float:
    """IBSI's kurtosis from pyradiomics' (Pearson's); pyradiomics' 0 of a flat region stays 0."""
    return kurtosis - 3.0 if kurtosis != 0.0 else 0.0


def axis_length_n_minus_1(length: float, voxels: int) -> float:
    """An axis length from the N - 1 covariance (IBSI) given pyradiomics' N one."""
    return length * math.sqrt(voxels / (voxels - 1.0)) if voxels > 1 else float("nan")


_VARIANTS = {"shape_MajorAxisLength": axis_length_n_minus_1, "shape_MinorAxisLength": axis_length_n_minus_1,
             "shape_LeastAxisLength": axis_length_n_minus_1, "firstorder_Kurtosis": excess_kurtosis}


def mask_voxels(result: Mapping[str, Any]) -> int:
    """Voxels of the mask pyradiomics measured (after its resampling, if any), from its diagnostics."""
    for key in ("diagnostics_Mask-interpolated_VoxelNum", "diagnostics_Mask-original_VoxelNum"):
        if key in result:
            return int(result[key])
    raise ValueError("pyradiomics reported no mask voxel count (setting additionalInfo: false)")


def add_variants(result: Mapping[str, Any]) -> "OrderedDict[str, Any]":
    """A pyradiomics result with each convention-dependent feature followed by its IBSI variant."""
    out: "OrderedDict[str, Any]" = OrderedDict()
    voxels = None
    for key, value in result.items():
        out[key] = value
        if key.startswith("diagnostics_"):
            continue
        _, cls, feature = split_name(key)
        variant = _VARIANTS.get(f"{cls}_{feature}")
        if variant is not None:
            voxels = mask_voxels(result) if voxels is None else voxels
            out[key + IBSI_SUFFIX] = variant(real_value(key, value), voxels)
    return out


# --------------------------------------------------------------------------- the criterion

def round_significant(value: float, digits: int = 3) -> float:
    """The value rounded to `digits` significant digits (IBSI's criterion rounds to 3)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))


def matches(value: float, reference: float, tolerance: float) -> bool:
    """IBSI's criterion: rounded to 3 significant digits, the value lies within reference +- tolerance."""
    rounded = round_significant(value)
    return math.isfinite(rounded) and abs(rounded - reference) <= tolerance + 1e-9 * max(1.0, abs(reference))


def read_reference(path: Union[str, Path]) -> Dict[str, Tuple[float, float]]:
    """IBSI tag -> (reference value, tolerance) from a `reference value;tolerance;tag` file."""
    import pandas as pd  # start-up time: pandas loads only when used
    frame = pd.read_csv(path, sep=";").dropna(subset=["reference value"])
    return {row["tag"]: (float(row["reference value"]), float(row["tolerance"])) for _, row in frame.iterrows()}


@dataclass
class Check:
    """One feature compared with its IBSI reference."""

    feature: str
    ibsi_tag: str
    value: float
    reference: float
    tolerance: float
    match: bool
    reason: str


def conformance(features: Mapping[str, float], reference: Mapping[str, Tuple[float, float]]) -> List[Check]:
    """Every feature with an IBSI tag and a reference value, compared by IBSI's criterion; a miss
    carries its known convention's reason ("" when none is known: an unexplained deviation)."""
    checks = []
    for name, value in features.items():
        tag = ibsi_tag(name)
        if tag is None or tag not in reference:
            continue
        ref, tol = reference[tag]
        ok = matches(float(value), ref, tol)
        _, cls, feature = split_name(name)
        reason = "" if ok or feature.endswith(IBSI_SUFFIX) else CONVENTIONS.get(f"{cls}_{feature}", "")
        checks.append(Check(name, tag, float(value), ref, tol, ok, reason))
    return checks


def checks_frame(checks: Iterable[Check], pyradiomics_version: str) -> pd.DataFrame:
    """The checks as the table shipped in the package (one row per feature)."""
    import pandas as pd  # start-up time: pandas loads only when used
    frame = pd.DataFrame([asdict(c) for c in checks])
    frame["pyradiomics"] = pyradiomics_version
    return frame


def load_table(path: Union[str, Path] = SHIPPED_TABLE) -> pd.DataFrame:
    """The shipped (or a given) conformance table."""
    import pandas as pd  # start-up time: pandas loads only when used
    frame = pd.read_csv(path, keep_default_na=False, dtype={"pyradiomics": str})
    frame["match"] = frame["match"].astype(str).str.lower() == "true"
    return frame


# --------------------------------------------------------------------------- the summary tables

def class_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per pyradiomics class: features mapped to IBSI, matching on the phantom, each deviation and why."""
    import pandas as pd  # start-up time: pandas loads only when used
    own = table[~table["feature"].str.endswith(IBSI_SUFFIX)]
    rows = []
    for cls, (family, _) in CLASSES.items():
        part = own[own["feature"].map(lambda n: split_name(n)[1]) == cls]
        misses = part[~part["match"]]
        deprecated = sum(1 for n in part["feature"] if f"{cls}_{split_name(n)[2]}" in DEPRECATED)
        rows.append({"class": cls, "IBSI family": family,
                     "mapped": len(part) if not deprecated else f"{len(part)} ({deprecated} deprecated)",
                     "match": int(part["match"].sum()),
                     "deviations (reason)": "; ".join(f"{split_name(r.feature)[2]} {_fmt(r.value)} vs "
                                                      f"{_fmt(r.reference)} ± {_fmt(r.tolerance)}: {r.reason}"
                                                      for r in misses.itertuples()) or "none"})
    rows.append({"class": "all", "IBSI family": "", "mapped": len(own), "match": int(own["match"].sum()),
                 "deviations (reason)": f"{len(own) - int(own['match'].sum())} deviations"})
    return pd.DataFrame(rows)


def variants_summary(table: pd.DataFrame) -> pd.DataFrame:
    """The IBSI profile's variants on the phantom."""
    import pandas as pd  # start-up time: pandas loads only when used
    part = table[table["feature"].str.endswith(IBSI_SUFFIX)]
    own = dict(zip(table["feature"], table["value"]))
    return pd.DataFrame([{"IBSI variant": split_name(r.feature)[1] + "_" + split_name(r.feature)[2],
                          "IBSI tag": r.ibsi_tag, "value": _fmt(r.value),
                          "from pyradiomics' own": _relation(r.feature, r.value, own.get(pyradiomics_feature(r.feature))),
                          "reference": f"{_fmt(r.reference)} ± {_fmt(r.tolerance)}",
                          "match": "yes" if r.match else "no"} for r in part.itertuples()])


def _relation(name: str, variant: float, own: Optional[float]) -> str:
    """How the variant's value follows from pyradiomics' own, measured (difference or ratio)."""
    if own is None:
        return ""
    _, cls, feature = split_name(pyradiomics_feature(name))
    if _VARIANTS[f"{cls}_{feature}"] is excess_kurtosis:
        return f"{variant - own:+.6g} (Pearson - 3)"
    return f"x {variant / own:.6f} (sqrt(N/(N-1)), N mask voxels)"


def counts(table: pd.DataFrame) -> Dict[str, int]:
    """Mapped / matching counts of pyradiomics' own features and of the IBSI variants."""
    own = table[~table["feature"].str.endswith(IBSI_SUFFIX)]
    var = table[table["feature"].str.endswith(IBSI_SUFFIX)]
    return {"mapped": len(own), "match": int(own["match"].sum()), "deviations": int((~own["match"]).sum()),
            "variants": len(var), "variants_match": int(var["match"].sum())}


WAVELET_NOTE = ("Filters: IMNRisk's Wavelet image type is pyradiomics' (PyWavelets' undecimated, separable 3-D "
                "transform; coif1, level 1, 8 sub-bands). IBSI chapter 2 standardises convolutional filters, "
                "wavelets among them, with its own phantoms and reference responses; IMNRisk has not been tested "
                "against them, and the IBSI-1 phantom has no filtered image. No IBSI conformance is claimed for the "
                "filter or the wavelet features: only the feature definitions computed on each sub-band are the "
                "ones tested here, on the Original image.")


def summary_sentence(table: pd.DataFrame) -> str:
    """One line: the counts and what was measured with what."""
    c = counts(table)
    version = table["pyradiomics"].iloc[0] if len(table) else "?"
    return (f"pyradiomics {version} on the IBSI-1 digital phantom (bin width 1, 3D, no resampling, no "
            f"normalisation, Original image): {c['match']} of {c['mapped']} features with an IBSI name match "
            f"the reference ({CRITERION}); {c['deviations']} deviate by a known convention. {len(DEPRECATED)} of the "
            f"mapped shape features are deprecated in pyradiomics and computed only when named (IMNRisk's default "
            f"settings do not). Elongation and Flatness are ratios of the same eigenvalues as the axis lengths: "
            f"the N or N - 1 factor cancels. With the IBSI profile (`imnrisk: ibsi_variants: true`) "
            f"{c['variants_match']} of {c['variants']} IBSI variants match.")


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _markdown_table(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def readme_section(table: pd.DataFrame) -> str:
    """The README's conformance section body (between the markers), generated from the table."""
    return "\n\n".join([summary_sentence(table), _markdown_table(class_summary(table)),
                        _markdown_table(variants_summary(table)), WAVELET_NOTE])


def replace_readme_section(text: str, section: str) -> str:
    """README text with the generated section between its markers replaced."""
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    return text[:start] + "\n" + section + "\n" + text[end:]


# --------------------------------------------------------------------------- reporting items

# pyradiomics 3.0.1's defaults for the settings the reporting items describe (a test checks them)
PYRADIOMICS_DEFAULTS: Dict[str, Any] = {"binWidth": 25, "normalize": False, "normalizeScale": 1,
                                        "removeOutliers": None, "resampledPixelSpacing": None,
                                        "interpolator": "sitkBSpline", "distances": [1], "force2D": False,
                                        "force2Ddimension": 0, "resegmentRange": None, "voxelArrayShift": 0,
                                        "symmetricalGLCM": True, "gldm_a": 0, "wavelet": "coif1", "level": 1,
                                        "start_level": 0}


def _setting(extraction: Mapping[str, Any], key: str, image_type: Optional[str] = None) -> Any:
    """A pyradiomics setting as the extraction used it (an image type's own, the global, or the default)."""
    params = extraction.get("pyradiomics") or {}
    custom = ((params.get("imageType") or {}).get(image_type) or {}) if image_type else {}
    if key in custom:
        return custom[key]
    return (params.get("setting") or {}).get(key, PYRADIOMICS_DEFAULTS.get(key))


def describe_discretisation(extraction: Mapping[str, Any]) -> str:
    """IBSI's discretisation items: fixed bin number or fixed bin size, and any re-segmentation range."""
    bins = _setting(extraction, "binCount")
    text = (f"fixed bin number (FBN): {bins} bins per image and filter response" if bins else
            f"fixed bin size (FBS): bin width {_setting(extraction, 'binWidth')}, from the minimum of each image")
    reseg = _setting(extraction, "resegmentRange")
    return text + (f"; re-segmentation range {reseg}" if reseg else "; no re-segmentation")


def describe_resampling(extraction: Mapping[str, Any]) -> str:
    """IBSI's interpolation items: resampled spacing and interpolators, or none; and the orientation
    the axes were put in (a permutation, no interpolation)."""
    spacing = _setting(extraction, "resampledPixelSpacing")
    orientation = (extraction.get("imnrisk") or {}).get("orientation")
    axes = (f"; axes permuted and flipped (no interpolation) to {orientation} order before extraction"
            if orientation else "")
    if spacing:
        interpolator = _setting(extraction, "interpolator")
        return (f"resampled to {spacing} mm (0: axis kept) by pyradiomics, image {interpolator}, mask nearest "
                f"neighbour{axes}")
    return ("none: native voxel spacing (a mask on another grid is resampled nearest-neighbour to the image, "
            f"with a warning){axes}")


def describe_filters(extraction: Mapping[str, Any]) -> str:
    """The image types (filters) features were computed on."""
    parts = []
    for name in ((extraction.get("pyradiomics") or {}).get("imageType") or {"Original": {}}):
        if name == "Original":
            parts.append("Original (unfiltered)")
        elif name == "Wavelet":
            parts.append(f"Wavelet ({_setting(extraction, 'wavelet', name)}, undecimated (PyWavelets swtn), "
                         f"level {_setting(extraction, 'level', name)} from start level "
                         f"{_setting(extraction, 'start_level', name)}, 8 sub-bands per level; not IBSI-2 tested)")
        elif name == "LoG":
            parts.append(f"LoG (sigma {_setting(extraction, 'sigma', name)} mm; not IBSI-2 tested)")
        else:
            parts.append(f"{name} (not IBSI-2 tested)")
    return "; ".join(parts)


def describe_smoothing_normalisation(extraction: Mapping[str, Any]) -> str:
    """IMNRisk's smoothing and pyradiomics' intensity normalisation as the extraction used them."""
    sigma = float((extraction.get("imnrisk") or {}).get("smoothing_sigma_mm", 0.0))
    smoothing = (f"Gaussian smoothing sigma {sigma:g} mm (IMNRisk, on the tumour region plus margin, before "
                 "pyradiomics)" if sigma > 0 else "no smoothing")
    if _setting(extraction, "normalize"):
        outliers = _setting(extraction, "removeOutliers")
        scale = _setting(extraction, "normalizeScale")
        normalisation = (f"z-score over the whole image (pyradiomics normalizeImage) x {scale}"
                         + (f", outliers beyond {outliers} SD clipped" if outliers else ", no outlier removal"))
    else:
        normalisation = "no intensity normalisation"
    shift = _setting(extraction, "voxelArrayShift")
    return (f"{smoothing}; {normalisation}; voxelArrayShift {shift} (added before first-order Energy, TotalEnergy, "
            "RootMeanSquared)")


def describe_texture(extraction: Mapping[str, Any]) -> str:
    """IBSI's texture-matrix items: 2D/3D, distances, symmetry, NGLDM coarseness, aggregation."""
    dims = (f"2D (slices along axis {_setting(extraction, 'force2Ddimension')})" if _setting(extraction, "force2D")
            else "3D, 13 directions")
    symmetric = "yes" if _setting(extraction, "symmetricalGLCM") else "no"
    return (f"{dims}; distances {_setting(extraction, 'distances')} (Chebyshev); symmetric GLCM {symmetric}; "
            f"NGLDM alpha {_setting(extraction, 'gldm_a')}; "
            "GLCM and GLRLM features per direction, then averaged (IBSI 3D_avg); GLSZM, NGLDM, NGTDM 3D")


def describe_conformance(extraction: Mapping[str, Any], software: Mapping[str, Any], model_features: Iterable[str],
                         table: Optional[pd.DataFrame] = None) -> str:
    """IBSI conformance as this run can state it: the phantom's counts, the profile, the model's features."""
    table = load_table() if table is None else table
    c = counts(table)
    measured = table["pyradiomics"].iloc[0] if len(table) else "?"
    used = str(software.get("pyradiomics", "?"))
    deviating = sorted(split_name(f)[2] for f in table.loc[~table["match"], "feature"])
    text = (f"feature definitions on the IBSI-1 digital phantom (IBSI's configuration, not this study's "
            f"pre-processing), pyradiomics {measured}: {c['match']}/{c['mapped']} mapped features match; "
            f"deviations by convention: {', '.join(deviating)}")
    if measured != used:
        text += f" (measured with pyradiomics {measured}; this extraction used {used}: not verified for it)"
    on = bool((extraction.get("imnrisk") or {}).get("ibsi_variants"))
    text += ("; IBSI profile on: the _IBSI variants are in the features" if on else
             "; IBSI profile off: Kurtosis and axis lengths follow pyradiomics' conventions")
    names = list(model_features)
    convention = [n for n in names if f"{split_name(n)[1]}_{split_name(n)[2]}" in CONVENTIONS]
    filtered = [n for n in names if not n.startswith("original_")]
    untagged = [n for n in names if n.startswith("original_") and ibsi_tag(n) is None]
    text += (f"; Rad-Score features: {len(names)}, {len(filtered)} on filtered images (not IBSI-tested), "
             f"{len(untagged)} without an IBSI name, {len(convention)} with a non-IBSI convention"
             + (f" ({', '.join(convention)})" if convention else ""))
    return text


def reporting_items(extraction: Mapping[str, Any], software: Mapping[str, Any],
                    model_features: Iterable[str]) -> List[Tuple[str, str, str]]:
    """CLEAR / IBSI reporting items the software can fill in: (item, topic, this run)."""
    versions = ", ".join(f"{k} {software[k]}" for k in ("SimpleITK", "PyWavelets", "numpy") if k in software)
    return [
        ("CLEAR / IBSI", "Feature extraction software and version",
         f"pyradiomics {software.get('pyradiomics', '?')} through IMNRisk {software.get('imnrisk', '?')}"
         + (f" ({versions})" if versions else "")),
        ("CLEAR / IBSI", "IBSI conformance", describe_conformance(extraction, software, model_features)),
        ("CLEAR / IBSI", "Discretisation", describe_discretisation(extraction)),
        ("CLEAR / IBSI", "Interpolation and resampling", describe_resampling(extraction)),
        ("CLEAR / IBSI", "Filters (image types)", describe_filters(extraction)),
        ("CLEAR / IBSI", "Smoothing and normalisation", describe_smoothing_normalisation(extraction)),
        ("IBSI", "Texture matrices", describe_texture(extraction)),
    ]


# --------------------------------------------------------------------------- measuring the phantom
