"""Tests of the SpeechBrain lobes (drop-in CAV-MAE encoders)."""

import re
from pathlib import Path

import pytest
import torch
from references import linear_time_resize
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.ECAPA_TDNN import Classifier
from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper

from speechbrain_cavmae.checkpoints import load_original_checkpoint
from speechbrain_cavmae.model.classifier import CAVMAEClassifier
from speechbrain_cavmae.model.encoder import AudioStreamEncoder
from speechbrain_cavmae.data.fbank import KaldiFbank
from speechbrain_cavmae.model.cavmae import CAVMAE
from speechbrain_cavmae.lobes import (
    CAVMAEAudioEncoder,
    CAVMAEJointEncoder,
    CAVMAEVisualEncoder,
    _key_mask,
    audio_token_mask,
    masked_mean,
)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "original_parity.pt"
TINY = dict(img_size=32, embed_dim=32, modality_specific_depth=1, num_heads=4)
SR = 16000
PAD = (0.0 + 5.081) / 4.4849  # a zero log-mel frame after the dataset normalisation


def perturb(module, scale=0.1):
    """Move every parameter away from its initial value (fresh LayerNorms are all the same,
    which would hide a mix-up of the joint / audio / visual norms)."""
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(scale * torch.randn(param.shape, generator=gen))
    return module


def tiny_audio(**kwargs):
    args = dict(TINY, audio_length=64)
    args.update(kwargs)
    return CAVMAEAudioEncoder(**args)


