"""Shared plumbing of the CAV-MAE recipes (``recipes/*/train.py``).

A recipe's ``main`` (``recipes/AudioSet/train.py``, ``recipes/VGGSound/train.py``) reads
like any SpeechBrain recipe's, each step one call into this module:

1. ``speechbrain.parse_arguments`` (the hparams file, run options such as ``--precision``,
   ``--debug``, ``--ckpt_interval_minutes``, and ``--key value`` overrides of top-level
   yaml keys), :func:`complete_overrides`, :func:`check_numbers` (every number of the
   yaml, the overrides and the run options, before anything is built or read),
   ``ddp_init_group`` (torchrun);
2. ``load_hyperpyyaml``, :func:`check_hparams`, :func:`lock_output_folder` (one run per
   output folder, see :mod:`speechbrain_cavmae.training.lock`),
   ``create_experiment_directory``, :func:`add_tensorboard`;
3. :func:`build_datasets`: from the original JSON manifests and label CSV (``train_data``,
   ``valid_data``, ``test_data``, ``label_csv``) or from WebDataset shards
   (``train_shards``...; see ``docs/scale.md``);
4. :func:`speechbrain_cavmae.checkpoints.load` with ``into=`` the model: the initial
   weights of ``pretrained_path`` (a model folder, an original CAV-MAE ``.pth``, a
   checkpoint of ours, or ImageNet MAE weights);
5. :func:`make_brain`: :class:`~speechbrain_cavmae.training.brains.PretrainBrain` or
   :class:`~speechbrain_cavmae.training.brains.FinetuneBrain` by the yaml's ``task``;
6. :func:`fit` (resuming from the last checkpoint) and :func:`evaluate`;
7. :func:`export`: the model folder ``output_folder/model/`` (``hyperparams.yaml``,
   ``model.ckpt``, ``label_encoder.txt``, loadable by ``from_hparams`` and every tool) and,
   for compatibility, the bare state dict ``output_folder/pretrained.pth`` /
   ``finetuned.pth``; then :func:`leave_process_group`.

Authors
 * speechbrain-cavmae contributors 2026
"""

import csv
import logging
import os
import sys

import speechbrain as sb
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_cavmae.training.brains import FinetuneBrain, PretrainBrain
from speechbrain_cavmae.checkpoints import (
    check_state,
    plain_yaml,
    read_settings,
    write_model_folder,
)
from speechbrain_cavmae.checkpoints.loader import RUN_MODEL_SUBDIR
from speechbrain_cavmae.data import balance
from speechbrain_cavmae.data.files import atomic_torch_save
from speechbrain_cavmae.data.dataset import (
    BadSampleCounter,
    build_dataset,
    collate_av,
    hparams_config,
)
from speechbrain_cavmae.data.manifest import LabelTable
from speechbrain_cavmae.settings import check_settings, learning_rate_warnings
from speechbrain_cavmae.data.pool import cap_workers
# AtomicCheckpointer: the yamls' ``checkpointer: !new:speechbrain_cavmae.training.recipe...``
from speechbrain_cavmae.training.state import AtomicCheckpointer, RandomState, unwrap
from speechbrain_cavmae.training.lock import lock_output_folder
from speechbrain_cavmae.training.lock import release as release_output_folders

logger = logging.getLogger(__name__)

TASKS = {"pretrain": PretrainBrain, "finetune": FinetuneBrain}



# --------------------------------------------------------------------------- weights
def export_model(model, path):
    """Save the model's state dict (our names; load with
    :func:`speechbrain_cavmae.checkpoints.load`), atomically.

    Raises
    ------
    NonFiniteWeightError
        A weight is NaN or infinite (nothing is written).
    """
    if if_main_process():
        state = unwrap(model).state_dict()
        check_state(state, f"the model to export to {path}")
        atomic_torch_save(state, path)
        logger.info("exported the model to %s", path)
    return path


