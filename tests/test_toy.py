"""Tests for the audio-visual toy dataset generator (speechbrain_cavmae.data.toy)."""

import csv
import json
import os
import wave
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from speechbrain_cavmae.data import toy

N_TRAIN, N_VALID, N_TEST, N_CLASSES = 32, 4, 4, 8


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    paths = toy.generate_toy_dataset(
        out, n_train=N_TRAIN, n_valid=N_VALID, n_test=N_TEST, seed=0, n_classes=N_CLASSES
    )
    meta = json.loads(Path(paths["meta"]).read_text())
    return paths, meta


def _read_wav(path):
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        sr = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768
    return x, sr


def _frames(root, vid):
    return np.stack(
        [
            np.asarray(Image.open(root / "frames" / f"frame_{i}" / f"{vid}.jpg"), dtype=np.float64)
            for i in range(10)
        ]
    )


def _spearman(a, b):
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def _train_clips(meta):
    return {k: v for k, v in meta["clips"].items() if v["split"] == "train"}


def test_layout(small):
    paths, meta = small
    root = Path(paths["root"])
    with open(paths["label_csv"]) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["index", "mid", "display_name"]
    assert [int(r["index"]) for r in rows] == list(range(N_CLASSES))
    mids = {r["mid"] for r in rows}
    assert "/m/toy00" in mids and len(mids) == N_CLASSES
    assert len({r["display_name"] for r in rows}) == N_CLASSES
    assert " + " in rows[0]["display_name"]
    assert sorted(os.listdir(root / "frames")) == sorted(f"frame_{i}" for i in range(10))
    for split, n in (("train", N_TRAIN), ("valid", N_VALID), ("test", N_TEST)):
        data = json.loads(Path(paths[split]).read_text())["data"]
        assert len(data) == n
        for d in data:
            assert set(d) == {"video_id", "wav", "video_path", "labels"}
            base = Path(paths[split]).parent  # paths are relative to the manifest
            x, sr = _read_wav(base / d["wav"])
            assert sr == 16000 and x.shape == (int(round(1.94 * 16000)),)
            for i in range(10):
                img = Image.open(base / d["video_path"] / f"frame_{i}" / f"{d['video_id']}.jpg")
                assert img.format == "JPEG" and img.mode == "RGB" and img.size == (64, 64)
            assert all(m in mids for m in d["labels"].split(","))
    assert meta["fbank_frames"] == 192
    assert len(meta["clips"]) == N_TRAIN + N_VALID + N_TEST


def test_fbank_frame_count_matches_torchaudio(small):
    torch = pytest.importorskip("torch")
    kaldi = pytest.importorskip("torchaudio.compliance.kaldi")
    paths, _ = small
    x, sr = _read_wav(Path(paths["root"]) / "audio" / "toy_train_00000.wav")
    fb = kaldi.fbank(
        torch.from_numpy(x).float()[None], htk_compat=True, sample_frequency=sr,
        use_energy=False, window_type="hanning", num_mel_bins=128, dither=0.0,
        frame_shift=10,
    )
    assert fb.shape == (toy.fbank_num_frames(1.94, sr), 128) == (192, 128)


def test_class_balance(small):
    paths, _ = small
    data = json.loads(Path(paths["train"]).read_text())["data"]
    counts = Counter(d["labels"] for d in data)
    assert len(counts) == N_CLASSES and set(counts.values()) == {N_TRAIN // N_CLASSES}


def test_determinism(tmp_path, small):
    paths, _ = small
    kw = dict(n_train=3, n_valid=1, n_test=1, seed=0, n_classes=N_CLASSES)
    a = toy.generate_toy_dataset(tmp_path / "a", **kw)
    b = toy.generate_toy_dataset(tmp_path / "b", **kw)
    c = toy.generate_toy_dataset(tmp_path / "c", **{**kw, "seed": 1})
    rels = [
        "audio/toy_train_00002.wav",
        "frames/frame_7/toy_train_00002.jpg",
        "frames/frame_0/toy_test_00000.jpg",
        "train.json",
        "class_labels_indices.csv",
        "meta.json",
    ]
    for rel in rels:
        assert (Path(a["root"]) / rel).read_bytes() == (Path(b["root"]) / rel).read_bytes(), rel
    for rel in rels[:2]:
        assert (Path(a["root"]) / rel).read_bytes() != (Path(c["root"]) / rel).read_bytes()
    # a clip does not depend on how many clips are generated
    big = Path(paths["root"])
    for rel in rels[:2]:
        assert (Path(a["root"]) / rel).read_bytes() == (big / rel).read_bytes()


def test_caching_and_regeneration(tmp_path):
    kw = dict(n_train=2, n_valid=1, n_test=1, n_classes=2)
    paths = toy.generate_toy_dataset(tmp_path, **kw)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    os.utime(paths["meta"], ns=(1, 1))  # make any rewrite visible
    before[Path(paths["meta"])] = 1
    assert toy.generate_toy_dataset(tmp_path, **kw) == paths
    assert {p: p.stat().st_mtime_ns for p in files} == before
    # other parameters: regenerated, stale clips removed
    toy.generate_toy_dataset(tmp_path, **{**kw, "n_train": 1})
    assert not (tmp_path / "audio" / "toy_train_00001.wav").exists()
    assert not (tmp_path / "frames" / "frame_3" / "toy_train_00001.jpg").exists()
    meta = json.loads(Path(paths["meta"]).read_text())
    assert meta["params"]["n_train"] == 1 and len(meta["clips"]) == 3


def test_corrupt_meta_is_reported(tmp_path):
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match="meta.json"):
        toy.generate_toy_dataset(tmp_path, n_train=1, n_valid=0, n_test=0)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n_classes"):
        toy.generate_toy_dataset(tmp_path, n_classes=40)
    with pytest.raises(ValueError, match="n_train"):
        toy.generate_toy_dataset(tmp_path, n_train=-1)
    assert not (tmp_path / "meta.json").exists()


