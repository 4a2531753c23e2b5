"""CAV-MAE encoders as drop-in SpeechBrain lobes.

Three modules wrap the CAV-MAE encoder (:mod:`speechbrain_cavmae.model.encoder`) with the
calling convention of SpeechBrain's embedding models (``embedding_model(x)`` or
``embedding_model(x, lens)``, output ``[batch, 1, dim]`` for a classifier such as
``ECAPA_TDNN.Classifier`` or a ``torch.nn.Linear``):

* :class:`CAVMAEAudioEncoder`: audio-only stream (audio branch, shared block with the
  audio LayerNorms, ``norm_a``), holding only those parameters
  (:class:`~speechbrain_cavmae.model.encoder.AudioStreamEncoder`);
* :class:`CAVMAEVisualEncoder`: visual-only stream, holding only its parameters;
* :class:`CAVMAEJointEncoder`: joint stream over the concatenated ``[audio; visual]``
  tokens (shared block with the joint LayerNorms, ``norm``), as the multimodal classifier;
  it holds both branches and the joint stream's parameters.

Every trainable parameter of each encoder gets a gradient, so that SpeechBrain's ``Brain``
can wrap them in ``DistributedDataParallel`` without ``find_unused_parameters``. The
output width is ``output_dim`` (also ``embed_dim``, ``output_size``); with ``ckpt_path`` it
is the checkpoint's, and a different ``embed_dim`` (the integration yamls' ``emb_dim``) is a
:class:`~speechbrain_cavmae.checkpoints.loader.SizeMismatchError` naming that key.

Audio input
-----------
``x`` is either waveforms ``[batch, samples]`` at 16 kHz (the encoder then computes the
Kaldi-compatible 128-bin log-mel fbank of the original with
:class:`~speechbrain_cavmae.data.fbank.KaldiFbank`, normalised with the dataset mean/std)
or features ``[batch, frames, 128]`` from the recipe's front end. Feature inputs must have
128 mel bins; ``feature_norm`` says how they are normalised (``"none"``: already CAV-MAE
normalised, e.g. KaldiFbank output; ``"dataset"``: raw Kaldi log-mel, apply
``(x - dataset_mean) / dataset_std``; ``"utterance"``: standardise each utterance over its
valid frames, the choice for other front ends such as ``speechbrain.lobes.features.Fbank``).

The model was pretrained on ``audio_length = 1024`` frames (10.24 s). Other lengths:

* ``short_audio="pad"`` (default, as the original): as if padded to ``audio_length``
  frames, the positions of the real frames kept. With ``mask_padding`` the padding beyond
  the input's own length (rounded up to a whole patch) is not computed: the shorter
  input takes the first time columns of the positional embedding, and since the padding
  is masked out of attention its tokens are those of the input padded to
  ``audio_length`` (tested); without ``mask_padding`` it is padded to ``audio_length``;
  ``short_audio="interpolate"``: pad only to the next multiple of 16 frames and interpolate
  the positional embedding along time to that length;
* ``long_audio="crop"`` (default, as the original): keep the first ``audio_length``
  frames; ``long_audio="window"``: cut into consecutive ``audio_length``-frame windows
  (the last one padded), encode them separately and concatenate their tokens (pooling
  averages over all valid tokens); ``long_audio="interpolate"``: encode all frames at once
  with the positional embedding interpolated along time.

With ``mask_padding=True`` (default) the patches that only cover padding (added here, or
marked by ``lens``) are removed from the attention keys and from the mean pooling, so a
5 s clip padded to 1024 frames gives the same embedding whatever the padding. With
``mask_padding=False`` the padding is attended to and averaged, as in the original.

Output
------
``pooling="mean"``: ``[batch, 1, dim]`` mean over valid tokens; ``pooling="time"``:
``[batch, time_patches, dim]`` averaged over the frequency bands, one step per 16 frames
of the input (rounded up; a 1 s clip gives 7 steps, at most ``audio_length / 16`` with
``long_audio="crop"``; with ``"window"`` the windows' steps up to the input's end), so that the relative lengths ``lens`` still apply to it;
``pooling="none"``: all tokens ``[batch, tokens, dim]`` in the model's (frequency-major)
order. With ``mask_padding=False`` and ``short_audio="pad"`` the padding is part of the
signal and the output always has ``audio_length / 16`` steps.

Authors
 * speechbrain-cavmae contributors 2026
"""

