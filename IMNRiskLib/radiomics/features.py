"""Features: pyradiomics extraction for a cohort, one case (its one or two readers) per task, cached,
local pool or Dask.

Each case is loaded and checked by `imaging`, put in one anatomical orientation and
smoothed/normalised as the settings say, then handed to pyradiomics' RadiomicsFeatureExtractor
with the user's settings unchanged (its GLCM class swapped for `fastglcm.FastGLCM`: the same
values, faster). Results are cached per case and reader (keyed by image and mask content, settings
and software versions), written atomically, so a re-run costs nothing and an interrupted run resumes
where it stopped. A case's two readers (Mask, Mask2) are extracted in one task that reads its image once.
"""

from __future__ import annotations

import time
import collections
import hashlib
import importlib
import json
import math
from concurrent.futures import as_completed
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

if TYPE_CHECKING:  # pandas and the cohort (pandas) load only where used: scoring one patient needs neither
    import pandas as pd
    from IMNRiskLib.inputs.cohort import Case, Cohort

import numpy as np

from IMNRiskLib.radiomics import diagnostics, ibsi
from IMNRiskLib.radiomics.values import real_value
from IMNRiskLib.inputs import imaging
from IMNRiskLib.core.errors import InputError
from IMNRiskLib.core.files import write_json, write_text
# kept importable from here (an extraction's files, written and read back)
from IMNRiskLib.radiomics.featurefiles import (ExtractionRun, _travelling_failure, output_paths,  # noqa: F401
                                              read_features, scrub_paths, sha256_of_file, write_run)
from IMNRiskLib.radiomics.settings import ExtractionSettings, checked_extractor, one_itk_thread, software_versions
# kept importable from here (features.load_settings(...) reads as one step of an extraction)
from IMNRiskLib.radiomics.settings import (DEFAULT_PARAMS, load_settings, orientation_setting,  # noqa: F401
                                          quiet_pyradiomics, settings_from_dict)
from IMNRiskLib.core.workers import process_pool
from IMNRiskLib.core.progress import progress_bar, stop_if_asked


# A second reader's Mask2 must overlap the first reader's Mask by at least this Dice coefficient to be
# taken as the same tumour read twice (extract --mask2-min-dice): below it, it is refused, not extracted.
MIN_READER_DICE = 0.5
CACHE_FORMAT = 2
DIAGNOSTICS_KEPT = diagnostics.KEPT


# --------------------------------------------------------------------------- settings


# --------------------------------------------------------------------------- one case


def make_extractor(settings: ExtractionSettings, normalized_here: bool):
    """A pyradiomics extractor with the user's settings; label 1 (our binary mask), and normalize
    off when IMNRisk already normalised with pyradiomics' own function before cropping."""
    extractor = checked_extractor(settings.pyradiomics)  # the same extractor as with these two in `setting:`
    extractor.settings["label"] = 1
    if normalized_here:
        extractor.settings["normalize"] = False
    _compute_with_fast_classes(extractor)
    return extractor


