"""Property-based tests (Hypothesis): whatever the input, the manifest parser, the clinical schema and
value parser, the image checks and model-file loading give a correct result or an InputError (what
the command line turns into exit 2 with a named message), never another exception (exit 1).

`make test` runs the fast profile (about a minute in all); HYPOTHESIS_PROFILE=nightly runs many more
examples: `HYPOTHESIS_PROFILE=nightly .venv/bin/python -m pytest Testing/test_fuzz.py`.
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from IMNRiskLib.inputs import imaging
from IMNRiskLib.inputs.cohort import read_cohort
from IMNRiskLib.core.errors import InputError
from IMNRiskLib.scoring.modelfile import ScoringModel, seal
from IMNRiskLib.scoring import Case, score_case
from IMNRiskLib.inputs.schema import load_schema, schema_from_dict

settings.register_profile("fast", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))

SCHEMA = load_schema()
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
CELL = st.one_of(TEXT, st.sampled_from(["", "NA", "nan", "inf", "-1", "0", "1", "2", "1.0", "01", " 1 ", "N1",
                                        "positive", "lateral", "1e308", "-0", "x,y", '"', "\n"]),
                 st.integers(-5, 200).map(str), st.floats(allow_nan=True).map(repr))
COLUMNS = ["ID", "Image", "Mask", "Phase", "Label", "IMN"] + SCHEMA.names


def _json_values():
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), TEXT,
                        st.floats(allow_nan=False, allow_infinity=False))
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(TEXT, inner, max_size=4)), max_leaves=10)


def assert_valid_value(var, value) -> None:
    """A parsed clinical value: missing, a finite number in the variable's range, or one of its levels."""
    if value is None:
        return
    if var.type == "continuous":
        assert math.isfinite(value) and var.min <= value <= var.max
    else:
        assert value in var.levels
    assert len(var.encode(value)) == len(var.terms())


# --------------------------------------------------------------------------- manifest

@given(columns=st.lists(st.sampled_from(COLUMNS + ["extra", "id", ""]), min_size=1, max_size=10),
       rows=st.lists(st.lists(CELL, min_size=10, max_size=10), max_size=6),
       need=st.sampled_from([(False, False), (True, True), (False, True)]))
def test_manifest_parser_gives_valid_cases_or_an_input_error(columns, rows, need):
    import csv
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cohort.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            for row in rows:
                writer.writerow(row[:len(columns)])
        try:
            cohort = read_cohort(path, SCHEMA, need_clinical=need[0], need_outcome=need[1], need_imaging=False)
        except InputError as exc:
            assert str(exc)
            return
    ids = cohort.ids
    assert len(ids) == len(set(ids)) and all(i and i == i.strip() for i in ids)
    for case in cohort.cases:
        assert case.phase is None or (isinstance(case.phase, int) and case.phase >= 0)
        assert case.outcome in (None, 0, 1)
        assert isinstance(case.label, str) or case.label >= 1
        for name, value in case.clinical.items():
            assert_valid_value(SCHEMA[name], value)


# --------------------------------------------------------------------------- schema and clinical values

@given(raw=st.one_of(CELL, st.none(), st.floats(), st.integers()))
def test_clinical_values_parse_to_a_level_a_number_in_range_or_a_value_error(raw):
    for var in SCHEMA.variables:
        try:
            value = var.parse(raw)
        except ValueError as exc:
            assert str(exc)
            continue
        assert_valid_value(var, value)


@given(data=st.one_of(_json_values(), st.fixed_dictionaries(
    {"outcome": _json_values(), "variables": st.lists(st.one_of(_json_values(), st.fixed_dictionaries(
        {"name": st.one_of(TEXT, st.integers()), "type": st.sampled_from(["binary", "categorical", "ordinal",
                                                                          "continuous", "other"]),
         "levels": _json_values(), "reference": _json_values(), "aliases": _json_values(),
         "min": _json_values(), "max": _json_values(), "label": _json_values()})), max_size=3)})),
       raw=CELL)
def test_any_schema_document_builds_a_usable_schema_or_an_input_error(data, raw):
    try:
        schema = schema_from_dict(data, source="fuzz.yaml")
    except InputError as exc:
        assert str(exc)
        return
    for var in schema.variables:
        try:
            value = var.parse(raw)
        except ValueError:
            continue
        assert len(var.encode(value)) == len(var.terms())
        var.title  # noqa: B018 - must not fail


# --------------------------------------------------------------------------- image checks

def _rotation(q):
    q = np.asarray(q, dtype=float)
    q = q / np.linalg.norm(q)
    w, x, y, z = q
    return [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]


DTYPES = ["uint8", "int16", "uint16", "int32", "float32", "float64"]


