"""Conversions between inputs and per-patch reconstruction targets.

The patch vectors follow the original CAV-MAE (and MAE) layout: for a patch, pixels in
row-major order, channels last (``p * p * c`` values). Audio fbank ``[batch, frames, n_mels]``
is first laid out as the one-channel image ``[batch, 1, n_mels, frames]``, so its patches come
out frequency-major, matching the token order of the encoder.

Authors
 * speechbrain-cavmae contributors 2026
"""

import torch


def patchify_image(images, patch_size=16):
    """``[batch, c, H, W]`` -> ``[batch, (H/p)*(W/p), p*p*c]``.

    Example
    -------
    >>> patchify_image(torch.randn(2, 3, 32, 48)).shape
    torch.Size([2, 6, 768])
    """
    b, c, h, w = images.shape
    p = patch_size
    x = images.reshape(b, c, h // p, p, w // p, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify_image(patches, grid, patch_size=16, channels=3):
    """``[batch, rows*cols, p*p*c]`` -> ``[batch, c, rows*p, cols*p]`` (inverse of patchify).

    Example
    -------
    >>> x = torch.randn(2, 3, 32, 48)
    >>> bool(torch.equal(unpatchify_image(patchify_image(x), (2, 3)), x))
    True
    """
    rows, cols = grid
    b = patches.shape[0]
    p = patch_size
    x = patches.reshape(b, rows, cols, p, p, channels)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(b, channels, rows * p, cols * p)


def patchify_audio(fbank, patch_size=16):
    """``[batch, frames, n_mels]`` -> ``[batch, (n_mels/p)*(frames/p), p*p]`` frequency-major.

    Example
    -------
    >>> patchify_audio(torch.randn(2, 64, 128)).shape
    torch.Size([2, 32, 256])
    """
    return patchify_image(fbank.transpose(1, 2).unsqueeze(1), patch_size)


def unpatchify_audio(patches, grid, patch_size=16):
    """``[batch, rows*cols, p*p]`` -> fbank ``[batch, cols*p, rows*p]`` (inverse of patchify).

    Example
    -------
    >>> a = torch.randn(2, 64, 128)
    >>> bool(torch.equal(unpatchify_audio(patchify_audio(a), (8, 4)), a))
    True
    """
    return unpatchify_image(patches, grid, patch_size, channels=1).squeeze(1).transpose(1, 2)
