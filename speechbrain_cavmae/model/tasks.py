"""The three training tasks of CAV-MAE: the one task table (beside the mode table).

===============  ======  ==========  ===========  =========================================
task             loss    scores      main metric  metric set (validation statistics)
===============  ======  ==========  ===========  =========================================
``pretraining``  (none)  (none)      ``loss`` (v) ``loss_mae`` (``_a``, ``_v``), ``loss_c``,
                                                  ``c_acc``; off training also retrieval
``multilabel``   BCE     sigmoid     ``mAP`` (^)  ``mAP``, ``mAUC``, ``d_prime``, ``acc``
``singlelabel``  CE      softmax     ``acc@1``(^) ``acc@k``, ``mAP``, ``mAUC``
===============  ======  ==========  ===========  =========================================

(v): lower is better, (^): higher is better. A classifier's task is named by its training
loss, the ``loss`` key of the fine-tuning yamls and of a model folder (AudioSet: BCE,
VGGSound: CE); pretraining has its own two losses (:mod:`speechbrain_cavmae.losses`).

Example
-------
>>> LOSSES
('BCE', 'CE')
>>> task = task_for_loss("CE")
>>> task.name, task.activation, task.main_metric, task.maximize
('singlelabel', 'softmax', 'acc@1', True)
>>> get_task("pretraining").main_metric
'loss'
"""

from dataclasses import dataclass
from typing import Optional

# torch is imported where a score or loss is computed: reading the table (``cavmae convert
# --help``'s choices) stays light.


@dataclass(frozen=True)
class Task:
    """One row of the task table.

    Attributes
    ----------
    name : str
        The task's name.
    loss : str or None
        The classification loss (``None``: pretraining).
    activation : str or None
        The score activation of the logits (``None``: no classes).
    main_metric : str
        The validation statistic that picks the best checkpoint.
    maximize : bool
        Whether a higher ``main_metric`` is better.
    multilabel : bool
        Multi-hot targets (several classes per clip) rather than one class per clip.
    metrics : tuple of str
        The validation statistics reported (besides ``loss``).
    """

    name: str
    loss: Optional[str]
    activation: Optional[str]
    main_metric: str
    maximize: bool
    multilabel: bool
    metrics: tuple

    def loss_fn(self, logits, targets):
        """The task's loss of ``[batch, classes]`` logits and (soft) targets, in float32:
        BCE with logits (multi-label) or cross-entropy with soft targets (single-label)."""
        import torch.nn.functional as F

        logits, targets = logits.float(), targets.float()
        if self.multilabel:
            return F.binary_cross_entropy_with_logits(logits, targets)
        return F.cross_entropy(logits, targets)

    def scores(self, logits, log=False):
        """The class scores of ``logits`` (see :func:`scores`)."""
        return scores(logits, self.activation, log=log)


_TABLE = (
    Task("pretraining", loss=None, activation=None, main_metric="loss", maximize=False,
         multilabel=False, metrics=("loss_mae", "loss_mae_a", "loss_mae_v", "loss_c", "c_acc")),
    Task("multilabel", loss="BCE", activation="sigmoid", main_metric="mAP", maximize=True,
         multilabel=True, metrics=("mAP", "mAUC", "d_prime", "acc")),
    Task("singlelabel", loss="CE", activation="softmax", main_metric="acc@1", maximize=True,
         multilabel=False, metrics=("acc@1", "mAP", "mAUC")),
)

#: Task names, in table order.
TASKS = tuple(task.name for task in _TABLE)
_BY_NAME = {task.name: task for task in _TABLE}
_BY_LOSS = {task.loss: task for task in _TABLE if task.loss is not None}
#: Classification losses (the ``loss`` key of yamls and model folders; ``cavmae convert --loss``).
LOSSES = tuple(_BY_LOSS)
#: Score activations of classifiers (the ``score_activation`` key of model folders).
ACTIVATIONS = tuple(task.activation for task in _BY_LOSS.values())


def get_task(name):
    """The :class:`Task` called ``name``; a ``ValueError`` listing the tasks otherwise."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; expected one of {TASKS}") from None


def task_for_loss(loss):
    """The classification :class:`Task` trained with ``loss``; a ``ValueError`` naming the
    losses otherwise."""
    try:
        return _BY_LOSS[loss]
    except (KeyError, TypeError):
        raise ValueError(f"loss={loss!r}; expected one of {list(LOSSES)}") from None


def scores(logits, activation, log=False):
    """Class scores of ``logits`` (float32) under ``activation``: a sigmoid per class or a
    softmax over the last dimension; their logarithms with ``log``.

    Example
    -------
    >>> import torch
    >>> scores(torch.zeros(1, 2), "softmax")
    tensor([[0.5000, 0.5000]])
    """
    import torch

    logits = logits.float()
    if activation == "sigmoid":
        return torch.nn.functional.logsigmoid(logits) if log else torch.sigmoid(logits)
    if activation == "softmax":
        return torch.log_softmax(logits, dim=-1) if log else torch.softmax(logits, dim=-1)
    raise ValueError(f"score_activation={activation!r}: use sigmoid or softmax")


def average_frame_predictions(frame_logits, loss="BCE"):
    """Multi-frame prediction: class probabilities averaged over frames.

    As the original evaluation, each frame's logits go through the score activation of the
    task trained with ``loss`` (a sigmoid for ``"BCE"``, a softmax over classes for
    ``"CE"``) before averaging.

    Arguments
    ---------
    frame_logits : torch.Tensor
        ``[batch, n_frames, classes]`` logits.
    loss : str
        One of :data:`LOSSES`.

    Returns
    -------
    torch.Tensor
        ``[batch, classes]`` averaged probabilities (float32).

    Example
    -------
    >>> import torch
    >>> logits = torch.tensor([[[0.0, 10.0], [10.0, 0.0]]])
    >>> average_frame_predictions(logits, "CE")
    tensor([[0.5000, 0.5000]])
    """
    if frame_logits.dim() != 3:
        raise ValueError(f"expected [batch, frames, classes], got {tuple(frame_logits.shape)}")
    return task_for_loss(loss).scores(frame_logits).mean(dim=1)
