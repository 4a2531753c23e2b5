"""Numerical parity with the original CAV-MAE implementation.

The fixture ``fixtures/original_parity.pt`` was produced by running the original model code
(timm 0.4.5 attention semantics) on a tiny configuration with perturbed weights, fixed inputs
and fixed masking noise. It holds only tensors and state dicts. It is regenerated from a
checkout of the original repository (``git clone https://github.com/YuanGongND/cav-mae``) by::

    python tests/fixtures/make_original_parity.py --original_src ~/cav-mae/src \\
        --out /tmp/original_parity.pt --compare tests/fixtures/original_parity.pt

and these tests run against a regenerated file with
``CAVMAE_PARITY_FIXTURE=/tmp/original_parity.pt``. With ``CAVMAE_ORIGINAL_SRC`` set to the
checkout's ``src`` folder, ``test_fixture_regenerates_from_the_original`` also regenerates the
fixture and checks it against the committed one (see docs/testing.md).
"""

import os
from pathlib import Path

import pytest
import torch

from speechbrain_cavmae import (
    MODES,
    CAVMAE,
    CAVMAEClassifier,
    ContrastiveLoss,
    MaskedReconstructionLoss,
    load_original_checkpoint,
)
from speechbrain_cavmae.model.pos_embed import sincos_2d

from processes import run

COMMITTED = Path(__file__).parent / "fixtures" / "original_parity.pt"
FIXTURE = Path(os.environ.get("CAVMAE_PARITY_FIXTURE") or COMMITTED)
ATOL = 1e-5


@pytest.fixture(scope="module")
def ref():
    return torch.load(FIXTURE, weights_only=True)


@pytest.fixture(scope="module")
def pretrain_model(ref):
    cfg = ref["config"]
    model = load_original_checkpoint(
        ref["pretrain_state_dict"], num_heads=cfg["num_heads"],
        decoder_num_heads=cfg["decoder_num_heads"],
    )
    assert isinstance(model, CAVMAE)
    return model


@pytest.fixture(scope="module")
def pretrain_out(ref, pretrain_model):
    with torch.no_grad():
        return pretrain_model(
            ref["inputs"]["audio"], ref["inputs"]["image"], 0.75, 0.75,
            noise_a=ref["noise"]["audio"], noise_v=ref["noise"]["visual"],
        )


def close(a, b, atol=ATOL):
    a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float()
    assert a.shape == b.shape, (a.shape, b.shape)
    torch.testing.assert_close(a, b, atol=atol, rtol=0)


