"""Transformer blocks of CAV-MAE.

Modality-specific branches and the decoder use a plain pre-norm ViT block (timm's
``Block``: the same parameters, names and computation). The shared block is the same
computation with three sets of LayerNorms (joint, audio, visual), one set selected per
call, so the same attention and MLP weights serve the joint stream and both
single-modality streams. In both, the attention is
:class:`~speechbrain_cavmae.model.attention.SelfAttention` (timm's parameters, with the kernel
chosen per call).

The blocks are this module's own classes, built from timm's layers taken from the modules
that define them (``timm.layers.mlp``, ``timm.layers.drop``), not from
``timm.models.vision_transformer``: the original CAV-MAE code replaces
``timm.models.vision_transformer.Block`` (and ``PatchEmbed``) with its own classes when one
of its models is built, and a process that built one first (a parity check) must still
build this package's models unchanged.

Authors
 * speechbrain-cavmae contributors 2026
"""

import torch
from timm.layers.drop import DropPath
from timm.layers.mlp import Mlp

from speechbrain_cavmae.model.attention import SelfAttention


class Block(torch.nn.Module):
    """Pre-norm ViT block as in the original (``nn.LayerNorm`` with eps 1e-5, GELU MLP),
    with timm's ``Block`` parameter names (``norm1``, ``attn``, ``norm2``, ``mlp``).

    Arguments
    ---------
    dim : int
        Token size.
    num_heads : int
        Attention heads.
    mlp_ratio : float
        Hidden size of the MLP relative to ``dim``.
    qkv_bias : bool
        Bias on the query/key/value projection.
    drop_path : float
        Stochastic depth rate.

    Example
    -------
    >>> Block(32, 4)(torch.randn(2, 5, 32)).shape
    torch.Size([2, 5, 32])
    """

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, drop_path=0.0):
        super().__init__()
        self.norm1 = torch.nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, num_heads, qkv_bias=qkv_bias)
        self.ls1 = torch.nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0.0 else torch.nn.Identity()
        self.norm2 = torch.nn.LayerNorm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio),
                       act_layer=torch.nn.GELU)
        self.ls2 = torch.nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0.0 else torch.nn.Identity()

    def forward(self, x, attn_mask=None):
        """Apply the block to ``x`` ``[batch, tokens, dim]``."""
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask)))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x


def vit_block(dim, num_heads, mlp_ratio=4.0, qkv_bias=True, drop_path=0.0):
    """A pre-norm ViT block as in the original (see :class:`Block`).

    Example
    -------
    >>> blk = vit_block(32, 4)
    >>> blk(torch.randn(2, 5, 32)).shape
    torch.Size([2, 5, 32])
    """
    return Block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=drop_path)


class SharedBlock(Block):
    """ViT block with separate LayerNorms for the joint, audio-only and visual-only streams.

    Arguments
    ---------
    dim, num_heads, mlp_ratio, qkv_bias, drop_path
        As :class:`Block`.
    modalities : tuple
        The streams whose LayerNorms the block holds (``None``: joint, ``"a"``, ``"v"``);
        the audio-only encoder keeps ``("a",)`` so that it has no unused parameters.

    Example
    -------
    >>> blk = SharedBlock(32, 4)
    >>> x = torch.randn(2, 5, 32)
    >>> blk(x, modality="a").shape
    torch.Size([2, 5, 32])
    >>> sorted(n for n, _ in SharedBlock(32, 4, modalities=("a",)).named_children())
    ['attn', 'drop_path1', 'drop_path2', 'ls1', 'ls2', 'mlp', 'norm1_a', 'norm2_a']
    """

    MODALITIES = (None, "a", "v")

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, drop_path=0.0,
                 modalities=MODALITIES):
        super().__init__(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                         drop_path=drop_path)
        unknown = [m for m in modalities if m not in self.MODALITIES]
        if unknown or not modalities:
            raise ValueError(f"modalities must be a non-empty subset of {self.MODALITIES}, "
                             f"got {modalities!r}")
        self.modalities = tuple(m for m in self.MODALITIES if m in modalities)
        if None not in self.modalities:  # Block made the joint norms: not used here
            del self.norm1, self.norm2
        for name in ("norm1", "norm2"):
            for modality in ("a", "v"):
                if modality in self.modalities:
                    setattr(self, f"{name}_{modality}", torch.nn.LayerNorm(dim))

    def norms(self, modality):
        """The (pre-attention, pre-MLP) LayerNorm pair for ``modality`` (None, 'a' or 'v')."""
        if modality not in self.modalities:
            raise ValueError(f"modality must be one of {self.modalities} (the streams this "
                             f"block holds norms for), got {modality!r}")
        suffix = "" if modality is None else f"_{modality}"
        return getattr(self, "norm1" + suffix), getattr(self, "norm2" + suffix)

    def forward(self, x, modality=None, attn_mask=None):
        """Apply the block to ``x`` ``[batch, tokens, dim]`` with the norms of ``modality``."""
        norm1, norm2 = self.norms(modality)
        x = x + self.drop_path1(self.ls1(self.attn(norm1(x), attn_mask=attn_mask)))
        x = x + self.drop_path2(self.ls2(self.mlp(norm2(x))))
        return x