def _compute_with_fast_classes(extractor) -> None:
    """The extractor computes GLCM features with `fastglcm.FastGLCM` (pyradiomics' formulas, a
    quarter less time per case), first order with `FastFirstOrder` and 3-D shape with
    `fastshape.FastShape` (the same bits), and bins each image type once for all its classes
    (`binning`); pyradiomics' own registry of classes stays as it is."""

    def computeFeatures(image, mask, imageTypeName, **kwargs):
        # pyradiomics' RadiomicsFeatureExtractor.computeFeatures (3.0.1), with the class looked up
        # in FAST_CLASSES first: pyradiomics offers no hook for that
        from radiomics import getFeatureClasses
        from IMNRiskLib.radiomics.fastglcm import FAST_CLASSES  # start-up time: loaded when this step runs
        from IMNRiskLib.radiomics.binning import shared_binning, sharing_binning  # start-up time: as above
        vector = collections.OrderedDict()
        classes = getFeatureClasses()
        with shared_binning():  # the image type is binned once for all its classes
            for name, names in extractor.enabledFeatures.items():
                if name.startswith("shape") or name not in classes:
                    continue  # shape is computed by execute()
                instance = sharing_binning(FAST_CLASSES.get(name, classes[name]))(image, mask, **kwargs)
                for feature in names or ():
                    instance.enableFeatureByName(feature)
                for feature, value in instance.execute().items():
                    vector[f"{imageTypeName}_{name}_{feature}"] = value
        return vector

    pyradiomics_shape = extractor.computeShape

    def computeShape(image, mask, boundingBox, **kwargs):
        # the 3-D shape class with `fastshape.FastShape` (cshape.c compares every pair of mesh
        # vertices for the diameters); shape2D and 2-D masks as pyradiomics computes them
        enabled = extractor.enabledFeatures
        if "shape" not in enabled or "shape2D" in enabled or mask.GetDimension() != 3:
            return pyradiomics_shape(image, mask, boundingBox, **kwargs)
        from IMNRiskLib.radiomics.fastshape import shape_features  # start-up time: loaded when this step runs
        return shape_features(image, mask, boundingBox, enabled["shape"], **kwargs)

    extractor.computeFeatures = computeFeatures
    extractor.computeShape = computeShape


def _normalize_kwargs(settings: ExtractionSettings) -> Optional[dict]:
    s = settings.setting
    if not s.get("normalize", False):
        return None
    return {"normalizeScale": s.get("normalizeScale", 1), "removeOutliers": s.get("removeOutliers")}


def prepared_case(loaded: imaging.LoadedCase, settings: ExtractionSettings):
    """(image, mask) as IMNRisk hands them to pyradiomics: oriented, cropped with the margin
    `cropping.crop_margin` gives (exact for the enabled filters), normalised, smoothed."""
    from IMNRiskLib.inputs.cropping import crop_margin  # start-up time: loaded when this step runs
    margin = crop_margin(settings.pyradiomics, settings.smoothing_sigma_mm)
    pad_mm, pad_voxels = margin if margin is not None else (None, None)
    return imaging.prepare(loaded, settings.smoothing_sigma_mm, _normalize_kwargs(settings), pad_voxels,
                           settings.orientation, pad_mm=pad_mm)


# What an extraction imports on its first case (each module loads when its step first runs, to keep
# every command's start-up short); scipy's LAPACK is GLCM MCC's (fastglcm._top_eigenpairs).
FIRST_CASE_IMPORTS = ("IMNRiskLib.inputs.cropping", "IMNRiskLib.inputs.dicomimage", "IMNRiskLib.inputs.dicommask",
                      "IMNRiskLib.radiomics.binning", "IMNRiskLib.radiomics.fastglcm", "IMNRiskLib.radiomics.fastshape",
                      "scipy.linalg.lapack", "threadpoolctl")


def import_first_case_modules() -> None:
    """Import now what the first extraction would (FIRST_CASE_IMPORTS; python-isal where installed):
    for a process that times extraction apart from imports, as bench/bench_extract.py does for every
    tool (pyradiomics' extractor and the peers' libraries are imported before its clock starts)."""
    for name in FIRST_CASE_IMPORTS:
        importlib.import_module(name)
    try:
        importlib.import_module("isal.igzip")  # optional (gzipnrrd): Slicer's Python may not have it
    except ImportError:
        pass


