"""CAV-MAE Sync pairing of frames and audio segments (issue 27 item 4).

The segment bounds are checked against a formula written here from the semantics of the
Sync authors' ``map_frame_to_spectrogram`` (``src/dataloader_sync.py``): frame ``k`` of
``n`` sits at ``k * L / n`` fbank frames rounded half to even, its segment of ``S`` frames
starts ``S // 2`` before it and is shifted into ``[0, L)`` at the clip's ends. The input
pipeline is checked to return, for each frame, that frame's picture and the slice of the
whole clip's fbank, from extracted frames, from video decoded on the fly and from shards.
"""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from media import write_frames, write_original_manifest, write_video, write_wav
from test_data_dataset import frame_index as picture_index  # colour-coded frame number
from speechbrain_cavmae.data.dataset import build_dataset, collate_av, resolve_config
from speechbrain_cavmae.data.fbank import compute_fbank
from speechbrain_cavmae.data.frames import (
    frame_segment,
    frame_segments,
    sample_frame_indices,
    segment_seconds,
)

N = 16
CLIP = 200  # fbank frames of the whole clip (CAV-MAE: 1024)
SEG = 32  # fbank frames of a segment (Sync: 96 ... 1024)
CONFIG = {"n_frames": N, "clip_length": CLIP, "audio_length": SEG, "image_size": 32,
          "frame_segments": True}


