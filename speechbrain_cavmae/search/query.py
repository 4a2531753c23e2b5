"""Search an index by sound or by sight (``cavmae search``).

Example
-------
>>> from speechbrain_cavmae.search import VideoSearch  # doctest: +SKIP
>>> search = VideoSearch.from_hparams("my-index")  # doctest: +SKIP
>>> search.search_file("dog.wav", modality="audio", target="visual", top_k=3)  # doctest: +SKIP
[Hit(path='/videos/park.mp4', start=12.0, end=22.24, score=0.81, ...), ...]

Authors
 * speechbrain-cavmae contributors 2026
"""

import logging
import os
from collections import namedtuple

import numpy as np

from speechbrain_cavmae.search.store import LEVELS, MODALITIES, Store

logger = logging.getLogger(__name__)

#: One search result: the moment ``[start, end]`` (seconds) of ``path``.
Hit = namedtuple("Hit", ["path", "start", "end", "score", "file_id", "segment_id"])
#: Candidates fetched per wanted hit when overlapping moments are left out.
OVERFETCH = 8


def parse_indexed(text):
    """``PATH@SECONDS`` -> ``(path, seconds)``.

    Example
    -------
    >>> parse_indexed("clips/a@b.mp4@12.5")
    ('clips/a@b.mp4', 12.5)
    """
    path, sep, seconds = str(text).rpartition("@")
    try:
        if not sep or not path:
            raise ValueError
        return path, float(seconds)
    except ValueError:
        raise ValueError(f"--indexed {text!r}: expected PATH@SECONDS, e.g. clip.mp4@12.5") \
            from None


class VideoSearch:
    """Moments of the indexed files nearest a query, same-modal or cross-modal.

    Arguments
    ---------
    store : Store
        The index.
    embedder : Embedder, optional
        The index's model, for queries by file (loaded on first use when None).
    """

    def __init__(self, store, embedder=None, **model_options):
        self.store = store
        self._embedder = embedder
        self._model_options = model_options

    @classmethod
    def from_hparams(cls, source, model=None, device="cpu", trust_remote_code=False,
                     **kwargs):
        """Open the index folder ``source``; the model it was built with is loaded when a
        query needs it (``model`` overrides its recorded location)."""
        options = dict(model=model, device=device, trust_remote_code=trust_remote_code,
                       **kwargs)
        return cls(Store(source), None, **options)

    @property
    def settings(self):
        return self.store.settings()

    @property
    def embedder(self):
        """The index's model (loaded on first use)."""
        if self._embedder is None:
            from speechbrain_cavmae.search.embedder import Embedder

            s, opts = self.settings, dict(self._model_options)
            model = opts.pop("model", None) or s.get("model")
            if not model:
                raise ValueError(f"{self.store.folder}: the index records no model: pass "
                                 "--model")
            embedder = Embedder.load(
                model, num_heads=s.get("num_heads"), decoder_num_heads=s.get("decoder_num_heads"),
                hop_s=s.get("hop_s"), **opts)
            if s.get("dim") not in (None, embedder.dim):
                raise ValueError(f"{model} embeds {embedder.dim}-d vectors, the index "
                                 f"{self.store.folder} holds {s['dim']}-d ones: use the model "
                                 f"it was built with ({s.get('model')})")
            self._embedder = embedder
        return self._embedder

    # ------------------------------------------------------------------ queries
    def search_vector(self, vector, target, top_k=10, level="segment", overlapping=False):
        """Hits nearest a normalised ``vector`` among the ``target`` vectors.

        Overlapping windows of one file look alike: unless ``overlapping``, a moment that
        overlaps a better hit of the same file is left out (so the ``top_k`` hits are
        distinct moments)."""
        if target not in MODALITIES:
            raise ValueError(f"target must be one of {MODALITIES}, got {target!r}")
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        index = self.store.faiss(target, level)
        if index is None:
            return []
        query = np.ascontiguousarray(np.asarray(vector, np.float32).reshape(1, -1))
        wanted = int(top_k) if overlapping or level == "clip" else int(top_k) * OVERFETCH
        scores, ids = index.search(query, min(wanted, index.ntotal))
        found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
        rows = self.store.segments([i for i, _ in found])
        hits = []
        for i, score in found:
            if i not in rows:
                continue
            hit = Hit(rows[i][1], rows[i][2], rows[i][3], score, rows[i][0], i)
            if overlapping or not any(h.file_id == hit.file_id and h.start < hit.end
                                      and hit.start < h.end for h in hits):
                hits.append(hit)
            if len(hits) == top_k:
                break
        return hits

    def search_file(self, path, modality, target=None, top_k=10, start=None, end=None,
                    level="segment", overlapping=False):
        """Hits for a media file's sound (``modality="audio"``) or sight (``"visual"``):
        the whole file (its clip vector) or the range ``[start, end]`` seconds.

        Raises
        ------
        BadSampleError
            The file cannot be read.
        ValueError
            The file has no stream of ``modality``.
        """
        whole = start is None and end is None
        moments = self.embedder.moments(path, start, end)
        vectors = getattr(moments, modality)
        if vectors is None:
            stream, other = ("audio", "video") if modality == "audio" else ("video", "audio")
            raise ValueError(f"{path}: no {stream} stream to search by; use --{other}")
        vector = moments.clip(modality) if whole else vectors[0]
        return self.search_vector(vector, target or modality, top_k, level, overlapping)

    def search_indexed(self, path, seconds, modality="audio", target=None, top_k=10,
                       level="segment", overlapping=False):
        """Hits for the indexed moment of ``path`` at ``seconds`` (its vector as stored)."""
        found = next((p for p in (os.path.abspath(path), path)
                      if self.store.file_id(p) is not None), None)
        if found is None:
            raise ValueError(f"{path}: not in the index {self.store.folder}")
        segment_id, _, _ = self.store.segment_at(found, seconds)
        return self.search_segment(segment_id, modality, target, top_k, level, overlapping)

    def search_segment(self, segment_id, modality="audio", target=None, top_k=10,
                       level="segment", overlapping=False):
        """Hits for an indexed segment's ``modality`` vector."""
        vector = self.store.vector(segment_id, modality)
        if vector is None:
            raise ValueError(f"segment {segment_id} has no {modality} vector")
        return self.search_vector(vector, target or modality, top_k, level, overlapping)
