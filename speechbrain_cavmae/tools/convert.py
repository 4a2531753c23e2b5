"""Convert an original CAV-MAE checkpoint into a SpeechBrain model folder.

::

    cavmae convert --model ORIGINAL.pth --output OUT_DIR [--label_csv CSV]
        [--num_heads N] [--mode multimodal] [--score_activation auto]

writes

* ``OUT_DIR/model.ckpt``: the state dict under this package's names (``torch.save``);
* ``OUT_DIR/hyperparams.yaml``: a HyperPyYAML file that rebuilds the model
  (``!new:speechbrain_cavmae.CAVMAEClassifier`` for fine-tuned checkpoints,
  ``!new:speechbrain_cavmae.CAVMAE`` for pretrained ones) with the architecture read from
  the weights and the head counts (``--num_heads`` / ``--decoder_num_heads``, required
  unless the widths are the released 768 / 512), the input pipeline (Kaldi fbank,
  ``audio_length``, ``dataset_mean``/``dataset_std``, audio channel, frames per clip, image
  size), the inference settings (modes, score activation) and a strict ``pretrainer``, so
  that ``AudioVisualClassifier.from_hparams(source=OUT_DIR, savedir=...)`` loads it;
* ``OUT_DIR/label_encoder.txt`` (SpeechBrain ``CategoricalEncoder`` format; class names
  from ``--label_csv``'s ``display_name`` column, else ``class_<index>``) and, with
  ``--label_csv``, ``OUT_DIR/labels.csv`` (``index,mid,display_name``) for fine-tuned models.

The folder is written by :func:`speechbrain_cavmae.checkpoints.model_folder.write_model_folder`, as
the recipes write ``<output_folder>/model/``.

Authors
 * speechbrain-cavmae contributors 2026
"""

import logging
import os

from speechbrain_cavmae.model.modes import MODES, check_mode
from speechbrain_cavmae.tools import common

#: AudioSet's fbank statistics (``speechbrain_cavmae.data.fbank.DEFAULT_MEAN`` / ``_STD``,
#: repeated here so that ``--help`` need not import torch; a test keeps them equal).
DEFAULT_MEAN, DEFAULT_STD = -5.081, 4.4849

logger = logging.getLogger(__name__)


def convert(checkpoint, out_dir, label_csv=None, num_heads=None, mode="multimodal",
            score_activation="auto", audio_length=None, decoder_num_heads=None,
            n_frames=10, dataset_mean=None, dataset_std=None, check=True,
            loss=None, audio_channel=0, trust_remote_code=False):
    """Convert ``checkpoint`` into a model folder ``out_dir``.

    The weights are read by :func:`speechbrain_cavmae.checkpoints.loader.load_model` (strict) and
    written by :func:`speechbrain_cavmae.checkpoints.model_folder.write_model_folder`, as the recipes
    write theirs.

    Arguments
    ---------
    checkpoint : str
        Original CAV-MAE ``.pth`` (fine-tuned or pretrained), one of ours, or a model
        folder.
    out_dir : str
        Output folder (created).
    label_csv : str, optional
        ``index,mid,display_name`` CSV of the classes (e.g. ``class_labels_indices_as.csv``).
    num_heads, decoder_num_heads : int, optional
        Attention heads (not stored in checkpoints): required unless the widths are the
        released 768 (12 heads) / 512 (16 decoder heads).
    mode : str
        Default inference mode, one of ``MODES`` (the mode the model was fine-tuned for).
    score_activation : str
        ``"auto"``, ``"sigmoid"`` or ``"softmax"``.
    audio_length : int, optional
        Fbank frames; default the checkpoint's (positional embedding interpolated otherwise).
    n_frames : int
        Frames per video clip at inference.
    dataset_mean, dataset_std : float, optional
        Fbank normalisation statistics of the fine-tuning data (default: those a model
        folder ``checkpoint`` records, else AudioSet's).
    check : bool
        Load the written folder back strictly.
    loss : str, optional
        ``"BCE"`` or ``"CE"``, the fine-tuning loss (decides ``auto`` activation).
    audio_channel : int or None
        Channel of multichannel audio the model is fed (0, as the original).
    trust_remote_code : bool
        Read a model folder whose yaml names code outside the allow-list of
        :mod:`speechbrain_cavmae.checkpoints.trust`.

    Returns
    -------
    dict
        Summary: ``kind``, ``num_classes``, ``num_params``, ``files``, ``config``.
    """
    from speechbrain_cavmae.checkpoints import loader
    from speechbrain_cavmae.checkpoints.model_folder import read_input_config, write_model_folder

    check_mode(mode)
    source = os.fspath(checkpoint)
    if not os.path.exists(source):
        raise FileNotFoundError(f"{source}: checkpoint not found")
    state, fmt, folder = loader.read_source(source)
    if fmt == "imagenet_mae" or "encoder.patch_embed_a.proj.weight" not in state:
        raise loader.CheckpointMismatchError(
            f"{source}: not a CAV-MAE checkpoint (no audio patch embedding among "
            f"{len(state)} tensors, e.g. {list(state)[:3]})"
        )
    if "head.fc.weight" not in state and "decoder.embed.weight" not in state:
        raise ValueError(f"{source}: has neither a classification head nor a decoder; "
                         "only fine-tuned or pretrained CAV-MAE checkpoints can be converted")
    recorded = read_input_config(folder) if folder else {}
    if dataset_mean is None:
        dataset_mean = recorded.get("dataset_mean", DEFAULT_MEAN)
    if dataset_std is None:
        dataset_std = recorded.get("dataset_std", DEFAULT_STD)
    overrides = {"mode": mode} if "head.fc.weight" in state else {}
    model = loader.load_model(source, num_heads=num_heads,
                               decoder_num_heads=decoder_num_heads,
                               audio_length=audio_length,
                               trust_remote_code=trust_remote_code, **overrides)
    summary = write_model_folder(
        model, out_dir, label_csv=label_csv, loss=loss, score_activation=score_activation,
        input_config={"n_frames": n_frames, "dataset_mean": dataset_mean, "dataset_std": dataset_std,
                      "audio_channel": audio_channel},
        source=source, check=check,
    )
    summary["num_params"] = sum(p.numel() for p in model.parameters())
    if summary["score_activation"]:
        logger.info("scores: %s of the logits", summary["score_activation"])
    return summary