def recipe_features(batch=6, seconds=0.5, seed=0):
    """Random clips of 3 classes (different tones) through SpeechBrain's Fbank(n_mels=128)."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    labels = torch.arange(batch) % 3
    freqs = torch.tensor([300.0, 1200.0, 4000.0])[labels]
    noise = 0.1 * torch.randn(batch, t.numel(), generator=gen)
    wavs = torch.sin(2 * torch.pi * freqs[:, None] * t) + noise
    feats = Fbank(n_mels=128)(wavs)
    return feats, labels


def train_steps(encoder, head, feats, labels, steps, lr=1e-3, use_aam=True):
    params = [p for p in list(encoder.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    cost = LogSoftmaxWrapper(AdditiveAngularMargin(margin=0.2, scale=30))
    losses = []
    encoder.train()
    head.train()
    for _ in range(steps):
        opt.zero_grad()
        emb = encoder(feats)
        out = head(emb)
        if use_aam:
            loss = cost(out, labels[:, None], torch.ones(len(labels)))
        else:
            loss = torch.nn.functional.cross_entropy(out.squeeze(1), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_recipe_convention_ecapa_classifier_trains_encoder():
    torch.manual_seed(0)
    feats, labels = recipe_features()
    assert feats.shape[-1] == 128
    encoder = tiny_audio(feature_norm="utterance")
    head = Classifier(input_size=encoder.output_size, out_neurons=3, lin_blocks=0)
    emb = encoder(feats)
    assert emb.shape == (feats.shape[0], 1, 32)
    assert head(emb).shape == (feats.shape[0], 1, 3)
    before = encoder.encoder.blocks_a[0].attn.qkv.weight.detach().clone()
    losses = train_steps(encoder, head, feats, labels, steps=12)
    assert losses[-1] < losses[0]
    grad = encoder.encoder.blocks_a[0].attn.qkv.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert not torch.equal(before, encoder.encoder.blocks_a[0].attn.qkv.weight)


def test_recipe_convention_linear_head_and_frozen_encoder():
    torch.manual_seed(0)
    feats, labels = recipe_features()
    encoder = tiny_audio(feature_norm="utterance", freeze=True)
    assert not any(p.requires_grad for p in encoder.parameters())
    head = torch.nn.Linear(encoder.output_size, 3)
    snapshot = {k: v.clone() for k, v in encoder.state_dict().items()}
    head_before = head.weight.detach().clone()
    losses = train_steps(encoder, head, feats, labels, steps=15, lr=5e-2, use_aam=False)
    assert losses[-1] < losses[0]
    assert not encoder.encoder.training  # train() keeps a frozen encoder in eval mode
    assert not encoder(feats).requires_grad
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, snapshot[key]), key
    assert all(p.grad is None for p in encoder.parameters())
    assert not torch.equal(head_before, head.weight)


def test_wrong_number_of_mel_bins_names_the_fix():
    encoder = tiny_audio()
    with pytest.raises(ValueError, match="n_mels: 128"):
        encoder(torch.randn(2, 100, 80))


@pytest.mark.parametrize("seconds", [1, 5, 10, 30])
def test_waveforms_of_any_length(seconds):
    torch.manual_seed(0)
    encoder = CAVMAEAudioEncoder(audio_length=1024, **TINY).eval()
    wav = torch.randn(1, seconds * SR)
    with torch.no_grad():
        emb = encoder(wav)
    assert emb.shape == (1, 1, 32)
    fbank, n_valid, n_win = encoder.audio_input(wav)
    assert n_valid.item() == min(KaldiFbank().num_frames(seconds * SR), 1024)
    cols = -(-n_valid.item() // 16)
    # the padding to 1024 frames is masked: only whole patches of the input are computed
    assert fbank.shape == (1, 16 * cols, 128) and n_win == 1
    # masking the padding = running the encoder on the patches that cover valid frames only
    enc = encoder.encoder
    padded = torch.cat([fbank, torch.full((1, 1024 - 16 * cols, 128), PAD)], dim=1)
    with torch.no_grad():
        tokens = enc.embed_audio(padded).reshape(1, 8, 64, 32)[:, :, :cols].reshape(1, -1, 32)
        expected = enc.forward_shared(enc.forward_audio_branch(tokens), "a").mean(dim=1)
    torch.testing.assert_close(emb[:, 0], expected, atol=1e-5, rtol=0)


def test_five_seconds_documented_behaviour():
    """5 s: as if padded to 1024 frames, the patches covering only padding masked out (and
    not computed: the fbank is padded to 512 frames, a whole number of patches)."""
    torch.manual_seed(0)
    encoder = CAVMAEAudioEncoder(audio_length=1024, **TINY).eval()
    wav = torch.randn(1, 5 * SR)
    fbank, n_valid, _ = encoder.audio_input(wav)
    assert fbank.shape == (1, 512, 128) and n_valid.item() == 498
    pad = (0.0 + 5.081) / 4.4849  # a zero log-mel frame after normalisation, as the original
    assert torch.allclose(fbank[0, 498:], torch.full((14, 128), pad))
    mask = audio_token_mask(n_valid, 8, 64, 16)
    assert mask.sum().item() == 8 * 32  # 32 of 64 time columns are valid
    with torch.no_grad():
        emb = encoder(wav)
        # Same valid frames, garbage in the patches that only cover padding (marked by
        # lens): identical embedding. Frames 498..511 share a patch with valid frames.
        feats = KaldiFbank(audio_length=None)(wav)
        feats = torch.cat([feats, torch.full((1, 14, 128), pad)], dim=1)
        junk = torch.cat([feats, 10 * torch.randn(1, 512, 128)], dim=1)
        lens = torch.tensor([498 / 1024])
        emb_junk = encoder(junk, lens)
        # Batched with a 10 s clip, with relative lens: identical embedding.
        batch = torch.cat([torch.cat([wav, torch.zeros(1, 5 * SR)], 1), torch.randn(1, 10 * SR)])
        emb_batch = encoder(batch, torch.tensor([0.5, 1.0]))
    assert torch.allclose(emb, emb_junk, atol=1e-5)
    assert torch.allclose(emb[0], emb_batch[0], atol=1e-5)
    unmasked = CAVMAEAudioEncoder(audio_length=1024, mask_padding=False, **TINY).eval()
    unmasked.load_state_dict(encoder.state_dict())
    with torch.no_grad():
        assert not torch.allclose(unmasked(junk, lens), unmasked(torch.cat(
            [feats, torch.full((1, 512, 128), pad)], 1)), atol=1e-3)


def test_long_audio_policies():
    """30 s (2998 frames) on a 1024-frame encoder: each policy's tokens equal the encoder's
    own path on the frames it keeps; "time" and "mean" pooling equal manual means of them."""
    torch.manual_seed(0)
    wav = torch.randn(1, 30 * SR)  # 2998 frames
    kw = dict(audio_length=1024, **TINY)
    base = CAVMAEAudioEncoder(**kw, pooling="none").eval()
    state = base.state_dict()
    out = {}
    for policy in ("crop", "window", "interpolate"):
        for pooling in ("none", "time", "mean"):
            enc = CAVMAEAudioEncoder(**kw, long_audio=policy, pooling=pooling).eval()
            enc.load_state_dict(state)
            with torch.no_grad():
                out[policy, pooling] = enc(wav)
    shapes = {key: tuple(value.shape) for key, value in out.items()}
    assert shapes["crop", "none"] == (1, 512, 32)
    assert shapes["window", "none"] == (1, 3 * 512, 32)
    assert shapes["interpolate", "none"] == (1, 8 * 188, 32)
    assert shapes["crop", "time"] == (1, 64, 32)
    assert shapes["window", "time"] == (1, 188, 32)  # the 3 windows' steps to frame 2998
    assert all(shapes[p, "mean"] == (1, 1, 32) for p in ("crop", "window", "interpolate"))
    feats = KaldiFbank(audio_length=None)(wav)
    assert feats.shape[1] == 2998
    padded = torch.cat([feats, torch.full((1, 3 * 1024 - 2998, 128), PAD)], dim=1)
    with torch.no_grad():
        crop = base.encoder.encode_audio(feats[:, :1024])
        windows = base.encoder.encode_audio(padded.reshape(3, 1024, 128),
                                            attn_mask=_key_mask(audio_token_mask(
                                                torch.tensor([1024, 1024, 950]), 8, 64, 16)))
        whole = base.encoder.encode_audio(padded[:, :188 * 16])  # 188 columns, 8 -> 188
    close = dict(atol=1e-5, rtol=0)
    torch.testing.assert_close(out["crop", "none"], crop, **close)
    torch.testing.assert_close(out["window", "none"], windows.reshape(1, 3 * 512, 32), **close)
    torch.testing.assert_close(out["interpolate", "none"], whole, **close)
    # "time": mean over the 8 frequency rows of each time column
    for policy, cols in (("crop", 64), ("interpolate", 188)):
        tokens = out[policy, "none"].reshape(1, 8, cols, 32)
        torch.testing.assert_close(out[policy, "time"], tokens.mean(dim=1), **close)
        torch.testing.assert_close(out[policy, "mean"], tokens.mean(dim=(1, 2))[:, None], **close)
    per_window = out["window", "none"].reshape(3, 8, 64, 32)
    torch.testing.assert_close(out["window", "time"],
                               per_window.mean(dim=1).reshape(1, 192, 32)[:, :188], **close)
    # "mean" over the windows leaves out the 4 columns of the last one that only cover
    # padding (950 valid frames = 59.4 columns)
    valid = torch.cat([per_window[0].reshape(-1, 32), per_window[1].reshape(-1, 32),
                       per_window[2, :, :60].reshape(-1, 32)])
    torch.testing.assert_close(out["window", "mean"], valid.mean(dim=0)[None, None], **close)
    unmasked = out["window", "none"].mean(dim=1, keepdim=True)
    assert (out["window", "mean"] - unmasked).abs().max() > 1e-4


def test_short_audio_interpolate_uses_actual_length():
    """1 s (98 frames) with short_audio="interpolate": padded to 112 frames only, encoded
    with the positional embedding resampled 64 -> 7 columns (reference resampling)."""
    torch.manual_seed(0)
    enc = CAVMAEAudioEncoder(audio_length=1024, short_audio="interpolate", pooling="time",
                             **TINY).eval()
    with torch.no_grad():
        enc.encoder.pos_embed_a.copy_(torch.randn(1, 512, 32))
    wav = torch.randn(2, SR)
    with torch.no_grad():
        out = enc(wav)  # 98 frames -> 112 -> 7 time patches
    assert out.shape == (2, 7, 32)
    short = AudioStreamEncoder(audio_length=112, **TINY).eval()
    state = enc.encoder.state_dict()
    state["pos_embed_a"] = linear_time_resize(state["pos_embed_a"], 8, 7)
    short.load_state_dict(state)
    feats = KaldiFbank(audio_length=None)(wav)
    assert feats.shape[1] == 98
    feats = torch.cat([feats, torch.full((2, 14, 128), PAD)], dim=1)
    with torch.no_grad():
        expected = short.encode_audio(feats).reshape(2, 8, 7, 32).mean(dim=1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_lobes_from_a_pretraining_checkpoint_equal_cavmae_encode(tmp_path):
    """Audio and visual lobes loaded from a CAVMAE checkpoint give CAVMAE.encode's tokens;
    the visual lobe averages over the valid frames given by lens."""
    torch.manual_seed(0)
    model = perturb(CAVMAE(audio_length=64, decoder_embed_dim=16, decoder_depth=1,
                           decoder_num_heads=2, **TINY)).eval()
    path = tmp_path / "pretrained.ckpt"
    torch.save(model.state_dict(), path)
    a_enc = CAVMAEAudioEncoder(ckpt_path=str(path), num_heads=4, pooling="none").eval()
    v_enc = CAVMAEVisualEncoder(ckpt_path=str(path), num_heads=4, pooling="none").eval()
    v_mean = CAVMAEVisualEncoder(ckpt_path=str(path), num_heads=4).eval()
    audio, frames = torch.randn(2, 64, 128), torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        ref_a, ref_v = model.encode(audio, frames[:, 0])
        torch.testing.assert_close(a_enc(audio), ref_a, atol=1e-5, rtol=0)
        torch.testing.assert_close(v_enc(frames[:, 0]), ref_v, atol=1e-5, rtol=0)
        per_frame = torch.stack([model.encode(None, frames[:, i])[1].mean(dim=1)
                                 for i in range(3)], dim=1)  # [2, 3, 32]
        got = v_mean(frames, torch.tensor([1.0, 1 / 3]))
    torch.testing.assert_close(got[0, 0], per_frame[0].mean(dim=0), atol=1e-5, rtol=0)
    torch.testing.assert_close(got[1, 0], per_frame[1, 0], atol=1e-5, rtol=0)


def test_matches_classifier_streams_from_checkpoint(tmp_path):
    torch.manual_seed(0)
    clf = perturb(CAVMAEClassifier(4, audio_length=64, **TINY)).eval()
    path = tmp_path / "clf.ckpt"
    torch.save(clf.state_dict(), path)
    audio = torch.randn(2, 64, 128)
    image = torch.randn(2, 3, 32, 32)
    a_enc = CAVMAEAudioEncoder(ckpt_path=str(path), num_heads=4, mask_padding=False).eval()
    j_enc = CAVMAEJointEncoder(ckpt_path=str(path), num_heads=4, mask_padding=False).eval()
    v_enc = CAVMAEVisualEncoder(ckpt_path=str(path), num_heads=4).eval()
    with torch.no_grad():
        ref_a = clf.encoder.encode_audio(audio).mean(1)
        ref_v = clf.encoder.encode_visual(image).mean(1)
        ref_j = clf.pool(audio, image, "multimodal")
        assert torch.allclose(a_enc(audio)[:, 0], ref_a, atol=1e-5)
        assert torch.allclose(v_enc(image)[:, 0], ref_v, atol=1e-5)
        assert torch.allclose(j_enc(audio, frames=image)[:, 0], ref_j, atol=1e-5)
        assert torch.allclose(j_enc((audio, image))[:, 0], ref_j, atol=1e-5)
        # Several frames: outputs averaged over frames.
        frames = torch.randn(2, 3, 3, 32, 32)
        multi = j_enc(audio, frames=frames)
        per = torch.stack([clf.pool(audio, frames[:, i], "multimodal") for i in range(3)], 1)
        assert torch.allclose(multi[:, 0], per.mean(1), atol=1e-5)
    with pytest.raises(ValueError, match="ImageTransform"):
        v_enc(torch.randn(1, 3, 48, 48))


def test_original_checkpoint_fixture(tmp_path):
    fixture = torch.load(FIXTURE, weights_only=False)
    path = tmp_path / "original.pth"
    torch.save(fixture["ft_state_dict"], path)
    heads = fixture["config"]["num_heads"]
    longer = CAVMAEAudioEncoder(ckpt_path=str(path), num_heads=heads, audio_length=1024)
    assert longer.encoder.audio_length == 1024  # positional embedding interpolated from 128
    torch.testing.assert_close(longer.encoder.pos_embed_a.data,
                               linear_time_resize(fixture["ft_state_dict"]["pos_embed_a"], 8, 64),
                               atol=1e-6, rtol=0)
    assert longer(torch.randn(1, 16000)).shape == (1, 1, 32)
    ref = load_original_checkpoint(str(path), num_heads=heads)
    audio = torch.randn(1, 128, 128)
    same_len = CAVMAEAudioEncoder(ckpt_path=str(path), num_heads=heads, freeze=True,
                                  mask_padding=False)
    assert same_len.encoder.audio_length == 128  # the checkpoint's own length by default
    with torch.no_grad():
        expected = ref.encoder.encode_audio(audio).mean(1)
    assert torch.allclose(same_len(audio)[:, 0], expected, atol=1e-5)
    with pytest.raises(ValueError, match="checkpoint has"):
        CAVMAEAudioEncoder(ckpt_path=str(path), num_heads=heads, embed_dim=64)


def test_speechbrain_checkpointer_roundtrip(tmp_path):
    """A lobe saved by SpeechBrain's checkpointer can be reloaded through ckpt_path."""
    from speechbrain.utils.checkpoints import Checkpointer

    torch.manual_seed(0)
    enc = tiny_audio()
    ckpt = Checkpointer(tmp_path, {"embedding_model": enc}).save_checkpoint()
    path = Path(ckpt.paramfiles["embedding_model"])
    again = CAVMAEAudioEncoder(ckpt_path=str(path), num_heads=4, audio_length=64).eval()
    x = torch.randn(2, 64, 128)
    with torch.no_grad():
        assert torch.allclose(enc.eval()(x), again(x), atol=1e-6)


