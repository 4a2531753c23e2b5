"""The fast path (fused attention, bf16 autocast, torch.compile) stays close to fp32 eager."""

import pytest
import torch
import torch.nn.functional as F

from speechbrain_cavmae import CAVMAE, CAVMAEClassifier, ContrastiveLoss, MaskedReconstructionLoss
from speechbrain_cavmae.model.attention import SelfAttention, explicit_attention, set_attention_kernel

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
        q = torch.zeros(4, 4, 32, 16, dtype=torch.bfloat16)
        set_attention_kernel(model, "fused")
        assert model.encoder.blocks_a[0].attn.use_fused(q)
        fused, out_fused = pretrain_loss(model, *batch)
        set_attention_kernel(model, "explicit")
        assert not model.encoder.blocks_a[0].attn.use_fused(q)
        math, out_math = pretrain_loss(model, *batch)
    torch.testing.assert_close(fused, math, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_fused["pred_a"], out_math["pred_a"], atol=1e-5, rtol=0)


def test_attention_dispatch_on_cpu():
    attn = SelfAttention(64, num_heads=4)
    q = torch.zeros(2, 4, 300, 16, dtype=torch.bfloat16)
    assert not attn.use_fused(q)  # bf16 on the CPU: explicit
    assert attn.use_fused(q.float())  # float32: PyTorch's kernel is as fast there
    attn.explicit_max_elements_cpu = 2 * 4 * 300 * 300 - 1  # weights too big to keep
    assert attn.use_fused(q)  # training call: falls back to the fused kernel
    with torch.no_grad():
        assert not attn.use_fused(q)  # nothing kept without gradients
    set_attention_kernel(attn, "explicit")
    assert not attn.use_fused(q.float())
    with pytest.raises(ValueError, match="kernel must be"):
        set_attention_kernel(attn, "flash")


def test_attention_explicit_in_pieces_same_result_as_fused():
    torch.manual_seed(0)
    attn = SelfAttention(64, num_heads=4, qkv_bias=True).eval()
    attn.chunk_elements = 3 * 300 * 300  # explicit path in pieces of 3 heads
    x = torch.randn(2, 300, 64)
    pad = torch.ones(2, 1, 1, 300, dtype=torch.bool)
    pad[1, ..., -100:] = False  # padding-only keys of the second sample
    with torch.no_grad():
        outs = {}
        for kernel in ("explicit", "fused"):
            set_attention_kernel(attn, kernel)
            outs[kernel] = (attn(x), attn(x, attn_mask=pad), attn(x, is_causal=True))
    for got, want in zip(outs["explicit"], outs["fused"]):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # the mask is honoured: changing masked-out keys changes nothing
    changed = x.clone()
    changed[1, -100:] += 5.0
    with torch.no_grad():
        set_attention_kernel(attn, "explicit")
        torch.testing.assert_close(attn(changed, attn_mask=pad)[1, :-100],
                                   attn(x, attn_mask=pad)[1, :-100], atol=1e-5, rtol=0)
    # under bf16 autocast the default dispatch takes the explicit path
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        set_attention_kernel(attn, "dispatch")
        dispatch = attn(x, attn_mask=pad)
        set_attention_kernel(attn, "explicit")
        torch.testing.assert_close(dispatch, attn(x, attn_mask=pad), atol=0, rtol=0)


@pytest.mark.parametrize("chunk_elements", [10**9, 2 * 4 * 40 * 40, 40 * 40, 3 * 40 * 40, 1])
@pytest.mark.parametrize("mask", ["none", "bool", "additive", "causal"])
def test_explicit_attention_in_pieces_matches_fused_with_gradients(chunk_elements, mask):
    """Whole batch, groups of batch items, single heads, groups of 3 heads (the last one
    short), and the smallest pieces: outputs and gradients equal PyTorch's fused kernel."""
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 5, 4, 40, 8).unbind(0)
    kwargs = {}
    if mask == "bool":
        kwargs["attn_mask"] = torch.rand(5, 1, 40, 40) > 0.3
        kwargs["attn_mask"][..., 0] = True  # every query keeps a key
    elif mask == "additive":
        kwargs["attn_mask"] = torch.randn(1, 4, 40, 40)
    elif mask == "causal":
        kwargs["is_causal"] = True
    results = []
    for fn in (F.scaled_dot_product_attention,
               lambda *a, **kw: explicit_attention(*a, chunk_elements=chunk_elements, **kw)):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        out = fn(*leaves, **kwargs)
        (out * torch.linspace(-1, 1, 8)).sum().backward()
        results.append([out] + [t.grad for t in leaves])
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


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


@pytest.mark.parametrize("logit_std, max_rel_err", [(1.0, 0.01), (9.0, 0.03)])
def test_explicit_attention_bf16_error_bounded(logit_std, max_rel_err):
    """bf16 scores (the explicit CPU path) stay within a few per cent of float32, and within
    about twice the error of PyTorch's fused kernel in bf16."""
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 4, 256, 32).unbind(0)
    q, k = q * logit_std**0.5, k * logit_std**0.5
    ref = F.scaled_dot_product_attention(q, k, v)
    low = [t.bfloat16() for t in (q, k, v)]

    def rel_err(out):
        return ((out.float() - ref).norm() / ref.norm()).item()

    explicit = rel_err(explicit_attention(*low, chunk_elements=256 * 256 * 3))
    fused = rel_err(F.scaled_dot_product_attention(*low))
    assert explicit < max_rel_err
    assert explicit < 3 * fused
