"""End-to-end tests of the recipes through their real command line, on a tiny toy dataset.

Each test runs ``python recipes/<Dataset>/train.py hparams/<file>.yaml ...`` in a
subprocess with a tiny model (embed_dim 32, one modality-specific layer, 64 px frames,
96 fbank frames): AudioSet pretraining, fine-tuning from that checkpoint (which must beat
chance on the held-out split), evaluation only; VGGSound additional pretraining and
fine-tuning; resuming a run killed with SIGKILL in the middle of an epoch; and a
two-process DDP run (torchrun, gloo on CPU).
"""

import json
import math
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from processes import REPO, kill_group, run, subprocess_env, torchrun
from recipe_cli import (
    AUDIOSET, DECODER, ENCODER, HP, NO_AUG, VGGSOUND, all_finite, data_args, pretrain_args,
)
from speechbrain_cavmae.checkpoint import load_original_checkpoint


@pytest.fixture(scope="module")
def pretrained(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    run(pretrain_args(toy, out))
    return out


@pytest.mark.slow
def test_audioset_pretraining_logs_losses_and_retrieval(pretrained):
    history = json.loads((pretrained / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    for record in history:
        for key in ("loss", "loss_mae_a", "loss_mae_v", "loss_c", "c_acc"):
            assert math.isfinite(record["train"][key]), (key, record)
        # 8 steps a epoch: throughput measured over the 3 after the 5 warm-up steps
        assert 0 < record["train"]["samples_per_s"] < 1e4, record
        for key in ("loss", "loss_c", "a2v_R@1", "v2a_R@1", "a2v_R@10", "a2v_MedR"):
            assert math.isfinite(record["valid"][key]), (key, record)
        assert 0.0 <= record["valid"]["a2v_R@1"] <= 1.0
    log = (pretrained / "train_log.txt").read_text()
    assert "train loss_c" in log and "valid a2v_R@1" in log and "train c_acc" in log
    results = json.loads((pretrained / "test_results.json").read_text())
    assert all_finite(results) and "v2a_MedR" in results
    model = load_original_checkpoint(str(pretrained / "pretrained.pth"), num_heads=2,
                                      decoder_num_heads=2)
    assert type(model).__name__ == "CAVMAE"
    assert model.encoder.audio_length == 96


def test_pretraining_without_validation_logs_and_checkpoints_each_epoch(toy, tmp_path):
    out = tmp_path / "noval"
    args = [AUDIOSET, str(HP / "cavmae.yaml"), "--train_data", toy["test"], "--output_folder",
            str(out), *ENCODER, *DECODER, "--batch_size", "4", "--number_of_epochs", "2"]
    run(args)
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(h["valid"] is None and math.isfinite(h["train"]["loss"]) for h in history)
    assert all(h["train"]["samples_per_s"] > 0 for h in history)  # 8 steps, 5 warm-up
    ckpts = [p for p in (out / "save").iterdir() if p.name.startswith("CKPT")]
    assert len(ckpts) == 1, ckpts  # the newest end-of-epoch checkpoint is kept
    meta = (ckpts[0] / "CKPT.yaml").read_text()
    assert "epoch: 2" in meta and "end-of-epoch: true" in meta
    # a rerun finds the finished epochs in the checkpoint and trains no more
    log_before = (out / "train_log.txt").read_text()
    run(args)
    assert [p for p in (out / "save").iterdir() if p.name.startswith("CKPT")] == ckpts
    assert (out / "train_log.txt").read_text() == log_before


@pytest.mark.slow
def test_audioset_finetuning_beats_chance_then_evaluates(pretrained, toy, tmp_path):
    out = tmp_path / "ft"
    common = [AUDIOSET, str(HP / "cavmae_ft.yaml"), *data_args(toy), "--output_folder",
              str(out), *ENCODER, "--batch_size", "4"]
    run([*common, "--pretrained_path", str(pretrained / "pretrained.pth"), *NO_AUG,
         "--number_of_epochs", "16", "--lr", "1e-3", "--head_lr", "10",
         "--lrscheduler_start", "12", "--wa_start", "13", "--wa_end", "16"])
    results = json.loads((out / "test_results.json").read_text())
    assert results["weights"] == "average of 4 epoch(s)"
    assert len(results["per_frame"]) == 10
    for stats in [results["single_frame"], results["multi_frame"], *results["per_frame"]]:
        assert all_finite(stats)
    # 4 balanced classes: chance accuracy 0.25, chance mAP ~0.25, chance mAUC 0.5.
    multi = results["multi_frame"]
    assert multi["acc"] >= 0.5, results
    assert multi["mAP"] >= 0.5 and multi["mAUC"] >= 0.7, results
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 16 and history[-1]["lr_head"] == pytest.approx(
        history[-1]["lr"] * 10)
    # Evaluation only, from the saved checkpoints: the same numbers.
    (out / "test_results.json").unlink()
    eval_only = [AUDIOSET, str(HP / "cavmae_ft.yaml"), "--valid_data", toy["valid"],
                 "--test_data", toy["test"], "--label_csv", toy["label_csv"],
                 "--output_folder", str(out), *ENCODER, "--batch_size", "4"]
    run([*eval_only, "--test_only"])  # no --train_data needed
    again = json.loads((out / "test_results.json").read_text())
    assert again["multi_frame"] == pytest.approx(multi)
    assert again["weights"] == results["weights"]


@pytest.mark.slow
def test_vggsound_recipes_pretrain_from_audioset_then_finetune(pretrained, toy, tmp_path):
    pre = tmp_path / "vgg_pt"
    run([VGGSOUND, str(HP / "vggsound_cavmae.yaml"), *data_args(toy, labels=False, test=False),
         "--pretrained_path", str(pretrained / "pretrained.pth"), "--output_folder", str(pre),
         *ENCODER, *DECODER, "--batch_size", "8", "--number_of_epochs", "1"])
    assert (pre / "pretrained.pth").is_file()
    ft = tmp_path / "vgg_ft"
    run([VGGSOUND, str(HP / "vggsound_cavmae_ft.yaml"), *data_args(toy),
         "--pretrained_path", str(pre / "pretrained.pth"), "--output_folder", str(ft),
         *ENCODER, "--batch_size", "8", "--number_of_epochs", "2", "--wa_start", "1",
         "--wa_end", "2", "--topk", "[1, 3]"])
    results = json.loads((ft / "test_results.json").read_text())
    for stats in [results["single_frame"], results["multi_frame"]]:
        assert set(stats) >= {"acc@1", "acc@3"} and all_finite(stats)
        assert 0.0 <= stats["acc@1"] <= stats["acc@3"] <= 1.0
    assert len(results["per_frame"]) == 10
    log = (ft / "train_log.txt").read_text()
    assert "valid acc@1" in log and "test multi_frame_acc@1" in log


def _checkpoints(save):
    """``(name, unixtime, intra_epoch)`` of the complete checkpoints in ``save``."""
    found = []
    for ckpt in sorted(save.glob("CKPT+*")):
        meta = ckpt / "CKPT.yaml"
        if not (meta.is_file() and (ckpt / "optimizer.ckpt").is_file()):
            continue  # being written (the optimizer is saved last) or deleted
        try:
            text = meta.read_text()
            stamp = float(re.search(r"unixtime: ([0-9.]+)", text).group(1))
        except (OSError, AttributeError):
            continue
        found.append((ckpt.name, stamp, "brain_intra_epoch_ckpt" in text))
    return found


def _mid_epoch_checkpoints(save):
    """Intra-epoch checkpoints written after the latest end-of-epoch checkpoint."""
    ckpts = _checkpoints(save) if save.is_dir() else []
    ends = [stamp for _, stamp, intra in ckpts if not intra]
    if not ends:
        return []
    return [name for name, stamp, intra in ckpts if intra and stamp > max(ends)]


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch(toy, tmp_path):
    out = tmp_path / "resume"
    args = pretrain_args(toy, out, epochs=2, batch_size=4, extra=[
        "--ckpt_interval_minutes", "0", "--ckpt_interval_steps", "1"])
    env = subprocess_env()
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    save = out / "save"
    seen = []
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            seen = _mid_epoch_checkpoints(save)
            # Kill in the middle of the second epoch, right after a checkpoint is complete.
            if seen:
                time.sleep(0.02)
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and not seen:
            kill_group(proc)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-3000:]
    assert seen, "no intra-epoch checkpoint was written"
    assert len(json.loads((out / "history.json").read_text())) == 1
    on_disk = _mid_epoch_checkpoints(save)  # the complete mid-epoch checkpoint(s)
    assert on_disk
    # Restart with the same command line: it resumes from the mid-epoch checkpoint.
    proc = run(args)
    log = proc.stderr + (out / "log.txt").read_text()
    loaded = re.findall(r"Loading a checkpoint from (\S+)", log)
    assert loaded and Path(loaded[0]).name in on_disk, (loaded, on_disk)
    after = log[log.index(f"Loading a checkpoint from {loaded[0]}"):]
    assert after.index("Going into epoch 2") < after.index("Going into epoch") + 30
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(all_finite(h["train"]) and all_finite(h["valid"]) for h in history)
    assert all_finite(json.loads((out / "test_results.json").read_text()))


@pytest.mark.slow
def test_ddp_two_process_cpu_pretraining(toy, tmp_path):
    out = tmp_path / "ddp"
    args = pretrain_args(toy, out, epochs=1, extra=["--distributed_backend", "gloo",
                                                    "--device", "cpu"])
    proc = torchrun(args)
    assert "Traceback" not in proc.stderr
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1 and all_finite(history[0]["valid"])
    # Each process trains on half of the 64 clips: 4 batches of 8.
    model = load_original_checkpoint(str(out / "pretrained.pth"), num_heads=2,
                                     decoder_num_heads=2)
    ckpts = list((out / "save").glob("CKPT+*/model.ckpt"))
    assert len(ckpts) == 1
    state = torch.load(ckpts[0], map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
    missing = model.load_state_dict(state, strict=True)
    assert not missing.missing_keys


@pytest.mark.slow
def test_ddp_two_process_cpu_audio_only_finetuning(pretrained, toy, tmp_path):
    """The audio-only mode leaves the visual branch without gradients: DDP must cope."""
    out = tmp_path / "ddp_ft"
    args = [AUDIOSET, str(HP / "cavmae_ft_audioonly.yaml"), *data_args(toy, test=False),
            "--pretrained_path", str(pretrained / "pretrained.pth"), "--output_folder",
            str(out), *ENCODER, "--batch_size", "8", "--number_of_epochs", "1",
            "--wa_start", "1", "--wa_end", "1", "--distributed_backend", "gloo",
            "--device", "cpu"]
    torchrun(args)
    results = json.loads((out / "test_results.json").read_text())
    assert all_finite(results["single_frame"]) and "per_frame" not in results
    state = torch.load(out / "finetuned.pth", map_location="cpu", weights_only=True)
    assert state["head.fc.weight"].shape == (4, 32)


def _fake_clip_folder(toy, tmp_path, stems):
    """Copy toy clips under new names: audio in clips/, frames in frames/frame_i/."""
    import shutil

    src = json.loads(Path(toy["train"]).read_text())["data"]
    clips, frames = tmp_path / "clips", tmp_path / "frames"
    clips.mkdir()
    for entry, stem in zip(src, stems):
        wav = Path(toy["train"]).parent / entry["wav"]
        shutil.copy(wav, clips / f"{stem}.wav")
        for i in range(10):
            (frames / f"frame_{i}").mkdir(parents=True, exist_ok=True)
            shutil.copy(Path(toy["root"]) / "frames" / f"frame_{i}" / f"{entry['video_id']}.jpg",
                        frames / f"frame_{i}" / f"{stem}.jpg")
    return clips, frames


def test_prepare_scripts_build_manifests_and_report_missing(toy, tmp_path):
    from speechbrain_cavmae.data.dataset import build_dataset

    clips, frames = _fake_clip_folder(toy, tmp_path, ["aaa_30.000", "bbb_000010"])
    segments = tmp_path / "eval_segments.csv"
    segments.write_text(
        "# Segments csv created Sun Mar  5 10:54:31 2017\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        'aaa, 30.000, 40.000, "/m/toy00,/m/toy01"\n'
        'zzz, 10.000, 20.000, "/m/toy02"\n'
    )
    out = tmp_path / "as.json"
    proc = run([str(REPO / "recipes" / "AudioSet" / "audioset_prepare.py"), "--segments",
                str(segments), "--clips_dir", str(clips), "--frames_dir", str(frames),
                "--output", str(out), "--label_csv", toy["label_csv"]])
    assert "1 of 2 clips found, 1 missing" in proc.stdout
    assert (tmp_path / "as.missing.txt").read_text().split() == ["zzz,10.000"]
    data = json.loads(out.read_text())["data"]
    assert [(d["video_id"], d["labels"]) for d in data] == [("aaa_30.000", "/m/toy00,/m/toy01")]
    ds = build_dataset(out, toy["label_csv"], {"target_length": 96, "im_res": 64}, train=False)
    assert ds[0]["labels"].tolist() == [1.0, 1.0, 0.0, 0.0]

    vgg_csv = tmp_path / "vggsound.csv"
    vgg_csv.write_text("bbb,10,dog barking,train\nccc,5,cat purring,train\n"
                       "ddd,0,dog barking,test\n")
    proc = run([str(REPO / "recipes" / "VGGSound" / "vggsound_prepare.py"), "--csv",
                str(vgg_csv), "--clips_dir", str(clips), "--frames_dir", str(frames),
                "--out_dir", str(tmp_path / "vgg")])
    assert "train: 1 of 2 clips found, 1 missing" in proc.stdout
    assert "test: 0 of 1 clips found, 1 missing" in proc.stdout
    train = json.loads((tmp_path / "vgg" / "vggsound_train.json").read_text())["data"]
    assert [(d["video_id"], d["labels"]) for d in train] == [("bbb_000010", "dog barking")]
    labels = tmp_path / "vgg" / "class_labels_indices_vgg.csv"
    ds = build_dataset(tmp_path / "vgg" / "vggsound_train.json", str(labels),
                       {"target_length": 96, "im_res": 64}, train=False)
    assert ds[0]["labels"].tolist() == [0.0, 1.0]  # cat purring, dog barking


def test_prepare_finds_real_video_clip():
    shared = REPO.parent / "shared" / "samples"
    clip = shared / "00W1lcxW-WU_40.000.mp4"
    if not clip.is_file():
        pytest.skip(f"sample clip not available at {clip}")
    import tempfile

    sys.path.insert(0, str(REPO / "recipes" / "AudioSet"))
    try:
        from audioset_prepare import prepare_audioset
    finally:
        sys.path.pop(0)
    with tempfile.TemporaryDirectory() as tmp:
        seg = Path(tmp) / "seg.csv"
        seg.write_text('00W1lcxW-WU, 40.000, 50.000, "/m/04rlf"\n')
        report = prepare_audioset(seg, shared, Path(tmp) / "m.json")
        entry = json.loads((Path(tmp) / "m.json").read_text())["data"][0]
    assert report["found"] == 1 and not report["missing"]
    assert entry["video"] == str(clip) and entry["wav"] == str(clip)
