"""Convert an original CAV-MAE checkpoint into a SpeechBrain model folder.

::

    python -m speechbrain_cavmae.convert ORIGINAL.pth OUT_DIR [--label_csv CSV]
        [--num_heads N] [--mode multimodal] [--score_activation auto]

writes

* ``OUT_DIR/model.ckpt``: the state dict under this package's names (``torch.save``);
* ``OUT_DIR/hyperparams.yaml``: a HyperPyYAML file that rebuilds the model
  (``!new:speechbrain_cavmae.CAVMAEClassifier`` for fine-tuned checkpoints,
  ``!new:speechbrain_cavmae.CAVMAE`` for pretrained ones) with the inferred architecture,
  the feature front end (Kaldi fbank, ``target_length``, ``fbank_mean``/``fbank_std``, frames
  per clip, image size), the inference settings (modes, score activation) and a
  ``pretrainer``, so that
  ``AudioVisualClassifier.from_hparams(source=OUT_DIR, savedir=...)`` loads it;
* ``OUT_DIR/label_encoder.txt`` (SpeechBrain ``CategoricalEncoder`` format; class names
  from ``--label_csv``'s ``display_name`` column, else ``class_<index>``) and, with
  ``--label_csv``, ``OUT_DIR/labels.csv`` (``index,mid,display_name``) for fine-tuned models.

A fine-tuning run that saves the same three files can be loaded the same way.

Authors
 * speechbrain-cavmae contributors 2026
"""

import argparse
import json
import logging
import os
import sys

import torch

from speechbrain_cavmae.checkpoint import (
    CheckpointMismatchError,
    check_heads,
    unwrap_state_dict,
    infer_config,
    is_original_state_dict,
    load_original_checkpoint,
    load_state_dict_strict,
    original_to_speechbrain,
)
from speechbrain_cavmae.classifier import MODES
from speechbrain_cavmae.features import DEFAULT_MEAN, DEFAULT_STD

logger = logging.getLogger(__name__)

MODEL_FILE = "model.ckpt"
HPARAMS_FILE = "hyperparams.yaml"
LABELS_FILE = "label_encoder.txt"
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
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def resolve_activation(score_activation, num_classes):
    """``"sigmoid"`` or ``"softmax"``; ``"auto"`` picks sigmoid for AudioSet's 527 classes
    (multi-label, trained with BCE) and softmax otherwise (e.g. VGGSound, trained with CE)."""
    if score_activation == "auto":
        return "sigmoid" if num_classes == AUDIOSET_CLASSES else "softmax"
    if score_activation not in ("sigmoid", "softmax"):
        raise ValueError(
            f"score_activation={score_activation!r}; expected auto, sigmoid or softmax"
        )
    return score_activation


def single_modality_modes(mode):
    """Modes for audio-only and video-only input of a model fine-tuned for ``mode``
    (``None``: that input cannot be classified).

    Example
    -------
    >>> single_modality_modes("multimodal"), single_modality_modes("audioonly")
    (('missingaudioonly', 'missingvideoonly'), ('audioonly', None))
    """
    if mode == "audioonly":
        return "audioonly", None
    if mode == "videoonly":
        return None, "videoonly"
    return "missingaudioonly", "missingvideoonly"


def label_names(num_classes, label_csv=None):
    """Class names for ``label_encoder.txt`` and the label table (or ``None``)."""
    if label_csv is None:
        return [f"class_{i}" for i in range(num_classes)], None
    from speechbrain_cavmae.data.manifest import LabelTable

    table = LabelTable.from_csv(label_csv)
    if table.num_classes != num_classes:
        raise ValueError(
            f"{label_csv}: {table.num_classes} labels but the checkpoint has {num_classes} "
            "classes"
        )
    names = table.names if len(set(table.names)) == len(table.names) else table.mids
    return list(names), table