HPARAMS = Path(__file__).resolve().parents[1] / "hparams" / "integration"


def load_recipe_hparams(name, tmp_path, **extra):
    from hyperpyyaml import load_hyperpyyaml

    fixture = torch.load(FIXTURE, weights_only=False)
    ckpt = tmp_path / "cavmae.pth"
    torch.save(fixture["ft_state_dict"], ckpt)
    overrides = {"data_folder": str(tmp_path / "data"), "output_folder": str(tmp_path / "out"),
                 "cavmae_checkpoint": str(ckpt), "cavmae_num_heads": 4, "emb_dim": 32}
    overrides.update(extra)
    with open(HPARAMS / name, encoding="utf8") as handle:
        return load_hyperpyyaml(handle, overrides)


def test_esc50_hparams_with_the_recipe_forward(tmp_path):
    """The ESC50 recipe's compute_forward: STFT -> magnitude -> Filterbank -> encoder -> Linear."""
    from speechbrain.processing.features import spectral_magnitude

    hp = load_recipe_hparams("esc50_cavmae_encoder.yaml", tmp_path)
    mods = hp["modules"]
    wavs = torch.randn(2, 5 * SR)
    net_input = spectral_magnitude(mods["compute_stft"](wavs), power=hp["spec_mag_power"])
    net_input = mods["compute_fbank"](net_input)
    assert hp["use_melspectra"] and not hp["use_log1p_mel"]
    assert net_input.shape[-1] == 128
    emb = mods["embedding_model"](net_input)
    out = mods["classifier"](emb)
    assert emb.shape == (2, 1, 32) and out.shape == (2, 1, 50)
    out.sum().backward()
    grad = mods["embedding_model"].encoder.blocks_a[0].mlp.fc1.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_urbansound8k_hparams_with_the_recipe_forward(tmp_path):
    """The UrbanSound8k recipe: Fbank -> mean_var_norm -> encoder -> ECAPA Classifier -> AAM."""
    hp = load_recipe_hparams("urbansound8k_cavmae_encoder.yaml", tmp_path)
    mods = hp["modules"]
    wavs, lens = torch.randn(3, 4 * SR), torch.tensor([1.0, 0.5, 0.8])
    feats = mods["compute_features"](wavs)
    feats = mods["mean_var_norm"](feats, lens)
    emb = mods["embedding_model"](feats)
    out = mods["classifier"](emb)
    assert emb.shape == (3, 1, 32) and out.shape == (3, 1, 10)
    loss = hp["compute_cost"](out, torch.tensor([[1], [2], [3]]), lens)
    assert torch.isfinite(loss)
    # the documented one-line change, compared in eval mode (the yaml's drop_path_rate
    # makes two training-mode calls differ whatever the lengths)
    encoder = mods["embedding_model"].eval()
    n_valid = int(round(0.5 * feats.shape[1]))
    with torch.no_grad():
        plain = encoder(feats)
        with_lens = encoder(feats, lens)
        half = encoder(feats[1:2, :n_valid])  # clip 1's valid frames alone
    assert with_lens.shape == (3, 1, 32)
    assert (with_lens[1] - plain[1]).abs().max() > 1e-3  # the padding no longer counts
    torch.testing.assert_close(with_lens[0], plain[0], atol=1e-5, rtol=0)  # full length
    torch.testing.assert_close(with_lens[1], half[0], atol=1e-5, rtol=0)


