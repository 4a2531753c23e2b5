"""Seeking video decoding gives the frames of a sequential decode, frame for frame.

``load_video_frames`` seeks to the keyframe before each wanted frame; these tests decode
each frame on its own (one seek per call) and compare it with the sequential decode
(``seek=False``) on generated clips with keyframes every 8 frames and B-frames (closed and
open GOPs), a variable frame rate clip, and the two real clips of ``../shared``.
"""

import logging
import os

import numpy as np
import pytest
import torch

from media import REAL_CLIPS, SHARED_SAMPLES, write_vfr_video, write_video
from speechbrain_cavmae.data.frames import load_video_frames


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("seek")
    gop = "keyint=8:min-keyint=8:scenecut=0:bframes=3:b-pyramid=normal"
    return {
        "closed_gop": write_video(str(d / "closed.mp4"), n_frames=40, fps=10, x264_params=gop),
        "open_gop": write_video(str(d / "open.mp4"), n_frames=40, fps=10,
                                x264_params=gop + ":open-gop=1"),
        "vfr": write_vfr_video(str(d / "vfr.mp4"), [40, 80, 40, 120, 40] * 8),
    }


def _no_fallback(caplog):
    assert not [r for r in caplog.records if "decoding sequentially" in r.getMessage()]


@pytest.mark.parametrize("key", ["closed_gop", "open_gop", "vfr"])
def test_seeking_equals_sequential_on_every_frame(clips, key, caplog):
    path = clips[key]
    # n = span = every frame: index i is frame max(i - 1, 0), so each frame is wanted once
    n = 40
    sequential = load_video_frames(path, n=n, span_s=1000.0, seek=False)
    with caplog.at_level(logging.DEBUG, logger="speechbrain_cavmae.data.frames"):
        for i in range(n):
            alone = load_video_frames(path, n=n, span_s=1000.0, indices=[i])
            assert torch.equal(alone[0], sequential[i]), f"{key}: frame {i} differs"
        together = load_video_frames(path, n=n, span_s=1000.0, indices=[30, 3, 17, 3])
    _no_fallback(caplog)
    assert torch.equal(together, sequential[[30, 3, 17, 3]])
    # the content itself (bytes), as a shard holding the clip gives it
    with open(path, "rb") as handle:
        content = handle.read()
    assert torch.equal(load_video_frames(content, n=n, span_s=1000.0, indices=[25],
                                         name="clip.mp4")[0], sequential[25])


@pytest.mark.skipif(not os.path.isdir(SHARED_SAMPLES), reason="../shared/samples not present")
@pytest.mark.parametrize("clip", REAL_CLIPS)
def test_seeking_equals_sequential_on_the_real_clips(clip, caplog):
    path = os.path.join(SHARED_SAMPLES, clip)
    sequential = load_video_frames(path, seek=False)
    with caplog.at_level(logging.DEBUG, logger="speechbrain_cavmae.data.frames"):
        # 720p clip: keyframes at frames 0 (in an edit list's pre-roll), 59 and 219;
        # its frames 0 / 88 / 238 (i = 0 / 3 / 8) start from each of them
        for i in (0, 3, 8):
            assert torch.equal(load_video_frames(path, indices=[i])[0], sequential[i]), i
        assert torch.equal(load_video_frames(path), sequential)
    _no_fallback(caplog)


# -- the container's display rotation -------------------------------------------------

def _quadrant_picture(k, size=(64, 48)):
    """A black picture whose top-left quadrant is red: its orientation can be told."""
    width, height = size
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[: height // 2, : width // 2] = (255, 0, 0)
    return img


# display matrix (counter-clockwise degrees, hflip) -> the picture a player shows
ROTATIONS = {
    "cw90": ((-90, False), lambda img: np.rot90(img, -1)),   # a phone's portrait video
    "ccw90": ((90, False), lambda img: np.rot90(img, 1)),
    "180": ((180, False), lambda img: img[::-1, ::-1]),
    "mirror": ((0, True), lambda img: img[:, ::-1]),
    "cw90_mirror": ((-90, True), lambda img: np.rot90(img, -1)[:, ::-1]),
}


@pytest.mark.parametrize("key", sorted(ROTATIONS))
def test_frames_are_rotated_as_players_show_them(tmp_path, key):
    rotation, shown = ROTATIONS[key]
    path = write_video(str(tmp_path / f"{key}.mp4"), n_frames=40, fps=10, audio_freqs=(),
                       rotation=rotation, picture=_quadrant_picture,
                       x264_params="keyint=8:min-keyint=8:scenecut=0:bframes=3")
    expected = shown(_quadrant_picture(0)).astype(np.int16)
    for seek in (True, False):
        frames = load_video_frames(path, n=10, seek=seek)
        assert frames.shape[2:] == expected.shape[:2], (key, seek)
        for frame in frames:
            error = np.abs(frame.permute(1, 2, 0).numpy().astype(np.int16) - expected)
            assert error.mean() < 4, (key, seek, error.mean())  # the codec's loss only


def test_rotate_tag_of_old_ffmpeg_and_odd_angles():
    """FFmpeg before 5.0 exported the rotation as a ``rotate`` tag (clockwise degrees); an
    angle that is not a multiple of 90 degrees is an error naming the file."""
    from types import SimpleNamespace

    from speechbrain_cavmae.data.errors import BadSampleError
    from speechbrain_cavmae.data.frames import _rotation_matrix, display_matrix, orient

    class Frame(SimpleNamespace):
        side_data = {}

    matrix = display_matrix(Frame(), SimpleNamespace(metadata={"rotate": "90"}))
    img = _quadrant_picture(0)
    assert np.array_equal(orient(img, matrix), np.rot90(img, -1))
    assert display_matrix(Frame(), SimpleNamespace(metadata={})) is None
    with pytest.raises(BadSampleError, match="rotates by 45 degrees") as info:
        orient(img, _rotation_matrix(45), "x.mp4")
    assert info.value.path == "x.mp4"