def compute_features(loaded: imaging.LoadedCase, settings: ExtractionSettings,
                     feature_names: Optional[Iterable[str]] = None) -> Tuple[Dict[str, float], Dict[str, Any]]:
    """Run pyradiomics on a loaded case; return (features, kept diagnostics).

    feature_names limits the work to those features (the image types and classes they need):
    scoring a patient computes only what the model uses.
    """
    image, mask = prepared_case(loaded, settings)
    normalize = _normalize_kwargs(settings)
    extractor = make_extractor(settings, normalized_here=normalize is not None)
    wanted = None
    if feature_names is not None:
        wanted = set(feature_names)
        restrict_extractor(extractor, wanted)
    own_diagnostics = diagnostics.computed_here(extractor.settings) and image.GetDimension() == 3
    if own_diagnostics:
        extractor.settings["additionalInfo"] = False  # the kept ones are computed below: the same values
    with one_itk_thread():
        cropped = diagnostics.pre_crop(image, mask, extractor.settings) \
            if own_diagnostics and extractor.settings.get("preCrop") else None
        if cropped is not None:
            extractor.settings["preCrop"] = False  # done: pyradiomics' crop, the same box
        result = extractor.execute(*(cropped or (image, mask)))
        if own_diagnostics:
            result = {**diagnostics.original_diagnostics(image, mask, extractor.settings), **result}
    if settings.ibsi_variants:
        result = ibsi.add_variants(result)  # each beside pyradiomics' own (excess kurtosis, N - 1 axes)
    features, kept = {}, {}
    for key, value in result.items():
        if wanted is not None and key not in wanted and not key.startswith("diagnostics_"):
            continue  # pyradiomics computes image types x classes; keep what was asked for
        if key.startswith("diagnostics_"):
            if key in DIAGNOSTICS_KEPT:
                kept[key] = value if isinstance(value, (str, int, float)) else str(value)
        else:
            features[key] = real_value(key, value)
    return features, kept


def restrict_extractor(extractor, feature_names: Iterable[str]) -> None:
    """Enable only the image types, classes and features that `feature_names` need."""
    image_types: Dict[str, dict] = {}
    classes: Dict[str, List[str]] = {}
    per_image: Dict[str, Dict[str, List[str]]] = {}  # e.g. "wavelet-HHL" -> {"glcm": ["Correlation"]}
    for name in feature_names:
        image_type, cls, feature = name.split("_", 2)
        feature = ibsi.pyradiomics_feature(feature)  # an IBSI variant needs its pyradiomics feature
        base = "Original" if image_type == "original" else image_type.split("-")[0].capitalize()
        if base == "Log":
            base = "LoG"
        image_types[base] = extractor.enabledImagetypes.get(base, {})
        for wanted in (classes.setdefault(cls, []), per_image.setdefault(image_type, {}).setdefault(cls, [])):
            if feature not in wanted:
                wanted.append(feature)
    extractor.enabledImagetypes = image_types
    extractor.enabledFeatures = classes
    _compute_per_image_only(extractor, per_image)


def _compute_per_image_only(extractor, per_image: Dict[str, Dict[str, List[str]]]) -> None:
    """Compute, on each derived image (a wavelet band, a LoG sigma...), only the classes and features
    wanted on that image: an image type yields all its bands, and pyradiomics computes every enabled
    class on each (for 2 wavelet features, 16 class computations instead of 2; same values)."""
    compute = extractor.computeFeatures

    def computeFeatures(image, mask, imageTypeName, **kwargs):
        saved = extractor.enabledFeatures
        wanted = per_image.get(imageTypeName, {})
        extractor.enabledFeatures = dict(wanted)  # shape is computed by execute(), from `saved`
        try:
            return compute(image, mask, imageTypeName, **kwargs) if wanted else {}
        finally:
            extractor.enabledFeatures = saved

    extractor.computeFeatures = computeFeatures


def extract_case(task: Dict[str, Any]) -> Dict[str, Any]:
    """Worker entry point (picklable): extract one case; failures are returned, not raised.
    The task's `number` (its place in the run), when given, comes back with the result."""
    return _numbered(task, _extract_one(task)[0])


