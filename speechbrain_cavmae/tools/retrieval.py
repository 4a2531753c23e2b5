"""Audio-visual retrieval with a CAV-MAE model on a manifest.

Every clip is encoded without masking; its audio (visual) embedding is the mean over the
tokens of the audio-only (visual-only) stream, as in the original ``src/retrieval.py``.
Audio->visual uses each audio embedding as a query against all visual embeddings
(cosine similarity), visual->audio the reverse; R@1/5/10 and the median rank are
reported, with the number of candidates each query is ranked among (the clips): R@k with
k >= candidates is 1.0 whatever the model, and is marked as such. Embeddings are collected batch by batch and ranked in chunks of queries
(:func:`speechbrain_cavmae.training.metrics.retrieval_metrics`), so memory grows linearly with
the number of clips.

With ``--strategy diagonal_mean | diagonal_max | mean | max`` every clip is instead
``n_frames`` frame-segment pairs (CAV-MAE Sync's retrieval: each frame with the audio
segment of the model's ``audio_length`` centred on it, see
:func:`speechbrain_cavmae.data.frames.frame_segment`), embedded pair by pair, and clips are
compared by aggregating the similarities of their frames as the strategy says
(:mod:`speechbrain_cavmae.training.frame_retrieval`, equal to the Sync authors'
``src/retrieval.py``). ``--embeddings FOLDER`` ranks the per-segment embeddings that
``cavmae embed --level segments`` wrote instead of encoding a manifest.

Usage::

    cavmae retrieval --model cav-mae-scale++.pth --manifest audioset_eval_subset.json \\
        [--batch_size 48] [--output results.json] [--json]
    cavmae retrieval --model sync_folder --manifest vgg_retrieval.json --strategy diagonal_mean
    cavmae retrieval --embeddings segments_folder --strategy max

Authors
 * speechbrain-cavmae contributors 2026
"""

import json
import logging

from speechbrain_cavmae.tools import common, inputs

logger = logging.getLogger(__name__)

#: ``--strategy`` choices: :data:`speechbrain_cavmae.training.frame_retrieval.STRATEGIES`,
#: named here so that ``--help`` does not import torch.
STRATEGIES = ("diagonal_mean", "diagonal_max", "mean", "max")


def compute_embeddings(model, loader, device="cpu", progress=None):
    """Pooled unmasked audio and visual embeddings of every clip (without gradients).

    ``progress`` optionally wraps the loader (e.g. :func:`~speechbrain_cavmae.tools.common.
    progress`).

    Returns
    -------
    tuple
        ``(ids, audio [N, dim], visual [N, dim])`` on the CPU.
    """
    import torch

    ids, emb_a, emb_v = [], [], []
    for batch in (progress(loader) if progress else loader):
        if batch is None:
            continue
        audio = batch.fbank.data.to(device).float()
        image = batch.frame.data.to(device).float()
        with torch.no_grad():
            tokens_a, tokens_v = model.encode(audio, image)
        emb_a.append(tokens_a.mean(dim=1).float().cpu())
        emb_v.append(tokens_v.mean(dim=1).float().cpu())
        ids.extend(batch.id)
    if not ids:
        raise ValueError("no clip could be encoded")
    return ids, torch.cat(emb_a), torch.cat(emb_v)


def evaluate_retrieval(model, data, batch_size=32, device="cpu", num_workers=0,
                       chunk_size=1024, ks=(1, 5, 10), config=None, progress=None):
    """Retrieval metrics of ``model`` on the manifest ``data`` (see module docstring)."""
    from speechbrain_cavmae.training.metrics import retrieval_metrics

    loader = inputs.eval_loader(data, model, batch_size, num_workers, config)
    ids, emb_a, emb_v = compute_embeddings(model, loader, device, progress)
    results = retrieval_metrics(emb_a, emb_v, ks=ks, chunk_size=chunk_size)
    return with_candidates(results, len(ids), ks)


def with_candidates(results, candidates, ks):
    """``results`` with ``num_clips`` / ``num_candidates`` and, when an R@k is trivially
    1.0, its ``note``."""
    results["num_clips"] = results["num_candidates"] = candidates
    note = trivial_recall_note(ks, candidates)
    if note:
        results["note"] = note
    return results


def trivial_recall_note(ks, candidates):
    """What to say about the R@k that cannot be below 1.0 (``k >= candidates``), or None.

    Example
    -------
    >>> trivial_recall_note((1, 5, 10), 9)
    'R@10 over 9 candidates: trivially 1.0 (k >= candidates), not informative'
    >>> trivial_recall_note((1, 5, 10), 100) is None
    True
    """
    trivial = [f"R@{k}" for k in ks if k >= candidates]
    if not trivial:
        return None
    return (f"{', '.join(trivial)} over {candidates} candidates: trivially 1.0 "
            "(k >= candidates), not informative")
def evaluate_strategy(model, data, strategy, batch_size=32, device="cpu", num_workers=0,
                      chunk_size=256, ks=(1, 5, 10), config=None, progress=None):
    """Retrieval metrics of ``model`` on the manifest ``data`` over frame-segment pairs
    (``config``: :func:`~speechbrain_cavmae.tools.extract_features.segments_config`),
    ranked under ``strategy`` on ``device``."""
    import torch

    from speechbrain_cavmae.tools.extract_features import segment_embeddings
    from speechbrain_cavmae.training.frame_retrieval import frame_retrieval_metrics

    ids, audio, visual = [], [], []
    for batch_ids, a, v in segment_embeddings(model, data, batch_size, device, num_workers,
                                              config, progress):
        ids.extend(batch_ids)
        audio.append(a)
        visual.append(v)
    if not ids:
        raise ValueError("no clip could be encoded")
    results = frame_retrieval_metrics(torch.cat(audio).to(device), torch.cat(visual).to(device),
                                      strategy, ks, chunk_size)
    return with_candidates(results, len(ids), ks)


