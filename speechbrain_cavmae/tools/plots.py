"""Training curves of the CAV-MAE recipes (matplotlib, PNG).

The recipe brains append one record per epoch to ``output_folder/history.json``::

    [{"epoch": 1, "lr": 0.001, "train": {"loss": ...}, "valid": {"loss": ..., ...}}, ...]

and SpeechBrain's ``FileTrainLogger`` writes the same statistics as text lines to
``output_folder/train_log.txt``::

    epoch: 1, lr: 1.00e-03 - train loss: 2.75, train loss_mae: 2.34 - valid loss: 2.39

:func:`read_history` reads the first and falls back on the second;
:func:`plot_pretraining` and :func:`plot_finetuning` draw the curves. matplotlib is
needed only here (``pip install speechbrain-cavmae[plots]``).

Authors
 * speechbrain-cavmae contributors 2026
"""

import json
import logging
import os
import re

logger = logging.getLogger(__name__)

_STAGE_RE = re.compile(r"^(train|valid|test)\s+(\S+):\s+(\S+)$")


def parse_train_log(path):
    """Parse the epoch lines of a SpeechBrain ``train_log.txt``.

    Arguments
    ---------
    path : str
        The log file.

    Returns
    -------
    list of dict
        One record per ``epoch:`` line: ``{"epoch", "lr", "train": {...}, "valid": {...}}``
        (a later line for the same epoch replaces an earlier one, as after a resume).

    Example
    -------
    >>> import tempfile
    >>> f = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
    >>> _ = f.write("epoch: 1, lr: 1e-3 - train loss: 2.75 - valid loss: 2.39, valid c_acc: 0.5\\n")
    >>> f.close()
    >>> parse_train_log(f.name)[0]["valid"]
    {'loss': 2.39, 'c_acc': 0.5}
    """
    records = {}
    with open(path, encoding="utf8") as handle:
        for line in handle:
            line = line.strip()
            if not line.startswith("epoch:"):
                continue
            parts = [p.strip() for p in line.split(" - ")]
            record = {"train": {}, "valid": {}}
            for item in parts[0].split(","):
                key, _, value = item.partition(":")
                try:
                    record[key.strip()] = float(value)
                except ValueError:
                    continue
            for part in parts[1:]:
                for item in part.split(","):
                    match = _STAGE_RE.match(item.strip())
                    if match and match.group(1) in record:
                        try:
                            record[match.group(1)][match.group(2)] = float(match.group(3))
                        except ValueError:
                            continue
            if "epoch" in record:
                record["epoch"] = int(record["epoch"])
                records[record["epoch"]] = record
    return [records[k] for k in sorted(records)]


def read_history(folder):
    """Per-epoch statistics of a recipe run in ``folder``.

    Reads ``history.json`` when present, else parses ``train_log.txt``.

    Raises
    ------
    FileNotFoundError
        When the folder has neither file.
    """
    json_path = os.path.join(folder, "history.json")
    if os.path.isfile(json_path):
        with open(json_path, encoding="utf8") as handle:
            history = json.load(handle)
        if not isinstance(history, list):
            raise ValueError(f"{json_path}: expected a list of epoch records")
        return sorted(history, key=lambda r: r.get("epoch", 0))
    log_path = os.path.join(folder, "train_log.txt")
    if os.path.isfile(log_path):
        return parse_train_log(log_path)
    raise FileNotFoundError(f"{folder}: neither history.json nor train_log.txt")


def series(history, stage, key):
    """``(epochs, values)`` of ``history[i][stage][key]`` where present."""
    epochs, values = [], []
    for record in history:
        value = (record.get(stage) or {}).get(key)
        if value is not None:
            epochs.append(record["epoch"])
            values.append(float(value))
    return epochs, values


def _save(plt, fig, title, path):
    """Title, lay out, write ``fig`` to ``path`` (PNG) and close it; returns ``path``."""
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    logger.info("wrote %s", path)
    return path


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "plots need matplotlib: pip install 'speechbrain-cavmae[plots]'"
        ) from exc
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _panel(ax, history, keys, title, ylabel, chance=None):
    drawn = False
    for stage, key, label in keys:
        epochs, values = series(history, stage, key)
        if epochs:
            ax.plot(epochs, values, marker="." if len(epochs) < 40 else None, label=label)
            drawn = True
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8)
    return drawn


def plot_pretraining(history, path, title="CAV-MAE pretraining", chance_r1=None):
    """Three panels: total loss, the two objectives, validation retrieval.

    Arguments
    ---------
    history : list of dict
        From :func:`read_history` of a pretraining run.
    path : str
        Output PNG.
    title : str
        Figure title.
    chance_r1 : float, optional
        Chance level of R@1 on the validation set (a dashed line).

    Returns
    -------
    str
        ``path``.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    _panel(axes[0], history, [("train", "loss", "train"), ("valid", "loss", "valid")],
           "total loss", "loss")
    _panel(axes[1], history, [
        ("train", "loss_mae_a", "train MAE audio"), ("train", "loss_mae_v", "train MAE visual"),
        ("train", "loss_c", "train contrastive"), ("valid", "loss_c", "valid contrastive"),
    ], "objectives (unweighted)", "loss")
    _panel(axes[2], history, [
        ("valid", "a2v_R@1", "A->V R@1"), ("valid", "v2a_R@1", "V->A R@1"),
        ("valid", "a2v_R@10", "A->V R@10"), ("valid", "v2a_R@10", "V->A R@10"),
    ], "validation retrieval", "recall", chance=chance_r1)
    return _save(plt, fig, title, path)


def plot_finetuning(histories, path, title="CAV-MAE fine-tuning", metric="acc@1",
                    chance=None):
    """Training loss and validation ``metric`` of several fine-tuning runs.

    Arguments
    ---------
    histories : dict
        ``{run name: history}``.
    path : str
        Output PNG.
    title : str
        Figure title.
    metric : str
        Validation statistic of the right panel.
    chance : float, optional
        Chance level of ``metric`` (a dashed line).

    Returns
    -------
    str
        ``path``.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, history in histories.items():
        epochs, values = series(history, "train", "loss")
        axes[0].plot(epochs, values, marker=".", label=f"{name} train")
        epochs, values = series(history, "valid", "loss")
        axes[0].plot(epochs, values, marker=".", linestyle=":", label=f"{name} valid")
        epochs, values = series(history, "valid", metric)
        axes[1].plot(epochs, values, marker=".", label=name)
    if chance is not None:
        axes[1].axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    for ax, name in ((axes[0], "loss"), (axes[1], f"validation {metric}")):
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(plt, fig, title, path)


__all__ = ["parse_train_log", "plot_finetuning", "plot_pretraining", "read_history", "series"]
