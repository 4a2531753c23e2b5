"""CAV-MAE Sync: numerical parity with the authors' code, its checkpoints, multi-ratio masking.

The fixture ``fixtures/sync_parity.pt`` was produced by running the authors'
``src/models/cav_mae_sync.py`` (github edsonroteia/cav-mae-sync) on two tiny models
(``global_heads``: global tokens and contrastive heads; ``plain``: neither; both with two
registers per modality), each with the registers dropped after the branches and kept through
the shared blocks, with perturbed weights, fixed inputs and fixed masking noise. It is
regenerated from a checkout by::

    python tests/fixtures/make_sync_parity.py --sync_src ~/cav-mae-sync/src \\
        --out /tmp/sync_parity.pt --compare tests/fixtures/sync_parity.pt

Where their code departs from what it means (kept registers cut at the unmasked audio
length; ``forward_feat`` returning kept registers) see the generator's docstring and
docs/sync.md. With ``CAVMAE_SYNC_SRC`` set to the checkout's ``src`` folder,
``test_fixture_regenerates_from_their_code`` regenerates the fixture and compares.
"""

import os
from pathlib import Path

import pytest
import torch
from processes import run

from speechbrain_cavmae import CAVMAE, ContrastiveLoss, MaskedReconstructionLoss
from speechbrain_cavmae import load_original_checkpoint
from speechbrain_cavmae.model.masking import draw_mask_ratios

FIXTURE = Path(__file__).parent / "fixtures" / "sync_parity.pt"
ATOL, ATOL_TOKENS = 1e-5, 1e-4
CASES = ("global_heads/dropped", "global_heads/kept", "plain/dropped", "plain/kept")


@pytest.fixture(scope="module")
def ref():
    return torch.load(FIXTURE, weights_only=True)


def heads(ref):
    cfg = ref["config"]
    return {"num_heads": cfg["num_heads"], "decoder_num_heads": cfg["decoder_num_heads"]}


def load(ref, case):
    name, regs = case.split("/")
    state = {"module." + k: v for k, v in ref["state_dict"][name].items()}  # DataParallel
    return load_original_checkpoint(state, registers_in_shared=regs == "kept",
                                    global_local_loss=name == "global_heads",
                                    num_frames=ref["config"]["total_frame"], **heads(ref))


@pytest.fixture(scope="module")
def runs(ref):
    out = {}
    for case in CASES:
        model = load(ref, case)
        with torch.no_grad():
            fwd = model(ref["inputs"]["audio"], ref["inputs"]["image"], 0.75, 0.75,
                        noise_a=ref["noise"]["audio"], noise_v=ref["noise"]["visual"])
            feat = model.encode(ref["inputs"]["audio"], ref["inputs"]["image"])
        out[case] = (model, fwd, feat)
    return out


def close(a, b, atol=ATOL):
    a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float()
    assert a.shape == b.shape, (a.shape, b.shape)
    torch.testing.assert_close(a, b, atol=atol, rtol=0)


def test_load_original_checkpoint_recognises_sync(ref, runs):
    cfg = ref["config"]
    for case in CASES:
        model = runs[case][0]
        enc = model.encoder
        assert isinstance(model, CAVMAE)
        assert enc.num_register_tokens == cfg["num_register_tokens"]
        assert enc.registers_in_shared == case.endswith("kept")
        assert enc.global_tokens == enc.contrastive_heads == case.startswith("global")
        assert model.num_frames == cfg["total_frame"]
        assert enc.audio_length == cfg["audio_length"]


@pytest.mark.parametrize("missing,flag", [
    ("registers_in_shared", "registers_in_shared"),
    ("global_local_loss", "global_local_loss"),
    ("num_frames", "num_frames"),
])
def test_what_weights_cannot_tell_is_a_named_error(ref, missing, flag):
    given = {"registers_in_shared": False, "global_local_loss": True, "num_frames": 16}
    del given[missing]
    with pytest.raises(ValueError, match=flag):
        load_original_checkpoint(ref["state_dict"]["global_heads"], **given, **heads(ref))


