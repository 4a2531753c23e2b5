"""The CAV-MAE pretraining model: masked encoder + decoder, with contrastive representations.

Authors
 * speechbrain-cavmae contributors 2026
"""

from torch import nn

from speechbrain_cavmae.model.decoder import CAVMAEDecoder
from speechbrain_cavmae.model.encoder import CAVMAEEncoder
from speechbrain_cavmae.model.masking import draw_mask_ratios
from speechbrain_cavmae.model.patch_embed import AUDIO_LENGTH
from speechbrain_cavmae.model.patchify import patchify_audio, patchify_image

#: The CAV-MAE Sync options of :class:`CAVMAE` and their values for CAV-MAE (all off).
SYNC_DEFAULTS = {"num_register_tokens": 0, "registers_in_shared": False,
                 "global_tokens": False, "contrastive_heads": False,
                 "global_local_loss": False, "num_frames": 1,
                 "multi_ratio_masking": False, "mask_ratio_seed": 0}


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
    num_register_tokens, registers_in_shared, global_tokens, contrastive_heads
        CAV-MAE Sync encoder options, see
        :class:`~speechbrain_cavmae.model.encoder.CAVMAEEncoder` (all off: CAV-MAE).
    global_local_loss : bool
        Sync with ``global_tokens``: the contrastive loss is the mean of the loss on the
        global tokens and the loss on the mean local tokens (else the global tokens' only);
        see :meth:`contrastive_representations`. Not stored in weights: required (not
        ``None``) with global tokens.
    num_frames : int
        Frames per clip, each paired with the audio segment around it (Sync: 16; 1: CAV-MAE,
        one frame with the clip's audio). Recorded for the data pipeline; not stored in
        weights.
    multi_ratio_masking : bool
        Sync: in training mode each forward draws its audio and visual masking ratios in
        0.6-0.9 (:func:`~speechbrain_cavmae.model.masking.draw_mask_ratios` of
        ``mask_ratio_seed`` and the step counter ``mask_ratio_step``, the same on every DDP
        process), ignoring ``mask_ratio_a`` / ``mask_ratio_v``; eval mode uses them.
    mask_ratio_seed : int
        Seed of the multi-ratio draws.

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
        num_register_tokens=0,
        registers_in_shared=False,
        global_tokens=False,
        contrastive_heads=False,
        global_local_loss=False,
        num_frames=1,
        multi_ratio_masking=False,
        mask_ratio_seed=0,
    ):
        super().__init__()
        if num_frames is None:
            raise ValueError("num_frames (frames per clip, 16 for the Sync release) is not "
                             "stored in the weights: pass num_frames= (cavmae convert: "
                             "--n_frames)")
        if global_tokens and global_local_loss is None:
            raise ValueError("global_local_loss is not stored in the weights: pass "
                             "global_local_loss=True or False (cavmae convert: "
                             "--global_local_loss or --no_global_local_loss)")
        self.global_local_loss = bool(global_tokens and global_local_loss)
        self.num_frames = int(num_frames)
        self.multi_ratio_masking = bool(multi_ratio_masking)
        self.mask_ratio_seed = int(mask_ratio_seed)
        #: Training forwards run so far (the step of the multi-ratio draws; set it on resume).
        self.mask_ratio_step = 0
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
            num_register_tokens=num_register_tokens,
            registers_in_shared=registers_in_shared,
            global_tokens=global_tokens,
            contrastive_heads=contrastive_heads,
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

    def sync_options(self):
        """The CAV-MAE Sync constructor arguments of this model, ``{}`` when none is on
        (a plain CAV-MAE records nothing more than before)."""
        opts = dict(self.encoder.sync_options(), global_local_loss=self.global_local_loss,
                    num_frames=self.num_frames, multi_ratio_masking=self.multi_ratio_masking,
                    mask_ratio_seed=self.mask_ratio_seed)
        return opts if opts != SYNC_DEFAULTS else {}

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
            ``tokens_v`` (single-modality streams), ``ids_restore_a``, ``ids_restore_v``;
            with ``global_tokens`` (and ``contrastive``) also ``cls_a``, ``cls_v``
            ``[batch, dim]``, the global tokens after their stream's final norm (``rep_*``
            is then the mean of the normed patch tokens, without the global token).
        """
        if self.multi_ratio_masking and self.training:
            mask_ratio_a, mask_ratio_v = draw_mask_ratios(self.mask_ratio_seed,
                                                          self.mask_ratio_step)
            self.mask_ratio_step += 1
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
            if self.encoder.global_tokens:
                out.update(cls_a=enc["global_a"], cls_v=enc["global_v"])
        if decode:
            out["pred_a"], out["pred_v"] = self.decoder(
                enc["joint"], enc["ids_restore_a"], enc["ids_restore_v"], enc["num_kept_a"]
            )
        return out

    def contrastive_representations(self, out):
        """The ``(audio, visual)`` representation pairs whose contrastive losses are
        averaged into the contrastive objective, from :meth:`forward`'s output: the mean
        tokens (CAV-MAE); with global tokens the global ones, and with
        ``global_local_loss`` both (global first), as the Sync release combines them.

        Example
        -------
        >>> import torch
        >>> model = CAVMAE(img_size=32, audio_length=64, embed_dim=32, num_heads=4,
        ...                modality_specific_depth=1, decoder_embed_dim=16, decoder_depth=1,
        ...                decoder_num_heads=2, global_tokens=True, global_local_loss=True)
        >>> out = model(torch.randn(2, 64, 128), torch.randn(2, 3, 32, 32))
        >>> [a.shape for a, v in model.contrastive_representations(out)]
        [torch.Size([2, 32]), torch.Size([2, 32])]
        """
        local = (out["rep_a"], out["rep_v"])
        if not self.encoder.global_tokens:
            return [local]
        pairs = [(out["cls_a"], out["cls_v"])]
        return pairs + [local] if self.global_local_loss else pairs

    def encode(self, audio=None, image=None):
        """Unmasked audio-only and visual-only token sequences (see ``CAVMAEEncoder.encode``;
        with global tokens also the normed global tokens, as the Sync ``forward_feat``)."""
        return self.encoder.encode(audio, image)
