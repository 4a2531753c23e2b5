"""The whole path on the two real clips of ../shared/samples (skipped when absent).

On-the-fly decoding (mp4 -> fbank + frames) is compared with an independent
emulation of the original two-step path (ffmpeg-style 16 kHz wav of the first
channel, OpenCV-style frame seek, torchvision Resize + save_image JPEG, the
original loader's transforms), and with our own extraction CLI.
"""

import json
import os

import numpy as np
import pytest
import torch

from media import (
    REAL_CLIPS,
    SHARED_SAMPLES,
    original_frames,
    original_loader_fbank,
    original_loader_image,
    original_wav,
)
from speechbrain_cavmae.data.dataset import build_dataset
from speechbrain_cavmae.data.frames import sample_frame_indices, video_info

pytestmark = pytest.mark.skipif(not os.path.isdir(SHARED_SAMPLES), reason="../shared/samples not present")


def corr(a, b):
    return float(np.corrcoef(a.flatten().double().numpy(), b.flatten().double().numpy())[0, 1])


@pytest.fixture(scope="module")
def original_path(tmp_path_factory):
    """Per clip: (fbank [1024, 128], frames [10, 3, 224, 224], frame numbers read)."""
    out = tmp_path_factory.mktemp("original")
    result = {}
    for clip in REAL_CLIPS:
        video_id = clip[:-4]
        wav = original_wav(os.path.join(SHARED_SAMPLES, clip), str(out / f"{video_id}.wav"))
        read = original_frames(os.path.join(SHARED_SAMPLES, clip), str(out / "frames"), video_id)
        frames = torch.stack([original_loader_image(str(out / "frames" / f"frame_{i}" / f"{video_id}.jpg"))
                              for i in range(10)])
        result[video_id] = (original_loader_fbank(wav), frames, read)
    return result


@pytest.fixture(scope="module")
def on_the_fly(tmp_path_factory):
    manifest = tmp_path_factory.mktemp("fly") / "clips.json"
    manifest.write_text(json.dumps({c[:-4]: {"video": os.path.join(SHARED_SAMPLES, c), "labels": []}
                                    for c in REAL_CLIPS}))
    ds = build_dataset(str(manifest), None, {"multi_frame": True}, train=False)
    return {item["id"]: item for item in (ds[0], ds[1])}


def test_decoding_gives_10_frames_and_full_fbank(on_the_fly):
    for item in on_the_fly.values():
        assert item["fbank"].shape == (1024, 128)
        assert item["frames"].shape == (10, 3, 224, 224)
        assert item["frame"].shape == (3, 224, 224)


def test_frame_indices_match_original_extractor(original_path):
    for clip in REAL_CLIPS:
        n, fps, _, _ = video_info(os.path.join(SHARED_SAMPLES, clip))
        assert sample_frame_indices(n, fps) == original_path[clip[:-4]][2]


def test_on_the_fly_correlates_with_original_two_step_path(original_path, on_the_fly):
    for video_id, (fbank, frames, _) in original_path.items():
        item = on_the_fly[video_id]
        assert corr(item["fbank"], fbank) > 0.999
        assert corr(item["frames"], frames) > 0.99
        # Correlation ignores scale and offset, so a wrong normalisation would pass it: the
        # levels must agree too (measured: fbank mean difference < 1e-5, std ratio
        # 1 + 8e-6, mean |difference| < 1e-3; frames mean difference 1e-3, std ratio
        # 1 + 1e-3, mean |difference| < 0.08, normalised units).
        for ours, theirs, offset, ratio, mae in ((item["fbank"], fbank, 1e-3, 1e-3, 0.01),
                                                 (item["frames"], frames, 0.01, 0.01, 0.15)):
            assert abs(float((ours - theirs).mean())) < offset
            assert abs(float(ours.std() / theirs.std()) - 1) < ratio
            assert float((ours - theirs).abs().mean()) < mae
        for k in range(10):
            assert corr(item["frames"][k], frames[k]) > 0.98


def test_extract_cli_reproduces_original_path(original_path, tmp_path):
    from speechbrain_cavmae.cli import main as cavmae

    listing = tmp_path / "videos.csv"
    listing.write_text("\n".join(os.path.join(SHARED_SAMPLES, c) for c in REAL_CLIPS) + "\n")
    manifest = tmp_path / "extracted.json"
    args = ["extract", "--videos", str(listing), "--output", str(tmp_path / "out"),
            "--write_manifest", str(manifest)]
    assert cavmae(args) == 0
    ds = build_dataset(str(manifest), None, {"multi_frame": True, "frame_source": "extracted"}, train=False)
    for i in range(2):
        item = ds[i]
        fbank, frames, _ = original_path[item["id"]]
        # same samples up to 16-bit rounding (visible in near-silent bins only)
        assert corr(item["fbank"], fbank) > 0.99999 and (item["fbank"] - fbank).abs().max() < 0.05
        assert corr(item["frames"], frames) > 0.995
    # resumable: a second run skips both videos
    assert cavmae(args) == 0
    assert len(list((tmp_path / "out" / "frames").glob("frame_*/*.jpg"))) == 20
