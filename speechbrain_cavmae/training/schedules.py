"""Learning-rate schedules of the CAV-MAE recipes.

The original training scripts use Adam with one learning rate per parameter group (the
pretrained backbone, and in fine-tuning the new head at ``head_lr`` times the base rate) and
a step decay per epoch: the rate is multiplied by ``decay`` after epoch ``start``,
``start + step``, ``start + 2 * step``, ... (``torch.optim.lr_scheduler.MultiStepLR`` with
milestones ``range(start, 1000, step)``, stepped once at the end of each epoch). Their run
scripts pass ``--warmup True``, but the training loops never read it, so the original does
not warm up; an optional linear warm-up over the first optimizer steps is available here
(``warmup_steps``, 0 in the recipes' defaults).

:class:`WarmupStepDecay` reproduces that as a SpeechBrain-style scheduler: call it at every
optimizer step with the current (1-based) epoch; it keeps its step count and is saved and
restored by a :class:`speechbrain.utils.checkpoints.Checkpointer`.

Authors
 * speechbrain-cavmae contributors 2026
"""

import logging

import torch
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)

logger = logging.getLogger(__name__)


def step_decay_factor(epoch, start, step, decay):
    """Multiplier of the base learning rate during (1-based) ``epoch``.

    Equals ``decay ** k`` where ``k`` counts the milestones ``start, start + step, ...``
    that are ``<= epoch - 1`` (the number of completed epochs), as ``MultiStepLR``
    stepped once per epoch.

    Example
    -------
    >>> [step_decay_factor(e, start=2, step=1, decay=0.5) for e in range(1, 6)]
    [1.0, 1.0, 0.5, 0.25, 0.125]
    >>> [step_decay_factor(e, start=10, step=5, decay=0.5) for e in (10, 11, 15, 16, 21)]
    [1.0, 0.5, 0.5, 0.25, 0.125]
    """
    if step < 1:
        raise ValueError(f"decay step must be >= 1, got {step}")
    done = epoch - 1
    if done < start:
        return 1.0
    return float(decay) ** ((done - start) // step + 1)


def warmup_factor(n_steps, warmup_steps):
    """Linear warm-up multiplier for the ``n_steps``-th optimizer step (1-based).

    Example
    -------
    >>> [warmup_factor(s, 4) for s in (1, 2, 4, 5)]
    [0.25, 0.5, 1.0, 1.0]
    >>> warmup_factor(1, 0)
    1.0
    """
    if warmup_steps <= 0 or n_steps >= warmup_steps:
        return 1.0
    return max(n_steps, 0) / warmup_steps


@register_checkpoint_hooks
class WarmupStepDecay:
    """Per-step linear warm-up followed by the original per-epoch step decay.

    The learning rate of parameter group ``g`` at optimizer step ``n`` (1-based, counted
    over the whole run) in epoch ``e`` is ``base_lr[g] * warmup_factor(n) *
    step_decay_factor(e)``. ``base_lr`` is read from the optimizer the first time the
    scheduler is called (or set with ``base_lrs``), so the head group keeps its
    ``head_lr`` ratio through warm-up and decay.

    Arguments
    ---------
    warmup_steps : int
        Optimizer steps of linear warm-up (0: none).
    decay_start : int
        Epoch after which the first decay happens (``lrscheduler_start``).
    decay_step : int
        Epochs between decays (``lrscheduler_step``).
    decay : float
        Multiplier per decay (``lrscheduler_decay``).

    Example
    -------
    >>> model = torch.nn.Linear(2, 2)
    >>> opt = torch.optim.Adam([{"params": [model.weight], "lr": 1.0},
    ...                         {"params": [model.bias], "lr": 10.0}])
    >>> sched = WarmupStepDecay(warmup_steps=2, decay_start=1, decay_step=1, decay=0.5)
    >>> sched(opt, epoch=1)
    [0.5, 5.0]
    >>> sched(opt, epoch=1)
    [1.0, 10.0]
    >>> sched(opt, epoch=2)
    [0.5, 5.0]
    """

    def __init__(self, warmup_steps=0, decay_start=2, decay_step=1, decay=0.5):
        self.warmup_steps = int(warmup_steps)
        self.decay_start = int(decay_start)
        self.decay_step = int(decay_step)
        self.decay = float(decay)
        self.n_steps = 0
        self.base_lrs = None

    def factor(self, epoch, n_steps=None):
        """Multiplier of the base rates at ``epoch`` after ``n_steps`` steps."""
        n = self.n_steps if n_steps is None else n_steps
        return warmup_factor(n, self.warmup_steps) * step_decay_factor(
            epoch, self.decay_start, self.decay_step, self.decay
        )

    def __call__(self, optimizer, epoch):
        """Count one optimizer step and set the rates for it; returns them (list)."""
        if self.base_lrs is None:
            self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        if len(self.base_lrs) != len(optimizer.param_groups):
            raise ValueError(
                f"scheduler has {len(self.base_lrs)} base rates for "
                f"{len(optimizer.param_groups)} parameter groups"
            )
        self.n_steps += 1
        factor = self.factor(epoch)
        lrs = [base * factor for base in self.base_lrs]
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr
        return lrs

    @mark_as_saver
    def save(self, path):
        """Save the step count and base rates."""
        torch.save({"n_steps": self.n_steps, "base_lrs": self.base_lrs}, path)

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        """Restore the step count and base rates."""
        del end_of_epoch
        state = torch.load(path, weights_only=True)
        self.n_steps = int(state["n_steps"])
        self.base_lrs = state["base_lrs"]


__all__ = ["WarmupStepDecay", "step_decay_factor", "warmup_factor"]