def extract_tasks(tasks: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Worker entry point (picklable): one task, or the two readers' tasks of one case (`_jobs`),
    whose image is then read, checked and cast once, and whose Dice uses the first reader's mask
    as loaded; each result is what `extract_case` gives for its task."""
    if len(tasks) == 1:
        return [extract_case(tasks[0])]
    first, second = tasks
    try:
        image = imaging.load_image_phase(first["image"], first["phase"])
    except InputError as exc:
        return [_numbered(t, _input_failure(t, exc)) for t in tasks]
    except _EXTRACTION_ERRORS as exc:
        return [_numbered(t, _extraction_failure(t, exc)) for t in tasks]
    one, first_mask = _extract_one(first, image)
    return [_numbered(first, one), _numbered(second, _extract_one(second, image, first_mask)[0])]


def _numbered(task: Dict[str, Any], result: Dict[str, Any]) -> Dict[str, Any]:
    if "number" in task:
        result["number"] = task["number"]
    return result


# pyradiomics raises ValueError for masks it rejects; these end one case's extraction, not the run
_EXTRACTION_ERRORS = (ValueError, RuntimeError, IndexError, ZeroDivisionError, MemoryError)


def _extract_one(task: Dict[str, Any], image: Optional[imaging.LoadedCase] = None,
                 first_mask: Optional[Any] = None) -> Tuple[Dict[str, Any], Optional[Any]]:
    """Load, check and extract one case (image + one mask): (result, the mask as loaded, or None).
    `image`: the case's image already loaded (`imaging.load_image_phase`); `first_mask`: the first
    reader's mask as loaded, for a second reader's Dice."""
    settings = ExtractionSettings(**task["settings"])
    try:
        if image is None:
            image = imaging.load_image_phase(task["image"], task["phase"])
        loaded = imaging.with_mask(image, task["mask"], task["label"], settings.min_tumour_voxels, task["image"])
        features, kept = compute_features(loaded, settings)
        bad = [k for k, v in features.items() if not math.isfinite(v)]
        spacing = loaded.image.GetSpacing()
        voxels = imaging.binary_count(loaded.mask)
        result = {"id": task["id"], "features": features, "feature_order": list(features),
                  "warnings": loaded.warnings,
                  "phase": loaded.phase, "n_phases": loaded.n_phases, "phase_note": loaded.phase_note,
                  "voxels": voxels,
                  "volume_ml": voxels * float(np.prod(spacing)) / 1000.0, "diagnostics": kept,
                  "nonfinite": bad}
        if task.get("mask1"):
            result["dice_with_mask"] = reader_dice(task, loaded, settings, first_mask)
        return result, loaded.mask
    except InputError as exc:
        return _input_failure(task, exc), None
    except _EXTRACTION_ERRORS as exc:
        return _extraction_failure(task, exc), None


def _input_failure(task: Dict[str, Any], exc: InputError) -> Dict[str, Any]:
    """A task's failure on input the user can fix, naming the second reader's column for its mask."""
    field = exc.field
    if task.get("reader") == 2 and (field == "Mask" or (field is None and exc.file == task["mask"])):
        field = "Mask2"  # the second reader's mask: name its column
    return {"id": task["id"], "error": exc.message, "file": exc.file or str(task["image"]), "field": field}


def _extraction_failure(task: Dict[str, Any], exc: Exception) -> Dict[str, Any]:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return {"id": task["id"], "error": f"extraction failed: {message[:200]}",
            "file": str(task["image"]), "field": None}


def reader_dice(task: Dict[str, Any], loaded: imaging.LoadedCase, settings: ExtractionSettings,
                first: Optional[Any] = None) -> Optional[float]:
    """Dice overlap of a second reader's mask (loaded) with the first reader's (task's mask1, or
    `first` when already loaded), both on the image's grid; None when the first mask cannot be
    read (its own failure says why)."""
    import SimpleITK as sitk  # start-up time: SimpleITK loads only when used
    if first is None:
        try:
            first = imaging.load_mask(task["mask1"], task["label"], loaded.image, [], settings.min_tumour_voxels)
        except InputError:
            return None
    a = sitk.GetArrayViewFromImage(first) > 0
    b = sitk.GetArrayViewFromImage(loaded.mask) > 0
    return float(2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1))


# --------------------------------------------------------------------------- cache

# A file changed within this many seconds of being hashed may change again within the same
# timestamp tick unseen ("racily clean", as git calls it): its hash is not memoised.
RACY_SECONDS = 2.0


def _entry_problem(result: Any) -> str:
    """What is wrong with a cached result's structure ('' when it can be used)."""
    if not isinstance(result, dict):
        return "not a result"
    if "error" in result:
        return "a failure (failures are not cached)"
    feats = result.get("features")
    if not isinstance(feats, dict) or not feats or not isinstance(result.get("feature_order"), list) \
            or sorted(result["feature_order"]) != sorted(feats):
        return "no feature table"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in feats.values()):
        return "non-numeric feature values"
    for key in ("phase", "n_phases", "voxels", "volume_ml", "warnings", "diagnostics"):
        if key not in result:
            return f"no {key}"
    return ""


