"""numba's `njit` for the compiled kernels (`kernels`, `fitkernels`), or a do-nothing decorator
where numba is missing; whether the kernels are used (`available`), and the wrapper that lets a
signal stop them (`interruptible`)."""

from __future__ import annotations

import functools
import os
from typing import Callable

try:
    from numba import njit
    IMPORTED = True
except Exception:  # noqa: BLE001 - not installed, or not for this numpy/llvmlite: the numpy solvers
    IMPORTED = False

    def njit(*args, **kwargs):
        return (lambda f: f) if not (args and callable(args[0])) else args[0]


def interruptible(function: Callable) -> Callable:
    """A kernel's Python wrapper that lets Ctrl-C and SIGTERM (`cli` turns both into
    KeyboardInterrupt) stop it as they stop numpy: a signal handler that raises while compiled
    code runs comes back from numba as "SystemError: ... returned a result with an exception set",
    the KeyboardInterrupt as its cause; that is re-raised as the KeyboardInterrupt it was."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except SystemError as exc:
            if isinstance(exc.__cause__, KeyboardInterrupt):
                raise KeyboardInterrupt from None
            raise
    return wrapper


def available() -> bool:
    """Whether the compiled solver is used: numba imports and IMNRISK_COMPILED is not 0."""
    return IMPORTED and os.environ.get("IMNRISK_COMPILED", "1") != "0"
