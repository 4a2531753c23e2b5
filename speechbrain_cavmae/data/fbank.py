"""Kaldi-compatible log-mel filterbank features, batched and per clip.

CAV-MAE feeds its audio branch with 128-bin Kaldi log-mel filterbanks
computed by ``torchaudio.compliance.kaldi.fbank`` with the arguments
``htk_compat=True, sample_frequency=16000, use_energy=False,
window_type='hanning', num_mel_bins=128, dither=0.0, frame_shift=10`` on
the clip with its global mean removed, then zero padded / cropped to
``audio_length`` frames and normalised as ``(fbank - mean) / std``
(CAV-MAE divides by ``std``; the earlier AST code divided by ``2 * std``).

:class:`KaldiFbank` reproduces that computation for a *batch* of padded
waveforms with plain tensor ops (framing with ``unfold``, per-frame DC
removal, pre-emphasis 0.97, symmetric Hann window, 512-point power
spectrum, HTK mel banks, log floored at float epsilon), so it can run on
the training device inside ``compute_forward``. Frames that would not
exist for a clip on its own (because they overlap the padding) are zeroed
before the pad/crop to ``audio_length``, exactly as the per-clip path
would pad them.

Example
-------
>>> import torch
>>> fb = KaldiFbank(audio_length=100)
>>> wavs = torch.randn(2, 16000)
>>> fb(wavs, torch.tensor([1.0, 0.5])).shape
torch.Size([2, 100, 128])
"""

import logging

import torch
from torchaudio.compliance.kaldi import get_mel_banks

from speechbrain_cavmae.model.patch_embed import AUDIO_LENGTH

logger = logging.getLogger(__name__)

#: Dataset statistics used by CAV-MAE for AudioSet and VGGSound.
DEFAULT_MEAN = -5.081
DEFAULT_STD = 4.4849

_EPS = torch.finfo(torch.float32).eps


def _window_sizes(sample_rate, frame_length_ms, frame_shift_ms):
    win = int(sample_rate * frame_length_ms * 0.001)
    shift = int(sample_rate * frame_shift_ms * 0.001)
    n_fft = 1 << (win - 1).bit_length()
    return win, shift, n_fft


def _mel_matrix(n_mels, n_fft, sample_rate, low_freq=20.0, high_freq=0.0):
    """HTK-style mel banks as Kaldi builds them, shape [n_fft // 2 + 1, n_mels]."""
    banks, _ = get_mel_banks(
        n_mels, n_fft, float(sample_rate), low_freq, high_freq, 100.0, -500.0, 1.0
    )
    banks = torch.nn.functional.pad(banks.float(), (0, 1))  # Nyquist bin: 0
    return banks.t().contiguous()


def num_fbank_frames(num_samples, sample_rate=16000, frame_length_ms=25.0,
                     frame_shift_ms=10.0):
    """Number of frames Kaldi produces for a clip (``snip_edges=True``).

    Example
    -------
    >>> num_fbank_frames(160000)
    998
    >>> num_fbank_frames(399)
    0
    """
    win, shift, _ = _window_sizes(sample_rate, frame_length_ms, frame_shift_ms)
    if num_samples < win:
        return 0
    return 1 + (num_samples - win) // shift


def _pad_crop(feats, audio_length):
    """Zero-pad or crop dim 1 of ``feats`` [batch, frames, bins]."""
    n = feats.shape[1]
    if audio_length is None or n == audio_length:
        return feats
    if n > audio_length:
        return feats[:, :audio_length]
    return torch.nn.functional.pad(feats, (0, 0, 0, audio_length - n))


