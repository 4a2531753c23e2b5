"""Tests for speechbrain_cavmae.training.metrics against scikit-learn and brute force."""

import math
import warnings

import numpy as np
import pytest
import torch

from speechbrain_cavmae.training import metrics as M
from speechbrain_cavmae.training.accumulators import ClassificationStats, MultiLabelMetrics

sk_metrics = pytest.importorskip("sklearn.metrics")


def _random_multilabel(n=200, c=12, seed=0, quantize=None):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(n, c, generator=g)
    if quantize:  # many ties
        scores = torch.round(scores * quantize) / quantize
    targets = (torch.rand(n, c, generator=g) < 0.2).long()
    targets[0] = 1  # every class has a positive
    targets[1] = 0  # ... and a negative
    return scores, targets


@pytest.mark.parametrize("quantize", [None, 2])
def test_average_precision_matches_sklearn(quantize):
    scores, targets = _random_multilabel(seed=1, quantize=quantize)
    ap = M.average_precision_per_class(scores, targets)
    ref = [
        sk_metrics.average_precision_score(targets[:, c].numpy(), scores[:, c].numpy())
        for c in range(scores.shape[1])
    ]
    np.testing.assert_allclose(ap.numpy(), ref, rtol=0, atol=1e-12)
    assert M.mean_average_precision(scores, targets) == pytest.approx(np.mean(ref))


@pytest.mark.parametrize("quantize", [None, 2])
def test_auc_matches_sklearn(quantize):
    scores, targets = _random_multilabel(seed=2, quantize=quantize)
    auc = M.roc_auc_per_class(scores, targets)
    ref = [
        sk_metrics.roc_auc_score(targets[:, c].numpy(), scores[:, c].numpy())
        for c in range(scores.shape[1])
    ]
    np.testing.assert_allclose(auc.numpy(), ref, rtol=0, atol=1e-12)
    assert M.mean_auc(scores, targets) == pytest.approx(np.mean(ref))


def test_hand_computed_values_with_ties():
    # one class: positives at scores 0.9 and 0.5, negatives 0.5 and 0.1.
    scores = torch.tensor([[0.9], [0.5], [0.5], [0.1]])
    targets = torch.tensor([[1], [1], [0], [0]])
    # thresholds: 0.9 -> P=1, R=0.5 ; 0.5 -> P=2/3, R=1  => AP = 0.5 + 0.5*2/3
    assert float(M.average_precision_per_class(scores, targets)[0]) == pytest.approx(
        0.5 + 0.5 * 2 / 3
    )
    # pairs (pos, neg): (0.9,0.5) win, (0.9,0.1) win, (0.5,0.5) tie, (0.5,0.1) win
    assert float(M.roc_auc_per_class(scores, targets)[0]) == pytest.approx(3.5 / 4)
    # all-equal scores: AP = prevalence, AUC = 0.5
    flat = torch.zeros(4, 1)
    assert float(M.average_precision_per_class(flat, targets)[0]) == pytest.approx(0.5)
    assert float(M.roc_auc_per_class(flat, targets)[0]) == pytest.approx(0.5)


def test_class_without_positive_is_skipped(caplog):
    scores, targets = _random_multilabel(seed=3)
    targets[:, 4] = 0  # no positive
    targets[:, 7] = 1  # no negative (AUC undefined, AP defined)
    ap = M.average_precision_per_class(scores, targets)
    auc = M.roc_auc_per_class(scores, targets)
    assert torch.isnan(ap[4])
    assert torch.isnan(ap).sum() == 1
    assert ap[7] == pytest.approx(1.0)
    assert torch.isnan(auc[4]) and torch.isnan(auc[7]) and torch.isnan(auc).sum() == 2
    keep = [c for c in range(12) if c != 4]
    with caplog.at_level("WARNING"):
        m_ap = M.mean_average_precision(scores, targets)
    assert "no positive" in caplog.text
    ref = [
        sk_metrics.average_precision_score(targets[:, c].numpy(), scores[:, c].numpy())
        for c in keep
    ]
    assert m_ap == pytest.approx(np.mean(ref))
    keep_auc = [c for c in range(12) if c not in (4, 7)]
    ref_auc = [
        sk_metrics.roc_auc_score(targets[:, c].numpy(), scores[:, c].numpy())
        for c in keep_auc
    ]
    assert M.mean_auc(scores, targets) == pytest.approx(np.mean(ref_auc))


