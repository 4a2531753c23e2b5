"""The model folder: the one artifact that describes a CAV-MAE model completely.

A model folder holds

* ``model.ckpt``: the state dict under this package's names;
* ``hyperparams.yaml``: a HyperPyYAML file in SpeechBrain's ``from_hparams`` layout that
  rebuilds the model (``!new:speechbrain_cavmae.CAVMAEClassifier`` or
  ``!new:speechbrain_cavmae.CAVMAE`` with every size, both head counts included, and the
  classifier's mode), the input pipeline (sample rate, fbank frames, mel bins, fbank
  mean/std, audio channel, frames per clip, image size and resize filter), the training
  loss and so the score activation, and a ``pretrainer`` whose model hook loads strictly
  (:func:`speechbrain_cavmae.checkpoints.loader.strict_load_hook`);
* ``label_encoder.txt`` (classifiers; SpeechBrain ``CategoricalEncoder`` format) and, when
  the label table is known, ``labels.csv`` (``index,mid,display_name``).

No absolute path is written: the yaml's ``pretrained_path`` is ``.`` and
``AudioVisualClassifier.from_hparams`` (and :func:`speechbrain_cavmae.checkpoints.load`)
set it to the folder they are given, so a folder can be moved or zipped as it is.

Writers: the recipes (``<output_folder>/model/``), ``cavmae convert``;
readers: everything that takes a model (see :mod:`speechbrain_cavmae.checkpoints.loader`).

Authors
 * speechbrain-cavmae contributors 2026
"""

import json
import logging
import os

import torch

from speechbrain_cavmae.data.fbank import DEFAULT_MEAN, DEFAULT_STD
from speechbrain_cavmae.data.files import atomic_path, atomic_torch_save, atomic_write_text
from speechbrain_cavmae.model.cavmae import SYNC_DEFAULTS
from speechbrain_cavmae.model.modes import missing_modality_modes
from speechbrain_cavmae.model.tasks import ACTIVATIONS, get_task, task_for_loss
from speechbrain_cavmae.checkpoints.loader import (
    HPARAMS_FILE,
    LABELS_FILE,
    MODEL_FILE,
    model_config,
)
from speechbrain_cavmae.checkpoints.door import load

logger = logging.getLogger(__name__)

LABEL_CSV_FILE = "labels.csv"

#: Classes of AudioSet, the multi-label set among the original's fine-tuning data.
AUDIOSET_CLASSES = 527

ARCH_KEYS = (
    "n_mels", "patch_size", "in_chans", "embed_dim", "modality_specific_depth",
    "shared_depth", "num_heads", "mlp_ratio", "qkv_bias",
)
DECODER_KEYS = ("decoder_embed_dim", "decoder_depth", "decoder_num_heads")