def test_inferred_architecture(ref, pretrain_model):
    cfg = ref["config"]
    enc = pretrain_model.encoder
    assert enc.embed_dim == cfg["embed_dim"]
    assert len(enc.blocks_a) == cfg["modality_specific_depth"]
    assert len(enc.blocks_u) == 12 - cfg["modality_specific_depth"]
    assert enc.audio_length == cfg["audio_length"]
    assert enc.image_grid == (cfg["img_size"] // 16,) * 2
    assert len(pretrain_model.decoder.blocks) == cfg["decoder_depth"]


def test_masks_and_targets(ref, pretrain_out):
    exp = ref["pretrain"]["norm_pix_True"]
    close(pretrain_out["mask_a"], exp["mask_a"])
    close(pretrain_out["mask_v"], exp["mask_v"])
    assert torch.equal(pretrain_out["ids_restore_a"], exp["ids_restore_a"])
    close(pretrain_out["target_a"], ref["target_a"])
    close(pretrain_out["target_v"], ref["target_v"])


def test_encoder_streams(ref, pretrain_out):
    exp = ref["pretrain"]["norm_pix_True"]
    close(pretrain_out["latent"], exp["latent"])
    close(pretrain_out["tokens_a"], exp["latent_c_a"])
    close(pretrain_out["tokens_v"], exp["latent_c_v"])
    close(pretrain_out["rep_a"], exp["rep_a"])
    close(pretrain_out["rep_v"], exp["rep_v"])


def test_reconstructions(ref, pretrain_out):
    exp = ref["pretrain"]["norm_pix_True"]
    close(pretrain_out["pred_a"], exp["pred_a"])
    close(pretrain_out["pred_v"], exp["pred_v"])


@pytest.mark.parametrize("norm_pix", [True, False])
def test_pretraining_losses(ref, pretrain_out, norm_pix):
    exp = ref["pretrain"][f"norm_pix_{norm_pix}"]
    rec = MaskedReconstructionLoss(norm_pix=norm_pix)
    loss_a = rec(pretrain_out["pred_a"], pretrain_out["target_a"], pretrain_out["mask_a"])
    loss_v = rec(pretrain_out["pred_v"], pretrain_out["target_v"], pretrain_out["mask_v"])
    loss_c, acc = ContrastiveLoss()(pretrain_out["rep_a"], pretrain_out["rep_v"], True)
    close(loss_a, exp["loss_mae_a"])
    close(loss_v, exp["loss_mae_v"])
    close(loss_c, exp["loss_c_unweighted"])
    close(acc, exp["c_acc"])
    close(1.0 * (loss_a + loss_v) + 0.01 * loss_c, exp["loss"])


def test_bidirectional_contrastive(ref, pretrain_out):
    exp = ref["pretrain"]["norm_pix_True"]
    loss, acc = ContrastiveLoss(bidirectional=True)(
        pretrain_out["rep_a"], pretrain_out["rep_v"], return_accuracy=True
    )
    close(loss, exp["nce_bidirectional"])
    close(acc, exp["c_acc_bidirectional"])


def test_encode_features(ref, pretrain_model):
    with torch.no_grad():
        a, v = pretrain_model.encode(ref["inputs"]["audio"], ref["inputs"]["image"])
    close(a, ref["feat"]["audio"])
    close(v, ref["feat"]["visual"])


@pytest.fixture(scope="module")
def ft_model(ref):
    cfg = ref["config"]
    model = load_original_checkpoint(ref["ft_state_dict"], num_heads=cfg["num_heads"])
    assert isinstance(model, CAVMAEClassifier)
    assert model.num_classes == cfg["label_dim"]
    return model


@pytest.mark.parametrize("mode", MODES)
def test_classifier_modes(ref, ft_model, mode):
    a, v = ref["inputs"]["audio"], ref["inputs"]["image"]
    with torch.no_grad():
        logits = ft_model(a, v, mode=mode)
    close(logits, ref["ft"][mode])


def test_classifier_missing_modality_needs_only_one_input(ref, ft_model):
    a, v = ref["inputs"]["audio"], ref["inputs"]["image"]
    with torch.no_grad():
        close(ft_model(a, None, mode="missingaudioonly"), ref["ft"]["missingaudioonly"])
        close(ft_model(None, v, mode="missingvideoonly"), ref["ft"]["missingvideoonly"])
        close(ft_model(a, None, mode="audioonly"), ref["ft"]["audioonly"])


def test_classifier_encode(ref, ft_model):
    with torch.no_grad():
        a, v = ft_model.encode(ref["inputs"]["audio"], ref["inputs"]["image"])
    close(a, ref["ft_feat"]["audio"])
    close(v, ref["ft_feat"]["visual"])


@pytest.mark.parametrize(
    "key,dim,rows,cols",
    [("audio_32_8x8", 32, 8, 8), ("audio_32_8x64", 32, 8, 64),
     ("visual_32_4x4", 32, 4, 4), ("visual_32_14x14", 32, 14, 14)],
)
def test_sincos_positional_embedding(ref, key, dim, rows, cols):
    close(sincos_2d(dim, rows, cols), ref["pos_embed_reference"][key], atol=1e-6)


def test_module_prefix_and_file_loading(ref, tmp_path):
    prefixed = {"module." + k: v for k, v in ref["ft_state_dict"].items()}
    path = tmp_path / "ft.pth"
    torch.save(prefixed, path)
    model = load_original_checkpoint(str(path), num_heads=ref["config"]["num_heads"])
    with torch.no_grad():
        logits = model(ref["inputs"]["audio"], ref["inputs"]["image"])
    close(logits, ref["ft"]["multimodal"])



@pytest.mark.skipif(not os.environ.get("CAVMAE_ORIGINAL_SRC"),
                    reason="set CAVMAE_ORIGINAL_SRC to the src folder of a cav-mae checkout")
def test_fixture_regenerates_from_the_original(tmp_path):
    """The generator, run on the original code, gives the committed fixture: identical weights,
    inputs, noise and masks, computed outputs within float rounding (``--compare``). It runs in
    a child process: the original's constructors replace classes inside timm."""
    out = tmp_path / "original_parity.pt"
    done = run([COMMITTED.parent / "make_original_parity.py",
                "--original_src", os.environ["CAVMAE_ORIGINAL_SRC"], "--out", out,
                "--compare", COMMITTED], check=False)
    assert done.returncode == 0 and "agrees" in done.stdout, done.stdout + done.stderr[-3000:]
    assert out.exists()


BUILT_AFTER_THE_ORIGINAL = r'''
import os, sys, torch
import timm.models.vision_transformer as vt
if os.environ.get("CAVMAE_ORIGINAL_SRC"):  # the original itself, built first
    sys.path.insert(0, os.environ["CAVMAE_ORIGINAL_SRC"])
    from models.cav_mae import CAVMAEFT
    CAVMAEFT(label_dim=3, img_size=32, audio_length=32, patch_size=16, embed_dim=32,
             modality_specific_depth=1, num_heads=4)
else:  # what its constructors do: timm's classes replaced by its own (other signatures)
    class Block(torch.nn.Module):
        def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=False, qk_scale=None,
                     drop=0.0, attn_drop=0.0, drop_path=0.0, act_layer=torch.nn.GELU,
                     norm_layer=torch.nn.LayerNorm):
            super().__init__()
            self.norm1, self.norm1_a, self.norm1_v = (norm_layer(dim) for _ in range(3))

    class PatchEmbed(torch.nn.Module):
        def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768):
            super().__init__()
            self.proj = torch.nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)

    vt.Block, vt.PatchEmbed = Block, PatchEmbed
assert vt.Block.__module__ != "timm.models.vision_transformer"
from speechbrain_cavmae import load_original_checkpoint
ref = torch.load(sys.argv[1], weights_only=True)
cfg = ref["config"]
ft = load_original_checkpoint(ref["ft_state_dict"], num_heads=cfg["num_heads"])
pre = load_original_checkpoint(ref["pretrain_state_dict"], num_heads=cfg["num_heads"],
                               decoder_num_heads=cfg["decoder_num_heads"])
with torch.no_grad():
    logits = ft(ref["inputs"]["audio"], ref["inputs"]["image"])
torch.save({"logits": logits, "pre": type(pre).__name__}, sys.argv[2])
'''


def test_models_build_the_same_after_the_original_replaced_timm_classes(ref, tmp_path):
    """The original replaces ``timm.models.vision_transformer.Block`` and ``PatchEmbed``
    with its own classes when one of its models is built. In a process where that happened
    before this package was imported, ``load_original_checkpoint`` still builds this
    package's blocks and gives the original's logits (a child process: the replacement is
    global). With ``CAVMAE_ORIGINAL_SRC`` set, the original's own model is built first."""
    out = tmp_path / "after.pt"
    run(["-c", BUILT_AFTER_THE_ORIGINAL, FIXTURE, out])
    got = torch.load(out, weights_only=True)
    assert got["pre"] == "CAVMAE"
    close(got["logits"], ref["ft"]["multimodal"])
