"""Per-clip CAV-MAE embeddings: audio, visual and joint, pooled or token-level.

For every clip of a manifest (no masking, evaluation frame):

* ``audio``: the audio-only stream (audio branch + shared block with its audio norms);
* ``visual``: the visual-only stream;
* ``joint``: the joint stream over the concatenated audio and visual tokens (the
  representation the multimodal classifier pools).

``--level pooled`` writes the mean over tokens (``[dim]``), ``--level tokens`` the token
sequences (``[tokens, dim]``). ``--format npy`` writes ``<out_dir>/<id>.<kind>.npy``
files, ``--format pt`` one ``<out_dir>/<id>.pt`` dict per clip; ``index.json`` lists the
clips and files.

Usage::

    cavmae embed --model cav-mae-scale++.pth --manifest audioset_eval.json \\
        --output features [--level tokens] [--format pt]

Authors
 * speechbrain-cavmae contributors 2026
"""

import json
import logging
import os
import re

from speechbrain_cavmae.tools import common, inputs

logger = logging.getLogger(__name__)

KINDS = ("audio", "visual", "joint")


def embed_batch(model, audio, image, level="pooled"):
    """Audio, visual and joint representations of a batch.

    Arguments
    ---------
    model : CAVMAE or CAVMAEClassifier
        Any model with a CAV-MAE ``encoder``.
    audio : torch.Tensor
        ``[batch, frames, n_mels]`` fbank.
    image : torch.Tensor
        ``[batch, 3, H, W]`` frames.
    level : str
        ``"pooled"`` (``[batch, dim]``) or ``"tokens"`` (``[batch, tokens, dim]``).

    Returns
    -------
    dict
        ``audio``, ``visual``, ``joint`` tensors.

    Example
    -------
    >>> import torch
    >>> from speechbrain_cavmae.model.classifier import CAVMAEClassifier
    >>> model = CAVMAEClassifier(3, img_size=32, audio_length=32, embed_dim=32,
    ...                          modality_specific_depth=1, num_heads=2).eval()
    >>> out = embed_batch(model, torch.randn(2, 32, 128), torch.randn(2, 3, 32, 32), "tokens")
    >>> [tuple(out[k].shape) for k in ("audio", "visual", "joint")]
    [(2, 16, 32), (2, 4, 32), (2, 20, 32)]
    """
    if level not in ("pooled", "tokens"):
        raise ValueError(f"level must be 'pooled' or 'tokens', got {level!r}")
    import torch

    if hasattr(model, "embed_tokens"):  # an exported folder (ONNX Runtime)
        out = model.embed_tokens(audio, image)
        return {k: x.mean(dim=1) for k, x in out.items()} if level == "pooled" else out
    enc = model.encoder
    with torch.no_grad():
        a = enc.forward_audio_branch(enc.embed_audio(audio))
        v = enc.forward_visual_branch(enc.embed_visual(image))
        out = {
            "audio": enc.forward_shared(a, "a"),
            "visual": enc.forward_shared(v, "v"),
            "joint": enc.forward_joint(a, v),
        }
    if level == "pooled":
        out = {k: x.mean(dim=1) for k, x in out.items()}
    return out


def _safe(name):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def extract_features(model, data, out_dir, level="pooled", fmt="npy", batch_size=32,
                     device="cpu", num_workers=0, kinds=KINDS, config=None, progress=None):
    """Write the embeddings of every clip of ``data`` to ``out_dir``; returns the index.

    ``config`` overrides data settings of the loader (e.g. a model folder's input
    pipeline, :func:`speechbrain_cavmae.checkpoints.model_folder.read_input_config`);
    ``progress`` optionally wraps the loader."""
    import numpy as np
    import torch

    if fmt not in ("npy", "pt"):
        raise ValueError(f"format must be 'npy' or 'pt', got {fmt!r}")
    os.makedirs(out_dir, exist_ok=True)
    loader = inputs.eval_loader(data, model, batch_size, num_workers, config)
    index = {"level": level, "format": fmt, "kinds": list(kinds), "clips": {}}
    names = set()
    for batch in (progress(loader) if progress else loader):
        if batch is None:
            continue
        audio = batch.fbank.data.to(device).float()
        image = batch.frame.data.to(device).float()
        emb = embed_batch(model, audio, image, level)
        for j, sid in enumerate(batch.id):
            stem = _safe(sid)
            if stem in names:
                raise ValueError(f"two clip ids map to the same file name {stem!r}")
            names.add(stem)
            clip = {k: emb[k][j].float().cpu() for k in kinds}
            if fmt == "pt":
                files = {"all": f"{stem}.pt"}
                torch.save(clip, os.path.join(out_dir, files["all"]))
            else:
                files = {}
                for kind, value in clip.items():
                    files[kind] = f"{stem}.{kind}.npy"
                    np.save(os.path.join(out_dir, files[kind]), value.numpy())
            index["clips"][sid] = files
    with open(os.path.join(out_dir, "index.json"), "w", encoding="utf8") as handle:
        json.dump(index, handle, indent=1)
    logger.info("wrote %s embeddings of %d clips to %s", level, len(index["clips"]), out_dir)
    return index


def add_arguments(parser):
    """The flags of ``cavmae embed``."""
    common.add_model(parser)
    common.add_heads(parser)
    common.add_manifest(parser)
    common.add_output(parser, help="folder of the embedding files and index.json")
    parser.add_argument("--level", choices=("pooled", "tokens"), default="pooled",
                        help="mean over tokens, or the token sequences")
    parser.add_argument("--format", choices=("npy", "pt"), default="npy",
                        help="npy: <id>.<kind>.npy files; pt: one <id>.pt dict per clip")
    parser.add_argument("--kinds", default="audio,visual,joint",
                        help="comma-separated streams to write")
    common.add_loader(parser)
    common.add_device(parser)
    common.add_fbank_stats(parser)
    common.add_trust(parser)


def run(args):
    """Write the embeddings of the manifest's clips."""
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    bad = set(kinds) - set(KINDS)
    if bad:
        raise common.UsageError(f"unknown kinds {sorted(bad)}; choose from {KINDS}")
    model = inputs.load_model(args)
    index = extract_features(
        model, args.manifest, args.output, args.level, args.format, args.batch_size,
        common.resolve_device(args.device), args.num_workers, kinds,
        config=inputs.input_config(args),
        progress=lambda it: common.progress(it, args, desc="embed", unit="batch"),
    )
    print(f"{len(index['clips'])} clips -> {args.output}")
    return 0