def _yaml_scalar(value):
    """A YAML literal for a Python scalar (JSON is valid YAML)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def resolve_activation(score_activation, num_classes, loss=None):
    """``"sigmoid"`` or ``"softmax"``. ``"auto"`` is the activation of the task trained
    with ``loss`` when known (the task table, :mod:`speechbrain_cavmae.model.tasks`), else
    of the multi-label task for AudioSet's 527 classes and of the single-label task
    otherwise (e.g. VGGSound)."""
    if score_activation == "auto":
        if loss is not None:
            return task_for_loss(loss).activation
        multilabel = num_classes == AUDIOSET_CLASSES
        return get_task("multilabel" if multilabel else "singlelabel").activation
    if score_activation not in ACTIVATIONS:
        raise ValueError(
            f"score_activation={score_activation!r}; expected auto, sigmoid or softmax"
        )
    return score_activation


def label_names(num_classes, label_csv=None):
    """Class names for ``label_encoder.txt`` and the label table (or ``None``)."""
    if label_csv is None:
        return [f"class_{i}" for i in range(num_classes)], None
    from speechbrain_cavmae.data.manifest import LabelTable

    table = label_csv if isinstance(label_csv, LabelTable) else LabelTable.from_csv(label_csv)
    if table.num_classes != num_classes:
        raise ValueError(
            f"{label_csv}: {table.num_classes} labels but the checkpoint has {num_classes} "
            "classes"
        )
    names = table.names if len(set(table.names)) == len(table.names) else table.mids
    return list(names), table


def hparams_text(cfg, kind, pretrained_path=".", source=None, mode="multimodal",
                 score_activation="softmax", n_frames=10, sample_rate=16000,
                 dataset_mean=DEFAULT_MEAN, dataset_std=DEFAULT_STD, has_labels=True,
                 audio_channel=0, image_interpolation="bilinear", loss=None,
                 norm_pix_loss=None, frame_segments=False, clip_length=1024,
                 frame_span_s=10.0):
    """The ``hyperparams.yaml`` text of a model folder.

    Arguments
    ---------
    cfg : dict
        Architecture (:func:`speechbrain_cavmae.checkpoints.loader.model_config`).
    kind : str
        ``"classifier"`` or ``"pretrain"``.
    pretrained_path : str
        Where ``model.ckpt`` / ``label_encoder.txt`` are; ``"."`` (the default) is
        replaced by the folder when it is loaded.
    source : str, optional
        Checkpoint the folder was made from, recorded in a comment.
    mode, score_activation, n_frames, sample_rate, dataset_mean, dataset_std, has_labels,
    audio_channel, image_interpolation, loss
        Inference, input-pipeline and training settings.
    norm_pix_loss : bool, optional
        Pretraining models: whether the reconstruction targets were normalised per patch
        (``None``: not known, e.g. converted from an original ``.pth``).
    frame_segments, clip_length, frame_span_s
        CAV-MAE Sync pairing (each frame with the ``audio_length`` segment around it in a
        clip of ``clip_length`` fbank frames; ``docs/sync.md``); written only when
        ``frame_segments`` is on.

    Returns
    -------
    str
    """
    audio_only, video_only = missing_modality_modes(mode)
    lines = [
        "# ############################################################################",
        "# CAV-MAE " + ("classifier" if kind == "classifier" else "pretrained model")
        + " (speechbrain-cavmae model folder)",
    ]
    if source:
        lines.append(f"# from {os.path.basename(str(source))}")
    lines += [
        "# Load with:",
        "#   from speechbrain_cavmae.inference import AudioVisualClassifier",
        "#   model = AudioVisualClassifier.from_hparams(source=<this folder>, savedir=...)",
        "# or give the folder to any cavmae command (--model), a recipe (--pretrained_path) or",
        "# the drop-in encoders (ckpt_path).",
        "# ############################################################################",
        "",
        "# Folder of model.ckpt and label_encoder.txt: `.` is replaced by the folder (the",
        "# `source` of from_hparams) when it is loaded, so the folder can be moved freely.",
        f"pretrained_path: {_yaml_scalar(pretrained_path)}",
        "",
        "# Audio input: channel `audio_channel` (null: the channel mean), resampled to",
        "# sample_rate, Kaldi log-mel fbank, padded/cropped to audio_length frames,",
        "# (x - dataset_mean) / dataset_std",
        f"sample_rate: {sample_rate}",
        f"audio_channel: {_yaml_scalar(audio_channel)}",
        f"n_mels: {cfg['n_mels']}",
        f"audio_length: {cfg['audio_length']}",
        f"dataset_mean: {_yaml_scalar(float(dataset_mean))}",
        f"dataset_std: {_yaml_scalar(float(dataset_std))}",
        "",
        "# Visual input: n_frames frames spread over the first 10 s, resized",
        "# (image_interpolation), centre-cropped to image_size, ImageNet-normalised",
        f"n_frames: {n_frames}",
        f"image_size: {cfg['img_size']}",
        f"image_interpolation: {image_interpolation}",
        "",
    ]
    if frame_segments:
        lines += [
            "# CAV-MAE Sync pairing: frame k is paired with the audio_length fbank frames",
            "# centred on its time, in a clip of clip_length fbank frames whose frames span",
            "# frame_span_s seconds",
            "frame_segments: True",
            f"clip_length: {int(clip_length)}",
            f"frame_span_s: {_yaml_scalar(float(frame_span_s))}",
            "",
        ]
    if kind == "classifier":
        lines += [
            "# Training loss (BCE: multi-label, CE: single-label"
            + ("; null: not recorded, e.g. converted without --loss)" if loss is None else ")"),
            f"loss: {_yaml_scalar(loss)}",
        ]
    else:
        lines += [
            "# Pretraining: no classification loss; norm_pix_loss: the reconstruction targets",
            "# were normalised per patch (`cavmae inpaint` reads it"
            + ("; null: not recorded, e.g." if norm_pix_loss is None else ")"),
        ]
        if norm_pix_loss is None:
            lines.append("# converted from an original .pth: pass --norm_pix or --no_norm_pix)")
        lines += ["loss: null", f"norm_pix_loss: {_yaml_scalar(norm_pix_loss)}"]
    lines += [
        "",
        "# Inference: `mode` for clips with audio and video, `audio_only_mode` for audio",
        "# files, `video_only_mode` for videos without sound; scores are",
        "# `score_activation` of the logits, averaged over the frames",
        f"mode: {mode}",
        f"audio_only_mode: {audio_only or 'null'}",
        f"video_only_mode: {video_only or 'null'}",
        f"score_activation: {score_activation}",
        "",
        "compute_features: !new:speechbrain_cavmae.data.fbank.KaldiFbank",
        "    sample_rate: !ref <sample_rate>",
        "    n_mels: !ref <n_mels>",
        "    audio_length: !ref <audio_length>",
        "    dataset_mean: !ref <dataset_mean>",
        "    dataset_std: !ref <dataset_std>",
        "",
    ]
    if kind == "classifier":
        lines += [
            "model: !new:speechbrain_cavmae.CAVMAEClassifier",
            f"    num_classes: {cfg['num_classes']}",
            "    mode: !ref <mode>",
        ]
    else:
        lines.append("model: !new:speechbrain_cavmae.CAVMAE")
    lines += [
        "    img_size: !ref <image_size>",
        "    audio_length: !ref <audio_length>",
    ]
    for key in ARCH_KEYS:
        value = cfg[key]
        lines.append(f"    {key}: " + ("!ref <n_mels>" if key == "n_mels" else _yaml_scalar(value)))
    if "trainable_pos_embed" in cfg:
        lines.append(f"    trainable_pos_embed: {_yaml_scalar(cfg['trainable_pos_embed'])}")
    if kind == "classifier":  # a Sync encoder's options (docs/sync.md)
        lines += [f"    {key}: {_yaml_scalar(cfg[key])}" for key in SYNC_DEFAULTS
                  if key in cfg and key != "num_frames"]
    if kind == "pretrain":
        lines += [f"    {key}: {_yaml_scalar(cfg[key])}" for key in DECODER_KEYS]
        # CAV-MAE Sync options (docs/sync.md); its frames per clip are the input's n_frames
        lines += [f"    {key}: " + ("!ref <n_frames>" if key == "num_frames"
                                    else _yaml_scalar(cfg[key]))
                  for key in SYNC_DEFAULTS if key in cfg]
    lines += [
        "",
        "label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder",
        "",
        "modules:",
        "    compute_features: !ref <compute_features>",
        "    model: !ref <model>",
        "",
        "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer",
        "    loadables:",
        "        model: !ref <model>",
    ]
    if has_labels:
        lines.append("        label_encoder: !ref <label_encoder>")
    lines += [
        "    paths:",
        f"        model: !ref <pretrained_path>/{MODEL_FILE}",
    ]
    if has_labels:
        lines.append(f"        label_encoder: !ref <pretrained_path>/{LABELS_FILE}")
    lines += [
        "    custom_hooks:  # strict: missing or unexpected weights are errors",
        "        model: !name:speechbrain_cavmae.checkpoints.loader.strict_load_hook",
    ]
    return "\n".join(lines) + "\n"


def write_model_folder(model, out_dir, label_csv=None, loss=None, score_activation="auto",
                       input_config=None, source=None, check=True, norm_pix_loss=None):
    """Write ``model`` as a model folder ``out_dir`` (see the module docstring).

    Arguments
    ---------
    model : CAVMAE or CAVMAEClassifier
        The model (its sizes, heads and classifier mode are read from it).
    out_dir : str
        Output folder (created).
    label_csv : str or LabelTable, optional
        Classes (``index,mid,display_name``); without it they are named ``class_<i>``.
    loss : str, optional
        Training loss of a classifier (one of :data:`~speechbrain_cavmae.model.tasks.LOSSES`).
    score_activation : str
        ``"auto"`` (from ``loss``, else from the number of classes), ``"sigmoid"`` or
        ``"softmax"``.
    input_config : dict, optional
        Data configuration (keys of ``speechbrain_cavmae.data.dataset.DEFAULT_CONFIG``:
        ``sample_rate``, ``mean``, ``std``, ``audio_channel``, ``n_frames``,
        ``image_interpolation``); the audio length, mel bins and image size are the
        model's.
    source : str, optional
        What the model came from (recorded in a comment).
    check : bool
        Load the written folder back (strictly) and compare its weights.
    norm_pix_loss : bool, optional
        Pretraining models: trained with the norm-pix loss (``None``: not known; written
        as ``null``, and ``cavmae inpaint`` then asks for the flag).

    Returns
    -------
    dict
        ``kind``, ``num_classes``, ``config`` (architecture), ``score_activation`` and
        ``files`` (absolute paths).
    """
    from speechbrain_cavmae.data.dataset import resolve_config

    cfg = model_config(model)
    # the model's geometry (a Sync segment is checked against clip_length)
    inp = resolve_config(dict(input_config or {}, audio_length=cfg["audio_length"]), train=False)
    kind = cfg["kind"]
    for key, name in (("n_mels", "n_mels"), ("audio_length", "audio_length"),
                      ("image_size", "img_size")):
        if input_config and key in input_config and input_config[key] != cfg[name]:
            raise ValueError(f"input_config {key}={input_config[key]} but the model has "
                             f"{name}={cfg[name]}")
    if "num_frames" in cfg and inp["n_frames"] != cfg["num_frames"]:
        raise ValueError(f"input_config n_frames={inp['n_frames']} but the (Sync) model has "
                         f"num_frames={cfg['num_frames']}: they are one setting")
    os.makedirs(out_dir, exist_ok=True)
    out_abs = os.path.abspath(out_dir)
    files = {"model": os.path.join(out_abs, MODEL_FILE)}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save(state, files["model"])
    activation = None
    num_classes = cfg.get("num_classes")
    if kind == "classifier":
        from speechbrain.dataio.encoder import CategoricalEncoder

        activation = resolve_activation(score_activation, num_classes, loss)
        names, table = label_names(num_classes, label_csv)
        encoder = CategoricalEncoder()
        encoder.update_from_iterable(names)
        files["label_encoder"] = os.path.join(out_abs, LABELS_FILE)
        with atomic_path(files["label_encoder"]) as tmp:
            encoder.save(tmp)
        if table is not None:
            files["labels_csv"] = os.path.join(out_abs, LABEL_CSV_FILE)
            table.to_csv(files["labels_csv"])
        else:
            logger.warning("no label table: classes are named class_0 .. class_%d",
                           num_classes - 1)
    elif label_csv is not None:
        logger.warning("a pretraining model has no classes; ignoring %s", label_csv)
    text = hparams_text(
        cfg, kind, ".", source=source, mode=cfg.get("mode", "multimodal"),
        score_activation=activation or "softmax", n_frames=inp["n_frames"],
        sample_rate=inp["sample_rate"], dataset_mean=inp["dataset_mean"], dataset_std=inp["dataset_std"],
        has_labels=kind == "classifier", audio_channel=inp["audio_channel"],
        image_interpolation=inp["image_interpolation"],
        loss=loss if kind == "classifier" else None,
        norm_pix_loss=None if norm_pix_loss is None else bool(norm_pix_loss),
        frame_segments=bool(inp["frame_segments"]), clip_length=inp["clip_length"],
        frame_span_s=inp["frame_span_s"],
    )
    files["hparams"] = os.path.join(out_abs, HPARAMS_FILE)
    atomic_write_text(files["hparams"], text)
    if check:
        again = load(out_abs).model.state_dict()
        differ = [k for k in state if not torch.equal(again[k], state[k])]
        if differ:
            raise RuntimeError(f"{out_abs}: reloaded weights differ: {differ[:8]}")
    logger.info("wrote the model folder %s (%s)", out_abs, ", ".join(sorted(files)))
    return {"kind": kind, "num_classes": num_classes, "config": cfg,
            "score_activation": activation, "files": files}
