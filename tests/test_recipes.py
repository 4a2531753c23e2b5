"""End-to-end tests of the recipes through their real command line, on a tiny toy dataset.

Each test checks ``python recipes/<Dataset>/train.py hparams/<file>.yaml ...`` runs with a
tiny model (embed_dim 32, one modality-specific layer, 64 px frames, 96 fbank frames):
AudioSet pretraining, fine-tuning from that checkpoint (which must beat chance on the
held-out split), evaluation only (VGGSound, bf16 and the missing-modality modes are in
``test_recipe_paths.py``); a run killed with SIGKILL in the middle of an epoch and resumed,
which must end as the uninterrupted run; and two-process DDP runs (torchrun, gloo on CPU),
whose processes must end with the same weights after training on disjoint halves of each
epoch, fine-tuning with the weights of one process on the same global batches.

The start-up of torch and SpeechBrain costs seconds a process, so the runs share
processes (``recipe_chain.py``: the real scripts and command lines, one after the other):
the single-process runs one process (``runs``), the two DDP runs one ``torchrun``
(``ddp_runs``); only the run killed mid-epoch has a process of its own. The pretraining run
of ``runs`` is also the uninterrupted reference of the resumption test (it checkpoints
every step and traces its batches).
"""

import json
import math
import re
from pathlib import Path

import pytest
import torch

from processes import REPO, run, torchrun
from recipe_cli import (
    AUDIOSET, CHAIN, DECODER, ENCODER, HP, NO_AUG, all_finite, chain_while_killing, data_args,
    pretrain_args, write_plan,
)
from speechbrain_cavmae.checkpoints import load_original_checkpoint

def _resumable_pretraining(toy, out):
    """Pretraining that checkpoints every step and traces its batches (``rank_trace``)."""
    return pretrain_args(toy, out, epochs=2, extra=[
        "--ckpt_interval_minutes", "0", "--ckpt_interval_steps", "1", "--rank_trace", "True"])


def _noval_args(toy, out):
    return [AUDIOSET, str(HP / "cavmae.yaml"), "--train_data", toy["test"], "--output_folder",
            str(out), *ENCODER, *DECODER, "--batch_size", "4", "--number_of_epochs", "2"]


def _finetune_args(toy, out):
    return [AUDIOSET, str(HP / "cavmae_ft.yaml"), *data_args(toy), "--output_folder",
            str(out), *ENCODER, "--batch_size", "4"]


def _eval_only_args(toy, out):
    return [AUDIOSET, str(HP / "cavmae_ft.yaml"), "--valid_data", toy["valid"],
            "--test_data", toy["test"], "--label_csv", toy["label_csv"],
            "--output_folder", str(out), *ENCODER, "--batch_size", "4", "--test_only"]


def _audio_only_finetune_args(toy, pretrained):
    return [AUDIOSET, str(HP / "cavmae_ft_audioonly.yaml"), *data_args(toy, test=False),
            "--pretrained_path", str(pretrained / "pretrained.pth"), *ENCODER, *NO_AUG,
            "--number_of_epochs", "2", "--shuffle", "False", "--rank_trace", "True"]


