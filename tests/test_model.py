"""Shapes, gradients, masking modes and non-default sizes of the CAV-MAE modules."""

import pytest
import torch
from references import linear_time_resize

from speechbrain_cavmae import (
    CAVMAE,
    MODES,
    CAVMAEClassifier,
    ContrastiveLoss,
    MaskedReconstructionLoss,
    random_masking,
    structured_noise,
)
from speechbrain_cavmae.model.decoder import unshuffle
from speechbrain_cavmae.model.patchify import (
    patchify_audio,
    patchify_image,
    unpatchify_audio,
    unpatchify_image,
)

TINY = dict(embed_dim=32, num_heads=4, modality_specific_depth=1, shared_depth=2,
            decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)


def tiny_pretrain(audio_length, img_size, **kw):
    torch.manual_seed(0)
    return CAVMAE(img_size=img_size, audio_length=audio_length, **{**TINY, **kw})


def test_random_masking_keeps_lowest_noise():
    x = torch.arange(10.0).reshape(1, 10, 1).repeat(2, 1, 3)
    noise = torch.tensor([[0.9, 0.1, 0.5, 0.3, 0.8, 0.2, 0.7, 0.0, 0.6, 0.4]] * 2)
    kept, mask, ids_restore = random_masking(x, 0.7, noise)
    # int(10 * 0.3) = 3 kept: the lowest noises are at 7, 1, 5 (ascending order)
    assert kept[0, :, 0].tolist() == [7.0, 1.0, 5.0]
    assert mask[0].tolist() == [1, 0, 1, 1, 1, 0, 1, 0, 1, 1]
    restored = unshuffle(kept, ids_restore, torch.full((1, 1, 3), -1.0))
    assert torch.equal(restored[mask == 0], x[mask == 0])
    assert (restored[mask == 1] == -1).all()


def test_random_masking_rejects_wrong_noise_shape():
    with pytest.raises(ValueError, match="noise must have shape"):
        random_masking(torch.randn(2, 8, 4), 0.5, torch.rand(2, 7))


@pytest.mark.parametrize("mode,ratio", [("time", 0.75), ("freq", 0.5), ("tf", 0.75)])
def test_structured_noise_masks_whole_columns_or_rows(mode, ratio):
    torch.manual_seed(1)
    f, t = 8, 16
    noise = structured_noise(3, f, t, ratio, mode).reshape(3, f, t)
    high = noise > 1
    cols = high.all(dim=1).sum(dim=1)
    rows = high.all(dim=2).sum(dim=1)
    if mode == "time":
        assert cols.tolist() == [int(t * ratio)] * 3
    elif mode == "freq":
        assert rows.tolist() == [int(f * ratio)] * 3
    else:
        assert cols.tolist() == [int(t * ratio * 0.7)] * 3
        assert rows.tolist() == [int(f * ratio * 0.7)] * 3
    # every raised entry lies in a chosen column or row
    assert torch.equal(high, high.all(dim=1, keepdim=True) | high.all(dim=2, keepdim=True))


def test_structured_noise_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mask_mode"):
        structured_noise(1, 8, 4, 0.5, "diagonal")


@pytest.mark.parametrize("mask_mode", ["unstructured", "time", "freq", "tf"])
def test_time_mask_drops_whole_columns_in_the_model(mask_mode):
    model = tiny_pretrain(128, 32)
    out = model(torch.randn(2, 128, 128), torch.randn(2, 3, 32, 32), mask_mode=mask_mode)
    mask = out["mask_a"].reshape(2, 8, 8)
    assert out["mask_a"].sum(dim=1).tolist() == [48.0, 48.0]
    if mask_mode == "time":
        assert (mask.all(dim=1) | (~mask.bool()).all(dim=1)).all()
    if mask_mode == "freq":
        assert (mask.all(dim=2) | (~mask.bool()).all(dim=2)).all()