class FeatureCache:
    """Per-case results on disk, one JSON file per key, each written atomically with a checksum.

    Content hashes of input files are memoised by device and inode (no path is stored: a folder
    name can carry a patient's name) with size, mtime and ctime: ctime changes on every write and
    cannot be set back by a user, so an edited file is always re-hashed. An entry whose checksum or
    structure is wrong is a miss (recomputed) with a note.
    """

    def __init__(self, folder: Union[str, Path]):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._memo_path = self.folder / "file-hashes.json"
        try:
            memo = json.loads(self._memo_path.read_text(encoding="utf-8"))
            self._memo = memo if isinstance(memo, dict) and memo.get("format") == CACHE_FORMAT else {}
        except (OSError, ValueError):
            self._memo = {}
        self._memo.setdefault("format", CACHE_FORMAT)
        self._memo.setdefault("files", {})
        self._memo_dirty = False
        self._this_run: Dict[str, list] = {}  # hashes of files written just now (not memoised on disk)
        self.notes: List[str] = []

    def file_hash(self, path: Path) -> str:
        """SHA-256 of a file's bytes, or of a folder's files (names and contents)."""
        path = Path(path)
        if path.is_dir():
            digest = hashlib.sha256()
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                digest.update(str(child.relative_to(path)).encode() + b"\0" + self.file_hash(child).encode())
            return digest.hexdigest()
        if not path.is_file():  # missing, or a device/pipe (reading /dev/zero never ends)
            return "missing"
        st = path.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        key = f"{st.st_dev}:{st.st_ino}"
        files = self._memo["files"]
        hit = files.get(key) or self._this_run.get(key)
        if isinstance(hit, list) and len(hit) == 2 and hit[0] == stamp:
            return hit[1]
        value = sha256_of_file(path)
        if time.time() - max(st.st_mtime, st.st_ctime) > RACY_SECONDS:
            files[key] = [stamp, value]
            self._memo_dirty = True
        else:  # within this run only (a case's second reader shares its image): the run reads it once more
            self._this_run[key] = [stamp, value]
        return value

    def key(self, task: Dict[str, Any], versions: Dict[str, str]) -> Tuple[str, Dict[str, str]]:
        """Cache key of a task and the input hashes it was made from."""
        hashes = {"image_sha256": self.file_hash(Path(task["image"])),
                  "mask_sha256": self.file_hash(Path(task["mask"]))}
        if task.get("mask1"):  # a second reader's result holds its overlap with the first reader's mask
            hashes["mask1_sha256"] = self.file_hash(Path(task["mask1"]))
        material = {"format": CACHE_FORMAT, "hashes": hashes, "phase": task["phase"],
                    "label": task["label"], "settings": task["settings"], "versions": versions}
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest(), hashes

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    @staticmethod
    def _checksum(key: str, result: Dict[str, Any]) -> str:
        body = json.dumps(result, sort_keys=True, separators=(",", ":"), allow_nan=True)
        return hashlib.sha256((key + "\0" + body).encode()).hexdigest()

    def get(self, key: str, case_id: str = "") -> Optional[Dict[str, Any]]:
        """The cached result of a key, or None: missing, or damaged/edited (a note says which)."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            result = entry["result"]
            if entry.get("sha256") != self._checksum(key, result):
                problem = "its checksum does not match (edited or damaged)"
            else:
                problem = _entry_problem(result)
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            problem = "unreadable"
        if problem:
            self.notes.append(f"ID {case_id}: cache entry {key[:12]} ignored ({problem}); recomputed")
            return None
        return result

    def put(self, key: str, result: Dict[str, Any]) -> None:
        clean = json.loads(json.dumps(result, allow_nan=True))  # what get() will read back
        entry = {"format": CACHE_FORMAT, "sha256": self._checksum(key, clean), "result": clean}
        write_text(self._path(key), json.dumps(entry, sort_keys=True, allow_nan=True) + "\n")

    def save_memo(self) -> None:
        if self._memo_dirty:
            write_json(self._memo_path, self._memo)
            self._memo_dirty = False


# --------------------------------------------------------------------------- cohort

def _task(case: Case, settings: ExtractionSettings, reader: int = 1) -> Dict[str, Any]:
    """One extraction: the case's image with its first (Mask) or second reader's (Mask2) mask."""
    task = {"id": case.id, "image": str(case.image), "mask": str(case.mask if reader == 1 else case.mask2),
            "phase": case.phase, "label": case.label,
            "settings": {"pyradiomics": settings.pyradiomics, "smoothing_sigma_mm": settings.smoothing_sigma_mm,
                         "min_tumour_voxels": settings.min_tumour_voxels, "source": ""}}
    if settings.ibsi_variants:  # only when on: existing caches keep their keys
        task["settings"]["ibsi_variants"] = True
    if settings.orientation:  # likewise
        task["settings"]["orientation"] = settings.orientation
    if reader == 2:  # not part of the cache key: the key is the content (same masks, same result)
        task["reader"] = 2
        task["mask1"] = str(case.mask)  # for the overlap check (Dice) of the two readers
    return task


def _uncached_jobs(tasks: List[Dict[str, Any]], cache: FeatureCache, versions: Dict[str, str],
                   keys: Dict[int, str], hashes: Dict[int, Dict[str, str]],
                   cached: Callable[[int, Dict[str, Any]], None]) -> Iterator[List[Dict[str, Any]]]:
    """Case by case: hash the case's files into its tasks' cache keys (`keys`, `hashes`, by task
    number), hand each cached result to `cached`, and yield the case's other tasks as jobs (`_jobs`)."""
    for numbers in _numbers_by_case(tasks):
        todo = []
        for number in numbers:
            keys[number], hashes[number] = cache.key(tasks[number], versions)
            hit = cache.get(keys[number], tasks[number]["id"])
            if hit is None:
                todo.append(dict(tasks[number], number=number))
            else:
                cached(number, hit)
        yield from _jobs(todo)


