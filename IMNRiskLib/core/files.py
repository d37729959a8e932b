"""Safe output: write to a temporary file and rename, never overwrite a user's file without force."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Optional, Union

from IMNRiskLib.core.errors import InputError
from IMNRiskLib.core.progress import stop_if_asked

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


# A schema or parameter file is a few kB; these limits stop a YAML "billion laughs" (aliases that
# expand exponentially) and huge or deeply nested files before they cost minutes and gigabytes.
MAX_YAML_BYTES = 1 << 20
MAX_YAML_NODES = 100_000


def check_input_file(path: PathLike, what: str) -> Path:
    """An input that must be a regular file: missing, a folder, or a device/pipe (/dev/zero or a
    FIFO would hang the reader) is an InputError naming it."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"{what} not found", file=str(path)) from None
    except OSError as exc:
        raise InputError(f"{what} cannot be opened ({exc.strerror or exc})", file=str(path)) from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{what} is a folder; a file is expected", file=str(path))
    if not stat.S_ISREG(mode):
        raise InputError(f"{what} is not a regular file (a device, pipe or socket)", file=str(path))
    return path


def _expanded_nodes(node: Any, memo: dict) -> int:
    """Number of nodes the YAML graph expands to (aliases counted at every use), memoised."""
    import yaml  # start-up time: yaml loads only when used
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a recursive alias counts once
    if isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_expanded_nodes(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total = 1 + sum(_expanded_nodes(k, memo) + _expanded_nodes(v, memo) for k, v in node.value)
    else:
        total = 1
    memo[key] = total
    return total


def read_yaml(path: PathLike, what: str) -> Any:
    """Parse a YAML file; a missing, malformed, oversized or alias-bomb file is an InputError naming it."""
    import yaml  # start-up time: yaml loads only when used
    path = check_input_file(path, what)
    if path.stat().st_size > MAX_YAML_BYTES:
        raise InputError(f"{what} is larger than {MAX_YAML_BYTES // 1024} kB; refused", file=str(path))
    try:
        loader = yaml.SafeLoader(path.read_text(encoding="utf-8"))
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            nodes = _expanded_nodes(node, {})
            if nodes > MAX_YAML_NODES:
                raise InputError(f"{what} expands to {nodes} YAML nodes (aliases); at most {MAX_YAML_NODES} "
                                 "are accepted", file=str(path))
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML ({str(exc).splitlines()[0]})", file=str(path)) from None
    except UnicodeDecodeError:
        raise InputError("not valid YAML (not UTF-8 text)", file=str(path)) from None
    except RecursionError:
        raise InputError("not valid YAML (nested too deeply)", file=str(path)) from None


def claim_outputs(outputs: Iterable[PathLike], inputs: Iterable[Optional[PathLike]], force: bool,
                  folder: Optional[PathLike] = None) -> None:
    """The one rule for every command's outputs, checked before anything is read or computed.

    1. An output is never an existing input of the run, not even with --force (a result must not
       replace a key, a cohort or a model: the user may have no other copy).
    2. An output file is named as a file: a trailing separator (`--out dir/`) or an existing folder
       is refused instead of writing a file named `dir`.
    3. An existing file is replaced only with --force; with `folder` (an output folder), a folder that
       holds files of the user's needs --force too (IMNRisk then overwrites its own files and deletes nothing).
    Outputs are then written staged (`output_set`, `atomic_path`) and moved in, so none is half-written.
    """
    outputs = [o for o in outputs if o is not None]
    check_not_inputs(outputs, inputs)
    for out in outputs:
        text = os.fspath(out)
        if text.endswith(("/", os.sep)) or (text and Path(text).is_dir()):
            raise InputError("names a folder; give a file name (e.g. " + str(Path(text) / "name") + ")", file=text)
    if folder is not None:
        check_output_folder(Path(folder), force)
    for out in outputs:
        check_can_write(out, force)


def check_output_folder(folder: Path, force: bool) -> None:
    """A folder that exists with content is the user's: refuse unless --force (nothing is deleted)."""
    if folder.exists() and not folder.is_dir():
        raise InputError("exists and is not a folder", file=str(folder))
    if folder.exists() and any(not p.name.startswith(".imnrisk") for p in folder.iterdir()) and not force:
        raise InputError("folder exists and is not empty; pass --force to write into it "
                         "(IMNRisk overwrites its own files there and deletes nothing)", file=str(folder))


@dataclass(frozen=True)
class Setting:
    """One key of a settings file: its kind (text, integer, number, boolean, choice), whether it is
    required, and its range (inclusive `low`/`high`, or above `above`) or choices."""

    kind: str
    required: bool = False
    low: Optional[float] = None
    high: Optional[float] = None
    above: Optional[float] = None
    choices: tuple = ()
    max_length: Optional[int] = None


def _kind_problem(value: Any, setting: Setting) -> str:
    """What is wrong with a value's type for its setting ('' when nothing)."""
    if setting.kind == "text":
        if not isinstance(value, str) or not value.strip():
            return "must be a non-empty text"
        if setting.max_length is not None and len(value.strip()) > setting.max_length:
            return f"must be at most {setting.max_length} characters"
    elif setting.kind == "choice":
        if value not in setting.choices:
            return f"must be one of {', '.join(map(str, setting.choices))}"
    elif setting.kind == "boolean":
        if not isinstance(value, bool):
            return "must be true or false"
    elif setting.kind in ("integer", "number"):
        wanted = (int,) if setting.kind == "integer" else (int, float)
        if isinstance(value, bool) or not isinstance(value, wanted) or not math.isfinite(value):
            return f"must be {'an integer' if setting.kind == 'integer' else 'a finite number'}"
    return ""


def _range_problem(value: Any, setting: Setting) -> str:
    """What is wrong with a number's range ('' when nothing)."""
    if setting.kind not in ("integer", "number"):
        return ""
    if setting.above is not None and not value > setting.above:
        return f"must be more than {setting.above:g}" + (f" and at most {setting.high:g}" if setting.high else "")
    if (setting.low is not None and value < setting.low) or (setting.high is not None and value > setting.high):
        lo = "-inf" if setting.low is None else f"{setting.low:g}"
        return f"must be in [{lo}, {'inf' if setting.high is None else f'{setting.high:g}'}]"
    return ""


def check_settings(doc: Any, spec: Dict[str, Setting], source: str, what: str, prefix: str = "") -> Dict[str, Any]:
    """Check a settings mapping against its spec before any use: a mapping, keys that are texts and
    known, required keys present, each value of its kind and in its range. The first problem is an
    InputError naming the file and the key (`prefix` names the section, e.g. 'imnrisk: ')."""
    if not isinstance(doc, dict):
        raise InputError(f"{what} must be a mapping of {', '.join(spec)}", file=source,
                         field=prefix.rstrip(": ") or None)
    for key in doc:
        if not isinstance(key, str):
            raise InputError(f"key {key!r} is not a name (keys are texts)", file=source, field=f"{prefix}{key}")
        if key not in spec:
            raise InputError(f"unknown setting (known: {', '.join(sorted(spec))})", file=source, field=prefix + key)
    for key, setting in spec.items():
        if key not in doc or doc[key] is None:
            if setting.required:
                raise InputError("setting missing", file=source, field=prefix + key)
            continue
        problem = _kind_problem(doc[key], setting) or _range_problem(doc[key], setting)
        if problem:
            raise InputError(f"{problem} (found {doc[key]!r:.40})", file=source, field=prefix + key)
    return {k: v for k, v in doc.items() if v is not None}


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when two paths name the same file (hard links and symlinks included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def check_not_inputs(outputs: Iterable[PathLike], inputs: Iterable[PathLike]) -> None:
    """Refuse an output path that is one of the run's inputs (it would be overwritten by its own result)."""
    inputs = [Path(i) for i in inputs if i]
    for out in outputs:
        for source in inputs:
            if source.exists() and same_file(out, source):
                raise InputError(f"output is also an input of this run ({source})", file=str(out))


@contextlib.contextmanager
def output_lock(folder: PathLike) -> Iterator[None]:
    """Hold an exclusive lock on `folder` for a whole run: a second imnrisk run writing into the same
    folder refuses at once (exit 2) instead of mixing its files with ours."""
    folder = Path(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder ({exc.strerror or exc})", file=str(folder)) from None
    try:
        with _locked(folder):
            yield
    finally:
        if created:  # a run that wrote nothing leaves no empty folder behind
            with contextlib.suppress(OSError):
                folder.rmdir()


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """flock on folder/.imnrisk.lock (non-blocking); the lock file is removed when released."""
    try:
        import fcntl  # POSIX only
    except ImportError:  # Windows: no advisory locks; runs are not serialised there
        yield
        return
    lock_path = folder / ".imnrisk.lock"
    while True:
        try:
            fh = open(lock_path, "a+", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"output folder is not writable ({exc.strerror or exc})", file=str(folder)) from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            owner = fh.read().strip()
            fh.close()
            raise InputError("another imnrisk run is writing into this folder"
                             + (f" (process {owner})" if owner else "") + "; wait for it or choose another --out",
                             file=str(folder)) from None
        try:  # the holder before us may have removed the file: lock the one that is there now
            if os.fstat(fh.fileno()).st_ino == os.stat(lock_path).st_ino:
                break
        except FileNotFoundError:
            pass
        fh.close()
    try:
        fh.truncate(0)
        fh.write(str(os.getpid()))
        fh.flush()
        for stale in folder.glob(".imnrisk-staging-*"):  # left by a killed run; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        yield
    finally:
        with contextlib.suppress(OSError):
            lock_path.unlink()
        fh.close()


@contextlib.contextmanager
def output_set(folder: PathLike, last: Optional[str] = None) -> Iterator[Path]:
    """Write a set of outputs into a hidden staging folder inside `folder`, then move them into place.

    On failure (disk full included) the staging folder is deleted and the previous set is untouched.
    `last` (e.g. model.json, the mark of a finished run) is removed first and moved in last, so a
    set without it is never taken for complete. Creating the staging folder first also proves that
    the output folder is writable before any long work starts.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".imnrisk-staging-", dir=folder))
    except OSError as exc:
        raise InputError(f"output folder is not writable ({exc.strerror or exc})", file=str(folder)) from None
    try:
        yield stage
        stop_if_asked()  # a stop whose KeyboardInterrupt got lost: nothing is committed
        commit_staged(stage, folder, last)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def commit_staged(stage: Path, folder: Path, last: Optional[str] = None) -> None:
    """Move every file of `stage` to the same place under `folder` (`last` removed first, moved last)."""
    files = sorted(p.relative_to(stage) for p in stage.rglob("*") if p.is_file())
    if last is not None and Path(last) in files:
        with contextlib.suppress(FileNotFoundError):
            (folder / last).unlink()
        files = [f for f in files if f != Path(last)] + [Path(last)]
    for rel in files:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / rel, folder / rel)


class Outputs:
    """A command's outputs, claimed (`safe_outputs`): the run then holds their folder's lock and writes
    them staged, moved in together at the end."""

    def __init__(self, folder: Path):
        self.folder = folder

    def locked(self) -> "contextlib.AbstractContextManager[None]":
        """The folder's lock for the whole run (a second run into it refuses at once)."""
        return output_lock(self.folder)

    def staged(self, last: Optional[str] = None) -> "contextlib.AbstractContextManager[Path]":
        """A staging folder whose files are moved in when the block succeeds (`last` last), or none."""
        return output_set(self.folder, last)

    @contextlib.contextmanager
    def writing(self, last: Optional[str] = None) -> Iterator[Path]:
        """Lock and staging together: the usual way a command writes its set."""
        with self.locked(), self.staged(last) as stage:
            yield stage


def safe_outputs(outputs: Iterable[PathLike], inputs: Iterable[Optional[PathLike]], force: bool,
                 folder: Optional[PathLike] = None, user_folder: bool = False) -> Outputs:
    """The one safe-output helper of every command: claim the outputs now, before anything is read
    (`claim_outputs`: never an input, never a folder, an existing file only with --force; with
    `user_folder`, a non-empty `folder` only with --force), then lock and stage them (`Outputs`).
    `folder`: where they go (the first output's folder when not given)."""
    outputs = [o for o in outputs if o is not None]
    claim_outputs(outputs, inputs, force, folder=folder if user_folder else None)
    return Outputs(Path(folder) if folder is not None else Path(outputs[0]).parent)


# Errors of the machine the user can fix (disk full, no permission): exit 2 with the file named.
USER_FIXABLE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}
