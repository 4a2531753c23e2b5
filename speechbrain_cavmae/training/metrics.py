"""Evaluation metrics for the CAV-MAE recipes (pure PyTorch).

Classification
    * :func:`average_precision_per_class` / :func:`mean_average_precision`:
      AudioSet-style mAP, each class computed like scikit-learn's
      ``average_precision_score`` on that column;
    * :func:`roc_auc_per_class` / :func:`mean_auc` and :func:`d_prime`;
    * :func:`topk_accuracy` for single-label datasets (VGGSound, the toy set).

Retrieval
    * :func:`retrieval_ranks`, :func:`recall_at_k`, :func:`median_rank` and
      :func:`retrieval_metrics` (audio->visual and visual->audio R@k and median
      rank under cosine similarity, computed in chunks of queries).

The accumulators of these over batches are in :mod:`speechbrain_cavmae.training.accumulators`.

Conventions shared with the reference CAV-MAE evaluation:
    * per-class AP and AUC are computed class by class on ``[N, C]`` score and
      multi-hot target matrices; mAP / mAUC are plain (unweighted) means over classes;
    * d-prime is ``sqrt(2) * Phi^-1(mAUC)``, i.e. computed from the *mean* AUC;
    * retrieval: "audio->visual" (``a2v``) uses audio embeddings as queries and
      visual embeddings as the gallery, the similarity is the cosine similarity,
      rank counts the gallery items strictly more similar than the true match, and
      the median rank is 1-based (``median(rank0) + 1``, mean of the two middle
      values for an even number of queries, like ``numpy.median``).

Authors
 * speechbrain-cavmae contributors
"""

import logging
import math

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "average_precision_per_class",
    "mean_average_precision",
    "roc_auc_per_class",
    "mean_auc",
    "d_prime",
    "topk_accuracy",
    "retrieval_ranks",
    "recall_at_k",
    "median_rank",
    "retrieval_metrics",
]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def _as_2d_float64(x, name):
    """Converts array-like ``x`` to a float64 CPU tensor of shape [N, C]."""
    x = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if x.dim() == 1:
        x = x.unsqueeze(1)
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape [N, C], got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (no samples)")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _check_scores_targets(scores, targets):
    scores = _as_2d_float64(scores, "scores")
    targets = _as_2d_float64(targets, "targets")
    if scores.shape != targets.shape:
        raise ValueError(
            f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} "
            "must have the same shape [N, C]"
        )
    # Like the reference (sklearn on 0/1 labels): anything > 0 is a positive
    # (this also accepts mixup-style soft targets rounded up).
    return scores, (targets > 0).to(torch.float64)


def _tie_groups(scores):
    """For each entry of ``scores`` [N, C] (per column), counts how many entries
    of the same column are strictly smaller (``left``) and smaller or equal
    (``right``). Shapes: both [N, C], int64."""
    cols = scores.t().contiguous()  # [C, N]
    sorted_cols, _ = torch.sort(cols, dim=1)
    left = torch.searchsorted(sorted_cols, cols, side="left")
    right = torch.searchsorted(sorted_cols, cols, side="right")
    return left.t(), right.t()


def _nanmean(x):
    valid = ~torch.isnan(x)
    if not valid.any():
        return float("nan")
    return float(x[valid].mean())


# ---------------------------------------------------------------------------
# multi-label classification (AudioSet)
# ---------------------------------------------------------------------------
def average_precision_per_class(scores, targets):
    """Average precision of each class, as scikit-learn computes it.

    For every column ``c`` this equals
    ``sklearn.metrics.average_precision_score(targets[:, c], scores[:, c])``:
    ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds, so tied
    scores form one operating point (no interpolation). Computed for all classes at
    once in float64.

    Arguments
    ---------
    scores : torch.Tensor
        [N, C] scores (logits or probabilities: only the order matters).
    targets : torch.Tensor
        [N, C] multi-hot targets; entries > 0 count as positives.

    Returns
    -------
    torch.Tensor
        [C] float64 AP per class; ``NaN`` for a class without any positive sample
        (scikit-learn returns 0.0 with a warning there; we keep it undefined so that
        :func:`mean_average_precision` can skip it).

    Example
    -------
    >>> scores = torch.tensor([[0.9, 0.1], [0.8, 0.7], [0.3, 0.2], [0.1, 0.6]])
    >>> targets = torch.tensor([[1, 0], [0, 0], [1, 0], [0, 0]])
    >>> ap = average_precision_per_class(scores, targets)
    >>> round(float(ap[0]), 4)  # positives ranked 1st and 3rd: (1 + 2/3) / 2
    0.8333
    >>> bool(torch.isnan(ap[1]))
    True
    """
    scores, targets = _check_scores_targets(scores, targets)
    n = scores.shape[0]
    left, _ = _tie_groups(scores)  # left[i, c] = #{j: s_jc < s_ic}
    # Positives with score >= s_ic: suffix sums of the targets sorted by score.
    order = torch.argsort(scores, dim=0, stable=True)
    t_sorted = torch.gather(targets, 0, order)
    suffix = torch.flip(torch.cumsum(torch.flip(t_sorted, [0]), 0), [0])  # [N, C]
    tp_ge = torch.gather(suffix, 0, left)  # positives at or above the threshold
    n_ge = (n - left).to(torch.float64)  # samples at or above the threshold
    precision_at_pos = targets * tp_ge / n_ge
    n_pos = targets.sum(0)
    ap = precision_at_pos.sum(0) / n_pos
    ap[n_pos == 0] = float("nan")
    return ap