def test_model_keeps_lowest_noise_tokens_and_decodes_only_from_them():
    """mask_a / mask_v mark all but the lowest-noise tokens; changing a masked patch of the
    input changes the targets but nothing the encoder or decoder computes, changing a kept
    patch changes the predictions of both modalities."""
    model = tiny_pretrain(128, 64).eval()
    torch.manual_seed(3)
    audio, image = torch.randn(2, 128, 128), torch.randn(2, 3, 64, 64)
    noise_a, noise_v = torch.rand(2, 64), torch.rand(2, 16)
    kept_a = noise_a.argsort(dim=1)[:, :16]  # int(64 * 0.25) lowest
    kept_v = noise_v.argsort(dim=1)[:, :4]
    with torch.no_grad():
        out = model(audio, image, noise_a=noise_a, noise_v=noise_v)
    for mask, kept, n in ((out["mask_a"], kept_a, 64), (out["mask_v"], kept_v, 16)):
        expected = torch.ones(2, n)
        expected.scatter_(1, kept, 0.0)
        assert torch.equal(mask, expected)
    # audio token k (frequency-major) is rows 16*(k // 8).. of frames 16*(k % 8)..
    masked_a = int((out["mask_a"][0] == 1).nonzero()[0])
    kept_tok = int(kept_a[0, 0])
    f_row, t_col = divmod(masked_a, 8)
    changed = audio.clone()
    changed[0, 16 * t_col:16 * t_col + 16, 16 * f_row:16 * f_row + 16] += 5.0
    masked_v = int((out["mask_v"][0] == 1).nonzero()[0])
    v_row, v_col = divmod(masked_v, 4)
    changed_img = image.clone()
    changed_img[0, :, 16 * v_row:16 * v_row + 16, 16 * v_col:16 * v_col + 16] -= 3.0
    with torch.no_grad():
        out2 = model(changed, changed_img, noise_a=noise_a, noise_v=noise_v)
    assert not torch.equal(out2["target_a"][0, masked_a], out["target_a"][0, masked_a])
    assert not torch.equal(out2["target_v"][0, masked_v], out["target_v"][0, masked_v])
    for key in ("pred_a", "pred_v", "latent", "rep_a", "rep_v"):
        torch.testing.assert_close(out2[key], out[key], atol=0, rtol=0, msg=key)
    f_row, t_col = divmod(kept_tok, 8)
    kept_change = audio.clone()
    kept_change[0, 16 * t_col:16 * t_col + 16, 16 * f_row:16 * f_row + 16] += 5.0
    with torch.no_grad():
        out3 = model(kept_change, image, noise_a=noise_a, noise_v=noise_v)
    for key in ("pred_a", "pred_v"):
        assert (out3[key][0] - out[key][0]).abs().max() > 1e-4, key
        torch.testing.assert_close(out3[key][1], out[key][1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("audio_length,img_size", [(128, 64), (512, 64), (128, 224)])
@pytest.mark.parametrize("mask_mode", ["unstructured", "time", "freq", "tf"])
def test_pretraining_shapes_and_gradients(audio_length, img_size, mask_mode):
    model = tiny_pretrain(audio_length, img_size)
    b = 2
    audio = torch.randn(b, audio_length, 128)
    image = torch.randn(b, 3, img_size, img_size)
    out = model(audio, image, mask_mode=mask_mode)
    n_a, n_v = audio_length // 2, (img_size // 16) ** 2
    assert out["pred_a"].shape == (b, n_a, 256)
    assert out["pred_v"].shape == (b, n_v, 768)
    assert out["target_a"].shape == (b, n_a, 256)
    assert out["target_v"].shape == (b, n_v, 768)
    assert out["mask_a"].shape == (b, n_a) and out["mask_v"].shape == (b, n_v)
    assert out["rep_a"].shape == out["rep_v"].shape == (b, 32)
    rec = MaskedReconstructionLoss()
    loss = (rec(out["pred_a"], out["target_a"], out["mask_a"])
            + rec(out["pred_v"], out["target_v"], out["mask_v"])
            + 0.01 * ContrastiveLoss()(out["rep_a"], out["rep_v"]))
    loss.backward()
    enc = model.encoder
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # positional embeddings are fixed by default
    assert not enc.pos_embed_a.requires_grad and enc.pos_embed_a.grad is None
    # both shared blocks and all three norm sets get gradients
    for blk in enc.blocks_u:
        for norm in (blk.norm1, blk.norm1_a, blk.norm1_v):
            assert norm.weight.grad.abs().sum() > 0


def test_shared_blocks_are_chained_in_single_modality_streams():
    """With two shared blocks, the audio-only stream applies both in sequence."""
    model = tiny_pretrain(128, 32).eval()
    enc = model.encoder
    audio = torch.randn(2, 128, 128)
    with torch.no_grad():
        x = enc.forward_audio_branch(enc.embed_audio(audio))
        manual = enc.norm_a(enc.blocks_u[1](enc.blocks_u[0](x, "a"), "a"))
        tokens, _ = model.encode(audio, None)
        out = model(audio, torch.randn(2, 3, 32, 32), mask_ratio_a=0.0, mask_ratio_v=0.0,
                    noise_a=torch.arange(64.0).repeat(2, 1))
    torch.testing.assert_close(tokens, manual)
    torch.testing.assert_close(out["tokens_a"], manual, atol=1e-5, rtol=0)


def test_mask_ratio_zero_encoder_equals_encode():
    model = tiny_pretrain(128, 64).eval()
    a, v = torch.randn(2, 128, 128), torch.randn(2, 3, 64, 64)
    ident_a = torch.arange(64.0).repeat(2, 1)
    ident_v = torch.arange(16.0).repeat(2, 1)
    with torch.no_grad():
        out = model(a, v, 0.0, 0.0, noise_a=ident_a, noise_v=ident_v)
        ea, ev = model.encode(a, v)
    torch.testing.assert_close(out["tokens_a"], ea, atol=1e-5, rtol=0)
    torch.testing.assert_close(out["tokens_v"], ev, atol=1e-5, rtol=0)


def test_decode_false_skips_decoder():
    model = tiny_pretrain(128, 32).eval()
    a, v = torch.randn(2, 128, 128), torch.randn(2, 3, 32, 32)
    noise_a, noise_v = torch.rand(2, 64), torch.rand(2, 4)
    with torch.no_grad():
        out = model(a, v, noise_a=noise_a, noise_v=noise_v, decode=False)
        full = model(a, v, noise_a=noise_a, noise_v=noise_v)
    assert "pred_a" not in out and "pred_v" not in out
    for key in ("rep_a", "rep_v", "latent", "mask_a"):
        torch.testing.assert_close(out[key], full[key], atol=0, rtol=0, msg=key)


def test_contrastive_false_skips_single_modality_streams():
    model = tiny_pretrain(128, 32).eval()
    a, v = torch.randn(2, 128, 128), torch.randn(2, 3, 32, 32)
    noise_a, noise_v = torch.rand(2, 64), torch.rand(2, 4)
    with torch.no_grad():
        full = model(a, v, noise_a=noise_a, noise_v=noise_v)
        mae_only = model(a, v, noise_a=noise_a, noise_v=noise_v, contrastive=False)
    assert "rep_a" not in mae_only and "tokens_v" not in mae_only
    torch.testing.assert_close(mae_only["pred_a"], full["pred_a"])


@pytest.mark.parametrize("mode", MODES)
def test_classifier_modes_shapes_and_gradients(mode):
    torch.manual_seed(0)
    model = CAVMAEClassifier(7, mode=mode, img_size=64, audio_length=128, embed_dim=32,
                             num_heads=4, modality_specific_depth=1, shared_depth=2)
    a, v = torch.randn(3, 128, 128), torch.randn(3, 3, 64, 64)
    uses_audio = mode in ("multimodal", "audioonly", "missingaudioonly")
    uses_image = mode in ("multimodal", "videoonly", "missingvideoonly")
    with torch.no_grad():
        ref = model(a, v)
        other_a = model(torch.randn(3, 128, 128), v)
        other_v = model(a, torch.randn(3, 3, 64, 64))
        # an unused input may be left out altogether
        alone = model(a if uses_audio else None, v if uses_image else None)
    torch.testing.assert_close(alone, ref, atol=0, rtol=0)
    for changed, used in ((other_a, uses_audio), (other_v, uses_image)):
        if used:
            assert (changed - ref).abs().max() > 1e-4
        else:
            torch.testing.assert_close(changed, ref, atol=0, rtol=0)
    logits = model(a, v)
    assert logits.shape == (3, 7)
    logits.sum().backward()
    enc = model.encoder
    assert (enc.patch_embed_a.proj.weight.grad is not None) == uses_audio
    assert (enc.patch_embed_v.proj.weight.grad is not None) == (not uses_audio or mode == "multimodal")
    assert enc.pos_embed_a.requires_grad  # trainable in fine-tuning, as the original


def test_classifier_rejects_unknown_mode_and_missing_input():
    with pytest.raises(ValueError, match="unknown mode"):
        CAVMAEClassifier(3, mode="audio", embed_dim=32, num_heads=4, modality_specific_depth=1)
    model = CAVMAEClassifier(3, img_size=32, audio_length=64, embed_dim=32, num_heads=4,
                             modality_specific_depth=1)
    with pytest.raises(ValueError, match="needs the image input"):
        model(torch.randn(1, 64, 128), None, mode="multimodal")


def test_audio_patch_embed_checks_input():
    model = tiny_pretrain(128, 32)
    with pytest.raises(ValueError, match="128-bin log-mel"):
        model.encode(torch.randn(1, 128, 64), None)
    with pytest.raises(ValueError, match="multiple of 16"):
        model.encode(torch.randn(1, 120, 128), None)


def test_patchify_roundtrip_and_order():
    a = torch.randn(2, 64, 128)
    p = patchify_audio(a)
    assert torch.equal(unpatchify_audio(p, (8, 4)), a)
    # token 1 is the second time patch of the lowest frequency band
    assert torch.equal(p[:, 1].reshape(2, 16, 16), a[:, 16:32, 0:16].transpose(1, 2))
    img = torch.randn(2, 3, 32, 48)
    assert torch.equal(unpatchify_image(patchify_image(img), (2, 3)), img)


def test_other_audio_length_at_inference_interpolates_positions():
    """64 frames on a 128-frame model: the same tokens as a 64-frame model with the same
    weights whose audio positional embedding is the reference resampling (8 -> 4 columns)."""
    model = tiny_pretrain(128, 32).eval()
    with torch.no_grad():
        model.encoder.pos_embed_a.copy_(torch.randn(1, 64, 32))  # every column different
    short = tiny_pretrain(64, 32).eval()
    state = model.state_dict()
    state["encoder.pos_embed_a"] = linear_time_resize(state["encoder.pos_embed_a"], 8, 4)
    state["decoder.pos_embed_a"] = linear_time_resize(state["decoder.pos_embed_a"], 8, 4)
    short.load_state_dict(state)
    audio = torch.randn(2, 64, 128)
    with torch.no_grad():
        a, _ = model.encode(audio, None)
        expected, _ = short.encode(audio, None)
        noise_a, noise_v = torch.rand(2, 32), torch.rand(2, 4)
        image = torch.randn(2, 3, 32, 32)
        out = model(audio, image, noise_a=noise_a, noise_v=noise_v)
        ref = short(audio, image, noise_a=noise_a, noise_v=noise_v)
    assert a.shape == (2, 32, 32)
    torch.testing.assert_close(a, expected, atol=1e-5, rtol=0)
    # the decoder resamples its own audio embedding the same way
    torch.testing.assert_close(out["pred_a"], ref["pred_a"], atol=1e-5, rtol=0)


def test_masked_reconstruction_loss_scores_only_masked_patches():
    pred = torch.zeros(1, 4, 8)
    target = torch.ones(1, 4, 8)
    target[0, 0] = 5.0  # visible patch: ignored
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    assert MaskedReconstructionLoss(norm_pix=False)(pred, target, mask).item() == 1.0
    target = torch.arange(8.0).repeat(1, 4, 1)
    normed = MaskedReconstructionLoss(norm_pix=True)(pred, target, mask)
    expected = ((target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5) ** 2
    torch.testing.assert_close(normed, expected.mean())


def test_contrastive_loss_direction_and_accuracy():
    rep_a = torch.eye(4)
    rep_v = torch.eye(4)
    loss, acc = ContrastiveLoss(temperature=0.05)(rep_a, rep_v, return_accuracy=True)
    assert acc.item() == 1.0 and loss.item() < 1e-6
    # the default direction classifies, for each visual clip, among the batch's audio clips
    torch.manual_seed(0)
    rep_a, rep_v = torch.randn(5, 8), torch.randn(5, 8)
    sim = torch.nn.functional.normalize(rep_a, dim=1) @ torch.nn.functional.normalize(rep_v, dim=1).t() / 0.05
    v2a = torch.nn.functional.cross_entropy(sim.t(), torch.arange(5))
    a2v = torch.nn.functional.cross_entropy(sim, torch.arange(5))
    assert abs(v2a - a2v) > 1e-3
    torch.testing.assert_close(ContrastiveLoss()(rep_a, rep_v), v2a)
    torch.testing.assert_close(ContrastiveLoss(bidirectional=True)(rep_a, rep_v), (v2a + a2v) / 2)
    acc = ContrastiveLoss()(rep_a, rep_v, return_accuracy=True)[1]
    assert acc == (sim.argmax(dim=0) == torch.arange(5)).float().mean()


def test_masking_that_keeps_no_token_is_an_error():
    """A stream of 4 tokens at ratio 0.8 keeps none: an error naming both (before: the
    encoder attended over nothing and a tiny Sync model's training went NaN)."""
    from speechbrain_cavmae.model.masking import random_masking

    with pytest.raises(ValueError, match="mask ratio 0.8 keeps no token of a stream of 4"):
        random_masking(torch.randn(2, 4, 8), 0.8)
    assert random_masking(torch.randn(2, 4, 8), 0.75)[0].shape == (2, 1, 8)
