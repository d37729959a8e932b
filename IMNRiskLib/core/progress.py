"""Progress: one bar style for every long step (stderr, with ETA), quieter when not a terminal."""

from __future__ import annotations

import sys
import threading

# Set when the user asked a run to stop (Ctrl-C or SIGTERM, by cli's signal handler, which also
# raises KeyboardInterrupt): long loops and the commit of outputs check it, because that exception
# can get lost (raised inside a finalizer, e.g. llvmlite's __del__ while numba loads its cache, it
# is only printed, and the run would go on and finish).
STOP = threading.Event()


def stop_if_asked() -> None:
    """Raise KeyboardInterrupt if a stop was asked for (see STOP)."""
    if STOP.is_set():
        raise KeyboardInterrupt


def progress_bar(total: int, desc: str, unit: str = "case", enabled: bool = True, initial: int = 0):
    """A tqdm bar on stderr: ETA on a terminal; in a log file, an update every 10 s at most."""
    from tqdm import tqdm  # start-up time: tqdm loads only when used
    tty = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, disable=not enabled,
                dynamic_ncols=True, mininterval=0.1 if tty else 10.0)