class KaldiFbank(torch.nn.Module):
    """Batched Kaldi log-mel filterbank with CAV-MAE's pad/crop and normalisation.

    Arguments
    ---------
    sample_rate : int
        Sampling rate of the input waveforms.
    n_mels : int
        Number of mel bins.
    frame_length_ms, frame_shift_ms : float
        Analysis window length and hop in milliseconds.
    audio_length : int or None
        Frames per output (zero padded / cropped); ``None`` keeps the frames
        of the longest clip in the batch.
    dataset_mean, dataset_std : float
        Dataset statistics for ``(fbank - dataset_mean) / dataset_std``.
    normalize : bool
        Apply the normalisation (disable to compute dataset statistics).

    Example
    -------
    >>> import torch
    >>> fb = KaldiFbank(audio_length=None, normalize=False)
    >>> fb(torch.randn(3, 4000)).shape
    torch.Size([3, 23, 128])
    """

    def __init__(self, sample_rate=16000, n_mels=128, frame_length_ms=25.0,
                 frame_shift_ms=10.0, audio_length=AUDIO_LENGTH,
                 dataset_mean=DEFAULT_MEAN, dataset_std=DEFAULT_STD, normalize=True):
        super().__init__()
        self.sample_rate = sample_rate
        self.n_mels = n_mels
        self.audio_length = audio_length
        self.dataset_mean = dataset_mean
        self.dataset_std = dataset_std
        self.normalize = normalize
        self.win, self.shift, self.n_fft = _window_sizes(
            sample_rate, frame_length_ms, frame_shift_ms
        )
        self.preemph = 0.97
        self.register_buffer(
            "window", torch.hann_window(self.win, periodic=False), persistent=False
        )
        self.register_buffer(
            "mel_fb", _mel_matrix(n_mels, self.n_fft, sample_rate), persistent=False
        )

    def num_frames(self, num_samples):
        """Frames of a clip of ``num_samples`` samples (int or LongTensor)."""
        if torch.is_tensor(num_samples):
            n = (num_samples - self.win) // self.shift + 1
            return torch.where(num_samples < self.win, torch.zeros_like(n), n)
        return num_fbank_frames(num_samples, self.sample_rate,
                                1000.0 * self.win / self.sample_rate,
                                1000.0 * self.shift / self.sample_rate)

    @torch.no_grad()
    def forward(self, wavs, lens=None):
        """Compute features.

        Arguments
        ---------
        wavs : torch.Tensor
            [batch, samples] waveforms, zero padded at the end.
        lens : torch.Tensor or None
            [batch] relative lengths in (0, 1] (SpeechBrain convention).

        Returns
        -------
        torch.Tensor
            [batch, frames, n_mels] features (``frames = audio_length``
            when set).
        """
        if wavs.dim() == 1:
            wavs = wavs.unsqueeze(0)
        if wavs.dim() != 2:
            raise ValueError(f"expected [batch, samples] waveforms, got {tuple(wavs.shape)}")
        wavs = wavs.to(self.window.dtype)
        batch, total = wavs.shape
        if lens is None:
            abs_lens = torch.full((batch,), total, device=wavs.device, dtype=torch.long)
        else:
            abs_lens = torch.round(lens.to(wavs.device).float() * total).long().clamp(0, total)
        if total < self.win or bool((abs_lens < self.win).any()):
            raise ValueError(
                f"clip shorter than one analysis window ({self.win} samples): "
                f"lengths {abs_lens.tolist()}"
            )
        valid = torch.arange(total, device=wavs.device).unsqueeze(0) < abs_lens.unsqueeze(1)
        # Per-clip mean over its own samples, reduced exactly as the per-clip
        # ``waveform.mean()`` is (a masked sum would round differently).
        dc = torch.stack(
            [wavs[i, :n].mean() for i, n in enumerate(abs_lens.tolist())]
        ).unsqueeze(1)
        x = (wavs - dc) * valid
        feats = self._from_centered(x)
        n_valid = self.num_frames(abs_lens)
        keep = torch.arange(feats.shape[1], device=wavs.device).unsqueeze(0) < n_valid.unsqueeze(1)
        feats = feats * keep.unsqueeze(-1)
        feats = _pad_crop(feats, self.audio_length)
        if self.normalize:
            feats = normalize_fbank(feats, self.dataset_mean, self.dataset_std)
        return feats

    def _from_centered(self, x):
        """Log-mel of [batch, samples] waveforms with the clip DC removed."""
        frames = x.unfold(1, self.win, self.shift)  # [B, M, win]
        frames = frames - frames.mean(dim=-1, keepdim=True)
        prev = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
        frames = (frames - self.preemph * prev) * self.window
        spec = torch.fft.rfft(frames, n=self.n_fft).abs().pow(2.0)
        mel = torch.matmul(spec, self.mel_fb)
        return torch.clamp_min(mel, _EPS).log()


_CACHE = {}


def compute_fbank(waveform, sample_rate=16000, n_mels=128, audio_length=AUDIO_LENGTH,
                  dataset_mean=DEFAULT_MEAN, dataset_std=DEFAULT_STD, normalize=True):
    """Per-clip CAV-MAE features.

    Arguments
    ---------
    waveform : torch.Tensor
        [samples] or [1, samples] mono waveform at ``sample_rate``.
    sample_rate, n_mels, audio_length, dataset_mean, dataset_std, normalize
        As for :class:`KaldiFbank`.

    Returns
    -------
    torch.Tensor
        [audio_length, n_mels] (or [frames, n_mels] when ``audio_length``
        is None).

    Example
    -------
    >>> import torch
    >>> compute_fbank(torch.randn(1, 16000)).shape
    torch.Size([1024, 128])
    """
    if waveform.dim() == 2:
        if waveform.shape[0] != 1:
            raise ValueError(f"expected a mono waveform, got {tuple(waveform.shape)}")
        waveform = waveform[0]
    key = (sample_rate, n_mels)
    module = _CACHE.get(key)
    if module is None:
        module = _CACHE[key] = KaldiFbank(sample_rate, n_mels, audio_length=None,
                                          normalize=False)
    if waveform.numel() < module.win:
        raise ValueError(
            f"clip of {waveform.numel()} samples is shorter than one analysis "
            f"window ({module.win} samples)"
        )
    x = waveform.float()
    x = (x - x.mean()).unsqueeze(0)
    feats = _pad_crop(module._from_centered(x), audio_length)[0]
    if normalize:
        feats = normalize_fbank(feats, dataset_mean, dataset_std)
    return feats


def reference_fbank(waveform, sample_rate=16000, n_mels=128):
    """The original computation, via ``torchaudio.compliance.kaldi.fbank``.

    Kept as the ground truth the tests compare against (no pad/crop, no
    normalisation).
    """
    import torchaudio

    if waveform.dim() == 1:
        waveform = waveform.unsqueeze(0)
    waveform = waveform - waveform.mean()
    return torchaudio.compliance.kaldi.fbank(
        waveform, htk_compat=True, sample_frequency=sample_rate, use_energy=False,
        window_type="hanning", num_mel_bins=n_mels, dither=0.0, frame_shift=10,
    )


def normalize_fbank(fbank, dataset_mean=DEFAULT_MEAN, dataset_std=DEFAULT_STD):
    """``(fbank - dataset_mean) / dataset_std`` (CAV-MAE's input normalisation)."""
    return (fbank - dataset_mean) / dataset_std


def denormalize_fbank(fbank, dataset_mean=DEFAULT_MEAN, dataset_std=DEFAULT_STD):
    """Inverse of :func:`normalize_fbank`."""
    return fbank * dataset_std + dataset_mean


__all__ = [
    "KaldiFbank",
    "compute_fbank",
    "reference_fbank",
    "normalize_fbank",
    "denormalize_fbank",
    "num_fbank_frames",
    "DEFAULT_MEAN",
    "DEFAULT_STD",
]
