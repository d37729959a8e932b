"""Progress: one bar style for every long step (stderr, with ETA), quieter when not a terminal."""

from __future__ import annotations

import sys


def progress_bar(total: int, desc: str, unit: str = "case", enabled: bool = True, initial: int = 0):
    """A tqdm bar on stderr: ETA on a terminal; in a log file, an update every 10 s at most."""
    from tqdm import tqdm
    tty = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, disable=not enabled,
                dynamic_ncols=True, mininterval=0.1 if tty else 10.0)
