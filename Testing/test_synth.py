"""The synthetic phantom: deterministic, Table 1 counts, consistent biology, signal in the images."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from conftest import ROOT, run_cli
from IMNRiskLib.radiomics import features
from IMNRiskLib.inputs import imaging
from IMNRiskLib.app import synth
from IMNRiskLib.inputs.cohort import read_cohort


def tree_digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_whatever_the_number_of_workers(tmp_path):
    a = synth.synthesize(tmp_path / "a", synth.SynthOptions(patients=3, seed=5, jobs=1))
    synth.synthesize(tmp_path / "b", synth.SynthOptions(patients=3, seed=5, jobs=2))
    synth.synthesize(tmp_path / "c", synth.SynthOptions(patients=3, seed=6, jobs=1))
    assert a["patients"] == 3
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    assert tree_digest(tmp_path / "a")["cohort.csv"] != tree_digest(tmp_path / "c")["cohort.csv"]


def test_packaged_table1_is_the_papers():
    shared = ROOT.parent / "shared" / "paper" / "table1_counts.csv"
    if not shared.exists():
        pytest.skip("../shared not beside the checkout")
    assert synth.TABLE1.read_text(encoding="utf-8") == shared.read_text(encoding="utf-8")


def test_table1_marginals_reproduced_within_two_patients():
    clinical = synth.draw_clinical(124, np.random.default_rng(np.random.SeedSequence(0).spawn(2)[0]))
    table = synth.table1_counts()
    checked = 0
    for _, row in table.iterrows():
        level = str(row["level"]).split(" ")[0]
        if row["variable"] == "age":
            got = int((clinical["age"] < 50).sum()) if level == "<50" else int((clinical["age"] >= 50).sum())
        else:
            got = int((clinical[row["variable"]] == level).sum())
        assert abs(got - row["total"]) <= 2, (row["variable"], level, got, row["total"])
        checked += 1
    assert checked == len(table) == 36


@pytest.mark.parametrize("n", [124, 1000])
def test_receptors_subtype_and_menopause_are_consistent(n):
    clinical = synth.draw_clinical(n, np.random.default_rng(n))
    implied = [synth.subtype_from_markers(r.er, r.pr, r.her2_ihc, r.her2_ish_amplified, r.ki67_percent)
               for r in clinical.itertuples()]
    assert implied == list(clinical["molecular_subtype"])
    assert ((clinical["her2_ihc"] >= 1) == (clinical["her2"] == "positive")).all()
    assert ((clinical["ki67_percent"] >= synth.KI67_LOW_CUTOFF) == (clinical["ki67"] == "high")).all()
    hr_negative = (clinical["er"] == "negative") & (clinical["pr"] == "negative")
    assert (clinical.loc[clinical["molecular_subtype"] == "triple_negative", "her2_ihc"] < 3).all()
    assert hr_negative[clinical["molecular_subtype"].isin(["luminal_A", "luminal_B"])].sum() == 0
    pre = clinical["menstrual_status"] == "premenopausal"
    assert clinical.loc[pre, "age"].max() <= 62 and clinical.loc[~pre, "age"].min() >= 38
    assert clinical.loc[pre, "age"].mean() < clinical.loc[~pre, "age"].mean() - 10


def _render(args):
    i, location, diameter, phenotype = args
    out = synth.render_patient([99, i, 7], location, diameter, phenotype, synth.DEFAULT_GRID)
    return out["phases"][1], out["mask"], out["phases"]


def test_t_stage_agrees_with_the_measured_largest_diameter():
    import SimpleITK as sitk
    from radiomics import shape
    rng = np.random.default_rng(3)
    for i, stage in enumerate(["T1", "T1", "T2", "T2", "T3", "T3"]):
        diameter = rng.uniform(*synth.DIAMETER_MM[stage])
        out = synth.render_patient([5, i, 7], "lateral", diameter, rng.normal(), synth.DEFAULT_GRID)
        image = sitk.GetImageFromArray(out["phases"][1].astype(np.float32))
        image.SetSpacing(synth.DEFAULT_GRID["spacing"])
        mask = sitk.GetImageFromArray(out["mask"])
        mask.CopyInformation(image)
        measured = float(shape.RadiomicsShape(image, mask).getMaximum3DDiameterFeatureValue())
        expected = "T1" if measured <= 20 else "T2" if measured <= 50 else "T3"
        assert expected == stage, (stage, diameter, measured)


def test_second_phase_has_the_highest_tumour_to_parenchyma_contrast():
    out = synth.render_patient([1, 2, 3], "central", 25.0, 0.0, synth.DEFAULT_GRID)
    tumour = out["mask"].astype(bool)
    ring = ndimage.binary_dilation(tumour, iterations=4) & ~ndimage.binary_dilation(tumour, iterations=1)
    contrast = [float(p[tumour].mean() - p[ring].mean()) for p in out["phases"]]
    assert int(np.argmax(contrast)) == 1, contrast
    assert contrast[1] > 3 * abs(contrast[0])


def test_latent_phenotype_is_recoverable_from_radiomics_features():
    """On 150 phantom patients, pre-specified features of the generated images track the latent
    phenotype (not via any side channel: only pixels and masks go in)."""
    import SimpleITK as sitk
    n = 150
    rng = np.random.default_rng(11)
    phenotype = rng.standard_normal(n)
    diameters = rng.uniform(15, 40, n)
    tasks = [(i, "lateral", float(diameters[i]), float(phenotype[i])) for i in range(n)]
    settings = features.load_settings()
    wanted = ["original_shape_Elongation", "original_shape_Sphericity", "original_firstorder_Skewness",
              "original_glcm_Correlation"]
    rows = []
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        for phase1, mask, _ in pool.map(_render, tasks, chunksize=5):
            image = sitk.GetImageFromArray(phase1.astype(np.float32))
            image.SetSpacing(synth.DEFAULT_GRID["spacing"])
            m = sitk.GetImageFromArray(mask)
            m.CopyInformation(image)
            loaded = imaging.LoadedCase(image=image, mask=m, phase=1, n_phases=8)
            values, _ = features.compute_features(loaded, settings, feature_names=wanted)
            rows.append(values)
    table = pd.DataFrame(rows)
    label = phenotype > np.median(phenotype)
    aucs = {name: roc_auc_score(label, table[name]) for name in wanted}
    aucs = {k: max(v, 1 - v) for k, v in aucs.items()}
    assert aucs["original_shape_Elongation"] > 0.7, aucs
    assert aucs["original_shape_Sphericity"] > 0.7, aucs
    assert max(aucs.values()) > 0.8, aucs


def test_true_model_aucs_near_the_papers():
    aucs = synth.true_model_aucs(10000)
    assert 0.88 < aucs["clinical"] < 0.93 and 0.77 < aucs["imaging"] < 0.84
    assert 0.13 < aucs["events"] / aucs["n"] < 0.21


def test_nrrd_and_dicom_cohorts_extract_identically(tmp_path):
    for form, extra in (("nrrd", []), ("dicom", ["--dicom"])):
        result = run_cli("synth", tmp_path / form, "--patients", "2", "--seed", "3", "--quiet", *extra)
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "dicom" / "cases" / "SYN0001" / "dce_dicom").is_dir()
    settings = features.load_settings()
    tables = {form: features.extract_cohort(read_cohort(tmp_path / form / "cohort.csv", need_clinical=True,
                                                        need_outcome=True), settings, tmp_path / f"cache_{form}",
                                            show_bar=False)
              for form in ("nrrd", "dicom")}
    assert tables["nrrd"].failures == [] and tables["dicom"].failures == []
    assert tables["nrrd"].features.shape == (2, 851)
    np.testing.assert_allclose(tables["dicom"].features.to_numpy(), tables["nrrd"].features.to_numpy(),
                               rtol=1e-6, atol=1e-9)
    assert tables["dicom"].provenance["cases"]["SYN0001"]["n_phases"] == 8


def test_truth_is_apart_from_the_manifest(tmp_path):
    synth.synthesize(tmp_path, synth.SynthOptions(patients=4, seed=1))
    manifest = pd.read_csv(tmp_path / "cohort.csv")
    truth = json.loads((tmp_path / "truth.json").read_text(encoding="utf-8"))
    assert not {"phenotype", "probability", "linear_predictor", "diameter_mm"} & set(manifest.columns)
    assert set(truth["patients_latent"]) == set(manifest["ID"])
    assert truth["model"]["coefficients"] == synth.TRUTH
    read_cohort(tmp_path / "cohort.csv", need_clinical=True, need_outcome=True)  # valid against the schema


def test_cli_synth_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("user's file", encoding="utf-8")
    result = run_cli("synth", tmp_path, "--patients", "2", "--quiet")
    assert result.returncode == 2 and "folder exists and is not empty; pass --force" in result.stderr
    forced = run_cli("synth", tmp_path, "--patients", "2", "--quiet", "--force")
    assert forced.returncode == 0 and (tmp_path / "mine.txt").read_text(encoding="utf-8") == "user's file"


def test_phase_loop_gives_the_plain_float32_arithmetic():
    """`_phases` computes in reused buffers, in place: its int16 volumes are those of the plain
    expression (signal + Gaussian noise in two channels, magnitude, rounded), draw for draw."""
    rng = np.random.default_rng(3)
    shape = (6, 20, 24)
    base = rng.choice(np.array([0, 15, 90, 140, 160], np.float32), size=shape)
    parenchyma_gain = (0.6 * base * (base == 160)).astype(np.float32)
    muscle_gain = (0.5 * base * (base == 140)).astype(np.float32)
    box = (slice(1, 5), slice(4, 15), slice(3, 20))
    mask_box = rng.random((4, 11, 17)) < 0.5
    texture = rng.standard_normal((4, 11, 17)).astype(np.float32)
    tumour_base, tumour_gain = 150.0 * (1.0 + 0.1 * texture), 1.4 * rng.random((4, 11, 17)) * (1.0 + 0.2 * texture)
    got = synth._phases(base, parenchyma_gain, muscle_gain, (tumour_base[mask_box], tumour_gain[mask_box]), box,
                        mask_box, np.random.default_rng(11))
    noise = np.random.default_rng(11)
    for t in range(synth.N_PHASES):
        signal = (base + parenchyma_gain * np.float32(synth.PARENCHYMA_CURVE[t])
                  + muscle_gain * np.float32(synth.MUSCLE_CURVE[t]))
        signal[box][mask_box] = (tumour_base * (1.0 + tumour_gain * synth.TUMOUR_CURVE[t]))[mask_box]
        real = signal + synth.standard_normals(noise, np.empty(shape, np.float32)) * synth.NOISE_SIGMA
        imag = synth.standard_normals(noise, np.empty(shape, np.float32)) * synth.NOISE_SIGMA
        assert np.array_equal(got[t], np.rint(np.sqrt(real * real + imag * imag)).astype(np.int16)), t


@pytest.mark.parametrize("box", [(slice(2, 6), slice(3, 9), slice(4, 10)),    # inside the image
                                 (slice(0, 4), slice(0, 7), slice(5, 12))])   # on its border
def test_second_reader_in_the_tumours_box_equals_the_whole_image_morphology(box):
    """The second reader's one-voxel growth and shrinkage, computed in the tumour's box grown by one
    voxel, are those of the dilation and erosion of the whole image."""
    rng = np.random.default_rng(4)
    shape = (8, 12, 12)
    mask = np.zeros(shape, np.uint8)
    mask[box] = rng.random(tuple(s.stop - s.start for s in box)) < 0.7
    change = rng.standard_normal(shape).astype(np.float32)
    grown = ndimage.binary_dilation(mask, iterations=1) & (change > 0.5)
    shrunk = mask.astype(bool) & ~ndimage.binary_erosion(mask, iterations=1) & (change < -0.5)
    expected = ((mask.astype(bool) | grown) & ~shrunk).astype(np.uint8)
    got = synth._second_reader(mask, change, synth._padded(box, shape))
    assert got.dtype == np.uint8 and np.array_equal(got, expected)
    assert grown.any() and shrunk.any()  # both edits happen in this example


def test_compiled_upsampling_gives_scipys_zoom_bit_for_bit():
    """The phantom's fields (synthkernels.upsample_linear) are scipy's zoom(order=1), the same float32
    bits: on the synth's own field shapes and on random ones, including shapes where the last
    coordinate lands past the last sample by rounding (scipy gives 0 there)."""
    from IMNRiskLib.app.synthkernels import axis_weights, upsample_linear
    from IMNRiskLib.stats.jit import available
    if not available():
        pytest.skip("numba not installed: scipy's zoom runs itself")
    rng = np.random.default_rng(3)
    grid = synth.DEFAULT_GRID["size"]
    shapes = [(grid[2], grid[1], grid[0]), (35, 48, 42), (58, 42, 19), (52, 59, 41)]
    shapes += [tuple(int(v) for v in rng.integers(3, 60, 3)) for _ in range(60)]
    past_the_edge = 0
    for number, shape in enumerate(shapes):
        scale = (6.0, 4.0, 1.5)[number % 3]
        coarse = [max(2, int(np.ceil(s / scale)) + 1) for s in shape]
        field = rng.standard_normal(coarse).astype(np.float32)
        expected = ndimage.zoom(field, [s / c for s, c in zip(shape, coarse)], order=1)[tuple(slice(0, s) for s in shape)]
        got = upsample_linear(field, shape)
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32)), shape
        past_the_edge += any(not axis_weights(c, o)[1][-1].any() for c, o in zip(coarse, expected.shape))
    assert past_the_edge >= 1  # the rounding case was among them


def test_compiled_phantom_loops_give_numpys_bytes(monkeypatch):
    """The compiled phase loops and fields (synthkernels) against their numpy and scipy twins
    (IMNRISK_COMPILED=0): one patient, every phase, mask and second reader, byte for byte."""
    from IMNRiskLib.stats.jit import available
    if not available():
        pytest.skip("numba not installed: the numpy loops run themselves")
    rendered = {}
    for compiled in ("1", "0"):
        monkeypatch.setenv("IMNRISK_COMPILED", compiled)
        out = synth.render_patient([4, 2, 7], "medial", 24.0, 0.8, synth.DEFAULT_GRID)
        rendered[compiled] = {k: out[k] for k in ("phases", "mask", "reader2")}
    for key, value in rendered["1"].items():
        assert value.dtype == rendered["0"][key].dtype and np.array_equal(value, rendered["0"][key]), key
    assert rendered["1"]["phases"].std() > 10  # noise and enhancement, not an empty volume


def test_the_image_noise_is_standard_normal():
    """The phantom's noise (`standard_normals`): symmetric levels of SD 1; a million draws that a
    Kolmogorov-Smirnov test cannot tell from N(0, 1) (ten seeds: the p-values fall below 0.05 about
    as often as chance says, 3 in 10 at most); the same seed, the same draws."""
    from scipy import stats
    levels = synth.normal_levels()
    assert levels.dtype == np.float32 and len(levels) == synth.NOISE_LEVELS and np.all(np.diff(levels) > 0)
    assert np.allclose(levels, -levels[::-1]) and abs(float(levels.astype(float).std()) - 1) < 1e-6
    draws = synth.standard_normals(np.random.default_rng(11), np.empty(10 ** 6, np.float32))
    assert abs(draws.mean()) < 0.005 and abs(draws.std() - 1) < 0.005
    p_values = [stats.kstest(synth.standard_normals(np.random.default_rng(seed), np.empty(10 ** 6, np.float32))
                             .astype(float), "norm").pvalue for seed in range(10)]
    assert sum(p < 0.05 for p in p_values) <= 3, p_values
    again = synth.standard_normals(np.random.default_rng(11), np.empty(10 ** 6, np.float32))
    assert np.array_equal(draws, again)