def mean_average_precision(scores, targets):
    """Mean over classes of :func:`average_precision_per_class` (AudioSet mAP).

    Classes with no positive sample in ``targets`` have an undefined AP and are
    left out of the mean (the reference averages scikit-learn's value for them,
    which is 0.0 or NaN depending on the scikit-learn version). A warning is logged
    when this happens.

    Arguments
    ---------
    scores : torch.Tensor
        [N, C] scores.
    targets : torch.Tensor
        [N, C] multi-hot targets.

    Returns
    -------
    float
        mAP in [0, 1] (NaN if no class has a positive).

    Example
    -------
    >>> scores = torch.tensor([[0.9, 0.2], [0.1, 0.8], [0.4, 0.1]])
    >>> targets = torch.tensor([[1, 0], [0, 1], [0, 1]])
    >>> mean_average_precision(scores, targets)  # (1 + (1 + 2/3) / 2) / 2
    0.9166666666666666
    """
    ap = average_precision_per_class(scores, targets)
    n_skip = int(torch.isnan(ap).sum())
    if n_skip:
        logger.warning(
            "mAP: %d of %d classes have no positive sample and are skipped",
            n_skip,
            ap.numel(),
        )
    return _nanmean(ap)


def roc_auc_per_class(scores, targets):
    """Area under the ROC curve of each class, as scikit-learn computes it.

    Uses the Mann-Whitney form ``AUC = P(s_pos > s_neg) + 0.5 P(s_pos = s_neg)``,
    which equals ``sklearn.metrics.roc_auc_score(targets[:, c], scores[:, c])``
    including ties.

    Arguments
    ---------
    scores : torch.Tensor
        [N, C] scores.
    targets : torch.Tensor
        [N, C] multi-hot targets; entries > 0 count as positives.

    Returns
    -------
    torch.Tensor
        [C] float64 AUC per class; ``NaN`` where a class has no positive or no
        negative sample (the reference stores -1 there).

    Example
    -------
    >>> scores = torch.tensor([[0.9], [0.5], [0.5], [0.1]])
    >>> targets = torch.tensor([[1], [1], [0], [0]])
    >>> roc_auc_per_class(scores, targets)  # 3 wins + 1 tie out of 4 pairs
    tensor([0.8750], dtype=torch.float64)
    """
    scores, targets = _check_scores_targets(scores, targets)
    left, right = _tie_groups(scores)
    mid_rank = (left + right + 1).to(torch.float64) / 2.0  # 1-based average ranks
    n_pos = targets.sum(0)
    n_neg = targets.shape[0] - n_pos
    rank_sum = (mid_rank * targets).sum(0)
    auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = float("nan")
    return auc


def mean_auc(scores, targets):
    """Mean over classes of :func:`roc_auc_per_class`.

    Classes whose AUC is undefined (no positive or no negative sample) are skipped
    from the mean and a warning is logged.

    Example
    -------
    >>> scores = torch.tensor([[0.9, 0.2], [0.1, 0.8], [0.4, 0.3]])
    >>> targets = torch.tensor([[1, 0], [0, 1], [0, 1]])
    >>> mean_auc(scores, targets)
    1.0
    """
    auc = roc_auc_per_class(scores, targets)
    n_skip = int(torch.isnan(auc).sum())
    if n_skip:
        logger.warning(
            "mAUC: %d of %d classes lack positives or negatives and are skipped",
            n_skip,
            auc.numel(),
        )
    return _nanmean(auc)