def export_model_folder(model, hparams, datasets=None):
    """Write the run's model folder ``<output_folder>/model/`` (``hyperparams.yaml``,
    ``model.ckpt``, ``label_encoder.txt``): the model with its architecture, classifier
    mode, input pipeline (the evaluation data configuration), loss (fine-tuning) or
    ``norm_pix_loss`` (pretraining) and labels, loadable
    with ``AudioVisualClassifier.from_hparams`` and by every tool
    (:mod:`speechbrain_cavmae.checkpoints.model_folder`)."""
    if not if_main_process():
        return None
    cfg = hparams_config(hparams)
    keep = ("sample_rate", "dataset_mean", "dataset_std", "audio_channel", "n_frames",
            "image_interpolation", "frame_segments", "clip_length", "frame_span_s")
    table = (datasets or {}).get("label_table")
    if table is None and hparams.get("label_csv"):
        table = LabelTable.from_csv(hparams["label_csv"])
    folder = os.path.join(hparams["output_folder"], RUN_MODEL_SUBDIR)
    write_model_folder(
        unwrap(model), folder, label_csv=table if hparams["task"] == "finetune" else None,
        loss=hparams.get("loss") if hparams["task"] == "finetune" else None,
        input_config={k: v for k, v in cfg.items() if k in keep},
        source=hparams["output_folder"],
        norm_pix_loss=hparams.get("norm_pix_loss") if hparams["task"] == "pretrain" else None,
    )
    return folder


# ---------------------------------------------------------------------------- data
def class_balanced_weights(dataset, table):
    """Sampling weight of each clip of ``dataset`` (in its order) for class-balanced
    sampling, as :func:`speechbrain_cavmae.data.balance.class_balanced_weights` (the
    original's weight files): a class weighs ``1000 / (count + 0.01)``, a clip the sum
    over its labels."""
    entries = {sid: {"labels": dataset.data[sid]["label_ids"]} for sid in dataset.data_ids}
    return torch.as_tensor(balance.class_balanced_weights(entries, table))


