#!/usr/bin/env python3
"""Build pyradiomics 3.0.1 as a wheel for the running Python, cache it, optionally install it.

The one recipe used by `make install` and by the Slicer extension's SuperBuild (run there with
Slicer's PythonSlicer), so it needs only the standard library and pip. PyPI has no pyradiomics 3.0.1
wheel for Python >= 3.10, and its sdist's bundled versioneer 0.17 calls two functions Python 3.12
removed, so even `pip download` fails there (it runs setup.py). This script instead:

1. fetches the sdist from pip's configured index (PIP_INDEX_URL / `pip config`, then the extra
   indexes) through the simple API, without running setup.py, and checks its pinned SHA-256;
2. keeps it at <cache>/sdist/pyradiomics-3.0.1.tar.gz (the tests unpack the real images from it);
3. unpacks it, patches versioneer.py (SafeConfigParser() -> ConfigParser(), readfp -> read_file),
   installs the build requirements (numpy versioneer setuptools wheel) and runs
   `pip wheel --no-build-isolation --no-deps`, so the C extensions compile against the numpy
   already installed (numpy 1.26 or 2.x);
4. caches the wheel under <cache>/wheels/<python tag>-<platform>-numpy<major>/ and in the user's
   cache dir (~/.cache/imnrisk/...), so a second venv or clone reuses it.

Usage:
    python tools/pyradiomics_wheel.py                 # print the path of a ready wheel
    python tools/pyradiomics_wheel.py --install       # ... and pip install it (with its deps)
    python tools/pyradiomics_wheel.py --install --prefix DIR   # into DIR (Slicer extension build)
    python tools/pyradiomics_wheel.py --sdist-only    # only fetch and check the sdist
"""

from __future__ import annotations

import argparse
import hashlib
import html.parser
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

PROJECT = "pyradiomics"
VERSION = "3.0.1"
SDIST_NAME = f"{PROJECT}-{VERSION}.tar.gz"
SDIST_SHA256 = "47c57f441d6cb7973fa3b2ea48d3948df78e3348e1c69e1e2ff19001601fc2f5"
BUILD_REQUIREMENTS = ["numpy", "versioneer", "setuptools", "wheel"]
DEFAULT_INDEX = "https://pypi.org/simple"
SETUP_TEST_IMPORT = "from setuptools.command.test import test as TestCommand"
# (file in the sdist, text, replacement): each text must occur in the file.
PATCHES = [
    ("versioneer.py", "configparser.SafeConfigParser()", "configparser.ConfigParser()"),
    ("versioneer.py", "parser.readfp(f)", "parser.read_file(f)"),
    # setuptools may drop its deprecated `test` command; setup.py only subclasses it for nose.
    ("setup.py", SETUP_TEST_IMPORT,
     "try:\n  " + SETUP_TEST_IMPORT + "\nexcept ImportError:\n  from setuptools import Command as TestCommand"),
]


class RecipeError(Exception):
    """A failure reported as one line (exit code 2)."""


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the wheel's path."""
    print(f"pyradiomics_wheel: {message}", file=sys.stderr, flush=True)


