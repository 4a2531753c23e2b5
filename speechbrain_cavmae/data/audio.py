"""Waveform loading from audio files or straight from video containers.

Audio files (wav, flac, ogg, aiff, au) are read with ``soundfile``; anything
else (mp4, mkv, webm, ...) is demuxed and decoded with PyAV (FFmpeg's
libraries, no ``ffmpeg`` binary). Channels are averaged to mono (or one
channel is picked, as the original ``sox remix 1`` step did) and the result
is resampled to ``sample_rate`` with ``torchaudio.functional`` windowed-sinc
resampling.

Why not decord's ``AudioReader``: with decord 0.6.0 its built-in resampling
of stereo tracks returns NaN/inf samples and its native-rate output does not
match FFmpeg's decoded samples. decord is not used at all (frames are decoded
with PyAV too, see :mod:`speechbrain_cavmae.data.frames`).

Example
-------
>>> import numpy as np, soundfile, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
>>> soundfile.write(path, np.zeros((44100, 2), "float32"), 44100)
>>> load_audio(path).shape
torch.Size([16000])
"""

import io
import logging
import os

import numpy as np
import torch
import torchaudio

from .containers import open_container
from .errors import BadSampleError

logger = logging.getLogger(__name__)

#: Extensions read with soundfile; everything else goes through PyAV.
SOUNDFILE_EXTS = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".w64", ".caf"}

#: A container's audio track may decode this much (or 10 %) shorter than it declares
#: (codec priming, rounding); anything shorter is a truncated file.
SHORT_STREAM_TOLERANCE_S = 0.5

_RESAMPLERS = {}

_INT_SCALE = {"u8": None, "s16": 32768.0, "s32": 2147483648.0, "s64": 9.223372036854775808e18}


def _resampler(orig, new):
    key = (int(orig), int(new))
    if key not in _RESAMPLERS:
        _RESAMPLERS[key] = torchaudio.transforms.Resample(orig, new)
    return _RESAMPLERS[key]


def resample(waveform, orig_sr, new_sr):
    """Resample [..., samples] float waveform (cached windowed-sinc kernel)."""
    if int(orig_sr) == int(new_sr):
        return waveform
    return _resampler(orig_sr, new_sr)(waveform)


def _to_mono(data, channel, path):
    """[channels, samples] float32 numpy -> [samples] numpy."""
    if channel is None:
        return data.mean(axis=0) if data.shape[0] > 1 else data[0]
    if channel >= data.shape[0]:
        raise BadSampleError(path, f"channel {channel} requested but audio has {data.shape[0]}")
    return data[channel]


def wav_declared_frames(path):
    """Frames that a RIFF/WAVE file's header declares, or ``None`` when it cannot tell.

    libsndfile silently shortens the frame count of a wav whose ``data`` chunk runs past
    the end of the file, so a truncated wav would read as a short clip; this reads the
    declared size from the header itself. Streamed wavs (size 0 or 0xFFFFFFFF), RF64 and
    non-PCM layouts without a block alignment give ``None``.

    Example
    -------
    >>> import numpy as np, soundfile, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> soundfile.write(path, np.zeros(1600, "float32"), 16000)
    >>> wav_declared_frames(path)
    1600
    """
    import contextlib
    import struct

    def opened():
        if hasattr(path, "read"):  # content (shards): read it, then rewind for the decoder
            return contextlib.closing(_Rewinding(path))
        return open(path, "rb")

    try:
        with opened() as handle:
            head = handle.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = None
            while True:
                chunk = handle.read(8)
                if len(chunk) < 8:
                    return None
                name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if name == b"fmt ":
                    fmt = handle.read(size + (size & 1))
                    if len(fmt) >= 14:
                        block_align = struct.unpack("<H", fmt[12:14])[0]
                    continue
                if name == b"data":
                    if size in (0, 0xFFFFFFFF) or not block_align:
                        return None
                    return size // block_align
                handle.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return None


class _Rewinding:
    """A file object seen from its start, put back where it was on ``close``."""

    def __init__(self, handle):
        self.handle, self.position = handle, handle.tell()
        handle.seek(0)

    def read(self, size):
        return self.handle.read(size)

    def seek(self, offset, whence=os.SEEK_SET):
        return self.handle.seek(offset, whence)

    def close(self):
        self.handle.seek(self.position)


