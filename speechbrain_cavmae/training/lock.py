"""One run per output folder: the lock file ``<output_folder>/run.lock``.

Two recipe runs on one ``--output_folder`` would share its checkpoints, logs and
``hyperparams.yaml`` (one deletes the other's unfinished checkpoint; one resumes the other's
checkpoint under its own seed). A run therefore takes the folder's lock before it writes
anything there, and a second run is refused while the first is alive:

* the lock file (JSON) names the host, the process id and its start time, and is created
  atomically (a hard link of a complete file: it never appears empty);
* a lock of this host whose process is gone (or whose id now belongs to another process)
  is stale: it is taken over with a warning, as after a SIGKILL or a crash;
* a lock of another host cannot be checked from here: the run is refused, and the message
  says to remove the file once that run is known to be over;
* a lock of this process (an earlier run in the same interpreter, e.g. a notebook) is taken
  again;
* under DDP only the main process takes the lock, and every process gets its verdict
  (:func:`lock_output_folder`), so all of them stop together.

The lock is removed when the process exits (``atexit``) and by :func:`release`.

Example
-------
>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> lock = acquire(folder)
>>> os.path.basename(lock.path), lock.pid == os.getpid()
('run.lock', True)
>>> release(folder)
>>> os.path.exists(os.path.join(folder, "run.lock"))
False
"""

import atexit
import contextlib
import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass

logger = logging.getLogger(__name__)

LOCK_NAME = "run.lock"

_HELD = {}


class OutputFolderLocked(RuntimeError):
    """The output folder is in use by another run (or its lock cannot be taken)."""


@dataclass
class RunLock:
    """The content of a lock file (``path`` is where it lies, not stored)."""

    host: str
    pid: int
    started: float = None  # the process's start time (Linux: clock ticks after boot)
    created: float = None
    path: str = None

    def describe(self):
        """``process 123 on host h since 2026-01-01 10:00:00``."""
        since = (time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(self.created))
                 if self.created else "")
        return f"process {self.pid} on host {self.host}{since}"


def _process_start(pid):
    """The start time of process ``pid`` (``/proc/<pid>/stat`` field 22), None where it
    cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return float(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid, started):
    """Whether process ``pid`` of this host runs (and is the one that wrote the lock)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    now = _process_start(pid)
    return not (started is not None and now is not None and now != started)


def read_lock(path):
    """The :class:`RunLock` of the file ``path``, or None when there is none.

    Raises
    ------
    OutputFolderLocked
        The file exists but is not a lock written by this module.
    """
    try:
        with open(path, encoding="utf8") as handle:
            content = json.load(handle)
        return RunLock(str(content["host"]), int(content["pid"]), content.get("started"),
                       content.get("created"), path=path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutputFolderLocked(
            f"{path}: an unreadable lock file ({exc}); if no run uses this output folder, "
            "remove it") from None


def _create(path, lock):
    """Create ``path`` holding ``lock`` if it does not exist; returns whether it did."""
    tmp = f"{path}.{lock.host}.{lock.pid}.tmp"
    with open(tmp, "w", encoding="utf8") as handle:
        content = {k: v for k, v in asdict(lock).items() if k != "path"}
        json.dump(content, handle)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(tmp, path)  # atomic, fails when path exists, never shows a partial file
        return True
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf8") as handle:
            json.dump(content, handle)
        return True
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)


def acquire(folder):
    """Take the lock of the output folder ``folder`` (created if needed) for this process.

    Returns
    -------
    RunLock
        The lock written.

    Raises
    ------
    OutputFolderLocked
        Another live run holds it, or it belongs to another host, or it is unreadable.
    """
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_NAME)
    host, pid = socket.gethostname(), os.getpid()
    mine = RunLock(host, pid, _process_start(pid), time.time(), path=path)
    for _ in range(10):
        if _create(path, mine):
            break
        held = read_lock(path)
        if held is None:
            continue  # released meanwhile
        if held.host != host:
            raise OutputFolderLocked(
                f"{folder} is in use by {held.describe()} (lock file {path}); pass another "
                "--output_folder, or remove the lock file once that run is known to be over")
        if held.pid == pid:
            break  # an earlier run of this process
        if _alive(held.pid, held.started):
            raise OutputFolderLocked(
                f"{folder} is in use by {held.describe()} (lock file {path}): two runs "
                "cannot share an output folder; pass another --output_folder, or wait for "
                "that run to end")
        # Stale: set it aside under a name of our own, and take over if it was still the
        # stale lock when moved (another run may have taken over meanwhile).
        aside = f"{path}.stale.{pid}"
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            continue
        moved = read_lock(aside)
        if moved is not None and (moved.host, moved.pid) != (held.host, held.pid):
            with contextlib.suppress(OSError):
                os.link(aside, path)  # someone else's fresh lock: put it back
            with contextlib.suppress(OSError):
                os.remove(aside)
            continue
        with contextlib.suppress(OSError):
            os.remove(aside)
        logger.warning("%s: taking over the lock of %s, which is no longer running (a run "
                       "that was killed or crashed)", folder, held.describe())
    else:
        raise OutputFolderLocked(f"{path}: could not take the lock (other runs keep taking it)")
    _HELD[os.path.abspath(folder)] = path
    return mine


def release(folder=None):
    """Remove the lock(s) this process holds (of ``folder``, or all)."""
    keys = list(_HELD) if folder is None else [os.path.abspath(folder)]
    for key in keys:
        path = _HELD.pop(key, None)
        if path is None:
            continue
        with contextlib.suppress(OSError, OutputFolderLocked):
            held = read_lock(path)
            if held is not None and held.pid == os.getpid() and held.host == socket.gethostname():
                os.remove(path)


atexit.register(release)


def lock_output_folder(folder):
    """:func:`acquire` on the main process; under DDP every process raises the main
    process's error, so that all stop together (call it on every process, before anything
    is written to ``folder``)."""
    import torch.distributed as dist
    from speechbrain.utils.distributed import if_main_process

    error = None
    if if_main_process():
        try:
            acquire(folder)
        except (OutputFolderLocked, OSError) as exc:
            error = exc
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        verdict = [None if error is None else f"{type(error).__name__}: {error}"]
        dist.broadcast_object_list(verdict, src=0)
        if error is None and verdict[0] is not None:
            raise OutputFolderLocked(f"the main process could not lock the output folder: "
                                     f"{verdict[0]}")
    if error is not None:
        raise error
