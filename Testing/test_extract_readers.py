"""A case's two readers (Mask, Mask2) extracted in one task: the same results as two single tasks,
failures naming the right column, the cache still per reader, progress still per result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from conftest import make_blob_mask, make_volume
from IMNRiskLib.inputs.cohort import read_cohort
from IMNRiskLib.radiomics import features


def two_reader_cohort(folder: Path, cases: int = 2, mask2=None) -> Path:
    """A small manifest of textured volumes, each with two readers' overlapping blobs; `mask2`
    (case index -> file content writer) replaces a second reader's mask."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(cases):
        image = make_volume(shape=(24, 40, 40), seed=k)
        sitk.WriteImage(image, str(folder / f"c{k}.nrrd"))
        sitk.WriteImage(make_blob_mask(image, radius=7), str(folder / f"c{k}_mask.nrrd"))
        sitk.WriteImage(make_blob_mask(image, center=(12, 21, 19), radius=7), str(folder / f"c{k}_mask2.nrrd"))
        if mask2 and k in mask2:
            mask2[k](folder / f"c{k}_mask2.nrrd", image)
        rows.append({"ID": f"C{k}", "Image": f"c{k}.nrrd", "Mask": f"c{k}_mask.nrrd", "Mask2": f"c{k}_mask2.nrrd"})
    pd.DataFrame(rows).to_csv(folder / "cohort.csv", index=False)
    return folder / "cohort.csv"


def all_tasks(manifest: Path) -> list:
    cohort, settings = read_cohort(manifest), features.load_settings()
    tasks = [features._task(c, settings) for c in cohort.cases]
    tasks += [features._task(c, settings, reader=2) for c in cohort.second_reader]
    return [dict(t, number=k) for k, t in enumerate(tasks)]


def same(a, b) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_both_readers_in_one_job_equal_two_single_tasks(tmp_path):
    tasks = all_tasks(two_reader_cohort(tmp_path))
    jobs = features._jobs(tasks)
    assert [[t["number"] for t in job] for job in jobs] == [[0, 2], [1, 3]]  # each case's readers together
    paired = [result for job in jobs for result in features.extract_tasks(job)]
    single = [features.extract_case(t) for t in tasks]
    assert sorted(r["number"] for r in paired) == [0, 1, 2, 3]
    for result in single:
        assert "error" not in result and len(result["features"]) == 851
        twin = next(r for r in paired if r["number"] == result["number"])
        assert same(twin, result)  # every value, diagnostic and the Dice, to the last bit
    dice = [r["dice_with_mask"] for r in single if "dice_with_mask" in r]
    assert len(dice) == 2 and all(0.5 < d < 1 for d in dice)


def test_a_second_readers_failure_names_mask2_and_spares_the_first(tmp_path):
    def empty(path, image):
        sitk.WriteImage(make_blob_mask(image, radius=7) * 0, str(path))

    tasks = all_tasks(two_reader_cohort(tmp_path, cases=1, mask2={0: empty}))
    one, two = features.extract_tasks(features._jobs(tasks)[0])
    assert "error" not in one and len(one["features"]) == 851
    assert two["field"] == "Mask2" and "empty" in two["error"] and two["file"].endswith("c0_mask2.nrrd")
    assert same([one, two], [features.extract_case(t) for t in tasks])


def test_an_unreadable_image_fails_both_readers_as_two_single_tasks_do(tmp_path):
    manifest = two_reader_cohort(tmp_path, cases=1)
    (tmp_path / "c0.nrrd").write_bytes(b"NRRD0004\nnot really\n")
    tasks = all_tasks(manifest)
    paired = features.extract_tasks(features._jobs(tasks)[0])
    assert all("cannot read image" in r["error"] and r["field"] != "Mask2" for r in paired)
    assert same(paired, [features.extract_case(t) for t in tasks])


def test_a_cached_first_reader_is_found_and_the_second_extracted_alone(tmp_path):
    manifest = two_reader_cohort(tmp_path / "cohort")
    cohort, settings, cache = read_cohort(manifest), features.load_settings(), tmp_path / "cache"
    first = features.extract_cohort(cohort, settings, cache, show_bar=False, second_reader=False)
    assert first.cached == 0 and first.reader2 is None
    tasks = all_tasks(manifest)
    reader2_only = [t for t in tasks if t.get("reader") == 2]
    assert features._jobs(reader2_only) == [[t] for t in reader2_only]  # no first reader to pair with
    seen = []
    both = features.extract_cohort(cohort, settings, cache, show_bar=False, progress=lambda n, total: seen.append((n, total)))
    assert both.cached == 2  # the two first readers, from the cache
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]  # progress counts every result, the cached ones as found
    fresh = features.extract_cohort(cohort, settings, tmp_path / "fresh", jobs=2, show_bar=False)
    assert fresh.cached == 0
    pd.testing.assert_frame_equal(both.features, fresh.features, check_exact=True)
    pd.testing.assert_frame_equal(both.reader2.features, fresh.reader2.features, check_exact=True)
    assert not np.array_equal(both.features.to_numpy(), both.reader2.features.to_numpy())  # two readers differ
