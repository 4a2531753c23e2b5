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

Settings that are not given are those the source records: a model folder's, or for a
recipe run's ``finetuned.pth`` / ``pretrained.pth`` / ``save/CKPT+...`` the run's model
folder's (``<output_folder>/model/``: fbank statistics, frames, heads, loss, labels,
``norm_pix_loss``); an original ``.pth`` gets the original release's (AudioSet's fbank
statistics, 10 frames); weights of ours without a folder need ``--dataset_mean`` /
``--dataset_std``. A pretraining checkpoint's ``--norm_pix`` / ``--no_norm_pix`` is
recorded for ``cavmae inpaint`` (unknown, ``null``, without them).

The folder is written by :func:`speechbrain_cavmae.checkpoints.model_folder.write_model_folder`, as
the recipes write ``<output_folder>/model/``.

Authors
 * speechbrain-cavmae contributors 2026
"""

import logging
import os

from speechbrain_cavmae.model.modes import MODES, check_mode
from speechbrain_cavmae.model.tasks import ACTIVATIONS, LOSSES
from speechbrain_cavmae.tools import common

#: AudioSet's fbank statistics (``speechbrain_cavmae.data.fbank.DEFAULT_MEAN`` / ``_STD``,
#: repeated here so that ``--help`` need not import torch; a test keeps them equal).
DEFAULT_MEAN, DEFAULT_STD = -5.081, 4.4849
#: The clip a Sync checkpoint's segments are cut from, as the Sync authors' data loader
#: builds it: a 1024-frame fbank, its frames spread over 10 s.
SYNC_CLIP_LENGTH, SYNC_FRAME_SPAN_S = 1024, 10.0

logger = logging.getLogger(__name__)


#: The flags naming what a CAV-MAE Sync checkpoint's weights do not tell.
SYNC_FLAGS = {
    "n_frames": "--n_frames N (frames per clip, each with its audio segment; 16 for "
                "their release)",
    "registers_in_shared": "--registers_in_shared or --no_registers_in_shared (their "
                           "keep_register_tokens; their retrieval.py builds the released "
                           "model with it off)",
    "global_local_loss": "--global_local_loss or --no_global_local_loss (their "
                         "global_local_losses: contrastive loss on global and local tokens, "
                         "or on global tokens only)",
}

#: Run outputs beside which a recipe writes its model folder (``<output_folder>/model/``).
RUN_EXPORTS = ("pretrained.pth", "finetuned.pth")


def recorded_settings(source):
    """The settings recorded for ``source``: its model folder's, or for a recipe run's
    ``pretrained.pth`` / ``finetuned.pth`` / ``save/CKPT+...`` the run's model folder's
    (:func:`speechbrain_cavmae.checkpoints.read_settings`); ``(None, {})``
    when none is found."""
    from speechbrain_cavmae.checkpoints import read_settings

    path = os.path.abspath(os.fspath(source))
    candidates = [path]
    if os.path.basename(path) in RUN_EXPORTS:
        candidates.append(os.path.dirname(path))
    elif os.path.basename(path).startswith("CKPT+"):
        candidates.append(os.path.dirname(os.path.dirname(path)))
    for candidate in candidates:
        folder, settings = read_settings(candidate)
        if folder is not None:
            return folder, settings
    return None, {}


def input_settings(source, fmt, given, recorded=None):
    """The input pipeline and training settings to record for ``source``: ``given`` (the
    flags; ``None`` values are not given), else those ``recorded`` beside it (the settings
    of :func:`recorded_settings`), else for an original ``.pth`` the original's (AudioSet's
    fbank statistics, 10 frames; logged).

    Raises
    ------
    ValueError
        Weights of ours without a model folder and no ``--dataset_mean`` /
        ``--dataset_std``: the statistics they were trained with cannot be known.
    """
    recorded = recorded or {}
    out = {}
    for key, value in given.items():
        if value is None and recorded.get(key) is not None:
            value = recorded[key]
        out[key] = value
    missing = [k for k in ("dataset_mean", "dataset_std") if out.get(k) is None]
    if missing and fmt != "original":
        raise ValueError(
            f"{source}: no model folder records the fbank statistics it was trained with: "
            + " and ".join(f"pass --{k}" for k in missing)
            + " (the dataset_mean / dataset_std of its training run)")
    for key, default in (("dataset_mean", DEFAULT_MEAN), ("dataset_std", DEFAULT_STD),
                         ("n_frames", 10)):
        if out.get(key) is None:
            out[key] = default
            logger.info("%s: %s %s (the original release's)", source, key, default)
    return out


def convert(checkpoint, out_dir, label_csv=None, num_heads=None, mode="multimodal",
            score_activation="auto", audio_length=None, decoder_num_heads=None,
            n_frames=None, dataset_mean=None, dataset_std=None, check=True,
            loss=None, audio_channel=0, trust_remote_code=False, norm_pix_loss=None,
            registers_in_shared=None, global_local_loss=None):
    """Convert ``checkpoint`` into a model folder ``out_dir``.

    The weights are read by :func:`speechbrain_cavmae.checkpoints.load` (strict) and
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
        released 768 (12 heads) / 512 (16 decoder heads) or a model folder records them
        (see ``dataset_mean``).
    mode : str
        Default inference mode, one of ``MODES`` (the mode the model was fine-tuned for).
    score_activation : str
        ``"auto"``, ``"sigmoid"`` or ``"softmax"``.
    audio_length : int, optional
        Fbank frames; default the checkpoint's (positional embedding interpolated otherwise).
    n_frames : int, optional
        Frames per video clip at inference (default: as recorded, else 10).
    dataset_mean, dataset_std : float, optional
        Fbank normalisation statistics of the training data. Default: those recorded by
        the source's model folder (or, for a run's ``finetuned.pth`` / ``pretrained.pth``
        / ``save/CKPT+...``, by the run's); for an original ``.pth``, AudioSet's (the
        original release's); weights of ours without a folder need them.
    check : bool
        Load the written folder back strictly.
    loss : str, optional
        One of :data:`~speechbrain_cavmae.model.tasks.LOSSES`, the fine-tuning loss (decides
        the ``auto`` activation); default: as recorded.
    norm_pix_loss : bool, optional
        Pretraining checkpoints: trained with the norm-pix loss (recorded for
        ``cavmae inpaint``); default: as recorded, else not recorded.
    registers_in_shared, global_local_loss : bool, optional
        CAV-MAE Sync checkpoints (``docs/sync.md``): whether the register tokens went
        through the shared blocks (their ``keep_register_tokens``) and whether the
        contrastive loss combined the global and the local tokens (their
        ``global_local_losses``). Not stored in the weights: required when the weights
        have registers / global tokens, unless a model folder records them. A Sync
        checkpoint also needs ``n_frames`` (16 for their release), recorded as the
        model's ``num_frames``.
    audio_channel : int or None
        Channel of multichannel audio the model is fed (0, as the original).
    trust_remote_code : bool
        Read a model folder whose yaml is outside the model-folder schema of
        :mod:`speechbrain_cavmae.checkpoints.trust` (it may run any code).

    Returns
    -------
    dict
        Summary: ``kind``, ``num_classes``, ``num_params``, ``files``, ``config``.
    """
    from speechbrain_cavmae import checkpoints as loader
    from speechbrain_cavmae.checkpoints import LABEL_CSV_FILE, write_model_folder

    check_mode(mode)
    source = os.fspath(checkpoint)
    if not os.path.exists(source):
        raise FileNotFoundError(f"{source}: checkpoint not found")
    state, fmt, folder = loader.read_source(source, trust_remote_code=trust_remote_code)
    if fmt == "imagenet_mae" or "encoder.patch_embed_a.proj.weight" not in state:
        raise loader.CheckpointMismatchError(
            f"{source}: not a CAV-MAE checkpoint (no audio patch embedding among "
            f"{len(state)} tensors, e.g. {list(state)[:3]})"
        )
    if "head.fc.weight" not in state and "decoder.embed.weight" not in state:
        raise ValueError(f"{source}: has neither a classification head nor a decoder; "
                         "only fine-tuned or pretrained CAV-MAE checkpoints can be converted")
    folder, recorded = recorded_settings(source)
    if folder is not None:
        logger.info("settings not given are those recorded by the model folder %s", folder)
        if label_csv is None and os.path.isfile(os.path.join(folder, LABEL_CSV_FILE)):
            label_csv = os.path.join(folder, LABEL_CSV_FILE)
        num_heads = num_heads or recorded["model"].get("num_heads")
        decoder_num_heads = decoder_num_heads or recorded["model"].get("decoder_num_heads")
    sync = loader.sync_architecture(state) if "decoder.embed.weight" in state else {}
    overrides = {"mode": mode} if "head.fc.weight" in state else {}
    if sync:
        n_frames = n_frames or recorded.get("n_frames")
        given = {"n_frames": n_frames, "registers_in_shared": registers_in_shared,
                 "global_local_loss": global_local_loss}
        needed = [k for k, v in given.items() if v is None and (
            folder is None and (k == "n_frames" or sync.get(k, False) is None))]
        if needed:
            raise ValueError(
                f"{source}: a CAV-MAE Sync checkpoint; the weights do not tell "
                + ", ".join(needed) + ": pass " + " and ".join(SYNC_FLAGS[k] for k in needed)
                + " (see docs/sync.md)")
        overrides["num_frames"] = n_frames
        overrides.update({k: v for k, v in given.items() if k != "n_frames" and v is not None})
    settings = input_settings(source, fmt, {
        "dataset_mean": dataset_mean, "dataset_std": dataset_std, "n_frames": n_frames,
        "loss": loss, "norm_pix_loss": norm_pix_loss}, recorded)
    settings["audio_channel"] = audio_channel
    model = loader.load(source, num_heads=num_heads, decoder_num_heads=decoder_num_heads,
                        audio_length=audio_length, trust_remote_code=trust_remote_code,
                        **overrides).model
    inputs = {k: settings[k] for k in ("n_frames", "dataset_mean", "dataset_std",
                                       "audio_channel")}
    if sync:  # each frame with its audio segment, cut from the clip's fbank (docs/sync.md)
        inputs.update(frame_segments=True,
                      clip_length=recorded.get("clip_length", SYNC_CLIP_LENGTH),
                      frame_span_s=recorded.get("frame_span_s", SYNC_FRAME_SPAN_S))
    summary = write_model_folder(
        model, out_dir, label_csv=label_csv, loss=settings["loss"],
        score_activation=score_activation,
        input_config=inputs,
        source=source, check=check, norm_pix_loss=settings["norm_pix_loss"],
    )
    summary["num_params"] = sum(p.numel() for p in model.parameters())
    if sync:
        cfg = summary["config"]
        logger.info("CAV-MAE Sync: %d registers per modality (%s), global tokens %s, "
                    "contrastive heads %s, global+local loss %s, %d frames per clip",
                    cfg["num_register_tokens"], "through the shared blocks"
                    if cfg["registers_in_shared"] else "dropped before the shared blocks",
                    cfg["global_tokens"], cfg["contrastive_heads"], cfg["global_local_loss"],
                    cfg["num_frames"])
    if summary["score_activation"]:
        logger.info("scores: %s of the logits", summary["score_activation"])
    return summary


def add_arguments(parser):
    """The flags of ``cavmae convert``."""
    common.add_model(parser)
    common.add_output(parser, help="the model folder to write")
    common.add_label_csv(parser)
    common.add_heads(parser)
    parser.add_argument("--mode", default="multimodal", choices=MODES,
                        help="inference mode the model was fine-tuned for")
    parser.add_argument("--score_activation", default="auto",
                        choices=("auto",) + ACTIVATIONS,
                        help="auto: from --loss, else sigmoid for 527 classes (AudioSet) and "
                        "softmax otherwise")
    parser.add_argument("--loss", choices=LOSSES, default=None,
                        help="fine-tuning loss: decides the auto score activation")
    parser.add_argument("--audio_length", type=int, default=None,
                        help="fbank frames (default: the checkpoint's)")
    common.add_n_frames(parser)
    common.add_fbank_stats(parser)
    norm = parser.add_mutually_exclusive_group()
    norm.add_argument("--norm_pix", dest="norm_pix_loss", action="store_const", const=True,
                      default=None, help="a pretraining checkpoint trained with the norm-pix "
                      "loss (recorded for cavmae inpaint; the original's released pretrained "
                      "models but cav-mae-base-nonorm.pth)")
    norm.add_argument("--no_norm_pix", dest="norm_pix_loss", action="store_const",
                      const=False, help="a pretraining checkpoint trained without it")
    for name, help_on, help_off in (
            ("registers_in_shared", "CAV-MAE Sync: the register tokens went through the "
             "shared blocks (their keep_register_tokens)", "... or were dropped before them"),
            ("global_local_loss", "CAV-MAE Sync: contrastive loss on the global and the "
             "local tokens (their global_local_losses)", "... on the global tokens only")):
        group = parser.add_mutually_exclusive_group()
        group.add_argument(f"--{name}", dest=name, action="store_const", const=True,
                           default=None, help=help_on)
        group.add_argument(f"--no_{name}", dest=name, action="store_const", const=False,
                           help=help_off)
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
        norm_pix_loss=args.norm_pix_loss, registers_in_shared=args.registers_in_shared,
        global_local_loss=args.global_local_loss,
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
