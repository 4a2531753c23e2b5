"""Tests of the retrieval, inpainting and feature-extraction command lines (``cavmae
retrieval`` / ``inpaint`` / ``embed``, and their ``python -m`` forms with the former flag
names)."""

import json

import numpy as np
import pytest
import torch

from speechbrain_cavmae.checkpoints import load
from speechbrain_cavmae.cli import main as cavmae
from speechbrain_cavmae.model.cavmae import CAVMAE
from speechbrain_cavmae.tools import inpaint as ip
from speechbrain_cavmae.tools import retrieval as rt
from speechbrain_cavmae.tools.inputs import eval_loader
from speechbrain_cavmae.data.toy import generate_toy_dataset

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py



@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rt")
    toy = generate_toy_dataset(root / "toy", n_train=2, n_valid=2, n_test=11, seed=1,
                               image_size=32, n_classes=3)
    torch.manual_seed(0)
    model = CAVMAE(img_size=32, audio_length=64, embed_dim=32, modality_specific_depth=1,
                   num_heads=2, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    ckpt = root / "model.pth"
    torch.save(model.state_dict(), ckpt)
    return {"toy": toy, "ckpt": str(ckpt), "root": root,
            "model": load(str(ckpt), num_heads=2, decoder_num_heads=2).model.eval()}


def _brute_force(emb_q, emb_g):
    q = torch.nn.functional.normalize(emb_q.double(), dim=-1)
    g = torch.nn.functional.normalize(emb_g.double(), dim=-1)
    sim = q @ g.t()
    ranks = (sim > sim.diag().unsqueeze(1)).sum(1)
    return {"R@1": float((ranks < 1).double().mean()), "R@5": float((ranks < 5).double().mean()),
            "MedR": float(ranks.double().median()) + 1 if len(ranks) % 2 else None}


def test_retrieval_cli_matches_brute_force_and_is_chunk_independent(setup, tmp_path, capsys):
    out = tmp_path / "sub" / "r.json"  # --output creates the folder
    args = ["--model", setup["ckpt"], "--num_heads", "2", "--decoder_num_heads", "2",
            "--manifest", setup["toy"]["test"], "--device", "cpu", "--batch_size", "4"]
    assert cavmae(["retrieval", *args, "--chunk_size", "3", "--output", str(out)]) == 0
    assert "audio->visual" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["num_clips"] == 11
    # --json prints the same numbers, whatever the chunk and batch sizes
    args = ["--model", setup["ckpt"], "--num_heads", "2", "--decoder_num_heads", "2",
            "--manifest", setup["toy"]["test"], "--device", "cpu"]
    assert cavmae(["retrieval", *args, "--chunk_size", "1000", "--batch_size", "11",
                   "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(res)
    assert res["num_candidates"] == 11 and "note" not in res
    model = setup["model"]
    ids, emb_a, emb_v = rt.compute_embeddings(model, eval_loader(setup["toy"]["test"], model))
    assert len(ids) == 11 and emb_a.shape == emb_v.shape == (11, 32)
    for name, q, g in (("a2v", emb_a, emb_v), ("v2a", emb_v, emb_a)):
        ref = _brute_force(q, g)
        assert res[f"{name}_R@1"] == pytest.approx(ref["R@1"])
        assert res[f"{name}_R@5"] == pytest.approx(ref["R@5"])
        assert res[f"{name}_MedR"] == pytest.approx(ref["MedR"])


def test_inpaint_is_seeded_and_keeps_visible_patches(setup):
    model = setup["model"]
    torch.manual_seed(3)
    audio, image = torch.randn(2, 64, 128), torch.randn(2, 3, 32, 32)
    first = ip.inpaint(model, audio, image, 0.5, 0.75, seed=7)
    second = ip.inpaint(model, audio, image, 0.5, 0.75, seed=7)
    other = ip.inpaint(model, audio, image, 0.5, 0.75, seed=8)
    assert torch.equal(first["audio_recon"], second["audio_recon"])
    assert torch.equal(first["mask_v"], second["mask_v"])
    assert not torch.equal(first["mask_a"], other["mask_a"])
    assert first["mask_a"].sum(1).tolist() == [16.0, 16.0]  # half of 8 x 4 patches
    assert first["mask_v"].sum(1).tolist() == [3.0, 3.0]  # 3 of 2 x 2 patches
    # Visible patches are copied from the input, masked ones are blank in the masked view.
    keep_v = ~first["mask_v"].bool()
    from speechbrain_cavmae.model.patchify import patchify_audio, patchify_image

    pv_recon, pv_in = patchify_image(first["image_recon"]), patchify_image(image)
    assert torch.allclose(pv_recon[keep_v], pv_in[keep_v])
    pv_masked = patchify_image(first["image_masked"])
    assert torch.all(pv_masked[~keep_v] == 0)
    pa_recon, pa_in = patchify_audio(first["audio_recon"]), patchify_audio(audio)
    keep_a = ~first["mask_a"].bool()
    assert torch.allclose(pa_recon[keep_a], pa_in[keep_a])
    assert not torch.allclose(pa_recon[~keep_a], pa_in[~keep_a])
    # masked patches are the decoder's predictions under the seeded noise (audio noise drawn
    # first, then visual), and the losses are the mean squared error over masked patches
    gen = torch.Generator().manual_seed(7)
    noise_a, noise_v = torch.rand(2, 32, generator=gen), torch.rand(2, 4, generator=gen)
    with torch.no_grad():
        ref = model(audio, image, 0.5, 0.75, noise_a=noise_a, noise_v=noise_v)
    assert torch.equal(first["mask_a"], ref["mask_a"])
    assert torch.equal(first["mask_v"], ref["mask_v"])
    torch.testing.assert_close(pa_recon[~keep_a], ref["pred_a"][~keep_a], atol=1e-6, rtol=0)
    torch.testing.assert_close(pv_recon[~keep_v], ref["pred_v"][~keep_v], atol=1e-6, rtol=0)
    for m in ("a", "v"):
        masked = ref[f"mask_{m}"].bool()
        sq = (ref[f"pred_{m}"] - ref[f"target_{m}"]) ** 2
        expected = torch.stack([sq[i][masked[i]].mean() for i in range(2)])
        torch.testing.assert_close(first[f"loss_{m}"], expected, atol=1e-6, rtol=1e-6)


def test_retrieval_says_when_recall_is_trivial(setup, tmp_path, capsys):
    """Over 2 clips, R@5 and R@10 are 1.0 whatever the model: the table marks them and says
    why, the JSON carries the candidate count and the same note."""
    args = ["retrieval", "--model", setup["ckpt"], "--num_heads", "2", "--decoder_num_heads",
            "2", "--manifest", setup["toy"]["valid"], "--device", "cpu"]
    assert cavmae(args) == 0
    table = capsys.readouterr().out
    assert "(2 candidates)" in table and "1.0000*" in table
    assert "* R@5, R@10 over 2 candidates: trivially 1.0 (k >= candidates), not informative" \
        in table
    assert cavmae([*args, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["num_candidates"] == 2 and res["a2v_R@10"] == 1.0
    assert res["note"].startswith("R@5, R@10 over 2 candidates: trivially 1.0")


def test_inpaint_cli_writes_figures(setup, tmp_path, capsys):
    ids = "toy_test_00001,toy_test_00004"
    assert cavmae(["inpaint", "--model", setup["ckpt"], "--num_heads", "2",
                   "--decoder_num_heads", "2", "--manifest", setup["toy"]["test"], "--ids", ids,
                   "--mask_ratios", "0.25,0.75", "--output", str(tmp_path), "--device", "cpu",
                   "--norm_pix"]) == 0
    paths = capsys.readouterr().out.split()
    names = sorted(p.split("/")[-1] for p in paths)
    assert names == ["toy_test_00001_mask0.25.png", "toy_test_00001_mask0.75.png",
                     "toy_test_00004_mask0.25.png", "toy_test_00004_mask0.75.png"]
    for path in paths:
        with open(path, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    # a data problem: one line naming it, exit status 1 (a traceback only with --debug)
    argv = ["inpaint", "--model", setup["ckpt"], "--num_heads", "2", "--decoder_num_heads", "2",
            "--manifest", setup["toy"]["test"], "--ids", "no_such_clip", "--output",
            str(tmp_path / "x"), "--device", "cpu", "--no_norm_pix"]  # a bare .pth: say it
    assert cavmae(argv) == 1
    err = capsys.readouterr().err
    assert "no_such_clip" in err and "Traceback" not in err
    with pytest.raises(KeyError, match="no_such_clip"):
        cavmae([*argv, "--debug"])


def test_extract_features_npy_and_pt(setup, tmp_path):
    base = ["--model", setup["ckpt"], "--num_heads", "2", "--decoder_num_heads", "2",
            "--manifest", setup["toy"]["test"], "--device", "cpu", "--batch_size", "4"]
    assert cavmae(["embed", *base, "--output", str(tmp_path / "p")]) == 0
    assert cavmae(["embed", *base, "--output", str(tmp_path / "t"), "--level", "tokens",
                   "--format", "pt"]) == 0
    pooled = json.loads((tmp_path / "p" / "index.json").read_text())
    tokens = json.loads((tmp_path / "t" / "index.json").read_text())
    assert len(pooled["clips"]) == len(tokens["clips"]) == 11
    index = json.loads((tmp_path / "p" / "index.json").read_text())
    sid = "toy_test_00002"
    files = index["clips"][sid]
    a = np.load(tmp_path / "p" / files["audio"])
    tok = torch.load(tmp_path / "t" / tokens["clips"][sid]["all"], weights_only=True)
    assert a.shape == (32,) and tok["audio"].shape == (32, 32)  # 8 x 4 audio patches
    assert tok["visual"].shape == (4, 32) and tok["joint"].shape == (36, 32)
    np.testing.assert_allclose(a, tok["audio"].mean(0).numpy(), rtol=1e-5, atol=1e-6)
    # The pooled audio / visual embeddings are those used for retrieval.
    model = setup["model"]
    ids, emb_a, emb_v = rt.compute_embeddings(model, eval_loader(setup["toy"]["test"], model))
    k = ids.index(sid)
    np.testing.assert_allclose(a, emb_a[k].numpy(), rtol=1e-5, atol=1e-6)
    v = np.load(tmp_path / "p" / files["visual"])
    np.testing.assert_allclose(v, emb_v[k].numpy(), rtol=1e-5, atol=1e-6)
