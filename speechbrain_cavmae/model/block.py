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

    Example
    -------
    >>> blk = SharedBlock(32, 4)
    >>> x = torch.randn(2, 5, 32)
    >>> blk(x, modality="a").shape
    torch.Size([2, 5, 32])
    """

    MODALITIES = (None, "a", "v")

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, drop_path=0.0):
        super().__init__(
            dim,
            num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop_path=drop_path,
            norm_layer=torch.nn.LayerNorm,
        )
        self.attn = SelfAttention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm1_a = torch.nn.LayerNorm(dim)
        self.norm1_v = torch.nn.LayerNorm(dim)
        self.norm2_a = torch.nn.LayerNorm(dim)
        self.norm2_v = torch.nn.LayerNorm(dim)

    def norms(self, modality):
        """The (pre-attention, pre-MLP) LayerNorm pair for ``modality`` (None, 'a' or 'v')."""
        if modality is None:
            return self.norm1, self.norm2
        if modality == "a":
            return self.norm1_a, self.norm2_a
        if modality == "v":
            return self.norm1_v, self.norm2_v
        raise ValueError(f"modality must be one of {self.MODALITIES}, got {modality!r}")

    def forward(self, x, modality=None, attn_mask=None):
        """Apply the block to ``x`` ``[batch, tokens, dim]`` with the norms of ``modality``."""
        norm1, norm2 = self.norms(modality)
        x = x + self.drop_path1(self.ls1(self.attn(norm1(x), attn_mask=attn_mask)))
        x = x + self.drop_path2(self.ls2(self.mlp(norm2(x))))
        return x
