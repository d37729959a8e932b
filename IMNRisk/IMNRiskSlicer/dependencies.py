"""What IMNRisk needs in Slicer's Python, and how it installs the rest without moving Slicer, without Qt.

Scoring needs only what Slicer 5.10+ ships (numpy, SimpleITK, VTK, MRML) and what the extension
ships (pyradiomics with PyWavelets, pykwalify, ruamel.yaml, six, built by the SuperBuild): nothing is
installed to score. Training, the features-CSV path and the nomogram figure need the extras listed in
`Resources/requirements.txt` (scikit-learn, statsmodels, pandas, matplotlib, ...). They are installed
on first use, after one prompt (the widget's), with a pip constraints file that pins every package
Slicer and this extension ship at the version the running Python has, so pip can add packages but
cannot move numpy, scipy, SimpleITK, pydicom, ... (it fails instead, and says which pin). Installing
goes through `slicer.packaging.pip_ensure` (Slicer >= 5.11, imported explicitly by the widget) or
`slicer.util.pip_install` (5.10). A restart is asked for when a module already loaded changed version.

Everything here is plain Python (stdlib only), so it also runs in a scratch venv under a real pip.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

REQUIREMENTS_FILE = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"
MINIMUM_SLICER = (5, 10)
MINIMUM_PYTHON = (3, 10)      # pyproject's requires-python
PYRADIOMICS_FIX = ("fix: reinstall the IMNRisk extension from the Extensions Manager (it brings its own "
                   "pyradiomics) and restart Slicer; meanwhile a patient can be scored from a features CSV")
_CLAUSE = re.compile(r"(>=|<=|==|!=|>|<)\s*([0-9][0-9A-Za-z.]*)")

# Distributions Slicer 5.10 and 5.12 install into their Python (SuperBuild/External_python*.cmake of both
# branches: numpy, scipy, SimpleITK (5.12), the DICOM, requests, PythonQt and extension-manager
# requirement sets, pip/setuptools/wheel), plus VTK, which Slicer builds itself. Their versions are read
# from the running Python, never from this list.
SLICER_SHIPPED = (
    "numpy", "scipy", "SimpleITK", "vtk",
    "pydicom", "highdicom", "pyjpegls", "pillow", "dicomweb-client", "dcmqi", "retrying", "six", "typing_extensions",
    "requests", "urllib3", "idna", "certifi", "charset-normalizer",
    "packaging", "pyparsing", "chardet", "couchdb", "GitPython", "gitdb", "smmap",
    "cryptography", "PyJWT", "wrapt", "Deprecated", "pycparser", "cffi", "PyNaCl", "python-dateutil", "PyGithub",
    "pip", "setuptools", "wheel",
)
# What the extension's SuperBuild installs beside the module (tools/pyradiomics_wheel.py --install).
EXTENSION_SHIPPED = ("pyradiomics", "PyWavelets", "pykwalify", "ruamel.yaml", "ruamel.yaml.clib", "docopt")
# Modules Slicer ships without pip metadata: pip believes them absent and would install a second copy
# from the index if a dependency asked; a constraint no version meets forbids that.
NO_METADATA_GUARD = {"vtk": "vtk", "SimpleITK": "SimpleITK"}


# --------------------------------------------------------------------------- requirements and versions
def read_requirements(path: Path = REQUIREMENTS_FILE) -> List[str]:
    """The requirement lines of requirements.txt (comments, blanks and pip options dropped)."""
    lines = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("-")]


def version_tuple(version: str) -> Tuple[int, ...]:
    """(5, 10, 1) from '5.10.1' or '5.10.1rc2+abc' (the numeric release part)."""
    numbers = []
    for part in re.split(r"[.+-]", str(version)):
        match = re.match(r"\d+", part)
        if not match:
            break
        numbers.append(int(match.group()))
    return tuple(numbers)


def satisfies(version: str, requirement: str) -> bool:
    """Whether an installed version meets every clause of a requirement ('pandas>=1.5,<3')."""
    have = version_tuple(version)
    for op, wanted in _CLAUSE.findall(requirement):
        want = version_tuple(wanted)
        width = max(len(have), len(want))
        a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        if not {">=": a >= b, "<=": a <= b, "==": a == b, "!=": a != b, ">": a > b, "<": a < b}[op]:
            return False
    return True


def requirement_name(requirement: str) -> str:
    """The distribution name of a requirement line ('scikit-learn' from 'scikit-learn>=1.3')."""
    return re.split(r"[<>=!~\[;\s]", requirement.strip(), maxsplit=1)[0]


def canonical(name: str) -> str:
    """PEP 503 normalised name: 'ruamel.yaml' and 'Ruamel_YAML' are the same distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_version(name: str) -> Optional[str]:
    """The installed version of a distribution in the running Python, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def installed_versions() -> Dict[str, str]:
    """{canonical name: version} of every distribution in the running Python (fresh: pip may have run)."""
    importlib.invalidate_caches()
    out: Dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out.setdefault(canonical(name), dist.version)
    return out


def unmet(requirements: List[str], installed: Optional[Callable[[str], Optional[str]]] = None) -> List[str]:
    """The requirements not installed or installed at a version that does not fit, each as
    'name>=x (have y)' or 'name>=x (missing)'."""
    installed = installed or installed_version
    out = []
    for requirement in requirements:
        have = installed(requirement_name(requirement))
        if have is None:
            out.append(f"{requirement} (missing)")
        elif not satisfies(have, requirement):
            out.append(f"{requirement} (have {have})")
    return out


def importable(module: str) -> bool:
    """Whether a top-level module can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# --------------------------------------------------------------------------- the constraints file
