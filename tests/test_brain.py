"""Unit tests of the Brain classes, the schedules and the recipe helpers (in-process)."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import speechbrain as sb
import torch
from references import linear_time_resize
from speechbrain.utils.checkpoints import Checkpointer
from speechbrain.utils.epoch_loop import EpochCounter
from speechbrain.utils.train_logger import FileTrainLogger

from speechbrain_cavmae.model.tasks import average_frame_predictions
from speechbrain_cavmae.training.brains import FinetuneBrain
from speechbrain_cavmae.training.state import WeightAverager
from speechbrain_cavmae.checkpoints.original import CheckpointMismatchError, speechbrain_to_original
from speechbrain_cavmae.model.classifier import CAVMAEClassifier
from speechbrain_cavmae.data.dataset import build_dataset, collate_av
from speechbrain_cavmae.training.accumulators import ClassificationStats, MultiLabelMetrics
from speechbrain_cavmae.model.cavmae import CAVMAE
from speechbrain_cavmae.model.modes import get_mode
from speechbrain_cavmae.checkpoints import load
from speechbrain_cavmae.checkpoints.loader import average_state_dicts, read_state_file
from speechbrain_cavmae.training.recipe import (
    class_balanced_weights,
)
from speechbrain_cavmae.training.schedules import WarmupStepDecay, step_decay_factor
from speechbrain_cavmae.data.toy import generate_toy_dataset

TINY = dict(img_size=32, audio_length=64, embed_dim=32, modality_specific_depth=1, num_heads=2)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py



# ----------------------------------------------------------------- schedules
@pytest.mark.parametrize("start,step", [(2, 1), (5, 1), (10, 5)])
def test_step_decay_matches_multisteplr_stepped_per_epoch(start, step):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ref = torch.optim.lr_scheduler.MultiStepLR(opt, list(range(start, 1000, step)), gamma=0.5)
    for epoch in range(1, 26):
        assert step_decay_factor(epoch, start, step, 0.5) == pytest.approx(
            opt.param_groups[0]["lr"]), epoch
        opt.step()
        ref.step()


def test_warmup_step_decay_keeps_group_ratio_and_checkpoints(tmp_path):
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.Adam([{"params": [params[0]], "lr": 1e-4},
                            {"params": [params[1]], "lr": 1e-2}])
    sched = WarmupStepDecay(warmup_steps=10, decay_start=1, decay_step=1, decay=0.5)
    lrs = [sched(opt, epoch=1) for _ in range(5)]
    assert lrs[0] == pytest.approx([1e-5, 1e-3]) and lrs[4] == pytest.approx([5e-5, 5e-3])
    ckpt = Checkpointer(tmp_path, {"sched": sched})
    ckpt.save_checkpoint()
    restored = WarmupStepDecay(warmup_steps=10, decay_start=1, decay_step=1, decay=0.5)
    Checkpointer(tmp_path, {"sched": restored}).recover_if_possible()
    assert restored.n_steps == 5 and restored.base_lrs == pytest.approx([1e-4, 1e-2])
    for _ in range(10):
        last = restored(opt, epoch=3)  # warm-up over, two decays
    assert last == pytest.approx([2.5e-5, 2.5e-3])


# ------------------------------------------------------------ weight averaging
def test_weight_averager_matches_file_average_and_survives_checkpointing(tmp_path):
    model = torch.nn.Linear(3, 2)
    avg = WeightAverager()
    files = []
    for i in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.normal_()
        avg.update(model)
        files.append(tmp_path / f"m{i}.pth")
        torch.save(model.state_dict(), files[-1])
    ref = average_state_dicts([read_state_file(f) for f in files])
    for key, value in avg.state_dict().items():
        assert torch.allclose(value, ref[key], atol=1e-6)
    Checkpointer(tmp_path / "ck", {"wa": avg}).save_checkpoint()
    other = WeightAverager()
    Checkpointer(tmp_path / "ck", {"wa": other}).recover_if_possible()
    assert other.count == 3 and torch.equal(other.state_dict()["weight"], avg.mean["weight"])


# --------------------------------------------------------- multi-frame average
def test_average_frame_predictions_sigmoid_and_softmax():
    logits = torch.randn(4, 10, 6)
    bce = average_frame_predictions(logits, "BCE")
    ce = average_frame_predictions(logits, "CE")
    assert torch.allclose(bce, torch.sigmoid(logits).mean(1))
    assert torch.allclose(ce, torch.softmax(logits, -1).mean(1))
    assert torch.allclose(ce.sum(-1), torch.ones(4))
    with pytest.raises(ValueError, match=r"expected \[batch, frames, classes\], got \(4, 6\)"):
        average_frame_predictions(logits[:, 0])


# ------------------------------------------------------------- FinetuneBrain
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return generate_toy_dataset(tmp_path_factory.mktemp("toyb"), n_train=6, n_valid=2,
                                n_test=6, seed=2, image_size=32, n_classes=3)


def make_brain(tmp_path, loss="BCE", freeze_base=False, mode="multimodal"):
    torch.manual_seed(0)
    model = CAVMAEClassifier(3, mode=mode, **TINY)
    counter = EpochCounter(1)
    hparams = {
        "model": model, "ft_mode": mode, "loss": loss, "lr": 1e-3, "head_lr": 10,
        "freeze_base": freeze_base, "weight_averaging": False, "wa_start": 1, "wa_end": 1,
        "topk": [1, 2], "audio_length": 64, "output_folder": str(tmp_path),
        "train_logger": FileTrainLogger(str(tmp_path / "log.txt")), "epoch_counter": counter,
    }
    return FinetuneBrain(
        modules={"model": model}, hparams=hparams, run_opts={"device": "cpu"},
        opt_class=lambda groups: torch.optim.Adam(groups, betas=(0.95, 0.999)),
        checkpointer=Checkpointer(tmp_path / "save", {"model": model, "counter": counter}),
    )


def test_no_progress_bars_when_stderr_is_not_a_terminal(tmp_path, monkeypatch):
    """A redirected log (stderr not a TTY) gets no tqdm bars; a terminal keeps them."""
    assert make_brain(tmp_path / "redirected").noprogressbar

    class Terminal:
        def isatty(self):
            return True

        def write(self, text):
            return len(text)

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert not make_brain(tmp_path / "terminal").noprogressbar


def test_finetune_param_groups_head_lr_and_freeze(tmp_path):
    brain = make_brain(tmp_path)
    brain.init_optimizers()
    base, head = brain.optimizer.param_groups
    assert head["lr"] == pytest.approx(10 * base["lr"])
    head_ids = {id(p) for p in brain.model.head.parameters()}
    assert {id(p) for p in head["params"]} == head_ids
    assert not head_ids & {id(p) for p in base["params"]}
    frozen = make_brain(tmp_path / "f", freeze_base=True)
    frozen.init_optimizers()
    assert len(frozen.optimizer.param_groups) == 1
    assert {id(p) for p in frozen.optimizer.param_groups[0]["params"]} == {
        id(p) for p in frozen.model.head.parameters()}
    assert not any(p.requires_grad for p in frozen.model.encoder.parameters())


@pytest.mark.parametrize("loss", ["BCE", "CE"])
def test_multi_frame_evaluation_results(toy, tmp_path, loss):
    brain = make_brain(tmp_path, loss=loss)
    test = build_dataset(toy["test"], toy["label_csv"],
                         {"audio_length": 64, "image_size": 32, "multi_frame": True}, train=False)
    brain.evaluate(test, test_loader_kwargs={"batch_size": 4, "collate_fn": collate_av})
    results = json.loads((tmp_path / "test_results.json").read_text())
    assert len(results["per_frame"]) == 10
    # Recompute per-frame and multi-frame metrics by hand.
    model = brain.model.eval()
    batch = collate_av([test[i] for i in range(len(test))])
    with torch.no_grad():
        logits = torch.stack([model(batch.fbank.data, batch.frames.data[:, k])
                              for k in range(10)], dim=1)
    metric = MultiLabelMetrics if loss == "BCE" else lambda: ClassificationStats(topk=(1, 2))
    probs = (torch.sigmoid(logits) if loss == "BCE" else torch.softmax(logits, -1)).mean(1)
    ref = metric()
    ref.append(batch.id, probs, batch.labels.data)
    assert results["multi_frame"] == pytest.approx(ref.summarize(), abs=1e-6)
    ref3 = metric()
    ref3.append(batch.id, logits[:, 3], batch.labels.data)
    assert results["per_frame"][3] == pytest.approx(ref3.summarize(), abs=1e-6)
    # The single-frame result uses the middle frame (5), as the original evaluation.
    assert {k: v for k, v in results["single_frame"].items() if k != "loss"} == pytest.approx(
        results["per_frame"][5], abs=1e-6)
    main = "mAP" if loss == "BCE" else "acc@1"
    assert main in results["multi_frame"]


@pytest.mark.parametrize("mode", ["multimodal", "videoonly", "missingvideoonly"])
def test_multi_frame_evaluation_encodes_audio_once_per_clip(toy, tmp_path, mode):
    """Multi-frame test evaluation: the logits of running the model on the batch's frame
    and on each of its frames in turn, with the audio branch run once per clip (none in the
    visual-only modes) and all the frames through the visual branch as one batch."""
    brain = make_brain(tmp_path, mode=mode)
    brain.modules.eval()
    test = build_dataset(toy["test"], toy["label_csv"],
                         {"audio_length": 64, "image_size": 32, "multi_frame": True}, train=False)
    batch = collate_av([test[i] for i in range(3)])
    enc, uses = brain.model.encoder, get_mode(mode)
    audio = brain.audio_features(batch, sb.Stage.TEST) if uses.audio else None
    with torch.no_grad():
        single = brain.model(audio, batch.frame.data, mode)
        per_frame = torch.stack([brain.model(audio, batch.frames.data[:, k], mode)
                                 for k in range(10)], dim=1)
    calls = {"a": [], "v": []}
    hooks = [getattr(enc, f"patch_embed_{m}").register_forward_hook(
        lambda mod, args, out, m=m: calls[m].append(out.shape[0])) for m in calls]
    try:
        with torch.no_grad():
            out = brain.compute_forward(batch, sb.Stage.TEST)
    finally:
        for hook in hooks:
            hook.remove()
    torch.testing.assert_close(out["logits"], single, atol=1e-6, rtol=0)
    torch.testing.assert_close(out["frame_logits"], per_frame, atol=1e-6, rtol=0)
    assert calls["a"] == ([3] if uses.audio else [])
    assert calls["v"] == [3 * 11]  # the batch's frame and its 10 frames, for 3 clips


def test_audio_only_mode_ignores_frames(toy, tmp_path):
    brain = make_brain(tmp_path, mode="audioonly")
    test = build_dataset(toy["test"], toy["label_csv"],
                         {"audio_length": 64, "image_size": 32, "multi_frame": True}, train=False)
    batch = collate_av([test[i] for i in range(3)])
    with torch.no_grad():
        out = brain.compute_forward(batch, sb.Stage.TEST)
        expected = brain.modules.model(brain.audio_features(batch, sb.Stage.TEST), None,
                                       mode="audioonly")
        batch.frame.data.fill_(float("nan"))  # frames that would poison any use of them
        batch.frames.data.fill_(float("nan"))
        again = brain.compute_forward(batch, sb.Stage.TEST)
    assert "frame_logits" not in out and out["logits"].shape == (3, 3)
    torch.testing.assert_close(out["logits"], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(again["logits"], out["logits"], atol=0, rtol=0)


# ------------------------------------------------------------- recipe helpers
def test_load_pretrained_original_format_into_classifier(tmp_path):
    torch.manual_seed(0)
    pre = CAVMAE(decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, **TINY)
    original = speechbrain_to_original(pre.state_dict())
    torch.save({f"module.{k}": v for k, v in original.items()}, tmp_path / "orig.pth")
    clf = CAVMAEClassifier(5, **dict(TINY, audio_length=96))  # longer audio: interpolated
    info = load(tmp_path / "orig.pth", into=clf).report
    assert any(k.startswith("decoder_") or k.startswith("decoder.") for k in info["ignored"])
    assert set(info["missing"]) == {"head.norm.weight", "head.norm.bias", "head.fc.weight",
                                    "head.fc.bias"}
    assert torch.equal(clf.encoder.blocks_a[0].attn.qkv.weight,
                       pre.encoder.blocks_a[0].attn.qkv.weight)
    assert clf.encoder.pos_embed_a.shape[1] == 8 * 6
    torch.testing.assert_close(clf.encoder.pos_embed_a.data,
                               linear_time_resize(pre.encoder.pos_embed_a.data, 8, 6),
                               atol=1e-6, rtol=0)
    deeper = CAVMAEClassifier(5, **dict(TINY, modality_specific_depth=2))
    with pytest.raises(CheckpointMismatchError,
                       match=r"missing keys.*blocks_a\.1.*1 modality-specific blocks, the model 2"):
        load(tmp_path / "orig.pth", into=deeper).report
    wider = CAVMAEClassifier(5, **dict(TINY, img_size=64))
    with pytest.raises(CheckpointMismatchError, match="pos_embed_v"):
        load(tmp_path / "orig.pth", into=wider).report


def test_class_balanced_weights_follow_the_original_formula(toy):
    from speechbrain_cavmae.data.manifest import LabelTable

    table = LabelTable.from_csv(toy["label_csv"])
    ds = build_dataset(toy["train"], table, {"audio_length": 64, "image_size": 32})
    weights = class_balanced_weights(ds, table)
    assert weights.shape == (6,) and torch.all(weights > 0)
    counts = {}
    for sid in ds.data_ids:
        for label in ds.data[sid]["label_ids"]:
            counts[label] = counts.get(label, 0) + 1
    for i, sid in enumerate(ds.data_ids):
        expected = sum(1000.0 / (counts[label] + 0.01) for label in ds.data[sid]["label_ids"])
        assert float(weights[i]) == pytest.approx(expected)


def test_atomic_checkpointer_ignores_unfinished_checkpoints(tmp_path):
    from speechbrain_cavmae.training.state import AtomicCheckpointer

    model = torch.nn.Linear(2, 2)
    ckpt = AtomicCheckpointer(tmp_path, {"model": model})
    saved = ckpt.save_checkpoint(meta={"n": 1})
    assert (saved.path / "CKPT.yaml").is_file()
    assert not (saved.path / "CKPT.yaml.partial").exists()
    # A save killed half-way: meta pending, a truncated file.
    broken = tmp_path / "CKPT+2099-01-01+00-00-00+00"
    broken.mkdir()
    (broken / "CKPT.yaml.partial").write_text("end-of-epoch: false\nunixtime: 9999999999\n")
    (broken / "model.ckpt").write_bytes(b"")
    with torch.no_grad():
        model.weight.zero_()
    found = ckpt.recover_if_possible()
    assert found.path == saved.path and not broken.exists()
    assert model.weight.abs().sum() > 0


@pytest.mark.slow
def test_atomic_checkpointer_processes_list_the_same_checkpoints(tmp_path):
    """Two DDP processes (gloo), three ``save_and_keep_only`` of an ``AtomicCheckpointer``
    whose last saver runs on both and writes slowly on the main one (as ``ShardLoader``
    does, see ``tests/ddp_checkpointer.py``). The other process must not list the
    checkpoints before the new one is published: it would see one fewer, delete nothing
    and wait in a barrier while the main one deletes (a broadcast), a hang that stopped a
    two-node run resumed after a kill."""
    from processes import run_ranks

    ranks = run_ranks([Path(__file__).resolve().parent / "ddp_checkpointer.py", tmp_path])
    for rank, proc in enumerate(ranks):
        assert proc.returncode == 0, (rank, proc.stderr[-3000:])
    views = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert views[0] == views[1]
    listed, left = views[0]["listed"], views[0]["left"]
    # each deletion began with the checkpoint just saved listed, and the one before it
    assert [len(names) for names in listed] == [1, 2, 2], listed
    assert listed[1][0] == listed[0][0] and listed[2][0] == listed[1][1]
    assert left == [listed[2][1]] == sorted(p.name for p in (tmp_path / "save").iterdir())


def test_features_on_device_match_the_dataset_fbank(toy, tmp_path):
    brain = make_brain(tmp_path)
    cfg = {"audio_length": 64, "image_size": 32}
    on_cpu = build_dataset(toy["test"], toy["label_csv"], cfg, train=False)
    on_dev = build_dataset(toy["test"], toy["label_csv"], dict(cfg, features_on_device=True),
                           train=False)
    batch_cpu = collate_av([on_cpu[i] for i in range(3)])
    batch_dev = collate_av([on_dev[i] for i in range(3)])
    assert not hasattr(batch_cpu, "wav") and hasattr(batch_dev, "wav")
    a = brain.audio_features(batch_cpu, sb.Stage.VALID)
    b = brain.audio_features(batch_dev, sb.Stage.VALID)
    assert a.shape == b.shape == (3, 64, 128)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)  # two fbank implementations: 4e-5 apart


class _ConstantLossBrain(sb.Brain):
    """A one-parameter brain whose training loss is ``value`` (for the finiteness check)."""

    value = float("nan")

    def compute_forward(self, batch, stage):
        return self.modules.w(batch)

    def compute_objectives(self, predictions, batch, stage):
        return predictions.sum() * 0 + self.value


@pytest.mark.parametrize("value, raises", [(float("nan"), True), (1.0, False)])
def test_deferred_loss_check_keeps_speechbrain_nonfinite_patience(value, raises):
    from speechbrain_cavmae.training.brains import CAVMAEBrain

    brain_class = type("B", (CAVMAEBrain, _ConstantLossBrain), {"value": value})
    brain = brain_class(
        modules={"w": torch.nn.Linear(1, 1)},
        opt_class=lambda params: torch.optim.SGD(params, lr=0.1),
        hparams={},
        run_opts={"device": "cpu", "noprogressbar": True, "nonfinite_patience": 2},
    )
    data = [torch.ones(2, 1) for _ in range(4)]
    if raises:  # the third non-finite step exhausts a patience of 2, as in SpeechBrain
        with pytest.raises(ValueError, match="not finite"):
            brain.fit(range(1), data)
        assert brain.nonfinite_count == 3
    else:
        brain.fit(range(1), data)
        assert brain.nonfinite_count == 0


class _Batch:
    def __init__(self, x):
        self.x, self.batchsize = x, x.shape[0]


def test_ddp_step_is_skipped_by_every_process_when_one_has_no_batch(caplog):
    """Under DDP with the skip policy, a step in which another process's batch was skipped
    whole is skipped here too (no forward, backward or optimizer step), its good samples
    counted as left out; the epoch goes on with the other steps. The other process is
    stood for by the sum over the processes, which adds its missing batch at step 2."""
    from speechbrain_cavmae.training.brains import CAVMAEBrain

    class PartnerMissesStep2(CAVMAEBrain):
        stepped = []

        def summed_over_processes(self, counts):
            if "missing" in counts and self.step == 2:
                return {"missing": counts["missing"] + 1}
            return counts

        def compute_forward(self, batch, stage):
            return self.modules.model(batch.x)

        def compute_objectives(self, predictions, batch, stage):
            return predictions.pow(2).mean()

        def optimizers_step(self):
            self.stepped.append(self.step)
            super().optimizers_step()

        def on_stage_end(self, stage, stage_loss, epoch=None):
            self.check_stage(stage, epoch)

    brain = PartnerMissesStep2(
        modules={"model": torch.nn.Linear(1, 1)}, hparams={"on_bad_sample": "skip"},
        opt_class=lambda params: torch.optim.SGD(params, lr=0.1),
        run_opts={"device": "cpu", "noprogressbar": True})
    batches = [_Batch(torch.ones(2, 1)) for _ in range(3)]
    with caplog.at_level("WARNING"):
        brain.fit(range(1, 2), torch.utils.data.DataLoader(batches, batch_size=None))
    assert brain.stepped == [1, 3]
    assert "training step 2: 1 other process(es) had no good sample in their batch, so every " \
        "process skips the step (DDP processes step together): 2 good sample(s) of this " \
        "process left out" in caplog.text
    assert "train epoch 1: 2 good sample(s) left out with the steps in which another DDP " \
        "process had no good sample" in caplog.text


def test_epoch_resumed_after_its_last_step_is_not_empty(tmp_path):
    """A run killed after the intra-epoch checkpoint of its epoch's last step, before the
    end-of-epoch one, resumes with no batch left (``ShardLoader``: "0 batches to go", here
    an empty loader). The counts of the interrupted epoch are part of the checkpoint, so
    the resumed epoch is not an empty one (``EmptyEpochError``); without a checkpoint an
    empty epoch still is."""
    from speechbrain_cavmae.training.brains import CAVMAEBrain
    from speechbrain_cavmae.training.guard import EmptyEpochError
    from speechbrain_cavmae.training.state import AtomicCheckpointer

    class Checked(CAVMAEBrain):
        def compute_forward(self, batch, stage):
            return self.modules.model(batch.x)

        def compute_objectives(self, predictions, batch, stage):
            return predictions.pow(2).mean()

        def on_stage_end(self, stage, stage_loss, epoch=None):
            self.check_stage(stage, epoch)

    def brain():
        model = torch.nn.Linear(1, 1)
        return Checked(modules={"model": model}, hparams={},
                       opt_class=lambda params: torch.optim.SGD(params, lr=0.1),
                       checkpointer=AtomicCheckpointer(tmp_path / "save", {"model": model}),
                       run_opts={"device": "cpu", "noprogressbar": True,
                                 "ckpt_interval_minutes": 0, "ckpt_interval_steps": 1})

    def loader(n):
        return torch.utils.data.DataLoader([_Batch(torch.ones(2, 1))] * n, batch_size=None)

    brain().fit(range(1, 2), loader(3))  # no end-of-epoch checkpoint: that of step 3 stays
    (ckpt,) = (tmp_path / "save").iterdir()
    assert json.loads((ckpt / "epoch_counts.ckpt").read_text())["batches"] == 3
    resumed = brain()
    resumed.fit(range(1, 2), loader(0))
    assert resumed.step == 0  # the epoch ended (SpeechBrain resets the step)
    shutil.rmtree(tmp_path / "save")
    with pytest.raises(EmptyEpochError, match="train epoch 1: every sample was skipped"):
        brain().fit(range(1, 2), loader(0))


def test_loader_kwargs_pin_memory_on_cuda_only_unless_set():
    from speechbrain_cavmae.training.recipe import loader_kwargs

    hp = {"train_dataloader_opts": {"batch_size": 2}, "valid_dataloader_opts": {"pin_memory": False}}
    assert loader_kwargs(hp, "train_dataloader_opts", device="cuda:0")["pin_memory"] is True
    assert loader_kwargs(hp, "train_dataloader_opts", device="cpu")["pin_memory"] is False
    assert loader_kwargs(hp, "valid_dataloader_opts", device="cuda:0")["pin_memory"] is False
    assert loader_kwargs(hp, "train_dataloader_opts")["collate_fn"] is collate_av


def test_warns_when_the_averaged_model_is_worse_than_the_best_epoch(caplog):
    """Weight averaging reports the average; when it scores below the best epoch's
    checkpoint on the validation data (no separate test set), a warning names both and
    the flag that reports the best instead."""
    import logging
    from types import SimpleNamespace

    from speechbrain_cavmae.training.brains import FinetuneBrain

    best = SimpleNamespace(meta={"acc@1": 0.67, "epoch": 4})
    brain = SimpleNamespace(
        hparams=SimpleNamespace(test_data=None, test_shards=None), main_metric="acc@1",
        checkpointer=SimpleNamespace(find_checkpoint=lambda max_key: best))
    with caplog.at_level(logging.WARNING):
        FinetuneBrain.compare_with_best_epoch(brain, {"acc@1": 0.33})
        FinetuneBrain.compare_with_best_epoch(brain, {"acc@1": 0.70})
    said = [r.getMessage() for r in caplog.records]
    assert said == ["the weight-averaged model (the one reported and exported) scores acc@1 "
                    "0.3300 on the validation data, below the best epoch's checkpoint "
                    "(epoch 4: 0.6700); --weight_averaging False reports and exports the best "
                    "checkpoint instead"]
    caplog.clear()
    brain.hparams.test_data = "other.json"  # another set: not comparable, nothing said
    FinetuneBrain.compare_with_best_epoch(brain, {"acc@1": 0.33})
    assert not caplog.records
