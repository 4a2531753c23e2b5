"""SpeechBrain ``Brain`` classes for CAV-MAE pretraining and fine-tuning.

* :class:`PretrainBrain`: masked reconstruction of both modalities plus the audio-visual
  contrastive loss, with their weights from the hparams; logs each loss and the in-batch
  contrastive accuracy per epoch, and audio<->visual retrieval (R@1/5/10, median rank) of
  the unmasked representations on the validation set.
* :class:`FinetuneBrain`: the classifier in one of the modes of the mode table
  (:mod:`speechbrain_cavmae.model.modes`), trained for one row of the task table
  (:mod:`speechbrain_cavmae.model.tasks`, picked by the yaml's ``loss``: its loss, score
  activation, main metric and metric set), the pretrained backbone and the new head in
  two parameter groups (``head_lr`` times the base rate; ``freeze_base`` for linear
  probing), running weight averaging of the end-of-epoch weights over
  ``wa_start..wa_end``, and at test time per-frame and multi-frame results (class
  probabilities averaged over the clip's frames) written to the log and to JSON.

Both read :func:`speechbrain_cavmae.data.dataset.build_dataset` batches (``fbank``, or with
``features_on_device`` ``wav`` made into normalised fbank on the device) and call the
``lr_scheduler`` at every optimizer step; hparams: ``hparams/cavmae.yaml``,
``hparams/cavmae_ft.yaml`` and each class. The DDP and robustness bookkeeping is
:class:`~speechbrain_cavmae.training.guard.GuardedBrain`'s, the checkpointed state
:mod:`speechbrain_cavmae.training.state`'s.

Authors
 * speechbrain-cavmae contributors 2026
"""

import logging
import os
import sys

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process

from speechbrain_cavmae.data.augment import FbankAugment
from speechbrain_cavmae.data.dataset import hparams_config, resolve_config
from speechbrain_cavmae.data.fbank import KaldiFbank
from speechbrain_cavmae.model.modes import check_mode, get_mode
from speechbrain_cavmae.model.tasks import average_frame_predictions, get_task, task_for_loss
from speechbrain_cavmae.training import sync
from speechbrain_cavmae.training.accumulators import task_metrics
from speechbrain_cavmae.training.guard import GuardedBrain
from speechbrain_cavmae.training.metrics import retrieval_metrics
from speechbrain_cavmae.training.state import (
    RunningSums,
    WeightAverager,
    append_history,
    write_results,
)

logger = logging.getLogger(__name__)


class CAVMAEBrain(GuardedBrain):
    """Input features, learning-rate schedule, best checkpoint and result files of the
    CAV-MAE brains; :attr:`task` is the brain's row of the task table."""

    task = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not sys.stderr.isatty():  # no progress bars in a redirected log
            self.noprogressbar = True
        self._fbank = None
        self._augment = None
        self.results = {}

    @property
    def main_metric(self):
        """The validation statistic that picks the best checkpoint (the task's)."""
        return self.task.main_metric

    # ------------------------------------------------------------------ inputs
    def fbank_module(self):
        """The on-device :class:`KaldiFbank` (built on first use)."""
        if self._fbank is None:
            cfg = resolve_config(hparams_config(self.hparams), train=True)
            self._fbank = KaldiFbank(
                **{k: cfg[k] for k in ("sample_rate", "n_mels", "audio_length",
                                       "dataset_mean", "dataset_std")}).to(self.device)
            self._augment = FbankAugment(
                **{k: cfg[k] for k in ("freqm", "timem", "noise", "dataset_mean",
                                       "dataset_std")})
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

    # ------------------------------------------------------------------ results
    def end_train_stage(self, epoch, stats):
        """Keep the training statistics (with ``samples_per_s``); without validation, log
        them and save the end-of-epoch checkpoint here."""
        rate = self.clock.rate()
        if rate is not None:
            stats = {**stats, "samples_per_s": rate}
        self.train_stats = stats
        if self.validates or epoch is None:
            return
        logger.info("epoch %d: no validation set; checkpointing the end of training", epoch)
        self.log_validation(epoch, None)
        if self.checkpointer is not None:
            self.checkpointer.save_and_keep_only(meta={"epoch": epoch}, num_to_keep=1,
                                                 importance_keys=[])

    def save_best(self, epoch, stats):
        """Keep one checkpoint: the one with the best main metric of the task."""
        if self.checkpointer is None:
            return
        key = self.main_metric
        best = {"max_keys" if self.task.maximize else "min_keys": [key]}
        self.checkpointer.save_and_keep_only(
            meta={key: stats[key], "epoch": epoch}, num_to_keep=1, importance_keys=[], **best)

    def log_validation(self, epoch, stats):
        """Log the epoch's train and validation statistics and append them to the history."""
        lrs = self.current_lrs()
        meta = {"epoch": epoch, "lr": lrs[0] if lrs else 0.0}
        if len(lrs) > 1:
            meta["lr_head"] = lrs[-1]
        self.hparams.train_logger.log_stats(
            stats_meta=meta, train_stats=getattr(self, "train_stats", None), valid_stats=stats)
        self.append_history({**meta, "train": getattr(self, "train_stats", {}), "valid": stats})

    def write_results(self, filename, results):
        """Write ``results`` (a dict) as JSON to ``output_folder/filename`` (main process)."""
        if if_main_process():
            return write_results(os.path.join(self.hparams.output_folder, filename), results)
        return None

    def append_history(self, record):
        """Append one epoch's statistics to ``output_folder/history.json`` (main process)."""
        if if_main_process():
            append_history(os.path.join(self.hparams.output_folder, "history.json"), record)


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

    task = get_task("pretraining")
    STAT_KEYS = ("loss",) + task.metrics

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
            self.save_best(epoch, stats)
        elif stage == sb.Stage.TEST:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats)
            self.results = stats
            self.write_results(self.hp("test_results_file", "test_results.json"), stats)


