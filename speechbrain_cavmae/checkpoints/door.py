"""The one door into checkpoints: :func:`load` takes any source and returns the model and
what its folder says about feeding it (:class:`Loaded`).

A model folder's ``hyperparams.yaml`` is read once per load: checked against the schema of
:mod:`speechbrain_cavmae.checkpoints.trust` first, then read as plain settings (input
pipeline, task, sizes) and, when the model is built from it, as HyperPyYAML. The formats,
architectures and strict loading rules are :mod:`speechbrain_cavmae.checkpoints.loader`'s.

Authors
 * speechbrain-cavmae contributors 2026
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import torch

from speechbrain_cavmae.checkpoints.loader import (
    ENCODER_ARGS,
    HPARAMS_FILE,
    LABELS_FILE,
    MODEL_FILE,
    SizeMismatchError,
    _group,
    architecture,
    build_model,
    check_heads,
    encoder_architecture,
    find_folder,
    load_weights,
    model_config,
    read_source,
    read_state_file,
    select_half,
)
from speechbrain_cavmae.checkpoints.original import (
    CheckpointMismatchError,
    init_from_imagenet_mae_state,
)

logger = logging.getLogger(__name__)


# ------------------------------------------------------------- folder settings
#: Top-level keys of a model folder's yaml that configure its input pipeline (the same
#: names as in the data configuration, ``speechbrain_cavmae.data.dataset.DEFAULT_CONFIG``).
INPUT_KEYS = (
    "sample_rate", "audio_length", "n_mels", "dataset_mean", "dataset_std", "audio_channel",
    "n_frames", "image_size", "image_interpolation", "frame_segments", "clip_length",
    "frame_span_s",
)


def input_config(hparams):
    """The evaluation data configuration of a model folder's hyperparameters (a dict or a
    namespace): the settings that feed the model as it was trained."""
    values = hparams if isinstance(hparams, dict) else vars(hparams)
    return {key: values[key] for key in INPUT_KEYS if key in values}


class YamlRef(str):
    """The target of a HyperPyYAML ``!ref <key>``, as :func:`plain_yaml` reads it."""


def plain_yaml(stream):
    """A HyperPyYAML file (text or open file) read as plain data, without building or
    resolving anything: a tagged mapping (``!new:...``) is its dict, ``!ref <x>`` a
    :class:`YamlRef`, any other tagged node (``!name:``, ``!apply:``, ``!PLACEHOLDER``)
    None.

    Example
    -------
    >>> plain_yaml("a: 1\\nm: !new:x.Y\\n    b: !ref <a>\\nc: !PLACEHOLDER")
    {'a': 1, 'm': {'b': '<a>'}, 'c': None}
    """
    import yaml

    class _Plain(yaml.SafeLoader):
        """Tags read as plain data."""

    def construct(loader, suffix, node):
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if suffix == "ref" and isinstance(node, yaml.ScalarNode):
            return YamlRef(node.value.strip())
        return None

    _Plain.add_multi_constructor("!", construct)
    return yaml.load(stream, Loader=_Plain) or {}


#: Top-level keys of a model folder's yaml that describe its task.
TASK_KEYS = ("loss", "score_activation", "norm_pix_loss")


def folder_settings(text):
    """The settings a model folder's yaml ``text`` records, read without building
    anything: its top-level scalars (input pipeline, ``loss``, ``norm_pix_loss``...) and,
    under ``"model"``, the model's constructor arguments (``!ref`` resolved)."""
    values = plain_yaml(text)

    def resolve(value):
        if isinstance(value, YamlRef) and value.startswith("<") and value.endswith(">"):
            return values.get(value[1:-1])
        return value

    settings = {k: v for k, v in values.items() if not isinstance(v, (dict, list, YamlRef))}
    model = values.get("model")
    settings["model"] = ({k: resolve(v) for k, v in model.items()}
                         if isinstance(model, dict) else {})
    return settings


# ------------------------------------------------------------------ the door
#: What ``load(part=...)`` builds: the whole model, or the encoder (or one of its parts)
#: by the streams it runs.
PARTS = ("model", "encoder", "audio", "visual", "joint")
_HALF_OF_PART = {"encoder": None, "audio": "audio", "visual": "visual", "joint": "joint"}


