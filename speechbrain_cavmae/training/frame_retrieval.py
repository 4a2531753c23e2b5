"""Retrieval over per-frame embeddings: the four strategies of CAV-MAE Sync, batched.

A clip is ``K`` frame-segment pairs, each with an audio and a visual embedding
(``[N, K, D]`` per stream). The similarity of query clip ``i`` and gallery clip ``j``
aggregates the cosine similarities of their frames (``a_ik``: frame ``k`` of query ``i``,
``b_jl``: frame ``l`` of gallery item ``j``, both L2-normalised):

================  =========================================  ==========================
strategy          similarity(i, j)                           computed as
================  =========================================  ==========================
``diagonal_mean`` mean over k of ``a_ik . b_jk``             ``[N, K*D] @ [K*D, N] / K``
``diagonal_max``  max over k of ``a_ik . b_jk``              K products, running max
``mean``          mean over k, l of ``a_ik . b_jl``          means of the frames, one product
``max``           max over k, l of ``a_ik . b_jl``           ``[c*K, D] @ [D, g*K]``, max
================  =========================================  ==========================

These are the definitions of ``get_agg_sim_mat`` in the Sync authors' ``src/retrieval.py``,
which loops over clip pairs and frame pairs in Python; here they are matrix products over
blocks of ``chunk_size`` queries and as many gallery clips as keep a block under
``block_elements`` numbers, so memory is bounded by ``chunk_size x N`` for the rows being
ranked plus one block, whatever N. Note that ``mean`` is the dot product of the *mean of the
normalised* frame embeddings (not the cosine of the mean embedding, which the clip-level
retrieval of :func:`~speechbrain_cavmae.training.metrics.retrieval_metrics` ranks by).
With ``K = 1`` all four equal the clip-level cosine retrieval.

Ranks, recall and median rank follow :mod:`~speechbrain_cavmae.training.metrics`: the rank
of the match counts the gallery clips strictly more similar (equal to the position the
reference's ``compute_metrics`` finds when the row has no tie with the match; with ties the
reference counts every tied position, we keep the optimistic one).

Example
-------
>>> import torch
>>> audio = torch.randn(6, 4, 8)
>>> out = frame_retrieval_metrics(audio, audio + 0.01 * torch.randn(6, 4, 8), "max", ks=(1,))
>>> out["a2v_R@1"], out["v2a_MedR"]
(1.0, 1.0)
"""

import torch

from .metrics import median_rank, recall_at_k

__all__ = ["STRATEGIES", "similarity_rows", "similarity_matrix", "strategy_ranks",
           "frame_retrieval_metrics"]

#: The aggregation strategies of ``cavmae retrieval --strategy``.
STRATEGIES = ("diagonal_mean", "diagonal_max", "mean", "max")

#: Default bound on the numbers of one block of frame-pair similarities (128 MiB float32).
BLOCK_ELEMENTS = 1 << 25


def _prepare(x, name, dtype=None):
    """``[N, K, D]`` float tensor with L2-normalised frames."""
    x = torch.as_tensor(x).detach()
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape [clips, frames, dim], got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (no clips)")
    dtype = dtype or (torch.float64 if x.dtype == torch.float64 else torch.float32)
    x = x.to(dtype)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return torch.nn.functional.normalize(x, dim=-1)


def _check(queries, gallery, strategy):
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    q = _prepare(queries, "queries")
    g = _prepare(gallery, "gallery", q.dtype).to(q.device)
    if q.shape[1:] != g.shape[1:]:
        raise ValueError(f"queries {tuple(q.shape)} and gallery {tuple(g.shape)} must have "
                         "the same frames and dimension")
    return q, g


def _block(q, g, strategy):
    """Similarities [c, g] of query clips ``q`` [c, K, D] and gallery clips ``g`` [g, K, D]
    (normalised frames) for ``max`` and ``diagonal_max``."""
    c, k, d = q.shape
    if strategy == "max":
        sim = q.reshape(c * k, d) @ g.reshape(-1, d).t()  # [c*K, g*K]
        return sim.view(c, k, -1, k).amax(dim=(1, 3))
    return torch.bmm(q.transpose(0, 1), g.permute(1, 2, 0)).amax(dim=0)  # [K, c, g] -> max