def test_audio_attributes(small):
    """Pitch follows size (inverse), loudness follows brightness, onset is audible."""
    paths, meta = small
    root = Path(paths["root"])
    sizes, peaks, bright, rms, onset_err = [], [], [], [], []
    for vid, c in _train_clips(meta).items():
        x, sr = _read_wav(root / "audio" / f"{vid}.wav")
        active = x[int(c["onset"] * sr) + 160 :]
        # dominant 1/6-octave band (band power, so noise-band timbres count fully)
        power = np.abs(np.fft.rfft(active * np.hanning(active.size))) ** 2
        freqs = np.fft.rfftfreq(active.size, 1 / sr)
        edges = 150.0 * 2 ** (np.arange(26) / 6)  # 150 Hz .. ~2.7 kHz
        band_power = [
            power[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in zip(edges[:-1], edges[1:])
        ]
        sizes.append(c["size"])
        peaks.append(edges[np.argmax(band_power)])
        bright.append(c["brightness"])
        rms.append(10 * np.log10(np.mean(active**2)))
        # onset: first 10 ms frame with energy in [0.8, 1.25] * f0 above 10 % of max
        n_fr = x.size // 160
        frames = x[: n_fr * 160].reshape(n_fr, 160)
        fspec = np.abs(np.fft.rfft(frames * np.hanning(160), n=1024, axis=1)) ** 2
        ff = np.fft.rfftfreq(1024, 1 / sr)
        sel = (ff > 0.8 * c["f0"]) & (ff < 1.25 * c["f0"])
        e = fspec[:, sel].sum(1)
        onset_err.append(abs(np.argmax(e > 0.1 * e.max()) * 0.01 - c["onset"]))
    assert _spearman(sizes, peaks) < -0.9
    assert _spearman(bright, rms) > 0.85
    assert np.median(onset_err) < 0.03


def test_visual_attributes(small):
    """Object area follows size, x position follows onset, appearance follows onset."""
    paths, meta = small
    root = Path(paths["root"])
    times = np.asarray(meta["frame_times"])
    sizes, extents, areas, onsets, xs = [], [], [], [], []
    for vid, c in _train_clips(meta).items():
        f = _frames(root, vid)
        assert not c["visible"][0] or c["onset"] <= times[0]
        assert c["visible"] == [bool(t >= c["onset"]) for t in times]
        assert all(c["visible"][4:])  # the middle frames always show the object
        if c["visible"][0]:
            continue  # no object-free frame to compare with
        changed = np.abs(f - f[0]).max(axis=-1) > 25  # [10, H, W]
        n_changed = changed.reshape(10, -1).sum(1)
        for i, vis in enumerate(c["visible"]):
            assert (n_changed[i] > 40) == vis, (vid, i, n_changed[i])
        rows, cols = np.nonzero(changed[9])
        sizes.append(c["size"])
        # extent (the shapes differ in area at equal radius, not in extent)
        extents.append(max(np.ptp(rows), np.ptp(cols)) + 1)
        areas.append(rows.size)
        onsets.append(c["onset"])
        xs.append(cols.mean())
    assert len(sizes) >= 20
    assert _spearman(sizes, extents) > 0.9
    assert _spearman(sizes, areas) > 0.6
    assert _spearman(onsets, xs) > 0.7
    assert min(extents) >= 12  # even the smallest objects are clearly visible


def test_brightness_visible():
    """Object brightness scales the object pixels; the background is unchanged."""
    cls = toy.make_classes(3)[2]  # checkered
    out = []
    for b in (0.0, 0.5, 1.0):
        lat = {"size": 0.7, "brightness": b, "onset": 0.0}
        f, info = toy.render_frames(lat, cls, 1.94, 64, np.random.default_rng(3))
        out.append(f[5].astype(float))
    obj_means = []
    bg_diff = np.abs(out[0] - out[2]).max(-1)
    for f in out:
        obj_means.append(f[bg_diff > 25].mean())
    assert obj_means[0] < obj_means[1] < obj_means[2]
    assert obj_means[2] > 1.8 * obj_means[0]
    assert np.abs(out[0][0, 0] - out[2][0, 0]).max() < 15  # a corner pixel: background


def test_cli(tmp_path, capsys):
    from speechbrain_cavmae.cli import main as cavmae

    rc = cavmae(["toy", "--output", str(tmp_path), "--n_train", "2", "--n_valid", "1",
                 "--n_test", "1", "--n_classes", "2", "--image_size", "48",
                 "--absolute_paths"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    data = json.loads(Path(printed["train"]).read_text())["data"]
    assert os.path.isabs(data[0]["wav"]) and Path(data[0]["wav"]).is_file()
    img = Image.open(Path(data[0]["video_path"]) / "frame_0" / f"{data[0]['video_id']}.jpg")
    assert img.size == (48, 48)