def test_bad_input_rejected():
    with pytest.raises(ValueError, match="same shape"):
        M.average_precision_per_class(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="NaN"):
        M.roc_auc_per_class(torch.tensor([[float("nan")], [0.0]]), torch.tensor([[1], [0]]))
    with pytest.raises(ValueError, match="out of range"):
        M.topk_accuracy(torch.zeros(2, 3), torch.tensor([0, 1]), k=(5,))


def test_d_prime():
    from statistics import NormalDist

    for auc in (0.5, 0.6, 0.75, 0.9, 0.99):
        ref = NormalDist().inv_cdf(auc) * math.sqrt(2.0)
        assert M.d_prime(auc) == pytest.approx(ref, abs=1e-9)
    t = M.d_prime(torch.tensor([0.5, 0.9]))
    assert isinstance(t, torch.Tensor) and t.shape == (2,)
    assert t[0] == pytest.approx(0.0, abs=1e-12)
    assert M.d_prime(0.3) < 0


def test_topk_accuracy_index_and_onehot():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 20, generator=g)
    labels = torch.randint(0, 20, (300,), generator=g)
    out = M.topk_accuracy(logits, labels, k=(1, 5))
    ranks = (logits > logits.gather(1, labels[:, None])).sum(1)
    assert out["acc@1"] == pytest.approx(float((ranks < 1).float().mean()))
    assert out["acc@5"] == pytest.approx(float((ranks < 5).float().mean()))
    assert out["acc@1"] == pytest.approx(
        sk_metrics.accuracy_score(labels.numpy(), logits.argmax(1).numpy())
    )
    onehot = torch.nn.functional.one_hot(labels, 20).float()
    assert M.topk_accuracy(logits, onehot, k=(1, 5)) == out
    assert M.topk_accuracy(logits, labels, k=20)["acc@20"] == 1.0


def _bruteforce_ranks(q, g):
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    sim = qn @ gn.T
    return (sim > np.diag(sim)[:, None]).sum(1)


def test_retrieval_ranks_bruteforce_and_chunking():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(257, 16, dtype=torch.float64, generator=g)
    v = a + 1.5 * torch.randn(257, 16, dtype=torch.float64, generator=g)
    ref = _bruteforce_ranks(a.numpy(), v.numpy())
    full = M.retrieval_ranks(a, v, chunk_size=10_000)
    assert full.dtype == torch.long
    np.testing.assert_array_equal(full.numpy(), ref)
    for chunk in (1, 7, 64, 256):
        assert torch.equal(M.retrieval_ranks(a, v, chunk_size=chunk), full)
    assert 0 < float(full.float().mean()) < 256  # non-trivial data
    # float32 path: equal up to rare float32 near-ties
    r32 = M.retrieval_ranks(a.float(), v.float(), chunk_size=50)
    assert r32.dtype == torch.long and int((r32 - full).abs().sum()) <= 2