@pytest.mark.parametrize("case", CASES)
def test_masks_and_reconstructions(ref, runs, case):
    exp, (_, out, _) = ref["cases"][case], runs[case]
    close(out["mask_a"], exp["mask_a"])
    close(out["mask_v"], exp["mask_v"])
    assert torch.equal(out["ids_restore_a"], exp["ids_restore_a"])
    assert torch.equal(out["ids_restore_v"], exp["ids_restore_v"])
    close(out["latent"], exp["latent"], ATOL_TOKENS)
    close(out["pred_a"], exp["pred_a"])
    close(out["pred_v"], exp["pred_v"])


@pytest.mark.parametrize("norm_pix", [True, False])
@pytest.mark.parametrize("case", CASES)
def test_reconstruction_losses(ref, runs, case, norm_pix):
    exp, (_, out, _) = ref["cases"][case], runs[case]
    rec = MaskedReconstructionLoss(norm_pix=norm_pix)
    close(rec(out["pred_a"], out["target_a"], out["mask_a"]),
          exp[f"loss_mae_a_norm_pix_{norm_pix}"])
    close(rec(out["pred_v"], out["target_v"], out["mask_v"]),
          exp[f"loss_mae_v_norm_pix_{norm_pix}"])


@pytest.mark.parametrize("case", CASES)
def test_streams_global_and_local_contrastive(ref, runs, case):
    exp, (model, out, _) = ref["cases"][case], runs[case]
    close(out["tokens_a"], exp["latent_c_a"], ATOL_TOKENS)
    close(out["tokens_v"], exp["latent_c_v"], ATOL_TOKENS)
    loss = ContrastiveLoss()
    close(loss(out["rep_a"], out["rep_v"]), exp["loss_c_local"])
    if model.encoder.global_tokens:
        close(out["cls_a"], exp["cls_a"], ATOL_TOKENS)
        close(out["cls_v"], exp["cls_v"], ATOL_TOKENS)
        close(loss(out["cls_a"], out["cls_v"]), exp["loss_c_global"])
        # their global_local_losses: the mean of both, global first
        pairs = model.contrastive_representations(out)
        assert [p[0] is out["cls_a"] for p in pairs] == [True, False]
        combined = sum(loss(a, v) for a, v in pairs) / len(pairs)
        close(combined, (exp["loss_c_global"] + exp["loss_c_local"]) / 2)
    else:
        assert "cls_a" not in out and "cls_v" not in out
        assert model.contrastive_representations(out) == [(out["rep_a"], out["rep_v"])]


@pytest.mark.parametrize("case", CASES)
def test_encode_is_forward_feat(ref, runs, case):
    exp, (model, _, feat) = ref["cases"][case]["feat"], runs[case]
    assert len(feat) == len(exp) == (4 if model.encoder.global_tokens else 2)
    r = model.encoder.num_register_tokens if case.endswith("kept") else 0
    for i, ours in enumerate(feat):
        theirs = exp[str(i)]
        if i < 2 and r:  # their forward_feat returns kept registers with the patch tokens
            theirs = theirs[:, :-r]
        close(ours, theirs, ATOL_TOKENS)


def test_speechbrain_to_original_round_trip(ref):
    from speechbrain_cavmae.checkpoints.original import (
        original_to_speechbrain,
        speechbrain_to_original,
    )

    theirs = ref["state_dict"]["global_heads"]
    back = speechbrain_to_original(original_to_speechbrain(theirs))
    assert "constrative_head_audio.1.attn.qkv.weight" in back
    assert all(torch.equal(back[k], theirs[k]) for k in back)
    unused = set(theirs) - set(back)
    assert unused and all("norm1_" in k or "norm2_" in k for k in unused)


