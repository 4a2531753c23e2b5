"""``open_container`` skips the probe's frame decoding and changes nothing else.

Frames (pts and RGB pixels) and audio samples read through
:func:`speechbrain_cavmae.data.containers.open_container` must equal those of a plain
``av.open``, on the two real clips (an edit list, B-frames, AAC) and on generated clips in
the other containers and codecs users feed the extractor: Matroska, MPEG-TS (whose streams
are only known after probing), raw H.264 (no timestamps), AVI with MPEG-4 part 2, and WebM
with VP9 when the encoder is available.
"""

import hashlib
import os

import av
import numpy as np
import pytest

from media import REAL_CLIPS, SHARED_SAMPLES, transcode, write_video
from speechbrain_cavmae.data.containers import open_container

GENERATED = {  # name: (container format, video codec, encoder options)
    "clip.mkv": ("matroska", "libx264", {"x264-params": "keyint=8:bframes=3"}),
    "clip.ts": ("mpegts", "libx264", {"x264-params": "keyint=8:bframes=3"}),
    "clip.h264": ("h264", "libx264", {"x264-params": "keyint=8:bframes=3"}),
    "clip.avi": ("avi", "mpeg4", {"bf": "2", "g": "8"}),
    "clip.webm": ("webm", "libvpx-vp9", {"g": "8"}),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("containers")
    source = write_video(str(d / "source.mp4"), n_frames=24, fps=12, size=(64, 48))
    out = {"generated.mp4": source}
    for name, (fmt, codec, options) in GENERATED.items():
        try:
            av.codec.Codec(codec, "w")
        except Exception:  # e.g. a PyAV build without libvpx
            continue
        out[name] = transcode(source, str(d / name), codec, options, fmt)
    if os.path.isdir(SHARED_SAMPLES):
        out.update({clip: os.path.join(SHARED_SAMPLES, clip) for clip in REAL_CLIPS})
    return out


def _read(opener, path):
    """(video frames as (pts, sha1 of the decoded planes), video info, audio samples, audio info)."""
    frames, samples, video_info, audio_info = [], None, None, None
    with opener(path) as container:
        if container.streams.video:
            stream = container.streams.video[0]
            video_info = (stream.frames, stream.average_rate, stream.codec_context.width)
            frames = [(f.pts, hashlib.sha1(f.to_ndarray().tobytes()).hexdigest())
                      for f in container.decode(stream)]
    with opener(path) as container:
        if container.streams.audio:
            stream = container.streams.audio[0]
            audio_info = (stream.rate, stream.layout.name, stream.duration)
            samples = np.concatenate([f.to_ndarray() for f in container.decode(stream)], axis=1)
    return frames, video_info, samples, audio_info


def test_open_container_reads_what_av_open_reads(clips):
    assert {"generated.mp4", "clip.mkv", "clip.ts", "clip.h264", "clip.avi"} <= set(clips)
    for name, path in clips.items():
        expected, got = _read(av.open, path), _read(open_container, path)
        assert expected[0], name
        assert got[0] == expected[0], f"{name}: decoded frames differ"
        assert got[1] == expected[1], f"{name}: video stream info differs"
        assert got[3] == expected[3], f"{name}: audio stream info differs"
        if expected[2] is not None:
            assert np.array_equal(got[2], expected[2]), f"{name}: audio samples differ"
