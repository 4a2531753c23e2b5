"""The frames the package picks are the ones the original extractor saves.

The reference is :func:`media.original_extractor_frames`: every frame of the clip decoded in
order with PyAV, the frames the original ``extract_video_frame.py`` reads chosen by its own
formula from the frame count and rate OpenCV reports. It does not use the package. It is
compared pixel for pixel

* with :func:`speechbrain_cavmae.data.frames.load_video_frames` (exactly: same decoder);
* with the JPEGs :func:`speechbrain_cavmae.tools.extract.save_frames` writes, against the original's
  ``Resize(224)`` + ``CenterCrop(224)`` of the reference frame (within JPEG tolerance);

on generated clips with awkward frame counts and rates (fewer than 10 frames, more than 10 s,
an NTSC rate, a 25/3 rate, 0.5 fps, variable frame rates) and on the two real clips of
``../shared/samples`` (skipped when absent). With ``cv2`` (opencv-python-headless) importable,
``test_opencv_reads_the_reference_frames`` also runs the original's OpenCV calls and checks the
reference's assumptions about them (frame count, rate, what a seek then ``read()`` returns).
"""

import os
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from media import (
    REAL_CLIPS,
    SHARED_SAMPLES,
    decode_index,
    original_extractor_frames,
    original_preprocess,
    write_vfr_video,
    write_video,
)
from speechbrain_cavmae.data.frames import load_video_frames
from speechbrain_cavmae.tools.extract import save_frames

# name: (frames, rate) of a constant frame rate clip, or the frame durations (ms) of a
# variable frame rate one
SYNTHETIC = {
    "7_frames": (7, 10),  # fewer frames than the 10 picked: repeats
    "10_frames": (10, 10),
    "11_frames": (11, 10),
    "29_frames_ntsc": (29, Fraction(30000, 1001)),
    "11_frames_25_3_fps": (11, Fraction(25, 3)),
    "130_frames_over_10_s": (130, 12.5),  # total capped at int(fps * 10) = 125
    "7_frames_half_fps": (7, 0.5),  # 14 s: total capped at 5
    "variable_rate": [40, 80, 40, 120, 40, 40, 200, 40, 80, 40, 40, 40, 100],
    "variable_rate_over_10_s": [40, 80] * 100 + [500] * 10,  # average 12.7 fps, capped
}
REAL = {clip[:-4]: os.path.join(SHARED_SAMPLES, clip) for clip in REAL_CLIPS}
VIDEOS = [*SYNTHETIC, *REAL]
JPEG_VIDEOS = [*SYNTHETIC, REAL_CLIPS[0][:-4]]  # the 720p clip: raw frames only (time)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    paths = {}
    for name, spec in SYNTHETIC.items():
        path = str(root / f"{name}.mp4")
        if isinstance(spec, list):
            write_vfr_video(path, spec)
        else:
            write_video(path, n_frames=spec[0], fps=spec[1], size=(64, 48), audio_freqs=())
        paths[name] = path
    return paths


def video_path(clips, name):
    if name in REAL:
        if not os.path.isdir(SHARED_SAMPLES):
            pytest.skip("../shared/samples not present")
        return REAL[name]
    return clips[name]


@pytest.mark.parametrize("name", VIDEOS)
def test_decoded_frames_are_the_originals(clips, name):
    path = video_path(clips, name)
    ref = original_extractor_frames(path)
    if name in SYNTHETIC:  # our files: the header count is the true count
        assert ref["count"] == ref["decoded"]
    ours = load_video_frames(path).permute(0, 2, 3, 1).numpy()
    assert ours.shape[0] == 10
    for i, k in enumerate(ref["read"]):
        expected = ref["frames"][k]
        if name in SYNTHETIC:
            assert decode_index(ours[i]) == k, f"frame {i}: got frame {decode_index(ours[i])}"
        assert np.array_equal(ours[i], expected), f"frame {i} is not frame {k}"


def jpeg_pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("name", JPEG_VIDEOS)
def test_extracted_jpegs_are_the_originals(clips, name, tmp_path):
    path = video_path(clips, name)
    ref = original_extractor_frames(path)
    out = [str(tmp_path / f"frame_{i}.jpg") for i in range(10)]
    save_frames(path, out)
    for i, k in enumerate(ref["read"]):
        expected = (original_preprocess(ref["frames"][k]) * 255 + 0.5).clamp(0, 255)
        expected = expected.to(torch.uint8).permute(1, 2, 0).numpy().astype(np.int16)
        got = jpeg_pixels(out[i])
        assert got.shape == (224, 224, 3)
        error = np.abs(got - expected)
        # JPEG quality 75: a few levels on average, more at edges
        assert error.mean() < 2.5 and np.percentile(error, 99) <= 24, (i, error.mean())
        for other in {k - 1, k + 1} & set(ref["frames"]) - {k}:
            # a neighbouring frame is farther (where the two differ at all)
            neighbour = (original_preprocess(ref["frames"][other]) * 255 + 0.5).clamp(0, 255)
            neighbour = neighbour.to(torch.uint8).permute(1, 2, 0).numpy().astype(np.int16)
            if np.abs(neighbour - expected).mean() > 1.0:
                assert error.mean() < np.abs(got - neighbour).mean()


@pytest.mark.parametrize("name", VIDEOS)
def test_opencv_reads_the_reference_frames(clips, name):
    """The original's own calls (src/preprocess/extract_video_frame.py), when cv2 is there."""
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless not installed")
    path = video_path(clips, name)
    ref = original_extractor_frames(path)
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    assert count == ref["count"] and abs(fps - ref["fps"]) < 1e-9
    total = min(count, int(fps * 10))
    for i in range(10):
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(i * (total / 10)) - 1)
        ok, frame = capture.read()
        assert ok
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB).astype(np.int16)
        k = ref["read"][i]
        if name in SYNTHETIC:
            assert decode_index(frame) == k
        assert np.abs(frame - ref["frames"][k]).mean() < 0.5
    capture.release()
