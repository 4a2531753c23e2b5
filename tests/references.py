"""Reference computations written independently of the package, for value checks."""

import torch


def linear_time_resize(pos_embed, rows, new_cols):
    """Reference written out index by index: each of the ``rows`` frequency rows is resampled
    along time with half-pixel-centred linear interpolation (source position
    ``(j + 0.5) * cols / new_cols - 0.5``, clamped to the first and last column), in float64."""
    grid = pos_embed.double().reshape(rows, -1, pos_embed.shape[-1])
    cols = grid.shape[1]
    out = torch.empty(rows, new_cols, grid.shape[-1], dtype=torch.float64)
    for j in range(new_cols):
        src = min(max((j + 0.5) * cols / new_cols - 0.5, 0.0), cols - 1.0)
        left = int(src)
        right = min(left + 1, cols - 1)
        frac = src - left
        out[:, j] = (1.0 - frac) * grid[:, left] + frac * grid[:, right]
    return out.reshape(1, rows * new_cols, -1).float()