def test_each_drop_in_encoder_holds_and_trains_only_its_streams(tmp_path):
    """Forward + backward of each drop-in encoder gives every trainable parameter a
    gradient (what DDP without find_unused_parameters needs); each holds exactly the
    weights of its streams, loaded from a full checkpoint, and the audio encoder equals
    the full encoder's audio-only stream."""
    from speechbrain_cavmae.checkpoints.loader import select_half

    torch.manual_seed(0)
    full = perturb(CAVMAE(audio_length=64, decoder_embed_dim=16, decoder_depth=1,
                          decoder_num_heads=2, **TINY)).eval()
    path = tmp_path / "full.pth"
    torch.save(full.state_dict(), path)
    audio, frames = torch.randn(2, 64, 128), torch.randn(2, 3, 32, 32)
    cases = [(CAVMAEAudioEncoder, "audio", (audio,), {}),
             (CAVMAEVisualEncoder, "visual", (frames,), {}),
             (CAVMAEJointEncoder, "joint", (audio,), {"frames": frames})]
    for cls, half, args, kwargs in cases:
        enc = cls(ckpt_path=str(path), num_heads=4, drop_path_rate=0.1)
        selected, unused = select_half(full.state_dict(), half)
        assert set(enc.state_dict()) == set(selected), cls
        assert any(k.startswith("encoder.") for k in unused)  # each leaves something out
        assert enc.output_dim == enc.embed_dim == 32
        enc.train()
        enc(*args, **kwargs).pow(2).sum().backward()
        trainable = [(n, p) for n, p in enc.named_parameters() if p.requires_grad]
        assert len(trainable) == len(list(enc.parameters()))
        no_grad = [n for n, p in trainable if p.grad is None or not p.grad.abs().sum() > 0]
        assert not no_grad, f"{cls.__name__}: no gradient for {no_grad}"
    audio_enc = CAVMAEAudioEncoder(ckpt_path=str(path), num_heads=4, pooling="none",
                                   mask_padding=False).eval()
    keys = set(audio_enc.state_dict())
    assert {"encoder.blocks_u.0.norm1_a.weight", "encoder.norm_a.bias",
            "encoder.blocks_a.0.norm1.weight", "encoder.pos_embed_a"} <= keys
    assert not {"encoder.blocks_u.0.norm1.weight", "encoder.blocks_u.0.norm2_v.bias",
                "encoder.norm.weight", "encoder.norm_v.weight", "encoder.modality_v",
                "encoder.blocks_v.0.attn.qkv.weight"} & keys
    with torch.no_grad():
        torch.testing.assert_close(audio_enc(audio), full.encoder.encode_audio(audio),
                                   atol=0, rtol=0)