def pip(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    """Run the running Python's pip; raise RecipeError when it fails."""
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    result = subprocess.run(command, text=True, capture_output=capture)
    if result.returncode != 0:
        detail = (result.stderr or "").strip().splitlines()[-1:] if capture else []
        raise RecipeError(f"`pip {' '.join(args[:2])} ...` failed" + (f": {detail[0]}" if detail else ""))
    return result


def pip_config() -> dict[str, str]:
    """pip's effective configuration as `pip config list` shows it (files and PIP_* variables)."""
    try:
        output = pip("config", "list", capture=True).stdout
    except (RecipeError, OSError):
        return {}
    config = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            config[key.strip()] = value.strip().strip("'\"")
    return config


def config_value(config: dict[str, str], name: str) -> str:
    """One option's value: the PIP_* variable first, then the download/install/global sections."""
    env = os.environ.get("PIP_" + name.upper().replace("-", "_"))
    if env:
        return env
    for section in (":env:", "download", "install", "global"):
        if config.get(f"{section}.{name}"):
            return config[f"{section}.{name}"]
    return ""


def index_urls(config: dict[str, str]) -> list[str]:
    """The index pip would use, then its extra indexes."""
    urls = [config_value(config, "index-url") or DEFAULT_INDEX]
    urls += config_value(config, "extra-index-url").split()
    return [url.rstrip("/") for url in urls]


def ssl_context(config: dict[str, str]) -> ssl.SSLContext:
    """TLS context trusting pip's configured CA bundle, or the system's plus pip's certifi."""
    cafile = config_value(config, "cert")
    if cafile and os.path.exists(cafile):
        return ssl.create_default_context(cafile=cafile)
    context = ssl.create_default_context()
    try:  # Slicer's Python may have no system CA store; pip always vendors certifi.
        from pip._vendor import certifi
        context.load_verify_locations(certifi.where())
    except (ImportError, OSError):
        pass
    return context


class _Links(html.parser.HTMLParser):
    """Collects the href of every <a> in a PEP 503 simple page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "a":
            self.hrefs += [value for key, value in attrs if key == "href" and value]


def sdist_urls(index: str, context: ssl.SSLContext) -> list[str]:
    """URLs of the sdist listed by one index's simple API page (JSON or HTML)."""
    page = f"{index}/{PROJECT}/"
    if urllib.parse.urlsplit(page).scheme == "file":  # a local index folder, as pip reads it
        page += "index.html"
    request = urllib.request.Request(page, headers={
        "Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"})
    with urllib.request.urlopen(request, timeout=60, context=context) as response:
        body = response.read().decode("utf-8", "replace")
        content_type = response.headers.get("Content-Type", "")
        base = response.geturl() or page
    if "json" in content_type:
        hrefs = [entry["url"] for entry in json.loads(body).get("files", [])]
    else:
        parser = _Links()
        parser.feed(body)
        hrefs = parser.hrefs
    urls = [urllib.parse.urljoin(base, href) for href in hrefs]
    return [url for url in urls if urllib.parse.urlsplit(url).path.endswith("/" + SDIST_NAME)]


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file (as IMNRiskLib.radiomics.features.sha256_of_file: this script runs before
    IMNRiskLib and its dependencies are installed, so it cannot import it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def copy_atomic(source: Path, destination: Path) -> None:
    """Copy a file through a temporary name, so a reader never sees half of it."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    shutil.copyfile(source, temporary)
    os.replace(temporary, destination)


def download(url: str, destination: Path, context: ssl.SSLContext) -> None:
    """Download a URL to a file (temporary name, then rename), checking the pinned SHA-256."""
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.part")
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url.split("#")[0], timeout=300, context=context) as response, \
                open(temporary, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
        digest = sha256(temporary)
        if digest != SDIST_SHA256:
            raise RecipeError(f"{url}: SHA-256 {digest} is not the pinned {SDIST_SHA256}")
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)


def user_cache_dir() -> Path:
    """The per-user cache shared by every clone and venv ($IMNRISK_CACHE overrides it)."""
    if os.environ.get("IMNRISK_CACHE"):
        return Path(os.environ["IMNRISK_CACHE"])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "imnrisk"


def valid_file(path: Path) -> bool:
    """True when the sdist at path exists and has the pinned hash."""
    return path.is_file() and sha256(path) == SDIST_SHA256


def fetch_sdist(cache: Path, user_cache: Path | None) -> Path:
    """The checked sdist at <cache>/sdist/, taken from the user cache or pip's indexes."""
    target = cache / "sdist" / SDIST_NAME
    shared = user_cache / "sdist" / SDIST_NAME if user_cache else None
    if valid_file(target):
        return target
    if shared and valid_file(shared):
        log(f"sdist from {shared}")
        copy_atomic(shared, target)
        return target
    config = pip_config()
    context = ssl_context(config)
    errors = []
    for index in index_urls(config):
        try:
            urls = sdist_urls(index, context)
        except (OSError, ValueError) as error:
            errors.append(f"{index}: {error}")
            continue
        for url in urls:
            log(f"downloading {url.split('#')[0]}")
            try:
                download(url, target, context)
            except (OSError, RecipeError) as error:
                errors.append(str(error))
                continue
            if shared:
                copy_atomic(target, shared)
            return target
        errors.append(f"{index}: no {SDIST_NAME}")
    raise RecipeError(f"could not fetch {SDIST_NAME} ({'; '.join(errors)})")


def installed_numpy() -> str:
    """The running Python's numpy version, or "" when it has none."""
    query = [sys.executable, "-c", "import numpy; print(numpy.__version__)"]
    found = subprocess.run(query, capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else ""


def numpy_major(requirements_dir: Path | None) -> int:
    """Major version of the numpy the wheel is compiled against (installed first if missing)."""
    if not installed_numpy():
        install_build_requirements(requirements_dir)
    return int(installed_numpy().split(".")[0])


def wheel_key(requirements_dir: Path | None) -> str:
    """Cache key: interpreter tag, platform and numpy major (a numpy 1 build breaks on numpy 2)."""
    tag = f"{sys.implementation.name[:2]}{sys.version_info[0]}{sys.version_info[1]}"
    platform = re.sub(r"[^A-Za-z0-9]+", "_", sysconfig.get_platform())
    return f"{tag}-{platform}-numpy{numpy_major(requirements_dir)}"


def cached_wheel(directories: list[Path]) -> Path | None:
    """The first pyradiomics wheel found in the given cache directories."""
    for directory in directories:
        wheels = sorted(directory.glob(f"{PROJECT}-{VERSION}-*.whl"))
        if wheels:
            return wheels[0]
    return None


def install_build_requirements(requirements_dir: Path | None) -> None:
    """numpy versioneer setuptools wheel for the build; the running Python's numpy stays as is.

    With requirements_dir (the Slicer extension build) they go there, not into Slicer's Python,
    and only numpy, if missing, is installed into the running Python itself.
    """
    wanted = [name for name in BUILD_REQUIREMENTS if name != "numpy" or not installed_numpy()]
    log("installing build requirements: " + " ".join(wanted))
    if requirements_dir is None:
        pip("install", "-q", *wanted)
        return
    if "numpy" in wanted:
        pip("install", "-q", "numpy")
    pip("install", "-q", "--upgrade", "--target", str(requirements_dir),
        *[name for name in wanted if name != "numpy"])
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(requirements_dir)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])


def patch_source(source: Path) -> None:
    """Apply PATCHES to the unpacked sdist; every patched text must be found."""
    for name, old, new in PATCHES:
        path = source / name
        text = path.read_text(encoding="utf-8")
        if old not in text:
            raise RecipeError(f"{SDIST_NAME}: {name} has no `{old}` to patch")
        path.write_text(text.replace(old, new), encoding="utf-8")


def unpack(sdist: Path, directory: Path) -> Path:
    """Unpack the sdist into directory; return its top folder."""
    with tarfile.open(sdist) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(directory, filter="data")
        else:
            tar.extractall(directory)
    return directory / f"{PROJECT}-{VERSION}"


def build_wheel(sdist: Path, out: Path, requirements_dir: Path | None) -> Path:
    """Unpack, patch and `pip wheel` the sdist for the running Python; return the wheel's path."""
    install_build_requirements(requirements_dir)
    with tempfile.TemporaryDirectory(prefix="pyradiomics-build-") as temporary:
        source = unpack(sdist, Path(temporary))
        patch_source(source)
        built = Path(temporary) / "wheel"
        log(f"building the wheel with {sys.executable} (a few minutes)")
        pip("wheel", "-q", "--no-build-isolation", "--no-deps", "-w", str(built), str(source))
        wheels = list(built.glob(f"{PROJECT}-*.whl"))
        if len(wheels) != 1:
            raise RecipeError(f"pip wheel made {len(wheels)} wheels in {built}")
        wheel = out / wheels[0].name
        copy_atomic(wheels[0], wheel)
        return wheel


def ready_wheel(cache: Path, user_cache: Path | None, requirements_dir: Path | None) -> Path:
    """A wheel for the running Python: from a cache, or built now and stored in both caches."""
    key = wheel_key(requirements_dir)
    local = cache / "wheels" / key
    shared = user_cache / "wheels" / key if user_cache else None
    wheel = cached_wheel([local] + ([shared] if shared else []))
    if wheel is None:
        sdist = fetch_sdist(cache, user_cache)
        wheel = build_wheel(sdist, local, requirements_dir)
    else:
        log(f"reusing {wheel}")
    for directory in [local] + ([shared] if shared else []):
        if not (directory / wheel.name).exists():
            copy_atomic(wheel, directory / wheel.name)
    return local / wheel.name


def install(wheel: Path, prefix: str | None) -> None:
    """pip install the wheel with its dependencies (into prefix when given)."""
    args = ["install", "-q", "--no-warn-script-location", str(wheel)]
    if prefix:
        args += ["--prefix", prefix]
    log(f"installing {wheel.name}" + (f" into {prefix}" if prefix else ""))
    pip(*args)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(__file__).resolve().parents[1] / ".cache",
                        help="project cache holding sdist/ and wheels/ (default: the repository's .cache)")
    parser.add_argument("--no-user-cache", action="store_true", help="do not read or fill the per-user cache")
    parser.add_argument("--sdist-only", action="store_true", help="only fetch and check the sdist")
    parser.add_argument("--install", action="store_true", help="pip install the wheel into the running Python")
    parser.add_argument("--prefix", help="with --install: install under this prefix (pip --prefix)")
    parser.add_argument("--build-requirements-dir", type=Path,
                        help="install versioneer/setuptools/wheel here (pip --target), not into the running "
                             "Python (the Slicer extension build, so Slicer's own Python stays untouched)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Fetch, build or reuse, optionally install; print the sdist's or wheel's path."""
    args = parse_args(argv)
    user_cache = None if args.no_user_cache else user_cache_dir()
    try:
        if args.sdist_only:
            print(fetch_sdist(args.cache, user_cache))
            return 0
        # The tests read the real images from the sdist: keep it even when a wheel is cached.
        fetch_sdist(args.cache, user_cache)
        wheel = ready_wheel(args.cache, user_cache,
                            args.build_requirements_dir.resolve() if args.build_requirements_dir else None)  # on PYTHONPATH: absolute
        if args.install:
            install(wheel, args.prefix)
        print(wheel)
        return 0
    except (RecipeError, OSError, subprocess.CalledProcessError) as error:
        print(f"pyradiomics_wheel: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
