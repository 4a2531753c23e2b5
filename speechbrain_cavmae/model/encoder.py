"""The CAV-MAE encoder: modality-specific ViT branches followed by a shared block.

:class:`CAVMAEEncoder` holds everything; :class:`AudioStreamEncoder` and
:class:`VisualStreamEncoder` hold one single-modality stream each and
:class:`JointStreamEncoder` the joint stream (same code, same parameter names, see
:class:`StreamEncoder`), for uses that never run the other streams.

Audio fbank ``[batch, frames, 128]`` and RGB frames ``[batch, 3, H, W]`` are patch-embedded,
given fixed 2-D sin-cos positional embeddings and learned modality embeddings, then run through
``modality_specific_depth`` blocks of their own branch. The shared part (``shared_depth``
blocks) is run three times with its own LayerNorms each time:

* joint stream: the concatenated ``[audio; visual]`` tokens, final norm ``norm``;
* audio-only stream: audio tokens, LayerNorms ``*_a``, final norm ``norm_a``;
* visual-only stream: visual tokens, LayerNorms ``*_v``, final norm ``norm_v``.

Parameter names follow the original implementation so that released checkpoints map 1:1.

CAV-MAE Sync (Araujo et al., CVPR 2025) is the same encoder with options (all off: CAV-MAE):
``num_register_tokens`` learned register tokens appended to each stream before its branch
(dropped after it, or kept through the shared blocks with ``registers_in_shared``),
``global_tokens`` (a learned global token prepended to each stream, kept out of the joint
stream) and ``contrastive_heads`` (two plain ViT blocks after the shared blocks on each
single-modality stream). See ``docs/sync.md``.

Authors
 * speechbrain-cavmae contributors 2026
"""

import torch
from torch import nn

from speechbrain_cavmae.model.block import SharedBlock, vit_block
from speechbrain_cavmae.model.masking import random_masking, structured_noise
from speechbrain_cavmae.model.modes import get_mode
from speechbrain_cavmae.model.patch_embed import AUDIO_LENGTH, AudioPatchEmbed, ImagePatchEmbed
from speechbrain_cavmae.model.pos_embed import (
    first_time_columns,
    resize_time_pos_embed,
    sincos_2d,
)


#: Final LayerNorm of each stream (``None``: joint).
STREAM_NORMS = {None: "norm", "a": "norm_a", "v": "norm_v"}