@dataclass
class Loaded:
    """What :func:`load` returns: the model and what its folder says about feeding it.

    Attributes
    ----------
    model : torch.nn.Module
        The model (or encoder part) with the weights, in eval mode; with ``into``, that
        model initialised in place.
    inputs : dict
        The folder's input settings (:data:`INPUT_KEYS`: ``audio_length``,
        ``dataset_mean``, ``n_frames``...); ``{}`` without a folder.
    labels : list of str or None
        Class names by index (the folder's ``label_encoder.txt``).
    task : dict
        ``kind`` (``"pretrain"``, ``"classifier"``, ``"encoder"``) and what the folder
        records of the task (``loss``, ``score_activation``, ``norm_pix_loss``).
    folder : str or None
        The model folder the source stands for.
    settings : dict
        Every top-level scalar the folder records and, under ``"model"``, its
        constructor arguments; ``{}`` without a folder.
    report : dict or None
        With ``into``: ``loaded``, ``ignored``, ``missing`` (see :func:`load_weights`).
    """

    model: torch.nn.Module
    inputs: dict = field(default_factory=dict)
    labels: Optional[list] = None
    task: dict = field(default_factory=dict)
    folder: Optional[str] = None
    settings: dict = field(default_factory=dict)
    report: Optional[dict] = None


class _Folder:
    """A model folder read once: its yaml text (schema-checked on reading), the plain
    settings and, when needed, the built hyperparameters."""

    def __init__(self, folder, text, trust_remote_code=False):
        from speechbrain_cavmae.checkpoints.trust import check_folder_hparams

        self.path = folder
        self.text = text
        root = os.path.abspath(folder)
        self.overrides = {"pretrained_path": root}
        check_folder_hparams(text, os.path.join(root, HPARAMS_FILE), root, self.overrides,
                             trust_remote_code)
        self.settings = folder_settings(text)
        self._hparams = None

    @property
    def hparams(self):
        """The folder's HyperPyYAML, built (once)."""
        if self._hparams is None:
            from hyperpyyaml import load_hyperpyyaml

            self._hparams = load_hyperpyyaml(self.text, self.overrides)
        return self._hparams

    def config(self, num_heads=None, decoder_num_heads=None):
        """The built model's constructor arguments; given head counts must agree."""
        cfg = model_config(self.hparams["model"])
        for name, value in (("num_heads", num_heads), ("decoder_num_heads", decoder_num_heads)):
            if value is not None and name in cfg and value != cfg[name]:
                raise ValueError(f"{self.path}: {name}={value} given but the model folder "
                                 f"records {cfg[name]}; drop the argument")
        return cfg

    def labels(self):
        """Class names by index from ``label_encoder.txt``, or ``None``."""
        path = os.path.join(self.path, LABELS_FILE)
        if not os.path.isfile(path):
            return None
        from speechbrain.dataio.encoder import CategoricalEncoder

        encoder = CategoricalEncoder()
        encoder.load(path)
        return [encoder.ind2lab[i] for i in range(len(encoder))]


def read_settings(source, trust_remote_code=False):
    """What the model folder ``source`` stands for (a folder, its ``model.ckpt`` or a
    recipe output folder) records, without reading weights or building anything
    (:func:`folder_settings`), e.g. ``{"n_frames": 10, ..., "model": {"num_heads": 12, ...}}``.

    Returns
    -------
    (str, dict) or (None, dict)
        The folder and its settings, its yaml checked first; ``(None, {})`` for weights
        without a folder.
    """
    path = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    folder, text = find_folder(path) if path and os.path.exists(path) else (None, None)
    if folder is None:
        return None, {}
    return folder, _Folder(folder, text, trust_remote_code).settings


def _open(source, map_location="cpu", trust_remote_code=False):
    """``(state under our names, format, _Folder or None, name)`` of any source; a model
    folder's yaml is read once and checked before its weights are read."""
    if not isinstance(source, dict):
        path = os.fspath(source)
        folder, text = find_folder(path) if os.path.exists(path) else (None, None)
        if folder is not None:
            opened = _Folder(folder, text, trust_remote_code)  # before reading its files
            state = read_state_file(os.path.join(folder, MODEL_FILE))
            return state, "model_folder", opened, folder
    state, fmt, _ = read_source(source, map_location, trust_remote_code)
    return state, fmt, None, (os.fspath(source) if not isinstance(source, dict) else "state dict")


