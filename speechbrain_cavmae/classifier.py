"""The fine-tuned CAV-MAE classifier with the original's five inference modes.

Authors
 * speechbrain-cavmae contributors 2026
"""

from collections import OrderedDict

import torch
from torch import nn

from speechbrain_cavmae.encoder import CAVMAEEncoder

#: Inference modes, under the names of the original implementation.
MODES = ("multimodal", "audioonly", "videoonly", "missingaudioonly", "missingvideoonly")


class ClassifierHead(nn.Sequential):
    """``LayerNorm`` then ``Linear`` on pooled tokens ``[batch, dim]`` -> ``[batch, classes]``.

    Example
    -------
    >>> ClassifierHead(32, 5)(torch.randn(2, 32)).shape
    torch.Size([2, 5])
    """

    def __init__(self, embed_dim, num_classes):
        super().__init__(
            OrderedDict(norm=nn.LayerNorm(embed_dim), fc=nn.Linear(embed_dim, num_classes))
        )
        nn.init.xavier_uniform_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)


class CAVMAEClassifier(nn.Module):
    """CAV-MAE encoder with a classification head on mean-pooled tokens.

    Modes (``mode`` argument or the default set at construction):

    * ``multimodal``: joint stream over ``[audio; visual]`` tokens (final norm ``norm``);
    * ``audioonly`` / ``videoonly``: the single-modality stream with its own norms, for models
      fine-tuned on one modality;
    * ``missingaudioonly`` / ``missingvideoonly``: a multimodally fine-tuned model given only
      audio (only video): average of the pooled joint-norm pass and the pooled
      modality-norm pass over that modality's tokens.

    Arguments
    ---------
    num_classes : int
        Output classes.
    mode : str
        Default mode, one of :data:`MODES`.
    **encoder_kwargs
        Passed to :class:`~speechbrain_cavmae.encoder.CAVMAEEncoder`
        (``trainable_pos_embed`` defaults to True, as in the original fine-tuning).

    Example
    -------
    >>> model = CAVMAEClassifier(5, img_size=32, audio_length=64, embed_dim=32,
    ...                          modality_specific_depth=1, num_heads=4)
    >>> a, v = torch.randn(2, 64, 128), torch.randn(2, 3, 32, 32)
    >>> model(a, v).shape, model(a, None, mode="missingaudioonly").shape
    (torch.Size([2, 5]), torch.Size([2, 5]))
    """

    def __init__(self, num_classes, mode="multimodal", **encoder_kwargs):
        super().__init__()
        check_mode(mode)
        encoder_kwargs.setdefault("trainable_pos_embed", True)
        self.mode = mode
        self.encoder = CAVMAEEncoder(**encoder_kwargs)
        self.head = ClassifierHead(self.encoder.embed_dim, num_classes)

    @property
    def num_classes(self):
        """Number of output classes."""
        return self.head.fc.out_features

    def pool(self, audio=None, image=None, mode=None):
        """Mean-pooled representation ``[batch, dim]`` that the head classifies."""
        mode = check_mode(mode or self.mode)
        enc = self.encoder
        if mode == "multimodal":
            _require(audio, "audio", mode)
            _require(image, "image", mode)
            a = enc.forward_audio_branch(enc.embed_audio(audio))
            v = enc.forward_visual_branch(enc.embed_visual(image))
            return enc.forward_shared(torch.cat([a, v], dim=1)).mean(dim=1)
        if mode in ("audioonly", "missingaudioonly"):
            _require(audio, "audio", mode)
            x, modality = enc.forward_audio_branch(enc.embed_audio(audio)), "a"
        else:
            _require(image, "image", mode)
            x, modality = enc.forward_visual_branch(enc.embed_visual(image)), "v"
        pooled = enc.forward_shared(x, modality).mean(dim=1)
        if mode.startswith("missing"):
            pooled = (enc.forward_shared(x).mean(dim=1) + pooled) / 2
        return pooled

    def forward(self, audio=None, image=None, mode=None):
        """Logits ``[batch, num_classes]`` for fbank ``[batch, frames, n_mels]`` and/or
        frames ``[batch, 3, H, W]`` (either may be None when the mode does not use it)."""
        return self.head(self.pool(audio, image, mode))

    def encode(self, audio=None, image=None):
        """Unmasked audio-only and visual-only token sequences (see ``CAVMAEEncoder.encode``)."""
        return self.encoder.encode(audio, image)


def check_mode(mode):
    """Return ``mode`` if it is one of :data:`MODES`, else raise a ``ValueError``."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    return mode


def _require(tensor, name, mode):
    if tensor is None:
        raise ValueError(f"mode {mode!r} needs the {name} input")
