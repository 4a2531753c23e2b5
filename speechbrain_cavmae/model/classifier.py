"""The fine-tuned CAV-MAE classifier with the original's five inference modes.

Authors
 * speechbrain-cavmae contributors 2026
"""

from collections import OrderedDict

import torch
from torch import nn

from speechbrain_cavmae.model.encoder import CAVMAEEncoder
from speechbrain_cavmae.model.modes import MODES, check_mode  # noqa: F401  (re-exported)


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
        Passed to :class:`~speechbrain_cavmae.model.encoder.CAVMAEEncoder`
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
        return self.encoder.pool(audio, image, mode or self.mode)

    def forward(self, audio=None, image=None, mode=None):
        """Logits ``[batch, num_classes]`` for fbank ``[batch, frames, n_mels]`` and/or
        frames ``[batch, 3, H, W]`` (either may be None when the mode does not use it)."""
        return self.head(self.pool(audio, image, mode))

    def forward_frames(self, audio=None, frames=None, mode=None, on_step=None):
        """Logits of each frame of each clip ``[batch, n, num_classes]`` for fbank
        ``[batch, frames, n_mels]`` and frames ``[batch, n, 3, H, W]``: what :meth:`forward`
        gives frame by frame, with each clip's audio branch run once and its frames as one
        batch (``n = 1`` when the mode reads no frames; ``on_step``: see
        :meth:`~speechbrain_cavmae.model.encoder.CAVMAEEncoder.pool_frames`).

        Example
        -------
        >>> model = CAVMAEClassifier(5, img_size=32, audio_length=64, embed_dim=32,
        ...                          modality_specific_depth=1, num_heads=4)
        >>> model.forward_frames(torch.randn(2, 64, 128), torch.randn(2, 3, 3, 32, 32)).shape
        torch.Size([2, 3, 5])
        """
        return self.head(self.encoder.pool_frames(audio, frames, mode or self.mode, on_step))

    def encode(self, audio=None, image=None):
        """Unmasked audio-only and visual-only token sequences (see ``CAVMAEEncoder.encode``)."""
        return self.encoder.encode(audio, image)
