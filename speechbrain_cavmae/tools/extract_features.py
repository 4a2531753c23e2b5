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

``--level segments`` pairs each of the clip's ``n_frames`` frames with the audio segment
of the model's ``audio_length`` centred on it (the frame-segment pairing of the input
pipeline, :func:`~speechbrain_cavmae.data.frames.frame_segment`: CAV-MAE Sync's segments,
or for a plain CAV-MAE model windows of its length around each frame of a clip of
``--clip_length`` fbank frames) and writes, per clip, one row per pair: ``start_s``,
``end_s`` (the segment on the 10 ms hop grid), ``centre_s`` (where the pairing places the
frame), ``audio`` and ``visual`` (unmasked embeddings, ``[n_frames, dim]``: the mean over
tokens, or the global tokens of a model that has them, :func:`pooled_outputs`) and
``similarity`` (their cosine similarity: the clip's audio-visual time curve). ``--format
npy`` writes ``<id>.segments.npz``, ``pt`` ``<id>.segments.pt``; ``index.json`` records the
pairing (``segments``: ``n_frames``, ``clip_length``, ``audio_length``, ``hop_s``,
``frame_span_s``). ``cavmae retrieval --embeddings`` ranks such a folder.

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
#: The arrays of a clip's ``--level segments`` file (one row per frame-segment pair).
SEGMENT_FIELDS = ("start_s", "end_s", "centre_s", "audio", "visual", "similarity")


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


def pooled_outputs(outputs):
    """``(audio, visual)`` vectors ``[batch, dim]`` (or None) from a model's ``encode``
    outputs: the global tokens when it returns them (``(tokens_a, tokens_v, cls_a,
    cls_v)``, as CAV-MAE Sync's ``forward_feat`` of a model with cls tokens, which their
    retrieval then uses), otherwise the mean over each stream's tokens."""
    if len(outputs) == 4:
        return outputs[2], outputs[3]
    return tuple(None if x is None else x.mean(dim=1) for x in outputs[:2])


def embed_pairs(model, fbanks, frames, batch_size=32, same_audio=False):
    """Unmasked embeddings of frame-segment pairs (:func:`pooled_outputs` of
    ``model.encode``).

    Arguments
    ---------
    model : CAVMAE or CAVMAEClassifier
        Any model with CAV-MAE's ``encode(audio, image)``.
    fbanks : torch.Tensor
        ``[batch, K, audio_length, n_mels]``: the segment of each of K frames.
    frames : torch.Tensor
        ``[batch, K, 3, H, W]``.
    batch_size : int
        Pairs through the encoder at once.
    same_audio : bool
        Every segment is the whole clip (a plain CAV-MAE model): its audio is encoded once
        per clip.

    Returns
    -------
    tuple
        ``(audio, visual)``, each ``[batch, K, dim]``.

    Example
    -------
    >>> import torch
    >>> from speechbrain_cavmae.model.cavmae import CAVMAE
    >>> model = CAVMAE(img_size=32, audio_length=32, embed_dim=32, modality_specific_depth=1,
    ...                num_heads=2, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    >>> a, v = embed_pairs(model.eval(), torch.randn(2, 3, 32, 128), torch.randn(2, 3, 3, 32, 32))
    >>> tuple(a.shape), tuple(v.shape)
    ((2, 3, 32), (2, 3, 32))
    """
    import torch

    b, k = frames.shape[:2]
    audio_in = fbanks[:, 0] if same_audio else fbanks.flatten(0, 1)
    image_in = frames.flatten(0, 1)
    audio, visual = [], []
    with torch.no_grad():
        if same_audio:
            for i in range(0, b, batch_size):
                audio.append(pooled_outputs(model.encode(audio_in[i:i + batch_size], None))[0])
            for i in range(0, b * k, batch_size):
                visual.append(pooled_outputs(model.encode(None, image_in[i:i + batch_size]))[1])
        else:
            for i in range(0, b * k, batch_size):
                a, v = pooled_outputs(model.encode(audio_in[i:i + batch_size],
                                                   image_in[i:i + batch_size]))
                audio.append(a)
                visual.append(v)
    audio = torch.cat(audio)
    audio = audio.unsqueeze(1).expand(b, k, -1) if same_audio else audio.view(b, k, -1)
    return audio, torch.cat(visual).view(b, k, -1)


def segments_config(model, config=None, n_frames=None, clip_length=None):
    """The data configuration of frame-segment pairs for ``model`` (its ``audio_length`` is
    the segment): ``config`` (e.g. a model folder's input pipeline) with
    ``frame_segments`` and ``multi_frame`` on, ``n_frames`` / ``clip_length`` when given."""
    from speechbrain_cavmae.data.dataset import resolve_config
    from speechbrain_cavmae.tools.inputs import model_geometry

    cfg = dict(config or {}, frame_segments=True, multi_frame=True)
    cfg["audio_length"], cfg["image_size"] = model_geometry(model)
    if n_frames is not None:
        cfg["n_frames"] = n_frames
    if clip_length is not None:
        cfg["clip_length"] = clip_length
    resolve_config(cfg, train=False)  # a segment longer than the clip is an error here
    return cfg


def segment_embeddings(model, data, batch_size=32, device="cpu", num_workers=0, config=None,
                       progress=None):
    """Yield ``(ids, audio [B, K, dim], visual [B, K, dim])`` per batch of the manifest
    ``data`` (on the CPU), ``config`` from :func:`segments_config`."""
    from speechbrain_cavmae.data.frames import frame_segments

    from speechbrain_cavmae.data.dataset import resolve_config

    cfg = resolve_config(config, train=False)
    bounds = frame_segments(cfg["n_frames"], cfg["clip_length"], cfg["audio_length"])
    same_audio = len(set(bounds)) == 1
    loader = inputs.eval_loader(data, model, batch_size, num_workers, config)
    for batch in (progress(loader) if progress else loader):
        if batch is None:
            continue
        audio, visual = embed_pairs(model, batch.fbanks.data.to(device).float(),
                                    batch.frames.data.to(device).float(), batch_size,
                                    same_audio)
        yield list(batch.id), audio.float().cpu(), visual.float().cpu()


def segment_rows(cfg):
    """``start_s``, ``end_s``, ``centre_s`` [K] float64 arrays of the pairing of ``cfg``."""
    import numpy as np

    from speechbrain_cavmae.data.frames import (
        FBANK_HOP_S, frame_position, frame_segments, segment_seconds)

    n, length = cfg["n_frames"], cfg["clip_length"]
    times = [segment_seconds(*b) for b in frame_segments(n, length, cfg["audio_length"])]
    return {"start_s": np.array([t[0] for t in times]), "end_s": np.array([t[1] for t in times]),
            "centre_s": np.array([round(frame_position(k, n, length) * FBANK_HOP_S, 6)
                                  for k in range(n)])}


def _safe(name):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def extract_features(model, data, out_dir, level="pooled", fmt="npy", batch_size=32,
                     device="cpu", num_workers=0, kinds=KINDS, config=None, progress=None):
    """Write the embeddings of every clip of ``data`` to ``out_dir``; returns the index.

    ``config`` overrides data settings of the loader (e.g. a model folder's input
    pipeline, :func:`speechbrain_cavmae.checkpoints.load`'s ``inputs``);
    ``progress`` optionally wraps the loader."""
    import numpy as np
    import torch

    if fmt not in ("npy", "pt"):
        raise ValueError(f"format must be 'npy' or 'pt', got {fmt!r}")
    if level == "segments":
        return extract_segments(model, data, out_dir, fmt, batch_size, device, num_workers,
                                config, progress)
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


def extract_segments(model, data, out_dir, fmt="npy", batch_size=32, device="cpu",
                     num_workers=0, config=None, progress=None):
    """``--level segments`` (see the module docstring): write every clip's rows; returns
    the index. ``config`` is a :func:`segments_config`."""
    import numpy as np
    import torch

    from speechbrain_cavmae.data.dataset import resolve_config
    from speechbrain_cavmae.data.files import atomic_open, atomic_torch_save, atomic_write_json
    from speechbrain_cavmae.data.frames import FBANK_HOP_S

    cfg = resolve_config(config, train=False)
    rows = segment_rows(cfg)
    os.makedirs(out_dir, exist_ok=True)
    index = {"level": "segments", "format": fmt, "fields": list(SEGMENT_FIELDS),
             "segments": {"n_frames": cfg["n_frames"], "clip_length": cfg["clip_length"],
                          "audio_length": cfg["audio_length"], "hop_s": FBANK_HOP_S,
                          "frame_span_s": cfg["frame_span_s"]},
             "clips": {}}
    names = set()
    for ids, audio, visual in segment_embeddings(model, data, batch_size, device, num_workers,
                                                 config, progress):
        sim = torch.nn.functional.cosine_similarity(audio, visual, dim=-1)
        for j, sid in enumerate(ids):
            stem = _safe(sid)
            if stem in names:
                raise ValueError(f"two clip ids map to the same file name {stem!r}")
            names.add(stem)
            clip = dict(rows, audio=audio[j].numpy(), visual=visual[j].numpy(),
                        similarity=sim[j].numpy())
            name = f"{stem}.segments.{'npz' if fmt == 'npy' else 'pt'}"
            if fmt == "pt":
                atomic_torch_save({k: torch.as_tensor(v) for k, v in clip.items()},
                                  os.path.join(out_dir, name))
            else:
                with atomic_open(os.path.join(out_dir, name), "wb") as handle:
                    np.savez(handle, **clip)
            index["clips"][sid] = {"segments": name}
    atomic_write_json(os.path.join(out_dir, "index.json"), index, indent=1)
    logger.info("wrote %d frame-segment pairs of %d clips to %s", cfg["n_frames"],
                len(index["clips"]), out_dir)
    return index


def read_segments(folder):
    """The clips of a ``--level segments`` folder: ``(ids, {field: array [N, K, ...]},
    index)``, in the index's order."""
    import numpy as np
    import torch

    with open(os.path.join(folder, "index.json"), encoding="utf8") as handle:
        index = json.load(handle)
    if index.get("level") != "segments":
        raise ValueError(f"{folder}/index.json: level {index.get('level')!r}, not 'segments' "
                         "(write it with cavmae embed --level segments)")
    ids, fields = list(index["clips"]), {k: [] for k in SEGMENT_FIELDS}
    for sid in ids:
        path = os.path.join(folder, index["clips"][sid]["segments"])
        if path.endswith(".pt"):
            clip = {k: v.numpy() for k, v in torch.load(path, weights_only=True).items()}
        else:
            with np.load(path) as npz:
                clip = {k: npz[k] for k in SEGMENT_FIELDS}
        for key in SEGMENT_FIELDS:
            fields[key].append(clip[key])
    return ids, {k: np.stack(v) for k, v in fields.items()}, index


def add_arguments(parser):
    """The flags of ``cavmae embed``."""
    common.add_model(parser)
    common.add_heads(parser)
    common.add_manifest(parser)
    common.add_output(parser, help="folder of the embedding files and index.json")
    parser.add_argument("--level", choices=("pooled", "tokens", "segments"), default="pooled",
                        help="mean over tokens, the token sequences, or per frame-segment "
                        "pair with its times")
    add_segment_flags(parser)
    parser.add_argument("--format", choices=("npy", "pt"), default="npy",
                        help="npy: <id>.<kind>.npy files; pt: one <id>.pt dict per clip")
    parser.add_argument("--kinds", default="audio,visual,joint",
                        help="comma-separated streams to write (pooled and tokens levels; "
                        "segments always hold audio and visual)")
    common.add_loader(parser)
    common.add_device(parser)
    common.add_fbank_stats(parser)
    common.add_trust(parser)


def add_segment_flags(parser):
    """``--n_frames`` and ``--clip_length`` of the frame-segment pairing."""
    common.add_n_frames(parser)  # frames (and segments) per clip
    parser.add_argument("--clip_length", type=int, default=None,
                        help="fbank frames of the whole clip that segments are cut from "
                        "(default 1024, as CAV-MAE Sync)")


def run(args):
    """Write the embeddings of the manifest's clips."""
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    bad = set(kinds) - set(KINDS)
    if bad:
        raise common.UsageError(f"unknown kinds {sorted(bad)}; choose from {KINDS}")
    loaded = inputs.load_model(args)
    model = loaded.model
    config = inputs.input_config(args, loaded)
    if args.level == "segments":
        config = segments_config(model, config, args.n_frames, args.clip_length)
    index = extract_features(
        model, args.manifest, args.output, args.level, args.format, args.batch_size,
        common.resolve_device(args.device), args.num_workers, kinds,
        config=config,
        progress=lambda it: common.progress(it, args, desc="embed", unit="batch"),
    )
    print(f"{len(index['clips'])} clips -> {args.output}")
    return 0
