"""CLIs: validate, extract, prepare_videos, balance weights, fbank stats (the ``python -m``
forms with their former positional arguments and flags; ``tests/test_cli.py`` covers the
``cavmae`` spelling)."""

import json
import os

import numpy as np
import pytest
import torch

from media import decode_index, tone, write_frames, write_label_csv, write_original_manifest, write_video, write_wav
from speechbrain_cavmae.cli import main as cavmae
from speechbrain_cavmae.tools import validate
from speechbrain_cavmae.data import balance, stats
from speechbrain_cavmae.data.manifest import LabelTable, read_manifest


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    (d / "dog").mkdir()
    (d / "cat").mkdir()
    write_video(str(d / "dog" / "v1.mp4"), n_frames=30, fps=10, size=(80, 48), audio_freqs=(440.0,))
    write_video(str(d / "cat" / "v2.mp4"), n_frames=30, fps=10, size=(48, 80), audio_freqs=(880.0, 220.0))
    write_video(str(d / "cat" / "silent.mp4"), n_frames=30, fps=10, audio_freqs=())
    (d / "cat" / "broken.mp4").write_bytes(b"\x00" * 1000)
    return d


def test_extract_cli_layout_resume_and_failures(videos, tmp_path, capsys):
    out = tmp_path / "out"
    manifest = tmp_path / "m.json"
    code = cavmae(["extract", "--videos", str(videos), "--output", str(out), "--n_frames", "4",
                   "--num_workers", "2", "--write_manifest", str(manifest)])
    text = capsys.readouterr()
    assert code == 1  # silent.mp4 and broken.mp4 fail
    assert "2 failed" in text.out
    text = text.err
    assert "FAILED" in text and "silent.mp4: no audio track" in text and "broken.mp4" in text
    import soundfile

    wav, rate = soundfile.read(str(out / "audio" / "v1.wav"))
    assert rate == 16000 and wav.ndim == 1 and abs(len(wav) - 48000) < 1100
    # frames: 30 frames at 10 fps, n=4 -> positions 0, 7, 15, 22 -> frames 0, 6, 14, 21
    from PIL import Image

    got = [decode_index(np.asarray(Image.open(out / "frames" / f"frame_{i}" / "v1.jpg"))) for i in range(4)]
    assert got == [0, 6, 14, 21]
    assert Image.open(out / "frames" / "frame_0" / "v2.jpg").size == (224, 224)
    data = read_manifest(str(manifest))
    assert sorted(data) == ["v1", "v2"] and data["v1"]["wav"] == str(out / "audio" / "v1.wav")
    # resumable: finished videos are skipped
    mtime = os.path.getmtime(out / "audio" / "v1.wav")
    cavmae(["extract", "--videos", str(videos), "--output", str(out), "--n_frames", "4"])
    assert "2 already done" in capsys.readouterr().out
    assert os.path.getmtime(out / "audio" / "v1.wav") == mtime


def test_prepare_videos_from_folders(videos, tmp_path):
    out = tmp_path / "m.json"
    labels = tmp_path / "labels.csv"
    code = cavmae(["prepare", "videos", "--videos", str(videos), "--output", str(out),
                   "--labels_from_folder", "--write_label_csv", str(labels)])
    assert code == 0
    table = LabelTable.from_csv(str(labels))
    assert table.mids == ["cat", "dog"]
    data = read_manifest(str(out))
    assert data["v1"]["labels"] == ["dog"] and data["v1"]["wav"] == str(videos / "dog" / "v1.mp4")
    assert str(videos) not in out.read_text() or not os.path.isabs(json.loads(out.read_text())["data"][0]["wav"])


def test_prepare_videos_label_file_and_audioset_segments(videos, tmp_path):
    table_csv = write_label_csv(str(tmp_path / "t.csv"), ["/m/a", "/m/b"])
    seg = tmp_path / "seg.csv"
    seg.write_text('# YTID, start_seconds, end_seconds, positive_labels\nv1, 0.000, 10.000, "/m/a,/m/b"\n'
                   'v2,"/m/b"\n')
    # AudioSet ids are YTID_start: rename v1's entry accordingly
    (videos / "dog" / "v1_0.000.mp4").write_bytes((videos / "dog" / "v1.mp4").read_bytes())
    out = tmp_path / "m.json"
    code = cavmae(["prepare", "videos", "--videos", str(videos), "--output", str(out),
                   "--labels", str(seg), "--label_csv", table_csv,
                   "--extracted", str(tmp_path / "ex"), "--manifest_format", "speechbrain"])
    assert code == 0
    data = read_manifest(str(out))
    assert data["v1_0.000"]["labels"] == ["/m/a", "/m/b"] and data["v2"]["labels"] == ["/m/b"]
    assert data["v2"]["video_path"] == str(tmp_path / "ex" / "frames")
    assert "v1" not in data  # unlabelled videos are left out
    os.remove(videos / "dog" / "v1_0.000.mp4")