@given(shape=st.tuples(st.integers(1, 7), st.integers(1, 9), st.integers(1, 9)),
       image_dtype=st.sampled_from(DTYPES), mask_dtype=st.sampled_from(DTYPES),
       spacing=st.tuples(*[st.floats(1e-3, 1e3)] * 3),
       quaternion=st.tuples(*[st.floats(-1, 1)] * 4),
       shift=st.tuples(*[st.floats(-20, 20)] * 3),
       labels=st.lists(st.sampled_from([0, 1, 2, 3, 255, -1, 0.5, 1e6]), min_size=1, max_size=4),
       label=st.sampled_from([1, 2, 3, "tumour"]), phase=st.sampled_from([None, 0, 1, -1]),
       nan=st.booleans(), seed=st.integers(0, 2**16))
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_image_checks_accept_a_consistent_case_or_refuse_it_by_name(shape, image_dtype, mask_dtype, spacing,
                                                                    quaternion, shift, labels, label, phase, nan, seed):
    assume(np.linalg.norm(quaternion) > 0.1)
    rng = np.random.default_rng(seed)
    image_array = (rng.normal(100, 30, shape)).astype(image_dtype)
    if nan and image_array.dtype.kind == "f":
        image_array.flat[0] = np.nan
    mask_array = rng.choice(np.array(labels, dtype=float), size=shape)
    with np.errstate(invalid="ignore"):
        mask_array = mask_array.astype(mask_dtype)
    direction = _rotation(quaternion)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for name, array, offset in (("image.nrrd", image_array, (0, 0, 0)), ("mask.nrrd", mask_array, shift)):
            img = sitk.GetImageFromArray(array)
            img.SetSpacing(spacing)
            img.SetDirection(direction)
            img.SetOrigin(offset)
            sitk.WriteImage(img, str(Path(folder) / name))
            paths.append(Path(folder) / name)
        try:
            case = imaging.load_case(paths[0], paths[1], phase=phase, label=label, min_voxels=1)
        except InputError as exc:
            assert exc.file in map(str, paths), exc  # named
            return
    assert case.image.GetDimension() == 3 and imaging.same_grid(case.image, case.mask)
    assert np.isfinite(sitk.GetArrayViewFromImage(case.image)).all()
    assert set(np.unique(sitk.GetArrayViewFromImage(case.mask))) <= {0, 1} and imaging.binary_count(case.mask) >= 1
    assert not isinstance(label, str)  # a plain label map has no named segment


# --------------------------------------------------------------------------- model files

@pytest.fixture(scope="module")
def model_doc(quick_model):
    return json.loads(quick_model.read_text(encoding="utf-8"))


def _paths(doc, prefix=()):
    """Every (path) into a JSON document, for mutation."""
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc[:6]):
            yield from _paths(value, prefix + (i,))


@given(data=st.data())
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_a_mutated_model_scores_correctly_or_is_refused(model_doc, data):
    doc = copy.deepcopy(model_doc)
    paths = [p for p in _paths(doc) if p and p[0] not in ("sha256", "notice", "software", "created")]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            if data.draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = data.draw(_json_values())
        except (KeyError, IndexError, TypeError):
            continue
    doc.pop("sha256", None)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.json"
        path.write_text(json.dumps(seal(doc)), encoding="utf-8")
        try:
            model = ScoringModel.load(path)
        except InputError as exc:
            assert str(exc).startswith(str(path))
            return
    values = {f: 1.0 for f in model.features}
    schema = model.schema
    clinical = {f: schema[f].levels[0] for f in model.factors}
    result = score_case(model, Case.from_values(values), clinical).to_dict()
    assert 0.0 <= result["probability"] <= 1.0 and math.isfinite(result["radscore"])
    assert result["risk_group_computed"] in ("low", "intermediate", "high")
    assert result["risk_group"] in (result["risk_group_computed"], None)  # withheld when not reliable
    assert result["verdict"]["state"] in ("within", "extrapolation", "not_reliable")
    assert math.isfinite(result["points"]["total"])


# --------------------------------------------------------------------------- the command line itself

class ReachedTheWork(BaseException):
    """Raised by the stubbed long work (extraction, training, synthesis, scoring, network): the
    arguments and input files were accepted (a BaseException, so that main does not take it for a bug)."""


def _reached(*args, **kwargs):
    raise ReachedTheWork


