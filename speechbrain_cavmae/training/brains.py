"""SpeechBrain ``Brain`` classes for CAV-MAE pretraining and fine-tuning.

* :class:`PretrainBrain`: masked reconstruction of both modalities plus the audio-visual
  contrastive loss, with their weights from the hparams; logs each loss and the in-batch
  contrastive accuracy per epoch, and audio<->visual retrieval (R@1/5/10, median rank) of
  the unmasked representations on the validation set.
* :class:`FinetuneBrain`: the classifier in one of the original's modes, BCE (AudioSet) or
  cross-entropy (VGGSound), the pretrained backbone and the new head in two parameter
  groups (``head_lr`` times the base rate; ``freeze_base`` for linear probing), running
  weight averaging of the end-of-epoch weights over ``wa_start..wa_end``, mAP / mAUC /
  d-prime or top-k accuracy per epoch, and at test time per-frame and multi-frame results
  (class probabilities averaged over the clip's frames) written to the log and to JSON.

Both brains read the inputs of :func:`speechbrain_cavmae.data.dataset.build_dataset`
batches (``fbank`` or, with ``features_on_device``, ``wav`` turned into normalised Kaldi
fbank on the training device), call the learning-rate scheduler at every optimizer step,
and skip batches whose every sample was dropped by ``on_bad_sample: skip`` (under DDP, every
process skips a training step in which any process's batch was dropped: see
:meth:`CAVMAEBrain.fit_batch`).

Expected hparams (see ``hparams/cavmae.yaml`` and ``hparams/cavmae_ft.yaml``):
``model``, ``lr_scheduler`` (:class:`~speechbrain_cavmae.training.schedules.WarmupStepDecay`),
``train_logger``, ``output_folder``, the data settings (``features_on_device``,
``sample_rate``, ``n_mels``, ``audio_length``, ``dataset_mean``, ``dataset_std``,
``freqm``, ``timem``, ``noise``), and the keys listed in each class.

Authors
 * speechbrain-cavmae contributors 2026
"""

import json
import logging
import math
import os
import sys
import time

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.distributed import if_main_process

from speechbrain_cavmae.data.augment import FbankAugment
from speechbrain_cavmae.data.files import atomic_write_json
from speechbrain_cavmae.data.fbank import DEFAULT_MEAN, DEFAULT_STD, KaldiFbank
from speechbrain_cavmae.checkpoints.loader import accumulate_mean
from speechbrain_cavmae.model.modes import check_mode, get_mode
from speechbrain_cavmae.training import sync
from speechbrain_cavmae.training.metrics import (
    ClassificationStats,
    MultiLabelMetrics,
    retrieval_metrics,
)

logger = logging.getLogger(__name__)


class EmptyEpochError(RuntimeError):
    """Raised when every sample of a stage was skipped (``on_bad_sample: skip``): there is
    nothing to train or evaluate on, and a loss of 0.0 would be made up."""


class NonFiniteLossError(RuntimeError):
    """Raised when training diverged: non-finite losses or weights. Nothing is saved or
    exported after it; the last checkpoint (whose weights were finite) stays."""


def non_finite_parameters(model):
    """Names of the parameters of ``model`` holding NaN or infinite values.

    Example
    -------
    >>> lin = torch.nn.Linear(2, 1)
    >>> non_finite_parameters(lin)
    []
    >>> _ = lin.bias.data.fill_(float("nan"))
    >>> non_finite_parameters(lin)
    ['bias']
    """
    return [name for name, param in model.named_parameters()
            if param.is_floating_point() and not bool(torch.isfinite(param).all())]


def unwrap(module):
    """The module inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper."""
    return module.module if hasattr(module, "module") else module


def average_frame_predictions(frame_logits, loss="BCE"):
    """Multi-frame prediction: class probabilities averaged over frames.

    As the original evaluation, each frame's logits go through a sigmoid (multi-label,
    ``loss="BCE"``) or a softmax over classes (``loss="CE"``) before averaging.

    Arguments
    ---------
    frame_logits : torch.Tensor
        ``[batch, n_frames, classes]`` logits.
    loss : str
        ``"BCE"`` or ``"CE"``.

    Returns
    -------
    torch.Tensor
        ``[batch, classes]`` averaged probabilities (float32).

    Example
    -------
    >>> logits = torch.tensor([[[0.0, 10.0], [10.0, 0.0]]])
    >>> average_frame_predictions(logits, "CE")
    tensor([[0.5000, 0.5000]])
    """
    if frame_logits.dim() != 3:
        raise ValueError(f"expected [batch, frames, classes], got {tuple(frame_logits.shape)}")
    x = frame_logits.float()
    probs = torch.sigmoid(x) if loss == "BCE" else torch.softmax(x, dim=-1)
    return probs.mean(dim=1)


def read_history(path):
    """The records of a ``history.json``; ``[]`` when it does not exist.

    A file that is not a JSON list of records (truncated by a crash of an older version,
    edited by hand...) is renamed ``<path>.corrupt`` with a warning naming it, and the
    history starts again from the current epoch: the run goes on rather than failing at
    the end of every epoch.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "history.json")
    >>> _ = open(path, "w").write('[{"epoch": 1}, {"ep')
    >>> read_history(path), os.path.isfile(path + ".corrupt")
    ([], True)
    """
    if not os.path.isfile(path):
        return []
    try:
        with open(path, encoding="utf8") as handle:
            history = json.load(handle)
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise ValueError("not a list of epoch records")
        return history
    except (ValueError, UnicodeDecodeError) as exc:
        aside = path + ".corrupt"
        os.replace(path, aside)
        logger.warning("%s is not a readable history (%s); moved it to %s and starting a new "
                       "history from this epoch", path, exc, aside)
        return []


