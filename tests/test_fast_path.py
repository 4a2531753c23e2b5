"""The fast path (fused attention, bf16 autocast, torch.compile) stays close to fp32 eager."""

import pytest
import torch

from speechbrain_cavmae import CAVMAE, CAVMAEClassifier, ContrastiveLoss, MaskedReconstructionLoss
from speechbrain_cavmae.attention import SelfAttention, set_attention_kernel

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
    with torch.no_grad():
        set_attention_kernel(model, "fused")
        assert model.encoder.blocks_a[0].attn.use_fused(batch[0])
        fused, out_fused = pretrain_loss(model, *batch)
        set_attention_kernel(model, "explicit")
        assert not model.encoder.blocks_a[0].attn.use_fused(batch[0])
        math, out_math = pretrain_loss(model, *batch)
    torch.testing.assert_close(fused, math, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_fused["pred_a"], out_math["pred_a"], atol=1e-5, rtol=0)


def test_attention_dispatch_explicit_for_short_cpu_sequences_same_result():
    torch.manual_seed(0)
    attn = SelfAttention(64, num_heads=4, qkv_bias=True).eval()
    limit = SelfAttention.explicit_max_tokens_cpu
    short, long = torch.randn(2, limit, 64), torch.randn(2, limit + 1, 64)
    assert not attn.use_fused(short) and attn.use_fused(long)
    pad = torch.ones(2, 1, 1, limit, dtype=torch.bool)
    pad[1, ..., -100:] = False  # padding-only keys of the second sample
    with torch.no_grad():
        outs = {}
        for kernel in ("dispatch", "fused"):
            set_attention_kernel(attn, kernel)
            outs[kernel] = (attn(short), attn(short, attn_mask=pad), attn(short, is_causal=True),
                            attn(long))
    for got, want in zip(outs["dispatch"], outs["fused"]):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # the mask is honoured: changing masked-out keys changes nothing
    changed = short.clone()
    changed[1, -100:] += 5.0
    with torch.no_grad():
        set_attention_kernel(attn, "dispatch")
        torch.testing.assert_close(attn(changed, attn_mask=pad)[1, :-100],
                                   attn(short, attn_mask=pad)[1, :-100], atol=1e-5, rtol=0)


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
