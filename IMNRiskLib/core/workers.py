"""Worker processes that die with their parent: a killed `imnrisk extract` or `train` (SIGTERM,
SIGKILL, Slicer's Cancel) must leave no worker running on."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from IMNRiskLib.core.errors import InputError

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def resolve_jobs(jobs: int) -> int:
    """Worker processes for --jobs, counted as joblib counts them: N >= 1 is N, 0 is every core, a
    negative N counts from the number of cores (-1 every core, -2 all but one); fewer than one is refused."""
    cores = os.cpu_count() or 1
    resolved = cores if jobs == 0 else (cores + 1 + jobs if jobs < 0 else jobs)
    if resolved < 1:
        raise InputError(f"--jobs {jobs} leaves no worker on this machine's {cores} core(s) (0: every core, "
                         "-1: every core, -2: all but one)", field="--jobs")
    return resolved


def check_dask_address(address) -> None:
    """A Dask scheduler address (--dask) must parse, e.g. tcp://host:8786, before any work starts;
    whether the scheduler answers is found when connecting."""
    if address is None:
        return
    try:
        from distributed.comm.addressing import parse_address, parse_host_port  # optional dependency (extra dask)
        from distributed.comm.registry import get_backend  # optional dependency (extra dask)
    except ImportError:
        return  # the command says what to install when it needs Dask
    try:
        scheme, location = parse_address(str(address))
        get_backend(scheme)  # an unknown scheme
        if scheme != "inproc":
            parse_host_port(location)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{address!r} is not a Dask scheduler address ({exc}); e.g. tcp://host:8786",
                         field="--dask") from None
WATCH_INTERVAL_S = 0.5


def die_with_parent(parent_pid: int, kernel: bool = True) -> None:
    """Pool initializer: have the kernel kill this worker when its parent dies (Linux, `kernel`), and
    watch the parent from a thread as well (the parent pid changes when the parent is gone).

    PR_SET_PDEATHSIG fires when the *thread* that started the worker ends: use it only for pools
    that start workers from the main thread (ours); joblib/loky may start them from a helper thread.
    """
    if kernel and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before we got here
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="imnrisk-parent-watch", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(WATCH_INTERVAL_S)
        if os.getppid() != parent_pid:
            os._exit(1)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A spawned process pool whose workers end when this process ends, however it ends, and
    share the cores' BLAS threads between them."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_start_worker,
                               initargs=(os.getpid(), blas_threads_per_worker(workers)))


def blas_threads_per_worker(workers: int) -> int:
    """The cores divided among the workers (at least one each), as joblib's loky does for its own."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _start_worker(parent_pid: int, blas_threads: int) -> None:
    """Pool initializer: die with the parent, and use at most `blas_threads` BLAS and ITK threads. Each
    OpenBLAS otherwise starts a thread per core: two extraction workers on 2 cores spent twice the
    CPU on the GLCM's small matrix products (measured: 40 cases 29 s of CPU against 14 s)."""
    die_with_parent(parent_pid)
    # ITK's filters likewise: the pool already fills the cores, and on a tumour's small crops ITK's
    # thread start-up costs more than it saves (a crop: 0.42 ms with 2 threads, 0.25 ms with one)
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(blas_threads)
    if "SimpleITK" in sys.modules:
        sys.modules["SimpleITK"].ProcessObject.SetGlobalDefaultNumberOfThreads(blas_threads)
    import numpy  # noqa: F401 - threadpoolctl limits only the BLAS libraries already loaded
    from threadpoolctl import threadpool_limits  # start-up time: threadpoolctl loads only when used
    threadpool_limits(limits=blas_threads)



def loky_backend(jobs: int):
    """joblib's loky backend with workers that die with this process (joblib >= 1.3 takes an
    initializer; older joblib gets the plain backend)."""
    try:
        from joblib._parallel_backends import LokyBackend  # start-up time: joblib loads only when used
        return LokyBackend(initializer=die_with_parent, initargs=(os.getpid(), False))
    except (ImportError, TypeError):
        return "loky"