# ------------------------------------------------------------------ multi-ratio masking
def tiny_sync(**kwargs):
    sync = dict(num_register_tokens=1, registers_in_shared=False, global_tokens=True,
                global_local_loss=True, contrastive_heads=True, num_frames=16)
    sizes = dict(img_size=32, audio_length=32, embed_dim=16, modality_specific_depth=1,
                 num_heads=2, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    return CAVMAE(**{**sizes, **sync, **kwargs})


def test_multi_ratio_masking_one_ratio_per_step_same_on_every_process():
    audio, image = torch.randn(2, 32, 128), torch.randn(2, 3, 64, 64)
    # two "processes": separately built models with the same seed (64 px: 16 visual patches,
    # so that every ratio keeps a token)
    ranks = [tiny_sync(multi_ratio_masking=True, mask_ratio_seed=3, img_size=64).train()
             for _ in range(2)]
    kept = [[], []]
    for _ in range(8):
        for rank, model in enumerate(ranks):
            with torch.no_grad():
                out = model(audio, image, 0.75, 0.75)
            kept[rank].append((int(out["mask_a"][0].sum()), int(out["mask_v"][0].sum())))
    assert kept[0] == kept[1]
    ratios = [draw_mask_ratios(3, step) for step in range(8)]
    assert all(0.6 <= r < 0.9 for pair in ratios for r in pair)
    assert len(set(ratios)) == 8  # a new ratio each step
    # 16 audio and 16 visual patches: the masks follow the drawn ratios
    assert kept[0] == [(16 - int(16 * (1 - ra)), 16 - int(16 * (1 - rv))) for ra, rv in ratios]
    assert ranks[0].mask_ratio_step == 8
    # eval mode uses the given ratios; a resumed run sets the step
    ranks[0].eval()
    assert int(ranks[0](audio, image, 0.5, 0.5)["mask_a"][0].sum()) == 8
    resumed = tiny_sync(multi_ratio_masking=True, mask_ratio_seed=3, img_size=64).train()
    resumed.mask_ratio_step = 5
    with torch.no_grad():
        assert int(resumed(audio, image)["mask_a"][0].sum()) == kept[0][5][0]


def test_sync_off_is_cav_mae_and_any_segment_length():
    plain = CAVMAE(img_size=32, audio_length=48, embed_dim=16, modality_specific_depth=1,
                   num_heads=2, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    assert plain.sync_options() == {}
    assert not any("register" in k or "cls_token" in k or "contrastive_head" in k
                   for k in plain.state_dict())
    model = tiny_sync()
    for frames in (16, 48, 96):  # any multiple of 16 fbank frames (positions interpolated)
        a, v, ga, gv = model.encode(torch.randn(2, frames, 128), torch.randn(2, 3, 32, 32))
        assert a.shape == (2, frames // 16 * 8, 16) and ga.shape == (2, 16)


# ------------------------------------------------------------------ their checkpoint
def test_convert_their_checkpoint_into_a_model_folder(ref, runs, tmp_path, capsys):
    """A stand-in of their released checkpoint (their class, perturbed random weights,
    their key names, DataParallel prefix) through ``cavmae convert`` and ``from_hparams``."""
    from speechbrain_cavmae.checkpoints import load
    from speechbrain_cavmae.inference import AudioVisualClassifier
    from speechbrain_cavmae.cli import main

    pth = tmp_path / "cav_mae_sync.pth"
    torch.save({"module." + k: v for k, v in ref["state_dict"]["global_heads"].items()}, pth)
    out = tmp_path / "sync_folder"
    common = ["convert", "--model", str(pth), "--output", str(out), "--num_heads", "2",
              "--decoder_num_heads", "2"]
    assert main(common) != 0  # nothing guessed: each unknown is a named flag
    error = capsys.readouterr().err
    for flag in ("--n_frames", "--registers_in_shared", "--global_local_loss"):
        assert flag in error
    assert not out.exists()
    assert main(common + ["--n_frames", "16", "--no_registers_in_shared",
                          "--global_local_loss"]) == 0
    text = (out / "hyperparams.yaml").read_text()
    for line in ("n_frames: 16", "audio_length: 32", "num_register_tokens: 2",
                 "registers_in_shared: false", "global_tokens: true",
                 "contrastive_heads: true", "global_local_loss: true",
                 "num_frames: !ref <n_frames>", "multi_ratio_masking: false"):
        assert line in text, line
    # the folder feeds each frame with its segment, cut from their 1024-frame clip
    assert {k: load(out).inputs[k] for k in ("frame_segments", "clip_length",
                                              "frame_span_s")} == {
        "frame_segments": True, "clip_length": 1024, "frame_span_s": 10.0}
    inputs, noise = ref["inputs"], ref["noise"]
    want = runs["global_heads/dropped"][1]
    clf = AudioVisualClassifier.from_hparams(source=str(out), savedir=str(tmp_path / "sd"))
    for model in (clf.mods.model, load(out).model):
        assert model.num_frames == 16 and model.global_local_loss
        expected = runs["global_heads/dropped"][0].encoder.sync_options()
        assert model.encoder.sync_options() == expected
        with torch.no_grad():
            got = model.eval()(inputs["audio"], inputs["image"], noise_a=noise["audio"],
                               noise_v=noise["visual"])
        for key in ("pred_a", "pred_v", "mask_a", "rep_a", "rep_v", "cls_a", "cls_v"):
            torch.testing.assert_close(got[key], want[key], atol=1e-6, rtol=0)


def test_pooled_modes_use_the_sync_streams():
    """The five modes of a Sync encoder pool the patch tokens of its streams (global tokens
    and registers out, contrastive heads in), as ``encode`` returns them."""
    enc = tiny_sync(num_register_tokens=2).encoder.eval()
    audio, image = torch.randn(2, 32, 128), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, v, _, _ = enc.encode(audio, image)
        torch.testing.assert_close(enc.pool(audio, image, "audioonly"), a.mean(dim=1))
        torch.testing.assert_close(enc.pool(audio, image, "videoonly"), v.mean(dim=1))
        joint = enc.pool(audio, image, "multimodal")
    assert joint.shape == (2, 16) and torch.isfinite(joint).all()


@pytest.mark.skipif(not os.environ.get("CAVMAE_SYNC_SRC"),
                    reason="set CAVMAE_SYNC_SRC to the src folder of a cav-mae-sync checkout")
def test_fixture_regenerates_from_their_code(tmp_path):
    """The generator, run on their code, gives the committed fixture (``--compare``), in a
    child process: their constructor replaces classes inside timm."""
    out = tmp_path / "sync_parity.pt"
    done = run([FIXTURE.parent / "make_sync_parity.py", "--sync_src",
                os.environ["CAVMAE_SYNC_SRC"], "--out", out, "--compare", FIXTURE], check=False)
    assert done.returncode == 0 and "agrees" in done.stdout, done.stdout + done.stderr[-3000:]


@pytest.mark.parametrize("in_shared", [False, True])
def test_every_sync_parameter_gets_a_gradient(in_shared):
    """One training step reaches every parameter (DDP without find_unused_parameters)."""
    model = tiny_sync(num_register_tokens=2, registers_in_shared=in_shared).train()
    out = model(torch.randn(3, 32, 128), torch.randn(3, 3, 32, 32))
    rec, con = MaskedReconstructionLoss(), ContrastiveLoss()
    pairs = model.contrastive_representations(out)
    loss = (rec(out["pred_a"], out["target_a"], out["mask_a"])
            + rec(out["pred_v"], out["target_v"], out["mask_v"])
            + 0.01 * sum(con(a, v) for a, v in pairs) / len(pairs))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
