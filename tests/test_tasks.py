"""The task table (``speechbrain_cavmae/model/tasks.py``): one place names the losses."""

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import speechbrain_cavmae
from speechbrain_cavmae.checkpoints.model_folder import resolve_activation
from speechbrain_cavmae.model.tasks import (
    ACTIVATIONS,
    LOSSES,
    TASKS,
    average_frame_predictions,
    get_task,
    scores,
    task_for_loss,
)
from speechbrain_cavmae.training.accumulators import task_metrics

PACKAGE = Path(speechbrain_cavmae.__file__).resolve().parent


def test_loss_names_are_spelled_in_the_task_table_only():
    """The loss strings live in one module (the yamls keep theirs): the brains, the model
    folder, ``convert`` and inference read the task table."""
    spelled = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                     if re.search(r"""["'](BCE|CE)["']""", path.read_text(encoding="utf8")))
    assert spelled == ["model/tasks.py"]


@pytest.mark.parametrize("loss", LOSSES)
def test_each_classification_row_is_consistent(loss):
    """A row's loss, score activation and metric set agree: the model folder's ``auto``
    activation is the row's, the accumulator reports the row's metrics and main metric,
    and the loss is the original's (BCE with logits, or cross-entropy of soft targets)."""
    task = task_for_loss(loss)
    assert task is get_task(task.name) and task.activation in ACTIVATIONS
    assert resolve_activation("auto", 10, loss) == task.activation
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.3, -0.2]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    expected = (F.binary_cross_entropy_with_logits if loss == LOSSES[0] else F.cross_entropy)
    torch.testing.assert_close(task.loss_fn(logits, targets), expected(logits, targets))
    stats = task_metrics(task, topk=(1, 2))
    stats.append(["a", "b"], logits, targets)
    summary = stats.summarize()
    assert set(task.metrics) <= set(summary) and task.main_metric in summary
    assert task.multilabel == (task.activation == "sigmoid")


def test_pretraining_row_and_errors():
    task = get_task("pretraining")
    assert task.loss is None and task.activation is None and not task.maximize
    assert TASKS == ("pretraining", "multilabel", "singlelabel")
    with pytest.raises(ValueError, match=r"loss='MSE'; expected one of \['BCE', 'CE'\]"):
        task_for_loss("MSE")
    with pytest.raises(ValueError, match="unknown task 'regression'"):
        get_task("regression")
    with pytest.raises(ValueError, match="has no classes to score"):
        task_metrics(task)
    with pytest.raises(ValueError, match="score_activation='relu': use sigmoid or softmax"):
        scores(torch.zeros(1, 2), "relu")


def test_scores_and_frame_average_follow_the_activation():
    logits = torch.tensor([[[0.0, 2.0], [1.0, -1.0]]])
    torch.testing.assert_close(scores(logits, "sigmoid", log=True),
                               torch.log(torch.sigmoid(logits)))
    torch.testing.assert_close(average_frame_predictions(logits, "CE"),
                               torch.softmax(logits, dim=-1).mean(dim=1))