def test_validate_reports_every_problem(tmp_path, capsys):
    d = tmp_path
    (d / "a").mkdir()
    write_wav(str(d / "a" / "ok.wav"), tone(440, 1.0, 16000))
    write_wav(str(d / "a" / "short.wav"), np.zeros(100, np.float32))
    (d / "a" / "bad.wav").write_bytes(b"nope" * 50)
    write_video(str(d / "silent.mp4"), n_frames=10, fps=10, audio_freqs=())
    for vid in ("ok", "missing", "short", "bad", "badlabel", "dup"):
        write_frames(str(d / "f"), vid, n=10, size=32)
    write_wav(str(d / "a" / "badlabel.wav"), tone(440, 1.0, 16000))
    write_wav(str(d / "a" / "dup.wav"), tone(440, 1.0, 16000))
    os.remove(d / "f" / "frame_3" / "dup.jpg")
    write_frames(str(d / "g"), "nofolder", n=2, size=32)
    labels = write_label_csv(str(d / "l.csv"), ["/m/a"])
    entries = [
        {"video_id": "ok", "wav": "a/ok.wav", "video_path": "f", "labels": "/m/a"},
        {"video_id": "missing", "wav": "a/missing.wav", "video_path": "f", "labels": "/m/a"},
        {"video_id": "short", "wav": "a/short.wav", "video_path": "f", "labels": "/m/a"},
        {"video_id": "bad", "wav": "a/bad.wav", "video_path": "f", "labels": "/m/a"},
        {"video_id": "badlabel", "wav": "a/badlabel.wav", "video_path": "f", "labels": "/m/zz"},
        {"video_id": "dup", "wav": "a/dup.wav", "video_path": "f", "labels": "/m/a"},
        {"video_id": "dup", "wav": "a/dup.wav", "video_path": "f", "labels": "/m/a"},
        {"video_id": "nofolder", "wav": "a/ok.wav", "video_path": "g", "labels": "/m/a"},
        {"video_id": "silent", "wav": "silent.mp4", "video_path": "", "labels": "/m/a"},
    ]
    manifest = write_original_manifest(str(d / "m.json"), entries)
    problems = validate.validate(manifest, labels, {"frame_source": "auto"}, jobs=2)
    found = {(p[0], p[2].split(" (")[0]) for p in problems}
    expected = {
        ("missing", "file not found"),
        ("short", "clip of 100 samples is shorter than one 25 ms frame"),
        ("bad", "cannot decode audio"),
        ("badlabel", f"label '/m/zz' not in label CSV {labels}"),
        ("dup", "extracted frame 3 not found"),
        ("dup#2", "duplicate id 'dup'"),
        ("dup#2", "extracted frame 3 not found"),
        ("nofolder", "missing frame folder"),
        ("silent", "no audio track"),
    }
    assert found == expected
    paths = {p[0]: p[1] for p in problems}
    assert paths["missing"] == str(d / "a" / "missing.wav") and paths["silent"] == str(d / "silent.mp4")
    assert cavmae(["validate", "--manifest", manifest, "--label_csv", labels]) == 1
    table = capsys.readouterr().out
    assert "missing frame folder" in table and str(d / "g" / "frame_2") in table
    assert "problem(s) in 8 of 9 samples" in table
    ok = write_original_manifest(str(d / "ok.json"), entries[:1])
    assert cavmae(["validate", "--manifest", ok, "--label_csv", labels]) == 0


def test_class_balanced_weights_and_cli(tmp_path):
    labels = write_label_csv(str(tmp_path / "l.csv"), ["/m/a", "/m/b", "/m/c"])
    manifest = write_original_manifest(str(tmp_path / "m.json"), [
        {"video_id": "x", "wav": "x.wav", "video_path": "", "labels": "/m/a"},
        {"video_id": "y", "wav": "y.wav", "video_path": "", "labels": "/m/a,/m/b"},
        {"video_id": "z", "wav": "z.wav", "video_path": "", "labels": "/m/a"},
    ])
    w = balance.class_balanced_weights(manifest, LabelTable.from_csv(labels))
    np.testing.assert_allclose(w, [1000 / 3.01, 1000 / 3.01 + 1000 / 1.01, 1000 / 3.01])
    out = str(tmp_path / "w.csv")
    assert cavmae(["balance", "--manifest", manifest, "--label_csv", labels,
                   "--output", out]) == 0
    np.testing.assert_allclose(np.loadtxt(out, delimiter=","), w)


def test_fbank_stats(tmp_path, capsys):
    for i, amp in enumerate([0.1, 0.5]):
        write_wav(str(tmp_path / f"{i}.wav"), tone(440 * (i + 1), 2.0, 16000) * amp)
    manifest = write_original_manifest(str(tmp_path / "m.json"), [
        {"video_id": str(i), "wav": f"{i}.wav", "video_path": "", "labels": ""} for i in range(2)
    ] + [{"video_id": "gone", "wav": "gone.wav", "video_path": "", "labels": ""}])
    from media import original_loader_fbank

    raw = [original_loader_fbank(str(tmp_path / f"{i}.wav"), mean=0.0, std=1.0) for i in range(2)]
    mean, std = stats.fbank_stats(manifest)
    assert mean == pytest.approx(float(sum(r.mean() for r in raw) / 2), abs=1e-4)
    assert std == pytest.approx(float(sum(r.std() for r in raw) / 2), abs=1e-4)
    assert cavmae(["stats", "--manifest", manifest, "--max_samples", "2"]) == 0  # at least one usable clip
    assert "dataset_mean:" in capsys.readouterr().out
    assert torch.isfinite(torch.tensor([mean, std])).all()
