"""Multi-head self-attention of the CAV-MAE blocks, choosing its kernel per call.

The parameters and their names (``qkv``, ``proj``) are those of timm's ViT attention, so
checkpoints are unchanged. What differs is the kernel. On accelerators, PyTorch's fused
``scaled_dot_product_attention`` (flash, memory-efficient or cuDNN kernels). On the CPU in
reduced precision (bf16 autocast), PyTorch's fused kernel is the slow choice for CAV-MAE's
shapes, so the explicit softmax(q k^T / sqrt(d)) v is computed instead, split over batch items
and heads so that each piece's ``[tokens, tokens]`` weights stay in the cache. In float32
the fused kernel is the faster one and stores less, so float32 keeps it. The explicit path
keeps the attention weights for the backward pass (PyTorch's fused kernel does not), so a
training call whose weights would exceed ``explicit_max_elements_cpu`` elements
(``batch * heads * tokens^2``, 128 Mi = 256 MiB in bf16 per layer) falls back to the fused
kernel. The explicit path rounds the attention scores to bf16 before the softmax (as the
original's attention under autocast does; PyTorch's fused kernel keeps them in float32), so
its error against float32 is about twice the fused kernel's or more. Measurements (per-layer
timing and the bf16 error: ``python -m benchmarks.attention_layers``; the whole model:
``python -m benchmarks.run``) and their recorded files: ``docs/performance.md``.
``set_attention_kernel(model, "fused")`` trades the speed for the fused kernel's precision.

Authors
 * speechbrain-cavmae contributors 2026
"""

import torch
import torch.nn.functional as F
from torch import nn

KERNELS = ("dispatch", "fused", "explicit")


def explicit_attention(q, k, v, attn_mask=None, is_causal=False, dropout_p=0.0, scale=None,
                       chunk_elements=2**22):
    """softmax(q k^T * scale + mask) v, computed in pieces of at most ``chunk_elements``
    attention weights.

    Arguments
    ---------
    q, k, v : torch.Tensor
        ``[batch, heads, tokens, head_dim]`` (any strides).
    attn_mask : torch.Tensor, optional
        Boolean (``True`` = may attend) or additive, broadcastable to
        ``[batch, heads, tokens, tokens]``.
    is_causal : bool
        Attend only to earlier tokens and the token itself.
    dropout_p : float
        Dropout on the attention weights.
    scale : float, optional
        Default ``head_dim ** -0.5``.
    chunk_elements : int
        Work on groups of heads (or of whole batch items) whose attention weights hold at
        most this many elements; the whole batch at once when it fits.

    Returns
    -------
    torch.Tensor
        ``[batch, heads, tokens, head_dim]``.

    Example
    -------
    >>> q, k, v = torch.randn(3, 2, 4, 5, 8).unbind(0)
    >>> ref = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    >>> torch.allclose(explicit_attention(q, k, v, chunk_elements=16), ref, atol=1e-6)
    True
    """
    b, h, n, _ = q.shape
    m = k.shape[2]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if is_causal:
        attn_mask = torch.ones(n, m, dtype=torch.bool, device=q.device).tril()
    if attn_mask is not None:
        attn_mask = attn_mask.expand(b, h, n, m)

    def attend(sel):
        attn = (q[sel] * scale) @ k[sel].transpose(-2, -1)
        if attn_mask is not None:
            mask = attn_mask[sel]
            if mask.dtype == torch.bool:
                attn = attn.masked_fill(~mask, float("-inf"))
            else:
                attn = attn + mask
        attn = attn.softmax(dim=-1)
        if dropout_p:
            attn = F.dropout(attn, dropout_p)
        return attn @ v[sel]

    per_head = n * m
    if b * h * per_head <= chunk_elements:
        return attend((slice(None),))
    heads = max(1, chunk_elements // per_head)
    if heads >= h:  # whole batch items per piece
        items = heads // h
        return torch.cat([attend((slice(i, i + items),)) for i in range(0, b, items)])
    return torch.cat([
        torch.cat([attend((slice(i, i + 1), slice(j, j + heads))) for j in range(0, h, heads)],
                  dim=1)
        for i in range(b)
    ])


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
    kernel : str
        ``"dispatch"`` (default, see :func:`prefers_fused`), ``"fused"`` or ``"explicit"``;
        see :func:`set_attention_kernel`.
    explicit_max_elements_cpu : int
        On the CPU with gradients enabled, reduced-precision calls whose attention weights
        (``batch * heads * tokens^2``) exceed this use the fused kernel.
    chunk_elements : int
        Size of the pieces of the explicit computation (see :func:`explicit_attention`).

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

    explicit_max_elements_cpu = 2**27
    chunk_elements = 2**22

    def __init__(self, dim, num_heads=8, qkv_bias=False, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.kernel = "dispatch"
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def use_fused(self, q):
        """Whether queries ``q`` ``[batch, heads, tokens, head_dim]`` go to the fused kernel."""
        return prefers_fused(self.kernel, q, self.explicit_max_elements_cpu)

    def forward(self, x, attn_mask=None, is_causal=False):
        """Attend over ``x`` ``[batch, tokens, dim]``.

        ``attn_mask`` and ``is_causal`` follow ``scaled_dot_product_attention``: the mask is
        boolean (``True`` = may attend) or additive, broadcastable to
        ``[batch, heads, tokens, tokens]``.
        """
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        dropout_p = self.attn_drop.p if self.training else 0.0
        if self.use_fused(q):
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                               is_causal=is_causal, dropout_p=dropout_p)
        else:
            x = explicit_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                                   dropout_p=dropout_p, scale=self.scale,
                                   chunk_elements=self.chunk_elements)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


