"""Synthetic DCE-MRI phantom cohort with a known ground truth (`imnrisk synth`).

No patient data ships with IMNRisk. This generator writes a cohort that looks and behaves like
the paper's: clinical factors that reproduce its Table 1 counts with consistent biology, an
outcome drawn from a known logistic model, and 8-phase DCE-MRI images whose tumour shape,
texture and kinetics carry a latent imaging phenotype. The truth (model and latent values) goes
to truth.json, apart from the manifest. Everything is synthetic; same seed, same bytes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

from IMNRiskLib import RESEARCH_ONLY, __version__
from IMNRiskLib.core.files import atomic_path, write_json, write_text
from IMNRiskLib.app.synthdicom import volume_image
from IMNRiskLib.app.synthkernels import rician_magnitude, signal_sum, upsample_linear
from IMNRiskLib.inputs.schema import load_schema
from IMNRiskLib.core.workers import process_pool

TABLE1 = Path(__file__).parents[1] / "data" / "paper_table1.csv"
PAPER_N = 124

# The logistic ground truth: logit P(IMN) = intercept + sum of these (per unit / per level).
# Chosen so that on 10 000 patients the true clinical-only model has AUC ~0.91 and the true
# imaging-only model ~0.81 (README: measured values), with ~17% IMN-positive.
TRUTH = {
    "intercept": -6.7,
    "tumor_location[medial]": 1.5,
    "tumor_location[central]": 2.0,
    "pr[positive]": 2.0,
    "aln_metastases (per step N0..N3)": 2.2,
    "phenotype (per SD)": 1.6,
}
# The latent imaging phenotype (irregular, elongated, heterogeneous, rim-enhancing tumours)
# correlates with nodal burden, as aggressive tumours do.
PHENOTYPE_ALN_CORRELATION = 0.3

# Diameter ranges (mm) per T stage: T1 <= 20, T2 20-50, T3 > 50 (kept off the borders, so the
# measured largest diameter lands in the right class); T4 is defined by extension, not size.
DIAMETER_MM = {"T1": (12.0, 18.5), "T2": (23.0, 45.0), "T3": (54.0, 62.0), "T4": (28.0, 45.0)}
KI67_LOW_CUTOFF = 14.0   # the Ki-67 row of Table 1 ("high" >= 14%)
KI67_STGALLEN = 20.0     # luminal A / B split used for the molecular subtype

DEFAULT_GRID = {"size": (160, 160, 40), "spacing": (0.9, 0.9, 2.0)}
FULL_GRID = {"size": (512, 512, 100), "spacing": (0.66, 0.66, 2.0)}
N_PHASES = 8
# Relative enhancement per phase (index 0 = pre-contrast). The tumour washes in fast and peaks
# in the second phase, then washes out; parenchyma enhances slowly and progressively: so the
# tumour-to-parenchyma contrast is highest in phase index 1, as in the paper.
TUMOUR_CURVE = np.array([0.0, 1.0, 0.9, 0.82, 0.76, 0.71, 0.67, 0.64])
PARENCHYMA_CURVE = np.array([0.0, 0.15, 0.3, 0.42, 0.52, 0.6, 0.66, 0.7])
MUSCLE_CURVE = np.array([0.0, 0.3, 0.35, 0.38, 0.4, 0.4, 0.4, 0.4])
NOISE_SIGMA = 10.0
# The image noise's standard normals: the normal quantiles at 2^16 equally likely levels, drawn by a
# 16-bit random index (`standard_normals`). numpy's ziggurat took two thirds of the synth's time (16 M
# draws a patient, ~10 ns each); an index and a table look-up take a quarter of that. In the bulk the
# levels are 4e-5 SD apart (the noise is 10 grey levels, then rounded to integers); the tails stop at
# 4.3 SD, and the table is scaled to SD 1.
NOISE_LEVELS = 2 ** 16


# --------------------------------------------------------------------------- clinical factors

def table1_counts() -> pd.DataFrame:
    """The paper's Table 1: counts per variable and level, by IMN status."""
    frame = pd.read_csv(TABLE1)
    frame["total"] = frame["imn_positive"] + frame["imn_negative"]
    return frame


