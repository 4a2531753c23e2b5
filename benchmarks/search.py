"""Search at scale and indexing speed (``cavmae index`` / ``cavmae search``), in one run.

``python -m benchmarks.search [--n 1000000] [--out DIR]`` measures, on the CPU:

1. **Search**: ``--n`` synthetic 768-d vectors, clustered like real embeddings (below),
   indexed with the index type :func:`speechbrain_cavmae.search.store.index_factory`
   picks for that size (``IVF2048,Flat`` with ``nprobe`` 32 at 10^6); ``--queries`` fresh
   queries from the same distribution, searched one at a time (as a user's query) on
   ``--threads`` threads; latency (median, 95th percentile) and recall@10 against exact
   search (``faiss.knn``, brute force inner product), also for other ``nprobe`` values.
2. **Indexing**: a ViT-B CAV-MAE (random weights, 1024 fbank frames, 224 px) embeds the
   windows of the sample clips (``/work/shared/samples`` or ``--clips``) with one torch
   thread: seconds of media per second of one core.

Synthetic vectors: ``--clusters`` centres (unit Gaussian directions) with Zipf-like sizes
(weight ``1 / rank^0.8``: a few common sounds, a long tail); a vector is its centre plus a
low-rank part (a 64-d Gaussian through a fixed random ``64 x 768`` map, shared by all
clusters, as embeddings vary along few directions) plus isotropic noise, then
L2-normalised. The mean cosine to its centre is about 0.75 and to its nearest other
cluster's members about 0.45 (logged).

Writes ``search.json`` (and logs a summary) in ``--out``.
"""

import argparse
import glob
import logging
import os
import statistics
import time

import numpy as np

from benchmarks.machine import machine_description
from speechbrain_cavmae.data.files import atomic_write_json

logger = logging.getLogger(__name__)

SAMPLES = "/work/shared/samples"


