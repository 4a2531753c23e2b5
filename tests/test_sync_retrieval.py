"""Retrieval strategies over per-frame embeddings (issue 27 item 6).

``their_*`` restate the Sync authors' ``src/retrieval.py`` as it computes (loops over clip
pairs and frame pairs, numpy cosine per pair, ``compute_metrics`` finding the match in the
sorted row with ``np.where``), at small sizes; the batched code must give the same
similarities and the same R@1/5/10 and median rank, for every strategy and direction.
"""

import numpy as np
import pytest
import torch

from speechbrain_cavmae.training.frame_retrieval import (
    STRATEGIES,
    frame_retrieval_metrics,
    similarity_matrix,
    strategy_ranks,
)
from speechbrain_cavmae.training.metrics import retrieval_metrics


def their_cos(a, b):
    return np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))


def their_sim_mat(a, b, strategy):
    n, k = a.shape[0], a.shape[1]
    out = np.empty([n, n])
    for i in range(n):
        for j in range(n):
            if strategy in ("max", "mean"):
                pairs = np.array([[their_cos(a[i, p], b[j, q]) for q in range(k)]
                                  for p in range(k)])
                out[i, j] = pairs.max() if strategy == "max" else pairs.mean()
            else:
                diag = [their_cos(a[i, p], b[j, p]) for p in range(k)]
                out[i, j] = np.mean(diag) if strategy == "diagonal_mean" else np.max(diag)
    return out


def their_metrics(x):
    sx = np.sort(-x, axis=1)
    d = np.diag(-x)[:, np.newaxis]
    ind = np.where(sx - d == 0)[1]
    return {"R1": float(np.sum(ind == 0)) / len(ind), "R5": float(np.sum(ind < 5)) / len(ind),
            "R10": float(np.sum(ind < 10)) / len(ind), "MR": np.median(ind) + 1}


def embeddings(n, k, d, seed, noise=1.5):
    """Audio and visual frames sharing a per-clip and a per-frame component, plus noise
    (so that ranks spread over 1 .. n)."""
    g = torch.Generator().manual_seed(seed)
    clip = torch.randn(n, 1, d, generator=g, dtype=torch.float64)
    frame = 0.7 * torch.randn(n, k, d, generator=g, dtype=torch.float64)
    audio = clip + frame + noise * torch.randn(n, k, d, generator=g, dtype=torch.float64)
    visual = clip + frame + noise * torch.randn(n, k, d, generator=g, dtype=torch.float64)
    return audio * 3.0, visual  # unnormalised on purpose: both sides normalise


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("n,k,d,seed", [(23, 4, 8, 0), (12, 16, 6, 1), (30, 3, 5, 2)])
def test_equal_to_their_loops(strategy, n, k, d, seed):
    audio, visual = embeddings(n, k, d, seed)
    ours = frame_retrieval_metrics(audio, visual, strategy, chunk_size=5, block_elements=97)
    for name, a, b in (("a2v", audio, visual), ("v2a", visual, audio)):
        theirs_sim = their_sim_mat(a.numpy(), b.numpy(), strategy)
        ours_sim = similarity_matrix(a, b, strategy, chunk_size=7, block_elements=50)
        np.testing.assert_allclose(ours_sim.numpy(), theirs_sim, rtol=0, atol=1e-12)
        theirs = their_metrics(theirs_sim)
        assert len(np.where(np.sort(-theirs_sim, 1) - np.diag(-theirs_sim)[:, None] == 0)[1]) == n
        assert (ours[f"{name}_R@1"], ours[f"{name}_R@5"], ours[f"{name}_R@10"],
                ours[f"{name}_MedR"]) == (theirs["R1"], theirs["R5"], theirs["R10"], theirs["MR"])
    assert 0 < ours["a2v_R@1"] < 1 or 1 < ours["a2v_MedR"]  # not a trivial ranking


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_float32_ranks_agree_with_float64(strategy):
    audio, visual = embeddings(40, 16, 32, 3)
    ranks64 = strategy_ranks(audio, visual, strategy)
    ranks32 = strategy_ranks(audio.float(), visual.float(), strategy, chunk_size=9,
                             block_elements=1000)
    assert torch.equal(ranks64, ranks32)


def test_chunking_does_not_change_the_matrix():
    audio, visual = embeddings(17, 5, 7, 4)
    for strategy in STRATEGIES:
        whole = similarity_matrix(audio, visual, strategy, chunk_size=100, block_elements=1 << 30)
        for chunk, block in ((1, 1), (4, 30), (16, 200)):
            assert torch.allclose(similarity_matrix(audio, visual, strategy, chunk, block), whole,
                                  atol=1e-12)


def test_one_frame_is_clip_level_retrieval():
    audio, visual = embeddings(25, 1, 12, 5)
    clip_level = retrieval_metrics(audio[:, 0], visual[:, 0])
    for strategy in STRATEGIES:
        out = frame_retrieval_metrics(audio, visual, strategy)
        assert {k: v for k, v in out.items() if k != "strategy"} == clip_level


def test_bad_arguments():
    a = torch.randn(3, 2, 4)
    with pytest.raises(ValueError, match="unknown strategy 'median'"):
        strategy_ranks(a, a, "median")
    with pytest.raises(ValueError, match=r"\[clips, frames, dim\]"):
        strategy_ranks(a[0], a[0], "max")
    with pytest.raises(ValueError, match="same frames"):
        strategy_ranks(a, torch.randn(3, 3, 4), "max")
    with pytest.raises(ValueError, match="NaN"):
        strategy_ranks(a, torch.full((3, 2, 4), float("nan")), "max")
