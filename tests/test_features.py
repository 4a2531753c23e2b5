"""KaldiFbank / compute_fbank against torchaudio.compliance.kaldi.fbank."""

import os

import numpy as np
import pytest
import torch
import torchaudio

from media import REAL_CLIPS, SHARED_SAMPLES
from speechbrain_cavmae.data.fbank import (
    DEFAULT_MEAN,
    DEFAULT_STD,
    KaldiFbank,
    compute_fbank,
    num_fbank_frames,
)


def original(waveform):
    """The original's call, verbatim arguments."""
    waveform = waveform.reshape(1, -1)
    waveform = waveform - waveform.mean()
    return torchaudio.compliance.kaldi.fbank(
        waveform, htk_compat=True, sample_frequency=16000, use_energy=False,
        window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)


def original_padded(waveform, audio_length=1024):
    fbank = original(waveform)
    out = torch.zeros(audio_length, 128)
    n = min(audio_length, fbank.shape[0])
    out[:n] = fbank[:n]
    return (out - DEFAULT_MEAN) / DEFAULT_STD


def signal(n, seed):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000.0
    return (0.3 * torch.sin(2 * np.pi * 440 * t) + 0.05 * torch.randn(n, generator=g) + 0.02).float()


@pytest.mark.parametrize("n", [400, 401, 16000, 160000, 170000])
def test_compute_fbank_equals_original(n):
    wav = signal(n, n)
    ours = compute_fbank(wav, audio_length=None, normalize=False)
    ref = original(wav)
    assert ours.shape == ref.shape == (num_fbank_frames(n), 128)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_compute_fbank_pads_crops_normalises():
    short = compute_fbank(signal(16000, 1))  # 98 frames -> padded
    assert short.shape == (1024, 128)
    torch.testing.assert_close(short, original_padded(signal(16000, 1)), atol=1e-5, rtol=0)
    # padding holds the normalised value of 0, as the original (pad then normalise)
    assert torch.allclose(short[98:], torch.full((926, 128), -DEFAULT_MEAN / DEFAULT_STD))
    long = compute_fbank(signal(200000, 2))
    torch.testing.assert_close(long, original_padded(signal(200000, 2)), atol=1e-5, rtol=0)


def test_batched_equals_per_clip_with_lengths():
    lengths = [170000, 160000, 48000, 1000]
    wavs = [signal(n, i) for i, n in enumerate(lengths)]
    batch = torch.zeros(len(wavs), max(lengths))
    for i, w in enumerate(wavs):
        batch[i, : len(w)] = w
    rel = torch.tensor(lengths, dtype=torch.float) / max(lengths)
    out = KaldiFbank()(batch, rel)
    assert out.shape == (4, 1024, 128)
    for i, w in enumerate(wavs):
        torch.testing.assert_close(out[i], original_padded(w), atol=1e-5, rtol=0)


def test_batched_without_lengths_and_no_target():
    wavs = torch.stack([signal(8000, 5), signal(8000, 6)])
    out = KaldiFbank(audio_length=None, normalize=False)(wavs)
    assert out.shape == (2, num_fbank_frames(8000), 128)
    torch.testing.assert_close(out[1], original(wavs[1]), atol=1e-5, rtol=0)


def test_tone_energy_in_expected_mel_bin():
    t = torch.arange(16000) / 16000.0
    low = compute_fbank(torch.sin(2 * np.pi * 300 * t), audio_length=None).mean(0)
    high = compute_fbank(torch.sin(2 * np.pi * 4000 * t), audio_length=None).mean(0)
    assert int(low.argmax()) < 30 < 90 < int(high.argmax())


def test_too_short_raises():
    with pytest.raises(ValueError, match="shorter than one analysis window"):
        compute_fbank(torch.zeros(399))
    with pytest.raises(ValueError, match="shorter than one analysis window"):
        KaldiFbank()(torch.zeros(2, 16000), torch.tensor([1.0, 0.01]))


def test_module_follows_device_and_dtype_casts():
    fb = KaldiFbank(audio_length=50).double()
    assert fb.mel_fb.dtype == torch.float64
    out = fb(signal(4000, 3).double().unsqueeze(0))
    assert out.shape == (1, 50, 128) and out.dtype == torch.float64
    # same values as the original's call (float32: it differs from float64 by up to 3e-5)
    torch.testing.assert_close(out[0].float(), original_padded(signal(4000, 3), 50),
                               atol=1e-4, rtol=0)


@pytest.mark.skipif(not os.path.isdir(SHARED_SAMPLES), reason="../shared/samples not present")
@pytest.mark.parametrize("clip", REAL_CLIPS)
def test_real_clip_fbank_equals_original(clip):
    from speechbrain_cavmae.data.audio import load_audio

    wav = load_audio(os.path.join(SHARED_SAMPLES, clip), channel=0)
    ours = compute_fbank(wav)
    assert ours.shape == (1024, 128)
    torch.testing.assert_close(ours, original_padded(wav), atol=1e-5, rtol=0)
    batched = KaldiFbank()(wav.unsqueeze(0))[0]
    torch.testing.assert_close(batched, original_padded(wav), atol=1e-5, rtol=0)
