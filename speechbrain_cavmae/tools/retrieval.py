"""Audio-visual retrieval with a CAV-MAE model on a manifest.

Every clip is encoded without masking; its audio (visual) embedding is the mean over the
tokens of the audio-only (visual-only) stream, as in the original ``src/retrieval.py``.
Audio->visual uses each audio embedding as a query against all visual embeddings
(cosine similarity), visual->audio the reverse; R@1/5/10 and the median rank are
reported. Embeddings are collected batch by batch and ranked in chunks of queries
(:func:`speechbrain_cavmae.training.metrics.retrieval_metrics`), so memory grows linearly with
the number of clips.

Usage::

    python -m speechbrain_cavmae.retrieval --checkpoint cav-mae-scale++.pth \\
        --data audioset_eval_subset.json [--batch_size 48] [--output results.json]

Authors
 * speechbrain-cavmae contributors 2026
"""

import argparse
import json
import logging
import os
import sys

import torch

from speechbrain_cavmae.checkpoints.trust import add_trust_argument
from speechbrain_cavmae.checkpoints import loader
from speechbrain_cavmae.data.dataset import build_dataset, collate_av
from speechbrain_cavmae.training.metrics import retrieval_metrics
from speechbrain_cavmae.checkpoints.model_folder import read_input_config

logger = logging.getLogger(__name__)


def load_model(checkpoint, device="cpu", num_heads=None, decoder_num_heads=None,
               trust_remote_code=False):
    """Load any CAV-MAE model (a thin call into :func:`speechbrain_cavmae.checkpoints.loader.load_model`).

    Arguments
    ---------
    checkpoint : str
        A model folder (or its ``model.ckpt``, or a recipe's output folder), a SpeechBrain
        checkpoint directory, or an original / our ``.pth``.
    device : str
        Where to put the model.
    num_heads, decoder_num_heads : int, optional
        Attention heads: recorded by model folders; required for a ``.pth`` unless its
        widths are the released 768 / 512 (12 / 16 heads).
    trust_remote_code : bool
        See :mod:`speechbrain_cavmae.checkpoints.trust`.

    Returns
    -------
    torch.nn.Module
        The model in eval mode.
    """
    return loader.load_model(checkpoint, num_heads=num_heads,
                              decoder_num_heads=decoder_num_heads,
                              trust_remote_code=trust_remote_code).to(device).eval()


def model_geometry(model):
    """``(audio_length, image_size)`` the model was built for."""
    enc = model.encoder
    return enc.audio_length, enc.image_grid[0] * enc.patch_size


def eval_loader(data, model, batch_size=32, num_workers=0, config=None, multi_frame=False):
    """DataLoader over a manifest in evaluation mode, sized for ``model``."""
    audio_length, image_size = model_geometry(model)
    cfg = {"audio_length": audio_length, "image_size": image_size, "multi_frame": multi_frame}
    cfg.update(config or {})
    dataset = build_dataset(data, None, cfg, train=False)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_av
    )


@torch.no_grad()
def compute_embeddings(model, loader, device="cpu"):
    """Pooled unmasked audio and visual embeddings of every clip.

    Returns
    -------
    tuple
        ``(ids, audio [N, dim], visual [N, dim])`` on the CPU.
    """
    ids, emb_a, emb_v = [], [], []
    for batch in loader:
        if batch is None:
            continue
        audio = batch.fbank.data.to(device).float()
        image = batch.frame.data.to(device).float()
        tokens_a, tokens_v = model.encode(audio, image)
        emb_a.append(tokens_a.mean(dim=1).float().cpu())
        emb_v.append(tokens_v.mean(dim=1).float().cpu())
        ids.extend(batch.id)
    if not ids:
        raise ValueError("no clip could be encoded")
    return ids, torch.cat(emb_a), torch.cat(emb_v)


def evaluate_retrieval(model, data, batch_size=32, device="cpu", num_workers=0,
                       chunk_size=1024, ks=(1, 5, 10), config=None):
    """Retrieval metrics of ``model`` on the manifest ``data`` (see module docstring)."""
    loader = eval_loader(data, model, batch_size, num_workers, config)
    ids, emb_a, emb_v = compute_embeddings(model, loader, device)
    results = retrieval_metrics(emb_a, emb_v, ks=ks, chunk_size=chunk_size)
    results["num_clips"] = len(ids)
    return results


def format_table(results, ks=(1, 5, 10)):
    """A small text table of the results."""
    lines = ["direction      " + "  ".join(f"R@{k:<4}" for k in ks) + "  MedR"]
    for name, label in (("a2v", "audio->visual"), ("v2a", "visual->audio")):
        row = "  ".join(f"{results[f'{name}_R@{k}']:.4f}"[:6].ljust(6) for k in ks)
        lines.append(f"{label:<15}{row}  {results[f'{name}_MedR']:g}")
    return "\n".join(lines)


def fbank_stats_config(args, **config):
    """Data config of a CLI: the input pipeline of the ``--checkpoint`` model folder (none
    for a bare ``.pth``), then ``config``, then the ``--dataset_mean`` / ``--dataset_std``
    overrides."""
    config = dict(read_input_config(args.checkpoint), **config)
    if args.dataset_mean is not None:
        config["dataset_mean"] = args.dataset_mean
    if args.dataset_std is not None:
        config["dataset_std"] = args.dataset_std
    return config


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True,
                        help="model folder, recipe output folder, checkpoint or .pth")
    parser.add_argument("--data", required=True, help="manifest (original JSON or ours)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_trust_argument(parser)
    parser.add_argument("--chunk_size", type=int, default=1024,
                        help="queries ranked at once (memory: chunk_size x N)")
    parser.add_argument("--num_heads", type=int, default=None,
                        help="encoder heads (needed for a .pth narrower/wider than 768)")
    parser.add_argument("--decoder_num_heads", type=int, default=None,
                        help="decoder heads (a pretraining .pth whose decoder is not 512 wide)")
    parser.add_argument("--frame_index", type=int, default=-1,
                        help="frame used for the visual embedding (-1: middle)")
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    parser.add_argument("--dataset_mean", type=float, default=None,
                        help="fbank normalisation mean (default: the model folder's, else "
                        "AudioSet's -5.081)")
    parser.add_argument("--dataset_std", type=float, default=None,
                        help="fbank normalisation std (default: the model folder's, else "
                        "AudioSet's 4.4849)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model = load_model(args.checkpoint, args.device, args.num_heads, args.decoder_num_heads,
                       args.trust_remote_code)
    results = evaluate_retrieval(
        model, args.data, args.batch_size, args.device, args.num_workers, args.chunk_size,
        config=fbank_stats_config(args, frame_index=args.frame_index),
    )
    print(format_table(results))
    print(f"({results['num_clips']} clips)")
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w", encoding="utf8") as handle:
            json.dump(results, handle, indent=2, sort_keys=True)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
