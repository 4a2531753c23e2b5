"""Load the original CAV-MAE model code from a local checkout, for side-by-side timing.

The original ``src/models/cav_mae.py`` no longer runs on current libraries: it builds timm
0.4.5's ``Attention(..., qk_scale=...)`` and its positional embedding uses ``numpy.float``.
This module gives the imported original module (not timm) an attention class with timm 0.4.5's
computation: the explicit math of the release, PyTorch's fused kernel, or our per-call choice
(:func:`speechbrain_cavmae.model.attention.prefers_fused`); it also provides
``numpy.float`` for its positional-embedding helper. Nothing of the original is copied here:
pass the path of your own checkout (``git clone`` of YuanGongND/cav-mae) as ``src``.

Use it only inside a benchmark process: the original's constructor itself replaces classes in
``timm.models.vision_transformer``.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_cavmae.model.attention import SelfAttention, explicit_attention, prefers_fused


class ReleaseAttention(nn.Module):
    """Multi-head self-attention computed as timm 0.4.5 did (``kernel="math"``), with
    PyTorch's fused kernel (``"fused"``), or with our per-call choice (``"dispatch"``, see
    :func:`speechbrain_cavmae.model.attention.prefers_fused`)."""

    def __init__(self, dim, num_heads=8, qkv_bias=False, qk_scale=None, attn_drop=0.0,
                 proj_drop=0.0, kernel="math"):
        super().__init__()
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.kernel = kernel

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.kernel == "math":
            out = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1) @ v
        elif prefers_fused(self.kernel, q):
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = explicit_attention(q, k, v, scale=self.scale,
                                     chunk_elements=SelfAttention.chunk_elements)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


def load_original_module(src, attention="math"):
    """Import ``<src>/models/cav_mae.py`` (``src`` is the checkout's ``src`` folder).

    Arguments
    ---------
    src : str or Path
        The ``src`` folder of a cav-mae checkout.
    attention : str
        Kernel of every attention layer the original builds (see :class:`ReleaseAttention`):
        ``"math"`` (as released), ``"fused"`` or ``"dispatch"``.

    Returns
    -------
    module
        The original module, with ``CAVMAE`` and ``CAVMAEFT``.
    """
    if attention not in ("math", "fused", "dispatch"):
        raise ValueError(f"attention must be math, fused or dispatch, got {attention!r}")
    src = Path(src)
    path = src / "models" / "cav_mae.py"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: pass the 'src' folder of a cav-mae checkout")
    if not hasattr(np, "float"):
        np.float = float  # the original's pos_embed.py uses the removed alias
    sys.path.insert(0, str(src))
    try:
        spec = importlib.util.spec_from_file_location("models.cav_mae", path,
                                                      submodule_search_locations=None)
        pkg_spec = importlib.util.spec_from_file_location(
            "models", src / "models" / "__init__.py", submodule_search_locations=[str(src / "models")]
        )
        pkg = importlib.util.module_from_spec(pkg_spec)
        sys.modules.setdefault("models", pkg)
        module = importlib.util.module_from_spec(spec)
        sys.modules["models.cav_mae"] = module
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(src))

    def build_attention(*args, **kwargs):
        return ReleaseAttention(*args, kernel=attention, **kwargs)

    module.Attention = build_attention
    return module


def original_pretrain_step_fn(module, batch, device, **model_kwargs):
    """Build the original pretraining model and a closure computing its training loss."""
    model = module.CAVMAE(norm_pix_loss=True, **model_kwargs).to(device)

    def loss_fn(audio, image):
        return model(audio, image, 0.75, 0.75, mae_loss_weight=1.0, contrast_loss_weight=0.01)[0]

    return model, loss_fn


def quiet(fn, *args, **kwargs):
    """Run ``fn`` with the original's construction prints sent to /dev/null."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


__all__ = ["ReleaseAttention", "load_original_module", "original_pretrain_step_fn", "quiet",
           "torch"]
