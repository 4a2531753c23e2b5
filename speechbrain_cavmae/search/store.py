"""An index folder: SQLite metadata and vectors, faiss indexes built from them.

::

    INDEX/
      index.sqlite          files, segments (with their vectors and thumbnails), bad files,
                            settings; every batch of files is one transaction
      audio-segment.faiss   faiss indexes of the vectors, one per (modality, level);
      visual-clip.faiss...  rebuilt when the SQLite generation they record is stale

SQLite is the truth: a run killed mid-batch loses that batch's transaction and nothing
else, and the faiss files are a cache rebuilt from SQLite (on ``cavmae index``'s end, or
when a search finds them stale). Vectors are float32 blobs, L2-normalised, so inner
product is cosine similarity.

Index type by size (:func:`index_factory`; see ``docs/search.md``): exact ``Flat`` below
100k vectors, ``IVF{nlist},Flat`` (nlist ~ 2 sqrt(n), a power of two) below 5M,
``IVF{nlist},SQ8`` (1 byte per dimension) below 50M, then ``IVF{nlist},PQ96``.

Authors
 * speechbrain-cavmae contributors 2026
"""

import json
import logging
import math
import os
import sqlite3

import numpy as np

from speechbrain_cavmae.data.files import atomic_path

logger = logging.getLogger(__name__)

DB_FILE = "index.sqlite"
MODALITIES = ("audio", "visual")
LEVELS = ("segment", "clip")
#: Fraction of the inverted lists an IVF index probes (recall@10 >= 0.95 on the
#: clustered benchmark, ``benchmarks/search.py``), at least MIN_NPROBE lists.
NPROBE_FRACTION = 1 / 64
MIN_NPROBE = 16

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, sha256 TEXT, duration REAL NOT NULL,
    has_audio INTEGER NOT NULL, has_video INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY, file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    level TEXT NOT NULL, start REAL NOT NULL, end REAL NOT NULL,
    audio BLOB, visual BLOB, thumb BLOB);