@pytest.fixture(scope="module")
def runs(toy, tmp_path_factory):
    """The single-process runs of this module, in order, in one process (alongside it, the
    run that is killed mid-epoch, in a process of its own):

    * ``pretrain``: AudioSet pretraining, 2 epochs, checkpoints every step;
    * ``noval``: pretraining without validation, run twice (``noval_run1``: its files
      after the first run);
    * ``ft``: fine-tuning from ``pretrain`` (``ft_run1_results.json``: its test results),
      then evaluation only from its checkpoints (a new ``ft/test_results.json``);
    * ``resumed``: the command line of ``pretrain`` again in the killed run's folder (once
      that run is killed);
    * ``single_ft``: audio-only fine-tuning on one process, 16 clips a batch (the
      reference of the DDP fine-tuning).
    """
    out = tmp_path_factory.mktemp("recipes")
    resumed = out / "resumed"
    noval, ft = out / "noval", out / "ft"
    (out / "noval_run1").mkdir()
    plan = [
        {"argv": _resumable_pretraining(toy, out / "pretrain")},
        {"argv": _noval_args(toy, noval),
         "copy_after": [[noval / name, out / "noval_run1" / name]
                        for name in ("history.json", "train_log.txt", "save")]},
        {"argv": _noval_args(toy, noval)},  # finds the finished epochs: trains no more
        {"argv": [*_finetune_args(toy, ft), "--pretrained_path",
                  out / "pretrain" / "pretrained.pth", *NO_AUG,
                  "--number_of_epochs", "16", "--lr", "1e-3", "--head_lr", "10",
                  "--lrscheduler_start", "12", "--wa_start", "13", "--wa_end", "16"],
         "copy_after": [[ft / "test_results.json", out / "ft_run1_results.json"]]},
        # Evaluation only, from the saved checkpoints (no --train_data needed): it must
        # write the test results anew.
        {"argv": _eval_only_args(toy, ft), "remove_before": [ft / "test_results.json"]},
        # the same command line again, once the run alongside has been killed: it resumes
        {"argv": _resumable_pretraining(toy, resumed), "wait_for": out / "killed"},
        {"argv": [*_audio_only_finetune_args(toy, out / "pretrain"), "--output_folder",
                  out / "single_ft", "--batch_size", "16"]},
    ]
    # Alongside the chain, the run killed mid-epoch: killed in the first epoch once a step
    # > 1 is checkpointed, so that the restored state holds several steps of running sums.
    on_disk, history = chain_while_killing(
        write_plan(out / "plan.json", plan), _resumable_pretraining(toy, resumed),
        resumed / "save", out / "killed", min_step=2)
    return {"out": out, "killed": {"history": history, "on_disk": on_disk}}


@pytest.fixture(scope="module")
def pretrained(runs):
    return runs["out"] / "pretrain"


@pytest.fixture(scope="module")
def ddp_runs(runs, toy):
    """The two DDP runs in one ``torchrun`` (2 processes, gloo on CPU): ``ddp``, one epoch
    of pretraining from ``pretrain``; ``ddp_ft``, audio-only fine-tuning, 8 clips a batch
    on each process (the runs of ``single_ft`` split in two)."""
    out, pretrained = runs["out"], runs["out"] / "pretrain"
    plan = [
        {"argv": pretrain_args(toy, out / "ddp", epochs=1, extra=[
            "--pretrained_path", str(pretrained / "pretrained.pth"), "--rank_trace", "True",
            "--distributed_backend", "gloo", "--device", "cpu"])},
        {"argv": [*_audio_only_finetune_args(toy, pretrained), "--output_folder",
                  out / "ddp_ft", "--batch_size", "8", "--distributed_backend", "gloo",
                  "--device", "cpu"]},
    ]
    proc = torchrun([CHAIN, write_plan(out / "ddp_plan.json", plan)])
    return {"out": out, "stderr": proc.stderr}


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