def _numbers_by_case(tasks: List[Dict[str, Any]]) -> List[List[int]]:
    """The task numbers of each case (its first and second reader), cases in their first task's order."""
    by_case: Dict[str, List[int]] = {}
    for number, task in enumerate(tasks):
        by_case.setdefault(task["id"], []).append(number)
    return list(by_case.values())


def _jobs(tasks: List[Dict[str, Any]]) -> List[List[Dict[str, Any]]]:
    """The tasks as worker jobs (`extract_tasks`), in order: a case's two readers together when both
    are to be extracted from the same image with the same settings (the image is then read once),
    every other task alone."""
    jobs: List[List[Dict[str, Any]]] = []
    waiting: Dict[tuple, List[Dict[str, Any]]] = {}  # a first reader's job, by what its second must share
    for task in tasks:
        job = waiting.pop(_pair_key(task, task.get("mask1")), None) if task.get("reader") == 2 else None
        if job is not None:
            job.append(task)
            continue
        jobs.append([task])
        if task.get("reader", 1) == 1:
            waiting[_pair_key(task, task["mask"])] = jobs[-1]
    return jobs


def _pair_key(task: Dict[str, Any], first_mask: Optional[str]) -> tuple:
    return (task["id"], task["image"], task["phase"], repr(task["label"]), first_mask,
            json.dumps(task["settings"], sort_keys=True))