def constraint_lines(installed: Optional[Callable[[str], Optional[str]]] = None,
                     importable_module: Callable[[str], bool] = importable,
                     names: Sequence[str] = SLICER_SHIPPED + EXTENSION_SHIPPED) -> List[str]:
    """'name==version' for every shipped distribution the running Python has; 'name<0' (no version
    meets it) for a shipped module that has no pip metadata, so pip never installs a second copy."""
    installed = installed or installed_version
    lines = []
    for name in names:
        version = installed(name)
        if version is not None:
            lines.append(f"{name}=={version}")
        elif name in NO_METADATA_GUARD and importable_module(NO_METADATA_GUARD[name]):
            lines.append(f"{name}<0")
    return lines


def write_constraints(path: Path, lines: Optional[List[str]] = None) -> Path:
    """Write the constraints file pip gets with -c (the running Python's shipped versions)."""
    lines = constraint_lines() if lines is None else lines
    header = ("# Generated by IMNRisk from the running Python: the packages Slicer and the IMNRisk extension\n"
              "# ship stay at these versions while IMNRisk's extras are installed (pip -c).\n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def pip_install_arguments(requirements: List[str], constraints: Path) -> List[str]:
    """The argument list for slicer.util.pip_install (5.10 takes a list: each item one argument)."""
    return ["-c", str(constraints)] + list(requirements)


# --------------------------------------------------------------------------- restart
def restart_needed(before: Mapping[str, str], after: Mapping[str, str],
                   loaded: Optional[Iterable[str]] = None,
                   top_level: Optional[Mapping[str, List[str]]] = None) -> List[str]:
    """'name old -> new' for each distribution that changed version (or was replaced) while one of its
    modules is already imported: the old code stays in memory until Slicer restarts."""
    loaded_top = {m.split(".", 1)[0] for m in (sys.modules if loaded is None else loaded)}
    if top_level is None:
        top_level = {}
        for module, dists in metadata.packages_distributions().items():
            for dist in dists:
                top_level.setdefault(canonical(dist), []).append(module)
    out = []
    for name in sorted(after):
        old, new = before.get(name), after[name]
        if old == new or old is None:
            continue
        if set(top_level.get(name, [])) & loaded_top:
            out.append(f"{name} {old} -> {new}")
    return out


# --------------------------------------------------------------------------- installing the extras
@dataclass
class ExtrasOutcome:
    """What installing the extras came to, for the widget to show."""

    ok: bool
    installed: List[str] = field(default_factory=list)
    message: str = ""
    restart: List[str] = field(default_factory=list)
    asked: bool = False


def extras_prompt(missing: List[str], purpose: str) -> str:
    """The one question the widget asks before installing (what, why, what stays unchanged)."""
    return (f"{purpose} needs Python packages that Slicer does not ship: " + ", ".join(missing) + ".\n\n"
            "Install them into Slicer's Python now? Scoring does not need them. numpy, scipy, SimpleITK and "
            "the other packages Slicer ships stay at their current versions (pip gets them as constraints); "
            "if a package cannot be installed without moving them, nothing is changed.")


def install_failure_message(error: BaseException, constraints: Path) -> str:
    """One line on why pip failed: a conflict with the pins, a network problem, a declined prompt."""
    text = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    return (f"IMNRisk could not install its training packages ({type(error).__name__}: {text}). Slicer's own "
            f"packages were kept at their versions ({constraints}); pip's output is in the Python console.")


def install_extras(requirements: List[str], purpose: str, confirm: Callable[[str], bool],
                   run_pip: Callable[[List[str], Path], None], constraints_path: Path,
                   ask: bool = True, installed: Optional[Callable[[str], Optional[str]]] = None,
                   versions: Callable[[], Dict[str, str]] = installed_versions,
                   loaded: Callable[[], Iterable[str]] = lambda: list(sys.modules)) -> ExtrasOutcome:
    """Install what `requirements` lacks, after `confirm(prompt)` (skipped when ask is False), through
    `run_pip(requirements, constraints_file)`; report a restart when a loaded module changed version.
    The face supplies confirm (a dialog) and run_pip (pip_ensure or pip_install); nothing here is Qt."""
    missing = unmet(requirements, installed)
    if not missing:
        return ExtrasOutcome(ok=True, message="")
    wanted = [m.rsplit(" (", 1)[0] for m in missing]
    asked = bool(ask)
    if ask and not confirm(extras_prompt(missing, purpose)):
        return ExtrasOutcome(ok=False, asked=True,
                             message=f"Not installed: {', '.join(wanted)}. {purpose} stays unavailable until they are.")
    constraints = write_constraints(constraints_path)
    before = versions()
    try:
        run_pip(wanted, constraints)
    except Exception as exc:  # pip's non-zero exit, a declined pip_ensure dialog, no network
        return ExtrasOutcome(ok=False, asked=asked, message=install_failure_message(exc, constraints))
    after = versions()
    still = unmet(requirements, installed)
    restart = restart_needed(before, after, loaded())
    changed = sorted(n for n in after if before.get(n) != after[n])
    message = ("Installed: " + ", ".join(f"{n} {after[n]}" for n in changed) + "." if changed else "")
    if still:
        message += " Still missing: " + ", ".join(still) + "."
    if restart:
        message += " Restart Slicer: already loaded and changed: " + "; ".join(restart) + "."
    return ExtrasOutcome(ok=not still, installed=changed, message=message.strip(), restart=restart, asked=asked)


# --------------------------------------------------------------------------- module start
def environment_problems(slicer_version: str, python_version: Optional[str] = None,
                         numpy_version: Optional[str] = None, pyradiomics_version: Optional[str] = None,
                         pyradiomics_error: Optional[str] = None) -> List[str]:
    """Problems to show when the module starts: a Slicer older than 5.10 (its Python must satisfy
    requires-python), naming what runs; pyradiomics missing or broken, in one line with the fix."""
    python_version = python_version or sys.version.split()[0]
    if numpy_version is None:
        import numpy
        numpy_version = numpy.__version__
    problems = []
    running = (f"running Slicer {slicer_version}, Python {python_version}, numpy {numpy_version}, "
               f"pyradiomics {pyradiomics_version or 'not available'}")
    if version_tuple(slicer_version)[:2] < MINIMUM_SLICER or version_tuple(python_version)[:2] < MINIMUM_PYTHON:
        problems.append(f"IMNRisk needs Slicer >= {'.'.join(map(str, MINIMUM_SLICER))} (Python >= "
                        f"{'.'.join(map(str, MINIMUM_PYTHON))}); {running}. Install a current Slicer.")
    if pyradiomics_error:
        problems.append(f"pyradiomics cannot be used ({pyradiomics_error}); {PYRADIOMICS_FIX}.")
    return problems


def extras_status(requirements: List[str], installed: Optional[Callable[[str], Optional[str]]] = None) -> str:
    """The training tab's line: empty when the extras are there, else what pressing Train installs."""
    missing = unmet(requirements, installed)
    if not missing:
        return ""
    return ("Training, the features-CSV path and the nomogram figure need packages Slicer does not ship: "
            + ", ".join(m.rsplit(" (", 1)[0] for m in missing) + ". Train asks once before installing them.")
