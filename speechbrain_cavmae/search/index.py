"""Build and update a search index of media files (``cavmae index``).

:func:`update_index` lists the media files of folders (recursively) and manifests, then:

* files no longer on disk are dropped, with their vectors;
* new files, and files whose size or modification time changed (with ``hash=True``: and
  whose SHA-256 changed too) are embedded (:class:`~speechbrain_cavmae.search.embedder.
  Embedder`) in batches of ``batch_files``; each batch is one SQLite transaction, so a run
  killed mid-way loses the batch in flight only and the next run goes on from there;
* a file that cannot be read (:class:`~speechbrain_cavmae.data.errors.BadSampleError`)
  is recorded with its reason and skipped; it is tried again only once it changes;
* the faiss indexes are rebuilt from SQLite at the end (:mod:`~speechbrain_cavmae.search.
  store`).

Authors
 * speechbrain-cavmae contributors 2026
"""

import logging
import os

from speechbrain_cavmae.data.audio import SOUNDFILE_EXTS
from speechbrain_cavmae.data.errors import BadSampleError
from speechbrain_cavmae.data.prepare import AUDIO_EXTS, VIDEO_EXTS
from speechbrain_cavmae.data.shard_writer import file_sha256 as sha256
from speechbrain_cavmae.search.store import Store

logger = logging.getLogger(__name__)

MEDIA_EXTS = tuple(sorted(set(AUDIO_EXTS) | set(VIDEO_EXTS) | SOUNDFILE_EXTS))
MANIFEST_EXTS = (".json", ".csv")


def list_media(paths):
    """Absolute paths of the media files in ``paths`` (files, folders walked recursively,
    or manifests: their entries' ``video``, else ``wav``), sorted, without repeats.

    Raises
    ------
    FileNotFoundError
        A path that does not exist.
    """
    from speechbrain_cavmae.data.manifest import read_manifest

    found = set()
    for path in paths:
        path = os.fspath(path)
        if os.path.isdir(path):
            for root, _, names in os.walk(path):
                found.update(os.path.join(root, n) for n in names
                             if n.lower().endswith(MEDIA_EXTS))
        elif os.path.isfile(path) and path.lower().endswith(MANIFEST_EXTS):
            for entry in read_manifest(path).values():
                media = entry.get("video") or entry.get("wav")
                if media:
                    found.add(media)
        elif os.path.isfile(path):
            found.add(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return sorted(os.path.abspath(p) for p in found)


def _stat(path):
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def plan(store, media, use_hash=False):
    """What a run does: ``(todo, removed, forgotten, skipped, unchanged)``.

    The SHA-256 of every file to embed is recorded; ``use_hash`` compares it for files
    whose size or time changed. ``todo``: ``(path, size, mtime_ns, sha256, is_update)`` to
    embed; ``removed``: indexed paths no longer on disk; ``forgotten``: bad files no longer
    on disk; ``skipped``: ``(path, reason)`` of unchanged bad files; ``unchanged``: how
    many indexed files are kept as they are.
    """
    indexed, bad = store.files(), store.bad()
    todo, skipped, unchanged = [], [], 0
    for path in media:
        try:
            size, mtime = _stat(path)
        except OSError as exc:
            skipped.append((path, f"cannot stat ({exc.strerror})"))
            continue
        if path in indexed:
            _, old_size, old_mtime, old_sha = indexed[path]
            if (old_size, old_mtime) == (size, mtime):
                unchanged += 1
                continue
            sha = sha256(path)
            if use_hash and sha == old_sha:
                store.touch(path, size, mtime, sha)
                unchanged += 1
                continue
            todo.append((path, size, mtime, sha, True))
            continue
        if path in bad and bad[path][:2] == (size, mtime):
            skipped.append((path, bad[path][2]))
            continue
        todo.append((path, size, mtime, sha256(path), False))
    present = set(media)
    removed = [p for p in indexed if p not in present and not os.path.exists(p)]
    forgotten = [p for p in bad if p not in present and not os.path.exists(p)]
    return todo, removed, forgotten, skipped, unchanged


def update_index(paths, folder, embedder, settings, batch_files=8, use_hash=False,
                 progress=None):
    """Add, update and drop files of the index in ``folder``; returns the summary.

    Arguments
    ---------
    paths : list of str
        Folders, media files and manifests.
    folder : str
        The index folder (created when missing).
    embedder : Embedder
        The model.
    settings : dict
        What the index records about its model (``model``, ``num_heads``...): a second run
        must match them.
    batch_files : int
        Files per transaction.
    use_hash : bool
        Compare content hashes of files whose size or time changed.
    progress : callable, optional
        Wraps an iterable of files (a progress bar).

    Returns
    -------
    dict
        ``added``, ``updated``, ``removed``, ``unchanged`` (counts), ``skipped`` (list of
        ``{"path", "reason"}``), ``files`` / ``segments`` / ``clips`` (index totals).
    """
    media = list_media(paths)
    store = Store(folder, create=True)
    try:
        settings = dict(settings, dim=embedder.dim, window_s=embedder.window_s,
                        hop_s=embedder.hop_s)
        old = store.settings()
        clash = {k: (old[k], v) for k, v in settings.items() if k in old and old[k] != v}
        if clash:
            what = ", ".join(f"{k}: {a!r}, now {b!r}" for k, (a, b) in clash.items())
            raise ValueError(f"{folder}: this index was built with other settings ({what}); "
                             "index into a new --output folder")
        store.set_settings(**settings)
        todo, removed, forgotten, skipped, unchanged = plan(store, media, use_hash)
        if removed or forgotten:
            store.commit_batch([], [], removed + forgotten)
        summary = {"added": 0, "updated": 0, "removed": len(removed), "unchanged": unchanged,
                   "skipped": [{"path": p, "reason": r} for p, r in skipped]}
        items = progress(todo) if progress else todo
        done, bad = [], []
        for path, size, mtime, sha, is_update in items:
            try:
                moments = embedder.moments(path)
            except BadSampleError as err:
                logger.warning("skipping %s", err)
                bad.append((path, size, mtime, err.reason))
                summary["skipped"].append({"path": path, "reason": err.reason})
            else:
                done.append((path, size, mtime, sha, moments))
                summary["updated" if is_update else "added"] += 1
            if len(done) + len(bad) >= batch_files:
                store.commit_batch(done, bad)
                done, bad = [], []
        store.commit_batch(done, bad)
        store.rebuild()
        summary.update(store.counts())
        summary.pop("bad", None)
        return summary
    finally:
        store.close()