import logging
import math

import torch
from torch import nn

from speechbrain_cavmae.model.encoder import ENCODERS
from speechbrain_cavmae.model.patch_embed import AUDIO_LENGTH
from speechbrain_cavmae.data.fbank import DEFAULT_MEAN, DEFAULT_STD, KaldiFbank
from speechbrain_cavmae.checkpoints import Loaded, load
from speechbrain_cavmae.checkpoints.loader import ENCODER_ARGS, check_heads

logger = logging.getLogger(__name__)

LONG_AUDIO = ("crop", "window", "interpolate")
SHORT_AUDIO = ("pad", "interpolate")
POOLING = ("mean", "time", "none")
FEATURE_NORM = ("none", "dataset", "utterance")

#: The integration yamls' keys for the encoder sizes, named in size errors.
HPARAMS_KEYS = {"embed_dim": "emb_dim", "modality_specific_depth": "cavmae_depth",
                "num_heads": "cavmae_num_heads"}
#: Sizes of a randomly initialised encoder when not given (ViT-B, as the released models).
SCRATCH_DEFAULTS = {"embed_dim": 768, "modality_specific_depth": 11}


def default_heads(embed_dim):
    """Attention heads of a randomly initialised encoder of width ``embed_dim`` when none
    are given: the largest divisor of ``embed_dim`` not above ``embed_dim // 64`` (64-wide
    heads as ViT-B), at least 1.

    Example
    -------
    >>> default_heads(768), default_heads(256), default_heads(32)
    (12, 4, 1)
    """
    top = max(1, embed_dim // 64)
    return max(h for h in range(1, top + 1) if embed_dim % h == 0)


def load_encoder(ckpt_path=None, audio_length=None, num_heads=None, map_location="cpu",
                 half=None, names=None, **encoder_kwargs):
    """Build the encoder (or one half) from a checkpoint, or randomly initialised.

    Arguments
    ---------
    ckpt_path : str, optional
        A model folder (``hyperparams.yaml`` + ``model.ckpt``, which records the heads;
        checked against the model-folder schema), a SpeechBrain checkpoint folder
        (``CKPT+...``: its ``model.ckpt``, else the one ``*.ckpt`` file holding CAV-MAE
        weights, e.g. ``embedding_model.ckpt``), an original CAV-MAE checkpoint
        (pretrained or fine-tuned ``.pth``) or a state dict saved from this package;
        loaded by
        :func:`speechbrain_cavmae.checkpoints.load` (``part=``). Only the encoder weights
        are kept. ``None``: random initialisation with ``encoder_kwargs``.
    audio_length : int, optional
        Nominal number of fbank frames; with a checkpoint, the audio positional embedding
        is interpolated along time when it differs from the checkpoint's.
    num_heads : int, optional
        Attention heads: not stored in weights, so required for a ``.pth`` whose width is
        not the released 768 (12 heads); a model folder records them.
    map_location : str
        Passed to ``torch.load``.
    half : str, optional
        ``"audio"``, ``"visual"``, ``"joint"`` or ``None`` (the whole encoder); see
        :func:`~speechbrain_cavmae.checkpoints.load`'s ``part``.
    names : dict, optional
        Names of the size arguments in errors (e.g. :data:`HPARAMS_KEYS`).
    **encoder_kwargs
        Other encoder arguments (sizes for random init; with a checkpoint they may only
        repeat its sizes, and ``drop_path_rate`` / ``trainable_pos_embed`` be set).
        ``None`` values count as not given. Random init defaults to a ViT-B
        (``embed_dim`` 768, 11 + 1 blocks) with :func:`default_heads` heads.

    Returns
    -------
    torch.nn.Module
        ``CAVMAEEncoder``, ``AudioStreamEncoder`` or ``VisualStreamEncoder``.

    Example
    -------
    >>> enc = load_encoder(img_size=32, audio_length=64, embed_dim=32,
    ...                    modality_specific_depth=1, num_heads=4)
    >>> enc.audio_length
    64
    >>> type(load_encoder(audio_length=64, embed_dim=32, modality_specific_depth=1,
    ...                   half="audio")).__name__
    'AudioStreamEncoder'
    """
    return _open_encoder(ckpt_path, audio_length, num_heads, map_location, half, names,
                         **encoder_kwargs).model


def _open_encoder(ckpt_path=None, audio_length=None, num_heads=None, map_location="cpu",
                  half=None, names=None, **encoder_kwargs):
    """:func:`load_encoder` as a :class:`speechbrain_cavmae.checkpoints.Loaded` (the
    encoder and its folder's input settings, from one read of the folder)."""
    unknown = set(encoder_kwargs) - set(ENCODER_ARGS)
    if unknown:
        raise TypeError(f"unknown encoder arguments {sorted(unknown)}")
    encoder_kwargs = {k: v for k, v in encoder_kwargs.items() if v is not None}
    if ckpt_path is not None:
        return load(ckpt_path, part=half or "encoder", num_heads=num_heads,
                    audio_length=audio_length, map_location=map_location, names=names,
                    **encoder_kwargs)
    cfg = dict(SCRATCH_DEFAULTS, **encoder_kwargs)
    if audio_length is not None:
        cfg["audio_length"] = audio_length
    cfg["num_heads"] = num_heads if num_heads is not None else default_heads(cfg["embed_dim"])
    check_heads(cfg, "random initialisation", names)
    cfg.setdefault("trainable_pos_embed", True)
    return Loaded(model=ENCODERS[half](**cfg))


def audio_token_mask(n_valid, rows, cols, patch_size):
    """Patch validity ``[batch, rows * cols]`` (frequency-major) from valid frame counts.

    A time column is valid when it covers at least one valid frame.

    Example
    -------
    >>> audio_token_mask(torch.tensor([20, 64]), 2, 4, 16).int().tolist()
    [[1, 1, 0, 0, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]]
    """
    n_cols = torch.div(n_valid + patch_size - 1, patch_size, rounding_mode="floor")
    col_ok = torch.arange(cols, device=n_valid.device).unsqueeze(0) < n_cols.unsqueeze(1)
    return col_ok.unsqueeze(1).expand(-1, rows, -1).reshape(n_valid.shape[0], rows * cols)


def _key_mask(token_mask):
    """Boolean attention mask ``[batch, 1, 1, L]``; rows without a valid key attend all."""
    empty = ~token_mask.any(dim=1, keepdim=True)
    return (token_mask | empty)[:, None, None, :]


def masked_mean(tokens, mask):
    """Mean of ``tokens`` ``[batch, L, dim]`` over ``mask`` ``[batch, L]`` -> ``[batch, dim]``."""
    m = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


class CAVMAEAudioInput(nn.Module):
    """Turn waveforms or features into fbank of the length the encoder runs on.

    Arguments
    ---------
    audio_length : int
        Nominal frames of the encoder.
    n_mels : int
        Mel bins the encoder expects.
    patch_size : int
        Patch side (lengths are rounded up to a multiple of it).
    long_audio, short_audio : str
        Length policies, see the module docstring.
    feature_norm : str
        ``"none"``, ``"dataset"`` or ``"utterance"`` (features input only).
    sample_rate : int
        Sampling rate of waveform input.
    dataset_mean, dataset_std : float
        Dataset statistics of the fbank normalisation.
    pad_value : float, optional
        Value of padded frames; default: that of a zero log-mel frame after the dataset
        normalisation (as the original) for waveforms and ``"dataset"`` features, 0 for
        the other features.
    trim_padding : bool
        With ``short_audio="pad"``, pad only to a whole number of patches, not to
        ``audio_length``: for an encoder that masks the padding out of attention and gives
        the shorter input the first columns of its positional embedding
        (:meth:`time_positions`), whose tokens of the real frames are then the same.

    Example
    -------
    >>> prep = CAVMAEAudioInput(audio_length=128)
    >>> fbank, n_valid, n_windows = prep(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> fbank.shape, n_valid.tolist(), n_windows
    (torch.Size([2, 128, 128]), [98, 48], 1)
    """

    def __init__(self, audio_length=AUDIO_LENGTH, n_mels=128, patch_size=16, long_audio="crop",
                 short_audio="pad", feature_norm="none", sample_rate=16000,
                 dataset_mean=DEFAULT_MEAN, dataset_std=DEFAULT_STD, pad_value=None,
                 trim_padding=False):
        super().__init__()
        _check("long_audio", long_audio, LONG_AUDIO)
        _check("short_audio", short_audio, SHORT_AUDIO)
        _check("feature_norm", feature_norm, FEATURE_NORM)
        self.audio_length = audio_length
        self.n_mels = n_mels
        self.patch_size = patch_size
        self.long_audio = long_audio
        self.short_audio = short_audio
        self.feature_norm = feature_norm
        self.dataset_mean = dataset_mean
        self.dataset_std = dataset_std
        self.pad_value = pad_value
        self.trim_padding = trim_padding
        self.compute_fbank = KaldiFbank(sample_rate=sample_rate, n_mels=n_mels,
                                        audio_length=None, dataset_mean=dataset_mean,
                                        dataset_std=dataset_std)

    def features(self, x, lens=None):
        """``(fbank [batch, frames, n_mels], valid frames [batch], pad value)``."""
        if x.dim() == 2:
            feats = self.compute_fbank(x, lens)
            total = x.shape[1]
            if lens is None:
                n_samples = torch.full((x.shape[0],), total, dtype=torch.long, device=x.device)
            else:
                n_samples = torch.round(lens.to(x.device).float() * total).long()
            n_valid = self.compute_fbank.num_frames(n_samples)
            return feats, n_valid, (0.0 - self.dataset_mean) / self.dataset_std
        if x.dim() != 3:
            raise ValueError(
                f"expected waveforms [batch, samples] or features [batch, frames, "
                f"{self.n_mels}], got a tensor of shape {tuple(x.shape)}"
            )
        if x.shape[-1] != self.n_mels:
            raise ValueError(
                f"CAV-MAE expects {self.n_mels} mel bins, got features of shape "
                f"{tuple(x.shape)} ({x.shape[-1]} bins): set n_mels: {self.n_mels} in the "
                "recipe's feature extractor (e.g. speechbrain.lobes.features.Fbank or the "
                "ESC50 recipe's compute_fbank), or pass waveforms [batch, samples] so that "
                "the encoder computes its own Kaldi fbank"
            )
        frames = x.shape[1]
        if lens is None:
            n_valid = torch.full((x.shape[0],), frames, dtype=torch.long, device=x.device)
        else:
            n_valid = torch.round(lens.to(x.device).float() * frames).long()
        n_valid = n_valid.clamp(1, frames)
        pad = 0.0
        if self.feature_norm == "dataset":
            x = (x - self.dataset_mean) / self.dataset_std
            pad = (0.0 - self.dataset_mean) / self.dataset_std
        elif self.feature_norm == "utterance":
            valid = (torch.arange(frames, device=x.device)[None, :] < n_valid[:, None])
            m = valid.to(x.dtype).unsqueeze(-1)
            count = m.sum(dim=(1, 2), keepdim=True) * x.shape[-1]
            mean = (x * m).sum(dim=(1, 2), keepdim=True) / count
            var = (((x - mean) * m) ** 2).sum(dim=(1, 2), keepdim=True) / count
            x = (x - mean) / (var + 1e-5).sqrt() * m
        return x, n_valid, pad

    def forward(self, x, lens=None):
        """Prepare ``x``.

        Returns
        -------
        tuple
            ``fbank [batch * n_windows, frames, n_mels]``, valid frames per row
            ``[batch * n_windows]`` (long) and ``n_windows`` (1 unless
            ``long_audio="window"`` and the input is longer than ``audio_length``).
        """
        feats, n_valid, pad = self.features(x, lens)
        if self.pad_value is not None:
            pad = self.pad_value
        frames = feats.shape[1]
        length = self.audio_length
        if frames > length and self.long_audio == "window":
            n_win = math.ceil(frames / length)
            feats = _pad_time(feats, n_win * length, pad)
            batch = feats.shape[0]
            feats = feats.reshape(batch * n_win, length, feats.shape[-1])
            offsets = torch.arange(n_win, device=feats.device) * length
            n_valid = (n_valid[:, None] - offsets[None, :]).clamp(0, length).reshape(-1)
            return feats, n_valid, n_win
        if frames > length and self.long_audio == "crop":
            target = length
        elif frames < length and self.short_audio == "pad" and not self.trim_padding:
            target = length
        else:
            target = math.ceil(frames / self.patch_size) * self.patch_size
        if target < frames:
            feats = feats[:, :target]
        else:
            feats = _pad_time(feats, target, pad)
        return feats, n_valid.clamp(max=target), 1

    def input_frames(self, x):
        """Fbank frames of the input ``x`` (its padded batch length) before any padding,
        cropping or windowing."""
        if x.dim() == 3:
            return x.shape[1]
        return int(self.compute_fbank.num_frames(x.shape[1]))

    def time_positions(self, frames):
        """How the encoder places ``frames`` fbank frames of :meth:`forward`'s output in
        time (``time_positions`` of ``StreamEncoder.embed_audio``): ``"first"`` for a
        shorter input that stands for one padded to ``audio_length``, else
        ``"interpolate"`` (a no-op at the nominal length)."""
        if self.short_audio == "pad" and frames <= self.audio_length:
            return "first"
        return "interpolate"


def _pad_time(feats, target, value):
    """Pad ``[batch, frames, bins]`` at the end of time to ``target`` frames with ``value``."""
    missing = target - feats.shape[1]
    if missing <= 0:
        return feats
    return nn.functional.pad(feats, (0, 0, 0, missing), value=float(value))


def _check(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name}={value!r}; expected one of {allowed}")
    return value


class _CAVMAELobe(nn.Module):
    """Loading, freezing and pooling shared by the three encoders."""

    #: The encoder half this lobe holds (``None``: the whole encoder; see ``checkpoints.PARTS``).
    HALF = None

    def __init__(self, ckpt_path=None, freeze=False, pooling="mean", audio_length=None,
                 num_heads=None, **encoder_kwargs):
        super().__init__()
        self.pooling = _check("pooling", pooling, POOLING)
        self.freeze = freeze
        loaded = _open_encoder(ckpt_path, audio_length, num_heads, half=self.HALF,
                               names=HPARAMS_KEYS, **encoder_kwargs)
        #: The encoder, and the input settings its model folder records ({} without one).
        self.encoder, self.folder_inputs = loaded.model, loaded.inputs
        #: Output width (the classifier's input size); also ``embed_dim``, ``output_size``.
        self.output_dim = self.embed_dim = self.output_size = self.encoder.embed_dim
        if freeze:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def train(self, mode=True):
        """As ``nn.Module.train``, but a frozen encoder stays in eval mode."""
        super().train(mode)
        if self.freeze:
            self.encoder.eval()
        return self

    def forward(self, x, lens=None, **kwargs):
        """Encode (without gradients when ``freeze``); see the subclass' ``encode``."""
        if self.freeze:
            with torch.no_grad():
                return self.encode(x, lens, **kwargs)
        return self.encode(x, lens, **kwargs)

    def encode(self, x, lens=None, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def _prepare_frames(self, frames, lens=None):
        """Frames ``[batch, 3, H, W]`` or ``[batch, n, 3, H, W]`` -> flattened frames,
        frames per clip and the per-frame validity ``[batch, n]``."""
        if frames.dim() == 4:
            frames = frames.unsqueeze(1)
        if frames.dim() != 5:
            raise ValueError(
                f"expected frames [batch, 3, H, W] or [batch, n_frames, 3, H, W], got "
                f"{tuple(frames.shape)}"
            )
        if not frames.is_floating_point():
            raise ValueError(
                "frames must be float tensors normalised as the original (resize, centre "
                "crop, ImageNet mean/std): use speechbrain_cavmae.data.frames.ImageTransform"
            )
        size = self.encoder.patch_embed_v.img_size
        if tuple(frames.shape[-2:]) != tuple(size):
            raise ValueError(
                f"frames of {tuple(frames.shape[-2:])} pixels, the encoder takes {tuple(size)}: "
                f"use ImageTransform({size[0]})"
            )
        batch, n = frames.shape[:2]
        if lens is None:
            valid = torch.ones(batch, n, dtype=torch.bool, device=frames.device)
        else:
            count = torch.round(lens.to(frames.device).float() * n).long().clamp(1, n)
            valid = torch.arange(n, device=frames.device)[None, :] < count[:, None]
        return frames.reshape(batch * n, *frames.shape[2:]), n, valid

    def _pool(self, tokens, mask, rows=None):
        """Apply ``self.pooling`` to ``tokens [batch, L, dim]`` with validity ``mask``."""
        if self.pooling == "mean":
            return masked_mean(tokens, mask).unsqueeze(1)
        if self.pooling == "time":
            if rows is None:
                raise ValueError("pooling='time' applies to audio tokens only")
            batch, length, dim = tokens.shape
            return tokens.reshape(batch, rows, length // rows, dim).mean(dim=1)
        return tokens


class CAVMAEAudioEncoder(_CAVMAELobe):
    """CAV-MAE audio encoder (audio-only stream) for SpeechBrain recipes.

    Arguments
    ---------
    ckpt_path : str, optional
        Original or speechbrain-cavmae checkpoint; ``None`` for random initialisation with
        the sizes in ``encoder_kwargs``.
    freeze : bool
        Run without gradients and in eval mode (parameters do not require grad).
    pooling : str
        ``"mean"`` (``[batch, 1, dim]``), ``"time"`` (``[batch, time_patches, dim]``) or
        ``"none"`` (``[batch, tokens, dim]``).
    audio_length : int, optional
        Frames the encoder is built for; default: the checkpoint's (1024 = 10.24 s for the
        released models), or 1024 with random initialisation. With a checkpoint of another
        length the audio positional embedding is interpolated along time.
    long_audio : str
        ``"crop"`` (default), ``"window"`` or ``"interpolate"``.
    short_audio : str
        ``"pad"`` (default) or ``"interpolate"``.
    mask_padding : bool
        Remove patches that only cover padding from attention and pooling; with
        ``short_audio="pad"`` the padding beyond the input's length is then not computed.
    feature_norm : str
        For feature input: ``"none"``, ``"dataset"`` or ``"utterance"``.
    sample_rate : int, optional
        Sampling rate of waveform input; default: the model folder's, else 16 kHz (the
        released models').
    dataset_mean, dataset_std : float, optional
        Fbank normalisation statistics; default: the model folder's, else AudioSet's
        (-5.081, 4.4849).
    pad_value : float, optional
        Value of padded fbank frames (see :class:`CAVMAEAudioInput`).
    num_heads : int, optional
        Attention heads (not stored in a ``.pth``; a model folder records them). ``None``
        with random init: :func:`default_heads` of ``embed_dim``.
    **encoder_kwargs
        Encoder sizes (``embed_dim``, ``modality_specific_depth``, ``shared_depth``, ...)
        for random init (default ViT-B); with ``ckpt_path`` they come from the checkpoint
        and a given value must equal it (``None`` = not given). The audio encoder ignores
        the visual sizes (``img_size``, ``in_chans``).

    Example
    -------
    >>> enc = CAVMAEAudioEncoder(audio_length=64, img_size=32, embed_dim=32,
    ...                          modality_specific_depth=1, num_heads=4)
    >>> enc(torch.randn(2, 8000)).shape
    torch.Size([2, 1, 32])
    >>> enc(torch.randn(2, 50, 128), torch.tensor([1.0, 0.6])).shape
    torch.Size([2, 1, 32])
    >>> enc.output_dim, hasattr(enc.encoder, "blocks_v")
    (32, False)
    """

    HALF = "audio"

    def __init__(self, ckpt_path=None, freeze=False, pooling="mean", audio_length=None,
                 long_audio="crop", short_audio="pad", mask_padding=True,
                 feature_norm="none", sample_rate=None, dataset_mean=None,
                 dataset_std=None, pad_value=None, num_heads=None, **encoder_kwargs):
        super().__init__(ckpt_path, freeze, pooling, audio_length, num_heads, **encoder_kwargs)
        self.mask_padding = mask_padding
        folder = self.folder_inputs
        if sample_rate is None:
            sample_rate = folder.get("sample_rate", 16000)
        if dataset_mean is None:
            dataset_mean = folder.get("dataset_mean", DEFAULT_MEAN)
        if dataset_std is None:
            dataset_std = folder.get("dataset_std", DEFAULT_STD)
        self.audio_input = CAVMAEAudioInput(
            audio_length=self.encoder.audio_length,
            n_mels=self.encoder.patch_embed_a.n_mels,
            patch_size=self.encoder.patch_size,
            long_audio=long_audio,
            short_audio=short_audio,
            feature_norm=feature_norm,
            sample_rate=sample_rate,
            dataset_mean=dataset_mean,
            dataset_std=dataset_std,
            pad_value=pad_value,
            trim_padding=mask_padding,
        )

    def audio_tokens(self, x, lens=None):
        """Audio-only stream tokens.

        Returns
        -------
        tuple
            ``tokens [batch * n_windows, L, dim]``, validity ``[batch * n_windows, L]``,
            ``n_windows`` and the number of frequency rows of the patch grid.
        """
        enc = self.encoder
        fbank, n_valid, n_win = self.audio_input(x, lens)
        rows = enc.audio_grid[0]
        cols = fbank.shape[1] // enc.patch_size
        mask = audio_token_mask(n_valid, rows, cols, enc.patch_size)
        attn_mask = _key_mask(mask) if self.mask_padding else None
        tokens = enc.encode_audio(fbank, attn_mask=attn_mask,
                                  time_positions=self.audio_input.time_positions(fbank.shape[1]))
        if not self.mask_padding:
            mask = torch.ones_like(mask)
            if n_win > 1:  # whole windows of padding are still left out
                mask = mask & (n_valid > 0)[:, None]
        return tokens, mask, n_win, rows

    def encode(self, x, lens=None):
        """Embed waveforms ``[batch, samples]`` or fbank ``[batch, frames, 128]``.

        Arguments
        ---------
        x : torch.Tensor
            Waveforms (16 kHz) or features.
        lens : torch.Tensor, optional
            Relative lengths ``[batch]`` in (0, 1].

        Returns
        -------
        torch.Tensor
            ``[batch, 1, dim]``, ``[batch, time_patches, dim]`` or ``[batch, tokens, dim]``
            according to ``pooling``.
        """
        tokens, mask, n_win, rows = self.audio_tokens(x, lens)
        if n_win > 1:
            if self.pooling == "time":  # the windows' steps up to the input's end
                bw, length, dim = tokens.shape
                tokens = tokens.reshape(bw, rows, length // rows, dim).mean(dim=1)
                steps = -(-self.audio_input.input_frames(x) // self.encoder.patch_size)
                return tokens.reshape(bw // n_win, -1, dim)[:, :steps]
            batch = tokens.shape[0] // n_win
            tokens = tokens.reshape(batch, -1, tokens.shape[-1])
            mask = mask.reshape(batch, -1)
        return self._pool(tokens, mask, rows)


class CAVMAEVisualEncoder(_CAVMAELobe):
    """CAV-MAE visual encoder (visual-only stream).

    ``forward(x, lens=None)`` takes frames ``[batch, 3, H, W]`` or ``[batch, n_frames, 3,
    H, W]`` normalised as the original (see
    :class:`~speechbrain_cavmae.data.frames.ImageTransform`). With several frames each one
    is encoded on its own and the outputs are averaged over the frames (``lens``: relative
    number of valid frames per clip).

    Arguments
    ---------
    ckpt_path, freeze, num_heads, **encoder_kwargs
        As :class:`CAVMAEAudioEncoder`.
    pooling : str
        ``"mean"`` (``[batch, 1, dim]``) or ``"none"`` (``[batch, patches, dim]``).

    Example
    -------
    >>> enc = CAVMAEVisualEncoder(img_size=32, audio_length=64, embed_dim=32,
    ...                           modality_specific_depth=1, num_heads=4)
    >>> enc(torch.randn(2, 3, 32, 32)).shape, enc(torch.randn(2, 4, 3, 32, 32)).shape
    (torch.Size([2, 1, 32]), torch.Size([2, 1, 32]))
    """

    HALF = "visual"

    def __init__(self, ckpt_path=None, freeze=False, pooling="mean", num_heads=None,
                 **encoder_kwargs):
        if pooling == "time":
            raise ValueError("pooling='time' applies to audio; use 'mean' or 'none'")
        audio_length = encoder_kwargs.pop("audio_length", None)
        super().__init__(ckpt_path, freeze, pooling, audio_length, num_heads, **encoder_kwargs)

    def encode(self, x, lens=None):
        """Embed frames; see the class docstring."""
        flat, n, valid = self._prepare_frames(x, lens)
        tokens = self.encoder.encode_visual(flat)
        batch = valid.shape[0]
        tokens = tokens.reshape(batch, n, *tokens.shape[1:])
        w = valid.to(tokens.dtype)[:, :, None, None]
        tokens = (tokens * w).sum(dim=1) / w.sum(dim=1)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return self._pool(tokens, mask)


class CAVMAEJointEncoder(CAVMAEAudioEncoder):
    """CAV-MAE joint audio-visual encoder: tokens of the joint stream.

    ``forward(x, lens=None, frames=None)`` takes the audio ``x`` as
    :class:`CAVMAEAudioEncoder` (waveforms or fbank, ``lens`` its relative lengths) and the
    frames ``[batch, 3, H, W]`` or ``[batch, n_frames, 3, H, W]`` (``x`` may also be the
    pair ``(audio, frames)``). Audio and visual tokens go through their branches, are
    concatenated as ``[audio; visual]`` and run through the shared block with the joint
    LayerNorms and the final ``norm``, as the multimodal classifier does. With several
    frames the joint pass is run once per frame and the outputs are averaged.

    Arguments
    ---------
    As :class:`CAVMAEAudioEncoder`, except that ``long_audio`` may not be ``"window"``
    and ``pooling`` is ``"mean"`` or ``"none"`` (tokens ``[batch, La + Lv, dim]``).

    Example
    -------
    >>> enc = CAVMAEJointEncoder(audio_length=64, img_size=32, embed_dim=32,
    ...                          modality_specific_depth=1, num_heads=4)
    >>> enc(torch.randn(2, 64, 128), frames=torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 1, 32])
    """

    HALF = "joint"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.audio_input.long_audio == "window":
            raise ValueError("CAVMAEJointEncoder: long_audio='window' is not supported; "
                             "use 'crop' or 'interpolate'")
        if self.pooling == "time":
            raise ValueError("CAVMAEJointEncoder: pooling='time' is not supported")

    def encode(self, x, lens=None, frames=None):
        """Joint-stream embedding; see the class docstring."""
        if frames is None and isinstance(x, (tuple, list)):
            x, frames = x
        if frames is None:
            raise ValueError("CAVMAEJointEncoder needs frames: call it as enc(audio, lens, "
                             "frames=frames) or enc((audio, frames), lens)")
        enc = self.encoder
        fbank, n_valid, _ = self.audio_input(x, lens)
        rows, cols = enc.audio_grid[0], fbank.shape[1] // enc.patch_size
        a_mask = audio_token_mask(n_valid, rows, cols, enc.patch_size)
        if not self.mask_padding:
            a_mask = torch.ones_like(a_mask)
        a_attn = _key_mask(a_mask) if self.mask_padding else None
        a = enc.embed_audio(fbank, self.audio_input.time_positions(fbank.shape[1]))
        a = enc.forward_audio_branch(a, attn_mask=a_attn)
        flat, n, valid = self._prepare_frames(frames)
        v = enc.forward_visual_branch(enc.embed_visual(flat))
        batch = a.shape[0]
        if v.shape[0] != batch * n:
            raise ValueError(f"{batch} audio clips but {v.shape[0] // n} clips of frames")
        a_rep = a.repeat_interleave(n, dim=0)
        mask = torch.cat([a_mask, torch.ones(batch, v.shape[1], dtype=torch.bool,
                                             device=a.device)], dim=1)
        mask_rep = mask.repeat_interleave(n, dim=0)
        attn = _key_mask(mask_rep) if self.mask_padding else None
        joint = enc.forward_shared(torch.cat([a_rep, v], dim=1), attn_mask=attn)
        out = self._pool(joint, mask_rep)
        out = out.reshape(batch, n, *out.shape[1:])
        w = valid.to(out.dtype)[:, :, None, None]
        return (out * w).sum(dim=1) / w.sum(dim=1)