def test_retrieval_ranks_original_convention():
    """Same ranks as the reference's compute_metrics on a tie-free matrix."""
    g = torch.Generator().manual_seed(5)
    a = torch.randn(40, 8, dtype=torch.float64, generator=g)
    v = a + torch.randn(40, 8, dtype=torch.float64, generator=g)
    an = a / a.norm(dim=1, keepdim=True)
    vn = v / v.norm(dim=1, keepdim=True)
    x = (an @ vn.T).numpy()  # rows: audio queries (direction 'audio')
    sx = np.sort(-x, axis=1)
    ind = np.where(sx - (-np.diag(x))[:, None] == 0)[1]
    np.testing.assert_array_equal(M.retrieval_ranks(a, v).numpy(), ind)
    out = M.retrieval_metrics(a, v, ks=(1, 5, 10))
    assert out["a2v_R@1"] == pytest.approx(np.mean(ind == 0))
    assert out["a2v_R@5"] == pytest.approx(np.mean(ind < 5))
    assert out["a2v_R@10"] == pytest.approx(np.mean(ind < 10))
    assert out["a2v_MedR"] == pytest.approx(np.median(ind) + 1)
    ind_v = _bruteforce_ranks(v.numpy(), a.numpy())
    assert out["v2a_MedR"] == pytest.approx(np.median(ind_v) + 1)
    assert set(out) == {
        f"{d}_{k}" for d in ("a2v", "v2a") for k in ("R@1", "R@5", "R@10", "MedR")
    }


def test_retrieval_ties_are_optimistic():
    q = torch.ones(3, 2)
    g = torch.ones(3, 2)  # all similarities equal
    assert M.retrieval_ranks(q, g).tolist() == [0, 0, 0]


def test_recall_perfect_and_reversed():
    n = 20
    emb = torch.randn(n, 32, generator=torch.Generator().manual_seed(1))
    perfect = M.retrieval_metrics(emb, emb, ks=(1, 5, 10))
    assert perfect["a2v_R@1"] == perfect["v2a_R@1"] == 1.0
    assert perfect["a2v_MedR"] == 1.0
    # Reversed ordering: ranks n-1 ... 0 -> match i ranked at position n-1-i
    ranks = torch.arange(n - 1, -1, -1)
    r = M.recall_at_k(ranks, ks=(1, 5, 10))
    assert r == {"R@1": 1 / n, "R@5": 5 / n, "R@10": 10 / n}
    assert M.median_rank(ranks) == pytest.approx(np.median(ranks.numpy()) + 1)
    # a gallery where every query's match is the least similar item
    q = torch.tensor([[1.0, 0.0]] * 4)
    angles = torch.tensor([0.9, 0.6, 0.3, 0.0])  # match i gets angle; later ones closer
    gal = torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    assert M.retrieval_ranks(q, gal).tolist() == [3, 2, 1, 0]


def test_retrieval_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        M.retrieval_ranks(torch.zeros(3, 4), torch.zeros(4, 4))
    with pytest.raises(ValueError, match="chunk_size"):
        M.retrieval_ranks(torch.ones(3, 4), torch.ones(3, 4), chunk_size=0)


def test_multilabel_accumulator_matches_functions():
    scores, targets = _random_multilabel(n=90, c=6, seed=9)
    stats = MultiLabelMetrics()
    for i in range(0, 90, 32):
        ids = [f"id{j}" for j in range(i, min(i + 32, 90))]
        stats.append(ids, scores[i : i + 32], targets[i : i + 32])
    out = stats.summarize()
    assert len(stats.ids) == 90
    assert out["mAP"] == pytest.approx(M.mean_average_precision(scores, targets))
    assert out["mAUC"] == pytest.approx(M.mean_auc(scores, targets))
    assert out["d_prime"] == pytest.approx(M.d_prime(out["mAUC"]))
    assert stats.summarize("mAP") == out["mAP"]
    stats.clear()
    with pytest.raises(ValueError, match="nothing appended"):
        stats.summarize()


def test_classification_accumulator():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(50, 8, generator=g)
    labels = torch.randint(0, 8, (50,), generator=g)
    stats = ClassificationStats(topk=(1, 5, 10))
    stats.append(list(range(25)), logits[:25], labels[:25])
    stats.append(list(range(25, 50)), logits[25:], labels[25:])
    out = stats.summarize()
    assert "acc@10" not in out  # more than the 8 classes
    ref = M.topk_accuracy(logits, labels, k=(1, 5))
    assert out["acc@1"] == ref["acc@1"] and out["acc@5"] == ref["acc@5"]
    onehot = torch.nn.functional.one_hot(labels, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert out["mAP"] == pytest.approx(M.mean_average_precision(logits, onehot))