def _read_soundfile(path, name=None):
    name = name or path
    import soundfile

    try:
        with soundfile.SoundFile(path) as handle:
            declared, sr = handle.frames, handle.samplerate
            data = handle.read(dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError
        raise BadSampleError(name, f"cannot decode audio ({exc})") from exc
    header = wav_declared_frames(path)
    if header is not None and header > declared:
        declared = header
    if data.shape[0] < declared:
        raise BadSampleError(
            name, f"truncated audio: {data.shape[0]} of the {declared} frames declared in "
            "its header are present (re-extract or re-download the file)")
    return np.ascontiguousarray(data.T), sr


def _frame_to_float(frame):
    """One PyAV AudioFrame -> [channels, samples] float32."""
    arr = frame.to_ndarray()
    fmt = frame.format
    channels = len(frame.layout.channels)
    if not fmt.is_planar:
        arr = arr.reshape(-1, channels).T
    name = fmt.name.rstrip("p")
    if name in ("flt", "dbl"):
        return arr.astype(np.float32, copy=False)
    if name == "u8":
        return (arr.astype(np.float32) - 128.0) / 128.0
    return arr.astype(np.float32) / np.float32(_INT_SCALE[name])


def _read_container(path, name=None):
    name = name or path
    try:
        container = open_container(path)
    except Exception as exc:
        raise BadSampleError(name, f"cannot open container ({exc})") from exc
    with container:
        if not container.streams.audio:
            raise BadSampleError(name, "no audio track")
        stream = container.streams.audio[0]
        chunks = []
        try:
            for frame in container.decode(stream):
                chunks.append(_frame_to_float(frame))
        except Exception as exc:
            raise BadSampleError(name, f"cannot decode audio track ({exc})") from exc
        sr = stream.rate or stream.codec_context.sample_rate
        declared = None
        if stream.duration is not None and stream.time_base is not None:
            declared = float(stream.duration * stream.time_base)
    if not chunks:
        raise BadSampleError(name, "audio track has no decodable samples")
    data = np.concatenate(chunks, axis=1)
    decoded = data.shape[1] / float(sr)
    if declared is not None and decoded < declared - max(SHORT_STREAM_TOLERANCE_S,
                                                         0.1 * declared):
        raise BadSampleError(
            name, f"truncated audio track: {decoded:.2f} s decoded of the {declared:.2f} s "
            "its container declares")
    return data, sr


def load_audio(path, sample_rate=16000, channel=None, name=None):
    """Load a mono waveform from an audio file or a video container.

    Arguments
    ---------
    path : str, bytes or binary file object
        Audio file (wav/flac/...) or video (mp4/mkv/...), or its content.
    sample_rate : int
        Output sampling rate.
    channel : int or None
        ``None`` averages all channels; an int keeps that channel only
        (``0`` is what the original ``sox remix 1`` extraction kept).
    name : str, optional
        With content: its file name (the extension tells the format; errors name it).

    Returns
    -------
    torch.Tensor
        [samples] float32.

    Raises
    ------
    BadSampleError
        Missing file, undecodable data, no audio track, empty track.
    """
    if isinstance(path, (bytes, bytearray, memoryview)):
        path = io.BytesIO(path)
    if hasattr(path, "read"):
        name = name or getattr(path, "name", "<audio bytes>")
    else:
        path = os.fspath(path)
        name = name or path
        if not os.path.isfile(path):
            raise BadSampleError(name, "file not found")
    if os.path.splitext(name)[1].lower() in SOUNDFILE_EXTS:
        data, sr = _read_soundfile(path, name)
    else:
        data, sr = _read_container(path, name)
    if data.shape[1] == 0:
        raise BadSampleError(name, "audio is empty (0 samples)")
    mono = torch.from_numpy(np.ascontiguousarray(_to_mono(data, channel, name)))
    if not torch.isfinite(mono).all():
        raise BadSampleError(name, "audio contains NaN or infinite samples")
    return resample(mono, sr, sample_rate)


def audio_info(path):
    """(sample_rate, channels, duration_s) without decoding everything.

    Raises :class:`BadSampleError` like :func:`load_audio`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BadSampleError(path, "file not found")
    if os.path.splitext(path)[1].lower() in SOUNDFILE_EXTS:
        import soundfile

        try:
            info = soundfile.info(path)
        except Exception as exc:
            raise BadSampleError(path, f"cannot decode audio ({exc})") from exc
        return info.samplerate, info.channels, info.frames / float(info.samplerate)
    try:
        with open_container(path) as container:
            if not container.streams.audio:
                raise BadSampleError(path, "no audio track")
            stream = container.streams.audio[0]
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1e6
            return stream.rate, len(stream.layout.channels), duration
    except BadSampleError:
        raise
    except Exception as exc:
        raise BadSampleError(path, f"cannot open container ({exc})") from exc