def test_loading_a_half_is_strict_and_names_missing_keys(tmp_path):
    """An audio encoder's own checkpoint reloads into the audio encoder; it does not hold
    the visual half (the keys are named), nor does a full checkpoint missing one audio
    norm load into the audio half."""
    from speechbrain_cavmae.checkpoints import load
    from speechbrain_cavmae.checkpoints.original import CheckpointMismatchError

    torch.manual_seed(0)
    audio = tiny_audio()
    own = tmp_path / "audio_only.ckpt"
    torch.save(audio.state_dict(), own)
    again = load(str(own), part="audio", num_heads=4).model
    assert all(torch.equal(v, audio.encoder.state_dict()[k])
               for k, v in again.state_dict().items())
    with pytest.raises(CheckpointMismatchError, match="encoder.patch_embed_v.proj.weight"):
        load(str(own), part="visual", num_heads=4).model
    full = CAVMAE(audio_length=64, decoder_embed_dim=16, decoder_depth=1,
                  decoder_num_heads=2, **TINY).state_dict()
    del full["encoder.blocks_u.0.norm2_a.bias"]
    broken = tmp_path / "broken.pth"
    torch.save(full, broken)
    with pytest.raises(CheckpointMismatchError,
                       match=r"missing keys \['encoder.blocks_u.0.norm2_a.bias'\]"):
        load(str(broken), part="audio", num_heads=4).model
    load(str(broken), part="visual", num_heads=4).model  # not needed there


