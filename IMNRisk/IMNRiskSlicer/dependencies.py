"""What IMNRisk needs in Slicer's Python, checked by version (not only by importing), without Qt.

`Resources/requirements.txt` is the one list: the module reads it here for the check and hands the
same lines to `slicer.packaging.pip_ensure(..., requester="IMNRisk")` (one prompt) or, before
Slicer 5.11, to `slicer.util.pip_install` after one confirmation.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

REQUIREMENTS_FILE = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"
MINIMUM_SLICER = (5, 10)
MINIMUM_PYTHON = (3, 10)      # pyproject's requires-python
PYRADIOMICS_FIX = ("fix: reinstall the IMNRisk extension from the Extensions Manager (it brings its own "
                   "pyradiomics) and restart Slicer; meanwhile a patient can be scored from a features CSV")
_CLAUSE = re.compile(r"(>=|<=|==|!=|>|<)\s*([0-9][0-9A-Za-z.]*)")


def read_requirements(path: Path = REQUIREMENTS_FILE) -> List[str]:
    """The requirement lines of requirements.txt (comments and blanks dropped)."""
    lines = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line]


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
    return re.split(r"[<>=!~\[;\s]", requirement, maxsplit=1)[0]


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


def installed_version(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


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


def install_plan(requirements: List[str], has_pip_ensure: bool) -> Dict[str, object]:
    """How to install what is unmet: pip_ensure asks the user itself (so IMNRisk does not ask too),
    pip_install needs IMNRisk's one confirmation."""
    missing = unmet(requirements)
    return {"missing": missing, "install": [m.rsplit(" (", 1)[0] for m in missing],
            "we_ask": bool(missing) and not has_pip_ensure, "use_pip_ensure": has_pip_ensure}