class Embeddings:
    """Synthetic embeddings with the structure of an index of videos (see the module
    docstring): topics -> videos -> moments."""

    def __init__(self, n, dim, topics, per_video=10, seed=1234):
        setup = np.random.default_rng(seed)
        self.dim, self.n = dim, n
        self.topics = _unit(setup.standard_normal((topics, dim)).astype(np.float32))
        self.low_rank = setup.standard_normal((64, dim)).astype(np.float32) / np.sqrt(64 * dim)
        weights = 1.0 / np.arange(1, topics + 1) ** 0.8
        self.videos = self.new_videos(setup, n // per_video, weights / weights.sum())

    def _noise(self, rng, m, low, iso):
        return (low * rng.standard_normal((m, 64)).astype(np.float32) @ self.low_rank
                + iso * rng.standard_normal((m, self.dim)).astype(np.float32) / np.sqrt(self.dim))

    def new_videos(self, rng, m, weights=None):
        """``[m, dim]`` video centres: a topic (Zipf-weighted) plus variation."""
        k = rng.choice(len(self.topics), m, p=weights)
        return _unit(self.topics[k] + self._noise(rng, m, 0.7, 0.5))

    def moments(self, rng, videos):
        """One moment of each of ``videos`` (centres): the centre plus a little noise."""
        return _unit(videos + self._noise(rng, len(videos), 0.3, 0.3))

    def base(self, seed=0, chunk=100_000):
        """The ``n`` indexed moments (``n / per_video`` videos, moments in order)."""
        rng = np.random.default_rng(seed)
        per_video = self.n // len(self.videos)
        out = np.empty((self.n, self.dim), np.float32)
        for i in range(0, self.n, chunk):
            m = min(chunk, self.n - i)
            out[i:i + m] = self.moments(rng, self.videos[(np.arange(i, i + m) // per_video)
                                                          % len(self.videos)])
        return out


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def bench_search(args):
    """Latency and recall@10 of the size-chosen index against exact search."""
    import faiss

    from speechbrain_cavmae.search.store import build_faiss, index_factory

    faiss.omp_set_num_threads(args.threads)
    t0 = time.perf_counter()
    synth = Embeddings(args.n, args.dim, args.clusters)
    base = synth.base()
    rng = np.random.default_rng(1)
    kinds = {  # another moment of an indexed video; a moment of a video not indexed
        "indexed_video": synth.moments(rng, synth.videos[rng.choice(len(synth.videos),
                                                                    args.queries)]),
        "new_video": synth.moments(rng, synth.new_videos(rng, args.queries)),
    }
    made = time.perf_counter() - t0
    factory, nprobe = index_factory(args.n, args.dim)
    t0 = time.perf_counter()
    index = build_faiss(base, np.arange(args.n, dtype=np.int64))
    build_s = time.perf_counter() - t0
    logger.info("%d vectors made in %.1f s; %s built in %.1f s", args.n, made, factory,
                build_s)
    probes = sorted({nprobe, 16, 64, 128, 256} if nprobe else {None})
    ivf = faiss.extract_index_ivf(index) if nprobe else None
    result = {"n": args.n, "dim": args.dim, "topics": args.clusters, "queries": args.queries,
              "threads": args.threads, "index": factory, "default_nprobe": nprobe,
              "build_s": build_s, "memory_bytes_per_vector": args.dim * 4 + 8}
    for kind, queries in kinds.items():
        t0 = time.perf_counter()
        exact_scores, exact = faiss.knn(queries, base, 10, metric=faiss.METRIC_INNER_PRODUCT)
        result[f"{kind}_exact_search_s"] = time.perf_counter() - t0
        result[f"{kind}_cos_1st_10th"] = [float(exact_scores[:, 0].mean()),
                                          float(exact_scores[:, 9].mean())]
        rows = result[f"{kind}_runs"] = []
        for probe in probes:
            if ivf is not None:
                ivf.nprobe = probe
            times, recalls = [], []
            for q in range(args.queries):
                t0 = time.perf_counter()
                _, found = index.search(queries[q:q + 1], 10)
                times.append(time.perf_counter() - t0)
                recalls.append(len(set(found[0]) & set(exact[q])) / 10)
            rows.append({"nprobe": probe, "median_ms": 1000 * statistics.median(times),
                         "p95_ms": 1000 * float(np.percentile(times, 95)),
                         "recall_at_10": float(np.mean(recalls))})
            logger.info("%s queries, nprobe %s: median %.2f ms, p95 %.2f ms, recall@10 %.3f "
                        "(cosine of exact 1st / 10th: %.2f / %.2f)", kind, probe,
                        rows[-1]["median_ms"], rows[-1]["p95_ms"], rows[-1]["recall_at_10"],
                        *result[f"{kind}_cos_1st_10th"])
    return result


def bench_indexing(args):
    """Seconds of media per second of one core, ViT-B on the CPU."""
    import torch

    from speechbrain_cavmae.model.cavmae import CAVMAE
    from speechbrain_cavmae.search.embedder import Embedder

    torch.set_num_threads(1)
    clips = args.clips or sorted(glob.glob(os.path.join(SAMPLES, "*.mp4")))
    if not clips:
        logger.warning("no clips for the indexing benchmark (--clips)")
        return None
    torch.manual_seed(0)
    embedder = Embedder(CAVMAE().eval())  # ViT-B, audio_length 1024, 224 px
    embedder.moments(clips[0])  # warm-up
    out = []
    for path in clips:
        t0 = time.perf_counter()
        duration, starts, ends, fbank, frames, _ = embedder.read(path)
        read_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        embedder.embed(fbank, frames)
        embed_s = time.perf_counter() - t0
        out.append({"clip": os.path.basename(path), "duration_s": duration,
                    "windows": len(starts), "read_s": read_s, "embed_s": embed_s,
                    "media_s_per_core_s": duration / (read_s + embed_s)})
        logger.info("%s: %.1f s of media, %d windows, read %.2f s, embed %.2f s",
                    out[-1]["clip"], duration, len(starts), read_s, embed_s)
    total = sum(r["duration_s"] for r in out) / sum(r["read_s"] + r["embed_s"] for r in out)
    windows = sum(r["windows"] for r in out) / sum(r["embed_s"] for r in out)
    return {"model": "ViT-B CAV-MAE (random weights), 1024 frames, 224 px", "threads": 1,
            "window_s": embedder.window_s, "hop_s": embedder.hop_s, "clips": out,
            "media_s_per_core_s": total, "windows_per_core_s": windows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clips", nargs="*", default=None)
    parser.add_argument("--skip_indexing", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/search")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.makedirs(args.out, exist_ok=True)
    result = {"machine": machine_description(), "search": bench_search(args)}
    atomic_write_json(os.path.join(args.out, "search.json"), result)
    if not args.skip_indexing:
        result["indexing"] = bench_indexing(args)
        atomic_write_json(os.path.join(args.out, "search.json"), result)
    return result


if __name__ == "__main__":
    main()
