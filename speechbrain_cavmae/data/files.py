"""Atomic file writing: a file the project writes is either its old or its new version.

Every file that a run writes and may read again (``history.json``, ``test_results.json``,
exported weights, model folders, manifests) is written to a temporary file in the same
folder, flushed to disk and renamed over the target with :func:`os.replace` (atomic on
POSIX and Windows). A process killed while writing leaves the previous file intact, never
a truncated one.

Example
-------
>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "results.json")
>>> atomic_write_json(path, {"loss": 0.5})
>>> open(path).read()
'{\\n  "loss": 0.5\\n}'
"""

import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path next to ``path`` for a writer that takes a file name; on a clean
    exit the file written there replaces ``path`` atomically, on an exception it is
    removed and ``path`` is untouched."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
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