def d_prime(auc):
    """Sensitivity index ``d' = sqrt(2) * Phi^-1(auc)``.

    ``Phi^-1`` is the standard normal quantile function (``torch.special.ndtri``),
    so AUC 0.5 gives 0 and AUC 1 gives ``inf``.

    Arguments
    ---------
    auc : float or torch.Tensor
        AUC value(s) in [0, 1].

    Returns
    -------
    float or torch.Tensor
        Same kind as the input (a float for a Python number).

    Example
    -------
    >>> round(d_prime(0.5), 6)
    0.0
    >>> round(d_prime(0.9), 4)
    1.8124
    """
    is_number = not isinstance(auc, torch.Tensor)
    x = torch.as_tensor(auc, dtype=torch.float64)
    out = math.sqrt(2.0) * torch.special.ndtri(x)
    return float(out) if is_number else out


def topk_accuracy(logits, targets, k=(1, 5)):
    """Top-k accuracy of single-label predictions.

    Arguments
    ---------
    logits : torch.Tensor
        [N, C] scores.
    targets : torch.Tensor
        [N] integer class indices, or [N, C] one-hot / score targets (the class is
        their argmax, as in the reference's accuracy).
    k : int or tuple of int
        Values of k; each must be in [1, C].

    Returns
    -------
    dict
        ``{"acc@k": fraction in [0, 1]}`` for every k.

    Example
    -------
    >>> logits = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    >>> topk_accuracy(logits, torch.tensor([2, 0]), k=(1, 2))
    {'acc@1': 0.5, 'acc@2': 1.0}
    """
    logits = torch.as_tensor(logits).detach()
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape [N, C], got {tuple(logits.shape)}")
    targets = torch.as_tensor(targets).detach().to(logits.device)
    if targets.dim() == 2:
        if targets.shape != logits.shape:
            raise ValueError(
                f"one-hot targets {tuple(targets.shape)} do not match logits "
                f"{tuple(logits.shape)}"
            )
        targets = targets.argmax(dim=1)
    if targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"targets must have shape [N] or [N, C] with N={logits.shape[0]}, "
            f"got {tuple(targets.shape)}"
        )
    n, c = logits.shape
    if n == 0:
        raise ValueError("topk_accuracy: no samples")
    ks = (k,) if isinstance(k, int) else tuple(k)
    for kk in ks:
        if not 1 <= kk <= c:
            raise ValueError(f"k={kk} is out of range for {c} classes")
    top = logits.topk(max(ks), dim=1).indices  # [N, max_k]
    hit = top == targets.long().unsqueeze(1)
    return {f"acc@{kk}": float(hit[:, :kk].any(dim=1).double().mean()) for kk in ks}


