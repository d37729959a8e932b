"""Layout (issue 28): IMNRiskLib by stage, imports only downward and no import circle anywhere.

import-linter (pyproject's [tool.importlinter]) checks the stages' order (a layers contract) and
that no two modules of a package, nor two packages, import each other round a circle (acyclic
siblings); it counts function-local imports too, so none can hide a circle. The stage packages
the README's Layout section names are the ones pyproject installs and the Slicer CMake collects.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from conftest import ROOT

LIB = ROOT / "IMNRiskLib"


def stage_packages() -> list[str]:
    """IMNRiskLib's subpackages on disk, as dotted names."""
    return sorted(f"IMNRiskLib.{d.name}" for d in LIB.iterdir() if (d / "__init__.py").exists())


def test_import_linter_contracts_are_kept():
    """`lint-imports` on this checkout: every contract kept (stages downward, no circles)."""
    script = Path(sys.executable).with_name("lint-imports")
    assert script.exists(), "import-linter is not installed (pip install -e '.[test]')"
    # UTF-8 whatever the locale: lint-imports draws its banner with box characters (CI runs under C/POSIX)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUTF8": "1", "PYTHONIOENCODING": "utf-8"}
    result = subprocess.run([str(script), "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True,
                            encoding="utf-8")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert re.search(r"Contracts: (\d+) kept, 0 broken", result.stdout)


def test_layers_contract_names_every_stage_package():
    """A new subpackage has its place in the layers (else the contract would not check it)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    layers = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")["layers"]
    assert sorted(f"IMNRiskLib.{name}" for name in layers) == stage_packages()


def test_pyproject_installs_every_stage_package():
    """The wheel holds every subpackage (pyproject lists them; a missing one imports nowhere but here)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = config["tool"]["setuptools"]["packages"]
    assert sorted(p for p in listed if p.startswith("IMNRiskLib.")) == stage_packages()


def test_no_flat_module_besides_the_entry_points():
    """Every module lives in its stage package; the package top keeps only __init__ and __main__."""
    assert sorted(p.name for p in LIB.glob("*.py")) == ["__init__.py", "__main__.py"]


def test_slicer_cmake_collects_the_subpackages():
    """The extension's IMNRiskLib/CMakeLists.txt globs recursively, so every stage's modules install."""
    text = (LIB / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(r"file\(GLOB_RECURSE MODULE_PYTHON_SCRIPTS[^)]*\*\.py\)", text)


def test_readme_layout_names_every_stage_package():
    """README's Layout section has one line per stage package."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1]
    for package in stage_packages():
        assert re.search(rf"^\s+{package.split('.')[1]}/ ", layout, re.M), package


MODEL_KEYS = ("format", "format_version", "created", "extraction", "software", "radiomics", "clinical", "combined",
              "nomogram", "risk_groups", "training", "domain", "acquisition", "uncertainty", "sha256", "signature",
              "recalibration")
MODEL_FILE = LIB / "scoring" / "modelfile.py"


def product_files() -> list[Path]:
    """The product's Python files: the library, the Slicer module and the browser face."""
    return sorted(p for d in ("IMNRiskLib", "IMNRisk", "IMNRiskWeb") for p in (ROOT / d).rglob("*.py"))


def test_the_model_file_is_read_only_through_scoring_modelfile():
    """No product module reads a model file's keys itself (`doc["radiomics"]`, `model.doc.get(...)`):
    they ask ScoringModel's accessors, so the file's layout has one reader."""
    raw = re.compile(r"""\b(?:doc|model)\[['"](?:%s)['"]\]|\.doc(?:\[|\.get\()""" % "|".join(MODEL_KEYS))
    found = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in product_files() if p != MODEL_FILE
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if raw.search(line)]
    assert found == []


def test_every_function_local_import_says_why():
    """An import inside a function of IMNRiskLib is there for start-up time or an optional dependency,
    and says so in a comment on its line or the line above (issue 28)."""
    import ast
    silent = []
    for path in sorted(LIB.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for fn in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)) and not (
                            "#" in lines[node.lineno - 1] or "#" in lines[node.end_lineno - 1]
                            or lines[node.lineno - 2].strip().startswith("#")):
                        silent.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert sorted(set(silent)) == []
