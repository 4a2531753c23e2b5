"""Patch embeddings for log-mel spectrograms and RGB frames.

Both wrap :class:`timm.layers.PatchEmbed` (a strided convolution, parameter ``proj``).

Authors
 * speechbrain-cavmae contributors 2026
"""

import torch
from timm.layers.patch_embed import PatchEmbed  # the defining module: bound at import

#: Fbank frames of the released models (10.24 s at a 10 ms shift): the one default audio
#: length (model, fbank, data configuration, drop-in encoders).
AUDIO_LENGTH = 1024


class ImagePatchEmbed(PatchEmbed):
    """Split ``[batch, 3, H, W]`` frames into non-overlapping patches and project them.

    Arguments
    ---------
    img_size : int
        Frame side in pixels (multiple of ``patch_size``).
    patch_size : int
        Patch side.
    in_chans : int
        Input channels.
    embed_dim : int
        Token size.

    Example
    -------
    >>> embed = ImagePatchEmbed(img_size=64, patch_size=16, embed_dim=32)
    >>> embed(torch.randn(2, 3, 64, 64)).shape
    torch.Size([2, 16, 32])
    """

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768):
        super().__init__(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim
        )


class AudioPatchEmbed(PatchEmbed):
    """Split a ``[batch, time_frames, n_mels]`` fbank into 16x16 patches and project them.

    The spectrogram is laid out as a one-channel image ``[batch, 1, n_mels, time]`` so that
    tokens come out frequency-major: token ``k = band * n_time_patches + step``, as in the
    original CAV-MAE. Any number of frames that is a multiple of ``patch_size`` is accepted.

    Arguments
    ---------
    n_mels : int
        Mel bins of the input features.
    audio_length : int
        Nominal number of frames (sets ``num_patches`` and ``grid_size``).
    patch_size : int
        Patch side.
    embed_dim : int
        Token size.

    Example
    -------
    >>> embed = AudioPatchEmbed(n_mels=128, audio_length=1024, embed_dim=32)
    >>> embed(torch.randn(2, 1024, 128)).shape
    torch.Size([2, 512, 32])
    >>> embed.grid_size
    (8, 64)
    """

    def __init__(self, n_mels=128, audio_length=AUDIO_LENGTH, patch_size=16, embed_dim=768):
        for name, value in (("n_mels", n_mels), ("audio_length", audio_length)):
            if value % patch_size:
                raise ValueError(f"{name}={value} is not a multiple of patch_size={patch_size}")
        super().__init__(
            img_size=(n_mels, audio_length),
            patch_size=patch_size,
            in_chans=1,
            embed_dim=embed_dim,
            strict_img_size=False,
        )
        self.n_mels = n_mels

    def forward(self, fbank):
        """Embed ``fbank`` ``[batch, frames, n_mels]`` into ``[batch, tokens, embed_dim]``."""
        if fbank.dim() != 3 or fbank.shape[-1] != self.n_mels:
            raise ValueError(
                f"expected audio features [batch, frames, {self.n_mels}], got "
                f"{tuple(fbank.shape)}; CAV-MAE takes {self.n_mels}-bin log-mel fbank "
                "(see speechbrain_cavmae.data.fbank.KaldiFbank)"
            )
        if fbank.shape[1] % self.patch_size[1]:
            raise ValueError(
                f"audio length {fbank.shape[1]} frames is not a multiple of "
                f"{self.patch_size[1]}; pad or crop the fbank first"
            )
        return super().forward(fbank.transpose(1, 2).unsqueeze(1))