def test_yaml_width_follows_the_checkpoint_and_a_wrong_emb_dim_is_named(tmp_path):
    """emb_dim null: the classifier takes the checkpoint's width; emb_dim set to another
    width: SizeMismatchError naming the yaml key and the checkpoint's value."""
    from hyperpyyaml import load_hyperpyyaml

    from speechbrain_cavmae.checkpoints.loader import SizeMismatchError

    hp = load_recipe_hparams("esc50_cavmae_encoder.yaml", tmp_path, emb_dim=None)
    assert hp["embedding_model"].output_dim == 32 and hp["classifier"].in_features == 32
    fixture = tmp_path / "cavmae.pth"
    for name in ("esc50_cavmae_encoder.yaml", "urbansound8k_cavmae_encoder.yaml"):
        overrides = {"data_folder": str(tmp_path / "data"), "cavmae_checkpoint": str(fixture),
                     "cavmae_num_heads": 4, "emb_dim": 768}
        with open(HPARAMS / name, encoding="utf8") as handle, pytest.raises(
                SizeMismatchError, match="emb_dim: 768 given but the checkpoint has 32.*"
                                         "set emb_dim: 32"):
            load_hyperpyyaml(handle, overrides)


@pytest.mark.slow
def test_two_process_ddp_esc50_shaped_training(tmp_path):
    """torchrun, 2 processes (gloo, CPU): SpeechBrain's Brain wraps the yaml's
    embedding_model and classifier in DistributedDataParallel (find_unused_parameters
    False) and trains one epoch; both ranks end with the same weights, every encoder
    weight moved."""
    from processes import torchrun

    torchrun([Path(__file__).resolve().parent / "ddp_esc50_shaped.py", tmp_path])
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert ranks[0]["wrapped"]["embedding_model"] == "DistributedDataParallel"
    assert ranks[0]["wrapped"]["classifier"] == "DistributedDataParallel"
    assert ranks[0]["find_unused_parameters"] is False
    for module in ("embedding_model", "classifier"):
        final0, final1 = ranks[0]["final"][module], ranks[1]["final"][module]
        init = ranks[0]["init"][module]
        for key in final0:
            assert torch.equal(final0[key], final1[key]), (module, key)
            assert not torch.equal(final0[key], init[key]), (module, key, "did not train")


# --- short_audio="pad": only the real tokens are computed; time steps follow the input


def pad_encoder(**kwargs):
    torch.manual_seed(0)
    enc = CAVMAEAudioEncoder(audio_length=1024, **TINY, **kwargs)
    return perturb(enc).eval()


