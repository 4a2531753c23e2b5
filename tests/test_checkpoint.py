"""Loading original checkpoints: inferred architecture, errors, length change, MAE init."""

from pathlib import Path

import pytest
import timm
import torch
from references import linear_time_resize

from speechbrain_cavmae import (
    CAVMAE,
    CAVMAEClassifier,
    CheckpointMismatchError,
    init_from_imagenet_mae,
    load_original_checkpoint,
)
from speechbrain_cavmae.checkpoints.loader import architecture, prepare_state
from speechbrain_cavmae.checkpoints.original import (
    original_to_speechbrain,
    speechbrain_to_original,
)
from speechbrain_cavmae.model.pos_embed import resize_time_pos_embed

FIXTURE = Path(__file__).parent / "fixtures" / "original_parity.pt"


@pytest.fixture(scope="module")
def ref():
    return torch.load(FIXTURE, weights_only=True)


def test_roundtrip_of_key_names(ref):
    for name in ("pretrain_state_dict", "ft_state_dict"):
        original = ref[name]
        ours = original_to_speechbrain(original)
        back = speechbrain_to_original(ours)
        used = {k for k in original if not (
            k.split(".")[0] in ("blocks_a", "blocks_v", "decoder_blocks")
            and k.split(".")[2] in ("norm1_a", "norm1_v", "norm2_a", "norm2_v"))}
        assert set(back) == used


def test_full_size_defaults_are_inferred():
    """A ViT-B sized state dict gets the original's 12 encoder and 16 decoder heads."""
    torch.manual_seed(0)
    model = CAVMAE()
    original = speechbrain_to_original(model.state_dict())
    cfg = architecture(prepare_state(original))
    assert cfg == {
        "kind": "pretrain", "img_size": 224, "audio_length": 1024, "n_mels": 128,
        "patch_size": 16, "in_chans": 3, "embed_dim": 768, "modality_specific_depth": 11,
        "shared_depth": 1, "num_heads": 12, "mlp_ratio": 4.0, "qkv_bias": True,
        "decoder_embed_dim": 512, "decoder_depth": 8, "decoder_num_heads": 16,
    }


def test_classifier_kind_and_classes(ref):
    cfg = architecture(prepare_state(ref["ft_state_dict"]), num_heads=4)
    assert cfg["kind"] == "classifier" and cfg["num_classes"] == 5
    assert cfg["audio_length"] == 128 and cfg["img_size"] == 64


def test_missing_key_is_an_error_naming_it(ref):
    state = dict(ref["ft_state_dict"])
    del state["blocks_u.0.norm1_a.weight"]
    with pytest.raises(CheckpointMismatchError, match=r"missing keys.*blocks_u\.0\.norm1_a\.weight"):
        load_original_checkpoint(state, num_heads=4)


def test_unknown_key_is_an_error_naming_it(ref):
    state = dict(ref["ft_state_dict"])
    state["module.cls_token_x"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match="cls_token_x"):
        load_original_checkpoint(state, num_heads=4)


def test_time_resize_reference_on_a_hand_computed_case():
    """The reference itself: 4 columns -> 2 averages neighbouring pairs, 2 -> 4 blends."""
    pe = torch.tensor([0.0, 2.0, 4.0, 6.0, 10.0, 20.0, 30.0, 40.0]).reshape(1, 8, 1)
    assert linear_time_resize(pe, 2, 2).flatten().tolist() == [1.0, 5.0, 15.0, 35.0]
    pe = torch.tensor([0.0, 4.0]).reshape(1, 2, 1)
    assert linear_time_resize(pe, 1, 4).flatten().tolist() == [0.0, 1.0, 3.0, 4.0]
    for rows, cols, new in ((8, 8, 4), (8, 8, 16), (8, 64, 7), (2, 3, 5)):
        pe = torch.randn(1, rows * cols, 6)
        torch.testing.assert_close(resize_time_pos_embed(pe, rows, new),
                                   linear_time_resize(pe, rows, new), atol=1e-6, rtol=0)
    pe = torch.randn(1, 16, 4)
    assert resize_time_pos_embed(pe, 8, 2) is pe  # same length: untouched


def test_loading_at_another_audio_length_interpolates_time(ref):
    """The original cannot load a checkpoint at another audio_length (load_state_dict
    fails on the shape of pos_embed_a); here the audio embedding is resampled along time.
    A random embedding (as a fine-tuned, trainable one) makes every column count."""
    state = dict(ref["ft_state_dict"])
    torch.manual_seed(0)
    state["pos_embed_a"] = torch.randn(1, 64, 32)
    model = load_original_checkpoint(state, num_heads=4, audio_length=64)
    assert model.encoder.audio_length == 64 and model.encoder.audio_grid == (8, 4)
    torch.testing.assert_close(model.encoder.pos_embed_a.data,
                               linear_time_resize(state["pos_embed_a"], 8, 4),
                               atol=1e-6, rtol=0)
    # nothing else is changed by the new length
    same = load_original_checkpoint(state, num_heads=4)
    ours, theirs = model.state_dict(), same.state_dict()
    assert set(ours) == set(theirs)
    for key in ours:
        if key != "encoder.pos_embed_a":
            assert torch.equal(ours[key], theirs[key]), key
    # the full-length model resamples its embedding on the fly for 64 frames: same logits
    audio, image = torch.randn(2, 64, 128), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        got = model(audio, image)
        torch.testing.assert_close(got, same(audio, image), atol=1e-5, rtol=0)


