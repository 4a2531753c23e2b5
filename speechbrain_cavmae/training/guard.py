"""The DDP and robustness bookkeeping both CAV-MAE brains share: :class:`GuardedBrain`.

SpeechBrain's ``Brain`` calls hooks; this class fills those that are not about the model:

* **skipped batches** (``on_bad_sample: skip``): a batch whose every sample was dropped is
  ignored; under DDP every process skips a training step in which any process's batch was
  (one small ``all_reduce`` per step, :meth:`GuardedBrain.fit_batch`);
* **end-of-stage checks** (:meth:`GuardedBrain.check_stage`), before anything is logged,
  saved or exported: empty epochs (:class:`EmptyEpochError`), diverged training and
  non-finite evaluation losses (:class:`NonFiniteLossError`), with the counts summed over
  the processes so that all take the same decision, and checkpointed mid-epoch
  (:class:`~speechbrain_cavmae.training.state.EpochCounts`);
* the deferred finiteness check of the training loss (no host sync mid-step), finite
  weights before an intra-epoch checkpoint;
* the **resumed rates** warning (:meth:`GuardedBrain.check_resumed_rates`);
* the training **throughput** (:class:`ThroughputClock`) and the ``rank_trace`` files.

Authors
 * speechbrain-cavmae contributors 2026
"""

import logging
import math
import os
import time

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process

from speechbrain_cavmae.data.dataset import hparams_config, resolve_config
from speechbrain_cavmae.training.state import EpochCounts, unwrap

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



class ThroughputClock:
    """Training samples per second of an epoch, after ``warmup`` steps.

    SpeechBrain reads each step's loss on the host, so step ends are synchronised and the
    figure is the device's real pace, data loading included.

    Example
    -------
    >>> import types
    >>> clock = ThroughputClock()
    >>> clock.start(warmup=1)
    >>> batch = types.SimpleNamespace(batchsize=4)
    >>> for _ in range(3):
    ...     clock.tick(batch)
    >>> clock.rate() > 0, ThroughputClock().rate()
    (True, None)
    """

    def __init__(self):
        self.state = None

    def start(self, warmup):
        """Start measuring an epoch."""
        self.state = {"steps": 0, "samples": 0, "start": None, "end": None, "warmup": warmup}

    def tick(self, batch):
        """Count one step, and after the warm-up the ``batch.batchsize`` samples of its
        batch (nothing before :meth:`start`)."""
        clock = self.state
        if clock is None:
            return
        clock["steps"] += 1
        if clock["steps"] == clock["warmup"]:
            clock["start"] = time.perf_counter()
        elif clock["steps"] > clock["warmup"]:
            clock["samples"] += batch.batchsize
            clock["end"] = time.perf_counter()

    def rate(self):
        """Samples per second after the warm-up, or ``None`` when the epoch was too short
        to tell."""
        clock = self.state
        if not clock or not clock["samples"] or clock["end"] <= clock["start"]:
            return None
        return clock["samples"] / (clock["end"] - clock["start"])


class GuardedBrain(sb.Brain):
    """A SpeechBrain ``Brain`` with the DDP and robustness bookkeeping of the module
    docstring. Subclasses call ``super()`` in ``on_stage_start`` and :meth:`check_stage` at
    the start of ``on_stage_end``; the recipe sets :attr:`bad_sample_counter` (shared with
    the datasets). After ``fit``, :attr:`validates` says whether a validation set was given.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.epoch = 0
        self.bad_sample_counter = None  # set by the recipe (shared with the datasets)
        self.validates = True
        self.clock = ThroughputClock()
        self._loss_to_check = False
        self._stage_counts = self.new_stage_counts()
        self._skipped_batch = False
        self.epoch_counts = EpochCounts()  # checkpointed: the counts of an interrupted epoch
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("epoch_counts", self.epoch_counts,
                                              optional_load=True)

    @property
    def model(self):
        """The model module without its DDP wrapper."""
        return unwrap(self.modules.model)

    def hp(self, name, default=None):
        """An hparam, or ``default`` when the yaml does not define it."""
        return getattr(self.hparams, name, default)

    @staticmethod
    def new_stage_counts():
        """The zeroed counts of a stage, decided on at its end (see :meth:`check_stage`):
        batches run, finite and non-finite losses, and good samples left out because
        another DDP process had no good sample in the same step (see :meth:`fit_batch`)."""
        return {"batches": 0, "nonfinite": 0, "finite": 0, "left_out": 0}

    def fit(self, epoch_counter, train_set, valid_set=None, *args, **kwargs):
        """``Brain.fit``; without a validation set each epoch is logged and checkpointed
        at the end of training instead (see
        :meth:`~speechbrain_cavmae.training.brains.CAVMAEBrain.end_train_stage`). With the hparam
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

    # ------------------------------------------------------------------ stages
    def on_stage_start(self, stage, epoch=None):
        """Record the epoch and start the throughput clock of a training stage (measured
        after ``throughput_warmup_steps`` steps, default 5); a training
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
            self.clock.start(int(self.hp("throughput_warmup_steps", 5)))

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Count samples and time for the epoch's throughput (:class:`ThroughputClock`);
        record the batch's ids with ``rank_trace``."""
        if batch is None:
            return
        if self.hp("rank_trace", False):
            self.trace_batch(batch)
        self.clock.tick(batch)

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
        policy = resolve_config(hparams_config(self.hparams))["on_bad_sample"]
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
        >>> GuardedBrain.summed_over_processes(None, {"batches": 3})
        {'batches': 3}
        """
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return counts
        keys = sorted(counts)
        device = "cpu" if torch.distributed.get_backend() == "gloo" else self.device
        total = torch.tensor([counts[k] for k in keys], dtype=torch.long, device=device)
        torch.distributed.all_reduce(total)
        return dict(zip(keys, total.tolist()))

    def current_lrs(self):
        """Learning rates of the optimizer's parameter groups."""
        if not hasattr(self, "optimizer"):
            return []
        return [group["lr"] for group in self.optimizer.param_groups]


__all__ = [
    "EmptyEpochError",
    "GuardedBrain",
    "NonFiniteLossError",
    "ThroughputClock",
    "non_finite_parameters",
]