def check_folder(folder):
    """Rebuild the model of ``folder/hyperparams.yaml`` and load ``model.ckpt`` strictly.

    Returns
    -------
    dict
        The folder's hyperparameters, ``model`` holding the loaded weights.

    Raises
    ------
    CheckpointMismatchError
        When the weights do not fit the architecture written in the yaml.
    """
    from speechbrain_cavmae.checkpoints import loader
    from speechbrain_cavmae.checkpoints.model_folder import MODEL_FILE

    hparams = loader.read_folder_hparams(os.path.abspath(folder))
    path = os.path.join(folder, MODEL_FILE)
    loader.load_weights(hparams["model"], loader.read_state_file(path), path)
    return hparams


def add_arguments(parser):
    """The flags of ``cavmae convert``."""
    common.add_model(parser)
    common.add_output(parser, help="the model folder to write")
    common.add_label_csv(parser)
    common.add_heads(parser)
    parser.add_argument("--mode", default="multimodal", choices=MODES,
                        help="inference mode the model was fine-tuned for")
    parser.add_argument("--score_activation", default="auto",
                        choices=("auto", "sigmoid", "softmax"),
                        help="auto: from --loss, else sigmoid for 527 classes (AudioSet) and "
                        "softmax otherwise")
    parser.add_argument("--loss", choices=("BCE", "CE"), default=None,
                        help="fine-tuning loss: decides the auto score activation")
    parser.add_argument("--audio_length", type=int, default=None,
                        help="fbank frames (default: the checkpoint's)")
    common.add_n_frames(parser)
    common.add_fbank_stats(parser)
    common.add_trust(parser)


def run(args):
    """Convert ``--model`` into the model folder ``--output``."""
    source, output = args.model, args.output
    summary = convert(
        source, output, label_csv=args.label_csv, num_heads=args.num_heads,
        mode=args.mode, score_activation=args.score_activation,
        audio_length=args.audio_length, decoder_num_heads=args.decoder_num_heads,
        n_frames=args.n_frames, dataset_mean=args.dataset_mean, dataset_std=args.dataset_std,
        loss=args.loss, trust_remote_code=args.trust_remote_code,
    )
    cfg = summary["config"]
    what = (f"{summary['num_classes']}-class classifier" if summary["kind"] == "classifier"
            else "pretrained model")
    print(
        f"converted {source} -> {os.path.abspath(output)}: {what}, "
        f"{summary['num_params'] / 1e6:.1f}M parameters, embed_dim {cfg['embed_dim']}, "
        f"{cfg['modality_specific_depth']}+{cfg['shared_depth']} blocks, "
        f"{cfg['num_heads']} heads"
        + (f", decoder {cfg['decoder_embed_dim']}-d with {cfg['decoder_num_heads']} heads"
           if "decoder_num_heads" in cfg else "")
        + f", audio_length {cfg['audio_length']}, "
        f"img_size {cfg['img_size']}"
    )
    return 0
