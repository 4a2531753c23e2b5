"""Waveform loading from audio files or straight from video containers.

Audio files (wav, flac, ogg, aiff, au) are read with ``soundfile``; anything
else (mp4, mkv, webm, ...) is demuxed and decoded with PyAV (FFmpeg's
libraries, no ``ffmpeg`` binary). Channels are averaged to mono (or one
channel is picked, as the original ``sox remix 1`` step did) and the result
is resampled to ``sample_rate`` with ``torchaudio.functional`` windowed-sinc
resampling.

Only the part of a file that is used is read: with ``max_samples`` (the samples the fbank
uses, about 10.26 s), a wav or flac is read from its start up to that point and a container's
audio track is decoded up to it, plus the few source samples that the resampler's filter
reaches past it, so the samples kept are those of a whole-file read and the time and memory
do not depend on the file's length.

A container's audio is placed on its video's timeline, as players and ffmpeg align the
streams by their start times: sample 0 is the time of the video's first frame, an audio track
that starts later is preceded by silence, one that starts earlier loses its lead. So the frame
at second 4 meets the sound of second 4.

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
import math
import os

import numpy as np
import torch
import torchaudio

from .containers import audio_lead, open_container
from .errors import BadSampleError

logger = logging.getLogger(__name__)

#: Extensions read with soundfile; everything else goes through PyAV.
SOUNDFILE_EXTS = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".w64", ".caf"}

#: A container's audio track may decode this much (or 10 %) shorter than it declares
#: (codec priming, rounding); anything shorter is a truncated file.
SHORT_STREAM_TOLERANCE_S = 0.5

#: When only the start of a container's audio track is decoded, its last this many seconds
#: are decoded too, so that a file cut short is still found.
TAIL_CHECK_S = 1.0

_RESAMPLERS = {}

_INT_SCALE = {"u8": None, "s16": 32768.0, "s32": 2147483648.0, "s64": 9.223372036854775808e18}


def _resampler(orig, new):
    key = (int(orig), int(new))
    if key not in _RESAMPLERS:
        _RESAMPLERS[key] = torchaudio.transforms.Resample(orig, new)
    return _RESAMPLERS[key]


def resample_margin(orig_sr, new_sr):
    """Source samples past the last one needed that :func:`resample` reads.

    torchaudio's windowed sinc (``lowpass_filter_width=6``, ``rolloff=0.99``) computes each
    output sample from the source samples within ``width + orig`` after it (rates divided by
    their gcd), so resampling a prefix that long gives the very samples of a whole-file
    resampling (to float rounding: a short input may take another convolution path;
    ``tests/test_data_audio_frames.py`` checks it).

    Example
    -------
    >>> resample_margin(44100, 16000), resample_margin(16000, 16000)
    (458, 0)
    """
    if int(orig_sr) == int(new_sr):
        return 0
    g = math.gcd(int(orig_sr), int(new_sr))
    orig, new = int(orig_sr) // g, int(new_sr) // g
    width = math.ceil(6 * orig / (min(orig, new) * 0.99))
    return width + orig


def source_samples(max_samples, orig_sr, new_sr):
    """Source samples to read for the first ``max_samples`` output samples (``None``: all)."""
    if max_samples is None:
        return None
    needed = math.ceil(int(max_samples) * int(orig_sr) / int(new_sr))
    return needed + resample_margin(orig_sr, new_sr)


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


def _last_frame_reads(handle):
    """Whether the last frame of an open ``soundfile.SoundFile`` reads (a seek, not a read
    of all that precedes it): the check that a file read only in part is complete."""
    try:
        handle.seek(handle.frames - 1)
        return handle.read(1, dtype="float32", always_2d=True).shape[0] == 1
    except Exception:  # libsndfile cannot seek into a file cut short
        return False


def _read_soundfile(path, name=None, max_samples=None, sample_rate=None):
    """([channels, samples] float32, rate): all samples, or those that the first
    ``max_samples`` at ``sample_rate`` come from (:func:`source_samples`)."""
    name = name or path
    import soundfile

    try:
        with soundfile.SoundFile(path) as handle:
            declared, sr = handle.frames, handle.samplerate
            frames = source_samples(max_samples, sr, sample_rate)
            data = handle.read(-1 if frames is None else frames, dtype="float32", always_2d=True)
            complete = frames is None or data.shape[0] >= declared or _last_frame_reads(handle)
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError
        raise BadSampleError(name, f"cannot decode audio ({exc})") from exc
    if not complete:
        raise BadSampleError(
            name, f"truncated audio: the last of the {declared} frames declared in its header "
            "cannot be read (re-extract or re-download the file)")
    header = wav_declared_frames(path)
    present = declared  # libsndfile shortens the count of a wav cut short: its header tells
    if header is not None and header > declared:
        declared = header
    if present < declared or data.shape[0] < min(declared, frames or declared):
        found = present if present < declared else data.shape[0]
        raise BadSampleError(
            name, f"truncated audio: {found} of the {declared} frames declared in its header "
            "are present (re-extract or re-download the file)")
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


def _short_tolerance(declared):
    return max(SHORT_STREAM_TOLERANCE_S, 0.1 * declared)


def _end_decodes(container, stream, declared):
    """Whether the last second of an audio track that declares ``declared`` seconds decodes.

    A seek near the end and a decode of what follows: a file cut short is found without
    decoding all of it (a failed seek only answers ``False``).
    """
    start = stream.start_time or 0
    target = start + int((declared - TAIL_CHECK_S) / stream.time_base)
    end = None
    try:
        container.seek(max(target, start), stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.pts is not None:
                end = (float((frame.pts - start) * stream.time_base)
                       + frame.samples / frame.sample_rate)
    except Exception:
        return False
    return end is not None and end >= declared - _short_tolerance(declared)


def _samples_in_track(path):
    """Samples that the first audio track of ``path`` decodes to, decoding all of it."""
    if hasattr(path, "seek"):
        path.seek(0)
    decoded = 0
    with open_container(path) as container:
        try:
            for frame in container.decode(container.streams.audio[0]):
                decoded += frame.samples
        except Exception:
            pass  # counted up to the damage
    return decoded


def _read_container(path, name=None, max_samples=None, sample_rate=None):
    """([channels, samples] float32, rate) of a container's first audio track, on its video's
    timeline (:func:`~speechbrain_cavmae.data.containers.audio_lead`): all samples, or those
    that the first ``max_samples`` at ``sample_rate`` come from, decoding no further."""
    name = name or path
    try:
        container = open_container(path)
    except Exception as exc:
        raise BadSampleError(name, f"cannot open container ({exc})") from exc
    with container:
        if not container.streams.audio:
            raise BadSampleError(name, "no audio track")
        stream = container.streams.audio[0]
        sr = stream.rate or stream.codec_context.sample_rate
        frames = source_samples(max_samples, sr, sample_rate)
        lead = audio_lead(container, stream, sr)
        drop = max(-lead, 0)  # samples before the video's first frame
        wanted = None if frames is None else max(frames - lead, 0)  # track samples, dropped too
        chunks, decoded, ended = [], 0, True
        try:
            for frame in container.decode(stream):
                data = _frame_to_float(frame)
                start, decoded = decoded, decoded + data.shape[1]
                if decoded > drop:
                    chunks.append(data[:, max(drop - start, 0):])
                if wanted is not None and decoded >= wanted and chunks:
                    ended = False
                    break
        except Exception as exc:
            raise BadSampleError(name, f"cannot decode audio track ({exc})") from exc
        declared = None
        if stream.duration is not None and stream.time_base is not None:
            declared = float(stream.duration * stream.time_base)
        if not decoded:
            raise BadSampleError(name, "audio track has no decodable samples")
        damaged = declared is not None and not ended and not _end_decodes(container, stream,
                                                                           declared)
        channels = len(stream.layout.channels) if not chunks else chunks[0].shape[0]
    if damaged:  # how much is left of it
        decoded, ended = _samples_in_track(path), True
    seconds = decoded / float(sr)
    if ended and declared is not None and seconds < declared - _short_tolerance(declared):
        raise BadSampleError(
            name, f"truncated audio track: {seconds:.2f} s decoded of the {declared:.2f} s "
            "its container declares")
    parts = [np.zeros((channels, max(lead, 0)), np.float32)] + chunks
    data = np.concatenate(parts, axis=1)
    return (data if frames is None else data[:, :frames]), sr


def load_audio(path, sample_rate=16000, channel=None, name=None, max_samples=None):
    """Load a mono waveform from an audio file or a video container.

    A container's audio is aligned with its video (silence before a track that starts
    later, the lead of one that starts earlier dropped); see the module's docstring.

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
    max_samples : int, optional
        Return at most the first ``max_samples`` samples (at ``sample_rate``), reading only
        the part of the file they come from; they equal the first samples of a whole read
        (to float rounding).

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
    is_audio_file = os.path.splitext(name)[1].lower() in SOUNDFILE_EXTS
    reader = _read_soundfile if is_audio_file else _read_container
    data, sr = reader(path, name, max_samples, sample_rate)
    if data.shape[1] == 0:
        raise BadSampleError(name, "audio is empty (0 samples)")
    mono = torch.from_numpy(np.ascontiguousarray(_to_mono(data, channel, name)))
    if not torch.isfinite(mono).all():
        raise BadSampleError(name, "audio contains NaN or infinite samples")
    wav = resample(mono, sr, sample_rate)
    return wav if max_samples is None else wav[:max_samples]


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
