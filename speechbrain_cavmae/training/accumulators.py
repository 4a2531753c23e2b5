"""Accumulators of classification statistics over batches, in the style of SpeechBrain's
``MetricStats`` (``clear`` / ``append`` / ``summarize``), computed with
:mod:`speechbrain_cavmae.training.metrics`:

* :class:`MultiLabelMetrics` (mAP, mAUC, d-prime, acc@1);
* :class:`ClassificationStats` (acc@k, plus mAP / mAUC of the one-hot targets);
* :func:`task_metrics`: the one of a row of the task table
  (:mod:`speechbrain_cavmae.model.tasks`).

Authors
 * speechbrain-cavmae contributors
"""

import torch

from speechbrain_cavmae.training.metrics import (
    d_prime,
    mean_auc,
    mean_average_precision,
    topk_accuracy,
)

__all__ = ["ClassificationStats", "MultiLabelMetrics", "task_metrics"]


class _ScoreAccumulator:
    """Collects (ids, scores, targets) over batches on the CPU."""

    def __init__(self):
        self.clear()

    def clear(self):
        """Removes everything collected so far."""
        self.ids = []
        self.scores = []
        self.targets = []
        self.summary = {}

    def append(self, ids, scores, targets):
        """Stores one batch.

        Arguments
        ---------
        ids : list
            Example ids of the batch (length B).
        scores : torch.Tensor
            [B, C] logits or probabilities.
        targets : torch.Tensor
            [B, C] (multi-)hot targets, or [B] class indices (single-label only).
        """
        scores = torch.as_tensor(scores).detach().float().cpu()
        targets = torch.as_tensor(targets).detach().cpu()
        if scores.dim() != 2 or scores.shape[0] != len(ids):
            raise ValueError(
                f"scores must have shape [len(ids)={len(ids)}, C], "
                f"got {tuple(scores.shape)}"
            )
        if targets.shape[0] != len(ids):
            raise ValueError(
                f"targets have {targets.shape[0]} rows for {len(ids)} ids"
            )
        if self.scores and scores.shape[1] != self.scores[0].shape[1]:
            raise ValueError(
                f"number of classes changed from {self.scores[0].shape[1]} "
                f"to {scores.shape[1]}"
            )
        self.ids.extend(ids)
        self.scores.append(scores)
        self.targets.append(targets)

    def _collect(self):
        if not self.scores:
            raise ValueError(f"{type(self).__name__}.summarize: nothing appended")
        return torch.cat(self.scores), torch.cat(self.targets)

    def _finish(self, summary, field):
        self.summary = summary
        return summary if field is None else summary[field]


class MultiLabelMetrics(_ScoreAccumulator):
    """Multi-label (AudioSet) statistics collected over batches.

    ``summarize`` returns ``mAP``, ``mAUC``, ``d_prime`` (of the mean AUC, as the
    reference reports it) and ``acc`` (argmax accuracy, the reference's
    single-label number).

    Example
    -------
    >>> stats = MultiLabelMetrics()
    >>> stats.append(["a", "b"], torch.tensor([[2.0, -1.0], [0.5, 1.0]]),
    ...              torch.tensor([[1, 0], [0, 1]]))
    >>> stats.append(["c"], torch.tensor([[0.1, 0.3]]), torch.tensor([[1, 1]]))
    >>> summary = stats.summarize()
    >>> round(summary["mAP"], 4), summary["mAUC"]
    (0.9167, 0.75)
    >>> round(stats.summarize("acc"), 4)
    0.6667
    """

    def summarize(self, field=None):
        """Computes the statistics; returns a dict, or one value if ``field``."""
        scores, targets = self._collect()
        if targets.dim() != 2 or targets.shape != scores.shape:
            raise ValueError(
                f"MultiLabelMetrics needs [N, C] targets, got {tuple(targets.shape)}"
            )
        m_auc = mean_auc(scores, targets)
        summary = {
            "mAP": mean_average_precision(scores, targets),
            "mAUC": m_auc,
            "d_prime": d_prime(m_auc),
            "acc": topk_accuracy(scores, targets, k=1)["acc@1"],
        }
        return self._finish(summary, field)


class ClassificationStats(_ScoreAccumulator):
    """Single-label classification statistics collected over batches.

    ``summarize`` returns ``acc@k`` for every k in ``topk`` (k larger than the
    number of classes is skipped) plus ``mAP`` and ``mAUC`` of the one-hot targets.

    Arguments
    ---------
    topk : tuple of int
        Accuracies to report.

    Example
    -------
    >>> stats = ClassificationStats(topk=(1, 2))
    >>> stats.append(["a", "b", "c"],
    ...              torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.3, 0.3, 0.4]]),
    ...              torch.tensor([2, 0, 2]))
    >>> out = stats.summarize()
    >>> round(out["acc@1"], 4), out["acc@2"]
    (0.6667, 1.0)
    """

    def __init__(self, topk=(1, 5)):
        self.topk = tuple(topk)
        super().__init__()

    def summarize(self, field=None):
        """Computes the statistics; returns a dict, or one value if ``field``."""
        scores, targets = self._collect()
        n_classes = scores.shape[1]
        if targets.dim() == 2:
            labels = targets.argmax(dim=1)
        else:
            labels = targets.long()
        ks = tuple(k for k in self.topk if k <= n_classes)
        summary = topk_accuracy(scores, labels, k=ks)
        onehot = torch.nn.functional.one_hot(labels, n_classes)
        summary["mAP"] = mean_average_precision(scores, onehot)
        summary["mAUC"] = mean_auc(scores, onehot)
        return self._finish(summary, field)


def task_metrics(task, topk=(1, 5)):
    """A fresh accumulator of the metric set of ``task`` (a classification
    :class:`~speechbrain_cavmae.model.tasks.Task`): :class:`MultiLabelMetrics` for
    multi-hot targets, else :class:`ClassificationStats` with accuracies at ``topk``."""
    if task.loss is None:
        raise ValueError(f"task {task.name!r} has no classes to score")
    if task.multilabel:
        return MultiLabelMetrics()
    return ClassificationStats(topk=tuple(topk))
