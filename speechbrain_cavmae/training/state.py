"""What a training run keeps: its checkpointed state and its history file.

Checkpoint recoverables (each ``save`` / ``load`` is a SpeechBrain checkpoint hook):

* :class:`WeightAverager`: the running mean of the end-of-epoch weights (fine-tuning's
  weight averaging);
* :class:`RunningSums`: the per-sample sums of a training epoch's statistics, so that an
  epoch resumed in its middle reports means over all its samples;
* :class:`EpochCounts`: the counts the end-of-stage checks decide on, of an interrupted
  epoch (see :class:`~speechbrain_cavmae.training.guard.GuardedBrain`);
* :class:`RandomState`: the global random generators.

:class:`AtomicCheckpointer` is the ``Checkpointer`` every recipe uses: a checkpoint appears
only once complete. :func:`read_history` / :func:`append_history` read and extend
``history.json`` (one record per epoch), :func:`write_results` writes the test results.

Authors
 * speechbrain-cavmae contributors 2026
"""

import json
import logging
import os
import pathlib
import random
import shutil

import numpy as np
import torch
from speechbrain.utils.checkpoints import (
    METAFNAME,
    Checkpointer,
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.distributed import ddp_barrier, if_main_process

from speechbrain_cavmae.checkpoints.loader import accumulate_mean
from speechbrain_cavmae.data.files import atomic_write_json
from speechbrain_cavmae.training.ckpt_files import CheckpointFileError, file_error, named_hooks

logger = logging.getLogger(__name__)


def unwrap(module):
    """The module inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper."""
    return module.module if hasattr(module, "module") else module


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


def append_history(path, record):
    """Add ``record`` (one epoch's statistics) to the history file ``path``, replacing a
    record of the same epoch, atomically (a file that is not a readable history is set
    aside, see :func:`read_history`)."""
    history = [h for h in read_history(path) if h.get("epoch") != record.get("epoch")]
    history.append(record)
    atomic_write_json(path, history, sort_keys=True)


def write_results(path, results):
    """Write ``results`` (a dict) as JSON to ``path``, atomically; returns ``path``."""
    atomic_write_json(path, results, sort_keys=True)
    logger.info("wrote %s", path)
    return path


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
    losses, good samples left out: see
    :meth:`~speechbrain_cavmae.training.guard.GuardedBrain.new_stage_counts`), summed over
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


