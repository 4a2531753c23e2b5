"""Batched Sync retrieval strategies against the Sync authors' ``src/retrieval.py`` loops.

Per-frame embeddings of ``--clips`` clips x 16 frames x 768 dims (random with structure: a
per-clip and a per-frame component shared by audio and visual, plus noise; L2-normalised
as their pipeline normalises them) are ranked both ways (audio->visual, visual->audio) by
:func:`speechbrain_cavmae.training.frame_retrieval.frame_retrieval_metrics` for every
strategy, and by their own functions (``get_similarity``, ``get_agg_sim_mat``,
``compute_metrics``, read from ``--their_retrieval``, a copy of their ``src/retrieval.py``:
the function definitions are compiled from that file, nothing of it is copied here) on the
first ``--their_clips`` clips, given torch tensors as their script gives them. Their loops
cost the same for every clip pair, so their time for all clips is the subset's time per
pair times the number of pairs: an extrapolation, labelled as such in the output. On the
subset both give the same R@1/5/10 and median rank (checked, recorded).

Usage::

    git -C /work/.mirror/edsonroteia+cav-mae-sync/repo show HEAD:src/retrieval.py > /tmp/r.py
    python -m benchmarks.sync_retrieval --their_retrieval /tmp/r.py \\
        --out benchmarks/results/2026-12-08-sync-retrieval/sync_retrieval.json
"""

import argparse
import ast
import json
import logging
import os
import time

import numpy as np
import torch

from benchmarks.machine import machine_description
from speechbrain_cavmae.training.frame_retrieval import STRATEGIES, frame_retrieval_metrics

logger = logging.getLogger(__name__)

THEIR_FUNCTIONS = ("get_similarity", "get_agg_sim_mat", "compute_metrics")


def load_their_functions(path):
    """The functions ``THEIR_FUNCTIONS`` compiled from their ``retrieval.py`` (without
    running its imports of their model and data code), with the names they use."""
    with open(path, encoding="utf8") as handle:
        tree = ast.parse(handle.read(), path)
    defs = [node for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name in THEIR_FUNCTIONS]
    missing = set(THEIR_FUNCTIONS) - {d.name for d in defs}
    if missing:
        raise ValueError(f"{path}: no {sorted(missing)}")
    namespace = {"np": np, "dot": np.dot, "norm": np.linalg.norm, "print": lambda *a: None}
    exec(compile(ast.Module(body=defs, type_ignores=[]), path, "exec"), namespace)  # noqa: S102
    return {name: namespace[name] for name in THEIR_FUNCTIONS}


def structured_embeddings(clips, frames=16, dim=768, seed=0, clip_weight=0.12,
                          frame_weight=0.1):
    """Normalised audio and visual ``[clips, frames, dim]`` float32 embeddings: a shared
    per-clip and per-frame component, weak against unit noise so that ranks spread."""
    g = torch.Generator().manual_seed(seed)
    clip = clip_weight * torch.randn(clips, 1, dim, generator=g)
    frame = frame_weight * torch.randn(clips, frames, dim, generator=g)
    audio = clip + frame + torch.randn(clips, frames, dim, generator=g)
    visual = clip + frame + torch.randn(clips, frames, dim, generator=g)
    return (torch.nn.functional.normalize(audio, dim=-1),
            torch.nn.functional.normalize(visual, dim=-1))


def ours(audio, visual, strategy, chunk_size):
    start = time.perf_counter()
    metrics = frame_retrieval_metrics(audio, visual, strategy, chunk_size=chunk_size)
    return time.perf_counter() - start, metrics


def theirs(funcs, audio, visual, strategy):
    """Their two directions (``get_agg_sim_mat`` then ``compute_metrics`` each)."""
    start = time.perf_counter()
    out = {}
    for name, a, b in (("a2v", audio, visual), ("v2a", visual, audio)):
        result = funcs["compute_metrics"](funcs["get_agg_sim_mat"](a, b, strategy=strategy))
        out.update({f"{name}_R@1": result["R1"], f"{name}_R@5": result["R5"],
                    f"{name}_R@10": result["R10"], f"{name}_MedR": float(result["MR"])})
    return time.perf_counter() - start, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--their_retrieval", required=True, help="their src/retrieval.py")
    parser.add_argument("--clips", type=int, default=1520)
    parser.add_argument("--their_clips", type=int, default=60,
                        help="clips of the subset their loops run on")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--chunk_size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    funcs = load_their_functions(args.their_retrieval)
    audio, visual = structured_embeddings(args.clips, args.frames, args.dim)
    sub_a, sub_v = audio[:args.their_clips], visual[:args.their_clips]
    rows = []
    for strategy in STRATEGIES:
        ours(audio[:8], visual[:8], strategy, args.chunk_size)  # warm-up
        ours_s, ours_metrics = ours(audio, visual, strategy, args.chunk_size)
        sub_s, sub_theirs = theirs(funcs, sub_a, sub_v, strategy)
        _, sub_ours = ours(sub_a, sub_v, strategy, args.chunk_size)
        sub_ours.pop("strategy")
        equal = sub_ours == sub_theirs
        pairs_sub, pairs_all = args.their_clips ** 2, args.clips ** 2
        extrapolated = sub_s / pairs_sub * pairs_all
        row = {"strategy": strategy, "ours_s": round(ours_s, 4),
               "theirs_subset_s": round(sub_s, 3), "theirs_subset_clips": args.their_clips,
               "theirs_extrapolated_s": round(extrapolated, 1),
               "ratio_extrapolated": round(extrapolated / ours_s, 1),
               "equal_metrics_on_subset": equal, "ours_metrics": ours_metrics,
               "subset_metrics": sub_theirs}
        rows.append(row)
        print(f"{strategy:14s} ours {ours_s:8.3f} s ({args.clips} clips)  theirs "
              f"{sub_s:7.2f} s on {args.their_clips} clips -> {extrapolated:8.0f} s "
              f"extrapolated  ratio {extrapolated / ours_s:9.0f}x  equal on subset: {equal}")
    result = {"what": "Sync retrieval: batched strategies vs their loops (both directions)",
              "clips": args.clips, "frames": args.frames, "dim": args.dim,
              "threads": args.threads, "chunk_size": args.chunk_size,
              "machine": machine_description(), "load_average": os.getloadavg(),
              "their_time": "measured on the subset, extrapolated by pairs (clips^2)",
              "rows": rows}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf8") as handle:
            json.dump(result, handle, indent=1)
    return result


if __name__ == "__main__":
    main()
