"""Transformer blocks of CAV-MAE.

Modality-specific branches and the decoder use timm's plain pre-norm ViT block. The shared
block is the same computation with three sets of LayerNorms (joint, audio, visual), one set
selected per call, so the same attention and MLP weights serve the joint stream and both
single-modality streams. In both, the attention is
:class:`~speechbrain_cavmae.model.attention.SelfAttention` (timm's parameters, with the kernel
chosen per call).

Authors
 * speechbrain-cavmae contributors 2026
"""

import torch
from timm.models.vision_transformer import Block

from speechbrain_cavmae.model.attention import SelfAttention


def vit_block(dim, num_heads, mlp_ratio=4.0, qkv_bias=True, drop_path=0.0):
    """A pre-norm ViT block as in the original (``nn.LayerNorm`` with eps 1e-5, GELU MLP).

    Example
    -------
    >>> blk = vit_block(32, 4)
    >>> blk(torch.randn(2, 5, 32)).shape
    torch.Size([2, 5, 32])
    """
    block = Block(
        dim,
        num_heads,
        mlp_ratio=mlp_ratio,
        qkv_bias=qkv_bias,
        drop_path=drop_path,
        norm_layer=torch.nn.LayerNorm,
    )
    block.attn = SelfAttention(dim, num_heads, qkv_bias=qkv_bias)
    return block


class SharedBlock(Block):
    """ViT block with separate LayerNorms for the joint, audio-only and visual-only streams.

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
        super().__init__(
            dim,
            num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop_path=drop_path,
            norm_layer=torch.nn.LayerNorm,
        )
        unknown = [m for m in modalities if m not in self.MODALITIES]
        if unknown or not modalities:
            raise ValueError(f"modalities must be a non-empty subset of {self.MODALITIES}, "
                             f"got {modalities!r}")
        self.modalities = tuple(m for m in self.MODALITIES if m in modalities)
        self.attn = SelfAttention(dim, num_heads, qkv_bias=qkv_bias)
        if None not in self.modalities:  # timm's Block made the joint norms: not used here
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