def similarity_rows(queries, gallery, strategy, chunk_size=256, block_elements=BLOCK_ELEMENTS):
    """Yield ``(start, stop, sim)``: the similarities ``[stop - start, N_gallery]`` of query
    clips ``start:stop`` to every gallery clip, ``chunk_size`` queries at a time.

    Arguments
    ---------
    queries, gallery : torch.Tensor
        ``[N_q, K, D]`` and ``[N_g, K, D]`` per-frame embeddings (normalised here).
    strategy : str
        One of :data:`STRATEGIES`.
    chunk_size : int
        Query clips per row block.
    block_elements : int
        At most this many frame-pair similarities are held at once (``max``,
        ``diagonal_max``): the gallery is walked in pieces that fit.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    q, g = _check(queries, gallery, strategy)
    n, k, _ = q.shape
    if strategy == "mean":
        q, g = q.mean(dim=1), g.mean(dim=1)
    elif strategy == "diagonal_mean":
        q, g = q.flatten(1) / k, g.flatten(1)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        if strategy in ("mean", "diagonal_mean"):
            yield start, stop, q[start:stop] @ g.t()
            continue
        rows = q[start:stop]
        per_item = (stop - start) * k * (k if strategy == "max" else 1)
        step = max(1, block_elements // per_item)
        sim = torch.cat([_block(rows, g[j:j + step], strategy)
                         for j in range(0, g.shape[0], step)], dim=1)
        yield start, stop, sim


def similarity_matrix(queries, gallery, strategy, chunk_size=256,
                      block_elements=BLOCK_ELEMENTS):
    """The whole ``[N_q, N_g]`` similarity matrix of :func:`similarity_rows` (small sets).

    Example
    -------
    >>> a = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    >>> [round(float(similarity_matrix(a, a, s)), 3) for s in STRATEGIES]
    [1.0, 1.0, 0.5, 1.0]
    """
    return torch.cat([sim for _, _, sim in similarity_rows(queries, gallery, strategy,
                                                            chunk_size, block_elements)])


def strategy_ranks(queries, gallery, strategy, chunk_size=256, block_elements=BLOCK_ELEMENTS):
    """0-based rank of the matching gallery clip (clip ``i`` matches clip ``i``) of every
    query under ``strategy``: the number of gallery clips strictly more similar.

    Returns
    -------
    torch.LongTensor
        [N] ranks (on the device of ``queries``).
    """
    queries = torch.as_tensor(queries)
    if torch.as_tensor(gallery).shape[0] != queries.shape[0]:
        raise ValueError(f"{queries.shape[0]} query clips but {len(gallery)} gallery clips: "
                         "clip i of one must match clip i of the other")
    ranks = []
    for start, stop, sim in similarity_rows(queries, gallery, strategy, chunk_size,
                                            block_elements):
        rows = torch.arange(stop - start, device=sim.device)
        diag = sim[rows, rows + start].unsqueeze(1)
        ranks.append((sim > diag).sum(dim=1))
    return torch.cat(ranks)


def frame_retrieval_metrics(audio_emb, visual_emb, strategy, ks=(1, 5, 10), chunk_size=256,
                            block_elements=BLOCK_ELEMENTS):
    """Audio->visual and visual->audio R@k and median rank under ``strategy``.

    Arguments
    ---------
    audio_emb, visual_emb : torch.Tensor
        ``[N, K, D]`` per-frame (frame-segment) embeddings of the same N clips.
    strategy : str
        One of :data:`STRATEGIES`.

    Returns
    -------
    dict
        The keys of :func:`~speechbrain_cavmae.training.metrics.retrieval_metrics`
        (``a2v_R@k``, ``v2a_R@k``, ``a2v_MedR``, ``v2a_MedR``) and ``strategy``.
    """
    out = {"strategy": strategy}
    for name, q, g in (("a2v", audio_emb, visual_emb), ("v2a", visual_emb, audio_emb)):
        ranks = strategy_ranks(q, g, strategy, chunk_size, block_elements)
        for key, value in recall_at_k(ranks, ks).items():
            out[f"{name}_{key}"] = value
        out[f"{name}_MedR"] = median_rank(ranks)
    return out