def hparams_text(cfg, kind, pretrained_path, source=None, mode="multimodal",
                 score_activation="softmax", n_frames=10, sample_rate=16000,
                 fbank_mean=DEFAULT_MEAN, fbank_std=DEFAULT_STD, has_labels=True):
    """The ``hyperparams.yaml`` text for a converted model.

    Arguments
    ---------
    cfg : dict
        Architecture (output of ``infer_config`` with overrides applied).
    kind : str
        ``"classifier"`` or ``"pretrain"``.
    pretrained_path : str
        Folder of ``model.ckpt`` / ``label_encoder.txt``.
    source : str, optional
        Original checkpoint, recorded in a comment.
    mode, score_activation, n_frames, sample_rate, fbank_mean, fbank_std, has_labels
        Inference and front-end settings.

    Returns
    -------
    str
    """
    audio_only, video_only = single_modality_modes(mode)
    lines = [
        "# ############################################################################",
        "# CAV-MAE " + ("classifier" if kind == "classifier" else "pretrained model")
        + " converted by speechbrain_cavmae.convert",
    ]
    if source:
        lines.append(f"# from {os.path.basename(str(source))}")
    lines += [
        "# Load with:",
        "#   from speechbrain_cavmae.inference import AudioVisualClassifier",
        "#   model = AudioVisualClassifier.from_hparams(source=<this folder>, savedir=...)",
        "# ############################################################################",
        "",
        "# Folder with model.ckpt and label_encoder.txt. AudioVisualClassifier.from_hparams",
        "# replaces it with the local `source` folder it is given; set it to a hub id or URL",
        "# to host the files elsewhere.",
        f"pretrained_path: {_yaml_scalar(pretrained_path)}",
        "",
        "# Audio front end: Kaldi log-mel fbank, padded/cropped, (x - mean) / std",
        f"sample_rate: {sample_rate}",
        f"n_mels: {cfg['n_mels']}",
        f"target_length: {cfg['audio_length']}",
        f"fbank_mean: {_yaml_scalar(float(fbank_mean))}",
        f"fbank_std: {_yaml_scalar(float(fbank_std))}",
        "",
        "# Visual front end: frames spread over the first 10 s, resized, centre-cropped,",
        "# ImageNet-normalised",
        f"n_frames: {n_frames}",
        f"im_res: {cfg['img_size']}",
        "",
        "# Inference: `mode` for clips with audio and video, `audio_only_mode` for audio",
        "# files, `video_only_mode` for videos without sound; scores are",
        "# `score_activation` of the logits, averaged over the frames",
        f"mode: {mode}",
        f"audio_only_mode: {audio_only or 'null'}",
        f"video_only_mode: {video_only or 'null'}",
        f"score_activation: {score_activation}",
        "",
        "compute_features: !new:speechbrain_cavmae.features.KaldiFbank",
        "    sample_rate: !ref <sample_rate>",
        "    n_mels: !ref <n_mels>",
        "    target_length: !ref <target_length>",
        "    mean: !ref <fbank_mean>",
        "    std: !ref <fbank_std>",
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
        "    img_size: !ref <im_res>",
        "    audio_length: !ref <target_length>",
    ]
    for key in ARCH_KEYS:
        value = cfg[key]
        lines.append(f"    {key}: " + ("!ref <n_mels>" if key == "n_mels" else _yaml_scalar(value)))
    if kind == "pretrain":
        lines += [f"    {key}: {_yaml_scalar(cfg[key])}" for key in DECODER_KEYS]
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
    return "\n".join(lines) + "\n"