def _run_local(tasks: Iterable[Any], jobs: int, worker: Callable[[Any], Any] = extract_case):
    """Yield results as tasks finish (`worker`'s, one per task), in a spawned process pool (or
    in-process for one job). Tasks are submitted as `tasks` yields them: the first run while the
    later ones are made; the pool's processes start with the first."""
    if jobs <= 1:
        for task in tasks:
            yield worker(task)
        return
    pool = process_pool(jobs)  # workers die with us (kill -9 included); started by the first task
    try:
        futures = [pool.submit(worker, t) for t in tasks]
        for future in as_completed(futures):
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_dask(tasks: Iterable[Any], address: str, worker: Callable[[Any], Any] = extract_case):
    """Yield results from a Dask distributed scheduler (the images must be readable by the workers)."""
    try:
        from dask.distributed import Client, as_completed as dask_completed  # optional dependency (extra dask)
    except ImportError:
        raise InputError("--dask needs dask[distributed]: pip install 'dask[distributed]'") from None
    try:
        client = Client(address, timeout=10)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"cannot reach the Dask scheduler at {address} ({exc})", field="--dask") from None
    try:
        futures = [client.submit(worker, t, pure=False, key=f"imnrisk-{_task_id(t)}-{i}")
                   for i, t in enumerate(tasks)]
        for future in dask_completed(futures):
            yield future.result()
    finally:
        client.close()


def _task_id(task: Union[Dict[str, Any], List[Dict[str, Any]]]) -> str:
    """The case ID of a task or of a job (a list of one case's tasks)."""
    return task[0]["id"] if isinstance(task, list) else task["id"]


def extract_cohort(cohort: Cohort, settings: ExtractionSettings, cache_dir: Union[str, Path],
                   jobs: int = 1, dask_address: Optional[str] = None,
                   progress: Optional[Callable[[int, int], None]] = None, show_bar: bool = True,
                   second_reader: bool = True, min_dice: float = MIN_READER_DICE) -> ExtractionRun:
    """Extract every case of the cohort (cached ones from the cache) and collect the results;
    with `second_reader`, the cases' Mask2 too (into `run.reader2`), each refused when it overlaps
    the case's Mask by a Dice below `min_dice` (another tumour, or another patient's contour)."""

    versions = software_versions()
    cache = FeatureCache(cache_dir)
    tasks = [_task(c, settings) for c in cohort.cases]
    if second_reader:
        tasks += [_task(c, settings, reader=2) for c in cohort.second_reader]
    keys, hashes, results = {}, {}, {}
    bar = progress_bar(len(tasks), "extract", "case", enabled=show_bar)

    def done(number: int, result: Dict[str, Any]) -> None:
        results[number] = result
        bar.update(1)
        if progress:
            progress(len(results), len(tasks))

    cached = []
    try:
        # the jobs go to the workers as each case's files are hashed (~1 s per GB, in this process):
        # the pool starts and extracts meanwhile
        work = _uncached_jobs(tasks, cache, versions, keys, hashes, lambda k, hit: (cached.append(k), done(k, hit)))
        stream = (_run_dask(work, dask_address, extract_tasks) if dask_address
                  else _run_local(work, min(jobs, len({t['id'] for t in tasks})), extract_tasks))
        for batch in stream:
            stop_if_asked()
            for result in batch:
                number = result.pop("number")
                if "error" not in result:
                    cache.put(keys[number], result)
                done(number, result)
    finally:
        bar.close()
    cache.save_memo()
    by_reader = [{tasks[k]["id"]: (results[k], hashes[k]) for k in results if tasks[k].get("reader", 1) == r}
                 for r in (1, 2)]
    first = {i: r for i, (r, _) in by_reader[0].items()}
    run = _collect(cohort, settings, first, {i: h for i, (_, h) in by_reader[0].items()}, versions,
                   cached=len(cached))
    run.warnings = cache.notes + run.warnings
    if second_reader and cohort.second_reader:
        run.reader2 = _collect_reader2(cohort, settings, by_reader[1], first, versions, min_dice)
        run.failures += run.reader2.failures
        run.warnings += run.reader2.warnings
    return run