def evaluate_embeddings(folder, strategy, device="cpu", chunk_size=256, ks=(1, 5, 10)):
    """Retrieval metrics of the per-segment embeddings of ``folder`` (``cavmae embed
    --level segments``) under ``strategy``."""
    import torch

    from speechbrain_cavmae.tools.extract_features import read_segments
    from speechbrain_cavmae.training.frame_retrieval import frame_retrieval_metrics

    ids, fields, _ = read_segments(folder)
    results = frame_retrieval_metrics(torch.from_numpy(fields["audio"]).to(device),
                                      torch.from_numpy(fields["visual"]).to(device),
                                      strategy, ks, chunk_size)
    return with_candidates(results, len(ids), ks)


def format_table(results, ks=(1, 5, 10)):
    """A small text table of the results: R@k that ``k >= candidates`` makes trivially 1.0
    are marked ``*`` and explained below the table.

    Example
    -------
    >>> res = {"a2v_R@1": 0.5, "a2v_R@10": 1.0, "a2v_MedR": 2, "v2a_R@1": 0.25,
    ...        "v2a_R@10": 1.0, "v2a_MedR": 3, "num_candidates": 9}
    >>> print(format_table(res, ks=(1, 10)))
    direction      R@1     R@10    MedR  (9 candidates)
    audio->visual  0.5000  1.0000*  2
    visual->audio  0.2500  1.0000*  3
    * R@10 over 9 candidates: trivially 1.0 (k >= candidates), not informative
    """
    n = results.get("num_candidates")
    trivial = {k for k in ks if n is not None and k >= n}
    lines = ["direction      " + "  ".join(f"R@{k:<4}" for k in ks) + "  MedR"
             + (f"  ({n} candidates)" if n is not None else "")]
    for name, label in (("a2v", "audio->visual"), ("v2a", "visual->audio")):
        row = "  ".join(f"{results[f'{name}_R@{k}']:.4f}"[:6] + ("*" if k in trivial else "")
                        for k in ks)
        lines.append(f"{label:<15}{row}  {results[f'{name}_MedR']:g}")
    if trivial:
        lines.append("* " + trivial_recall_note(ks, n))
    return "\n".join(lines)


def add_arguments(parser):
    """The flags of ``cavmae retrieval``."""
    from speechbrain_cavmae.tools.extract_features import add_segment_flags

    common.add_model(parser, required=False)
    common.add_heads(parser)
    common.add_manifest(parser, required=False)
    common.add_loader(parser)
    common.add_device(parser)
    parser.add_argument("--chunk_size", type=int, default=None,
                        help="queries ranked at once (memory: chunk_size x clips; default "
                        "1024, 256 with --strategy)")
    parser.add_argument("--strategy", choices=STRATEGIES, default=None,
                        help="rank clips of frame-segment pairs by this aggregation of their "
                        "frames' similarities (CAV-MAE Sync); default: one embedding per clip")
    parser.add_argument("--embeddings", default=None,
                        help="a folder of 'cavmae embed --level segments' to rank (with "
                        "--strategy) instead of --model and --manifest")
    add_segment_flags(parser)
    parser.add_argument("--frame_index", type=int, default=-1,
                        help="frame used for the visual embedding (-1: the middle one)")
    common.add_fbank_stats(parser)
    common.add_trust(parser)
    common.add_output(parser, required=False, help="also write the results as JSON here")
    parser.add_argument("--json", action="store_true",
                        help="print the results as JSON instead of a table")


def run(args):
    """Encode the manifest, rank, print the table (or JSON)."""
    device = common.resolve_device(args.device)
    progress = lambda it: common.progress(it, args, desc="encode", unit="batch")  # noqa: E731
    if args.embeddings:
        if not args.strategy:
            raise common.UsageError("--embeddings needs --strategy (diagonal_mean, "
                                    "diagonal_max, mean or max)")
        if args.model or args.manifest:
            raise common.UsageError("give either --embeddings or --model and --manifest")
        results = evaluate_embeddings(args.embeddings, args.strategy, device,
                                      args.chunk_size or 256)
    else:
        missing = [f for f, v in (("--model", args.model), ("--manifest", args.manifest))
                   if not v]
        if missing:
            raise common.UsageError("the following arguments are required: "
                                    + ", ".join(missing) + " (or --embeddings)")
        loaded = inputs.load_model(args)
        model = loaded.model
        if args.strategy:
            from speechbrain_cavmae.tools.extract_features import segments_config

            config = segments_config(model, inputs.input_config(args, loaded), args.n_frames,
                                     args.clip_length)
            results = evaluate_strategy(model, args.manifest, args.strategy, args.batch_size,
                                        device, args.num_workers, args.chunk_size or 256,
                                        config=config, progress=progress)
        else:
            results = evaluate_retrieval(
                model, args.manifest, args.batch_size, device, args.num_workers,
                args.chunk_size or 1024,
                config=inputs.input_config(args, loaded, frame_index=args.frame_index),
                progress=progress,
            )
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))
    else:
        print(format_table(results))
        if "strategy" in results:
            print(f"(strategy {results['strategy']})")
    if args.output:
        common.ensure_parent(args.output)
        with open(args.output, "w", encoding="utf8") as handle:
            json.dump(results, handle, indent=2, sort_keys=True)
    return 0
