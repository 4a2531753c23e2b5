"""Multi-head self-attention of the CAV-MAE blocks, choosing its kernel per call.

The parameters and their names (``qkv``, ``proj``) are those of timm's ViT attention, so
checkpoints are unchanged. What differs is the kernel: PyTorch's fused
``scaled_dot_product_attention`` (flash, memory-efficient or cuDNN kernels on GPUs) is used on
accelerators and for long sequences, while on the CPU sequences of at most
``explicit_max_tokens_cpu`` tokens use the explicit softmax(q k^T / sqrt(d)) v. CAV-MAE's
masked streams are short (128 audio, 49 visual, 177 joint tokens at 75 % masking), and for
such lengths PyTorch's CPU flash kernel is several times slower than the explicit product:
forward + backward of one layer, batch 4, 12 heads of 64, bf16 autocast, 2 cores: 49 tokens
4.6 ms vs 1.0 ms, 128 tokens 12.6 vs 2.5 ms, 177 tokens 16.7 vs 4.7 ms, 512 tokens 67.5 vs
46.8 ms. Longer sequences (the 708-token decoder) keep the fused kernel, which does not store
the ``[tokens, tokens]`` attention matrix for the backward pass.

Authors
 * speechbrain-cavmae contributors 2026
"""

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused or explicit kernel chosen per call.

    Arguments
    ---------
    dim : int
        Token size.
    num_heads : int
        Attention heads (``dim`` must be divisible by it).
    qkv_bias : bool
        Bias on the query/key/value projection.
    attn_drop : float
        Dropout on the attention weights.
    proj_drop : float
        Dropout after the output projection.

    Attributes
    ----------
    fused_attn : bool
        Allow the fused kernel (``False``: always the explicit computation).
    explicit_max_tokens_cpu : int
        On the CPU, sequences up to this length use the explicit computation (0: never).

    Example
    -------
    >>> attn = SelfAttention(32, num_heads=4)
    >>> x = torch.randn(2, 10, 32)
    >>> attn(x).shape
    torch.Size([2, 10, 32])
    >>> keep = torch.ones(2, 1, 1, 10, dtype=torch.bool)
    >>> torch.allclose(attn(x, attn_mask=keep), attn(x), atol=1e-6)
    True
    """

    explicit_max_tokens_cpu = 512

    def __init__(self, dim, num_heads=8, qkv_bias=False, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused_attn = True
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def use_fused(self, x):
        """Whether the call on ``x`` ``[batch, tokens, dim]`` uses the fused kernel."""
        if not self.fused_attn:
            return False
        return x.device.type != "cpu" or x.shape[1] > self.explicit_max_tokens_cpu

    def forward(self, x, attn_mask=None, is_causal=False):
        """Attend over ``x`` ``[batch, tokens, dim]``.

        ``attn_mask`` and ``is_causal`` follow ``scaled_dot_product_attention``: the mask is
        boolean (``True`` = may attend) or additive, broadcastable to
        ``[batch, heads, tokens, tokens]``.
        """
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.use_fused(x):
            x = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                dropout_p=self.attn_drop.p if self.training else 0.0,
            )
        else:
            if is_causal:
                attn_mask = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
            attn = (q * self.scale) @ k.transpose(-2, -1)
            if attn_mask is not None:
                if attn_mask.dtype == torch.bool:
                    attn = attn.masked_fill(~attn_mask, float("-inf"))
                else:
                    attn = attn + attn_mask
            x = self.attn_drop(attn.softmax(dim=-1)) @ v
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


def set_attention_kernel(module, kernel):
    """Choose the attention kernel of every :class:`SelfAttention` in ``module``.

    ``kernel``: ``"dispatch"`` (the default: fused, except short sequences on the CPU),
    ``"fused"`` (always the fused kernel) or ``"explicit"`` (never).

    Example
    -------
    >>> attn = SelfAttention(32, 4)
    >>> _ = set_attention_kernel(attn, "fused")
    >>> attn.use_fused(torch.zeros(1, 10, 32))
    True
    """
    if kernel not in ("dispatch", "fused", "explicit"):
        raise ValueError(f"kernel must be dispatch, fused or explicit, got {kernel!r}")
    for m in module.modules():
        if isinstance(m, SelfAttention):
            m.fused_attn = kernel != "explicit"
            m.explicit_max_tokens_cpu = (
                SelfAttention.explicit_max_tokens_cpu if kernel == "dispatch" else 0
            )
    return module
