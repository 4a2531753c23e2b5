"""Dataset fbank statistics for input normalisation.

Computes the mean and standard deviation of the *unnormalised*, padded
``[audio_length, n_mels]`` log-mel features of a manifest (evaluation
mode: no augmentation), averaging per-clip means and standard deviations
as the original recipe did (its default AudioSet values are -5.081 and
4.4849). Set the results as ``dataset_mean`` / ``dataset_std`` in the yaml.

On the command line: ``cavmae stats`` (:mod:`speechbrain_cavmae.tools.stats`).
"""

import logging
import os

import torch

from .dataset import AVSampleLoader, resolve_config
from .errors import BadSampleError
from .pool import cap_workers
from .manifest import read_manifest

logger = logging.getLogger(__name__)


class _FbankOnly(torch.utils.data.Dataset):
    """Unnormalised fbank per sample (None for bad samples, logged)."""

    def __init__(self, loader, ids):
        self.loader, self.ids = loader, ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        sid = self.ids[i]
        try:
            return self.loader.fbank(self.loader.waveform(sid), sid)
        except BadSampleError as err:
            logger.warning("skipping bad sample: %s", err.with_id(sid))
            return None


def _collect(items):
    return [x for x in items if x is not None]


def fbank_stats(manifest, config=None, max_samples=None, jobs=0, batch_size=8, progress=None):
    """(mean, std) of the unnormalised features over (at most) ``max_samples`` clips.

    Only the audio is loaded; bad samples are skipped and logged. ``progress`` optionally
    wraps the batches.
    """
    cfg = resolve_config(dict(config or {}, skip_norm=True), train=False)
    data = read_manifest(manifest)
    ids = list(data)
    if max_samples is not None and max_samples < len(ids):
        g = torch.Generator().manual_seed(0)
        ids = [ids[i] for i in torch.randperm(len(ids), generator=g)[:max_samples].tolist()]
    loader = AVSampleLoader(data, cfg, False, None, os.fspath(manifest))
    batches = torch.utils.data.DataLoader(
        _FbankOnly(loader, ids), batch_size=batch_size, num_workers=cap_workers(jobs),
        collate_fn=_collect
    )
    means, stds = [], []
    for feats in (progress(batches) if progress else batches):
        for f in feats:
            means.append(float(f.mean()))
            stds.append(float(f.std()))
    if not means:
        raise ValueError(f"{manifest}: no usable samples")
    return sum(means) / len(means), sum(stds) / len(stds)