CREATE INDEX IF NOT EXISTS segments_file ON segments(file_id);
CREATE TABLE IF NOT EXISTS bad (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, reason TEXT NOT NULL);
"""


def index_factory(n, dim):
    """``(faiss factory string, nprobe or None)`` for ``n`` vectors of width ``dim``.

    Example
    -------
    >>> index_factory(5_000, 768), index_factory(1_000_000, 768)
    (('Flat', None), ('IVF2048,Flat', 32))
    >>> index_factory(100_000_000, 768)[0]
    'IVF16384,PQ96'
    """
    if n < 100_000:
        return "Flat", None
    nlist = 2 ** round(math.log2(2 * math.sqrt(n)))
    nprobe = max(MIN_NPROBE, int(nlist * NPROBE_FRACTION))
    if n < 5_000_000:
        return f"IVF{nlist},Flat", nprobe
    if n < 50_000_000:
        return f"IVF{nlist},SQ8", nprobe
    return f"IVF{nlist},PQ{min(96, dim // 8)}", nprobe


def build_faiss(vectors, ids, train_size=None):
    """A faiss index (inner product) of ``vectors [n, dim]`` with ids ``ids [n]``."""
    import faiss

    n, dim = vectors.shape
    factory, nprobe = index_factory(n, dim)
    index = faiss.index_factory(dim, f"IDMap2,{factory}" if factory == "Flat" else factory,
                                faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        nlist = faiss.extract_index_ivf(index).nlist
        train_size = train_size or min(n, 40 * nlist)
        rng = np.random.default_rng(0)
        sample = vectors[np.sort(rng.choice(n, train_size, replace=False))]
        index.train(sample)
    index.add_with_ids(vectors, ids.astype(np.int64))
    if nprobe is not None:
        faiss.extract_index_ivf(index).nprobe = nprobe
    return index


class Store:
    """The SQLite database of an index folder (created when missing).

    Arguments
    ---------
    folder : str
        The index folder.
    create : bool
        Create the folder and database when missing (else a missing index is an error).
    """

    def __init__(self, folder, create=False):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, DB_FILE)
        if not os.path.isfile(self.path):
            if not create:
                raise FileNotFoundError(f"{self.folder}: no search index here (no {DB_FILE}; "
                                        "build one with cavmae index)")
            os.makedirs(self.folder, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.executescript(SCHEMA)
        self._faiss = {}

    def close(self):
        self.db.close()

    # ------------------------------------------------------------------ settings
    def settings(self):
        """The index settings (model, window, hop, dim...), ``{}`` for a new index."""
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM settings")}

    def set_settings(self, **values):
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO settings VALUES (?, ?)",
                                [(k, json.dumps(v)) for k, v in values.items()])

    @property
    def generation(self):
        """Counter bumped by every change of the vectors."""
        return int(self.settings().get("generation", 0))

    # ------------------------------------------------------------------ files
    def files(self):
        """``{path: (id, size, mtime_ns, sha256)}`` of the indexed files."""
        rows = self.db.execute("SELECT path, id, size, mtime_ns, sha256 FROM files")
        return {r[0]: tuple(r[1:]) for r in rows}

    def bad(self):
        """``{path: (size, mtime_ns, reason)}`` of the files that failed."""
        return {r[0]: tuple(r[1:]) for r in
                self.db.execute("SELECT path, size, mtime_ns, reason FROM bad")}

    def file(self, file_id):
        """``(path, duration, has_audio, has_video)`` of an indexed file, or None."""
        return self.db.execute("SELECT path, duration, has_audio, has_video FROM files "
                               "WHERE id = ?", (int(file_id),)).fetchone()

    def file_id(self, path):
        row = self.db.execute("SELECT id FROM files WHERE path = ?", (path,)).fetchone()
        return None if row is None else row[0]

    def commit_batch(self, done, bad, removed=()):
        """One transaction: the files of ``done`` (``(path, size, mtime_ns, sha256,
        Moments)``) replace their former rows, ``bad`` (``(path, size, mtime_ns,
        reason)``) are recorded, ``removed`` paths are dropped; the generation is bumped."""
        with self.db:
            for path in removed:
                self.db.execute("DELETE FROM files WHERE path = ?", (path,))
                self.db.execute("DELETE FROM bad WHERE path = ?", (path,))
            for path, size, mtime_ns, sha, m in done:
                self.db.execute("DELETE FROM files WHERE path = ?", (path,))
                self.db.execute("DELETE FROM bad WHERE path = ?", (path,))
                cur = self.db.execute(
                    "INSERT INTO files (path, size, mtime_ns, sha256, duration, has_audio, "
                    "has_video) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (path, size, mtime_ns, sha, float(m.duration), m.audio is not None,
                     m.visual is not None))
                fid = cur.lastrowid
                rows = [(fid, "segment", float(s), float(e), _blob(m.audio, i),
                         _blob(m.visual, i), m.thumbs[i] if m.thumbs else None)
                        for i, (s, e) in enumerate(zip(m.starts, m.ends))]
                middle = len(m.starts) // 2
                rows.append((fid, "clip", 0.0, float(m.duration), _blob(m.clip("audio")),
                             _blob(m.clip("visual")), m.thumbs[middle] if m.thumbs else None))
                self.db.executemany(
                    "INSERT INTO segments (file_id, level, start, end, audio, visual, thumb) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            self.db.executemany("INSERT OR REPLACE INTO bad VALUES (?, ?, ?, ?)", list(bad))
            if done or removed:
                self.db.execute("INSERT OR REPLACE INTO settings VALUES ('generation', ?)",
                                (json.dumps(self.generation + 1),))

    def touch(self, path, size, mtime_ns, sha):
        """Record a file's new size / time whose content (hash) did not change."""
        with self.db:
            self.db.execute("UPDATE files SET size = ?, mtime_ns = ?, sha256 = ? WHERE path = ?",
                            (size, mtime_ns, sha, path))

    # ------------------------------------------------------------------ segments
    def segment(self, segment_id):
        """``(file_id, path, level, start, end)`` of a segment, or None."""
        return self.db.execute(
            "SELECT s.file_id, f.path, s.level, s.start, s.end FROM segments s JOIN files f "
            "ON f.id = s.file_id WHERE s.id = ?", (int(segment_id),)).fetchone()

    def segments(self, ids):
        """``{id: (file_id, path, start, end, has_thumb)}`` of segment ``ids``."""
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(
            "SELECT s.id, s.file_id, f.path, s.start, s.end, s.thumb IS NOT NULL FROM segments "
            f"s JOIN files f ON f.id = s.file_id WHERE s.id IN ({marks})", ids)
        return {r[0]: tuple(r[1:]) for r in rows}

    def segment_at(self, path, seconds, level="segment"):
        """The segment of ``path`` whose centre is nearest ``seconds``: ``(id, start, end)``."""
        return self.db.execute(
            "SELECT s.id, s.start, s.end FROM segments s JOIN files f ON f.id = s.file_id "
            "WHERE f.path = ? AND s.level = ? ORDER BY abs((s.start + s.end) / 2 - ?) LIMIT 1",
            (path, level, float(seconds))).fetchone()

    def vector(self, segment_id, modality):
        """The ``modality`` vector of a segment, or None."""
        row = self.db.execute(f"SELECT {_column(modality)} FROM segments WHERE id = ?",
                              (int(segment_id),)).fetchone()
        return None if row is None or row[0] is None else np.frombuffer(row[0], np.float32)

    def thumb(self, segment_id):
        row = self.db.execute("SELECT thumb FROM segments WHERE id = ?",
                              (int(segment_id),)).fetchone()
        return None if row is None else row[0]

    def vectors(self, modality, level):
        """``(ids [n] int64, vectors [n, dim] float32)`` of one modality and level."""
        rows = self.db.execute(f"SELECT id, {_column(modality)} FROM segments WHERE level = ? "
                               f"AND {_column(modality)} IS NOT NULL ORDER BY id", (level,))
        ids, blobs = [], []
        for i, blob in rows:
            ids.append(i)
            blobs.append(np.frombuffer(blob, np.float32))
        dim = int(self.settings().get("dim", 0))
        if not ids:
            return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
        return np.asarray(ids, np.int64), np.stack(blobs)

    def counts(self):
        """Files, segments (per level) and bad files."""
        out = {"files": self.db.execute("SELECT count(*) FROM files").fetchone()[0],
               "bad": self.db.execute("SELECT count(*) FROM bad").fetchone()[0]}
        for level in LEVELS:
            out[f"{level}s"] = self.db.execute(
                "SELECT count(*) FROM segments WHERE level = ?", (level,)).fetchone()[0]
        return out

    # ------------------------------------------------------------------ faiss
    def faiss_path(self, modality, level):
        return os.path.join(self.folder, f"{_column(modality)}-{level}.faiss")

    def faiss(self, modality, level):
        """The faiss index of ``(modality, level)``: the saved one when its generation is
        current, else rebuilt from SQLite (and saved when the folder is writable); None
        when no vector of that kind exists."""
        import faiss

        key = (modality, level)
        generation = self.generation
        cached = self._faiss.get(key)
        if cached is not None and cached[0] == generation:
            return cached[1]
        path = self.faiss_path(modality, level)
        stamp = self.settings().get(f"faiss:{modality}-{level}")
        index = None
        if stamp == generation and os.path.isfile(path):
            index = faiss.read_index(path)
        else:
            ids, vectors = self.vectors(modality, level)
            if len(ids):
                index = build_faiss(vectors, ids)
                try:
                    with atomic_path(path) as tmp:
                        faiss.write_index(index, tmp)
                    self.set_settings(**{f"faiss:{modality}-{level}": generation})
                except OSError as exc:
                    logger.warning("cannot save %s (%s): kept in memory", path, exc)
        self._faiss[key] = (generation, index)
        return index

    def rebuild(self):
        """(Re)build every stale faiss index."""
        for modality in MODALITIES:
            for level in LEVELS:
                self.faiss(modality, level)


def _column(modality):
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    return modality


def _blob(vectors, i=None):
    if vectors is None:
        return None
    row = vectors if i is None else vectors[i]
    return np.ascontiguousarray(row, dtype=np.float32).tobytes()
