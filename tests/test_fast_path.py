"""The fast path (fused attention, bf16 autocast, torch.compile) stays close to fp32 eager."""

import pytest
import torch

from speechbrain_cavmae import CAVMAE, CAVMAEClassifier, ContrastiveLoss, MaskedReconstructionLoss

SIZES = dict(img_size=64, audio_length=128, embed_dim=64, num_heads=4, modality_specific_depth=2)


def pretrain_loss(model, audio, image, noise_a, noise_v):
    out = model(audio, image, noise_a=noise_a, noise_v=noise_v)
    rec = MaskedReconstructionLoss()
    return (rec(out["pred_a"], out["target_a"], out["mask_a"])
            + rec(out["pred_v"], out["target_v"], out["mask_v"])
            + 0.01 * ContrastiveLoss()(out["rep_a"], out["rep_v"])), out


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)
    return (torch.randn(4, 128, 128), torch.randn(4, 3, 64, 64), torch.rand(4, 64),
            torch.rand(4, 16))


def test_fused_attention_matches_explicit_math(batch):
    torch.manual_seed(0)
    model = CAVMAE(**SIZES, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4).eval()
    assert model.encoder.blocks_a[0].attn.fused_attn
    with torch.no_grad():
        fused, out_fused = pretrain_loss(model, *batch)
        for m in model.modules():
            if hasattr(m, "fused_attn"):
                m.fused_attn = False
        math, out_math = pretrain_loss(model, *batch)
    torch.testing.assert_close(fused, math, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_fused["pred_a"], out_math["pred_a"], atol=1e-5, rtol=0)


def test_bf16_autocast_close_to_fp32(batch):
    torch.manual_seed(0)
    model = CAVMAE(**SIZES, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4).eval()
    with torch.no_grad():
        ref, ref_out = pretrain_loss(model, *batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low, low_out = pretrain_loss(model, *batch)
    assert low.dtype == torch.float32  # the losses are computed in float32
    assert abs(low.item() - ref.item()) / ref.item() < 2e-2
    cos = torch.nn.functional.cosine_similarity(
        low_out["rep_a"].float(), ref_out["rep_a"], dim=-1)
    assert cos.min() > 0.999


@pytest.mark.slow
def test_torch_compile_matches_eager(batch):
    torch.manual_seed(0)
    model = CAVMAEClassifier(5, img_size=64, audio_length=128, embed_dim=32, num_heads=4,
                             modality_specific_depth=1).eval()
    audio, image = batch[0], batch[1]
    with torch.no_grad():
        eager = model(audio, image)
        compiled = torch.compile(model, dynamic=False)(audio, image)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