def expected_segment(k, n, length, seg):
    """Independent statement of their mapping (exact arithmetic, explicit rounding)."""
    exact = Fraction(k * length, n)
    low = math.floor(exact)
    if exact - low > Fraction(1, 2) or (exact - low == Fraction(1, 2) and low % 2 == 1):
        centre = low + 1  # Python's round: halves go to the even neighbour
    else:
        centre = low
    start = min(max(0, centre - seg // 2), max(0, length - seg))
    return start, min(start + seg, length)


@pytest.mark.parametrize("length", [1024, 1000, 998, 200, 37, 5])
@pytest.mark.parametrize("n", [16, 10, 7, 3, 1])
def test_segment_bounds_match_their_formula(length, n):
    for seg in (1, 2, 15, 16, 32, 96, 97, 416, 1024, 2000):
        got = frame_segments(n, length, seg)
        assert got == [expected_segment(k, n, length, seg) for k in range(n)], (n, length, seg)
        for start, end in got:
            assert 0 <= start < end <= length and end - start == min(seg, length)


def test_segment_edges_and_rounding():
    # Sync's 16 frames over 1024 fbank frames, 96-frame segments: clamped at both ends
    assert frame_segment(0, 16, 1024, 96) == (0, 96)
    assert frame_segment(15, 16, 1024, 96) == (912, 1008)
    assert frame_segment(15, 16, 1024, 416) == (608, 1024)  # shifted left at the end
    # 5 * 40 / 16 = 12.5 rounds to 12, 7 * 40 / 16 = 17.5 to 18 (half to even)
    assert frame_segment(5, 16, 40, 4) == (10, 14)
    assert frame_segment(7, 16, 40, 4) == (16, 20)
    assert frame_segment(3, 16, 1024, 1024) == (0, 1024)  # plain CAV-MAE: the whole clip
    assert segment_seconds(*frame_segment(8, 16, 1024, 96)) == (4.64, 5.6)
    with pytest.raises(ValueError, match="not one of the 16 frames"):
        frame_segment(16, 16, 1024, 96)


def test_config_checks():
    with pytest.raises(ValueError, match="audio_length=300 .* clip_length=200"):
        resolve_config(dict(CONFIG, audio_length=300))
    with pytest.raises(ValueError, match="features_on_device: False"):
        resolve_config(dict(CONFIG, features_on_device=True))
    with pytest.raises(ValueError, match="clip_length=0"):
        resolve_config(dict(CONFIG, clip_length=0))
    with pytest.raises(ValueError, match="frame_index=16 .* n_frames=16"):
        resolve_config(dict(CONFIG, frame_index=16), train=False)
    assert resolve_config()["frame_segments"] is False  # CAV-MAE unchanged by default


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two clips of noise (1.5 s: shorter than CLIP, so the last segments reach the
    padding; 2.5 s: longer, cut), as wav + extracted frames and as mp4 video."""
    d = tmp_path_factory.mktemp("sync_data")
    rng = np.random.default_rng(0)
    extracted, video = [], []
    for i, seconds in enumerate((1.5, 2.5)):
        vid = f"clip{i}"
        wav = write_wav(str(d / f"{vid}.wav"), 0.3 * rng.standard_normal(int(seconds * 16000)))
        write_frames(str(d / "frames"), vid, n=N, size=32)
        extracted.append({"video_id": vid, "wav": wav, "video_path": str(d / "frames"),
                          "labels": "/m/a"})
        mp4 = write_video(str(d / f"{vid}.mp4"), n_frames=40, fps=16, size=(48, 32),
                          audio_rate=16000)
        video.append({"video_id": vid, "wav": wav, "video": mp4, "labels": "/m/a"})
    return {"dir": d,
            "extracted": write_original_manifest(str(d / "extracted.json"), extracted),
            "video": write_original_manifest(str(d / "video.json"), video),
            "wavs": {e["video_id"]: e["wav"] for e in extracted},
            "mp4_frames": sample_frame_indices(40, 16, N)}


def whole_fbank(path):
    import soundfile

    data, rate = soundfile.read(path, dtype="float32")
    return compute_fbank(torch.from_numpy(data), rate, 128, CLIP)


def check_pairs(data, clips, picture_of):
    """Every frame k of every clip comes with its picture and fbank[start:end]."""
    seen = set()
    for i in range(len(data)):
        item = data[i]
        full = whole_fbank(clips["wavs"][item["id"]])
        assert item["fbanks"].shape == (N, SEG, 128) and item["frames"].shape[0] == N
        for k in range(N):
            start, end = expected_segment(k, N, CLIP, SEG)
            assert torch.allclose(item["fbanks"][k], full[start:end], atol=1e-4), (
                k, (item["fbanks"][k] - full[start:end]).abs().max())
            assert picture_index(item["frames"][k]) == picture_of(k)
        middle = N // 2
        assert torch.equal(item["fbank"], item["fbanks"][middle])
        assert torch.equal(item["frame"], item["frames"][middle])
        seen.add(item["id"])
    assert seen == {"clip0", "clip1"}


def test_pairs_from_extracted_frames(clips):
    data = build_dataset(clips["extracted"], config=dict(CONFIG, multi_frame=True), train=False)
    check_pairs(data, clips, lambda k: k)
    # the padded tail: clip0 has 148 fbank frames, frame 15's segment [168, 200) is padding
    assert frame_segment(15, N, CLIP, SEG)[0] > 148


def test_pairs_from_video(clips):
    data = build_dataset(clips["video"], config=dict(CONFIG, multi_frame=True,
                                                     frame_source="video"), train=False)
    check_pairs(data, clips, lambda k: clips["mp4_frames"][k])


def test_pairs_from_shards(clips):
    pytest.importorskip("webdataset")
    from speechbrain_cavmae.data.shard_writer import shard_manifest
    from speechbrain_cavmae.data.shards import build_shard_dataset

    out = clips["dir"] / "shards"
    shard_manifest(clips["extracted"], str(out), shard_size=2, config={"n_frames": N})
    data = build_shard_dataset(str(out / "train-000000.tar"),
                               config=dict(CONFIG, multi_frame=True), train=False)
    items = list(data)
    assert len(items) == 2
    check_pairs(items, clips, lambda k: k)


def test_training_draws_a_random_frame_with_its_segment(clips):
    torch.manual_seed(0)
    data = build_dataset(clips["extracted"], config=CONFIG, train=True)
    full = whole_fbank(clips["wavs"]["clip1"])
    drawn = set()
    for _ in range(40):
        item = data[1]
        k = picture_index(item["frame"])
        start, end = expected_segment(k, N, CLIP, SEG)
        assert item["fbank"].shape == (SEG, 128)
        assert torch.allclose(item["fbank"], full[start:end], atol=1e-4), k
        drawn.add(k)
    assert len(drawn) >= 8  # random frames, not one fixed
    assert "fbanks" not in item and "frames" not in item


def test_eval_frame_index_and_batches(clips):
    data = build_dataset(clips["extracted"], config=dict(CONFIG, frame_index=3), train=False)
    item = data[0]
    assert picture_index(item["frame"]) == 3
    start, end = expected_segment(3, N, CLIP, SEG)
    assert torch.allclose(item["fbank"], whole_fbank(clips["wavs"]["clip0"])[start:end],
                          atol=1e-4)
    multi = build_dataset(clips["extracted"], config=dict(CONFIG, multi_frame=True),
                          train=False)
    batch = collate_av([multi[0], multi[1]])
    assert tuple(batch.fbanks.data.shape) == (2, N, SEG, 128)
    assert tuple(batch.frames.data.shape) == (2, N, 3, 32, 32)


def test_plain_cavmae_pipeline_unchanged(clips):
    """Without frame_segments the audio is the clip's first audio_length frames."""
    cfg = {"n_frames": N, "audio_length": SEG, "image_size": 32}
    item = build_dataset(clips["extracted"], config=cfg, train=False)[1]
    import soundfile

    wav, rate = soundfile.read(clips["wavs"]["clip1"], dtype="float32")
    assert torch.allclose(item["fbank"], compute_fbank(torch.from_numpy(wav), rate, 128, SEG),
                          atol=1e-4)
