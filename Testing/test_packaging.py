"""Packaging: the pyradiomics recipe (tools/pyradiomics_wheel.py) and the extension's metadata.

The recipe is exercised on a local file:// simple index (no network): it finds the sdist through
the index page without running setup.py, refuses a file whose SHA-256 differs, and its versioneer
patch leaves no call Python 3.12 removed. The extension metadata is checked with the very patterns
the Slicer ExtensionsIndex's check_description_files.py uses.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import tarfile
import warnings

import pytest

from conftest import ROOT, SDIST

RECIPE = ROOT / "tools" / "pyradiomics_wheel.py"


def load_recipe():
    """Import tools/pyradiomics_wheel.py as a module."""
    spec = importlib.util.spec_from_file_location("pyradiomics_wheel", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def local_index(folder, sdist):
    """A PEP 503 simple index in folder listing the given file as the 3.0.1 sdist."""
    files = folder / "files"
    files.mkdir(parents=True)
    shutil.copyfile(sdist, files / "pyradiomics-3.0.1.tar.gz")
    page = folder / "simple" / "pyradiomics"
    page.mkdir(parents=True)
    (page / "index.html").write_text(
        '<html><body><a href="../../files/pyradiomics-3.0.1.tar.gz#sha256=x">pyradiomics-3.0.1.tar.gz</a>'
        '<a href="../../files/pyradiomics-3.1.0.tar.gz">pyradiomics-3.1.0.tar.gz</a></body></html>',
        encoding="utf-8")
    return (folder / "simple").as_uri()


def use_only(monkeypatch, recipe, index_url):
    """Make the recipe see one index and no other pip configuration."""
    monkeypatch.setattr(recipe, "pip_config", lambda: {})
    monkeypatch.setenv("PIP_INDEX_URL", index_url)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)


def test_recipe_fetches_the_sdist_from_the_index_page_and_checks_its_hash(tmp_path, monkeypatch):
    recipe = load_recipe()
    use_only(monkeypatch, recipe, local_index(tmp_path / "index", SDIST))
    got = recipe.fetch_sdist(tmp_path / "cache", tmp_path / "user")
    assert got == tmp_path / "cache" / "sdist" / "pyradiomics-3.0.1.tar.gz"
    assert recipe.sha256(got) == recipe.sha256(SDIST) == recipe.SDIST_SHA256
    assert (tmp_path / "user" / "sdist" / "pyradiomics-3.0.1.tar.gz").exists()  # shared with other clones
    # a second clone takes it from the user cache, without the index
    monkeypatch.setenv("PIP_INDEX_URL", (tmp_path / "nowhere").as_uri())
    assert recipe.fetch_sdist(tmp_path / "clone2", tmp_path / "user").exists()


def test_recipe_refuses_an_sdist_with_another_hash(tmp_path, monkeypatch, capsys):
    recipe = load_recipe()
    fake = tmp_path / "fake.tar.gz"
    fake.write_bytes(b"not the pyradiomics sdist")
    use_only(monkeypatch, recipe, local_index(tmp_path / "index", fake))
    code = recipe.main(["--cache", str(tmp_path / "cache"), "--no-user-cache", "--sdist-only"])
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "SHA-256" in message and recipe.SDIST_SHA256 in message
    assert not list((tmp_path / "cache").rglob("*.tar.gz"))  # nothing half-written is left


def test_versioneer_patch_removes_the_calls_python_312_dropped(tmp_path):
    recipe = load_recipe()
    with tarfile.open(SDIST) as tar:
        for name in ("versioneer.py", "setup.py"):
            member = tar.getmember(f"pyradiomics-3.0.1/{name}")
            (tmp_path / name).write_bytes(tar.extractfile(member).read())
    before = (tmp_path / "versioneer.py").read_text(encoding="utf-8")
    assert "SafeConfigParser()" in before and "readfp(" in before
    recipe.patch_source(tmp_path)
    after = (tmp_path / "versioneer.py").read_text(encoding="utf-8")
    assert "SafeConfigParser" not in after and "readfp(" not in after
    assert "configparser.ConfigParser()" in after and "parser.read_file(f)" in after
    with warnings.catch_warnings():  # versioneer 0.17's own invalid escapes are not ours to fix
        warnings.simplefilter("ignore", SyntaxWarning)
        for name in ("versioneer.py", "setup.py"):
            compile((tmp_path / name).read_text(encoding="utf-8"), name, "exec")
    with pytest.raises(recipe.RecipeError):  # a patch that no longer applies is an error, not a no-op
        recipe.patch_source(tmp_path)


def test_wheel_cache_key_names_python_platform_and_numpy_major():
    import sys

    import numpy

    key = load_recipe().wheel_key(None)
    assert key.startswith(f"cp{sys.version_info[0]}{sys.version_info[1]}-")
    assert key.endswith(f"-numpy{numpy.__version__.split('.')[0]}")


def test_extension_metadata_passes_the_extensions_index_patterns():
    top = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    description = json.loads((ROOT / "ExtensionsIndex" / "IMNRisk.json").read_text(encoding="utf-8"))
    assert {"$schema", "category", "scm_url"} <= set(description)
    assert description["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert re.findall(r"project\s*\(\s*([^\s\)\n\r]+)", top, re.I)[0] == "IMNRisk"  # == the JSON file name
    repository = description["scm_url"].rstrip("/").split("/")[-1].removesuffix(".git")
    assert repository.startswith("Slicer") and not "IMNRisk".lower().startswith("slicer")
    assert description["category"] == "Quantification"
    assert "set(EXTENSION_CATEGORY" not in top  # the 5.10+ templates: the category is the index JSON's
    icons = re.findall(r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)', top, re.I | re.M)
    shots = re.findall(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)', top, re.I | re.M)
    assert len(icons) == 1 and icons[0].endswith("/IMNRisk.png")
    urls = shots[0].split()
    assert [u.split("/main/")[1] for u in urls] == ["docs/screenshots/scoring.png", "docs/screenshots/training.png"]
    assert all(u.startswith(f"https://raw.githubusercontent.com/") and f"/{repository}/" in u for u in icons + urls)
    assert (ROOT / "LICENSE").exists() and "EXTENSION_LICENSE_FILE" in top and "EXTENSION_README_FILE" in top
    assert "SlicerRadiomics" not in top and 'EXTENSION_DEPENDS "NA"' in top
    assert re.search(r'IMNRisk_MINIMUM_SLICER_VERSION "5\.10"', top)


def test_superbuild_runs_the_recipe_with_slicers_python():
    external = (ROOT / "SuperBuild" / "External_python-pyradiomics.cmake").read_text(encoding="utf-8")
    superbuild = (ROOT / "SuperBuild.cmake").read_text(encoding="utf-8")
    assert 'set(${proj}_DEPENDS "python-pyradiomics")' in superbuild
    assert "${PYTHON_EXECUTABLE} ${_recipe}" in external and "tools/pyradiomics_wheel.py" in external
    assert "--prefix ${python_packages_DIR_NATIVE_DIR}" in external
    recipe = load_recipe()
    options = recipe.parse_args(["--install", "--prefix", "p", "--build-requirements-dir", "b", "--no-user-cache"])
    assert options.install and options.prefix == "p" and options.no_user_cache