def convert(checkpoint, out_dir, label_csv=None, num_heads=None, mode="multimodal",
            score_activation="auto", target_length=None, decoder_num_heads=None,
            n_frames=10, fbank_mean=DEFAULT_MEAN, fbank_std=DEFAULT_STD, check=True):
    """Convert ``checkpoint`` into a model folder ``out_dir``.

    Arguments
    ---------
    checkpoint : str
        Original CAV-MAE ``.pth`` (fine-tuned or pretrained), or one of ours.
    out_dir : str
        Output folder (created).
    label_csv : str, optional
        ``index,mid,display_name`` CSV of the classes (e.g. ``class_labels_indices_as.csv``).
    num_heads, decoder_num_heads : int, optional
        Attention heads (not stored in checkpoints; see ``infer_config`` for the defaults).
    mode : str
        Default inference mode, one of ``MODES`` (the mode the model was fine-tuned for).
    score_activation : str
        ``"auto"``, ``"sigmoid"`` or ``"softmax"``.
    target_length : int, optional
        Fbank frames; default the checkpoint's (positional embedding interpolated otherwise).
    n_frames : int
        Frames per video clip at inference.
    fbank_mean, fbank_std : float
        Fbank normalisation statistics of the fine-tuning data.
    check : bool
        Rebuild the model from the written ``hyperparams.yaml`` and load ``model.ckpt``
        strictly, to catch any inconsistency at conversion time.

    Returns
    -------
    dict
        Summary: ``kind``, ``num_classes``, ``num_params``, ``files``, ``config``.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; expected one of {MODES}")
    source = os.fspath(checkpoint)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"{source}: checkpoint not found")
    state = unwrap_state_dict(torch.load(source, map_location="cpu", weights_only=True))
    if is_original_state_dict(state):
        state = original_to_speechbrain(state)
    if "encoder.patch_embed_a.proj.weight" not in state:
        raise CheckpointMismatchError(
            f"{source}: not a CAV-MAE checkpoint (no audio patch embedding among "
            f"{len(state)} tensors, e.g. {list(state)[:3]})"
        )
    cfg = infer_config(state)
    kind = cfg["kind"]
    if kind not in ("classifier", "pretrain"):
        raise ValueError(f"{source}: has neither a classification head nor a decoder; "
                         "only fine-tuned or pretrained CAV-MAE checkpoints can be converted")
    overrides = {}
    if num_heads is not None:
        overrides["num_heads"] = num_heads
    if kind == "classifier":
        overrides["mode"] = mode
    elif decoder_num_heads is not None:
        overrides["decoder_num_heads"] = decoder_num_heads
    check_heads({**cfg, **overrides}, source)
    model = load_original_checkpoint(state, audio_length=target_length, **overrides)
    cfg.update({k: v for k, v in overrides.items() if k != "mode"})
    if target_length is not None:
        cfg["audio_length"] = target_length
    num_classes = cfg.get("num_classes")

    os.makedirs(out_dir, exist_ok=True)
    out_abs = os.path.abspath(out_dir)
    files = {}
    files["model"] = os.path.join(out_abs, MODEL_FILE)
    torch.save(model.state_dict(), files["model"])

    activation = None
    if kind == "classifier":
        from speechbrain.dataio.encoder import CategoricalEncoder

        activation = resolve_activation(score_activation, num_classes)
        names, table = label_names(num_classes, label_csv)
        encoder = CategoricalEncoder()
        encoder.update_from_iterable(names)
        files["label_encoder"] = os.path.join(out_abs, LABELS_FILE)
        encoder.save(files["label_encoder"])
        if table is not None:
            files["labels_csv"] = os.path.join(out_abs, LABEL_CSV_FILE)
            table.to_csv(files["labels_csv"])
        else:
            logger.warning("no --label_csv: classes are named class_0 .. class_%d",
                           num_classes - 1)
        logger.info("scores: %s of the logits", activation)
    elif label_csv is not None:
        logger.warning("%s is a pretrained model without classes; ignoring %s", source, label_csv)

    text = hparams_text(
        cfg, kind, out_abs, source=source, mode=mode,
        score_activation=activation or "softmax", n_frames=n_frames,
        fbank_mean=fbank_mean, fbank_std=fbank_std, has_labels=kind == "classifier",
    )
    files["hparams"] = os.path.join(out_abs, HPARAMS_FILE)
    with open(files["hparams"], "w", encoding="utf8") as handle:
        handle.write(text)
    if check:
        check_folder(out_abs)
    num_params = sum(p.numel() for p in model.parameters())
    logger.info("wrote %s", ", ".join(sorted(files.values())))
    return {"kind": kind, "num_classes": num_classes, "num_params": num_params,
            "files": files, "config": cfg, "score_activation": activation}


def check_folder(folder):
    """Rebuild the model of ``folder/hyperparams.yaml`` and load ``model.ckpt`` strictly.

    Raises
    ------
    CheckpointMismatchError
        When the weights do not fit the architecture written in the yaml.
    """
    from hyperpyyaml import load_hyperpyyaml

    with open(os.path.join(folder, HPARAMS_FILE), encoding="utf8") as handle:
        hparams = load_hyperpyyaml(handle, {"pretrained_path": folder})
    state = torch.load(os.path.join(folder, MODEL_FILE), map_location="cpu", weights_only=True)
    load_state_dict_strict(hparams["model"], state, os.path.join(folder, MODEL_FILE))
    return hparams


def build_parser():
    """Command-line parser of the converter."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_cavmae.convert",
        description="Convert an original CAV-MAE checkpoint into a SpeechBrain model folder "
        "(model.ckpt, hyperparams.yaml, label_encoder.txt) loadable with "
        "AudioVisualClassifier.from_hparams(source=OUT_DIR).",
    )
    parser.add_argument("checkpoint", help="original CAV-MAE .pth (fine-tuned or pretrained)")
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--label_csv", help="index,mid,display_name CSV of the classes")
    parser.add_argument("--num_heads", type=int,
                        help="encoder attention heads (default: 12 when they divide the size)")
    parser.add_argument("--decoder_num_heads", type=int, help="decoder heads (pretrained models)")
    parser.add_argument("--mode", default="multimodal", choices=MODES,
                        help="inference mode the model was fine-tuned for")
    parser.add_argument("--score_activation", default="auto",
                        choices=("auto", "sigmoid", "softmax"),
                        help="auto: sigmoid for 527 classes (AudioSet), softmax otherwise")
    parser.add_argument("--target_length", type=int, help="fbank frames (default: checkpoint's)")
    parser.add_argument("--n_frames", type=int, default=10, help="video frames per clip")
    parser.add_argument("--fbank_mean", type=float, default=DEFAULT_MEAN)
    parser.add_argument("--fbank_std", type=float, default=DEFAULT_STD)
    parser.add_argument("--log_level", default="INFO")
    return parser


def main(argv=None):
    """Entry point of ``python -m speechbrain_cavmae.convert``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    summary = convert(
        args.checkpoint, args.out_dir, label_csv=args.label_csv, num_heads=args.num_heads,
        mode=args.mode, score_activation=args.score_activation,
        target_length=args.target_length, decoder_num_heads=args.decoder_num_heads,
        n_frames=args.n_frames, fbank_mean=args.fbank_mean, fbank_std=args.fbank_std,
    )
    cfg = summary["config"]
    what = (f"{summary['num_classes']}-class classifier" if summary["kind"] == "classifier"
            else "pretrained model")
    print(
        f"converted {args.checkpoint} -> {os.path.abspath(args.out_dir)}: {what}, "
        f"{summary['num_params'] / 1e6:.1f}M parameters, embed_dim {cfg['embed_dim']}, "
        f"{cfg['modality_specific_depth']}+{cfg['shared_depth']} blocks, "
        f"{cfg['num_heads']} heads, audio_length {cfg['audio_length']}, "
        f"img_size {cfg['img_size']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
