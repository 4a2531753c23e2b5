"""Training-time augmentation, as in the original CAV-MAE data loader.

* **Mixup** (pairwise, inside the dataset): with probability ``mixup`` a
  sample is mixed with a random other sample of the dataset. Both waveforms
  have their mean removed, the partner is zero padded / cropped to the
  sample's length, they are mixed with ``lambda ~ Beta(10, 10)`` and the
  mean is removed again; the normalised frames are mixed with the same
  lambda, and so are the labels (see :func:`make_targets`).
* **SpecAugment**: one frequency mask of width ``U[0, freqm)`` and one time
  mask of width ``U[0, timem)`` (torchaudio's ``FrequencyMasking`` /
  ``TimeMasking``), applied to the padded log-mel *before* normalisation, so
  masked bins hold ``(0 - mean) / std`` after it.
* **Noise + roll**: after normalisation add ``U[0, 1) * U[0, 1) / 10`` noise
  per bin and roll the features in time by ``randint(-T, T)`` frames.
* **Label smoothing**: negatives get ``label_smooth / num_classes``;
  positives get ``1 - label_smooth`` (no mixup) or accumulate
  ``lambda * (1 - label_smooth)`` on top of the negative value (mixup).

All random draws use torch's generator so that DataLoader workers, which
torch seeds individually, draw different numbers.

Example
-------
>>> import torch
>>> aug = FbankAugment(freqm=8, timem=20, noise=True)
>>> aug(torch.zeros(2, 100, 128)).shape
torch.Size([2, 100, 128])
"""

import logging

import torch
import torchaudio

from speechbrain_cavmae.data.fbank import DEFAULT_MEAN, DEFAULT_STD

logger = logging.getLogger(__name__)


def sample_mix_lambda(alpha=10.0, beta=None):
    """Draw ``lambda ~ Beta(alpha, beta or alpha)`` as a float."""
    dist = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(beta or alpha)))
    return float(dist.sample())


def mix_waveforms(wav1, wav2, lam):
    """Mix two mono waveforms as the original does; output has ``len(wav1)``.

    Example
    -------
    >>> import torch
    >>> mix_waveforms(torch.ones(4), torch.ones(2), 0.5).shape
    torch.Size([4])
    """
    wav1 = wav1 - wav1.mean()
    wav2 = wav2 - wav2.mean()
    n = wav1.shape[-1]
    if wav2.shape[-1] < n:
        wav2 = torch.nn.functional.pad(wav2, (0, n - wav2.shape[-1]))
    else:
        wav2 = wav2[..., :n]
    mixed = lam * wav1 + (1.0 - lam) * wav2
    return mixed - mixed.mean()


def make_targets(table, labels, label_smooth=0.0, mix_labels=None, lam=1.0):
    """Soft multi-hot targets [num_classes] with smoothing and mixup.

    Arguments
    ---------
    table : LabelTable
    labels : list of str
        The sample's labels.
    label_smooth : float
        Smoothing epsilon.
    mix_labels : list of str, optional
        The mixup partner's labels (``None``: no mixup).
    lam : float
        Mixup weight of the sample.

    Example
    -------
    >>> from speechbrain_cavmae.data.manifest import LabelTable
    >>> t = LabelTable(["a", "b", "c", "d"])
    >>> [round(x, 3) for x in make_targets(t, ["a"], 0.1).tolist()]
    [0.9, 0.025, 0.025, 0.025]
    """
    base = label_smooth / table.num_classes
    out = torch.full((table.num_classes,), base, dtype=torch.float64)
    if mix_labels is None:
        for label in labels:
            out[table.index(label)] = 1.0 - label_smooth
    else:
        for label in labels:
            out[table.index(label)] += lam * (1.0 - label_smooth)
        for label in mix_labels:
            out[table.index(label)] += (1.0 - lam) * (1.0 - label_smooth)
    return out.float()


def spec_augment(fbank, freqm=0, timem=0):
    """torchaudio frequency/time masking of one [frames, bins] log-mel."""
    if not freqm and not timem:
        return fbank
    spec = fbank.t().unsqueeze(0)  # [1, bins, frames]
    if freqm:
        spec = torchaudio.transforms.FrequencyMasking(freqm)(spec)
    if timem:
        spec = torchaudio.transforms.TimeMasking(timem)(spec)
    return spec.squeeze(0).t()


def noise_and_roll(fbank):
    """The original's additive noise and random time roll ([frames, bins])."""
    frames = fbank.shape[0]
    scale = torch.rand(()) / 10.0
    fbank = fbank + torch.rand(fbank.shape) * scale
    shift = int(torch.randint(-frames, frames, ()))
    return torch.roll(fbank, shift, 0)


def _batched_mask(feats, width_max, dim, value):
    """One mask per example along ``dim`` (1: time, 2: freq), torchaudio-style."""
    batch, size = feats.shape[0], feats.shape[dim]
    width = torch.rand(batch, device=feats.device) * width_max
    start = torch.rand(batch, device=feats.device) * (size - width)
    lo = start.long()
    hi = lo + width.long()
    pos = torch.arange(size, device=feats.device).unsqueeze(0)
    mask = (pos >= lo.unsqueeze(1)) & (pos < hi.unsqueeze(1))  # [B, size]
    mask = mask.unsqueeze(2) if dim == 1 else mask.unsqueeze(1)
    return feats.masked_fill(mask, value)


class FbankAugment(torch.nn.Module):
    """Batched SpecAugment + noise/roll for features computed on device.

    Use after :class:`speechbrain_cavmae.data.fbank.KaldiFbank` (normalised
    output) when ``features_on_device`` is set; it reproduces the per-clip
    augmentation of the CPU path, with masks filled with the normalised
    value of 0 (``(0 - mean) / std``) because the original masks before
    normalising.

    Arguments
    ---------
    freqm, timem : int
        Maximum mask widths (0 disables).
    noise : bool
        Additive noise and random time roll.
    dataset_mean, dataset_std : float
        Normalisation statistics used by the features.
    """

    def __init__(self, freqm=0, timem=0, noise=False, dataset_mean=DEFAULT_MEAN,
                 dataset_std=DEFAULT_STD):
        super().__init__()
        self.freqm, self.timem, self.noise = freqm, timem, noise
        self.mask_value = (0.0 - dataset_mean) / dataset_std

    @torch.no_grad()
    def forward(self, feats):
        """feats: [batch, frames, bins] normalised -> same shape."""
        if self.freqm:
            feats = _batched_mask(feats, self.freqm, 2, self.mask_value)
        if self.timem:
            feats = _batched_mask(feats, self.timem, 1, self.mask_value)
        if self.noise:
            batch, frames = feats.shape[:2]
            scale = torch.rand(batch, 1, 1, device=feats.device) / 10.0
            feats = feats + torch.rand_like(feats) * scale
            shifts = torch.randint(-frames, frames, (batch,), device=feats.device)
            idx = (torch.arange(frames, device=feats.device).unsqueeze(0) - shifts.unsqueeze(1)) % frames
            feats = torch.gather(feats, 1, idx.unsqueeze(-1).expand_as(feats))
        return feats
