"""Audio-visual retrieval with a CAV-MAE model on a manifest.

Every clip is encoded without masking; its audio (visual) embedding is the mean over the
tokens of the audio-only (visual-only) stream, as in the original ``src/retrieval.py``.
Audio->visual uses each audio embedding as a query against all visual embeddings
(cosine similarity), visual->audio the reverse; R@1/5/10 and the median rank are
reported, with the number of candidates each query is ranked among (the clips): R@k with
k >= candidates is 1.0 whatever the model, and is marked as such. Embeddings are collected batch by batch and ranked in chunks of queries
(:func:`speechbrain_cavmae.training.metrics.retrieval_metrics`), so memory grows linearly with
the number of clips.

Usage::

    cavmae retrieval --model cav-mae-scale++.pth --manifest audioset_eval_subset.json \\
        [--batch_size 48] [--output results.json] [--json]

Authors
 * speechbrain-cavmae contributors 2026
"""

import json
import logging

from speechbrain_cavmae.tools import common, inputs

logger = logging.getLogger(__name__)


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
    results["num_clips"] = results["num_candidates"] = len(ids)
    note = trivial_recall_note(ks, len(ids))
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
    common.add_model(parser)
    common.add_heads(parser)
    common.add_manifest(parser)
    common.add_loader(parser)
    common.add_device(parser)
    parser.add_argument("--chunk_size", type=int, default=1024,
                        help="queries ranked at once (memory: chunk_size x clips)")
    parser.add_argument("--frame_index", type=int, default=-1,
                        help="frame used for the visual embedding (-1: the middle one)")
    common.add_fbank_stats(parser)
    common.add_trust(parser)
    common.add_output(parser, required=False, help="also write the results as JSON here")
    parser.add_argument("--json", action="store_true",
                        help="print the results as JSON instead of a table")


def run(args):
    """Encode the manifest, rank, print the table (or JSON)."""
    loaded = inputs.load_model(args)
    model = loaded.model
    device = common.resolve_device(args.device)
    results = evaluate_retrieval(
        model, args.manifest, args.batch_size, device, args.num_workers, args.chunk_size,
        config=inputs.input_config(args, loaded, frame_index=args.frame_index),
        progress=lambda it: common.progress(it, args, desc="encode", unit="batch"),
    )
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))
    else:
        print(format_table(results))
    if args.output:
        common.ensure_parent(args.output)
        with open(args.output, "w", encoding="utf8") as handle:
            json.dump(results, handle, indent=2, sort_keys=True)
    return 0
