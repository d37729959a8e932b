"""Background training without Qt: the steps of `imnrisk extract/train` run one after the other in
their own process group, polled by the face (a QTimer in Slicer), cancellable as a whole tree.

    run = TrainingRun(commands)      # commands from logic.training_commands(...)
    run.start()
    run.poll() -> {"running", "returncode", "lines" (new output), "progress" (0-100 or None),
                   "stage", "error" (the reason of a failure: its last error line), "step", "steps"}
    run.cancel()                      # ends the process and every worker it started
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from typing import Any, Dict, List, Optional


class TrainingRun:
    """Run training steps in sequence in a new session (POSIX) / process group (Windows)."""

    def __init__(self, commands: List[List[str]]):
        self.commands = [list(c) for c in commands]
        self.step = 0
        self.process: Optional[subprocess.Popen] = None
        self.returncode: Optional[int] = None
        self.cancelled = False
        self.error: Optional[str] = None
        self.progress: Optional[int] = None
        self.stage = ""
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._last_lines: List[str] = []

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        self.step, self.returncode, self.error, self.cancelled = 0, None, None, False
        self._launch()

    def _launch(self) -> None:
        argv = self.commands[self.step]
        kwargs: Dict[str, Any] = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True   # its own process group: cancel reaches every worker
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=env, **kwargs)
        self._last_lines = []
        self._reader = threading.Thread(target=self._read, args=(self.process,), daemon=True)
        self._reader.start()

    def _read(self, process: subprocess.Popen) -> None:
        """Split output on newlines and carriage returns (progress bars redraw with \\r)."""
        buffer = b""
        while True:
            chunk = process.stdout.read1(4096) if hasattr(process.stdout, "read1") else process.stdout.read(4096)
            if not chunk:
                break
            buffer += chunk
            *parts, buffer = buffer.replace(b"\r", b"\n").split(b"\n")
            for part in parts:
                self._lines.put(part.decode("utf-8", "replace"))
        if buffer:
            self._lines.put(buffer.decode("utf-8", "replace"))
        self._lines.put(None)

    @property
    def running(self) -> bool:
        return self.process is not None and self.returncode is None

    def poll(self) -> Dict[str, Any]:
        """New output lines and the run's status; starts the next step when one ends well."""
        new: List[str] = []
        ended = False
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                ended = True
                break
            if "%|" in line:  # a progress bar: "cv (nested):  26%|..."
                try:
                    self.progress = int(line.split("%|")[0].split()[-1])
                    self.stage = line.split(":")[0].strip()
                except (ValueError, IndexError):
                    pass
            elif line.strip():
                new.append(line)
                self._last_lines = (self._last_lines + [line])[-50:]
        if ended and self.process is not None and self.returncode is None:
            code = self.process.wait()
            if self.cancelled:
                self.returncode = code if code else -1
            elif code != 0:
                self.returncode = code
                self.error = failure_reason(self._last_lines, code)
            elif self.step + 1 < len(self.commands):
                self.step += 1
                self._launch()
            else:
                self.returncode = 0
        return {"running": self.running, "returncode": self.returncode, "lines": new, "progress": self.progress,
                "stage": self.stage, "error": self.error, "cancelled": self.cancelled,
                "step": self.step + 1, "steps": len(self.commands)}

    def wait(self, timeout: float = 600.0) -> Dict[str, Any]:
        """Poll until the run ends (for scripts and tests; faces poll from a timer)."""
        deadline = time.monotonic() + timeout
        status = self.poll()
        lines = list(status["lines"])
        while status["running"] and time.monotonic() < deadline:
            time.sleep(0.05)
            status = self.poll()
            lines += status["lines"]
        return {**status, "lines": lines}

    # ------------------------------------------------------------------ cancel
    def cancel(self, grace_s: float = 3.0) -> None:
        """End the running step and every process it started (its whole group), then stop."""
        self.cancelled = True
        process = self.process
        if process is None or process.poll() is not None and self.returncode is not None:
            return
        kill_tree(process, grace_s)
        # the reader thread queues the end of the output once the pipe closes: wait for it, so that
        # the next poll() reports the run ended (on a busy machine the thread may lag behind the kill)
        self._reader.join(timeout=grace_s)


def kill_tree(process: subprocess.Popen, grace_s: float = 3.0) -> None:
    """SIGTERM to the process group, SIGKILL to whatever is left after the grace period."""
    if os.name == "nt":
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(process.pid)], capture_output=True)
        return
    try:
        group = os.getpgid(process.pid)
    except ProcessLookupError:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if process.poll() is not None and not _group_alive(group):
                return
            time.sleep(0.05)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def failure_reason(lines: List[str], code: int) -> str:
    """The reason a step failed: its last 'error' line (imnrisk prints one line), else its last line."""
    for line in reversed(lines):
        if "error" in line.lower() or line.startswith(("Traceback", "InputError")):
            return line.strip()
    return lines[-1].strip() if lines else f"the process ended with code {code} and printed nothing"