class StreamEncoder(nn.Module):
    """The parts of the CAV-MAE encoder for a chosen set of streams, built one way.

    :class:`CAVMAEEncoder` (both modalities and the joint stream),
    :class:`AudioStreamEncoder` (the audio-only stream) and :class:`VisualStreamEncoder`
    (the visual-only stream) are this module with ``STREAMS`` set: each holds only the
    parameters of its streams, under the names of the full encoder (so a half's state
    dict is a subset of the full one's), and they share the embedding, branch, shared-block
    and initialisation code below.

    Arguments
    ---------
    img_size : int
        Frame side in pixels (visual streams).
    audio_length : int
        Frames of the fbank input (multiple of ``patch_size``; audio streams).
    n_mels : int
        Mel bins of the fbank input.
    patch_size : int
        Patch side for both modalities.
    in_chans : int
        Image channels.
    embed_dim : int
        Token size.
    modality_specific_depth : int
        Blocks in each modality branch.
    shared_depth : int
        Blocks in the shared part.
    num_heads : int
        Attention heads.
    mlp_ratio : float
        MLP hidden size relative to ``embed_dim``.
    qkv_bias : bool
        Bias on the attention input projection.
    drop_path_rate : float
        Stochastic depth, increasing linearly over the depth of each path.
    trainable_pos_embed : bool
        Whether the sin-cos positional embeddings are trained (the original fine-tuning does).
    num_register_tokens : int
        Sync: register tokens per modality (0: none).
    registers_in_shared : bool
        Sync: keep the registers through the shared blocks and contrastive heads (dropped
        before the final norm); otherwise they are dropped after the modality branches.
        Required (not ``None``) when there are registers: it is not stored in weights.
    global_tokens : bool
        Sync: a learned global token per modality, first in its stream, normed by the
        stream's final norm and returned apart (see :meth:`forward_single`).
    contrastive_heads : bool
        Sync: two ViT blocks on each single-modality stream after the shared blocks.
    """

    #: Streams held: a subset of ``(None, "a", "v")`` (``None``: the joint stream).
    STREAMS = (None, "a", "v")

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
        num_register_tokens=0,
        registers_in_shared=False,
        global_tokens=False,
        contrastive_heads=False,
    ):
        super().__init__()
        if num_register_tokens and registers_in_shared is None:
            raise ValueError(
                "registers_in_shared is not stored in the weights: pass registers_in_shared="
                "True or False (cavmae convert: --registers_in_shared or "
                "--no_registers_in_shared), as the model was trained (their "
                "keep_register_tokens; their retrieval code uses False)")
        self.embed_dim = embed_dim
        self.num_register_tokens = int(num_register_tokens)
        self.registers_in_shared = bool(registers_in_shared) and self.num_register_tokens > 0
        self.global_tokens = bool(global_tokens)
        self.patch_size = patch_size
        # modalities: the branches held ("a", "v"); registration order as the original's
        self.modalities = tuple(m for m in ("a", "v")
                                if m in self.STREAMS or None in self.STREAMS)
        has = self.modalities
        if "a" in has:
            self.patch_embed_a = AudioPatchEmbed(n_mels, audio_length, patch_size, embed_dim)
        if "v" in has:
            self.patch_embed_v = ImagePatchEmbed(img_size, patch_size, in_chans, embed_dim)
        for m in has:
            setattr(self, f"modality_{m}", nn.Parameter(torch.zeros(1, 1, embed_dim)))
        for m in has:
            patches = getattr(self, f"patch_embed_{m}").num_patches
            setattr(self, f"pos_embed_{m}", nn.Parameter(
                torch.zeros(1, patches, embed_dim), requires_grad=trainable_pos_embed))
        depth = modality_specific_depth + shared_depth
        dpr = torch.linspace(0, drop_path_rate, depth).tolist()
        for m in has:
            setattr(self, f"blocks_{m}", nn.ModuleList(
                vit_block(embed_dim, num_heads, mlp_ratio, qkv_bias, dpr[i])
                for i in range(modality_specific_depth)
            ))
        self.blocks_u = nn.ModuleList(
            SharedBlock(embed_dim, num_heads, mlp_ratio, qkv_bias,
                        dpr[modality_specific_depth + i], modalities=self.STREAMS)
            for i in range(shared_depth)
        )
        for stream in ("a", "v", None):
            if stream in self.STREAMS:
                setattr(self, STREAM_NORMS[stream], nn.LayerNorm(embed_dim))
        if self.num_register_tokens:
            # [audio registers; visual registers], one table as in the Sync release
            self.register_tokens = nn.Parameter(
                torch.zeros(2 * self.num_register_tokens, embed_dim))
        if self.global_tokens:
            for m in has:
                setattr(self, f"cls_token_{m}", nn.Parameter(torch.zeros(1, 1, embed_dim)))
        self.contrastive_heads = bool(contrastive_heads)
        for m in (m for m in ("a", "v") if contrastive_heads and m in self.STREAMS):
            setattr(self, f"contrastive_head_{m}", nn.ModuleList(
                vit_block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(2)))
        self.reset_parameters()

    # ------------------------------------------------------------------ set-up
    @property
    def audio_grid(self):
        """``(frequency rows, time columns)`` of the audio patch grid."""
        return self.patch_embed_a.grid_size

    @property
    def image_grid(self):
        """``(rows, columns)`` of the image patch grid."""
        return self.patch_embed_v.grid_size

    @property
    def audio_length(self):
        """Nominal number of fbank frames."""
        return self.audio_grid[1] * self.patch_size

    def reset_parameters(self):
        """Initialise as the original: sin-cos positions, xavier linears, N(0, 0.02) tokens."""
        grids = {"a": lambda: self.audio_grid, "v": lambda: self.image_grid}
        with torch.no_grad():
            for m in self.modalities:
                pos = getattr(self, f"pos_embed_{m}")
                pos.copy_(sincos_2d(self.embed_dim, *grids[m]()).unsqueeze(0))
        for m in self.modalities:
            w = getattr(self, f"patch_embed_{m}").proj.weight.data
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        for m in self.modalities:
            nn.init.normal_(getattr(self, f"modality_{m}"), std=0.02)
            if self.global_tokens:
                nn.init.normal_(getattr(self, f"cls_token_{m}"), std=0.02)
        if self.num_register_tokens:
            nn.init.normal_(self.register_tokens)  # N(0, 1), as the Sync release
        self.apply(init_linear_and_norm)

    def sync_options(self):
        """The Sync options of this encoder (constructor arguments; all off: CAV-MAE)."""
        return {"num_register_tokens": self.num_register_tokens,
                "registers_in_shared": self.registers_in_shared,
                "global_tokens": self.global_tokens,
                "contrastive_heads": self.contrastive_heads}

    @property
    def has_special_tokens(self):
        """Whether the streams carry register or global tokens besides the patches."""
        return bool(self.num_register_tokens or self.global_tokens)

    def resize_audio_length(self, audio_length):
        """Change the nominal audio length, interpolating the positional embedding in time.

        Arguments
        ---------
        audio_length : int
            New number of fbank frames (multiple of ``patch_size``).
        """
        if audio_length % self.patch_size:
            raise ValueError(f"audio_length={audio_length} is not a multiple of {self.patch_size}")
        rows = self.audio_grid[0]
        new_pos = resize_time_pos_embed(self.pos_embed_a.data, rows, audio_length // self.patch_size)
        self.pos_embed_a = nn.Parameter(new_pos, requires_grad=self.pos_embed_a.requires_grad)
        n_mels = self.patch_embed_a.n_mels
        self.patch_embed_a.img_size = (n_mels, audio_length)
        self.patch_embed_a.grid_size = (rows, audio_length // self.patch_size)
        self.patch_embed_a.num_patches = rows * (audio_length // self.patch_size)

    # ---------------------------------------------------------------- embedding
    def embed_audio(self, audio, time_positions="interpolate"):
        """``[batch, frames, n_mels]`` fbank -> ``[batch, La, dim]`` tokens with embeddings.

        Arguments
        ---------
        audio : torch.Tensor
            Fbank; any multiple of ``patch_size`` frames.
        time_positions : str
            For an input of another length than the nominal one: ``"interpolate"`` (the
            positional embedding interpolated along time), or ``"first"`` (shorter inputs
            only: the embedding's first time columns, i.e. the tokens of the input padded
            to the nominal length without those of the padding; with the padding masked
            out of attention the outputs are the same, see ``short_audio="pad"`` in
            :mod:`speechbrain_cavmae.lobes`).
        """
        x = self.patch_embed_a(audio)
        pos = self.pos_embed_a
        if x.shape[1] != pos.shape[1]:
            rows = self.audio_grid[0]
            if time_positions == "first":
                pos = first_time_columns(pos, rows, x.shape[1] // rows)
            elif time_positions == "interpolate":
                pos = resize_time_pos_embed(pos, rows, x.shape[1] // rows)
            else:
                raise ValueError(f"time_positions={time_positions!r}; expected 'interpolate' "
                                 "or 'first'")
        return x + pos + self.modality_a

    def embed_visual(self, image):
        """``[batch, 3, H, W]`` frames -> ``[batch, Lv, dim]`` tokens with embeddings."""
        return self.patch_embed_v(image) + self.pos_embed_v + self.modality_v

    # ------------------------------------------------------------------ streams
    def add_special_tokens(self, x, modality):
        """Sync: ``[batch, L, dim]`` -> ``[batch, g + L + R, dim]``, the global token
        (``g`` = 1 with ``global_tokens``) first and the ``R`` registers of ``modality`` last.
        Identity for CAV-MAE."""
        if not self.has_special_tokens:
            return x
        batch = x.shape[0]
        parts = [x]
        if self.global_tokens:
            parts.insert(0, getattr(self, f"cls_token_{modality}").to(x.dtype)
                         .expand(batch, -1, -1))
        if self.num_register_tokens:
            r = self.num_register_tokens
            first = 0 if modality == "a" else r
            regs = self.register_tokens[first:first + r].to(x.dtype)
            parts.append(regs.unsqueeze(0).expand(batch, -1, -1))
        return torch.cat(parts, dim=1)

    def _branch(self, x, modality, attn_mask=None):
        """Special tokens added, the branch's blocks, registers dropped unless kept."""
        if attn_mask is not None and self.has_special_tokens:
            raise ValueError("attention masks (padded short audio) are not supported with "
                             "register or global tokens")
        x = self.add_special_tokens(x, modality)
        for blk in getattr(self, f"blocks_{modality}"):
            x = blk(x) if attn_mask is None else blk(x, attn_mask=attn_mask)
        if self.num_register_tokens and not self.registers_in_shared:
            x = x[:, :-self.num_register_tokens]
        return x

    def forward_audio_branch(self, x, attn_mask=None):
        """Run audio tokens ``[batch, L, dim]`` through the audio-specific blocks.

        With Sync options the output is ``[global] + L tokens + [registers]`` (registers
        only with ``registers_in_shared``): feed it to :meth:`forward_single` /
        :meth:`forward_joint`, which know the layout.
        """
        return self._branch(x, "a", attn_mask)

    def forward_visual_branch(self, x):
        """Run visual tokens ``[batch, L, dim]`` through the visual-specific blocks (same
        layout as :meth:`forward_audio_branch`)."""
        return self._branch(x, "v")

    def forward_shared(self, x, modality=None, attn_mask=None):
        """Run branch tokens through the shared part of ``modality``'s stream.

        Arguments
        ---------
        x : torch.Tensor
            ``[batch, L, dim]``: one branch's output (or, joint stream of CAV-MAE, the
            concatenated outputs of both).
        modality : str, optional
            ``None`` (joint stream), ``"a"`` or ``"v"`` (one of ``STREAMS``).
        attn_mask : torch.Tensor, optional
            Boolean attention mask broadcastable to ``[batch, heads, L, L]`` (True = attend).

        Returns
        -------
        torch.Tensor
            ``[batch, L, dim]`` after the stream's final norm: the shared blocks and the
            norm for CAV-MAE; with Sync options the patch tokens only
            (:meth:`forward_single`'s tokens, :meth:`joint_stream` of one part).
        """
        if modality is None:
            return self.joint_stream([x], attn_mask=attn_mask)
        return self.forward_single(x, modality, attn_mask=attn_mask)[0]

    def shared_blocks(self, x, modality=None, attn_mask=None):
        """The shared blocks with the LayerNorms of ``modality``, without the final norm."""
        if modality not in self.STREAMS:
            raise ValueError(f"{type(self).__name__} holds the streams {self.STREAMS}, "
                             f"not {modality!r}")
        for blk in self.blocks_u:
            x = blk(x, modality, attn_mask=attn_mask)
        return x

    def forward_single(self, x, modality, attn_mask=None):
        """A single-modality stream after its branch: shared blocks, contrastive head (if
        any), registers dropped, final norm of ``modality``.

        Arguments
        ---------
        x : torch.Tensor
            Output of the modality's branch (:meth:`forward_audio_branch` layout).
        modality : str
            ``"a"`` or ``"v"``.
        attn_mask : torch.Tensor, optional
            See :meth:`forward_shared` (CAV-MAE only).

        Returns
        -------
        tuple
            ``(tokens [batch, L, dim], global [batch, dim] or None)``: the normed patch
            tokens and, with ``global_tokens``, the normed global token.
        """
        x = self.shared_blocks(x, modality, attn_mask)
        for blk in getattr(self, f"contrastive_head_{modality}", ()):
            x = blk(x)
        if self.registers_in_shared:
            x = x[:, :-self.num_register_tokens]
        x = getattr(self, STREAM_NORMS[modality])(x)
        if self.global_tokens:
            return x[:, 1:], x[:, 0]
        return x, None

    def joint_stream(self, parts, attn_mask=None):
        """Branch outputs (a list, audio first) without their global tokens, concatenated,
        through the shared blocks and ``norm``, registers dropped -> ``[batch, sum L, dim]``.
        """
        g = int(self.global_tokens)
        r = self.num_register_tokens if self.registers_in_shared else 0
        x = self.shared_blocks(torch.cat([p[:, g:] for p in parts], dim=1), attn_mask=attn_mask)
        x = self.norm(x)
        if not r:
            return x
        kept, start = [], 0
        for part in parts:
            n = part.shape[1] - g - r
            kept.append(x[:, start:start + n])
            start += n + r
        return torch.cat(kept, dim=1)

    def encode_single(self, modality, inputs, attn_mask=None, time_positions="interpolate"):
        """Unmasked single-modality stream of ``inputs`` -> ``(tokens, global or None)``
        (see :meth:`forward_single`)."""
        if modality == "a":
            x = self.forward_audio_branch(self.embed_audio(inputs, time_positions),
                                          attn_mask=attn_mask)
        else:
            x = self.forward_visual_branch(self.embed_visual(inputs))
        return self.forward_single(x, modality, attn_mask=attn_mask)

    def encode_audio(self, audio, attn_mask=None, time_positions="interpolate"):
        """Unmasked audio-only stream: ``[batch, frames, n_mels]`` -> ``[batch, La, dim]``
        (``time_positions``: see :meth:`embed_audio`)."""
        return self.encode_single("a", audio, attn_mask, time_positions)[0]

    def encode_visual(self, image):
        """Unmasked visual-only stream: ``[batch, 3, H, W]`` -> ``[batch, Lv, dim]``."""
        return self.encode_single("v", image)[0]


class AudioStreamEncoder(StreamEncoder):
    """The audio-only stream of the CAV-MAE encoder and nothing else: audio patch and
    positional embeddings, modality embedding, audio blocks, the shared blocks with their
    audio LayerNorms and ``norm_a``. Its outputs equal
    :meth:`CAVMAEEncoder.encode_audio` for the same weights; every parameter is used.
    Takes :class:`StreamEncoder`'s arguments (``img_size`` and ``in_chans`` are unused).

    Example
    -------
    >>> enc = AudioStreamEncoder(audio_length=64, embed_dim=32, modality_specific_depth=1,
    ...                          num_heads=4)
    >>> enc.encode_audio(torch.randn(2, 64, 128)).shape
    torch.Size([2, 32, 32])
    >>> hasattr(enc, "blocks_v"), hasattr(enc.blocks_u[0], "norm1")
    (False, False)
    """

    STREAMS = ("a",)


class VisualStreamEncoder(StreamEncoder):
    """The visual-only stream of the CAV-MAE encoder and nothing else (the visual
    counterpart of :class:`AudioStreamEncoder`; ``audio_length`` and ``n_mels`` unused).

    Example
    -------
    >>> enc = VisualStreamEncoder(img_size=32, embed_dim=32, modality_specific_depth=1,
    ...                           num_heads=4)
    >>> enc.encode_visual(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 4, 32])
    """

    STREAMS = ("v",)


class JointStreamEncoder(StreamEncoder):
    """Both modality branches and the joint stream (shared blocks with the joint
    LayerNorms, ``norm``), without the single-modality norms: what the multimodal
    classifier runs.

    Example
    -------
    >>> enc = JointStreamEncoder(img_size=32, audio_length=64, embed_dim=32,
    ...                          modality_specific_depth=1, num_heads=4)
    >>> a = enc.forward_audio_branch(enc.embed_audio(torch.randn(2, 64, 128)))
    >>> v = enc.forward_visual_branch(enc.embed_visual(torch.randn(2, 3, 32, 32)))
    >>> enc.forward_shared(torch.cat([a, v], dim=1)).shape
    torch.Size([2, 36, 32])
    """

    STREAMS = (None,)


class CAVMAEEncoder(StreamEncoder):
    """Audio-visual encoder shared by the pretraining model and the classifier: both
    modality branches, the shared blocks with all three sets of LayerNorms and the three
    final norms (see :class:`StreamEncoder` for the arguments).

    Example
    -------
    >>> enc = CAVMAEEncoder(img_size=32, audio_length=64, embed_dim=32,
    ...                     modality_specific_depth=1, num_heads=4)
    >>> a, v = enc.encode(torch.randn(2, 64, 128), torch.randn(2, 3, 32, 32))
    >>> a.shape, v.shape
    (torch.Size([2, 32, 32]), torch.Size([2, 4, 32]))
    """

    STREAMS = (None, "a", "v")

    def forward_joint(self, a, v, attn_mask=None):
        """The joint stream: audio ``[batch, La, dim]`` and visual ``[batch, Lv, dim]``
        tokens (after their branches), concatenated in that order, through the shared
        blocks and ``norm`` -> ``[batch, La + Lv, dim]``. The one place the two streams meet
        (Sync: global tokens stay out, kept registers are dropped after ``norm``).
        """
        return self.joint_stream([a, v], attn_mask=attn_mask)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        audio,
        image,
        mask_ratio_a=0.0,
        mask_ratio_v=0.0,
        mask_mode="unstructured",
        noise_a=None,
        noise_v=None,
        single_streams=True,
    ):
        """Masked encoding for pretraining.

        Arguments
        ---------
        audio : torch.Tensor
            ``[batch, frames, n_mels]`` fbank.
        image : torch.Tensor
            ``[batch, 3, H, W]`` frames.
        mask_ratio_a, mask_ratio_v : float
            Fraction of audio / visual tokens dropped.
        mask_mode : str
            Audio mask: ``"unstructured"``, ``"time"``, ``"freq"`` or ``"tf"`` (visual is
            always unstructured).
        noise_a, noise_v : torch.Tensor, optional
            Masking noise ``[batch, La]`` / ``[batch, Lv]``; lowest-noise tokens are kept.
        single_streams : bool
            Also run the audio-only and visual-only passes (skip them when no contrastive
            objective uses them; ``audio`` and ``visual`` are then None).

        Returns
        -------
        dict
            ``joint`` ``[batch, Ka + Kv, dim]`` (joint stream after ``norm``),
            ``audio`` ``[batch, Ka, dim]`` and ``visual`` ``[batch, Kv, dim]`` (single-modality
            streams after ``norm_a`` / ``norm_v``), ``mask_a`` ``[batch, La]`` and ``mask_v``
            ``[batch, Lv]`` (1 = masked), ``ids_restore_a``, ``ids_restore_v``, ``num_kept_a``;
            with ``global_tokens`` also ``global_a`` / ``global_v`` ``[batch, dim]`` (None
            without the single streams).
        """
        a = self.embed_audio(audio)
        v = self.embed_visual(image)
        if mask_mode != "unstructured":
            rows = self.audio_grid[0]
            cols = a.shape[1] // rows
            noise_a = structured_noise(a.shape[0], rows, cols, mask_ratio_a, mask_mode,
                                       noise=noise_a, device=a.device)
        a, mask_a, ids_restore_a = random_masking(a, mask_ratio_a, noise_a)
        v, mask_v, ids_restore_v = random_masking(v, mask_ratio_v, noise_v)
        num_kept_a = a.shape[1]
        a = self.forward_audio_branch(a)
        v = self.forward_visual_branch(v)
        joint = self.forward_joint(a, v)
        (tokens_a, global_a), (tokens_v, global_v) = (
            (self.forward_single(a, "a"), self.forward_single(v, "v")) if single_streams
            else ((None, None), (None, None)))
        out = {"global_a": global_a, "global_v": global_v} if self.global_tokens else {}
        return {
            **out,
            "joint": joint,
            "num_kept_a": num_kept_a,
            "audio": tokens_a,
            "visual": tokens_v,
            "mask_a": mask_a,
            "mask_v": mask_v,
            "ids_restore_a": ids_restore_a,
            "ids_restore_v": ids_restore_v,
        }

    def encode(self, audio=None, image=None):
        """Unmasked single-modality token sequences after their final norms.

        Either input may be ``None``; the matching outputs are then ``None``.

        Returns
        -------
        tuple
            ``(audio_tokens [batch, La, dim], visual_tokens [batch, Lv, dim])``, and with
            ``global_tokens`` also ``global_a``, ``global_v`` ``[batch, dim]`` (the order of
            the Sync release's ``forward_feat``).
        """
        a, ga = self.encode_single("a", audio) if audio is not None else (None, None)
        v, gv = self.encode_single("v", image) if image is not None else (None, None)
        return (a, v, ga, gv) if self.global_tokens else (a, v)

    def forward_frames_branch(self, frames):
        """Frames ``[batch, n, 3, H, W]`` through the visual branch as one batch of
        ``batch * n`` images -> ``[batch, n, Lv, dim]``."""
        v = self.forward_visual_branch(self.embed_visual(frames.flatten(0, 1)))
        return v.unflatten(0, frames.shape[:2])

    def pool_branches(self, a, v, mode="multimodal"):
        """The shared part of ``mode`` over branch tokens, frame by frame, mean-pooled.

        Each frame's visual tokens meet the audio tokens of their clip in
        :meth:`forward_joint` (the audio tokens are repeated over the frames, not recomputed).

        Arguments
        ---------
        a : torch.Tensor or None
            ``[batch, La, dim]`` audio tokens after their branch.
        v : torch.Tensor or None
            ``[batch, n, Lv, dim]`` visual tokens after their branch.
        mode : str
            One of the five modes.

        Returns
        -------
        torch.Tensor
            ``[batch, n, dim]`` (``n = 1`` when ``mode`` reads no frames).
        """
        mode = get_mode(mode)
        n = v.shape[1] if mode.visual else 1
        if mode.visual:
            v = v.flatten(0, 1)
        if mode.audio and mode.visual:  # each clip's tokens for each of its frames
            a = a.unsqueeze(1).expand(-1, n, -1, -1).flatten(0, 1)
        if mode.stream is None:
            pooled = self.forward_joint(a, v).mean(dim=1)
        else:
            x = a if mode.stream == "a" else v
            pooled = self.forward_shared(x, mode.stream).mean(dim=1)
            if mode.with_joint:
                pooled = (self.forward_shared(x).mean(dim=1) + pooled) / 2
        return pooled.unflatten(0, (-1, n))

    def pool_frames(self, audio=None, frames=None, mode="multimodal", on_step=None):
        """Mean-pooled representation of each frame of each clip, in one of the five modes:
        the same as :meth:`pool` frame by frame, with each clip's audio branch run once and
        its frames as one batch.

        Arguments
        ---------
        audio : torch.Tensor, optional
            ``[batch, frames, n_mels]`` fbank.
        frames : torch.Tensor, optional
            ``[batch, n, 3, H, W]``.
        mode : str
            One of the five modes.
        on_step : callable, optional
            Called with ``"audio"``, ``"frames"`` and ``"join"`` as each part is done
            (the first two only when ``mode`` reads that input), for progress reports.

        Returns
        -------
        torch.Tensor
            ``[batch, n, dim]`` (``n = 1`` when ``mode`` reads no frames).

        Example
        -------
        >>> enc = CAVMAEEncoder(img_size=32, audio_length=64, embed_dim=32,
        ...                     modality_specific_depth=1, num_heads=4)
        >>> enc.pool_frames(torch.randn(2, 64, 128), torch.randn(2, 3, 3, 32, 32)).shape
        torch.Size([2, 3, 32])
        """
        mode = get_mode(mode)
        for needed, tensor, name in ((mode.audio, audio, "audio"), (mode.visual, frames, "image")):
            if needed and tensor is None:
                raise ValueError(f"mode {mode.name!r} needs the {name} input")
        step = on_step or (lambda name: None)
        a = v = None
        if mode.audio:
            a = self.forward_audio_branch(self.embed_audio(audio))
            step("audio")
        if mode.visual:
            v = self.forward_frames_branch(frames)
            step("frames")
        pooled = self.pool_branches(a, v, mode.name)
        step("join")
        return pooled

    def pool(self, audio=None, image=None, mode="multimodal"):
        """Unmasked, mean-pooled representation ``[batch, dim]`` in one of the five modes
        (:mod:`~speechbrain_cavmae.model.modes`), as the original classifier pools it.

        Example
        -------
        >>> enc = CAVMAEEncoder(img_size=32, audio_length=64, embed_dim=32,
        ...                     modality_specific_depth=1, num_heads=4)
        >>> enc.pool(torch.randn(2, 64, 128), None, "missingaudioonly").shape
        torch.Size([2, 32])
        """
        frames = image.unsqueeze(1) if image is not None else None
        return self.pool_frames(audio, frames, mode)[:, 0]


def init_linear_and_norm(module):
    """Xavier-uniform linear weights with zero bias; LayerNorm to identity (as the original)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


#: The encoder module of each half (see ``checkpoints.loader.HALVES``).
ENCODERS = {None: CAVMAEEncoder, "audio": AudioStreamEncoder, "visual": VisualStreamEncoder,
            "joint": JointStreamEncoder}