def padded_to_nominal(encoder, x, lens=None):
    """What short_audio="pad" computed before it stopped computing the padding: the input's
    fbank padded to 1024 frames, the patches that only cover padding masked out of
    attention -> tokens [batch, 8 bands, 64 steps, dim] and the valid steps per clip."""
    feats, n_valid, pad = encoder.audio_input.features(x, lens)
    padded = torch.cat([feats, torch.full((feats.shape[0], 1024 - feats.shape[1], 128), pad)],
                       dim=1)
    mask = audio_token_mask(n_valid, 8, 64, 16)
    with torch.no_grad():
        tokens = encoder.encoder.encode_audio(padded, attn_mask=_key_mask(mask))
    return tokens.reshape(x.shape[0], 8, 64, -1), (n_valid + 15) // 16


def count_audio_tokens(encoder):
    """Forward hook recording the tokens the first audio block computes."""
    seen = []
    encoder.encoder.blocks_a[0].register_forward_hook(
        lambda module, args, out: seen.append(out.shape[1]))
    return seen


@pytest.mark.parametrize("seconds,steps", [(1, 7), (2, 13), (5, 32)])
def test_pad_computes_only_the_real_tokens_with_the_same_values(seconds, steps):
    """1 s (98 frames), 2 s (198), 5 s (498) with short_audio="pad": the blocks see the
    8 x ceil(frames / 16) tokens of the real frames only, and those tokens equal the ones
    computed with the clip padded to 1024 frames and the padding masked (as before)."""
    wav = torch.randn(1, seconds * SR, generator=torch.Generator().manual_seed(seconds))
    enc = pad_encoder(pooling="none")
    seen = count_audio_tokens(enc)
    with torch.no_grad():
        out = enc(wav)
    assert seen == [8 * steps]
    assert out.shape == (1, 8 * steps, 32)
    ref, valid = padded_to_nominal(enc, wav)
    assert valid.tolist() == [steps]
    torch.testing.assert_close(out.reshape(1, 8, steps, 32), ref[:, :, :steps],
                               atol=1e-5, rtol=0)


def test_time_pooling_with_pad_equals_the_unpadded_clip_and_statistics_pooling():
    """pooling="time" on a 2 s clip: 13 steps (198 frames), each the mean over the 8 bands
    of the tokens the padded computation gave; SpeechBrain's StatisticsPooling with the
    clip's lens equals pooling="mean" (the issue: 0.62 apart when 64 steps came back)."""
    from speechbrain.nnet.pooling import StatisticsPooling

    wav = torch.randn(1, 2 * SR, generator=torch.Generator().manual_seed(2))
    time_enc = pad_encoder(pooling="time")
    mean_enc = pad_encoder(pooling="mean")
    with torch.no_grad():
        steps = time_enc(wav)
        mean = mean_enc(wav)
    assert steps.shape == (1, 13, 32)
    ref, _ = padded_to_nominal(time_enc, wav)
    torch.testing.assert_close(steps, ref[:, :, :13].mean(dim=1), atol=1e-5, rtol=0)
    stats = StatisticsPooling(return_std=False)(steps, torch.ones(1))
    # StatisticsPooling adds up to 9e-5 of noise (its eps) to the mean
    torch.testing.assert_close(stats, mean, atol=1e-4, rtol=0)


def test_time_steps_follow_the_input_length_and_lens_apply():
    """Features of 1 s .. 20 s give ceil(frames / 16) steps (at most 64 with "crop"); in a
    padded batch whose lens cover whole patches (192 frames, lens 1 and 0.5), StatisticsPooling
    with the lens equals pooling="mean" clip by clip."""
    from speechbrain.nnet.pooling import StatisticsPooling

    enc = pad_encoder(pooling="time")
    for frames, steps in ((98, 7), (100, 7), (112, 7), (198, 13), (1000, 63), (2000, 64)):
        with torch.no_grad():
            assert enc(torch.randn(1, frames, 128)).shape == (1, steps, 32), frames
    feats, lens = torch.randn(2, 192, 128), torch.tensor([1.0, 0.5])
    mean_enc = pad_encoder(pooling="mean")
    with torch.no_grad():
        steps = enc(feats, lens)
        mean = mean_enc(feats, lens)
    assert steps.shape == (2, 12, 32)
    stats = StatisticsPooling(return_std=False)(steps, lens)
    torch.testing.assert_close(stats, mean, atol=1e-4, rtol=0)  # its noise, as above


