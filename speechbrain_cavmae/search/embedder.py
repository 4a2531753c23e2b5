"""Moments of a media file and their CAV-MAE embeddings: the one place search runs the model.

A file is cut into **windows** of the model's own input length, ``audio_length`` fbank
frames (``(audio_length - 1) * 10 ms + 25 ms``: 10.255 s for the released models), every
``hop_s`` seconds (default: half a window); the last window ends at the end of the file, so
no window but the one of a file shorter than a window is padded. For each window:

* audio: the window's waveform through the evaluation pipeline of
  :class:`~speechbrain_cavmae.data.dataset.AVSampleLoader` (fbank, crop/pad, the model
  folder's normalisation), then the audio-only stream, mean over tokens;
* visual: the frame shown at the window's centre, transformed as in evaluation, then the
  visual-only stream, mean over tokens.

The **clip** vector of a modality is the mean of its window vectors. Every vector is
L2-normalised (float32), so an inner product is a cosine.

The model comes from the one door (:func:`speechbrain_cavmae.checkpoints.load`) with the
folder's input configuration (its ``Loaded.inputs``), as ``cavmae embed`` loads it.

Authors
 * speechbrain-cavmae contributors 2026
"""

import io
import logging
import os
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch

from speechbrain_cavmae.data.dataset import AVSampleLoader, resolve_config
from speechbrain_cavmae.data.errors import BadSampleError
from speechbrain_cavmae.data.frames import load_video_frames, video_info

logger = logging.getLogger(__name__)

#: fbank frame shift and length (s): a window of ``L`` frames covers ``(L-1)*shift+length``.
FRAME_SHIFT_S = 0.010
FRAME_LENGTH_S = 0.025
#: Width (px) of the JPEG thumbnail kept per window.
THUMB_WIDTH = 192
_SID = "clip"


@dataclass
class Moments:
    """The windows of one file and their embeddings.

    ``starts`` / ``ends``: ``[n]`` seconds; ``audio`` / ``visual``: ``[n, dim]`` float32
    L2-normalised (None when the file has no such stream); ``thumbs``: JPEG bytes per
    window (None without video); ``duration`` in seconds.
    """

    duration: float
    starts: np.ndarray
    ends: np.ndarray
    audio: Optional[np.ndarray]
    visual: Optional[np.ndarray]
    thumbs: Optional[List[bytes]]

    def clip(self, kind):
        """The clip vector of ``kind`` (``audio`` / ``visual``): normalised mean of the
        windows, or None."""
        vectors = getattr(self, kind)
        return None if vectors is None else normalise(vectors.mean(axis=0, keepdims=True))[0]


@dataclass
class Source:
    """A media file opened by :meth:`Embedder.open`: its sample loader, waveform (None
    without audio), whether it has video, its duration and its windows (seconds)."""

    path: str
    loader: AVSampleLoader
    wav: Optional[torch.Tensor]
    has_video: bool
    duration: float
    starts: np.ndarray
    ends: np.ndarray