# ---------------------------------------------------------------------------
# retrieval
# ---------------------------------------------------------------------------
def retrieval_ranks(queries, gallery, chunk_size=1024, normalize=True):
    """0-based rank of the matching gallery item for every query.

    Query ``i`` matches gallery item ``i``. The similarity is the dot product of
    L2-normalised embeddings (cosine similarity); its rank is the number of gallery
    items *strictly* more similar than the match, so ties are resolved in favour of
    the match (optimistic; this equals the position the reference's
    ``compute_metrics`` finds for tie-free similarities). Queries are processed
    ``chunk_size`` at a time, so memory is ``O(chunk_size * N)`` instead of
    ``O(N^2)``; the diagonal similarity is read from the same product as the rest
    of its row, so rounding cannot create spurious ties.

    Arguments
    ---------
    queries : torch.Tensor
        [N, D] query embeddings.
    gallery : torch.Tensor
        [N, D] gallery embeddings, row ``i`` being the match of query ``i``.
    chunk_size : int
        Number of queries per block.
    normalize : bool
        L2-normalise both sets first (cosine similarity). With False the raw dot
        product is used.

    Returns
    -------
    torch.LongTensor
        [N] ranks in [0, N - 1] (on the device of ``queries``).

    Example
    -------
    >>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> g = torch.tensor([[1.0, 0.1], [1.0, 0.0], [1.0, 1.0]])
    >>> retrieval_ranks(q, g, chunk_size=2)  # g[1] is closer to q[0] than g[0]
    tensor([1, 2, 0])
    """
    queries = torch.as_tensor(queries).detach()
    gallery = torch.as_tensor(gallery).detach().to(queries.device)
    if queries.dim() != 2 or gallery.dim() != 2:
        raise ValueError(
            f"queries {tuple(queries.shape)} and gallery {tuple(gallery.shape)} "
            "must both have shape [N, D]"
        )
    if queries.shape != gallery.shape:
        raise ValueError(
            f"queries {tuple(queries.shape)} and gallery {tuple(gallery.shape)} "
            "must have the same shape (item i of one matches item i of the other)"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dtype = torch.float64 if queries.dtype == torch.float64 else torch.float32
    queries, gallery = queries.to(dtype), gallery.to(dtype)
    if not (torch.isfinite(queries).all() and torch.isfinite(gallery).all()):
        raise ValueError("retrieval_ranks: embeddings contain NaN or inf")
    if normalize:
        queries = torch.nn.functional.normalize(queries, dim=-1)
        gallery = torch.nn.functional.normalize(gallery, dim=-1)
    n = queries.shape[0]
    ranks = torch.empty(n, dtype=torch.long, device=queries.device)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        sim = queries[start:stop] @ gallery.t()  # [chunk, N]
        rows = torch.arange(stop - start, device=queries.device)
        diag = sim[rows, rows + start].unsqueeze(1)
        ranks[start:stop] = (sim > diag).sum(dim=1)
    return ranks


def recall_at_k(ranks, ks=(1, 5, 10)):
    """Recall at k: fraction of queries whose match is within the top k.

    Arguments
    ---------
    ranks : torch.Tensor
        [N] 0-based ranks from :func:`retrieval_ranks`.
    ks : tuple of int
        Cut-offs.

    Returns
    -------
    dict
        ``{"R@k": fraction in [0, 1]}``.

    Example
    -------
    >>> recall_at_k(torch.tensor([0, 3, 7, 20]), ks=(1, 5, 10))
    {'R@1': 0.25, 'R@5': 0.5, 'R@10': 0.75}
    """
    ranks = torch.as_tensor(ranks)
    if ranks.numel() == 0:
        raise ValueError("recall_at_k: no ranks")
    return {f"R@{k}": float((ranks < k).double().mean()) for k in ks}


def median_rank(ranks):
    """1-based median rank (``median(ranks) + 1``), as in retrieval papers.

    For an even number of queries the two middle values are averaged (like
    ``numpy.median``, which the reference uses), so the result may end in .5.

    Example
    -------
    >>> median_rank(torch.tensor([0, 3, 7, 20]))
    6.0
    """
    ranks = torch.as_tensor(ranks).to(torch.float64).flatten()
    if ranks.numel() == 0:
        raise ValueError("median_rank: no ranks")
    s, _ = torch.sort(ranks)
    n = s.numel()
    med = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
    return float(med) + 1.0


def retrieval_metrics(audio_emb, visual_emb, ks=(1, 5, 10), chunk_size=1024):
    """Audio->visual and visual->audio retrieval metrics.

    ``a2v`` uses the audio embeddings as queries against the visual gallery (the
    reference's ``direction='audio'``), ``v2a`` the reverse (``direction='video'``).
    Embeddings are clip-level (e.g. mean-pooled encoder tokens, as the reference
    does); they are L2-normalised here, i.e. cosine similarity.

    Arguments
    ---------
    audio_emb : torch.Tensor
        [N, D] audio embeddings.
    visual_emb : torch.Tensor
        [N, D] visual embeddings of the same N clips, in the same order.
    ks : tuple of int
        Recall cut-offs.
    chunk_size : int
        Queries per block (see :func:`retrieval_ranks`).

    Returns
    -------
    dict
        Keys ``a2v_R@k`` and ``v2a_R@k`` (fractions in [0, 1]) for every k, and
        ``a2v_MedR``, ``v2a_MedR`` (1-based).

    Example
    -------
    >>> a = torch.eye(4)
    >>> out = retrieval_metrics(a, a + 0.1, ks=(1,))
    >>> out["a2v_R@1"], out["v2a_MedR"]
    (1.0, 1.0)
    """
    out = {}
    for name, q, g in (("a2v", audio_emb, visual_emb), ("v2a", visual_emb, audio_emb)):
        ranks = retrieval_ranks(q, g, chunk_size=chunk_size)
        for key, value in recall_at_k(ranks, ks).items():
            out[f"{name}_{key}"] = value
        out[f"{name}_MedR"] = median_rank(ranks)
    return out