def quota(counts: Sequence[float], n: int) -> np.ndarray:
    """Integer counts summing to n in the proportions of `counts` (largest remainder)."""
    p = np.asarray(counts, float) / float(np.sum(counts))
    base = np.floor(p * n).astype(int)
    rest = p * n - base
    base[np.argsort(-rest, kind="stable")[: n - base.sum()]] += 1
    return base


def _levels(table: pd.DataFrame, variable: str) -> Tuple[List[str], np.ndarray]:
    rows = table[table["variable"] == variable]
    return [str(l).split(" ")[0] for l in rows["level"]], rows["total"].to_numpy()


def _draw_levels(rng: np.random.Generator, table: pd.DataFrame, variable: str, n: int) -> np.ndarray:
    """A shuffled column whose level counts match Table 1 scaled to n."""
    levels, totals = _levels(table, variable)
    return rng.permutation(np.repeat(np.array(levels, dtype=object), quota(totals, n)))


def _pick(rng: np.random.Generator, candidates: np.ndarray, k: int) -> np.ndarray:
    """k indices chosen at random among candidates (all of them if fewer)."""
    k = max(0, min(k, len(candidates)))
    return rng.choice(candidates, size=k, replace=False) if k else np.array([], dtype=int)


def draw_clinical(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Clinical factors of n patients: Table 1 counts (scaled to n), biology kept consistent.

    Receptors: HER-2 IHC score and Ki-67 % are drawn, and both the Table 1 rows (HER-2 positive =
    IHC >= 1+, Ki-67 high >= 14%) and the molecular subtype (HER-2 amplification = IHC 3+ or 2+
    with ISH; St Gallen Ki-67 20%) are derived from them. Table 1 lists 57 patients as
    HER-2-enriched or triple negative but only 32 ER-negative, so the HER-2 group here is
    "HER-2 amplified" whatever the hormone receptors (a few of them are ER/PR negative).
    """
    t = table1_counts()
    out = pd.DataFrame(index=range(n))
    # age and menopause: premenopausal are the youngest, with a few years of overlap
    age_group = _draw_levels(rng, t, "age", n)
    young = age_group == "<50"
    age = np.where(young, rng.normal(42, 5, n).clip(26, 49), rng.normal(58, 6, n).clip(50, 80))
    out["age"] = np.round(age).astype(int)
    n_pre = int(quota(_levels(t, "menstrual_status")[1], n)[1])
    order = np.argsort(out["age"].to_numpy() + rng.normal(0, 3, n), kind="stable")
    menstrual = np.full(n, "postmenopausal", dtype=object)
    menstrual[order[:n_pre]] = "premenopausal"
    out["menstrual_status"] = menstrual

    for variable in ("tumor_location", "vascular_invasion", "pathological_type", "histological_grade",
                     "aln_metastases", "t_stage"):
        out[variable] = _draw_levels(rng, t, variable, n)

    out = out.join(_draw_receptors(rng, t, n))
    # blood counts (10^9/L): plausible log-normal spreads
    out["neutrophil"] = np.round(np.exp(rng.normal(math.log(3.6), 0.3, n)), 2)
    out["lymphocyte"] = np.round(np.exp(rng.normal(math.log(1.8), 0.3, n)), 2)
    out["monocyte"] = np.round(np.exp(rng.normal(math.log(0.42), 0.3, n)), 2)
    return out


def _draw_receptors(rng: np.random.Generator, t: pd.DataFrame, n: int) -> pd.DataFrame:
    """ER, PR, HER-2 (IHC score and row), Ki-67 (% and row) and the subtype they imply."""
    subtype = _draw_levels(rng, t, "molecular_subtype", n)
    idx = np.arange(n)
    q = lambda var, level: int(quota(_levels(t, var)[1], n)[_levels(t, var)[0].index(level)])  # noqa: E731
    her2_group = idx[subtype == "her2_enriched"]
    tn = idx[subtype == "triple_negative"]
    # hormone-receptor negative = triple negative + part of the HER-2 group, within ER- count
    n_er_neg, n_pr_neg = q("er", "negative"), q("pr", "negative")
    hr_neg_her2 = _pick(rng, her2_group, min(round(10 * n / PAPER_N), n_er_neg - len(tn)))
    hr_neg = np.zeros(n, bool)
    hr_neg[tn] = True
    hr_neg[hr_neg_her2] = True
    er = np.where(hr_neg, "negative", "positive").astype(object)
    pr = er.copy()
    hr_pos = idx[~hr_neg]
    er_neg_pr_pos = _pick(rng, hr_pos, n_er_neg - hr_neg.sum())
    er[er_neg_pr_pos] = "negative"
    rest = np.setdiff1d(hr_pos, er_neg_pr_pos)
    pr[_pick(rng, rest, n_pr_neg - hr_neg.sum())] = "negative"

    # HER-2: amplified (IHC 3+, or 2+ with ISH) in the HER-2 group; IHC 0 for the "negative" row
    ihc = np.zeros(n, int)
    amplified = subtype == "her2_enriched"
    ihc[amplified] = np.where(rng.random(amplified.sum()) < 0.8, 3, 2)
    not_amp = idx[~amplified]
    zero = _pick(rng, not_amp, q("her2", "negative"))
    low = np.setdiff1d(not_amp, zero)
    ihc[low] = rng.choice([1, 2], size=len(low), p=[0.7, 0.3])
    ish = amplified & (ihc == 2)

    # Ki-67: luminal A below 20% (the "low" row, < 14%, taken from them first), luminal B 20%+
    ki67 = np.zeros(n)
    lum_a, lum_b = idx[subtype == "luminal_A"], idx[subtype == "luminal_B"]
    n_low = q("ki67", "low")
    low_a = _pick(rng, lum_a, n_low)
    low_other = _pick(rng, np.concatenate([her2_group, tn]), n_low - len(low_a))
    ki67[np.concatenate([low_a, low_other]).astype(int)] = rng.uniform(3, 13, len(low_a) + len(low_other))
    mid_a = np.setdiff1d(lum_a, low_a)
    ki67[mid_a] = rng.uniform(14, 19.5, len(mid_a))
    ki67[lum_b] = rng.uniform(20, 60, len(lum_b))
    high_other = np.setdiff1d(np.concatenate([her2_group, tn]), low_other)
    ki67[high_other] = rng.uniform(14, 80, len(high_other))
    return pd.DataFrame({
        "er": er, "pr": pr, "her2": np.where(ihc >= 1, "positive", "negative"),
        "ki67": np.where(ki67 >= KI67_LOW_CUTOFF, "high", "low"), "molecular_subtype": subtype,
        "her2_ihc": ihc, "her2_ish_amplified": ish, "ki67_percent": np.round(ki67, 1)})


def subtype_from_markers(er: str, pr: str, her2_ihc: int, ish: bool, ki67_percent: float) -> str:
    """The subtype the markers imply (used by tests to check the generator's consistency)."""
    amplified = her2_ihc == 3 or (her2_ihc == 2 and ish)
    hormone = er == "positive" or pr == "positive"
    if amplified:
        return "her2_enriched"
    if not hormone:
        return "triple_negative"
    return "luminal_A" if ki67_percent < KI67_STGALLEN else "luminal_B"


# --------------------------------------------------------------------------- truth

def draw_truth(clinical: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Latent phenotype, tumour geometry, the true linear predictor, probability and outcome."""
    n = len(clinical)
    aln = clinical["aln_metastases"].map({"N0": 0, "N1": 1, "N2": 2, "N3": 3}).to_numpy(float)
    aln_z = (aln - aln.mean()) / (aln.std() or 1.0)
    rho = PHENOTYPE_ALN_CORRELATION
    phenotype = rho * aln_z + math.sqrt(1 - rho ** 2) * rng.standard_normal(n)
    lp_clinical = (TRUTH["tumor_location[medial]"] * (clinical["tumor_location"] == "medial")
                   + TRUTH["tumor_location[central]"] * (clinical["tumor_location"] == "central")
                   + TRUTH["pr[positive]"] * (clinical["pr"] == "positive")
                   + TRUTH["aln_metastases (per step N0..N3)"] * aln).to_numpy(float)
    lp = TRUTH["intercept"] + lp_clinical + TRUTH["phenotype (per SD)"] * phenotype
    probability = 1.0 / (1.0 + np.exp(-lp))
    outcome = (rng.random(n) < probability).astype(int)
    diameter = np.array([rng.uniform(*DIAMETER_MM[s]) for s in clinical["t_stage"]])
    return pd.DataFrame({"phenotype": phenotype, "lp_clinical": lp_clinical, "linear_predictor": lp,
                         "probability": probability, "IMN": outcome, "diameter_mm": diameter})


def phenotype_traits(phenotype: float, rng: np.random.Generator) -> Dict[str, float]:
    """How the latent phenotype shows in the image (each trait with its own patient noise)."""
    s = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731
    return {"elongation": 0.95 - 0.45 * s(1.2 * phenotype + rng.normal(0, 0.5)),   # minor/major axis
            "irregularity": 0.05 + 0.30 * s(1.2 * phenotype + rng.normal(0, 0.5)),  # lobulation depth
            "heterogeneity": 0.05 + 0.30 * s(1.2 * phenotype + rng.normal(0, 0.5)),  # internal texture
            "rim": 0.70 * s(1.2 * phenotype - 0.5 + rng.normal(0, 0.5))}            # rim vs core


# --------------------------------------------------------------------------- images

def _smooth_noise(rng: np.random.Generator, shape: Tuple[int, ...], scale_vox: float) -> np.ndarray:
    """Zero-mean, unit-SD smooth random field: coarse white noise, upsampled."""
    coarse = [max(2, int(math.ceil(s / scale_vox)) + 1) for s in shape]
    field = upsample_linear(rng.standard_normal(coarse).astype(np.float32), shape)
    field -= field.mean()
    return field / (field.std() or 1.0)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def _feret_diameter(mask: np.ndarray, spacing_xyz) -> float:
    """Largest distance (mm) between two tumour voxel centres (via the convex hull)."""
    from scipy.spatial import ConvexHull  # start-up time: scipy loads only when used
    pts = np.argwhere(mask)[:, ::-1] * np.asarray(spacing_xyz)
    try:
        pts = pts[ConvexHull(pts).vertices]
    except Exception:  # noqa: BLE001 - flat or tiny sets: use all points
        pass
    diffs = pts[:, None, :] - pts[None, :, :]
    return float(np.sqrt((diffs ** 2).sum(-1)).max())


def _tumour(rng: np.random.Generator, shape_zyx, spacing_xyz, centre_mm, diameter_mm, traits
            ) -> Tuple[np.ndarray, np.ndarray, Tuple[slice, ...]]:
    """Tumour mask and relative radius (0 centre .. 1 edge) in a box around it.

    A lobulated ellipsoid: lobulation shrinks the radius in some directions, so the tumour is
    drawn once, its largest diameter measured, and redrawn scaled to the wanted diameter.
    """
    elongation = traits["elongation"]
    flat = max(0.6, min(elongation, 0.8) * rng.uniform(0.8, 1.0))
    rot = _random_rotation(rng)
    lobes = rng.standard_normal((7, 3))
    lobes /= np.linalg.norm(lobes, axis=1, keepdims=True)
    weights = rng.uniform(0.5, 1.0, 7)

    def draw(a: float):
        axes = np.array([a, a * elongation, a * flat])
        lo = [max(0, int((centre_mm[i] - a) / spacing_xyz[i]) - 2) for i in range(3)]
        hi = [min(shape_zyx[2 - i], int((centre_mm[i] + a) / spacing_xyz[i]) + 3) for i in range(3)]
        box = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        zz, yy, xx = np.meshgrid(*[np.arange(s.start, s.stop) for s in box], indexing="ij")
        pts = np.stack([xx * spacing_xyz[0] - centre_mm[0], yy * spacing_xyz[1] - centre_mm[1],
                        zz * spacing_xyz[2] - centre_mm[2]], axis=-1) @ rot
        scaled = pts / axes
        rho = np.linalg.norm(scaled, axis=-1)
        unit = scaled / np.maximum(rho, 1e-9)[..., None]
        f = np.exp(4.0 * (unit @ lobes.T - 1.0)) @ weights
        # radius in [1 - irregularity, 1]: lobulated
        radius = 1.0 - traits["irregularity"] * (1.0 - (f - f.min()) / (f.max() - f.min() + 1e-9))
        mask = rho <= radius
        return mask, np.clip(rho / radius, 0, 1), box

    a = diameter_mm / 2.0
    first, _, _ = draw(a)
    return draw(a * diameter_mm / max(_feret_diameter(first, spacing_xyz), 1e-6))


@functools.lru_cache(maxsize=2)
def _breast(shape_zyx: Tuple[int, ...], spacing_xyz: Tuple[float, ...]
            ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks of breast, chest-wall muscle and lung on the grid (prone, one breast, axial); the same
    for every patient, so made once per grid (read-only)."""
    nz, ny, nx = shape_zyx
    z = (np.arange(nz) - nz / 2) * spacing_xyz[2]
    y = np.arange(ny) * spacing_xyz[1]
    x = (np.arange(nx) - nx / 2) * spacing_xyz[0]
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij", sparse=True)
    depth = ny * spacing_xyz[1]
    wall = 0.78 * depth
    half_w, half_h = 0.47 * nx * spacing_xyz[0], 0.48 * nz * spacing_xyz[2]
    breast = ((xx / half_w) ** 2 + ((yy - wall) / (wall - 0.06 * depth)) ** 2 + (zz / half_h) ** 2 <= 1) & (yy < wall)
    muscle = (yy >= wall) & (yy < wall + 0.09 * depth) & (np.abs(xx) < 0.49 * nx * spacing_xyz[0]) \
        & (np.zeros_like(zz) == 0)
    lung = (yy >= wall + 0.09 * depth) & (np.abs(xx) < 0.45 * nx * spacing_xyz[0]) & (np.zeros_like(zz) == 0)
    for tissue in (breast, muscle, lung):
        tissue.flags.writeable = False
    return breast, muscle, lung


def tumour_centre(location: str, diameter_mm: float, rng: np.random.Generator, size_xyz, spacing_xyz) -> List[float]:
    """Tumour centre (mm, image index space): medial / lateral / central part of the breast."""
    width = size_xyz[0] * spacing_xyz[0]
    depth = size_xyz[1] * spacing_xyz[1]
    height = size_xyz[2] * spacing_xyz[2]
    r = diameter_mm / 2
    offset = {"medial": -0.17, "lateral": 0.17, "central": 0.0}[location] * width
    x = width / 2 + offset + rng.normal(0, 0.03 * width)
    y = rng.uniform(0.40, 0.55) * depth
    z = height / 2 + rng.normal(0, 0.04 * height)
    # keep the whole tumour inside the breast
    x = float(np.clip(x, r + 0.12 * width, width - r - 0.12 * width))
    y = float(np.clip(y, r + 0.12 * depth, 0.74 * depth - r))
    z = float(np.clip(z, min(r, height / 2 - 4) + 2, height - min(r, height / 2 - 4) - 2))
    return [x, y, z]


def render_patient(seed_words: Sequence[int], location: str, diameter_mm: float, phenotype: float,
                   grid: Dict[str, tuple]) -> Dict[str, np.ndarray]:
    """8-phase DCE volume (phase, z, y, x; int16), tumour mask and a second reader's mask."""
    rng = np.random.default_rng(np.random.SeedSequence(list(seed_words)))
    size, spacing = grid["size"], grid["spacing"]
    shape = (size[2], size[1], size[0])
    traits = phenotype_traits(phenotype, rng)
    breast, muscle, lung = _breast(shape, tuple(spacing))
    fgt_field = _smooth_noise(rng, shape, 6.0)
    centre = tumour_centre(location, diameter_mm, rng, size, spacing)
    mask_box, rel_radius, box = _tumour(rng, shape, spacing, centre, diameter_mm, traits)
    mask = np.zeros(shape, np.uint8)
    mask[box][mask_box] = 1

    # baseline (pre-contrast) signal and enhancement amplitude per tissue
    fibroglandular = breast & (fgt_field > 0.3)
    base = np.zeros(shape, np.float32)
    base[breast] = 90.0
    base[fibroglandular] = 160.0
    base[muscle] = 140.0
    base[lung] = 15.0
    texture = _smooth_noise(rng, tuple(s.stop - s.start for s in box), 1.5)
    rim = 1.0 - traits["rim"] * (1.0 - rel_radius) ** 2
    tumour_gain = 1.4 * rim * (1.0 + traits["heterogeneity"] * texture)
    tumour_base = 150.0 * (1.0 + 0.3 * traits["heterogeneity"] * texture)

    noise_rng = np.random.default_rng(rng.integers(2 ** 63))
    parenchyma_gain = (0.6 * base * fibroglandular).astype(np.float32)
    muscle_gain = (0.5 * base * muscle).astype(np.float32)
    tumour = (tumour_base[mask_box], tumour_gain[mask_box])
    phases = _phases(base, parenchyma_gain, muscle_gain, tumour, box, mask_box, noise_rng)

    # a second reader: the same tumour, one voxel grown or shrunk in places
    change = _smooth_noise(rng, shape, 4.0)
    reader2 = _second_reader(mask, change, _padded(box, shape))
    return {"phases": phases, "mask": mask, "reader2": reader2, "traits": traits, "centre_mm": centre}


def _phases(base: np.ndarray, parenchyma_gain: np.ndarray, muscle_gain: np.ndarray,
            tumour: Tuple[np.ndarray, np.ndarray], box: Tuple[slice, ...], mask_box: np.ndarray,
            noise_rng: np.random.Generator) -> np.ndarray:
    """The N_PHASES noisy volumes (int16). Each phase is computed in three reused buffers (compiled
    loops: `synthkernels`); the noise is Rician, the magnitude of the signal with Gaussian noise
    (`standard_normals`) in both channels."""
    tumour_base, tumour_gain = tumour  # at the tumour's voxels
    phases = np.empty((N_PHASES,) + base.shape, np.int16)
    signal, real, imag = (np.empty(base.shape, np.float32) for _ in range(3))
    for t in range(N_PHASES):
        signal_sum(base, parenchyma_gain, np.float32(PARENCHYMA_CURVE[t]), muscle_gain, np.float32(MUSCLE_CURVE[t]),
                   out=signal)
        signal[box][mask_box] = tumour_base * (1.0 + tumour_gain * TUMOUR_CURVE[t])
        # Rician noise: magnitude of a complex signal with Gaussian noise in both channels
        standard_normals(noise_rng, out=real)
        standard_normals(noise_rng, out=imag)
        rician_magnitude(signal, real, imag, np.float32(NOISE_SIGMA), out=phases[t])
    return phases


@functools.lru_cache(maxsize=1)
def normal_levels() -> np.ndarray:
    """The NOISE_LEVELS equally likely standard normal values (quantiles at the levels' centres),
    scaled to SD 1 (float32, ascending)."""
    from scipy.special import ndtri  # start-up time: loaded when the first phantom draws its noise
    levels = ndtri((np.arange(NOISE_LEVELS) + 0.5) / NOISE_LEVELS)
    return (levels / levels.std()).astype(np.float32)


def standard_normals(rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
    """Fill out (float32, contiguous) with standard normal noise: NOISE_LEVELS levels, seeded by rng."""
    picks = rng.integers(0, NOISE_LEVELS, out.size, dtype=np.uint16)
    np.take(normal_levels(), picks, out=out.reshape(-1))
    return out


def _padded(box: Tuple[slice, ...], shape) -> Tuple[slice, ...]:
    """The box grown by one voxel on every side (within the image)."""
    return tuple(slice(max(0, b.start - 1), min(n, b.stop + 1)) for b, n in zip(box, shape))


def _second_reader(mask: np.ndarray, change: np.ndarray, box: Tuple[slice, ...]) -> np.ndarray:
    """The tumour grown by one voxel where `change` > 0.5 and its edge shrunk where < -0.5; computed
    in `box`, which holds the tumour and a ring of background (or the image border) around it, so
    the one-voxel dilation and erosion give what they give on the whole image."""
    sub, field = mask[box].astype(bool), change[box]
    grown = ndimage.binary_dilation(sub, iterations=1) & (field > 0.5)
    shrunk = sub & ~ndimage.binary_erosion(sub, iterations=1) & (field < -0.5)
    reader2 = np.zeros(mask.shape, np.uint8)
    reader2[box] = (sub | grown) & ~shrunk
    return reader2


# --------------------------------------------------------------------------- writing

def write_nrrd_4d(phases: np.ndarray, spacing, path: Path) -> None:
    """One 4-D NRRD (x, y, z, phase), uncompressed (fast to write and to stream one phase). The 4-D
    image is made in one copy of the array, the phase axis spaced 1 as JoinSeries spaces it (the
    same file as JoinSeries of the phases, without copying them twice)."""
    image = sitk.GetImageFromArray(phases, isVector=False)
    image.SetSpacing(tuple(spacing) + (1.0,))
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp.with_suffix(".nrrd")), False)
        tmp.with_suffix(".nrrd").replace(tmp)


@dataclass
class SynthOptions:
    patients: int = PAPER_N
    seed: int = 0
    full_size: bool = False
    dicom: bool = False
    jobs: int = 1
    dicom_form: str = "classic"  # with dicom: classic, enhanced or per-phase (IMNRiskLib.app.synthdicom)


def _write_case(args) -> Tuple[str, Dict[str, object]]:
    """Render and write one patient (worker entry point)."""
    folder, pid, seed_words, location, diameter, phenotype, grid, dicom, seed = args
    out = render_patient(seed_words, location, diameter, phenotype, grid)
    case = Path(folder) / "cases" / pid
    case.mkdir(parents=True, exist_ok=True)
    spacing = grid["spacing"]
    notes: List[str] = []
    if dicom:
        from IMNRiskLib.app.synthdicom import write_case  # start-up time: loaded when this step runs
        notes = write_case(out["phases"], out["mask"], spacing, case, pid, seed, dicom)
    else:
        write_nrrd_4d(out["phases"], spacing, case / "dce.nrrd")
    for name in ("mask", "reader2"):
        target = case / ("tumour.nrrd" if name == "mask" else "tumour_reader2.nrrd")
        with atomic_path(target) as tmp:
            sitk.WriteImage(volume_image(out[name], spacing), str(tmp.with_suffix(".nrrd")), True)
            tmp.with_suffix(".nrrd").replace(tmp)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return pid, {"traits": out["traits"], "centre_mm": out["centre_mm"], "notes": notes,
                 "tumour_voxels": int(out["mask"].sum()), "tumour_ml": float(out["mask"].sum() * voxel_ml)}


def synthesize(folder: Path, options: SynthOptions,
               progress: Optional[Callable[[int, int], None]] = None) -> Dict[str, object]:
    """Write cohort.csv, cases/<ID>/ images and masks, and truth.json; return a summary."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    root = np.random.SeedSequence(options.seed)
    clinical_rng, truth_rng = (np.random.default_rng(s) for s in root.spawn(2))
    clinical = draw_clinical(options.patients, clinical_rng)
    truth = draw_truth(clinical, truth_rng)
    ids = [f"SYN{i + 1:04d}" for i in range(options.patients)]
    grid = FULL_GRID if options.full_size else DEFAULT_GRID
    tasks = [(str(folder), pid, [options.seed, i, 7], clinical["tumor_location"][i], float(truth["diameter_mm"][i]),
              float(truth["phenotype"][i]), grid, options.dicom and options.dicom_form, options.seed)
             for i, pid in enumerate(ids)]
    rendered: Dict[str, Dict[str, object]] = {}
    if options.jobs > 1 and len(tasks) > 1:
        with process_pool(options.jobs) as pool:
            for pid, info in pool.map(_write_case, tasks, chunksize=1):
                rendered[pid] = info
                if progress:
                    progress(len(rendered), len(tasks))
    else:
        for task in tasks:
            pid, info = _write_case(task)
            rendered[pid] = info
            if progress:
                progress(len(rendered), len(tasks))

    notes = sorted({note for info in rendered.values() for note in info.pop("notes", [])})  # not truth
    schema = load_schema()
    image_name = "dce_dicom" if options.dicom else "dce.nrrd"
    manifest = pd.DataFrame({"ID": ids, "Image": [f"cases/{p}/{image_name}" for p in ids],
                             "Mask": [f"cases/{p}/tumour.nrrd" for p in ids],
                             "Mask2": [f"cases/{p}/tumour_reader2.nrrd" for p in ids], "Phase": 1, "Label": 1,
                             "IMN": truth["IMN"].to_numpy()})
    for name in schema.names:
        manifest[name] = clinical[name].to_numpy()
    with atomic_path(folder / "cohort.csv") as tmp:
        manifest.to_csv(tmp, index=False)
    latent = clinical[["her2_ihc", "her2_ish_amplified", "ki67_percent"]].copy()
    latent = latent.join(truth[["phenotype", "lp_clinical", "linear_predictor", "probability", "diameter_mm"]])
    latent.index = ids
    patients = {pid: {**{k: (v.item() if hasattr(v, "item") else v) for k, v in latent.loc[pid].items()},
                      **rendered[pid]} for pid in ids}
    truth_doc = {
        "format": "imnrisk-synthetic-truth", "software": f"imnrisk {__version__}", "note":
        "Synthetic phantom: no real patient. " + RESEARCH_ONLY, "seed": options.seed,
        "patients": options.patients, "events": int(truth["IMN"].sum()),
        "grid": {"size": list(grid["size"]), "spacing_mm": list(grid["spacing"]), "phases": N_PHASES,
                 "peak_phase_index": 1,
                 "format": f"dicom-{options.dicom_form}" if options.dicom else "nrrd-4d"},
        "model": {"coefficients": TRUTH, "phenotype_aln_correlation": PHENOTYPE_ALN_CORRELATION,
                  "clinical_factors": ["tumor_location", "pr", "aln_metastases"],
                  "phenotype_traits": "elongation, irregularity (lobulation), internal heterogeneity, rim enhancement"},
        "definitions": {"her2_row": "positive = IHC >= 1+", "ki67_row": f"high = Ki-67 >= {KI67_LOW_CUTOFF:g}%",
                        "subtype": "HER-2 amplified (IHC 3+, or 2+ with ISH) -> her2_enriched; else hormone "
                                   "receptor negative -> triple_negative; else Ki-67 < 20% -> luminal_A, "
                                   "else luminal_B",
                        "t_stage": "T1 <= 20 mm, T2 20-50 mm, T3 > 50 mm largest diameter; T4 by extension"},
        "patients_latent": patients,
    }
    write_json(folder / "truth.json", truth_doc)
    write_text(folder / "README.txt", "IMNRisk synthetic phantom cohort (no real patient).\n"
               "cohort.csv: the manifest; cases/<ID>/: 8-phase DCE-MRI and tumour masks (Mask2: a second reader);\n"
               "truth.json: the generating model and each patient's latent values.\n" + RESEARCH_ONLY + "\n")
    return {"patients": options.patients, "events": int(truth["IMN"].sum()), "folder": str(folder), "notes": notes}


def true_model_aucs(n: int = 10000, seed: int = 12345) -> Dict[str, float]:
    """AUC of the true clinical-only, imaging-only and full models on n simulated patients.

    The true clinical-only model is P(IMN | clinical), i.e. the mean probability within each
    combination of the clinical factors; the imaging-only one is monotone in the phenotype.
    """
    from sklearn.metrics import roc_auc_score  # start-up time: sklearn loads only when used
    root = np.random.SeedSequence(seed)
    rc, rt = (np.random.default_rng(s) for s in root.spawn(2))
    clinical = draw_clinical(n, rc)
    truth = draw_truth(clinical, rt)
    y = truth["IMN"].to_numpy()
    frame = clinical[["tumor_location", "pr", "aln_metastases"]].assign(p=truth["probability"])
    p_clinical = frame.groupby(["tumor_location", "pr", "aln_metastases"])["p"].transform("mean")
    return {"n": n, "events": int(y.sum()), "clinical": float(roc_auc_score(y, p_clinical)),
            "imaging": float(roc_auc_score(y, truth["phenotype"])),
            "full": float(roc_auc_score(y, truth["probability"]))}