def test_pretraining_without_validation_logs_and_checkpoints_each_epoch(runs):
    out, first = runs["out"] / "noval", runs["out"] / "noval_run1"  # after the first run
    history = json.loads((first / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(h["valid"] is None and math.isfinite(h["train"]["loss"]) for h in history)
    assert all(h["train"]["samples_per_s"] > 0 for h in history)  # 8 steps, 5 warm-up
    ckpts = sorted(p.name for p in (first / "save").iterdir() if p.name.startswith("CKPT"))
    assert len(ckpts) == 1, ckpts  # the newest end-of-epoch checkpoint is kept
    meta = (first / "save" / ckpts[0] / "CKPT.yaml").read_text()
    assert "epoch: 2" in meta and "end-of-epoch: true" in meta
    # the rerun found the finished epochs in the checkpoint and trained no more
    assert sorted(p.name for p in (out / "save").iterdir() if p.name.startswith("CKPT")) \
        == ckpts
    assert (out / "train_log.txt").read_text() == (first / "train_log.txt").read_text()


@pytest.mark.slow
def test_audioset_finetuning_beats_chance_then_evaluates(runs):
    out = runs["out"] / "ft"
    results = json.loads((runs["out"] / "ft_run1_results.json").read_text())
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
    # Evaluation only, from the saved checkpoints (the chain removed the training run's
    # test_results.json before it): the same numbers.
    again = json.loads((out / "test_results.json").read_text())
    assert again["multi_frame"] == pytest.approx(multi)
    assert again["weights"] == results["weights"]


def _traced_batches(out):
    """``{(epoch, step): ids}`` of ``rank_trace``'s ids file of rank 0 (a step traced twice,
    by a killed run and again by its resumption, keeps the later line)."""
    lines = (out / "ranks" / "rank0_ids.txt").read_text().splitlines()
    return {tuple(map(int, line.split()[:2])): line.split()[2:] for line in lines}


def _flat_numbers(history):
    """``{(epoch, stage, key): value}`` of the logged statistics, throughput left out
    (timing, not a result)."""
    return {(h["epoch"], stage, key): value for h in history
            for stage in ("train", "valid") for key, value in (h[stage] or {}).items()
            if key != "samples_per_s"}


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch_equals_uninterrupted_run(runs):
    """A pretraining run killed (SIGKILL) right after an intra-epoch checkpoint and then
    restarted ends exactly as the same command line run without interruption: same
    batches (the dataloader position), same masks and noise (the random generators are
    part of the checkpoint), same per-epoch means of the losses (the running sums of the
    interrupted epoch are part of the checkpoint), same weights and test results.

    Both runs do the same float32 operations in the same order on one CPU thread, so the
    results are expected to be bit-identical; the tolerance (rtol 1e-6) only absorbs what
    a JSON round trip of the logged numbers could change, far below the effect of a
    single different mask or batch.
    """
    out, ref = runs["out"] / "resumed", runs["out"] / "pretrain"  # ``runs``: the command lines
    assert not runs["killed"]["history"]  # killed in the first epoch
    on_disk = runs["killed"]["on_disk"]
    # The restart with the same command line resumed from the newest mid-epoch checkpoint.
    log = (out / "log.txt").read_text()
    loaded = re.findall(r"Loading a checkpoint from (\S+)", log)
    assert loaded and Path(loaded[0]).name in on_disk, (loaded, on_disk)
    step = on_disk[Path(loaded[0]).name]
    assert 2 <= step < 8, step  # 8 steps an epoch

    # the same batches, in the same order, before and after the restart
    batches = _traced_batches(ref)
    assert sorted(batches) == [(e, s) for e in (1, 2) for s in range(1, 9)]
    assert _traced_batches(out) == batches
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    # epoch 1's means cover all its steps, those before the kill included
    expected = _flat_numbers(json.loads((ref / "history.json").read_text()))
    assert _flat_numbers(history) == pytest.approx(expected, rel=1e-6)
    results = json.loads((out / "test_results.json").read_text())
    assert results == pytest.approx(json.loads((ref / "test_results.json").read_text()),
                                    rel=1e-6)
    weights = torch.load(out / "pretrained.pth", weights_only=True)
    for key, value in torch.load(ref / "pretrained.pth", weights_only=True).items():
        torch.testing.assert_close(weights[key], value, rtol=1e-6, atol=1e-7,
                                   msg=lambda m, key=key: f"{key}: {m}")


def _rank_outputs(out, nranks):
    """Per-rank weights and ``{(epoch, step): ids}`` written by ``--rank_trace True``."""
    weights, batches = [], []
    for rank in range(nranks):
        weights.append(torch.load(out / "ranks" / f"rank{rank}.pth", weights_only=True))
        lines = (out / "ranks" / f"rank{rank}_ids.txt").read_text().splitlines()
        batches.append({tuple(map(int, line.split()[:2])): line.split()[2:] for line in lines})
    return weights, batches


def _manifest_ids(path):
    return [entry["video_id"] for entry in json.loads(Path(path).read_text())["data"]]


def _assert_same_weights(ranks):
    """DDP broadcasts the initial weights and every process applies the same averaged
    gradient: the processes' weights are equal bit for bit."""
    first, other = ranks
    assert set(first) == set(other)
    different = [key for key in first if not torch.equal(first[key], other[key])]
    assert not different, f"the two processes disagree on {different[:5]}"


def _max_change(after, before, keys):
    return max(float((after[k] - before[k]).abs().max()) for k in keys)


@pytest.mark.slow
def test_ddp_two_process_cpu_pretraining(ddp_runs, pretrained, toy):
    """Two processes (torchrun, gloo on CPU) end with the same weights, and each trains on
    its own half of the epoch.

    Unlike fine-tuning, pretraining is not expected to match a single process with the
    same global batch: the contrastive loss takes its negatives from the process's own
    batch (as the original, whose loss is computed inside the model on each DataParallel
    replica's part of the batch), so 2 x 8 has other negatives than 1 x 16.
    """
    out = ddp_runs["out"] / "ddp"
    assert "Traceback" not in ddp_runs["stderr"]
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1 and all_finite(history[0]["valid"])
    weights, batches = _rank_outputs(out, 2)
    _assert_same_weights(weights)
    init = torch.load(pretrained / "pretrained.pth", weights_only=True)
    assert _max_change(weights[0], init, init) > 1e-4  # it trained
    exported = torch.load(out / "pretrained.pth", weights_only=True)
    assert all(torch.equal(exported[k], weights[0][k]) for k in exported)
    # Each process trains on its own half of the 64 (shuffled) clips: 4 batches of 8.
    for rank_batches in batches:
        assert sorted(rank_batches) == [(1, s) for s in range(1, 5)]
        assert all(len(ids) == 8 for ids in rank_batches.values())
    halves = [{i for ids in b.values() for i in ids} for b in batches]
    assert len(halves[0]) == len(halves[1]) == 32 and not halves[0] & halves[1]
    assert halves[0] | halves[1] == set(_manifest_ids(toy["train"]))
    # the checkpoint holds the model without DDP's "module." prefix
    ckpts = list((out / "save").glob("CKPT+*/model.ckpt"))
    assert len(ckpts) == 1
    state = torch.load(ckpts[0], map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
    model = load_original_checkpoint(str(out / "pretrained.pth"), num_heads=2,
                                     decoder_num_heads=2)
    assert not model.load_state_dict(state, strict=True).missing_keys


@pytest.mark.slow
def test_ddp_two_process_cpu_audio_only_finetuning_equals_single_process(
        ddp_runs, pretrained, toy):
    """Fine-tuning on 2 processes x 8 clips (torchrun, gloo on CPU) ends with the weights
    of one process x 16 clips, the same global batches.

    Without shuffling, DDP's sampler gives process r the clips r, r + 2, ... of the
    manifest, so global batch k holds the same 16 clips in both runs; the loss is a mean
    over the batch and DDP averages the gradients of the processes, so the updates are
    the same up to float rounding (sums in another order). Augmentation, mixup and
    drop-path are off; the audio-only mode leaves the visual branch without any gradient,
    which DDP (``find_unused_parameters``) and the optimizer must leave untouched.

    Tolerance: atol 1e-6 (the runs differ by < 2e-8 after the 8 Adam steps; training
    moves the encoder by > 1e-4). Left out: the key bias of each attention layer (the
    middle third of ``qkv.bias``), which gets no gradient in exact arithmetic (softmax
    ignores a constant added to every score), so its update is Adam-normalised rounding
    noise (~1e-6 apart between the runs). Not checked: the 1 / world_size scale of the
    averaged gradients (Adam's update does not depend on the gradient's scale).
    """
    ddp, single = ddp_runs["out"] / "ddp_ft", ddp_runs["out"] / "single_ft"

    results = json.loads((ddp / "test_results.json").read_text())
    assert all_finite(results["single_frame"]) and "per_frame" not in results
    weights, batches = _rank_outputs(ddp, 2)
    _assert_same_weights(weights)
    (one,), (single_batches,) = _rank_outputs(single, 1)
    # global batch k = the same 16 clips; process r has the clips r::2 of it
    ids = _manifest_ids(toy["train"])
    assert sorted(single_batches) == [(e, s) for e in (1, 2) for s in range(1, 5)]
    for (epoch, step), clips in single_batches.items():
        assert clips == ids[16 * (step - 1):16 * step]
        assert batches[0][epoch, step] == clips[0::2]
        assert batches[1][epoch, step] == clips[1::2]
    assert set(batches[0]) == set(batches[1]) == set(single_batches)

    init = torch.load(pretrained / "pretrained.pth", weights_only=True)
    # the visual patch embedding, positions, blocks and norms (the shared block's too)
    visual = [k for k in one if k.startswith("encoder.") and re.search(r"_v(\.|$)", k)]
    assert visual, sorted(one)[:20]
    for state in (weights[0], one):
        changed = [k for k in visual if not torch.equal(state[k], init[k])]
        assert not changed, f"the visual branch got updates in audio-only mode: {changed[:5]}"
    trained = [k for k in one if k not in visual and k in init]
    assert _max_change(one, init, trained) > 1e-4
    for key in one:
        ddp_value, single_value = weights[0][key], one[key]
        if key.endswith("attn.qkv.bias"):
            q, _, v = ddp_value.chunk(3)
            ddp_value = torch.cat([q, v])
            q, _, v = single_value.chunk(3)
            single_value = torch.cat([q, v])
        torch.testing.assert_close(ddp_value, single_value, rtol=0, atol=1e-6,
                                   msg=lambda m, key=key: f"{key}: {m}")


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


def test_prepare_scripts_build_manifests_and_report_missing(toy, tmp_path, capsys):
    from speechbrain_cavmae.cli import main as cavmae
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
    ds = build_dataset(out, toy["label_csv"], {"audio_length": 96, "image_size": 64}, train=False)
    assert ds[0]["labels"].tolist() == [1.0, 1.0, 0.0, 0.0]

    vgg_csv = tmp_path / "vggsound.csv"
    vgg_csv.write_text("bbb,10,dog barking,train\nccc,5,cat purring,train\n"
                       "ddd,0,dog barking,test\n")
    # the recipe script above is ``cavmae prepare audioset``; here the command itself
    assert cavmae(["prepare", "vggsound", "--csv", str(vgg_csv), "--clips_dir", str(clips),
                   "--frames_dir", str(frames), "--output", str(tmp_path / "vgg")]) == 0
    stdout = capsys.readouterr().out
    assert "train: 1 of 2 clips found, 1 missing" in stdout
    assert "test: 0 of 1 clips found, 1 missing" in stdout
    train = json.loads((tmp_path / "vgg" / "vggsound_train.json").read_text())["data"]
    assert [(d["video_id"], d["labels"]) for d in train] == [("bbb_000010", "dog barking")]
    labels = tmp_path / "vgg" / "class_labels_indices_vgg.csv"
    ds = build_dataset(tmp_path / "vgg" / "vggsound_train.json", str(labels),
                       {"audio_length": 96, "image_size": 64}, train=False)
    assert ds[0]["labels"].tolist() == [0.0, 1.0]  # cat purring, dog barking


def test_prepare_finds_real_video_clip():
    shared = REPO.parent / "shared" / "samples"
    clip = shared / "00W1lcxW-WU_40.000.mp4"
    if not clip.is_file():
        pytest.skip(f"sample clip not available at {clip}")
    import tempfile

    from speechbrain_cavmae.data.prepare import prepare_audioset

    with tempfile.TemporaryDirectory() as tmp:
        seg = Path(tmp) / "seg.csv"
        seg.write_text('00W1lcxW-WU, 40.000, 50.000, "/m/04rlf"\n')
        report = prepare_audioset(seg, shared, Path(tmp) / "m.json")
        entry = json.loads((Path(tmp) / "m.json").read_text())["data"][0]
    assert report["found"] == 1 and not report["missing"]
    assert entry["video"] == str(clip) and entry["wav"] == str(clip)
