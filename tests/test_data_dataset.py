"""build_dataset: outputs, augmentation, on-device features, bad-sample policy."""

import logging
import re

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from media import (
    decode_index,
    original_loader_fbank,
    original_loader_image,
    tone,
    write_frames,
    write_label_csv,
    write_original_manifest,
    write_video,
    write_wav,
)
from speechbrain_cavmae.data import augment
from speechbrain_cavmae.data.dataset import (
    DEFAULT_CONFIG,
    AVBatch,
    BadSampleCounter,
    SkippedSample,
    build_dataset,
    collate_av,
    resolve_config,
)
from speechbrain_cavmae.data.errors import BadSampleError
from speechbrain_cavmae.data.frames import IMAGENET_MEAN, IMAGENET_STD
from speechbrain_cavmae.data.fbank import KaldiFbank, compute_fbank, normalize_fbank

MIDS = ["/m/a", "/m/b", "/m/c", "/m/d"]
MASK_VALUE = -DEFAULT_CONFIG["dataset_mean"] / DEFAULT_CONFIG["dataset_std"]


def frame_index(frame):
    """Colour-coded index of a normalised [3, H, W] frame."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    rgb = ((frame * std + mean) * 255).round().clamp(0, 255).byte()
    return decode_index(rgb.permute(1, 2, 0).numpy())


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    d = tmp_path_factory.mktemp("ds")
    (d / "audio").mkdir()
    frames = d / "frames"
    good = []
    for i, mid in enumerate(MIDS):
        vid = f"good{i}"
        # 1.5 s tone whose pitch and onset differ per sample
        wav = np.concatenate([np.zeros(1600 * (i + 1), np.float32), tone(300 + 400 * i, 1.5, 16000)])
        write_wav(str(d / "audio" / f"{vid}.wav"), wav)
        write_frames(str(frames), vid, n=10, size=224)
        good.append({"video_id": vid, "wav": f"audio/{vid}.wav", "video_path": "frames", "labels": mid})
    write_label_csv(str(d / "labels.csv"), MIDS)
    write_original_manifest(str(d / "good.json"), good)

    write_wav(str(d / "audio" / "short.wav"), np.zeros(100, np.float32))
    (d / "audio" / "garbage.wav").write_bytes(b"garbage" * 100)
    write_frames(str(frames), "short", n=10, size=224)
    write_frames(str(frames), "garbage", n=10, size=224)
    write_frames(str(frames), "unknownlabel", n=10, size=224)
    write_wav(str(d / "audio" / "unknownlabel.wav"), tone(500, 1.0, 16000))
    write_wav(str(d / "audio" / "noframes.wav"), tone(500, 1.0, 16000))
    bad = {
        "missing": ("audio/missing.wav", "/m/a", "file not found", "audio/missing.wav"),
        "garbage": ("audio/garbage.wav", "/m/a", "cannot decode audio", "audio/garbage.wav"),
        "short": ("audio/short.wav", "/m/b", "shorter than one 25 ms frame", "audio/short.wav"),
        "noframes": ("audio/noframes.wav", "/m/b", "extracted frame 5 not found",
                     "frames/frame_5/noframes.jpg"),
        "unknownlabel": ("audio/unknownlabel.wav", "/m/zz", "label '/m/zz' not in label CSV", "mixed.json"),
    }
    mixed = list(good[:2])
    for vid, (wav, label, _, _) in bad.items():
        mixed.append({"video_id": vid, "wav": wav, "video_path": "frames", "labels": label})
    mixed += good[2:]
    write_original_manifest(str(d / "mixed.json"), mixed)

    (d / "videos").mkdir()
    write_video(str(d / "videos" / "clip0.mp4"), n_frames=20, fps=10, size=(64, 48), audio_freqs=(440.0, 880.0))
    write_video(str(d / "videos" / "silent.mp4"), n_frames=20, fps=10, size=(64, 48), audio_freqs=())
    (d / "videos" / "broken.mp4").write_bytes(b"\x00" * 4000)
    write_original_manifest(str(d / "videos.json"), [
        {"video_id": "clip0", "wav": "videos/clip0.mp4", "video_path": "", "labels": "/m/a"}])
    write_original_manifest(str(d / "badvideos.json"), [
        {"video_id": "clip0", "wav": "videos/clip0.mp4", "video_path": "", "labels": "/m/a"},
        {"video_id": "silent", "wav": "videos/silent.mp4", "video_path": "", "labels": "/m/a"},
        {"video_id": "broken", "wav": "videos/broken.mp4", "video_path": "", "labels": "/m/a"},
    ])
    return d, bad


def build(root, name="good.json", train=False, **config):
    d, _ = root
    return build_dataset(str(d / name), str(d / "labels.csv"), config, train=train)


def test_eval_outputs_match_the_original_loader(root):
    d, _ = root
    ds = build(root)
    item = ds[1]
    assert set(item) == {"id", "fbank", "frame", "labels"} and item["id"] == "good1"
    assert item["fbank"].shape == (1024, 128) and item["frame"].shape == (3, 224, 224)
    torch.testing.assert_close(item["fbank"], original_loader_fbank(str(d / "audio" / "good1.wav")),
                               atol=1e-5, rtol=0)
    ref_img = original_loader_image(str(d / "frames" / "frame_5" / "good1.jpg"))
    torch.testing.assert_close(item["frame"], ref_img, atol=1e-5, rtol=0)
    assert frame_index(item["frame"]) == 5  # middle frame int(10 / 2)
    assert item["labels"].tolist() == [0.0, 1.0, 0.0, 0.0]


def test_eval_multi_frame_and_fixed_index(root):
    item = build(root, multi_frame=True)[0]
    assert item["frames"].shape == (10, 3, 224, 224)
    assert [frame_index(f) for f in item["frames"]] == list(range(10))
    assert torch.equal(item["frame"], item["frames"][5])
    assert frame_index(build(root, frame_index=2)[0]["frame"]) == 2


def test_train_picks_random_frame(root):
    torch.manual_seed(0)
    ds = build(root, train=True)
    seen = {frame_index(ds[0]["frame"]) for _ in range(40)}
    assert len(seen) >= 6 and seen <= set(range(10))


def test_frames_decoded_from_video(root):
    ds = build(root, "videos.json")
    item = ds[0]
    # 20 frames at 10 fps: positions int(i * 2), frame 5 -> position 10 -> frame 9
    assert frame_index(item["frame"]) == 9
    assert item["fbank"].shape == (1024, 128)
    multi = build(root, "videos.json", multi_frame=True, frame_source="video")[0]
    assert [frame_index(f) for f in multi["frames"]] == [0, 1, 3, 5, 7, 9, 11, 13, 15, 17]


def test_features_on_device_match_cpu_features(root):
    cpu = build(root)
    dev = build(root, features_on_device=True)
    batch = collate_av([dev[i] for i in range(4)])
    assert isinstance(batch, AVBatch) and not hasattr(batch, "fbank")
    wavs, lens = batch.wav
    feats = KaldiFbank()(wavs, lens)
    for i in range(4):
        torch.testing.assert_close(feats[i], cpu[i]["fbank"], atol=1e-5, rtol=0)
    assert batch.frame.data.shape == (4, 3, 224, 224) and batch.labels.data.shape == (4, 4)
    assert batch.id == ["good0", "good1", "good2", "good3"]


def test_label_smoothing_train_only(root):
    item = build(root, train=True, label_smooth=0.1)[2]
    torch.testing.assert_close(item["labels"], torch.tensor([0.025, 0.025, 0.9, 0.025]))
    assert build(root, train=False, label_smooth=0.1)[2]["labels"].tolist() == [0.0, 0.0, 1.0, 0.0]


def test_mixup_mixes_audio_frames_and_labels(root, monkeypatch):
    draws = []

    def fixed_lambda(alpha):
        assert alpha == 10.0  # Beta(10, 10) as the original
        draws.append(0.3)
        return 0.3

    monkeypatch.setattr(augment, "sample_mix_lambda", fixed_lambda)
    torch.manual_seed(3)
    ds = build(root, train=True, mixup=1.0, label_smooth=0.1)
    eval_ds = build(root, multi_frame=True)
    loader = ds.loader
    mixed_seen = 0
    for _ in range(6):
        item = ds[0]
        labels = item["labels"]
        assert abs(float(labels.sum()) - 1.0) < 1e-5
        if labels[0] > 0.9 - 1e-6:  # partner was the sample itself
            continue
        partner = int(torch.argmax(torch.cat([labels[:0], torch.tensor([-1.0]), labels[1:]])))
        lam = draws[-1]
        torch.testing.assert_close(labels[0], torch.tensor(0.025 + lam * 0.9))
        torch.testing.assert_close(labels[partner], torch.tensor(0.025 + (1 - lam) * 0.9))
        # audio: fbank of the mixed waveform (no SpecAugment/noise configured)
        w1 = loader.waveform("good0")
        w2 = loader.waveform(f"good{partner}")
        expect = normalize_fbank(compute_fbank(augment.mix_waveforms(w1, w2, lam), normalize=False))
        torch.testing.assert_close(item["fbank"], expect, atol=1e-5, rtol=0)
        # frame: lam * own frame + (1 - lam) * partner frame (both colour codes are frame indices)
        own, other = eval_ds[0]["frames"], eval_ds[partner]["frames"]
        candidates = lam * own.unsqueeze(1) + (1 - lam) * other.unsqueeze(0)  # [10, 10, 3, H, W]
        err = (candidates - item["frame"]).abs().flatten(2).amax(-1)
        assert float(err.min()) < 1e-4
        mixed_seen += 1
    assert mixed_seen >= 2


def test_spec_augment_masks_before_normalisation(root):
    torch.manual_seed(1)
    clean = build(root)[3]["fbank"]
    ds = build(root, train=True, freqm=48, timem=192)
    masked_any = False
    for _ in range(5):
        feats = ds[3]["fbank"]
        diff = (feats - clean).abs() > 1e-6
        assert torch.allclose(feats[diff], torch.full_like(feats[diff], MASK_VALUE))
        full_bins = int((feats == MASK_VALUE).all(0).sum())
        full_frames = int((feats == MASK_VALUE).all(1).sum())
        assert full_bins < 48 and (full_frames - 1024 + 196) < 192  # padding frames are MASK_VALUE too
        masked_any |= bool(diff.any())
    assert masked_any


def test_noise_adds_bounded_noise_and_rolls(root):
    torch.manual_seed(2)
    clean = build(root)[1]["fbank"]
    feats = build(root, train=True, noise=True)[1]["fbank"]
    ok = [s for s in range(-1024, 1024)
          if bool(((feats - torch.roll(clean, s, 0)) >= 0).all() and ((feats - torch.roll(clean, s, 0)) < 0.1).all())]
    assert len({s % 1024 for s in ok}) == 1  # one roll (mod 1024) explains it


def test_fbank_augment_batched_matches_policy():
    torch.manual_seed(0)
    feats = torch.randn(8, 1024, 128)
    out = augment.FbankAugment(freqm=48, timem=192)(feats)
    changed = out != feats
    assert torch.all(out[changed] == MASK_VALUE)
    bins = changed.all(1).sum(-1)
    frames = changed.all(2).sum(-1)
    assert (bins < 48).all() and (frames < 192).all() and bool((bins + frames > 0).any())
    noisy = augment.FbankAugment(noise=True)(torch.zeros(2, 50, 4))
    assert noisy.min() >= 0 and noisy.max() < 0.1


@pytest.mark.parametrize("name", ["missing", "garbage", "short", "noframes", "unknownlabel"])
def test_raise_policy_names_file_and_problem(root, name):
    d, bad = root
    _, _, reason, rel = bad[name]
    ds = build(root, "mixed.json", frame_source="extracted")
    index = ds.data_ids.index(name)
    with pytest.raises(BadSampleError) as info:
        ds[index]
    err = info.value
    assert err.path == str(d / rel) and reason in err.reason and err.sample_id == name
    assert str(d / rel) in str(err) and reason in str(err)


@pytest.mark.parametrize("name,reason", [("silent", "no audio track"), ("broken", "cannot open container")])
def test_raise_policy_video_sources(root, name, reason):
    d, _ = root
    ds = build(root, "badvideos.json")
    with pytest.raises(BadSampleError) as info:
        ds[ds.data_ids.index(name)]
    assert info.value.path == str(d / "videos" / f"{name}.mp4") and reason in info.value.reason


def test_broken_video_frames(root):
    d, _ = root
    ds = build(root, "badvideos.json", frame_source="video")
    with pytest.raises(BadSampleError, match="cannot decode video"):
        ds.loader.frames("broken", [0])


@pytest.mark.parametrize("workers", [0, 2])
def test_skip_policy_drops_exactly_the_bad_samples(root, caplog, workers):
    d, bad = root
    ds = build(root, "mixed.json", train=True, on_bad_sample="skip", frame_source="extracted",
               mixup=0.5)
    loader = DataLoader(ds, batch_size=len(ds), collate_fn=collate_av, num_workers=workers)
    with caplog.at_level(logging.WARNING):
        batches = list(loader)
        assert ds.bad_samples.count == len(bad)
        assert ds.bad_samples.log_epoch(epoch=1) == len(bad)
    assert ds.bad_samples.count == 0
    (batch,) = batches
    assert batch.id == ["good0", "good1", "good2", "good3"]
    assert batch.fbank.data.shape == (4, 1024, 128) and batch.labels.data.shape == (4, 4)
    assert sorted(s.id for s in batch.skipped) == sorted(bad)
    assert "train epoch 1: skipped 5 bad sample(s)" in caplog.text
    for skipped in batch.skipped:  # training picks a random frame: any index
        _, _, reason, rel = bad[skipped.id]
        assert re.fullmatch(re.escape(str(d / rel)).replace("5", r"\d"), skipped.path)
        assert re.search(re.escape(reason).replace("5", r"\d"), skipped.reason)
        if workers == 0:  # worker log records do not reach caplog
            assert f"skipping bad sample: sample '{skipped.id}': {skipped.path}: {skipped.reason}" in caplog.text


def test_all_bad_batch_is_none_and_counter(caplog):
    assert collate_av([SkippedSample("a", "x.wav", "file not found")]) is None
    counter = BadSampleCounter()
    with caplog.at_level(logging.DEBUG):
        assert counter.log_epoch(0) == 0
        assert caplog.text == ""  # nothing skipped: nothing logged
        counter.record(BadSampleError("x.wav", "file not found"))
        caplog.clear()
        assert counter.log_epoch(None, "test") == 1
    assert caplog.text.strip().endswith("test: skipped 1 bad sample(s)"), caplog.text
    assert "None" not in caplog.text


def test_config_validation():
    with pytest.raises(ValueError, match="unknown data config key"):
        resolve_config({"freq_mask": 3})
    with pytest.raises(ValueError, match="on_bad_sample"):
        resolve_config({"on_bad_sample": "ignore"})
    cfg = resolve_config({"mixup": 0.5, "freqm": 48, "noise": True}, train=False)
    assert cfg["mixup"] == 0 and cfg["freqm"] == 0 and cfg["noise"] is False


def test_no_label_csv_means_no_labels(root):
    d, _ = root
    ds = build_dataset(str(d / "good.json"), None, None, train=False)
    assert "labels" not in ds[0]
