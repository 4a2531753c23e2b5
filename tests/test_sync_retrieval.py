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


# ------------------------------------------------------------------ the command lines
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny CAV-MAE (32-frame audio input: the segment) and 8 toy clips of 10 frames."""
    from speechbrain_cavmae.data.toy import generate_toy_dataset
    from speechbrain_cavmae.model.cavmae import CAVMAE

    root = tmp_path_factory.mktemp("sync_rt")
    toy = generate_toy_dataset(root / "toy", n_train=2, n_valid=2, n_test=8, seed=2,
                               image_size=32, n_classes=3)
    torch.manual_seed(0)
    arch = dict(img_size=32, embed_dim=32, modality_specific_depth=1, num_heads=2,
                decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    paths = {}
    for name, length in (("seg", 32), ("whole", 192)):
        path = root / f"{name}.pth"
        torch.save(CAVMAE(audio_length=length, **arch).state_dict(), path)
        paths[name] = str(path)
    return {"root": root, "manifest": toy["test"], **paths}


def _cli(tiny, model, *extra):
    return ["--model", tiny[model], "--num_heads", "2", "--decoder_num_heads", "2",
            "--manifest", tiny["manifest"], "--device", "cpu", "--batch_size", "3",
            "--clip_length", "192", *extra]


def test_embed_segments_rows_and_retrieval(tiny, one_thread, capsys):
    import json

    from speechbrain_cavmae.checkpoints import load
    from speechbrain_cavmae.cli import main as cavmae
    from speechbrain_cavmae.data.dataset import build_dataset
    from speechbrain_cavmae.data.frames import frame_segments, segment_seconds
    from speechbrain_cavmae.tools.extract_features import read_segments

    out = tiny["root"] / "segments"
    assert cavmae(["embed", *_cli(tiny, "seg", "--level", "segments", "--output", str(out))]) == 0
    capsys.readouterr()
    ids, rows, index = read_segments(str(out))
    assert index["segments"] == {"n_frames": 10, "clip_length": 192, "audio_length": 32,
                                 "hop_s": 0.01, "frame_span_s": 10.0}
    assert len(ids) == 8 and rows["audio"].shape == rows["visual"].shape == (8, 10, 32)
    bounds = [segment_seconds(*b) for b in frame_segments(10, 192, 32)]
    assert rows["start_s"][0].tolist() == [b[0] for b in bounds]
    assert rows["end_s"][3].tolist() == [b[1] for b in bounds]
    assert rows["centre_s"][0].tolist()[:3] == [0.0, 0.19, 0.38]  # round(k * 192 / 10) * 10 ms
    # each row is the model's pooled embedding of that frame and its segment
    model = load(tiny["seg"], num_heads=2, decoder_num_heads=2).model.eval()
    item = build_dataset(tiny["manifest"], config={
        "frame_segments": True, "multi_frame": True, "clip_length": 192, "audio_length": 32,
        "image_size": 32}, train=False)[ids.index("toy_test_00005")]
    with torch.no_grad():
        a, v = model.encode(item["fbanks"], item["frames"])
    j = ids.index("toy_test_00005")
    np.testing.assert_allclose(rows["audio"][j], a.mean(1).numpy(), atol=1e-5)
    np.testing.assert_allclose(rows["visual"][j], v.mean(1).numpy(), atol=1e-5)
    np.testing.assert_allclose(
        rows["similarity"][j], torch.nn.functional.cosine_similarity(a.mean(1), v.mean(1)),
        atol=1e-5)
    assert len({tuple(r) for r in rows["audio"][j].round(4)}) == 10  # ten different segments
    # retrieval from the model and from the folder: the same numbers, theirs on these vectors
    for strategy in STRATEGIES:
        assert cavmae(["retrieval", *_cli(tiny, "seg", "--strategy", strategy, "--json")]) == 0
        from_model = json.loads(capsys.readouterr().out)
        assert cavmae(["retrieval", "--embeddings", str(out), "--strategy", strategy,
                       "--json"]) == 0
        from_folder = json.loads(capsys.readouterr().out)
        assert from_model == pytest.approx(from_folder) and from_model["num_clips"] == 8
        theirs = their_metrics(their_sim_mat(rows["audio"], rows["visual"], strategy))
        assert from_folder["a2v_R@1"] == theirs["R1"] and from_folder["a2v_MedR"] == theirs["MR"]


def test_plain_cavmae_windows_are_the_whole_clip(tiny, one_thread):
    """A model whose audio_length is the clip's: every frame gets the same audio (encoded
    once) and it is the clip-level embedding of the existing retrieval."""
    from speechbrain_cavmae.cli import main as cavmae
    from speechbrain_cavmae.tools.extract_features import read_segments

    out = tiny["root"] / "whole"
    assert cavmae(["embed", *_cli(tiny, "whole", "--level", "segments", "--output", str(out),
                                  "--format", "pt")]) == 0
    ids, rows, _ = read_segments(str(out))
    assert rows["start_s"][0].tolist() == [0.0] * 10 and rows["end_s"][0].tolist() == [1.92] * 10
    np.testing.assert_allclose(rows["audio"][:, 1:], rows["audio"][:, :1].repeat(9, 1), atol=1e-6)
    from speechbrain_cavmae.checkpoints import load
    from speechbrain_cavmae.tools import retrieval as rt
    from speechbrain_cavmae.tools.inputs import eval_loader

    model = load(tiny["whole"], num_heads=2, decoder_num_heads=2).model.eval()
    clip_ids, emb_a, emb_v = rt.compute_embeddings(model, eval_loader(tiny["manifest"], model))
    order = [clip_ids.index(i) for i in ids]
    np.testing.assert_allclose(rows["audio"][:, 0], emb_a[order].numpy(), atol=1e-5)
    np.testing.assert_allclose(rows["visual"][:, 5], emb_v[order].numpy(), atol=1e-5)


def test_retrieval_flags(tiny, capsys):
    from speechbrain_cavmae.cli import main as cavmae
    from speechbrain_cavmae.tools import retrieval as rt

    assert rt.STRATEGIES == STRATEGIES

    def fails(argv, message):
        try:
            code = cavmae(argv)
        except SystemExit as exc:
            code = exc.code
        assert code not in (0, None)
        assert message in capsys.readouterr().err

    fails(["retrieval", "--embeddings", "x"], "--embeddings needs --strategy")
    fails(["retrieval", "--strategy", "max"], "--model, --manifest")
    fails(["retrieval", *_cli(tiny, "whole", "--strategy", "max", "--clip_length", "100")],
          "audio_length=192")


def test_global_tokens_are_used_when_the_model_returns_them():
    """A model whose encode returns (tokens_a, tokens_v, cls_a, cls_v), as Sync's
    forward_feat with cls tokens: the pairs' embeddings are the cls outputs."""
    from speechbrain_cavmae.tools.extract_features import embed_pairs

    class WithGlobal(torch.nn.Module):
        def encode(self, audio, image):
            return (audio[:, :4, :8], image[:, 0, :5, :8], audio[:, 0, :8] * 2,
                    image[:, 1, 0, :8] * 3)

    fb, fr = torch.randn(2, 3, 16, 128), torch.randn(2, 3, 3, 8, 8)
    a, v = embed_pairs(WithGlobal(), fb, fr, batch_size=4)
    assert torch.equal(a, fb[:, :, 0, :8] * 2) and torch.equal(v, fr[:, :, 1, 0, :8] * 3)