def _argument_pool(folder: Path) -> list:
    """Files and folders an argument may name: empty, garbage, binary, YAML of the wrong shapes, a
    manifest with missing images, a fake model, a folder, a device and a path that does not exist."""
    folder.mkdir(parents=True, exist_ok=True)
    contents = {"empty.txt": b"", "garbage.csv": b"a,b\n1,\"2\n", "nul.csv": b"ID,Image\nA\0,b\n",
                "cohort.csv": b"ID,Image,Mask,IMN\nP1,i.nrrd,m.nrrd,1\nP2,i.nrrd,m.nrrd,0\n",
                "list.yaml": b"- 1\n- 2\n", "keys.yaml": b"1: 2\nhost: [1, 2]\n", "alias.yaml": b"a: &a [*a]\n",
                "model.json": b'{"format": "imnrisk-model", "format_version": "1"}',
                "features.csv": b"ID,original_firstorder_Mean\nP1,abc\nP2,1\n"}
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    (folder / "dir").mkdir(exist_ok=True)
    return [str(folder / name) for name in contents] + [str(folder / "dir"), str(folder / "dir") + "/",
                                                        str(folder / "missing.csv"), "/dev/null"]


def _value(action, pool):
    """A strategy for one argument's value: numbers of any size and sign, choices or not, paths from the pool."""
    if action.type is int:
        return st.one_of(st.integers(-3, 3), st.integers(-10**12, 10**12)).map(str)
    if action.type is float:
        return st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), TEXT)
    if action.choices:
        return st.one_of(st.sampled_from(sorted(action.choices)), TEXT)
    return st.one_of(st.sampled_from(pool), TEXT, st.sampled_from(["not a url", "tcp://", "x=1", "=", "1.2.3"]))


@st.composite
def _argv(draw, command, parser, pool):
    """A random command line for one command: each positional given (mostly), each option or not."""
    argv, options = [command], []
    for action in parser._actions:
        if action.dest == "help" or (action.option_strings and not draw(st.booleans())):
            continue
        if not action.option_strings:
            if draw(st.integers(0, 9)) > 0:
                argv.append(draw(_value(action, pool).filter(lambda v: not v.startswith("-"))))
            continue
        options.append(action.option_strings[0])
        if action.nargs != 0:
            count = draw(st.integers(0, 2)) if action.nargs in ("*", "+") else 1
            options += [draw(_value(action, pool)) for _ in range(count)]
    return argv + options + draw(st.lists(st.sampled_from(["--force", "--bogus", "-", "--"]), max_size=1))


def _commands():
    import argparse
    from IMNRiskLib.app import cli
    return next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices


@pytest.mark.parametrize("command", sorted(_commands()))
def test_random_command_lines_never_exit_1(command, tmp_path_factory, monkeypatch):
    """Random argv for each command (Hypothesis), the long work stubbed: exit 0 or 2, never 1."""
    import contextlib
    import io
    import sys
    import types
    from IMNRiskLib.app import cli, demo, pacs, predict, synth, training
    from IMNRiskLib.modelling import clinical
    from IMNRiskLib.radiomics import features
    from IMNRiskLib.scoring import core
    work = tmp_path_factory.mktemp(f"argv-{command}")
    pool = _argument_pool(work / "pool")
    monkeypatch.chdir(work)
    for module, name in ((features, "extract_cohort"), (training, "train"), (synth, "synthesize"),
                         (core, "case_from_files"), (predict, "validate_external"), (pacs, "score_study"),
                         (demo, "_demo"), (clinical, "table2")):
        monkeypatch.setattr(module, name, _reached)
    monkeypatch.setitem(sys.modules, "IMNRiskWeb.server", types.SimpleNamespace(serve=_reached,
                                                                               WebOptions=lambda **kw: kw))
    parser = _commands()[command]

    @settings(max_examples=settings.default.max_examples, deadline=None)
    @given(argv=_argv(command, parser, pool))
    def run(argv):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # argparse: a usage error is exit 2
                code = exc.code
            except ReachedTheWork:
                code = 0
        assert code in (0, 2, 130), (argv, code, err.getvalue())
        assert "internal error" not in err.getvalue(), (argv, err.getvalue())

    run()


@pytest.mark.parametrize("edit", ["formula gone", "bootstrap a flag", "cv a list", "apparent of a model a number"])
def test_a_model_whose_summary_parts_are_damaged_is_refused_at_load(model_doc, tmp_path, edit):
    """What the model's summary prints (the formula, the validated and apparent AUCs) is checked on
    loading: a resealed file with those parts missing or of the wrong type is refused with one line,
    not a traceback while scoring (cases hypothesis found above)."""
    doc = copy.deepcopy(model_doc)
    if edit == "formula gone":
        del doc["radiomics"]["formula"]
    elif edit == "bootstrap a flag":
        doc["training"]["bootstrap"] = True
    elif edit == "cv a list":
        doc["training"]["cv"] = [1, 2]
    else:
        doc["training"]["apparent"]["combined"] = 0.9
    doc.pop("sha256", None)
    path = tmp_path / "model.json"
    path.write_text(json.dumps(seal(doc)), encoding="utf-8")
    with pytest.raises(InputError) as refused:
        ScoringModel.load(path)
    assert str(refused.value).startswith(str(path)) and "not a usable IMNRisk model" in str(refused.value)
