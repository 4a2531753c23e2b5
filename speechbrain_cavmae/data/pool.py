"""Worker processes of the data tools (``extract``, ``validate``, ``shard``) and the worker
counts of every tool and recipe.

* :func:`cap_workers`: a worker count above the CPUs available to the process (its CPU
  affinity, lowered by a cgroup CPU quota) is lowered to that number, with one warning:
  64 decoding processes on 2 CPUs only fill the memory (each holds its own decoders and
  torch) and finish no sooner.
* :func:`process_pool`: a ``ProcessPoolExecutor`` whose workers end when the process that
  started them dies (SIGKILL, out-of-memory killer), instead of waiting forever for work
  (:func:`exit_with_parent`).

Example
-------
>>> with process_pool(1) as pool:
...     list(pool.map(abs, [-1, 2]))
[1, 2]
>>> cap_workers(0)
0
"""

import ctypes
import logging
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

logger = logging.getLogger(__name__)

#: ``prctl`` option: the signal this process gets when its parent dies (Linux).
PR_SET_PDEATHSIG = 1
#: Seconds between two looks at the parent of :func:`watch_parent`.
WATCH_INTERVAL = 1.0

_WARNED = set()


def _cgroup_cpu_limit():
    """The CPUs of the cgroup's CPU quota (cgroup v2 ``cpu.max`` or v1 ``cfs_quota_us``),
    or None without a quota or where none can be read."""
    candidates = [("/sys/fs/cgroup/cpu.max", None)]
    for folder in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"):
        candidates.append((folder + "/cpu.cfs_quota_us", folder + "/cpu.cfs_period_us"))
    for quota_file, period_file in candidates:
        try:
            with open(quota_file, encoding="ascii") as handle:
                fields = handle.read().split()
            if period_file is not None:
                with open(period_file, encoding="ascii") as handle:
                    fields.append(handle.read().strip())
            quota, period = fields[0], fields[1]
            if quota in ("max", "-1"):
                return None
            return float(quota) / float(period)
        except (OSError, ValueError, IndexError, ZeroDivisionError):
            continue
    return None


def available_cpus():
    """CPUs this process may use: its CPU affinity (``os.sched_getaffinity``, else
    ``os.cpu_count``), lowered to a cgroup CPU quota rounded up (at least 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None and limit > 0:
        n = min(n, math.ceil(limit))
    return max(n, 1)


def cap_workers(requested, flag="--num_workers"):
    """``requested`` worker processes, lowered to :func:`available_cpus` with one warning
    (per flag and value, per process) naming ``flag``. 0 (the main process) stays 0."""
    requested = int(requested)
    available = available_cpus()
    if requested <= available:
        return requested
    if (flag, requested) not in _WARNED:
        _WARNED.add((flag, requested))
        logger.warning("%s %d is more than the %d CPU(s) available to this process: "
                       "using %d worker processes", flag, requested, available, available)
    return available


def watch_parent(parent_pid, interval=WATCH_INTERVAL):
    """Start a daemon thread that ends this process (``os._exit``) once its parent is no
    longer ``parent_pid`` (the parent died and the process was adopted): the portable way
    of :func:`exit_with_parent`."""
    def watch():
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(1)

    thread = threading.Thread(target=watch, name="watch-parent", daemon=True)
    thread.start()
    return thread


def exit_with_parent(parent_pid):
    """Make this process end when its parent ``parent_pid`` dies.

    On Linux the kernel sends SIGKILL at the parent's death (``prctl(PR_SET_PDEATHSIG)``;
    strictly, at the end of the parent's thread that started this process: the pools of
    this package are started and used from the main thread); elsewhere, or when ``prctl``
    is unavailable, :func:`watch_parent` checks the parent every second. A parent that
    died before this call ends the process at once.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0:
                if os.getppid() != parent_pid:
                    os._exit(1)
                return "prctl"
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(1)
    watch_parent(parent_pid)
    return "thread"


def _start_worker(parent_pid, initializer, initargs):
    exit_with_parent(parent_pid)
    if initializer is not None:
        initializer(*initargs)


def process_pool(workers, initializer=None, initargs=()):
    """A ``ProcessPoolExecutor`` of ``workers`` processes (lowered by :func:`cap_workers`)
    that are started fresh (``spawn``), not forked: a fork of a process that runs threads
    (FFmpeg's decoders, OpenMP, a test session that decoded video) can leave a lock held in
    the child, which then hangs. The workers end when this process dies
    (:func:`exit_with_parent`). ``initializer`` and the functions given to the pool must
    be importable by name."""
    return ProcessPoolExecutor(cap_workers(workers),
                               mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker,
                               initargs=(os.getpid(), initializer, tuple(initargs)))