def normalise(x):
    """Rows of ``x`` scaled to unit L2 norm (float32)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def window_starts(duration, window_s, hop_s):
    """Start times of the windows covering ``duration`` seconds.

    Example
    -------
    >>> window_starts(25.0, 10.0, 5.0)
    [0.0, 5.0, 10.0, 15.0]
    >>> window_starts(3.0, 10.0, 5.0), window_starts(12.0, 10.0, 5.0)
    ([0.0], [0.0, 2.0])
    """
    if duration <= window_s:
        return [0.0]
    last = duration - window_s
    starts = [k * hop_s for k in range(int(last // hop_s) + 1)]
    if last - starts[-1] > 1e-6:
        starts.append(round(last, 6))
    return starts


class Embedder:
    """Windows of a file -> audio and visual vectors with one CAV-MAE model.

    Arguments
    ---------
    model : torch.nn.Module
        A loaded CAV-MAE (or classifier) with an ``encoder``, in eval mode.
    config : dict, optional
        Data configuration (the model folder's input pipeline).
    hop_s : float, optional
        Seconds between window starts (default: half a window).
    device : str
        Torch device.
    batch_size : int
        Windows per forward pass.
    """

    def __init__(self, model, config=None, hop_s=None, device="cpu", batch_size=16):
        enc = model.encoder
        cfg = {"audio_length": enc.audio_length, "image_size": enc.image_grid[0] * enc.patch_size}
        cfg.update(config or {})
        self.cfg = resolve_config(cfg, train=False)
        self.model = model.eval()
        self.device = device
        self.batch_size = int(batch_size)
        self.window_s = (self.cfg["audio_length"] - 1) * FRAME_SHIFT_S + FRAME_LENGTH_S
        self.hop_s = float(hop_s) if hop_s else self.window_s / 2
        if self.hop_s <= 0:
            raise ValueError(f"hop must be > 0 s, got {self.hop_s}")

    @classmethod
    def load(cls, model, num_heads=None, decoder_num_heads=None, trust_remote_code=False,
             device="cpu", hop_s=None, batch_size=16, config=None):
        """The model ``model`` (a folder, a recipe output folder or a ``.pth``) through
        the one loader, with its folder's input pipeline (then ``config``)."""
        from speechbrain_cavmae.checkpoints import load

        loaded = load(model, num_heads=num_heads, decoder_num_heads=decoder_num_heads,
                      trust_remote_code=trust_remote_code)
        net = loaded.model.to(device).eval()
        return cls(net, dict(loaded.inputs, **(config or {})), hop_s, device, batch_size)

    @property
    def dim(self):
        """Embedding width."""
        return int(self.model.encoder.norm_a.normalized_shape[0])

    # ------------------------------------------------------------------ inputs
    def _loader(self, path, has_video):
        entry = {"video_id": _SID, "wav": os.fspath(path), "labels": []}
        if has_video:
            entry["video"] = os.fspath(path)
        return AVSampleLoader({_SID: entry}, self.cfg, train=False, manifest_path=path)

    def open(self, path, start=None, end=None):
        """A file's windows, before any of them is decoded: a :class:`Source`.

        Raises
        ------
        BadSampleError
            Missing, unreadable or empty file, or an empty ``[start, end]``.
        """
        from speechbrain_cavmae.inference import probe_streams

        path = os.fspath(path)
        has_audio, has_video = probe_streams(path)
        if not has_audio and not has_video:
            raise BadSampleError(path, "no audio or video stream")
        loader = self._loader(path, has_video)
        wav = loader.waveform(_SID, whole=True) if has_audio else None  # every window
        duration = 0.0
        if has_video:
            count, fps, _, _ = video_info(path)
            duration = count / fps
        if wav is not None:
            duration = max(duration, wav.numel() / self.cfg["sample_rate"])
        if start is not None or end is not None:
            start = max(0.0, float(start or 0.0))
            end = min(duration, float(end) if end is not None else start + self.window_s)
            if end <= start:
                raise BadSampleError(path, f"empty range {start:g}..{end:g} s (the file "
                                     f"lasts {duration:.2f} s): check --start / --end")
            starts, ends = np.array([start]), np.array([end])
        else:
            starts = np.array(window_starts(duration, self.window_s, self.hop_s))
            ends = np.minimum(starts + self.window_s, duration)
        return Source(path, loader, wav, has_video, duration, starts, ends)

    def inputs(self, source, first=0, last=None):
        """Model inputs of windows ``first:last`` of a :class:`Source`: ``(fbank [n,
        audio_length, n_mels] or None, frames [n, 3, R, R] or None, thumbs or None)``."""
        starts, ends = source.starts[first:last], source.ends[first:last]
        fbank = frames = thumbs = None
        if source.wav is not None:
            sr, wav, pieces = self.cfg["sample_rate"], source.wav, []
            for s, e in zip(starts, ends):
                piece = wav[int(round(s * sr)):int(round(e * sr))]
                if piece.numel() < int(FRAME_LENGTH_S * sr):
                    piece = wav[-int(round(self.window_s * sr)):]  # a range past the audio
                pieces.append(source.loader.fbank(piece, _SID))
            fbank = torch.stack(pieces)
        if source.has_video:
            centres = [(s + e) / 2 for s, e in zip(starts, ends)]
            raw = load_video_frames(source.path, times=centres,
                                    num_threads=self.cfg["video_threads"])
            frames = torch.stack([source.loader.video_transform(f) for f in raw])
            thumbs = [thumbnail(f) for f in raw]
        return fbank, frames, thumbs

    def read(self, path, start=None, end=None):
        """Model inputs of every window of ``path`` (or of the one window ``[start, end]``):
        ``(duration, starts [n], ends [n], fbank or None, frames or None, thumbs or None)``
        (see :meth:`inputs`)."""
        source = self.open(path, start, end)
        return (source.duration, source.starts, source.ends, *self.inputs(source))

    # ------------------------------------------------------------------ model
    def embed(self, fbank=None, frames=None):
        """Pooled, L2-normalised audio ``[n, dim]`` and visual ``[n, dim]`` vectors of
        model inputs (either may be None)."""
        enc = self.model.encoder
        out = []
        for inputs, stream in ((fbank, enc.encode_audio), (frames, enc.encode_visual)):
            if inputs is None:
                out.append(None)
                continue
            rows = []
            with torch.no_grad():
                for i in range(0, len(inputs), self.batch_size):
                    chunk = inputs[i:i + self.batch_size].to(self.device).float()
                    rows.append(stream(chunk).mean(dim=1).float().cpu())
            out.append(normalise(torch.cat(rows).numpy()))
        return tuple(out)

    def moments(self, path, start=None, end=None):
        """:class:`Moments` of ``path`` (every window, or the one ``[start, end]``), decoded
        and embedded ``batch_size`` windows at a time (a long video's windows are never all
        in memory)."""
        source = self.open(path, start, end)
        audio, visual, thumbs = [], [], []
        for first in range(0, len(source.starts), self.batch_size):
            fbank, frames, pictures = self.inputs(source, first, first + self.batch_size)
            a, v = self.embed(fbank, frames)
            audio.append(a)
            visual.append(v)
            thumbs.extend(pictures or [])
        join = (lambda parts: None if parts[0] is None else np.concatenate(parts))
        return Moments(source.duration, source.starts, source.ends, join(audio), join(visual),
                       thumbs if source.has_video else None)


def thumbnail(frame, width=THUMB_WIDTH):
    """JPEG bytes of a uint8 ``[3, H, W]`` frame scaled to ``width`` pixels wide."""
    from PIL import Image

    image = Image.fromarray(frame.permute(1, 2, 0).numpy())
    height = max(1, round(image.height * width / image.width))
    buffer = io.BytesIO()
    image.resize((width, height), Image.BILINEAR).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()
