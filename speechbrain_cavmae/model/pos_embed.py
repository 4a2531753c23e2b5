"""Fixed 2-D sine-cosine positional embeddings for audio and image patch grids.

CAV-MAE uses the MAE-style 2-D sin-cos embedding on both patch grids. For a grid of
``grid_h`` rows and ``grid_w`` columns, token ``k = row * grid_w + col`` receives the
concatenation ``[sincos(col), sincos(row)]``, each half being a 1-D embedding with
frequencies ``1 / 10000 ** (i / (dim / 4))``. For audio the rows are the 8 frequency
bands and the columns are time steps, matching the frequency-major token order of
:class:`~speechbrain_cavmae.model.patch_embed.AudioPatchEmbed`.

Authors
 * speechbrain-cavmae contributors 2026
"""

import torch
import torch.nn.functional as F


def sincos_1d(embed_dim, positions):
    """1-D sine-cosine embedding of a list of positions.

    Arguments
    ---------
    embed_dim : int
        Output size (even).
    positions : torch.Tensor
        Positions, shape ``[M]``.

    Returns
    -------
    torch.Tensor
        Shape ``[M, embed_dim]``: sines in the first half, cosines in the second (float64).

    Example
    -------
    >>> sincos_1d(4, torch.arange(3.0)).shape
    torch.Size([3, 4])
    """
    if embed_dim % 2:
        raise ValueError(f"embed_dim must be even, got {embed_dim}")
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega
    out = positions.to(torch.float64).reshape(-1, 1) * omega.reshape(1, -1)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_2d(embed_dim, grid_h, grid_w):
    """2-D sine-cosine embedding of a ``grid_h x grid_w`` patch grid (row-major tokens).

    Arguments
    ---------
    embed_dim : int
        Output size (multiple of 4).
    grid_h : int
        Number of rows (frequency bands for audio).
    grid_w : int
        Number of columns (time steps for audio).

    Returns
    -------
    torch.Tensor
        Shape ``[grid_h * grid_w, embed_dim]``, float32.

    Example
    -------
    >>> sincos_2d(16, 8, 64).shape
    torch.Size([512, 16])
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim must be a multiple of 4, got {embed_dim}")
    rows = torch.arange(grid_h, dtype=torch.float64).repeat_interleave(grid_w)
    cols = torch.arange(grid_w, dtype=torch.float64).repeat(grid_h)
    emb = torch.cat([sincos_1d(embed_dim // 2, cols), sincos_1d(embed_dim // 2, rows)], dim=1)
    return emb.float()


def resize_time_pos_embed(pos_embed, grid_h, new_grid_w):
    """Resize a ``[1, grid_h * grid_w, dim]`` audio positional embedding along time.

    The frequency axis is kept; each frequency row is linearly interpolated along time to
    ``new_grid_w`` columns with half-pixel centres (bilinear, ``align_corners=False``: new
    column ``j`` samples old position ``(j + 0.5) * grid_w / new_grid_w - 0.5``, clamped to
    the first and last column). Used when a checkpoint is loaded at another audio length
    and for inputs of another length. The original never does this (its checkpoints only
    load at their own length); the interpolation is computed in float64 so that it is
    exact to float32 rounding for any ratio of lengths.

    Arguments
    ---------
    pos_embed : torch.Tensor
        Shape ``[1, grid_h * grid_w, dim]``.
    grid_h : int
        Number of frequency rows.
    new_grid_w : int
        Number of time columns wanted.

    Returns
    -------
    torch.Tensor
        Shape ``[1, grid_h * new_grid_w, dim]``.

    Example
    -------
    >>> pe = sincos_2d(16, 8, 64).unsqueeze(0)
    >>> resize_time_pos_embed(pe, 8, 32).shape
    torch.Size([1, 256, 16])
    """
    _, n, dim = pos_embed.shape
    if n % grid_h:
        raise ValueError(f"{n} positions do not form {grid_h} frequency rows")
    grid_w = n // grid_h
    if grid_w == new_grid_w:
        return pos_embed
    grid = pos_embed.reshape(1, grid_h, grid_w, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid.double(), size=(grid_h, new_grid_w), mode="bilinear", align_corners=False
    )
    return grid.permute(0, 2, 3, 1).reshape(1, grid_h * new_grid_w, dim).to(pos_embed.dtype)


def first_time_columns(pos_embed, grid_h, new_grid_w):
    """The first ``new_grid_w`` time columns of a ``[1, grid_h * grid_w, dim]`` audio
    positional embedding (frequency-major), ``[1, grid_h * new_grid_w, dim]``.

    The positions of an input padded at the end to the nominal length, less those of the
    padding: with the padding masked out of attention, the tokens of the real frames are
    the same whether the padding is computed or not.

    Example
    -------
    >>> pe = sincos_2d(16, 8, 64).unsqueeze(0)
    >>> short = first_time_columns(pe, 8, 7)
    >>> short.shape, torch.equal(short[0, 7], pe[0, 64])
    (torch.Size([1, 56, 16]), True)
    """
    _, n, dim = pos_embed.shape
    if n % grid_h:
        raise ValueError(f"{n} positions do not form {grid_h} frequency rows")
    grid_w = n // grid_h
    if new_grid_w > grid_w:
        raise ValueError(f"{new_grid_w} time columns asked of a {grid_w}-column embedding")
    grid = pos_embed.reshape(1, grid_h, grid_w, dim)[:, :, :new_grid_w]
    return grid.reshape(1, grid_h * new_grid_w, dim)
