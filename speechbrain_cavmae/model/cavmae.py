"""The CAV-MAE pretraining model: masked encoder + decoder, with contrastive representations.

Authors
 * speechbrain-cavmae contributors 2026
"""

from torch import nn

from speechbrain_cavmae.model.decoder import CAVMAEDecoder
from speechbrain_cavmae.model.encoder import CAVMAEEncoder
from speechbrain_cavmae.model.patch_embed import AUDIO_LENGTH
from speechbrain_cavmae.model.patchify import patchify_audio, patchify_image


class CAVMAE(nn.Module):
    """Contrastive Audio-Visual Masked Autoencoder for self-supervised pretraining.

    The forward pass returns everything the two objectives need; the losses themselves live
    in :mod:`speechbrain_cavmae.losses` and their weights in the recipe's hparams.

    Arguments
    ---------
    img_size, audio_length, n_mels, patch_size, in_chans, embed_dim, modality_specific_depth,
    shared_depth, num_heads, mlp_ratio, qkv_bias, drop_path_rate, trainable_pos_embed
        Encoder settings, see :class:`~speechbrain_cavmae.model.encoder.CAVMAEEncoder`.
    decoder_embed_dim, decoder_depth, decoder_num_heads
        Decoder settings, see :class:`~speechbrain_cavmae.model.decoder.CAVMAEDecoder`.

    Example
    -------
    >>> import torch
    >>> model = CAVMAE(img_size=32, audio_length=64, embed_dim=32, modality_specific_depth=1,
    ...                num_heads=4, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    >>> out = model(torch.randn(2, 64, 128), torch.randn(2, 3, 32, 32))
    >>> out["pred_a"].shape, out["pred_v"].shape, out["rep_a"].shape
    (torch.Size([2, 32, 256]), torch.Size([2, 4, 768]), torch.Size([2, 32]))
    """

    def __init__(
        self,
        img_size=224,
        audio_length=AUDIO_LENGTH,
        n_mels=128,
        patch_size=16,
        in_chans=3,
        embed_dim=768,
        modality_specific_depth=11,
        shared_depth=1,
        num_heads=12,
        mlp_ratio=4.0,
        qkv_bias=True,
        drop_path_rate=0.0,
        trainable_pos_embed=False,
        decoder_embed_dim=512,
        decoder_depth=8,
        decoder_num_heads=16,
    ):
        super().__init__()
        self.encoder = CAVMAEEncoder(
            img_size=img_size,
            audio_length=audio_length,
            n_mels=n_mels,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            modality_specific_depth=modality_specific_depth,
            shared_depth=shared_depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop_path_rate=drop_path_rate,
            trainable_pos_embed=trainable_pos_embed,
        )
        self.decoder = CAVMAEDecoder(
            self.encoder.audio_grid,
            self.encoder.image_grid,
            embed_dim=embed_dim,
            decoder_embed_dim=decoder_embed_dim,
            decoder_depth=decoder_depth,
            decoder_num_heads=decoder_num_heads,
            mlp_ratio=mlp_ratio,
            patch_size=patch_size,
            in_chans=in_chans,
            trainable_pos_embed=trainable_pos_embed,
        )
        self.patch_size = patch_size

    def forward(
        self,
        audio,
        image,
        mask_ratio_a=0.75,
        mask_ratio_v=0.75,
        mask_mode="unstructured",
        noise_a=None,
        noise_v=None,
        decode=True,
        contrastive=True,
    ):
        """Mask, encode, and (optionally) reconstruct.

        Arguments
        ---------
        audio : torch.Tensor
            ``[batch, frames, n_mels]`` normalised fbank.
        image : torch.Tensor
            ``[batch, 3, H, W]`` normalised frames.
        mask_ratio_a, mask_ratio_v : float
            Masking ratios.
        mask_mode : str
            Audio masking: ``"unstructured"``, ``"time"``, ``"freq"`` or ``"tf"``.
        noise_a, noise_v : torch.Tensor, optional
            Masking noise ``[batch, La]`` / ``[batch, Lv]`` (lowest noise is kept).
        decode : bool
            Run the decoder (skip it for a contrastive-only objective).
        contrastive : bool
            Run the audio-only and visual-only passes (skip them for an MAE-only objective;
            ``rep_*`` and ``tokens_*`` are then absent).

        Returns
        -------
        dict
            ``pred_a [batch, La, p*p]``, ``pred_v [batch, Lv, p*p*3]`` (absent when
            ``decode=False``), ``target_a``, ``target_v`` (patchified inputs), ``mask_a``,
            ``mask_v`` (1 = masked), ``rep_a``, ``rep_v`` ``[batch, dim]`` (mean-pooled
            audio-only / visual-only streams), ``latent`` (joint stream), ``tokens_a``,
            ``tokens_v`` (single-modality streams), ``ids_restore_a``, ``ids_restore_v``.
        """
        enc = self.encoder(audio, image, mask_ratio_a, mask_ratio_v, mask_mode, noise_a, noise_v,
                           single_streams=contrastive)
        out = {
            "target_a": patchify_audio(audio, self.patch_size),
            "target_v": patchify_image(image, self.patch_size),
            "mask_a": enc["mask_a"],
            "mask_v": enc["mask_v"],
            "latent": enc["joint"],
            "ids_restore_a": enc["ids_restore_a"],
            "ids_restore_v": enc["ids_restore_v"],
        }
        if contrastive:
            out.update(tokens_a=enc["audio"], tokens_v=enc["visual"],
                       rep_a=enc["audio"].mean(dim=1), rep_v=enc["visual"].mean(dim=1))
        if decode:
            out["pred_a"], out["pred_v"] = self.decoder(
                enc["joint"], enc["ids_restore_a"], enc["ids_restore_v"], enc["num_kept_a"]
            )
        return out

    def encode(self, audio=None, image=None):
        """Unmasked audio-only and visual-only token sequences (see ``CAVMAEEncoder.encode``)."""
        return self.encoder.encode(audio, image)