def load(source, *, part="model", into=None, map_location="cpu", trust_remote_code=False,
         names=None, **sizes):
    """The one door into checkpoints: any source -> the model and how to feed it.

    Arguments
    ---------
    source : str, pathlib.Path or dict
        A model folder (or its ``model.ckpt``, or a recipe output folder), a SpeechBrain
        checkpoint folder (``CKPT+...``), an original or our ``.pth``, a loaded state
        dict; with ``into``, also ImageNet MAE weights.
    part : str
        ``"model"``: :class:`CAVMAE` or :class:`CAVMAEClassifier` as the weights say;
        ``"encoder"``: the whole encoder; ``"audio"`` / ``"visual"``: one stream
        (:class:`~speechbrain_cavmae.model.encoder.AudioStreamEncoder`...); ``"joint"``:
        both branches and the joint stream. An encoder part needs only its own weights
        (the rest is left out, one log line); a state dict of a part loads into it.
    into : torch.nn.Module, optional
        Initialise this model in place instead of building one (the recipes'
        ``pretrained_path``): the encoder must match; a head absent or of another size,
        a decoder absent from a fine-tuned checkpoint, are freshly initialised (partial
        load, one log line). ``part`` is then ignored.
    map_location : str
        Passed to ``torch.load``.
    trust_remote_code : bool
        Build a model folder's yaml even if it is outside the model-folder schema
        (:mod:`speechbrain_cavmae.checkpoints.trust`); only for folders you trust.
    names : dict, optional
        How to name the size arguments in errors (e.g. ``{"embed_dim": "emb_dim"}``).
    **sizes
        ``num_heads`` / ``decoder_num_heads`` (needed without a folder for widths other
        than the released 768 / 512; with a folder they must agree), ``audio_length``
        (positional embedding interpolated), other constructor arguments (``mode``,
        ``drop_path_rate``...; an encoder part's may only repeat the checkpoint's sizes).

    Returns
    -------
    Loaded
    """
    if part not in PARTS:
        raise ValueError(f"part={part!r}; expected one of {list(PARTS)}")
    state, fmt, folder, name = _open(source, map_location, trust_remote_code)
    if into is not None:
        report = _load_into(into, state, fmt, folder, name)
        model, kind = into, "classifier" if hasattr(into, "head") else "pretrain"
    elif fmt == "imagenet_mae":
        raise CheckpointMismatchError(
            f"{name}: ImageNet MAE weights do not describe a CAV-MAE model; initialise one "
            "with init_from_imagenet_mae (or the recipes' --pretrained_path)")
    elif part == "model":
        model, report = _load_model(state, folder, name, **sizes), None
        kind = "classifier" if hasattr(model, "head") else "pretrain"
    else:
        model, report = _load_encoder(state, folder, name, _HALF_OF_PART[part], names,
                                      **sizes), None
        kind = "encoder"
    settings = folder.settings if folder is not None else {}
    task = {"kind": kind}
    task.update({k: settings[k] for k in TASK_KEYS if k in settings})
    return Loaded(model=model, inputs=input_config(settings),
                  labels=folder.labels() if folder is not None else None, task=task,
                  folder=folder.path if folder is not None else None, settings=settings,
                  report=report)


def _load_model(state, folder, name, num_heads=None, decoder_num_heads=None,
                audio_length=None, **overrides):
    """The whole model of ``state`` (built by the folder's yaml when nothing changes it)."""
    model = None
    if folder is not None:
        cfg = folder.config(num_heads, decoder_num_heads)
    else:
        cfg = architecture(state, num_heads, decoder_num_heads, source=name)
    if cfg["kind"] != "classifier":
        overrides.pop("mode", None)
    if folder is not None and audio_length is None and not overrides:
        model = folder.hparams["model"]  # as the folder's yaml builds it
    if model is None:
        if audio_length is not None:
            cfg["audio_length"] = audio_length
        cfg.update(overrides)
        check_heads(cfg, name)
        model = build_model(cfg)
    load_weights(model, state, name)
    return model.eval()