def test_pretrain_checkpoint_at_longer_length(ref):
    state = dict(ref["pretrain_state_dict"])
    torch.manual_seed(1)
    state["pos_embed_a"] = torch.randn(1, 64, 32)
    state["decoder_pos_embed_a"] = torch.randn(1, 64, 32)
    model = load_original_checkpoint(state, num_heads=4, decoder_num_heads=4, audio_length=256)
    assert model.encoder.audio_grid == (8, 16) and model.decoder.audio_grid == (8, 16)
    torch.testing.assert_close(model.encoder.pos_embed_a.data,
                               linear_time_resize(state["pos_embed_a"], 8, 16),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(model.decoder.pos_embed_a.data,
                               linear_time_resize(state["decoder_pos_embed_a"], 8, 16),
                               atol=1e-6, rtol=0)
    assert torch.equal(model.decoder.pos_embed_v.data, state["decoder_pos_embed_v"])
    out = model(torch.randn(1, 256, 128), torch.randn(1, 3, 64, 64))
    assert out["pred_a"].shape == (1, 128, 256)


def test_our_state_dict_loads_too(ref):
    model = load_original_checkpoint(ref["ft_state_dict"], num_heads=4)
    again = load_original_checkpoint(model.state_dict(), num_heads=4)
    a, v = ref["inputs"]["audio"], ref["inputs"]["image"]
    with torch.no_grad():
        torch.testing.assert_close(again(a, v), model(a, v))


def test_head_count_that_does_not_divide_names_the_file(ref, tmp_path):
    path = tmp_path / "pretrained.pth"
    torch.save(ref["pretrain_state_dict"], path)
    with pytest.raises(ValueError, match=r"pretrained\.pth: num_heads=5 does not divide "
                                         r"embed_dim=32.*pass num_heads="):
        load_original_checkpoint(str(path), num_heads=5, decoder_num_heads=4)
    with pytest.raises(ValueError, match=r"state dict: decoder_num_heads=3 does not divide "
                                         r"decoder_embed_dim=32.*pass decoder_num_heads="):
        load_original_checkpoint(ref["pretrain_state_dict"], num_heads=4, decoder_num_heads=3)


def test_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointMismatchError, match="not a CAV-MAE state dict"):
        load_original_checkpoint(str(path))


def _fake_mae(depth=3, dim=32, heads=4, img=32, dec_dim=16, dec_depth=1):
    """An ImageNet-MAE-layout state dict: timm's ViT encoder plus MAE's decoder keys."""
    torch.manual_seed(0)
    vit = timm.models.vision_transformer.VisionTransformer(
        img_size=img, patch_size=16, embed_dim=dim, depth=depth, num_heads=heads,
        global_pool="", num_classes=0)
    state = {k: torch.randn_like(v) for k, v in vit.state_dict().items()}
    n = (img // 16) ** 2
    state.update({
        "mask_token": torch.randn(1, 1, dec_dim),
        "decoder_pos_embed": torch.randn(1, n + 1, dec_dim),
        "decoder_embed.weight": torch.randn(dec_dim, dim),
        "decoder_embed.bias": torch.randn(dec_dim),
        "decoder_norm.weight": torch.randn(dec_dim),
        "decoder_norm.bias": torch.randn(dec_dim),
        "decoder_pred.weight": torch.randn(768, dec_dim),
        "decoder_pred.bias": torch.randn(768),
    })
    dec_block = timm.models.vision_transformer.Block(dec_dim, 2, qkv_bias=True)
    for d in range(dec_depth):
        for k, v in dec_block.state_dict().items():
            state[f"decoder_blocks.{d}.{k}"] = torch.randn_like(v)
    return state


def test_init_from_imagenet_mae_places_every_tensor():
    mae = _fake_mae()
    model = CAVMAE(img_size=32, audio_length=64, embed_dim=32, num_heads=4,
                   modality_specific_depth=2, shared_depth=1, decoder_embed_dim=16,
                   decoder_depth=1, decoder_num_heads=2)
    names = init_from_imagenet_mae(model, {"model": mae})
    enc, dec = model.encoder, model.decoder
    assert torch.equal(enc.blocks_a[1].attn.qkv.weight, mae["blocks.1.attn.qkv.weight"])
    assert torch.equal(enc.blocks_v[0].mlp.fc2.bias, mae["blocks.0.mlp.fc2.bias"])
    assert torch.equal(enc.blocks_u[0].attn.proj.weight, mae["blocks.2.attn.proj.weight"])
    for norm in (enc.blocks_u[0].norm1, enc.blocks_u[0].norm1_a, enc.blocks_u[0].norm1_v):
        assert torch.equal(norm.weight, mae["blocks.2.norm1.weight"])
    assert torch.equal(enc.norm_a.bias, mae["norm.bias"])
    assert torch.equal(enc.patch_embed_v.proj.weight, mae["patch_embed.proj.weight"])
    assert torch.equal(enc.patch_embed_a.proj.weight,
                       mae["patch_embed.proj.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(enc.pos_embed_v.data, mae["pos_embed"][:, 1:])
    assert torch.equal(dec.pred_a.weight, mae["decoder_pred.weight"][:256])
    assert torch.equal(dec.pred_v.weight, mae["decoder_pred.weight"])
    assert torch.equal(dec.pos_embed_v.data, mae["decoder_pos_embed"][:, 1:])
    assert torch.equal(dec.blocks[0].attn.qkv.weight, mae["decoder_blocks.0.attn.qkv.weight"])
    assert "decoder.mask_token" in names


def test_init_from_imagenet_mae_rejects_other_sizes():
    model = CAVMAEClassifier(3, img_size=32, audio_length=64, embed_dim=64, num_heads=4,
                             modality_specific_depth=2)
    with pytest.raises(CheckpointMismatchError, match="do not fit"):
        init_from_imagenet_mae(model, _fake_mae(dim=32))
