"""Safe output: write to a temporary file and rename, never overwrite a user's file without force."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Union

from .errors import InputError

PathLike = Union[str, os.PathLike]


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# mkstemp makes 0600 files; what we write is an ordinary output, so give it the usual mode
FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    An interrupted or failing writer leaves no half-written file behind (rename is atomic on POSIX).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: PathLike, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: PathLike, obj: Any) -> None:
    """Write JSON atomically (sorted keys, so equal content gives equal bytes)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def check_can_write(path: PathLike, force: bool, what: str = "output file") -> None:
    """Refuse to overwrite an existing file unless `force` (a user's files are theirs)."""
    path = Path(path)
    if path.exists() and not force:
        raise InputError(f"{what} exists; pass --force to overwrite it", file=str(path))
    if path.exists() and path.is_dir():
        raise InputError(f"{what} is a directory", file=str(path))


def read_yaml(path: PathLike, what: str) -> Any:
    """Parse a YAML file; a missing or malformed file is an InputError naming it."""
    import yaml
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{what} not found", file=str(path)) from None
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML ({str(exc).splitlines()[0]})", file=str(path)) from None