class FinetuneBrain(CAVMAEBrain):
    """CAV-MAE fine-tuning and evaluation.

    Hparams used: ``model`` (:class:`~speechbrain_cavmae.model.classifier.CAVMAEClassifier`),
    ``ft_mode`` (one of :data:`~speechbrain_cavmae.model.modes.MODES`), ``loss`` (one of
    :data:`~speechbrain_cavmae.model.tasks.LOSSES`: the task), ``lr``, ``head_lr``
    (ratio), ``freeze_base``, ``weight_averaging``, ``wa_start``, ``wa_end``, ``topk``
    (single-label), ``opt_class`` (passed to the constructor).

    Validation statistics: ``loss`` plus the task's metric set; the checkpoint with the
    best main metric of the task is kept. At test time, with ``frames`` in the batch
    (multi-frame evaluation), the results have one entry per frame plus ``multi_frame``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        hp = self.hparams
        check_mode(hp.ft_mode)
        self.task = task_for_loss(hp.loss)
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
        logger.info("optimizer: %d backbone tensors at lr %g, %d head tensors at lr %g",
                    len(base), hp.lr, len(head), hp.lr * hp.head_lr)
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    # ----------------------------------------------------------------- forward
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

    def compute_objectives(self, predictions, batch, stage):
        """The task's loss, and on valid/test the metric accumulators."""
        targets = batch.labels.data.to(self.device)
        logits = predictions["logits"]
        loss = self.task.loss_fn(logits, targets)
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
                probs = sync.pool_pairs(frame_logits, self.task,  # Sync: mean or max
                                        self.hp("pair_pooling", "mean"))
                self.multi_frame_metrics.append(ids, probs, targets)
        return loss

    # ------------------------------------------------------------------ stages
    def new_metrics(self):
        """A fresh accumulator of the task's metric set."""
        return task_metrics(self.task, topk=self.hp("topk", (1, 5)))

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
            self.save_best(epoch, stats)
            return
        # TEST
        results = {"single_frame": stats, "weights": self.eval_weights}
        if self.frame_metrics:
            results["per_frame"] = [m.summarize() for m in self.frame_metrics]
            results["multi_frame"] = self.multi_frame_metrics.summarize()
            for k, frame_stats in enumerate(results["per_frame"]):
                logger.info("frame %d: %s", k, ", ".join(
                    f"{key}={value:.4f}" for key, value in frame_stats.items()))
        log_stats = {**stats, **{f"multi_frame_{key}": value
                                 for key, value in results.get("multi_frame", {}).items()}}
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
            logger.warning("weight averaging is on but no epoch in [%d, %d] was trained; "
                           "evaluating the best checkpoint instead",
                           self.hparams.wa_start, self.hparams.wa_end)
        self.checkpointer.recover_if_possible(max_key=max_key or self.main_metric,
                                              min_key=min_key)
        self.eval_weights = f"best {self.main_metric} checkpoint"


__all__ = ["CAVMAEBrain", "FinetuneBrain", "PretrainBrain"]