def prefers_fused(kernel, q, explicit_max_elements_cpu=None):
    """The kernel choice of :class:`SelfAttention` for queries ``q``
    ``[batch, heads, tokens, head_dim]`` (in the dtype the kernel would get).

    ``"fused"`` and ``"explicit"`` are taken as they are. ``"dispatch"``: fused on
    accelerators and in float32; on the CPU in bf16 or fp16 explicit, unless gradients are
    enabled and the attention weights kept for the backward pass
    (``batch * heads * tokens^2``) exceed ``explicit_max_elements_cpu`` (default:
    ``SelfAttention.explicit_max_elements_cpu``).

    Example
    -------
    >>> q = torch.zeros(4, 16, 708, 32, dtype=torch.bfloat16)
    >>> prefers_fused("dispatch", q), prefers_fused("dispatch", q.float())
    (False, True)
    >>> prefers_fused("dispatch", q[:1].expand(512, -1, -1, -1))  # weights too big to keep
    True
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if kernel != "dispatch":
        return kernel == "fused"
    if q.device.type != "cpu" or q.dtype not in (torch.bfloat16, torch.float16):
        return True
    if explicit_max_elements_cpu is None:
        explicit_max_elements_cpu = SelfAttention.explicit_max_elements_cpu
    b, h, n = q.shape[:3]
    return torch.is_grad_enabled() and b * h * n * n > explicit_max_elements_cpu


def set_attention_kernel(module, kernel):
    """Choose the attention kernel of every :class:`SelfAttention` in ``module``.

    ``kernel``: ``"dispatch"`` (the default: fused on accelerators and in float32, explicit
    on the CPU in bf16, see :func:`prefers_fused`), ``"fused"`` (always PyTorch's fused
    kernel) or ``"explicit"`` (never).

    Example
    -------
    >>> attn = SelfAttention(32, 4)
    >>> _ = set_attention_kernel(attn, "fused")
    >>> attn.use_fused(torch.zeros(1, 4, 10, 8, dtype=torch.bfloat16))
    True
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    for m in module.modules():
        if isinstance(m, SelfAttention):
            m.kernel = kernel
    return module