def test_a_batch_of_mixed_lengths_equals_each_clip_alone():
    """SpeechBrain's padded batch (waveforms of 2 s, 1 s and 0.4 s zero-padded to 2 s, with
    relative lens): each clip's real steps and its mean equal the clip run alone, the
    output has the batch's 13 steps, and the audio blocks computed 8 x 13 tokens per clip
    (the padding within the batch is masked, not computed separately)."""
    gen = torch.Generator().manual_seed(3)
    lengths = [2 * SR, SR, int(0.4 * SR)]
    clips = [torch.randn(n, generator=gen) for n in lengths]
    batch = torch.zeros(3, 2 * SR)
    for i, clip in enumerate(clips):
        batch[i, :clip.numel()] = clip
    lens = torch.tensor(lengths, dtype=torch.float) / (2 * SR)
    enc = pad_encoder()
    seen = count_audio_tokens(enc)
    for pooling in ("time", "mean", "none"):
        enc.pooling = pooling
        seen.clear()
        with torch.no_grad():
            together = enc(batch, lens)
            alone = [enc(clip[None]) for clip in clips]
        assert seen[0] == 8 * 13
        steps = [a.shape[1] for a in alone]
        if pooling == "time":
            assert together.shape == (3, 13, 32) and steps == [13, 7, 3]
        for i, one in enumerate(alone):
            if pooling == "none":  # frequency-major: compare the bands' first steps
                n = steps[i] // 8
                got = together[i].reshape(8, 13, 32)[:, :n].reshape(1, -1, 32)
            else:
                got = together[i:i + 1, :steps[i]]
            torch.testing.assert_close(got, one, atol=1e-5, rtol=0)


def test_joint_encoder_pad_computes_only_the_real_audio_tokens():
    """The joint encoder's audio side: a 1 s clip's 56 audio tokens are computed (not 512)
    and its output equals the computation with the clip padded to 1024 frames."""
    torch.manual_seed(0)
    joint = perturb(CAVMAEJointEncoder(audio_length=1024, **TINY)).eval()
    seen = count_audio_tokens(joint)
    feats, frames = torch.randn(2, 98, 128), torch.randn(2, 2, 3, 32, 32)
    with torch.no_grad():
        out = joint(feats, frames=frames)
        enc = joint.encoder
        padded = torch.cat([feats, torch.zeros(2, 1024 - 98, 128)], dim=1)
        a_mask = audio_token_mask(torch.tensor([98, 98]), 8, 64, 16)
        a = enc.forward_audio_branch(enc.embed_audio(padded), attn_mask=_key_mask(a_mask))
        ref = []
        for i in range(2):
            v = enc.forward_visual_branch(enc.embed_visual(frames[:, i]))
            mask = torch.cat([a_mask, torch.ones(2, v.shape[1], dtype=torch.bool)], dim=1)
            tokens = enc.forward_shared(torch.cat([a, v], dim=1), attn_mask=_key_mask(mask))
            ref.append(masked_mean(tokens, mask))
    assert seen[0] == 8 * 7  # the lobe's call (then the reference's 512)
    torch.testing.assert_close(out[:, 0], torch.stack(ref, 1).mean(dim=1), atol=1e-5, rtol=0)
def test_ckpt_path_takes_a_speechbrain_checkpoint_folder(tmp_path):
    """``ckpt_path`` accepts a SpeechBrain ``CKPT+...`` folder of a recipe that trained the
    drop-in encoder under another name (``embedding_model.ckpt``, next to the classifier,
    optimizer and counter): the one ``.ckpt`` holding CAV-MAE weights is loaded, through
    the same loader; two such files, or none, are an error naming the folder."""
    from speechbrain.utils.checkpoints import Checkpointer
    from speechbrain.utils.epoch_loop import EpochCounter

    from speechbrain_cavmae.checkpoints.loader import NotAModelError

    torch.manual_seed(0)
    audio = tiny_audio()
    head = torch.nn.Linear(32, 3)
    checkpointer = Checkpointer(tmp_path / "save", recoverables={
        "embedding_model": audio, "classifier": head, "counter": EpochCounter(3),
        "optimizer": torch.optim.Adam(list(audio.parameters()) + list(head.parameters()))})
    folder = checkpointer.save_checkpoint().path
    assert folder.name.startswith("CKPT+") and (folder / "embedding_model.ckpt").is_file()
    again = CAVMAEAudioEncoder(ckpt_path=str(folder), num_heads=4)
    want = audio.encoder.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in again.encoder.state_dict().items())
    torch.save(audio.state_dict(), folder / "wav2vec2.ckpt")
    with pytest.raises(NotAModelError, match=r"2 checkpoint files hold CAV-MAE weights "
                                             r"\(embedding_model\.ckpt, wav2vec2\.ckpt\)"):
        CAVMAEAudioEncoder(ckpt_path=str(folder), num_heads=4)
    for name in ("embedding_model.ckpt", "wav2vec2.ckpt"):
        (folder / name).unlink()
    with pytest.raises(NotAModelError, match=re.escape(str(folder)) + ": not a model: .*its "
                       r"\.ckpt files: classifier\.ckpt, counter\.ckpt, optimizer\.ckpt"):
        CAVMAEAudioEncoder(ckpt_path=str(folder), num_heads=4)