def _load_into(model, state, fmt, folder, name):
    """Initialise ``model`` in place (see :func:`load`'s ``into``)."""
    ours = model_config(model)
    sizes = ", ".join(f"{k}={v}" for k, v in ours.items() if k not in ("kind", "mode"))
    if folder is not None:
        logger.info("architecture from the model folder %s: %s", folder.path, sizes)
    else:
        logger.info("initialising the model (%s) from %s", sizes, name)
    if fmt == "imagenet_mae":
        loaded = init_from_imagenet_mae_state(model, state)
        logger.info("%s: initialised %d tensors from ImageNet MAE weights", name, len(loaded))
        return {"loaded": loaded, "ignored": [], "missing": []}
    if folder is not None:
        theirs = folder.config()
        for key in ("num_heads", "decoder_num_heads"):
            if key in theirs and key in ours and theirs[key] != ours[key]:
                raise CheckpointMismatchError(
                    f"{name}: the model folder has {key}={theirs[key]}, the model "
                    f"{ours[key]}: set --{key} {theirs[key]}")
    # A part may be initialised only when the checkpoint has none of it: a decoder or a
    # head with some tensors missing is a broken checkpoint, not a partial load.
    own = "head." if hasattr(model, "head") else "decoder."
    has_part = any(k.startswith(own) for k in state)
    allow = {"allow_missing": () if has_part else (own,),
             "allow_unexpected": ("decoder.",) if own == "head." else ("head.",)}
    if own == "head.":
        allow["allow_reshaped"] = ("head.",)  # a head for another number of classes
    return load_weights(model, state, name, **allow)


def _load_encoder(state, folder, name, half, names=None, num_heads=None, audio_length=None,
                  **encoder_kwargs):
    """The encoder (or one part of it) of ``state``, loaded strictly; ``encoder_kwargs``
    may only repeat the checkpoint's sizes, or set ``drop_path_rate`` /
    ``trainable_pos_embed``."""
    from speechbrain_cavmae.model.encoder import ENCODERS

    if folder is not None:
        cfg = folder.config(num_heads)
    else:
        cfg = encoder_architecture(state, num_heads, half=half, source=name)
    cfg = {k: v for k, v in cfg.items() if k in ENCODER_ARGS}
    fixed = set(encoder_kwargs) - {"drop_path_rate", "trainable_pos_embed"}
    clash = sorted(k for k in fixed if k in cfg and encoder_kwargs[k] != cfg[k])
    if clash:
        shown = (names or {})
        details = "; ".join(f"{shown.get(k, k)}: {encoder_kwargs[k]} given but the checkpoint "
                            f"has {cfg[k]}" for k in clash)
        fixes = ", ".join(f"{shown.get(k, k)}: {cfg[k]}" for k in clash)
        raise SizeMismatchError(
            f"{name}: {details}; with a checkpoint the sizes come from it: set {fixes} "
            "(or leave them out)"
        )
    cfg.update({k: v for k, v in encoder_kwargs.items() if k not in cfg})
    cfg.setdefault("trainable_pos_embed", True)
    if audio_length is not None:
        cfg["audio_length"] = audio_length
    check_heads(cfg, name, names)
    selected, unused = select_half(state, half)
    holder = torch.nn.Module()
    holder.encoder = ENCODERS[half](**cfg)
    load_weights(holder, selected, name)
    if unused:
        logger.info("%s: the %s encoder leaves out %d tensors: %s", name,
                    half or "whole", len(unused), _group(unused))
    return holder.encoder


def load_original_checkpoint(path_or_state_dict, audio_length=None, map_location="cpu",
                             **overrides):
    """The model of an original (or our) CAV-MAE checkpoint: ``load(...).model``.

    A pretraining model (:class:`CAVMAE`) when decoder weights are present, a
    :class:`CAVMAEClassifier` when ``mlp_head`` is; strict. ``audio_length`` rebuilds the
    model for that many fbank frames (positional embeddings interpolated in time);
    ``overrides``: ``num_heads`` / ``decoder_num_heads`` (widths other than 768 / 512
    without a model folder), or constructor arguments (``mode``...). See :func:`load`.

    Example
    -------
    >>> from speechbrain_cavmae.model.classifier import CAVMAEClassifier
    >>> model = CAVMAEClassifier(3, img_size=32, audio_length=32, embed_dim=64,
    ...                          modality_specific_depth=1, num_heads=1)
    >>> loaded = load_original_checkpoint(model.state_dict(), num_heads=1)
    >>> type(loaded).__name__, loaded.num_classes
    ('CAVMAEClassifier', 3)
    """
    return load(path_or_state_dict, audio_length=audio_length, map_location=map_location,
                **overrides).model