def read_weight_file(path, n):
    """Per-clip sampling weights from the original ``*_weight.csv`` (one number per line)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:  # a BOM is dropped
        values = [float(row[0]) for row in csv.reader(handle) if row]
    if len(values) != n:
        raise ValueError(f"{path}: {len(values)} weights for {n} training clips")
    return torch.tensor(values, dtype=torch.float64)


def _split_source(hparams, split):
    """``("data", manifest)``, ``("shards", pattern)`` or None for a split."""
    data, shards = hparams.get(f"{split}_data"), hparams.get(f"{split}_shards")
    if data and shards:
        raise ValueError(f"give either --{split}_data or --{split}_shards, not both")
    return ("shards", shards) if shards else ("data", data) if data else None


def build_datasets(hparams, counter=None):
    """Datasets ``train``, ``valid`` and ``test`` (``test`` on ``test_data`` or, when that
    is not given, on ``valid_data``; multi-frame when ``multi_frame_eval``), each from a
    manifest (``<split>_data``) or from WebDataset shards (``<split>_shards``, see
    :func:`speechbrain_cavmae.data.shards.build_shard_dataset`; training shards are
    shuffled as ``train_dataloader_opts: shuffle`` says, in a ``shuffle_buffer``)."""
    label_csv = hparams.get("label_csv")
    table = LabelTable.from_csv(label_csv) if label_csv else None
    if hparams["task"] == "finetune" and table is None:
        raise ValueError("fine-tuning needs a label CSV: pass --label_csv")
    out = {}
    labelled = hparams["task"] == "finetune"
    train_cfg = eval_cfg = hparams_config(hparams)  # build_dataset zeroes eval augmentation
    test_cfg = dict(eval_cfg, multi_frame=bool(hparams.get("multi_frame_eval", False)))
    sources = {split: _split_source(hparams, split) for split in ("train", "valid", "test")}
    if hparams["task"] == "finetune" and sources["valid"] is None:
        raise ValueError("fine-tuning needs validation data: pass --valid_data or --valid_shards")
    sources["test"] = sources["test"] or sources["valid"]
    for split, cfg in (("train", train_cfg), ("valid", eval_cfg), ("test", test_cfg)):
        if sources[split] is None:
            continue
        kind, where = sources[split]
        train = split == "train"
        if kind == "data":
            out[split] = build_dataset(where, table, cfg, train, counter, labelled)
            continue
        from speechbrain_cavmae.data.shards import build_shard_dataset

        shuffle = train and (hparams.get("train_dataloader_opts") or {}).get("shuffle", False)
        out[split] = build_shard_dataset(
            where, table, cfg, train, counter, shuffle=shuffle,
            shuffle_buffer=hparams.get("shuffle_buffer", 1000), seed=hparams.get("seed", 0),
            require_labels=labelled)
    out["label_table"] = table
    return out


def data_source(dataset, opts, checkpointer=None, key="train"):
    """What ``Brain.fit`` / ``Brain.evaluate`` read: the dataset itself (SpeechBrain makes
    the DataLoader) or, for shards, a :class:`~speechbrain_cavmae.data.shards.ShardLoader`
    with the options ``opts``; the training one is a checkpoint recoverable
    (``shard_position``: a resumed epoch leaves out the samples already trained on)."""
    from torch.utils.data import IterableDataset

    if not isinstance(dataset, IterableDataset):
        return dataset
    from speechbrain_cavmae.data.shards import ShardLoader

    if "sampler" in opts or "batch_sampler" in opts:
        raise ValueError("shards are read in order with a shuffle buffer: class-balanced "
                         "sampling (balanced_sampling) needs --train_data")
    loader = ShardLoader(dataset, **opts)
    if checkpointer is not None and key == "train":
        checkpointer.add_recoverable("shard_position", loader)
    return loader


def loader_kwargs(hparams, key, datasets=None, device="cpu"):
    """DataLoader options from the yaml (``<key>``) with the AV collate function; batches in
    pinned memory when training on CUDA (so that the copies to the GPU are asynchronous),
    unless the yaml sets ``pin_memory``.

    The training loader gets a generator of its own (seeded with ``seed``): a DataLoader
    otherwise draws its workers' base seed from torch's global generator each time an
    epoch starts, so a run resumed in the middle of an epoch (which starts a new pass over
    the data) would draw its masks and augmentations from a shifted global stream.
    """
    opts = dict(hparams.get(key) or {})
    if opts.get("num_workers"):
        opts["num_workers"] = cap_workers(opts["num_workers"])
    opts.setdefault("collate_fn", collate_av)
    opts.setdefault("pin_memory", str(device).startswith("cuda"))
    if key.startswith("train"):
        opts.setdefault("generator", torch.Generator().manual_seed(int(hparams.get("seed", 0))))
    if key.startswith("train") and datasets is not None and hparams.get("balanced_sampling"):
        train = datasets["train"]
        if isinstance(train, torch.utils.data.IterableDataset):
            raise ValueError("balanced_sampling needs --train_data: shards are streamed")
        weights_file = hparams.get("sample_weights")
        if weights_file:
            weights = read_weight_file(weights_file, len(train))
        else:
            weights = class_balanced_weights(train, datasets["label_table"])
        opts.pop("shuffle", None)
        opts["sampler"] = torch.utils.data.WeightedRandomSampler(
            weights, len(weights), replacement=True
        )
        logger.info("class-balanced sampling of the training set")
    return opts


# ------------------------------------------------------------------------- logging
class MultiLogger:
    """Forwards ``log_stats`` to several SpeechBrain train loggers (file + TensorBoard)."""

    def __init__(self, loggers):
        self.loggers = list(loggers)

    def log_stats(self, *args, **kwargs):
        """Log to every logger."""
        for log in self.loggers:
            log.log_stats(*args, **kwargs)


def add_tensorboard(hparams):
    """Add a TensorBoard logger (``tensorboard_folder``) when ``use_tensorboard``."""
    if not hparams.get("use_tensorboard"):
        return
    try:
        from speechbrain.utils.train_logger import TensorboardLogger

        tb = TensorboardLogger(hparams["tensorboard_folder"])
    except ImportError as exc:
        raise ImportError(
            "use_tensorboard: True needs the tensorboard package (pip install tensorboard)"
        ) from exc
    hparams["train_logger"] = MultiLogger([hparams["train_logger"], tb])


# ---------------------------------------------------------------------------- main
class UsageError(ValueError):
    """A command line the recipe cannot run; the message names the flag to change (the
    recipes' ``main`` prints it as one line and exits with status 2)."""


#: Sizes a recipe takes from ``--pretrained_path``'s model folder: recipe yaml key ->
#: the folder's model argument. ``audio_length`` is a default only (another length is
#: allowed: the positional embeddings are interpolated in time); the decoder sizes only
#: for pretraining.
FOLDER_SIZES = {
    "image_size": "img_size", "n_mels": "n_mels", "patch_size": "patch_size",
    "embed_dim": "embed_dim", "modality_specific_depth": "modality_specific_depth",
    "shared_depth": "shared_depth", "num_heads": "num_heads", "mlp_ratio": "mlp_ratio",
    "decoder_embed_dim": "decoder_embed_dim", "decoder_depth": "decoder_depth",
    "decoder_num_heads": "decoder_num_heads", "audio_length": "audio_length",
}
DECODER_SIZES = ("decoder_embed_dim", "decoder_depth", "decoder_num_heads")


def _override_dict(overrides):
    if isinstance(overrides, dict):
        return overrides
    return yaml.safe_load(overrides or "") or {}


def _add_overrides(overrides, extra):
    """``overrides`` (a YAML string or a dict) with the keys of ``extra`` added."""
    if not extra:
        return overrides
    if isinstance(overrides, dict):
        return dict(overrides, **extra)
    return (overrides or "") + "".join(f"\n{k}: {v!r}" for k, v in extra.items())


def check_override_keys(hparams_file, overrides, keys=None):
    """Raise :class:`UsageError` for an override (``--key value``) that is not a top-level
    key of ``hparams_file``, naming it and the closest keys (HyperPyYAML would raise a
    ``KeyError`` listing every key of the file)."""
    import difflib


    if keys is None:
        with open(hparams_file, encoding="utf8") as handle:
            keys = list(plain_yaml(handle))
    for key in _override_dict(overrides):
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
            hint = (f"did you mean {', '.join('--' + k for k in close)}?" if close
                    else "the top-level keys of the file can be overridden")
            raise UsageError(f"--{key}: {hparams_file} has no key {key!r} ({hint})")


def architecture_overrides(hparams, overrides):
    """The sizes of ``pretrained_path``'s model folder as overrides.

    Arguments
    ---------
    hparams : dict
        The recipe yaml read as plain data (its top-level keys, ``task`` and
        ``pretrained_path``).
    overrides : dict
        The command line's overrides.

    Returns
    -------
    dict
        ``{key: folder value}`` for each size of :data:`FOLDER_SIZES` the yaml defines and
        the command line does not give (empty without a folder: an original ``.pth`` or
        ImageNet weights are loaded into the yaml's sizes, as before).

    Raises
    ------
    UsageError
        A size given on the command line disagrees with the folder (``audio_length``
        excepted: the audio positions are interpolated).
    """

    path = overrides.get("pretrained_path", hparams.get("pretrained_path"))
    if not isinstance(path, (str, os.PathLike)) or not path:
        return {}
    folder, settings = read_settings(path)
    if folder is None:
        return {}
    recorded = settings["model"]
    task = overrides.get("task", hparams.get("task"))
    taken = {}
    for key, name in FOLDER_SIZES.items():
        if key not in hparams or name not in recorded or recorded[name] is None:
            continue
        if key in DECODER_SIZES and task != "pretrain":
            continue  # fine-tuning drops the decoder
        value = recorded[name]
        if key not in overrides:
            taken[key] = value
        elif overrides[key] != value and key != "audio_length":
            raise UsageError(
                f"--{key} {overrides[key]} disagrees with the model folder {folder} "
                f"(--pretrained_path), which records {key} {value}: drop --{key} (the "
                "sizes are read from the folder)")
    return taken


def complete_overrides(overrides, hparams_file=None):
    """Complete the command line's overrides of the yaml's keys.

    * ``num_classes`` is read from ``--label_csv`` when not given;
    * with ``hparams_file``: an override that is not a top-level key of the file is a
      :class:`UsageError` (naming close matches), and the architecture is read from
      ``pretrained_path``'s model folder (:func:`architecture_overrides`).

    ``overrides`` is the YAML string of ``speechbrain.parse_arguments`` (kept as a string
    so that hyperpyyaml parses numbers such as ``1e-3`` itself) or a dict.
    """

    values = _override_dict(overrides)
    plain = None
    if hparams_file is not None:
        with open(hparams_file, encoding="utf8") as handle:
            plain = plain_yaml(handle)
        check_override_keys(hparams_file, values, list(plain))
    extra = {}
    if values.get("label_csv") and "num_classes" not in values and (
            plain is None or "num_classes" in plain):
        extra["num_classes"] = LabelTable.from_csv(values["label_csv"]).num_classes
    if plain is not None:
        extra.update(architecture_overrides(plain, values))
    return _add_overrides(overrides, extra)


def _untagged_values(mapping):
    """The entries of a round-trip-loaded yaml mapping that carry no tag (``!new:``,
    ``!name:``, ``!apply:``...: objects, not numbers)."""
    return {key: value for key, value in mapping.items()
            if getattr(getattr(value, "tag", None), "value", None) is None}


def check_numbers(hparams_file, overrides=None, run_opts=None):
    """Check every number of a run against :data:`speechbrain_cavmae.settings.RULES` before
    anything is built or read: the top-level keys of ``hparams_file`` with ``overrides``
    applied and references resolved (as ``load_hyperpyyaml`` will see them, but with
    nothing constructed), and the run options given on the command line
    (``--max_grad_norm``...). A learning rate of 0 is logged as a warning.

    Raises
    ------
    speechbrain_cavmae.settings.SettingError
        The first value out of its range, named as the flag (``--lr``) when it was given on
        the command line, else as the key of ``hparams_file``.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "hp.yaml")
    >>> _ = open(path, "w").write("lr: 0.001\\nmodel: !new:collections.Counter\\n  a: 1\\n")
    >>> check_numbers(path, "lr: 1e-4")
    >>> try:
    ...     check_numbers(path, "lr: nan")
    ... except ValueError as err:
    ...     print(err)
    --lr must be a finite number >= 0, got 'nan' (a string)
    """
    from hyperpyyaml import resolve_references
    from ruamel.yaml import YAML

    given = overrides if isinstance(overrides, dict) else yaml.safe_load(overrides or "")
    given = given or {}
    with open(hparams_file, encoding="utf8") as handle:
        resolved = resolve_references(handle, overrides)
    values = _untagged_values(YAML().load(resolved) or {})
    for key, value in values.items():
        flag = key in given
        check_settings({key: value}, prefix="--" if flag else "",
                       suffix="" if flag else f" (in {hparams_file})")
    if run_opts is not None:
        for key in getattr(run_opts, "overridden_args", ()) or ():
            check_settings({key: run_opts[key]}, prefix="--")
    learning_rate_warnings(values)


def check_hparams(hparams):
    """Consistency checks with clear messages; a warning for SpecAugment masks as wide as
    the input (``timem`` >= ``audio_length``, ``freqm`` >= ``n_mels``: a mask can hide the
    whole spectrogram)."""
    task = hparams.get("task")
    if task not in TASKS:
        raise ValueError(f"hparams 'task' must be one of {sorted(TASKS)}, got {task!r}")
    for mask, size in (("timem", "audio_length"), ("freqm", "n_mels")):
        width, extent = hparams.get(mask) or 0, hparams.get(size)
        if extent and width >= extent:
            logger.warning(
                "%s %s is not narrower than %s %s: a SpecAugment mask can hide the whole "
                "input; pass --%s %d or less (the original: %s)", mask, width, size, extent,
                mask, extent // 5, "timem 192 of 1024" if mask == "timem" else "freqm 48 of 128")
    if task == "finetune" and hparams.get("label_csv"):
        n = LabelTable.from_csv(hparams["label_csv"]).num_classes
        if n != hparams["num_classes"]:
            raise ValueError(
                f"num_classes={hparams['num_classes']} but {hparams['label_csv']} has {n} "
                f"classes; pass --num_classes {n}"
            )


def make_brain(hparams, run_opts, counter=None):
    """The Brain of the yaml's ``task`` (``pretrain``: :class:`PretrainBrain`, ``finetune``:
    :class:`FinetuneBrain`) with its modules, optimizer class and checkpointer; the
    checkpointer also recovers the random state, so a resumed run continues the same
    sequence of random numbers."""
    if "sorting" not in hparams:
        # Under DDP, SpeechBrain's DistributedSampler shuffles unless ``sorting`` is set
        # to something else than "random"; follow the training loader's ``shuffle``.
        shuffle = (hparams.get("train_dataloader_opts") or {}).get("shuffle", False)
        hparams["sorting"] = "random" if shuffle else "ascending"
    brain = TASKS[hparams["task"]](
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.bad_sample_counter = counter
    if brain.checkpointer is not None:
        # optional: checkpoints written before it was added still load
        brain.checkpointer.add_recoverable("random_state", RandomState(), optional_load=True)
    return brain


def fit(brain, hparams, datasets):
    """``brain.fit`` on ``datasets["train"]`` (validating on ``datasets["valid"]`` when
    there is one) with the yaml's loader options."""
    if "train" not in datasets:
        raise ValueError("no training data: pass --train_data or --train_shards (or --test_only)")
    train_opts = loader_kwargs(hparams, "train_dataloader_opts", datasets, brain.device)
    valid_opts = loader_kwargs(hparams, "valid_dataloader_opts", device=brain.device)
    brain.fit(
        brain.hparams.epoch_counter,
        data_source(datasets["train"], train_opts, brain.checkpointer),
        data_source(datasets["valid"], valid_opts) if "valid" in datasets else None,
        train_loader_kwargs=train_opts,
        valid_loader_kwargs=valid_opts,
    )


def evaluate(brain, hparams, datasets):
    """``brain.evaluate`` on ``datasets["test"]`` (the lowest-loss checkpoint of a
    pretraining run, the last one of a fine-tuning run, whose weights are averaged)."""
    key = {"min_key": "loss"} if hparams["task"] == "pretrain" else {}
    test_opts = loader_kwargs(hparams, "test_dataloader_opts", device=brain.device)
    return brain.evaluate(data_source(datasets["test"], test_opts),
                          test_loader_kwargs=test_opts, **key)


def export(brain, hparams, datasets):
    """On the main process: the model folder ``output_folder/model/`` and the bare state
    dict ``output_folder/pretrained.pth`` / ``finetuned.pth``."""
    name = "pretrained.pth" if hparams["task"] == "pretrain" else "finetuned.pth"
    run_on_main(export_model, args=[brain.modules.model,
                                    os.path.join(hparams["output_folder"], name)])
    run_on_main(export_model_folder, args=[brain.modules.model, hparams, datasets])


def leave_process_group():
    """Leave the DDP process group cleanly (exiting with it alive can abort, with gloo),
    and release the output folder's lock (:func:`lock_output_folder`; a run that ends in
    an error releases it when its process exits)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    release_output_folders()


__all__ = [
    "AtomicCheckpointer",
    "MultiLogger",
    "RandomState",
    "UsageError",
    "architecture_overrides",
    "check_override_keys",
    "complete_overrides",
    "build_datasets",
    "check_numbers",
    "class_balanced_weights",
    "data_source",
    "export_model",
    "export_model_folder",
    "loader_kwargs",
    "lock_output_folder",
    "evaluate",
    "export",
    "fit",
    "leave_process_group",
    "make_brain",
]
