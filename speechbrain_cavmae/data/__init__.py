"""Audio-visual data pipeline for CAV-MAE on SpeechBrain's dataio.

Modules
-------
errors    : :class:`BadSampleError`.
manifest  : label tables and manifest readers (original CAV-MAE JSON,
            SpeechBrain JSON/CSV).
audio     : waveform loading from audio files or video containers.
frames    : frame index sampling, decoding, pre-extracted layout, image
            transform.
augment   : mixup, SpecAugment masks, noise + roll, label smoothing.
dataset   : :func:`build_dataset`, collate with the bad-sample policy.
balance   : class-balanced sampling weights (CLI).
stats     : dataset fbank mean/std (CLI).
"""

from .errors import BadSampleError

__all__ = ["BadSampleError"]
