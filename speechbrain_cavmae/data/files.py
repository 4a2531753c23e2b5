"""Atomic file writing: a file the project writes is either its old or its new version.

Every file that a run writes and may read again (``history.json``, ``test_results.json``,
exported weights, model folders, manifests) is written to a temporary file in the same
folder, flushed to disk and renamed over the target with :func:`os.replace` (atomic on
POSIX and Windows). A process killed while writing leaves the previous file intact, never
a truncated one. The file gets the mode any other new file of the process gets (``0644``
under umask ``022``, ``0640`` under ``027``), not the private ``0600`` of a temporary file.
A write that fails (a full disk, a quota) raises an ``OSError`` naming the target and the
cause (:func:`write_error`).

Example
-------
>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "results.json")
>>> atomic_write_json(path, {"loss": 0.5})
>>> open(path).read()
'{\\n  "loss": 0.5\\n}'
"""

import contextlib
import errno
import json
import os
import shutil
import tempfile

#: Free bytes under which a writer's error without an errno is put down to a full disk.
FULL_DISK_BYTES = 1 << 20


def process_umask():
    """The process's file mode creation mask (``/proc/self/status`` where the kernel shows
    it, so that no other thread sees a changed mask; else set and restored)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_error(exc, path):
    """``exc``, raised while writing ``path``, as an ``OSError`` whose message names the
    file and the cause, in one line.

    An ``OSError`` keeps its errno (``[Errno 28] No space left on device: 'path'``); the
    errors of writers that lose the errno (torch's ``basic_ios::clear: iostream error``,
    ``PytorchStreamWriter failed writing file``) are put down to a full disk when the file
    system has less than :data:`FULL_DISK_BYTES` free, and otherwise keep their message.
    Returns ``exc`` itself when it already names ``path``.

    Example
    -------
    >>> str(write_error(OSError(28, "No space left on device"), "/out/history.json"))
    "[Errno 28] No space left on device: '/out/history.json'"
    """
    path = os.fspath(path)
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.filename is not None and os.fspath(exc.filename) == path:
            return exc
        return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if free is not None and free < FULL_DISK_BYTES:
        return OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({free} bytes free)", path)
    message = (str(exc).strip().splitlines() or [""])[0]
    return OSError(errno.EIO, f"cannot write the file ({type(exc).__name__}: {message})", path)


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path next to ``path`` for a writer that takes a file name; on a clean
    exit the file written there replaces ``path`` atomically, on an exception it is
    removed and ``path`` is untouched (a failed write raises :func:`write_error`'s
    ``OSError`` naming ``path``)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=folder)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~process_umask())  # mkstemp creates it 0600
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(exc, (OSError, RuntimeError)):
            raise write_error(exc, path) from exc
        raise


@contextlib.contextmanager
def atomic_open(path, mode="w", encoding="utf8", **open_kwargs):
    """Open a temporary file next to ``path`` for writing (see :func:`atomic_path`); it is
    flushed to disk before it replaces ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding,
                  **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def atomic_write_json(path, content, **dump_kwargs):
    """``json.dump(content)`` to ``path`` atomically (``indent=2`` by default)."""
    dump_kwargs.setdefault("indent", 2)
    with atomic_open(path) as handle:
        json.dump(content, handle, **dump_kwargs)


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path) as handle:
        handle.write(text)


def atomic_torch_save(obj, path):
    """``torch.save(obj, path)`` atomically."""
    import torch

    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)
