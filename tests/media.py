"""Synthetic media for the data-pipeline tests (written with PyAV / soundfile).

Video frame ``k`` is a solid colour that encodes ``k``:
the base-16 digits of ``k`` (low to high in R, G, B) are stored as
``16 * digit + 8``, so a decoded frame can be identified despite lossy coding
(:func:`decode_index`; up to 4095 frames).
Audio is a sine tone per channel.
"""

import functools
import json
import os
from fractions import Fraction

import numpy as np


def index_colour(k):
    return np.array([16 * (k % 16) + 8, 16 * ((k // 16) % 16) + 8, 16 * (k // 256) + 8], dtype=np.uint8)


def decode_index(frame_hwc):
    """Frame index from a decoded [H, W, 3] uint8 frame (centre pixels)."""
    h, w = frame_hwc.shape[:2]
    r, g, b = frame_hwc[h // 4: 3 * h // 4, w // 4: 3 * w // 4].reshape(-1, 3).mean(0)
    return sum(int(round((c - 8) / 16)) * 16 ** i for i, c in enumerate((r, g, b)))


def tone(freq, seconds, rate, amp=0.5):
    t = np.arange(int(round(seconds * rate))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_video(path, n_frames=20, fps=10, size=(64, 48), audio_freqs=(440.0,),
                audio_rate=44100, audio_seconds=None, colours=None, x264_params=None,
                audio_start=0.0, rotation=None, picture=None, audio_signal=None):
    """Write an mp4 (h264 + optional aac).

    Arguments
    ---------
    path : str
    n_frames : int
    fps : float or Fraction
    size : (width, height)
    audio_freqs : tuple of float
        One tone per audio channel; empty -> no audio track.
    audio_seconds : float, optional
        Audio duration (default: video duration).
    colours : callable k -> [3] uint8, optional
        Frame colour (default :func:`index_colour`).
    x264_params : str, optional
        libx264 options, e.g. ``"keyint=8:bframes=3:open-gop=1"`` for keyframes every
        8 frames and B-frames (the default preset writes neither).
    audio_start : float
        Seconds by which the audio track starts after the video (negative: the video
        starts ``-audio_start`` seconds after the audio), as timestamps of the container.
    rotation : float or (float, bool), optional
        Display matrix of the video track: counter-clockwise degrees, or (degrees, hflip)
        (``VideoStream.set_display_rotation``); players rotate the pictures by it.
    picture : callable k -> [height, width, 3] uint8, optional
        Frame ``k`` as a picture (instead of a solid ``colours(k)``).
    audio_signal : array, optional
        ``[samples]`` mono audio at ``audio_rate`` written instead of the tones.
    """
    import av

    colours = colours or index_colour
    width, height = size
    rate = Fraction(fps).limit_denominator(1001)
    container = av.open(path, "w")
    vstream = container.add_stream("libx264", rate=rate)
    vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
    vstream.options = {"crf": "10", "preset": "ultrafast"}
    if x264_params:
        vstream.options = {**vstream.options, "x264-params": x264_params}
    if rotation is not None:
        degrees, hflip = rotation if isinstance(rotation, tuple) else (rotation, False)
        vstream.set_display_rotation(degrees, hflip=hflip)
    video_delay = int(round(max(-audio_start, 0.0) * float(rate)))  # in frames
    astream = None
    if audio_signal is not None:
        audio_freqs = (0.0,)
    if audio_freqs:
        channels = len(audio_freqs)
        astream = container.add_stream("aac", rate=audio_rate)
        astream.layout = "stereo" if channels == 2 else "mono"
    for k in range(n_frames):
        if picture is not None:
            img = np.asarray(picture(k), dtype=np.uint8)
        else:
            img = np.empty((height, width, 3), dtype=np.uint8)
            img[:] = colours(k)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        if video_delay:
            frame.pts, frame.time_base = k + video_delay, 1 / rate
        for packet in vstream.encode(frame):
            container.mux(packet)
    for packet in vstream.encode():
        container.mux(packet)
    if astream is not None:
        seconds = audio_seconds if audio_seconds is not None else n_frames / float(rate)
        data = np.stack([tone(f, seconds, audio_rate) for f in audio_freqs])
        if audio_signal is not None:
            data = np.asarray(audio_signal, np.float32)[None]
        chunk = 1024
        for start in range(0, data.shape[1], chunk):
            piece = np.ascontiguousarray(data[:, start:start + chunk])
            frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout=astream.layout.name)
            frame.sample_rate = audio_rate
            frame.pts = start + int(round(max(audio_start, 0.0) * audio_rate))
            for packet in astream.encode(frame):
                container.mux(packet)
        for packet in astream.encode():
            container.mux(packet)
    container.close()
    return path


def transcode(source, path, codec="libx264", options=None, fmt=None):
    """The video track of ``source`` re-encoded into ``path`` (yuv420p, the same size and
    rate, no audio): the same pictures in another codec, container or keyframe spacing.

    Arguments
    ---------
    source, path : str
    codec : str
        Encoder, e.g. ``"libx264"``, ``"mpeg4"``, ``"libvpx-vp9"``.
    options : dict, optional
        Encoder options, e.g. ``{"x264-params": "keyint=30:bframes=3"}``.
    fmt : str, optional
        Container format (default: from the file name).
    """
    import av

    with av.open(source) as inp, av.open(path, "w", format=fmt) as out:
        src = inp.streams.video[0]
        dst = out.add_stream(codec, rate=src.average_rate)
        dst.width, dst.height = src.codec_context.width, src.codec_context.height
        dst.pix_fmt = "yuv420p"
        dst.options = dict(options or {})
        for frame in inp.decode(src):
            fresh = av.VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p"), format="yuv420p")
            for packet in dst.encode(fresh):
                out.mux(packet)
        for packet in dst.encode():
            out.mux(packet)
    return path


def write_vfr_video(path, durations_ms, size=(64, 48)):
    """Write a variable frame rate mp4 (h264, no audio): frame ``k`` (:func:`index_colour`)
    lasts ``durations_ms[k]`` milliseconds."""
    import av

    width, height = size
    container = av.open(path, "w")
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
    stream.options = {"crf": "10", "preset": "ultrafast"}
    pts = 0
    for k, duration in enumerate(durations_ms):
        img = np.empty((height, width, 3), dtype=np.uint8)
        img[:] = index_colour(k)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = pts, Fraction(1, 1000)
        pts += duration
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def write_wav(path, data, rate=16000, subtype="PCM_16"):
    import soundfile

    soundfile.write(path, np.asarray(data).T if np.ndim(data) == 2 else data, rate, subtype=subtype)
    return path


def write_long_wav(path, seconds, rate=44100, start=None, data=None):
    """A mono 16-bit wav of ``seconds`` seconds that costs little to write: ``data`` (float,
    at ``start`` seconds) and silence elsewhere, the silence after it left as a hole in the
    file (a sparse file where the file system allows it; zeros when read)."""
    import struct

    frames = int(round(seconds * rate))
    size = 2 * frames
    with open(path, "wb") as handle:
        handle.write(b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE")
        handle.write(b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16))
        handle.write(b"data" + struct.pack("<I", size))
        if data is not None:
            pcm = np.round(np.clip(np.asarray(data, np.float64), -1, 1) * 32767).astype("<i2")
            handle.seek(44 + 2 * int(round(start * rate)))
            handle.write(pcm.tobytes())
        handle.truncate(44 + size)
    return path


def write_frames(folder, video_id, n=10, size=224, colours=None):
    """The original layout ``folder/frame_{i}/{video_id}.jpg``."""
    from PIL import Image

    colours = colours or index_colour
    for i in range(n):
        os.makedirs(os.path.join(folder, f"frame_{i}"), exist_ok=True)
        img = np.empty((size, size, 3), dtype=np.uint8)
        img[:] = colours(i)
        Image.fromarray(img).save(os.path.join(folder, f"frame_{i}", f"{video_id}.jpg"))
    return folder


def write_original_manifest(path, entries):
    """entries: list of dicts with video_id, wav, video_path, labels (str)."""
    with open(path, "w") as handle:
        json.dump({"data": entries}, handle)
    return path


def write_label_csv(path, mids):
    with open(path, "w") as handle:
        handle.write("index,mid,display_name\n")
        for i, mid in enumerate(mids):
            handle.write(f'{i},{mid},"name {i}"\n')
    return path


# --------------------------------------------------------------------------
# Emulation of the original two-step CAV-MAE preprocessing, written
# independently of the package (PyAV + torchaudio + torchvision), used to
# check that on-the-fly decoding agrees with it.

SHARED_SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                              "shared", "samples")
REAL_CLIPS = ("00W1lcxW-WU_40.000.mp4", "KlsG1EnBEjc_000361.mp4")


def original_wav(video, out_wav):
    """``ffmpeg -i video -vn -ar 16000`` then ``sox remix 1``: 16-bit mono wav."""
    import av
    import soundfile
    import torch
    import torchaudio

    with av.open(video) as container:
        stream = container.streams.audio[0]
        rate = stream.rate
        chunks = [f.to_ndarray() for f in container.decode(stream)]
    data = torch.from_numpy(np.concatenate(chunks, axis=1)).float()  # fltp [ch, n]
    data = torchaudio.functional.resample(data, rate, 16000)  # all channels, like ffmpeg
    soundfile.write(out_wav, data[0].clamp(-1, 1).numpy(), 16000, subtype="PCM_16")
    return out_wav


@functools.lru_cache(maxsize=None)
def original_extractor_frames(video, n=10):
    """The frames the original ``src/preprocess/extract_video_frame.py`` reads, found
    without the package: every frame of the video is decoded in order with PyAV.

    The original computes ``total = min(CAP_PROP_FRAME_COUNT, int(CAP_PROP_FPS * 10))`` and,
    for frame ``i``, calls ``set(CAP_PROP_POS_FRAMES, int(i * (total / n)) - 1)`` then
    ``read()``. OpenCV's FFmpeg backend reports the container's frame count (``nb_frames``,
    which may exceed the decodable frames: 400 for 299 in one real clip) and the average
    frame rate (not the guessed one: they differ on variable frame rate files); after a seek
    to ``k`` its next ``read()`` returns the 0-based frame ``k``, after a seek to ``-1``
    frame 0. ``test_frame_reference.py`` checks these against OpenCV itself when ``cv2`` is
    installed.

    Returns
    -------
    dict
        ``read`` (the 0-based frame read for each ``i``), ``frames`` ({index: [H, W, 3]
        uint8} of those and of their neighbours), ``decoded`` (frames decodable), ``count`` (the container's frame
        count), ``fps`` (average rate) and ``total``. Cached per (video, n): do not modify.
    """
    import av

    with av.open(video) as container:
        stream = container.streams.video[0]
        count = int(stream.frames)
        assert count > 0, f"{video}: the container does not give a frame count"
        fps = float(stream.average_rate)
        total = min(count, int(fps * 10))
        read = [max(int(i * (total / n)) - 1, 0) for i in range(n)]
        keep = {j for k in read for j in (k - 1, k, k + 1)}  # the neighbours too
        frames, decoded = {}, 0
        for k, frame in enumerate(container.decode(stream)):
            decoded += 1
            if k in keep:
                frames[k] = frame.to_ndarray(format="rgb24")
    missing = sorted(set(read) - set(frames))
    assert not missing, f"{video}: frames {missing} are not decodable ({decoded} are)"
    return {"read": read, "frames": frames, "decoded": decoded, "count": count, "fps": fps,
            "total": total}


def original_preprocess(frame_hwc):
    """The original extractor's ``Resize(224)`` + ``CenterCrop(224)`` + ``ToTensor``."""
    import torchvision.transforms as T
    from PIL import Image

    return T.Compose([T.Resize(224), T.CenterCrop(224), T.ToTensor()])(Image.fromarray(frame_hwc))


def original_frames(video, out_dir, video_id, n=10):
    """extract_video_frame.py: the frames of :func:`original_extractor_frames`, Resize(224),
    CenterCrop, save_image."""
    from torchvision.utils import save_image

    ref = original_extractor_frames(video, n)
    for i, frame_no in enumerate(ref["read"]):
        os.makedirs(os.path.join(out_dir, f"frame_{i}"), exist_ok=True)
        save_image(original_preprocess(ref["frames"][frame_no]),
                   os.path.join(out_dir, f"frame_{i}", f"{video_id}.jpg"))
    return ref["read"]


def original_loader_image(path):
    """The original data loader's image transform on a saved JPEG."""
    import torchvision.transforms as T
    from PIL import Image

    prep = T.Compose([
        T.Resize(224, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224), T.ToTensor(),
        T.Normalize(mean=[0.4850, 0.4560, 0.4060], std=[0.2290, 0.2240, 0.2250])])
    return prep(Image.open(path))


def original_loader_fbank(wav_path, audio_length=1024, mean=-5.081, std=4.4849):
    """The original data loader's fbank from a wav file."""
    import soundfile
    import torch
    import torchaudio

    data, rate = soundfile.read(wav_path, dtype="float32", always_2d=True)
    waveform = torch.from_numpy(data.T.copy())
    waveform = waveform - waveform.mean()
    fbank = torchaudio.compliance.kaldi.fbank(
        waveform, htk_compat=True, sample_frequency=rate, use_energy=False,
        window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)
    p = audio_length - fbank.shape[0]
    fbank = torch.nn.functional.pad(fbank, (0, 0, 0, p)) if p > 0 else fbank[:audio_length]
    return (fbank - mean) / std