def _collect_reader2(cohort: Cohort, settings: ExtractionSettings, results: Dict[str, Tuple[Dict, Dict]],
                     first: Dict[str, Dict[str, Any]], versions: Dict[str, str],
                     min_dice: float = MIN_READER_DICE) -> ExtractionRun:
    """The second reader's table; a failure that is not about Mask2 is the first reader's too
    (e.g. an unreadable image) and is reported once, by the first reader. A Mask2 that overlaps
    its Mask by a Dice below `min_dice` is a failure of Mask2."""
    by_id = {c.id: c for c in cohort.second_reader}
    results = {i: (_overlap_failure(by_id[i], r, min_dice), h) for i, (r, h) in results.items()}
    cases = [replace(c, mask=c.mask2) for c in cohort.second_reader]
    kept = {i: (r, h) for i, (r, h) in results.items()
            if "error" not in r or r.get("field") == "Mask2" or "error" not in first[i]}
    sub = replace(cohort, cases=[c for c in cases if c.id in kept])
    run = _collect(sub, settings, {i: r for i, (r, _) in kept.items()}, {i: h for i, (_, h) in kept.items()},
                   versions, cached=0, mask_role="Mask2")
    run.provenance.update({"reader": 2, "mask_column": "Mask2"})
    run.warnings = [f"{w} (Mask2)" for w in run.warnings]
    return run


def _overlap_failure(case: Case, result: Dict[str, Any], min_dice: float) -> Dict[str, Any]:
    """The second reader's result, or a failure naming the ID and both masks when it overlaps the
    first reader's too little to be the same tumour."""
    dice = result.get("dice_with_mask")
    if "error" in result or dice is None or dice >= min_dice:
        return result
    why = (f"overlaps Mask by Dice {dice:.2f}, below {min_dice:g} (extract --mask2-min-dice): not the same "
           "tumour read twice (another lesion, or another patient's contour?)")
    return {"id": case.id, "error": f"{why}; Mask {case.mask}, Mask2 {case.mask2}", "public_error": why,
            "file": str(case.mask2), "field": "Mask2"}


def _collect(cohort: Cohort, settings: ExtractionSettings, results: Dict[str, Dict[str, Any]],
             hashes: Dict[str, Dict[str, str]], versions: Dict[str, str], cached: int,
             mask_role: str = "Mask") -> ExtractionRun:
    """Feature table in manifest order (columns in pyradiomics' order), failures and provenance."""
    import pandas as pd  # start-up time: pandas loads only when used
    failures, rows, cases, warnings = [], {}, {}, []
    columns: Optional[List[str]] = None
    for case in cohort.cases:
        result = results[case.id]
        if "error" in result:
            failures.append({"ID": case.id, "file": result.get("file") or "", "field": result.get("field") or "",
                             "reason": result["error"], **_travelling_failure(case, result, mask_role)})
            continue
        if columns is None:  # pyradiomics' order (kept as a list: the cache's JSON sorts keys)
            columns = list(result["feature_order"])
        rows[case.id] = result["features"]
        warnings += [f"ID {case.id}: {w}" for w in result["warnings"]]
        if result.get("nonfinite"):
            warnings.append(f"ID {case.id}: {len(result['nonfinite'])} feature(s) not finite, "
                            f"e.g. {result['nonfinite'][0]}")
        cases[case.id] = {**hashes[case.id], "phase": result["phase"], "n_phases": result["n_phases"],
                          "phases": result.get("phase_note", ""),
                          "voxels": result["voxels"], "volume_ml": result["volume_ml"],
                          "warnings": result["warnings"], "diagnostics": result["diagnostics"]}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=columns or [])
    frame.index.name = "ID"
    provenance = {"format": "imnrisk-features-provenance", "format_version": 1,
                  "settings": settings.to_dict(), "settings_sha256": settings.digest(),
                  "versions": versions, "n_cases": len(cohort.cases), "n_extracted": len(rows),
                  "n_features": len(columns or []), "cases": cases,
                  # no file paths here: a folder name may carry a patient's name
                  "failures": [{"ID": f["ID"], "field": f["field"], "reason": f["public_reason"]} for f in failures]}
    return ExtractionRun(features=frame, failures=failures, provenance=provenance, cached=cached,
                         warnings=warnings)
