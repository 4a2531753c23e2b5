"""Random token masking for masked autoencoding.

Every function follows the MAE convention: each token gets a noise value and the tokens with
the **lowest** noise are kept (ascending argsort), so passing the same noise reproduces the
same mask. Structured audio masks raise the noise of whole time columns and/or frequency rows
above 1 so that they are dropped first.

Authors
 * speechbrain-cavmae contributors 2026
"""

import torch

MASK_MODES = ("unstructured", "time", "freq", "tf")


def random_masking(x, mask_ratio, noise=None):
    """Keep the ``int(L * (1 - mask_ratio))`` tokens with the lowest noise.

    Arguments
    ---------
    x : torch.Tensor
        Tokens, shape ``[batch, L, dim]``.
    mask_ratio : float
        Fraction of tokens to drop.
    noise : torch.Tensor, optional
        Per-token noise ``[batch, L]``; uniform random when omitted.

    Returns
    -------
    x_kept : torch.Tensor
        ``[batch, L_keep, dim]``, kept tokens in ascending-noise order.
    mask : torch.Tensor
        ``[batch, L]``, 1.0 for dropped tokens, 0.0 for kept ones (input order).
    ids_restore : torch.Tensor
        ``[batch, L]`` indices that undo the shuffle.

    Example
    -------
    >>> x = torch.randn(2, 8, 4)
    >>> kept, mask, ids_restore = random_masking(x, 0.75)
    >>> kept.shape, mask.sum(dim=1)
    (torch.Size([2, 2, 4]), tensor([6., 6.]))
    """
    batch, length, dim = x.shape
    len_keep = int(length * (1 - mask_ratio))
    if len_keep < 1:  # the encoder would attend over no token: NaN losses, not an error
        raise ValueError(f"mask ratio {mask_ratio:g} keeps no token of a stream of {length} "
                         "tokens: lower the masking ratio (or the multi-ratio range) or give "
                         "the model larger inputs")
    if noise is None:
        noise = torch.rand(batch, length, device=x.device)
    elif noise.shape != (batch, length):
        raise ValueError(f"noise must have shape {(batch, length)}, got {tuple(noise.shape)}")
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    x_kept = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))
    mask = (ids_restore >= len_keep).to(x.dtype)
    return x_kept, mask, ids_restore


def _pick(batch, size, count, device, generator=None):
    """Boolean ``[batch, size]`` with ``count`` random True entries per row (no Python loop)."""
    scores = torch.rand(batch, size, device=device, generator=generator)
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return ranks < count


def structured_noise(batch, freq_patches, time_patches, mask_ratio, mode, noise=None,
                     generator=None, device=None):
    """Token noise for the structured audio masks of the CAV-MAE ablations.

    ``time`` drops ``int(T * ratio)`` whole time columns, ``freq`` drops ``int(F * ratio)``
    frequency rows, ``tf`` drops ``int(T * ratio * 0.7)`` columns and ``int(F * ratio * 0.7)``
    rows (the original's choice). Dropped positions get noise 1.1, above any uniform noise.

    Arguments
    ---------
    batch : int
        Batch size.
    freq_patches : int
        Frequency rows of the audio patch grid (8 for 128 mel bins).
    time_patches : int
        Time columns of the audio patch grid.
    mask_ratio : float
        Masking ratio.
    mode : str
        One of ``"unstructured"``, ``"time"``, ``"freq"``, ``"tf"``.
    noise : torch.Tensor, optional
        Base token noise ``[batch, F * T]`` in [0, 1); uniform random when omitted.
    generator : torch.Generator, optional
        Generator for the column/row choice.
    device : torch.device, optional
        Device of the result when ``noise`` is omitted.

    Returns
    -------
    torch.Tensor
        Noise ``[batch, F * T]`` in the frequency-major token order.

    Example
    -------
    >>> n = structured_noise(2, 8, 4, 0.75, "time")
    >>> (n.reshape(2, 8, 4) > 1).all(dim=1).sum(dim=1)
    tensor([3, 3])
    """
    if mode not in MASK_MODES:
        raise ValueError(f"mask_mode must be one of {MASK_MODES}, got {mode!r}")
    length = freq_patches * time_patches
    if noise is None:
        noise = torch.rand(batch, length, device=device, generator=generator)
    noise = noise.reshape(batch, freq_patches, time_patches).clone()
    if mode in ("time", "tf"):
        factor = 1.0 if mode == "time" else 0.7
        cols = _pick(batch, time_patches, int(time_patches * mask_ratio * factor),
                     noise.device, generator)
        noise = torch.where(cols[:, None, :], torch.full_like(noise, 1.1), noise)
    if mode in ("freq", "tf"):
        factor = 1.0 if mode == "freq" else 0.7
        rows = _pick(batch, freq_patches, int(freq_patches * mask_ratio * factor),
                     noise.device, generator)
        noise = torch.where(rows[:, :, None], torch.full_like(noise, 1.1), noise)
    return noise.reshape(batch, length)


#: Range of the per-step masking ratio of CAV-MAE Sync's multi-ratio masking.
MULTI_RATIO_RANGE = (0.6, 0.9)


def draw_mask_ratios(seed, step, low=MULTI_RATIO_RANGE[0], high=MULTI_RATIO_RANGE[1]):
    """Audio and visual masking ratios of training step ``step``, uniform in ``[low, high)``.

    A function of ``(seed, step)`` only (a generator seeded from both, on the CPU), so
    every DDP process that counts the same steps draws the same ratios without a
    broadcast, and a resumed run that sets its step draws those of the interrupted one.

    Example
    -------
    >>> ra, rv = draw_mask_ratios(0, 5)
    >>> 0.6 <= ra < 0.9 and 0.6 <= rv < 0.9, (ra, rv) == draw_mask_ratios(0, 5)
    (True, True)
    """
    if not 0.0 <= low <= high < 1.0:
        raise ValueError(f"mask ratio range must satisfy 0 <= low <= high < 1, got "
                         f"({low}, {high})")
    generator = torch.Generator().manual_seed((int(seed) % 2**31) * 2**32 + int(step) % 2**32)
    u = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
    return low + (high - low) * u[0], low + (high - low) * u[1]