@register_checkpoint_hooks
class WeightAverager:
    """Running mean of a model's weights, checkpointed with the training state.

    Equivalent to the original's averaging of the per-epoch checkpoints of epochs
    ``wa_start..wa_end`` (``update`` once at the end of each of those epochs), but holds
    one extra copy of the weights instead of one file per epoch. Non-floating-point
    tensors take the last value.

    Example
    -------
    >>> lin = torch.nn.Linear(1, 1, bias=False)
    >>> avg = WeightAverager()
    >>> for w in (1.0, 2.0, 6.0):
    ...     _ = lin.weight.data.fill_(w)
    ...     avg.update(lin)
    >>> avg.count, float(avg.state_dict()["weight"])
    (3, 3.0)
    """

    def __init__(self):
        self.mean = None
        self.count = 0

    @torch.no_grad()
    def update(self, model):
        """Add the current weights of ``model`` to the average
        (:func:`speechbrain_cavmae.checkpoints.loader.accumulate_mean`)."""
        self.mean, self.count = accumulate_mean(self.mean, self.count,
                                                unwrap(model).state_dict())

    def state_dict(self):
        """The averaged state dict (raises if nothing was averaged)."""
        if self.mean is None:
            raise RuntimeError("WeightAverager: no weights were averaged")
        return dict(self.mean)

    @mark_as_saver
    def save(self, path):
        """Save the running mean and count."""
        torch.save({"count": self.count, "mean": self.mean}, path)

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        """Restore the running mean and count."""
        del end_of_epoch
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.count = int(state["count"])
        self.mean = state["mean"]


@register_checkpoint_hooks
class RunningSums:
    """Per-sample sums of a training epoch's statistics, checkpointed with the epoch.

    SpeechBrain restores its own running mean of the training loss from an intra-epoch
    checkpoint; this does the same for the statistics a brain accumulates itself, so that
    an epoch resumed in its middle reports the means over all of its samples, not only
    over those after the restart. :meth:`reset` at the start of a training stage keeps
    the restored sums once.

    Example
    -------
    >>> sums = RunningSums()
    >>> sums.add({"loss": torch.tensor(2.0)}, 4)
    >>> sums.add({"loss": torch.tensor(1.0)}, 4)
    >>> sums.means(["loss", "other"])
    {'loss': 1.5, 'other': 0.0}
    """

    def __init__(self):
        self.sums = {}
        self.count = 0
        self._resumed = False

    def reset(self):
        """Start a new epoch, unless the sums were just restored from the middle of one."""
        if self._resumed:
            self._resumed = False
            return
        self.sums = {}
        self.count = 0

    def add(self, values, n):
        """Add ``value * n`` of each (device) tensor of ``values``; no host sync."""
        for key, value in values.items():
            value = value.detach().float() * n
            previous = self.sums.get(key)
            self.sums[key] = value if previous is None else previous.to(value.device) + value
        self.count += n

    def means(self, keys):
        """The per-sample means of ``keys`` (0 for a key never added)."""
        return {k: float(self.sums.get(k, 0.0)) / max(self.count, 1) for k in keys}

    @mark_as_saver
    def save(self, path):
        """Save the sums and the sample count."""
        sums = {k: v.detach().cpu() for k, v in self.sums.items()}
        torch.save({"sums": sums, "count": self.count}, path)

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        """Restore the sums of an interrupted epoch (an end-of-epoch checkpoint's epoch
        is over: nothing to restore)."""
        if end_of_epoch:
            return
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.sums = dict(state["sums"])
        self.count = int(state["count"])
        self._resumed = True


@register_checkpoint_hooks
class EpochCounts:
    """The counts of an interrupted training epoch (batches run, finite and non-finite
    losses, good samples left out: see :meth:`CAVMAEBrain.new_stage_counts`), summed over
    the DDP processes, checkpointed with it. A run resumed from an intra-epoch checkpoint
    starts its training stage from them, so the end-of-stage checks cover the whole epoch:
    an epoch resumed after its last step (killed before its end-of-epoch checkpoint) has no
    batch left to run, and is not empty.

    Example
    -------
    >>> counts = EpochCounts()
    >>> counts.counts = {"batches": 4}
    >>> counts.take() is None  # nothing restored
    True
    """

    def __init__(self):
        self.counts = {}
        self.restored = None

    def take(self):
        """The restored counts, once (``None`` when none were restored)."""
        restored, self.restored = self.restored, None
        return restored

    @mark_as_saver
    def save(self, path):
        """Save the counts."""
        with open(path, "w", encoding="utf8") as handle:
            json.dump(self.counts, handle)

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        """Restore the counts of an interrupted epoch (an end-of-epoch checkpoint's epoch
        is over: nothing to restore)."""
        if end_of_epoch:
            return
        with open(path, encoding="utf8") as handle:
            self.restored = {k: int(v) for k, v in json.load(handle).items()}