class AtomicCheckpointer(Checkpointer):
    """A SpeechBrain ``Checkpointer`` whose checkpoints appear only once complete.

    SpeechBrain writes a checkpoint's ``CKPT.yaml`` first and its files after it, so a
    process killed while saving (SIGKILL, preemption, out of memory) leaves a checkpoint
    that looks valid but is truncated, and the restarted run fails to load it. Here the
    meta file is written as ``CKPT.yaml.partial`` and renamed to ``CKPT.yaml`` (atomic)
    after every file is saved. Unfinished checkpoint folders are invisible to recovery
    and removed by the main process.

    Under DDP every process waits until the main one has published the meta file:
    ``save_and_keep_only`` goes on with ``delete_checkpoints``, where each process lists
    the checkpoints and the main one deletes the old ones, one collective call each. A
    process that listed them before the new meta file appeared would see one checkpoint
    fewer, delete nothing, and wait in a barrier while the main process waits in a
    broadcast: a hang (it hung a two-node run resumed after a kill, at its first
    intra-epoch checkpoint after the one it resumed from).

    A file that cannot be written (a full disk) or read (a damaged ``optimizer.ckpt``)
    raises :class:`~speechbrain_cavmae.training.ckpt_files.CheckpointFileError` naming it
    and the cause; the unfinished checkpoint folder of a failed save is removed.

    Arguments are those of :class:`speechbrain.utils.checkpoints.Checkpointer`.
    """

    PARTIAL = METAFNAME + ".partial"

    def _save_checkpoint_metafile(self, fpath, meta_to_include={}, end_of_epoch=True):
        pending = pathlib.Path(fpath).with_name(self.PARTIAL)
        self._pending_meta = pending
        try:
            return super()._save_checkpoint_metafile(pending, meta_to_include, end_of_epoch)
        except OSError as exc:
            raise file_error(exc, pending, save=True) from exc

    def save_checkpoint(self, meta={}, end_of_epoch=True, name=None, verbosity=logging.INFO):
        """Save as the parent class, then publish the meta file."""
        self._pending_meta = None
        try:
            with named_hooks(self, save=True):
                ckpt = super().save_checkpoint(meta=meta, end_of_epoch=end_of_epoch,
                                               name=name, verbosity=verbosity)
            pending = self._pending_meta
            if pending is not None and pending.exists():
                os.replace(pending, pending.with_name(METAFNAME))
        except CheckpointFileError:
            pending = self._pending_meta
            if pending is not None and if_main_process():
                shutil.rmtree(pending.parent, ignore_errors=True)  # unfinished: free it
            raise
        ddp_barrier()  # the new checkpoint is visible to every process from here on
        return ckpt

    def load_checkpoint(self, checkpoint):
        """Load as the parent class; a file that cannot be read is named."""
        with named_hooks(self, save=False):
            return super().load_checkpoint(checkpoint)

    def remove_unfinished(self):
        """Remove checkpoint folders whose saving never finished (main process only)."""
        if not if_main_process() or not self.checkpoints_dir.is_dir():
            return []
        removed = []
        for path in self.checkpoints_dir.iterdir():
            if path.is_dir() and path.name.startswith("CKPT") and not (path / METAFNAME).exists():
                logger.warning("removing unfinished checkpoint %s", path)
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        return removed

    def recover_if_possible(self, *args, **kwargs):
        """Drop unfinished checkpoints, then recover as the parent class."""
        self.remove_unfinished()
        return super().recover_if_possible(*args, **kwargs)


@register_checkpoint_hooks
class RandomState:
    """The global random number generators as a checkpoint recoverable.

    Saves the states of Python's ``random``, NumPy's global generator, torch's CPU
    generator and, when CUDA is initialised, every CUDA device's generator; loading a
    checkpoint restores them. With it, a run resumed from an intra-epoch checkpoint draws
    the same masks, frames and augmentation noise as the uninterrupted run would have
    (exactly so with ``num_workers: 0``: DataLoader workers have generators of their own,
    re-seeded at the start of every pass over the data).

    Only the main process writes checkpoints, so under DDP every process resumes with the
    main process's states. SpeechBrain seeds all processes alike, and they draw the same
    number of values, so their states are equal anyway.

    Example
    -------
    >>> import tempfile, os
    >>> state = RandomState()
    >>> path = os.path.join(tempfile.mkdtemp(), "random_state.ckpt")
    >>> state.save(path)
    >>> first = torch.rand(3), random.random()
    >>> state.load(path)
    >>> second = torch.rand(3), random.random()
    >>> bool(torch.equal(first[0], second[0])) and first[1] == second[1]
    True
    """

    @mark_as_saver
    def save(self, path):
        """Save the generator states (as tensors and numbers: loads with ``weights_only``)."""
        version, words, gauss = random.getstate()
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "python": [version, torch.tensor(words, dtype=torch.int64), gauss],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
                      int(has_gauss), float(cached)],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(state, path)

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        """Restore the generator states (the CUDA ones when saved and CUDA is usable)."""
        del end_of_epoch
        state = torch.load(path, map_location="cpu", weights_only=True)
        version, words, gauss = state["python"]
        random.setstate((version, tuple(words.tolist()), gauss))
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])


__all__ = [
    "AtomicCheckpointer",
    "EpochCounts",
    "RandomState",
    "RunningSums",
    "WeightAverager",
    "append_history",
    "read_history",
    "write_results",
    "unwrap",
]
