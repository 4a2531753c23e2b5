"""The numeric settings, checked where they enter (one table for flags and yaml keys).

A number given on a ``cavmae`` command line, in a recipe's hparams yaml or as a recipe
override (``--lr 1e-4``) is checked against :data:`RULES` before anything is built or any
data is read: a string where a number belongs (YAML reads ``nan`` and ``inf`` as strings,
``.nan`` and ``.inf`` as floats), a non-finite value, zero where the value divides
(``dataset_std``), a negative count or a fraction outside its interval is a
:class:`SettingError` naming the flag or key. A command-line flag and a yaml key of the
same meaning have the same name, so one table serves both: ``cavmae`` tools check their
parsed flags (:func:`speechbrain_cavmae.tools.common.execute`), the recipes their
resolved hparams (:func:`speechbrain_cavmae.training.recipe.check_settings`).

``None`` (a setting left unset) is never checked. A learning rate of 0 is allowed but
logged as a warning (:func:`learning_rate_warnings`): nothing would be learned.

Example
-------
>>> check_settings({"dataset_std": 4.4849, "top_k": 5, "lr": 1e-4, "run_name": "x"})
>>> try:
...     check_settings({"dataset_std": 0.0}, prefix="--")
... except SettingError as err:
...     print(err)
--dataset_std must be a finite number > 0 (it divides the fbank), got 0.0
>>> try:
...     check_settings({"lr": "nan"})
... except SettingError as err:
...     print(err)
lr must be a finite number >= 0, got 'nan' (a string)

Authors
 * speechbrain-cavmae contributors 2026
"""

import logging
import math
from dataclasses import dataclass
from numbers import Integral, Real

logger = logging.getLogger(__name__)


class SettingError(ValueError):
    """A numeric setting out of its range; ``name`` is the flag or key."""

    def __init__(self, name, message):
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class Range:
    """The values a setting may take: finite, an integer when ``integer``, within
    ``[low, high]`` (a bound left out when ``None``, excluded when ``*_open``)."""

    integer: bool = False
    low: float = None
    high: float = None
    low_open: bool = False
    high_open: bool = False
    why: str = ""

    def describe(self):
        """``a finite number > 0``, ``an integer >= 1``, ``a number in [0, 1)``..."""
        kind = "an integer" if self.integer else "a finite number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            bounds = f" in {left}{self.low:g}, {self.high:g}{right}"
        elif self.low is not None:
            bounds = f" {'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            bounds = f" {'<' if self.high_open else '<='} {self.high:g}"
        else:
            bounds = ""
        return kind + bounds + (f" ({self.why})" if self.why else "")

    def admits(self, value):
        """Whether ``value`` (any object) is in the range."""
        if isinstance(value, bool) or not isinstance(value, Integral if self.integer else Real):
            return False
        value = float(value)
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high
                                         or (self.high_open and value == self.high))


FINITE = Range()
POSITIVE = Range(low=0, low_open=True)
NON_NEGATIVE = Range(low=0)
FRACTION = Range(low=0, high=1)
BELOW_ONE = Range(low=0, high=1, high_open=True)
COUNT = Range(integer=True, low=0)
SIZE = Range(integer=True, low=1)

#: setting (flag without its dashes, or top-level yaml key) -> its :class:`Range`
RULES = {
    # input pipeline
    "dataset_mean": FINITE,
    "dataset_std": Range(low=0, low_open=True, why="it divides the fbank"),
    "sample_rate": SIZE,
    "audio_length": SIZE,
    "n_mels": SIZE,
    "image_size": SIZE,
    "n_frames": SIZE,
    "frame_index": Range(integer=True, low=-1, why="-1: the middle frame"),
    "freqm": COUNT,
    "timem": COUNT,
    "mixup": FRACTION,
    "mixup_alpha": POSITIVE,
    "label_smooth": BELOW_ONE,
    "video_threads": COUNT,
    "clip_length": SIZE,
    "frame_span_s": POSITIVE,
    # model
    "num_classes": SIZE,
    "patch_size": SIZE,
    "embed_dim": SIZE,
    "num_heads": SIZE,
    "modality_specific_depth": COUNT,
    "shared_depth": COUNT,
    "mlp_ratio": POSITIVE,
    "drop_path_rate": BELOW_ONE,
    "decoder_embed_dim": SIZE,
    "decoder_depth": COUNT,
    "decoder_num_heads": SIZE,
    "masking_ratio": BELOW_ONE,
    "mask_ratio_a": BELOW_ONE,
    "mask_ratio_v": BELOW_ONE,
    "contrastive_temperature": POSITIVE,
    "num_register_tokens": COUNT,
    "mask_ratio_seed": COUNT,
    # training
    "lr": NON_NEGATIVE,
    "head_lr": Range(low=0, why="the head's rate is head_lr x lr"),
    "weight_decay": NON_NEGATIVE,
    "mae_loss_weight": NON_NEGATIVE,
    "contrast_loss_weight": NON_NEGATIVE,
    "max_grad_norm": Range(low=0, low_open=True, why="clipping to 0 or less zeroes or reverses "
                                                      "the gradients"),
    "number_of_epochs": COUNT,
    "batch_size": SIZE,
    "num_workers": COUNT,
    "warmup_steps": COUNT,
    "lrscheduler_start": COUNT,
    "lrscheduler_step": SIZE,
    "lrscheduler_decay": POSITIVE,
    "wa_start": COUNT,
    "wa_end": COUNT,
    "shuffle_buffer": SIZE,
    "ckpt_interval_minutes": NON_NEGATIVE,
    "grad_accumulation_factor": SIZE,
    "nonfinite_patience": COUNT,
    "seed": COUNT,
    # evaluation and tools
    "top_k": SIZE,
    "topk": SIZE,
    "chunk_size": SIZE,
    "retrieval_chunk_size": SIZE,
    "max_samples": SIZE,
    "shard_size": SIZE,
    "num_clips": SIZE,
    "n_train": COUNT,
    "n_valid": COUNT,
    "n_test": COUNT,
    "n_classes": SIZE,
    "duration": POSITIVE,
}

#: learning rates that, at 0, leave (part of) the model untrained
LEARNING_RATES = {"lr": "nothing will be learned",
                  "head_lr": "the classification head will not be learned"}


def check_settings(values, prefix="", suffix=""):
    """Raise :class:`SettingError` for the first value of ``values`` outside its range.

    Arguments
    ---------
    values : mapping
        Setting name -> value; names without a rule and ``None`` values are not checked,
        a list or tuple (``topk: [1, 5]``) is checked item by item.
    prefix, suffix : str
        Around the name in the message: ``"--"`` for a flag, ``" (--lr)"``...
    """
    for name, value in values.items():
        rule = RULES.get(name)
        if rule is None or value is None:
            continue
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if not rule.admits(item):
                kind = " (a string)" if isinstance(item, str) else ""
                raise SettingError(name, f"{prefix}{name}{suffix} must be {rule.describe()}, "
                                         f"got {item!r}{kind}")


def learning_rate_warnings(values, prefix=""):
    """Log a warning for each learning rate of ``values`` that is 0; returns them."""
    zero = [name for name in LEARNING_RATES if values.get(name) == 0]
    for name in zero:
        logger.warning("%s%s is 0: %s", prefix, name, LEARNING_RATES[name])
    return zero


__all__ = ["RULES", "Range", "SettingError", "check_settings", "learning_rate_warnings"]
