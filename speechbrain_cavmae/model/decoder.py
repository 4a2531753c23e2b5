"""The CAV-MAE decoder: reconstructs every audio and visual patch from the joint stream.

Authors
 * speechbrain-cavmae contributors 2026
"""

import torch
from torch import nn

from speechbrain_cavmae.model.block import vit_block
from speechbrain_cavmae.model.encoder import init_linear_and_norm
from speechbrain_cavmae.model.pos_embed import resize_time_pos_embed, sincos_2d


def unshuffle(kept, ids_restore, mask_token):
    """Append mask tokens to the kept tokens and restore the original token order.

    Arguments
    ---------
    kept : torch.Tensor
        ``[batch, K, dim]`` kept tokens in masking order.
    ids_restore : torch.Tensor
        ``[batch, L]`` from :func:`~speechbrain_cavmae.model.masking.random_masking`.
    mask_token : torch.Tensor
        ``[1, 1, dim]``.

    Returns
    -------
    torch.Tensor
        ``[batch, L, dim]``.

    Example
    -------
    >>> from speechbrain_cavmae.model.masking import random_masking
    >>> x = torch.randn(2, 8, 4)
    >>> kept, mask, ids = random_masking(x, 0.5)
    >>> full = unshuffle(kept, ids, torch.zeros(1, 1, 4))
    >>> bool(torch.equal(full[mask == 0], x[mask == 0]))
    True
    """
    batch, length = ids_restore.shape
    fill = mask_token.to(kept.dtype).expand(batch, length - kept.shape[1], -1)
    full = torch.cat([kept, fill], dim=1)
    return torch.gather(full, 1, ids_restore.unsqueeze(-1).expand(-1, -1, kept.shape[2]))


class CAVMAEDecoder(nn.Module):
    """Lightweight transformer decoder with separate audio and visual prediction heads.

    Arguments
    ---------
    audio_grid : tuple
        ``(frequency rows, time columns)`` of the audio patch grid.
    image_grid : tuple
        ``(rows, columns)`` of the image patch grid.
    embed_dim : int
        Encoder token size.
    decoder_embed_dim : int
        Decoder token size.
    decoder_depth : int
        Decoder blocks.
    decoder_num_heads : int
        Decoder attention heads.
    mlp_ratio : float
        MLP hidden size relative to ``decoder_embed_dim``.
    patch_size : int
        Patch side.
    in_chans : int
        Image channels.
    trainable_pos_embed : bool
        Whether the sin-cos positional embeddings are trained.

    Example
    -------
    >>> dec = CAVMAEDecoder((8, 4), (2, 2), embed_dim=32, decoder_embed_dim=16,
    ...                     decoder_depth=1, decoder_num_heads=2)
    >>> ids_a = torch.arange(32).repeat(2, 1)
    >>> ids_v = torch.arange(4).repeat(2, 1)
    >>> pred_a, pred_v = dec(torch.randn(2, 32 + 4, 32), ids_a, ids_v, num_kept_a=32)
    >>> pred_a.shape, pred_v.shape
    (torch.Size([2, 32, 256]), torch.Size([2, 4, 768]))
    """

    def __init__(
        self,
        audio_grid,
        image_grid,
        embed_dim=768,
        decoder_embed_dim=512,
        decoder_depth=8,
        decoder_num_heads=16,
        mlp_ratio=4.0,
        patch_size=16,
        in_chans=3,
        trainable_pos_embed=False,
    ):
        super().__init__()
        self.audio_grid = tuple(audio_grid)
        self.image_grid = tuple(image_grid)
        n_a = self.audio_grid[0] * self.audio_grid[1]
        n_v = self.image_grid[0] * self.image_grid[1]
        self.embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.modality_a = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.modality_v = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.pos_embed_a = nn.Parameter(
            torch.zeros(1, n_a, decoder_embed_dim), requires_grad=trainable_pos_embed
        )
        self.pos_embed_v = nn.Parameter(
            torch.zeros(1, n_v, decoder_embed_dim), requires_grad=trainable_pos_embed
        )
        self.blocks = nn.ModuleList(
            vit_block(decoder_embed_dim, decoder_num_heads, mlp_ratio) for _ in range(decoder_depth)
        )
        self.norm = nn.LayerNorm(decoder_embed_dim)
        self.pred_a = nn.Linear(decoder_embed_dim, patch_size**2)
        self.pred_v = nn.Linear(decoder_embed_dim, patch_size**2 * in_chans)
        self.reset_parameters()

    def reset_parameters(self):
        """Initialise as the original decoder."""
        dim = self.embed.out_features
        with torch.no_grad():
            self.pos_embed_a.copy_(sincos_2d(dim, *self.audio_grid).unsqueeze(0))
            self.pos_embed_v.copy_(sincos_2d(dim, *self.image_grid).unsqueeze(0))
        for token in (self.mask_token, self.modality_a, self.modality_v):
            nn.init.normal_(token, std=0.02)
        self.apply(init_linear_and_norm)

    def pos_embeddings(self, n_a):
        """Audio and visual positional embeddings, the audio one resized to ``n_a`` tokens."""
        pos_a = self.pos_embed_a
        if pos_a.shape[1] != n_a:
            rows = self.audio_grid[0]
            pos_a = resize_time_pos_embed(pos_a, rows, n_a // rows)
        return pos_a, self.pos_embed_v

    def forward(self, latent, ids_restore_a, ids_restore_v, num_kept_a):
        """Predict all patches from the kept joint tokens.

        Arguments
        ---------
        latent : torch.Tensor
            ``[batch, Ka + Kv, embed_dim]`` joint-stream tokens (kept audio then kept visual).
        ids_restore_a : torch.Tensor
            ``[batch, La]``.
        ids_restore_v : torch.Tensor
            ``[batch, Lv]``.
        num_kept_a : int
            ``Ka``, the number of kept audio tokens.

        Returns
        -------
        tuple
            ``pred_a [batch, La, p*p]`` and ``pred_v [batch, Lv, p*p*3]``.
        """
        n_a = ids_restore_a.shape[1]
        x = self.embed(latent)
        a = unshuffle(x[:, :num_kept_a], ids_restore_a, self.mask_token)
        v = unshuffle(x[:, num_kept_a:], ids_restore_v, self.mask_token)
        pos_a, pos_v = self.pos_embeddings(n_a)
        x = torch.cat([a + pos_a + self.modality_a, v + pos_v + self.modality_v], dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return self.pred_a(x[:, :n_a]), self.pred_v(x[:, n_a:])