class CAVMAEBrain(sb.Brain):
    """Shared input handling, scheduling and result writing of the CAV-MAE brains."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not sys.stderr.isatty():  # no progress bars in a redirected log
            self.noprogressbar = True
        self.epoch = 0
        self._fbank = None
        self._augment = None
        self.bad_sample_counter = None  # set by the recipe (shared with the datasets)
        self.results = {}
        self.validates = True
        self._clock = None
        self._loss_to_check = False
        self._stage_counts = self.new_stage_counts()
        self._skipped_batch = False
        self.epoch_counts = EpochCounts()  # checkpointed: the counts of an interrupted epoch
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("epoch_counts", self.epoch_counts,
                                              optional_load=True)

    @staticmethod
    def new_stage_counts():
        """The zeroed counts of a stage, decided on at its end (see :meth:`check_stage`):
        batches run, finite and non-finite losses, and good samples left out because
        another DDP process had no good sample in the same step (see :meth:`fit_batch`)."""
        return {"batches": 0, "nonfinite": 0, "finite": 0, "left_out": 0}

    def fit(self, epoch_counter, train_set, valid_set=None, *args, **kwargs):
        """``Brain.fit``; without a validation set each epoch is logged and checkpointed
        at the end of training instead (see :meth:`end_train_stage`). With the hparam
        ``rank_trace``, each process then saves its weights (see :meth:`rank_trace_path`)."""
        self.validates = valid_set is not None
        result = super().fit(epoch_counter, train_set, valid_set, *args, **kwargs)
        if self.hp("rank_trace", False):
            path = self.rank_trace_path(".pth")
            torch.save(self.model.state_dict(), path)
            logger.info("rank_trace: saved this process's weights to %s", path)
        return result

    def init_optimizers(self):
        """SpeechBrain's optimizer over every trainable parameter; its rates are recorded
        (see :meth:`check_resumed_rates`)."""
        super().init_optimizers()
        self.requested_lrs = self.current_lrs()

    def on_fit_start(self):
        """SpeechBrain's start of ``fit`` (optimizers, then the latest checkpoint), then
        :meth:`check_resumed_rates`."""
        self.requested_lrs = None
        super().on_fit_start()
        self.check_resumed_rates()

    def check_resumed_rates(self):
        """Warn when the resumed checkpoint's learning rates differ from the hparams'.

        As SpeechBrain's schedulers do (``WarmAndExpDecayLRSchedule``, ``NewBobScheduler``,
        ``LinearWarmupScheduler`` restore their rate), a run resumed from its checkpoint
        goes on with the base rates of its learning-rate scheduler (and the optimizer's
        state), whatever ``--lr`` / ``--head_lr`` say now. The rates asked for are never
        dropped silently: the warning names both, the one used, and how to train with the
        new ones (a new output folder, starting from the checkpoint's weights).

        Returns
        -------
        list of float or None
            The checkpoint's base rates when they differ from the requested ones.
        """
        scheduler = self.hp("lr_scheduler")
        requested = getattr(self, "requested_lrs", None)
        if scheduler is None or not requested or self.checkpointer is None:
            return None
        restored = getattr(scheduler, "base_lrs", None)
        # a checkpoint taken before the first step holds no base rates: the optimizer's are
        restored = list(restored) if restored is not None else self.current_lrs()
        if len(restored) == len(requested) and all(
                math.isclose(a, b, rel_tol=1e-9) for a, b in zip(restored, requested)):
            return None
        ckpt = self.checkpointer.find_checkpoint()
        where = ckpt.path if ckpt is not None else self.checkpointer.checkpoints_dir
        names = [g.get("name", "lr") for g in self.optimizer.param_groups]

        def rates(values):
            return ", ".join(f"{n} {v:g}" for n, v in zip(names, values))

        logger.warning(
            "the learning rates asked for (%s) differ from the base rates of the resumed "
            "checkpoint %s (%s): the run goes on with the checkpoint's (%s), as a resumed "
            "SpeechBrain run continues its schedule. To train with %s, start a new run in "
            "another --output_folder (--pretrained_path %s starts it from these weights)",
            rates(requested), where, rates(restored), rates(restored), rates(requested), where)
        return restored

    def rank_trace_path(self, suffix):
        """``output_folder/ranks/rank<r><suffix>`` of the hparam ``rank_trace`` (for DDP
        debugging): every process (not only the main one) writes ``rank<r>_ids.txt``, one
        line ``epoch step id id ...`` per training batch (appended, so a resumed run adds
        its batches), and ``rank<r>.pth``, its model's state dict at the end of ``fit``.
        With DDP the weight files are identical and the ids of an epoch disjoint."""
        folder = os.path.join(self.hparams.output_folder, "ranks")
        os.makedirs(folder, exist_ok=True)
        rank = int(os.environ.get("RANK", 0))  # set by torchrun
        return os.path.join(folder, f"rank{rank}{suffix}")

    def trace_batch(self, batch):
        """Append the ids of a training batch to ``rank<r>_ids.txt`` (``rank_trace``)."""
        with open(self.rank_trace_path("_ids.txt"), "a", encoding="utf8") as handle:
            handle.write(f"{self.epoch} {self.step} {' '.join(batch.id)}\n")

    # ------------------------------------------------------------------ helpers
    @property
    def model(self):
        """The model module without its DDP wrapper."""
        return unwrap(self.modules.model)

    def hp(self, name, default=None):
        """An hparam, or ``default`` when the yaml does not define it."""
        return getattr(self.hparams, name, default)

    def fbank_module(self):
        """The on-device :class:`KaldiFbank` (built on first use)."""
        if self._fbank is None:
            self._fbank = KaldiFbank(
                sample_rate=self.hp("sample_rate", 16000),
                n_mels=self.hp("n_mels", 128),
                audio_length=self.hp("audio_length", 1024),
                dataset_mean=self.hp("dataset_mean", DEFAULT_MEAN),
                dataset_std=self.hp("dataset_std", DEFAULT_STD),
            ).to(self.device)
            self._augment = FbankAugment(
                freqm=self.hp("freqm", 0),
                timem=self.hp("timem", 0),
                noise=self.hp("noise", False),
                dataset_mean=self.hp("dataset_mean", DEFAULT_MEAN),
                dataset_std=self.hp("dataset_std", DEFAULT_STD),
            )
        return self._fbank

    def audio_features(self, batch, stage):
        """``[batch, frames, n_mels]`` normalised fbank on the device.

        With waveforms in the batch (``features_on_device``) the fbank is computed here in
        float32 (outside autocast), followed in training by SpecAugment and noise/roll.
        """
        wav = getattr(batch, "wav", None)
        if wav is None:
            return batch.fbank.data.to(self.device).float()
        fbank = self.fbank_module()
        with torch.autocast(device_type=self.device_type, enabled=False):
            feats = fbank(wav.data.to(self.device), wav.lengths.to(self.device))
            if stage == sb.Stage.TRAIN:
                feats = self._augment(feats)
        return feats

    def on_fit_batch_start(self, batch, should_step):
        """Set the learning rates for this optimizer step."""
        if should_step and batch is not None and hasattr(self, "optimizer"):
            scheduler = self.hp("lr_scheduler")
            if scheduler is not None:
                scheduler(self.optimizer, self.epoch)

    def on_stage_start(self, stage, epoch=None):
        """Record the epoch and start the throughput clock of a training stage; a training
        stage resumed from an intra-epoch checkpoint starts from its counts (the main
        process holds them: the checks sum the counts over the processes)."""
        self._stage_counts = self.new_stage_counts()
        self._skipped_batch = False
        if stage == sb.Stage.TRAIN:
            restored = self.epoch_counts.take()
            if restored and if_main_process():
                self._stage_counts.update(restored)
            if epoch is not None:
                self.epoch = epoch
            self.start_clock()

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Count samples and time for the epoch's throughput (see :meth:`throughput`);
        record the batch's ids with ``rank_trace``."""
        if batch is not None and self.hp("rank_trace", False):
            self.trace_batch(batch)
        clock = self._clock
        if clock is None or batch is None:
            return
        clock["steps"] += 1
        if clock["steps"] == clock["warmup"]:
            clock["start"] = time.perf_counter()
        elif clock["steps"] > clock["warmup"]:
            clock["samples"] += batch.batchsize
            clock["end"] = time.perf_counter()

    def start_clock(self):
        """Start measuring the training throughput of an epoch."""
        self._clock = {"steps": 0, "samples": 0, "start": None, "end": None,
                       "warmup": int(self.hp("throughput_warmup_steps", 5))}

    def throughput(self):
        """Training samples per second of this epoch, after ``throughput_warmup_steps``
        (default 5) steps, or ``None`` when the epoch was too short to tell.

        SpeechBrain reads each step's loss on the host, so step ends are synchronised and
        the figure is the device's real pace, data loading included.
        """
        clock = self._clock
        if not clock or not clock["samples"] or clock["end"] <= clock["start"]:
            return None
        return clock["samples"] / (clock["end"] - clock["start"])

    def end_train_stage(self, epoch, stats):
        """Keep the training statistics (with ``samples_per_s``); without validation, log
        them and save the end-of-epoch checkpoint here."""
        rate = self.throughput()
        if rate is not None:
            stats = {**stats, "samples_per_s": rate}
        self.train_stats = stats
        if self.validates or epoch is None:
            return
        logger.info("epoch %d: no validation set; checkpointing the end of training", epoch)
        self.log_validation(epoch, None)
        if self.checkpointer is not None:
            self.checkpointer.save_and_keep_only(
                meta={"epoch": epoch}, num_to_keep=1, importance_keys=[]
            )

    def check_loss_isfinite(self, loss):
        """Defer SpeechBrain's finiteness check of the training loss to :meth:`update_average`.

        ``Brain.fit_batch`` calls this between the forward and the backward pass, where
        reading the loss on the host would stall the device until the forward pass is done.
        The check (count, then stop once ``nonfinite_patience`` is exhausted) runs instead on
        the host copy of the loss that ``fit_batch`` returns at the end of the step.
        """
        self._loss_to_check = True

    def update_average(self, loss, avg_loss):
        """``Brain.update_average``, running the deferred finiteness check of a training loss
        and counting the stage's finite and non-finite losses (see :meth:`check_stage`)."""
        if self._loss_to_check:
            self._loss_to_check = False
            super().check_loss_isfinite(loss)
        if self._skipped_batch:
            self._skipped_batch = False
        elif bool(torch.isfinite(loss)):
            self._stage_counts["finite"] += 1
        else:
            self._stage_counts["nonfinite"] += 1
        return super().update_average(loss, avg_loss)

    def fit_batch(self, batch):
        """Train on one batch; a batch whose every sample was skipped is ignored.

        Under DDP the processes step together (the gradients are averaged in the backward
        pass), so with ``on_bad_sample: skip`` they first agree on each step (one small
        ``all_reduce``): when the batch of any process was skipped whole, every process
        skips the step, and the good samples of the others are left out, logged and counted
        (:meth:`check_stage` reports them). Without the agreement the processes with a
        batch would wait forever in the backward pass for the one without.
        """
        without = self.processes_without_batch(batch is None)
        if batch is None:
            logger.warning("every sample of a training batch was skipped")
        elif without:
            logger.warning(
                "training step %d: %d other process(es) had no good sample in their batch, so "
                "every process skips the step (DDP processes step together): %d good "
                "sample(s) of this process left out", self.step, without, batch.batchsize)
            self._stage_counts["left_out"] += batch.batchsize
        if without or batch is None:
            self._skipped_batch = True
            return torch.tensor(float("nan"))
        self._stage_counts["batches"] += 1
        return super().fit_batch(batch)

    def processes_without_batch(self, missing):
        """The number of DDP processes whose training batch of this step was skipped whole
        (``missing`` says whether this one's was): 0 or 1 in a single process, and without
        ``on_bad_sample: skip`` (no batch is ever skipped, so the processes need not agree)."""
        policy = (self.hp("data_config") or {}).get("on_bad_sample",
                                                     self.hp("on_bad_sample", "raise"))
        if policy != "skip":
            return int(missing)
        return self.summed_over_processes({"missing": int(missing)})["missing"]

    def evaluate_batch(self, batch, stage):
        """Evaluate one batch; a batch whose every sample was skipped is ignored."""
        if batch is None:
            logger.warning("every sample of a %s batch was skipped", stage.name.lower())
            self._skipped_batch = True
            return torch.tensor(float("nan"))
        self._stage_counts["batches"] += 1
        return super().evaluate_batch(batch, stage)

    def _save_intra_epoch_ckpt(self):
        """SpeechBrain's intra-epoch checkpoint, refused when the weights are not finite
        (a resumed run would start from them), with the epoch's counts (:class:`EpochCounts`;
        every process calls it)."""
        self.check_weights("before an intra-epoch checkpoint")
        self.epoch_counts.counts = self.summed_over_processes(self._stage_counts)
        super()._save_intra_epoch_ckpt()

    def check_weights(self, when):
        """Raise :class:`NonFiniteLossError` when a weight of the model is NaN or infinite."""
        bad = non_finite_parameters(self.model)
        if bad:
            raise NonFiniteLossError(
                f"training diverged: {len(bad)} weight tensor(s) are NaN or infinite {when} "
                f"(e.g. {bad[:3]}); nothing is saved or exported (the last checkpoint in "
                f"{self.hparams.output_folder} has finite weights): lower the learning rate "
                "(in a new --output_folder: a resumed run keeps its checkpoint's rates) or "
                "check the data")

    def check_stage(self, stage, epoch):
        """End-of-stage checks, before anything is logged, saved or exported: log (and reset)
        the samples skipped by ``on_bad_sample: skip``; raise :class:`EmptyEpochError` when
        no batch was run and :class:`NonFiniteLossError` when a validation or test loss was
        not finite, or training diverged (weights not finite, no finite loss, or more
        non-finite losses in the epoch than ``nonfinite_patience``).

        Under DDP the counts are summed over the processes (:meth:`summed_over_processes`),
        so that every process takes the same decision and reports the same totals: the
        training samples skipped in all processes (each reads its own share), and the good
        samples left out with the steps some process had no batch for (:meth:`fit_batch`).
        Validation and test sets are read whole by every process: their skipped samples are
        this process's."""
        counts, self._stage_counts = self._stage_counts, self.new_stage_counts()
        skipped = 0
        if self.bad_sample_counter is not None:
            skipped = self.bad_sample_counter.log_epoch(epoch, stage.name.lower())
        counts["skipped"] = skipped
        counts = self.summed_over_processes(counts)
        if stage == sb.Stage.TRAIN:
            skipped = counts["skipped"]
        name = stage.name.lower() + (f" epoch {epoch}" if epoch is not None else "")
        left_out = counts["left_out"]
        if counts["batches"] == 0 and left_out:
            raise EmptyEpochError(
                f"{name}: no training step ran: in every step the whole batch of at least one "
                f"DDP process was skipped ({skipped} bad sample(s) over all processes, listed "
                f"in the warnings), and the processes step together, so the other processes' "
                f"{left_out} good sample(s) were left out with them; fix or remove the bad "
                "samples (cavmae validate --manifest MANIFEST)")
        if counts["batches"] == 0:
            raise EmptyEpochError(
                f"{name}: every sample was skipped ({skipped} bad sample(s), listed in the "
                "warnings above), so there is nothing to "
                + ("train on" if stage == sb.Stage.TRAIN else "evaluate")
                + "; fix or remove them (cavmae validate --manifest MANIFEST)")
        if left_out:
            logger.warning("%s: %d good sample(s) left out with the steps in which another DDP "
                           "process had no good sample", name, left_out)
        if stage == sb.Stage.TRAIN:
            self.check_weights(f"at the end of {name}")
            patience = getattr(self, "nonfinite_patience", 3)
            if counts["nonfinite"] and (not counts["finite"] or counts["nonfinite"] > patience):
                raise NonFiniteLossError(
                    f"training diverged: {counts['nonfinite']} of "
                    f"{counts['nonfinite'] + counts['finite']} training losses of {name} were "
                    "NaN or infinite; nothing is saved or exported: lower the learning rate "
                    "(in a new --output_folder: a resumed run keeps its checkpoint's rates) "
                    "or check the data")
        elif counts["nonfinite"]:
            raise NonFiniteLossError(
                f"{name}: {counts['nonfinite']} of {counts['nonfinite'] + counts['finite']} "
                "batch losses were NaN or infinite; nothing is saved or exported")

    def summed_over_processes(self, counts):
        """``counts`` (a dict of ints) summed over the DDP processes, so that every process
        takes the same end-of-stage decision (a process that stopped alone would leave the
        others waiting); unchanged in a single process.

        Example
        -------
        >>> CAVMAEBrain.summed_over_processes(None, {"batches": 3})
        {'batches': 3}
        """
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return counts
        keys = sorted(counts)
        device = "cpu" if torch.distributed.get_backend() == "gloo" else self.device
        total = torch.tensor([counts[k] for k in keys], dtype=torch.long, device=device)
        torch.distributed.all_reduce(total)
        return dict(zip(keys, total.tolist()))

    def log_validation(self, epoch, stats):
        """Log the epoch's train and validation statistics and append them to the history."""
        lrs = self.current_lrs()
        meta = {"epoch": epoch, "lr": lrs[0] if lrs else 0.0}
        if len(lrs) > 1:
            meta["lr_head"] = lrs[-1]
        self.hparams.train_logger.log_stats(
            stats_meta=meta,
            train_stats=getattr(self, "train_stats", None),
            valid_stats=stats,
        )
        self.append_history({**meta, "train": getattr(self, "train_stats", {}), "valid": stats})

    def current_lrs(self):
        """Learning rates of the optimizer's parameter groups."""
        if not hasattr(self, "optimizer"):
            return []
        return [group["lr"] for group in self.optimizer.param_groups]

    def write_results(self, filename, results):
        """Write ``results`` (a dict) as JSON to ``output_folder/filename`` (main process),
        atomically."""
        if not if_main_process():
            return None
        path = os.path.join(self.hparams.output_folder, filename)
        atomic_write_json(path, results, sort_keys=True)
        logger.info("wrote %s", path)
        return path

    def append_history(self, record):
        """Append one epoch's statistics to ``output_folder/history.json`` (atomically; a
        file that is not a readable history is set aside, see :func:`read_history`)."""
        if not if_main_process():
            return
        path = os.path.join(self.hparams.output_folder, "history.json")
        history = [h for h in read_history(path) if h.get("epoch") != record.get("epoch")]
        history.append(record)
        atomic_write_json(path, history, sort_keys=True)


class PretrainBrain(CAVMAEBrain):
    """CAV-MAE pretraining.

    Hparams used: ``model`` (:class:`~speechbrain_cavmae.model.cavmae.CAVMAE`),
    ``mae_loss`` (:class:`~speechbrain_cavmae.losses.MaskedReconstructionLoss`),
    ``contrastive_loss`` (:class:`~speechbrain_cavmae.losses.ContrastiveLoss`),
    ``mae_loss_weight``, ``contrast_loss_weight``, ``mask_ratio_a``, ``mask_ratio_v``,
    ``mask_mode``, ``retrieval_chunk_size`` (optional).

    Per-stage statistics (means over samples): ``loss``, ``loss_mae``, ``loss_mae_a``,
    ``loss_mae_v``, ``loss_c``, ``c_acc``; on validation and test also ``a2v_R@k``,
    ``v2a_R@k`` (k = 1, 5, 10) and ``a2v_MedR`` / ``v2a_MedR``.
    """

    STAT_KEYS = ("loss", "loss_mae", "loss_mae_a", "loss_mae_v", "loss_c", "c_acc")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.distributed_launch and (
            self.hparams.mae_loss_weight == 0 or self.hparams.contrast_loss_weight == 0
        ):
            # With one objective switched off, part of the model gets no gradient.
            self.find_unused_parameters = True
        self.train_sums = RunningSums()  # checkpointed: exact epoch means after a resume
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("train_sums", self.train_sums,
                                              optional_load=True)

    def compute_forward(self, batch, stage):
        """Masked forward pass; on valid/test also unmasked pooled embeddings."""
        batch = batch.to(self.device, non_blocking=True)
        audio = self.audio_features(batch, stage)
        image = batch.frame.data.float()
        hp = self.hparams
        if stage == sb.Stage.TRAIN:  # Sync: multi-ratio masking keyed to the (resumed) step
            sync.sync_mask_ratio_step(self.model, self.optimizer_step)
        out = self.modules.model(
            audio,
            image,
            mask_ratio_a=hp.mask_ratio_a,
            mask_ratio_v=hp.mask_ratio_v,
            mask_mode=hp.mask_mode,
            decode=hp.mae_loss_weight > 0,
        )
        if stage != sb.Stage.TRAIN:
            tokens_a, tokens_v = sync.encode_tokens(self.model, audio, image)  # Sync: 4 outputs
            out["emb_a"] = tokens_a.mean(dim=1)
            out["emb_v"] = tokens_v.mean(dim=1)
        return out

    def compute_objectives(self, predictions, batch, stage):
        """Weighted sum of the masked reconstruction and contrastive losses."""
        hp = self.hparams
        out = predictions
        # Sync: averaged over the global and/or local pairs (CAV-MAE: rep_a, rep_v)
        loss_c, c_acc = sync.contrastive_objective(self.model, out, hp.contrastive_loss)
        if hp.mae_loss_weight > 0:
            loss_mae_a = hp.mae_loss(out["pred_a"], out["target_a"], out["mask_a"])
            loss_mae_v = hp.mae_loss(out["pred_v"], out["target_v"], out["mask_v"])
        else:
            loss_mae_a = loss_mae_v = torch.zeros((), device=loss_c.device)
        loss_mae = loss_mae_a + loss_mae_v
        loss = hp.mae_loss_weight * loss_mae + hp.contrast_loss_weight * loss_c
        values = (loss, loss_mae, loss_mae_a, loss_mae_v, loss_c, c_acc)
        self.sums.add(dict(zip(self.STAT_KEYS, values)), out["rep_a"].shape[0])
        if stage != sb.Stage.TRAIN:
            self.emb_a.append(out["emb_a"].detach().float().cpu())
            self.emb_v.append(out["emb_v"].detach().float().cpu())
        return loss

    def on_stage_start(self, stage, epoch=None):
        """Reset the per-stage accumulators (the training ones restored by a resume are
        kept, see :class:`RunningSums`)."""
        super().on_stage_start(stage, epoch)
        if stage == sb.Stage.TRAIN:
            self.sums = self.train_sums
            self.sums.reset()
        else:
            self.sums = RunningSums()
        self.emb_a, self.emb_v = [], []

    def summarize(self, stage):
        """Mean statistics of the stage (and retrieval metrics off training)."""
        stats = self.sums.means(self.STAT_KEYS)
        if stage != sb.Stage.TRAIN and self.emb_a:
            emb_a, emb_v = torch.cat(self.emb_a), torch.cat(self.emb_v)
            if emb_a.shape[0] >= 2:
                stats.update(
                    retrieval_metrics(
                        emb_a, emb_v, chunk_size=self.hp("retrieval_chunk_size", 1024)
                    )
                )
        return stats

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log the statistics, save checkpoints, write results."""
        self.check_stage(stage, epoch)
        stats = self.summarize(stage)
        if stage == sb.Stage.TRAIN:
            self.end_train_stage(epoch, stats)
            return
        if stage == sb.Stage.VALID:
            self.log_validation(epoch, stats)
            if self.checkpointer is not None:
                self.checkpointer.save_and_keep_only(
                    meta={"loss": stats["loss"], "epoch": epoch},
                    min_keys=["loss"],
                    num_to_keep=1,
                    importance_keys=[],
                )
        elif stage == sb.Stage.TEST:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current},
                test_stats=stats,
            )
            self.results = stats
            self.write_results(self.hp("test_results_file", "test_results.json"), stats)


class FinetuneBrain(CAVMAEBrain):
    """CAV-MAE fine-tuning and evaluation.

    Hparams used: ``model`` (:class:`~speechbrain_cavmae.model.classifier.CAVMAEClassifier`),
    ``ft_mode`` (one of :data:`~speechbrain_cavmae.model.modes.MODES`), ``loss``
    (``"BCE"`` or ``"CE"``), ``lr``, ``head_lr`` (ratio), ``freeze_base``,
    ``weight_averaging``, ``wa_start``, ``wa_end``, ``topk`` (CE), ``opt_class``
    (passed to the constructor).

    Validation statistics: ``loss`` plus ``mAP``, ``mAUC``, ``d_prime``, ``acc`` (BCE) or
    ``acc@k``, ``mAP``, ``mAUC`` (CE). The checkpoint with the best main metric (``mAP``
    for BCE, ``acc@1`` for CE) is kept. At test time, with ``frames`` in the batch
    (multi-frame evaluation), the results have one entry per frame plus ``multi_frame``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        hp = self.hparams
        check_mode(hp.ft_mode)
        if hp.loss not in ("BCE", "CE"):
            raise ValueError(f"loss must be 'BCE' or 'CE', got {hp.loss!r}")
        self.main_metric = "mAP" if hp.loss == "BCE" else "acc@1"
        sync.check_pair_pooling(self.hp("pair_pooling", "mean"))  # Sync: pooling of the pairs
        if self.hp("freeze_base", False):
            n = 0
            for name, param in self.model.named_parameters():
                if not name.startswith("head."):
                    param.requires_grad_(False)
                    n += param.numel()
            logger.info("freeze_base: %d backbone parameters frozen (linear probing)", n)
        if self.distributed_launch:
            # The classifier never uses some norms of the shared block (and, in the
            # single-modality modes, a whole branch): DDP must not wait for them.
            self.find_unused_parameters = True
        self.averager = WeightAverager()
        if self.checkpointer is not None and self.hp("weight_averaging", False):
            self.checkpointer.add_recoverable("weight_averager", self.averager)

    # ------------------------------------------------------------------ set-up
    def init_optimizers(self):
        """Adam over two groups: the backbone at ``lr``, the new head at ``lr * head_lr``."""
        hp = self.hparams
        base, head = [], []
        for name, param in self.model.named_parameters():
            if not param.requires_grad:
                continue
            (head if name.startswith("head.") else base).append(param)
        groups = []
        if base:
            groups.append({"params": base, "lr": hp.lr, "name": "base"})
        groups.append({"params": head, "lr": hp.lr * hp.head_lr, "name": "head"})
        self.optimizer = self.opt_class(groups)
        self.optimizers_dict = {"optimizer": self.optimizer}
        self.requested_lrs = self.current_lrs()
        logger.info(
            "optimizer: %d backbone tensors at lr %g, %d head tensors at lr %g",
            len(base), hp.lr, len(head), hp.lr * hp.head_lr,
        )
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    # ----------------------------------------------------------------- forward
    def _inputs_for(self, audio, image):
        mode = get_mode(self.hparams.ft_mode)
        return (audio if mode.audio else None, image if mode.visual else None)

    def compute_forward(self, batch, stage):
        """Logits for the batch's frame; at test time also for each of its frames."""
        batch = batch.to(self.device, non_blocking=True)
        mode = self.hparams.ft_mode
        uses = get_mode(mode)
        audio = self.audio_features(batch, stage) if uses.audio else None
        image = batch.frame.data.float() if uses.visual else None
        frames = getattr(batch, "frames", None)
        if stage == sb.Stage.TEST and uses.audio and uses.visual:  # Sync: frame-segment pairs
            pairs = sync.finetune_pairs_forward(self.modules.model, batch, audio, image, mode)
            if pairs is not None:
                return pairs
        if stage != sb.Stage.TEST or frames is None or not uses.visual:
            return {"logits": self.modules.model(audio, image, mode)}
        # multi-frame evaluation: the audio branch once per clip, the batch's frame and
        # each of its frames as one batch through the visual branch
        frames = torch.cat([image.unsqueeze(1), frames.data.float()], dim=1)
        logits = self.model.forward_frames(audio, frames, mode)
        return {"logits": logits[:, 0], "frame_logits": logits[:, 1:]}

    def loss_fn(self, logits, targets):
        """BCE with logits (multi-label) or cross-entropy with soft targets."""
        logits, targets = logits.float(), targets.float()
        if self.hparams.loss == "BCE":
            return F.binary_cross_entropy_with_logits(logits, targets)
        return F.cross_entropy(logits, targets)

    def compute_objectives(self, predictions, batch, stage):
        """Loss, and on valid/test the metric accumulators."""
        targets = batch.labels.data.to(self.device)
        logits = predictions["logits"]
        loss = self.loss_fn(logits, targets)
        if stage != sb.Stage.TRAIN:
            ids = list(batch.id)
            self.metrics.append(ids, logits.detach().float(), targets)
            frame_logits = predictions.get("frame_logits")
            if frame_logits is not None:
                n_frames = frame_logits.shape[1]
                while len(self.frame_metrics) < n_frames:
                    self.frame_metrics.append(self.new_metrics())
                for k in range(n_frames):
                    self.frame_metrics[k].append(ids, frame_logits[:, k].float(), targets)
                probs = sync.pool_pairs(frame_logits, self.hparams.loss,  # Sync: mean or max
                                        self.hp("pair_pooling", "mean"))
                self.multi_frame_metrics.append(ids, probs, targets)
        return loss

    # ------------------------------------------------------------------ stages
    def new_metrics(self):
        """A fresh accumulator for the configured task."""
        if self.hparams.loss == "BCE":
            return MultiLabelMetrics()
        return ClassificationStats(topk=tuple(self.hp("topk", (1, 5))))

    def on_stage_start(self, stage, epoch=None):
        """Reset the accumulators."""
        super().on_stage_start(stage, epoch)
        self.metrics = self.new_metrics()
        self.frame_metrics = []
        self.multi_frame_metrics = self.new_metrics()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log metrics, update weight averaging, checkpoint, write test results."""
        self.check_stage(stage, epoch)
        if stage == sb.Stage.TRAIN:
            hp = self.hparams
            if self.hp("weight_averaging", False) and hp.wa_start <= epoch <= hp.wa_end:
                self.averager.update(self.modules.model)
                logger.info("weight averaging: added epoch %d (%d models)", epoch,
                            self.averager.count)
            self.end_train_stage(epoch, {"loss": stage_loss})
            return
        stats = {"loss": stage_loss, **self.metrics.summarize()}
        if stage == sb.Stage.VALID:
            self.log_validation(epoch, stats)
            if self.checkpointer is not None:
                self.checkpointer.save_and_keep_only(
                    meta={self.main_metric: stats[self.main_metric], "epoch": epoch},
                    max_keys=[self.main_metric],
                    num_to_keep=1,
                    importance_keys=[],
                )
            return
        # TEST
        results = {"single_frame": stats, "weights": self.eval_weights}
        if self.frame_metrics:
            results["per_frame"] = [m.summarize() for m in self.frame_metrics]
            results["multi_frame"] = self.multi_frame_metrics.summarize()
            for k, frame_stats in enumerate(results["per_frame"]):
                logger.info(
                    "frame %d: %s", k,
                    ", ".join(f"{key}={value:.4f}" for key, value in frame_stats.items()),
                )
        log_stats = dict(stats)
        if "multi_frame" in results:
            for key, value in results["multi_frame"].items():
                log_stats[f"multi_frame_{key}"] = value
        averaged = self.eval_weights.startswith("average")
        meta = {"weights": self.eval_weights} if averaged else {
            "Epoch loaded": self.hparams.epoch_counter.current, "weights": self.eval_weights}
        self.hparams.train_logger.log_stats(stats_meta=meta, test_stats=log_stats)
        if averaged:
            self.compare_with_best_epoch(stats)
        self.results = results
        self.write_results(self.hp("test_results_file", "test_results.json"), results)

    def compare_with_best_epoch(self, stats):
        """Warn when the weight-averaged model scores below the best epoch's checkpoint on
        the validation data (the test set when ``test_data`` is not given: then the two
        numbers are comparable). With few clips, averaging epochs that were still learning
        can be worse; ``--weight_averaging False`` reports and exports the best one."""
        hp = self.hparams
        if getattr(hp, "test_data", None) or getattr(hp, "test_shards", None):
            return
        best = self.checkpointer.find_checkpoint(max_key=self.main_metric)
        if best is None or self.main_metric not in best.meta:
            return
        key, ours, theirs = self.main_metric, stats[self.main_metric], best.meta[self.main_metric]
        if ours < theirs:
            logger.warning(
                "the weight-averaged model (the one reported and exported) scores %s %.4f on "
                "the validation data, below the best epoch's checkpoint (epoch %s: %.4f); "
                "--weight_averaging False reports and exports the best checkpoint instead",
                key, ours, best.meta.get("epoch"), theirs)

    def on_evaluate_start(self, max_key=None, min_key=None):
        """Load the weight-averaged model if enabled and available, else the best one."""
        self.eval_weights = "current"
        if self.checkpointer is None:
            return
        if self.hp("weight_averaging", False):
            self.checkpointer.recover_if_possible()  # latest: holds the full average
            if self.averager.count > 0:
                self.model.load_state_dict(self.averager.state_dict())
                self.eval_weights = f"average of {self.averager.count} epoch(s)"
                logger.info("evaluating the %s", self.eval_weights)
                return
            logger.warning(
                "weight averaging is on but no epoch in [%d, %d] was trained; "
                "evaluating the best checkpoint instead",
                self.hparams.wa_start, self.hparams.wa_end,
            )
        self.checkpointer.recover_if_possible(max_key=max_key or self.main_metric,
                                              min_key=min_key)
        self.eval_weights = f"best {self.main_metric} checkpoint"


__all__ = [
    "CAVMAEBrain",
    "EmptyEpochError",
    "EpochCounts",
    "NonFiniteLossError",
    "FinetuneBrain",
    "PretrainBrain",
    "RunningSums",
    "WeightAverager",
    "average_frame_predictions",
    "non_finite_parameters",
    "read_history",
    "unwrap",
]
