"""Learning check of CAV-MAE Sync: does a model pretrained with the recipe find when a
sound is seen?

Event clips (:mod:`speechbrain_cavmae.data.toy_events`: per clip two events of distinct
classes, each a coloured square in two frames and its tone over the same time) train a tiny
Sync model with ``hparams/cavmae_sync.yaml`` and a tiny CAV-MAE with ``hparams/cavmae.yaml``,
through the same recipe (``recipes/AudioSet/train.py``), the same sizes, steps and
optimisation; the model folders they export are then scored on the test clips by
:func:`speechbrain_cavmae.training.sync.learning_check`: the fraction of events whose audio
segment's most similar frame lies within one frame of the event (with chance beside it),
and clip-level retrieval R@1 (``diagonal_mean`` over the 16 frame-segment pairs; a CAV-MAE
model's audio is the whole clip for every frame, its own pairing).

Usage (the figures of docs/sync.md)::

    python -m benchmarks.sync_learning --out /tmp/sync_learning --epochs 30 \\
        --n_train 512 --n_test 128 --json benchmarks/results/2026-12-08-sync-learning.json
"""

import argparse
import json
import logging
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO, "recipes", "AudioSet", "train.py")
SLOT = 16  # fbank frames per video frame
SEGMENT = 32  # fbank frames of each frame's audio segment (two slots, centred on the frame)

#: The tiny encoder / decoder both models share, and the training budget's other settings.
#: Sync's masking ratios reach 0.9: a stream needs at least 10 patches to keep one (64 px
#: frames: 16 patches; 32-frame segments of 128 mel bins: 16 patches).
TINY = ["--embed_dim", "64", "--modality_specific_depth", "2", "--num_heads", "4",
        "--decoder_embed_dim", "32", "--decoder_depth", "1", "--decoder_num_heads", "4",
        "--image_size", "64", "--n_frames", "16", "--num_workers", "0", "--noprogressbar",
        "--noise", "False", "--ckpt_interval_minutes", "0", "--fused_optimizer", "False",
        "--lrscheduler_start", "100000"]  # a constant rate: the recipes' step decay is for 25 epochs


def recipe_args(kind, data, out, epochs, batch_size, lr, contrast_weight, seed):
    """The recipe command line of one model (``kind``: ``"sync"`` or ``"cavmae"``)."""
    clip = 16 * SLOT
    if kind == "sync":
        specific = ["hparams/cavmae_sync.yaml", "--audio_length", str(SEGMENT),
                    "--clip_length", str(clip), "--frame_span_s", str(clip * 0.01),
                    "--num_register_tokens", "2"]
    else:
        specific = ["hparams/cavmae.yaml", "--audio_length", str(clip)]
    return [sys.executable, RECIPE, *specific, "--train_data", data["train"],
            "--output_folder", os.path.join(out, kind), "--number_of_epochs", str(epochs),
            "--batch_size", str(batch_size), "--lr", str(lr),
            "--contrast_loss_weight", str(contrast_weight), "--seed", str(seed), *TINY]


def run(out, epochs=30, n_train=512, n_test=128, batch_size=32, lr=1e-3,
        contrast_weight=0.1, seed=0, kinds=("sync", "cavmae"), events_per_clip=2,
        n_classes=4):
    """Generate the clips, train each model with its recipe, score both; returns
    ``{kind: learning_check result}`` plus ``"settings"``."""
    import torch

    from speechbrain_cavmae.checkpoints import load
    from speechbrain_cavmae.data.toy_events import generate_event_clips
    from speechbrain_cavmae.training.sync import learning_check

    data = generate_event_clips(os.path.join(out, "data"), n_train=n_train, n_test=n_test,
                                seed=seed, slot=SLOT, image_size=64,
                                events_per_clip=events_per_clip, n_classes=n_classes)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    results = {"settings": {"epochs": epochs, "n_train": n_train, "n_test": n_test,
                            "batch_size": batch_size, "lr": lr,
                            "contrast_loss_weight": contrast_weight, "seed": seed,
                            "events_per_clip": events_per_clip, "n_classes": n_classes}}
    for kind in kinds:
        args = recipe_args(kind, data, out, epochs, batch_size, lr, contrast_weight, seed)
        logging.info("%s", " ".join(args))
        subprocess.run(args, cwd=REPO, env=env, check=True)
        torch.manual_seed(seed)
        model = load(os.path.join(out, kind, "model")).model
        results[kind] = learning_check(model, data["test"], data["events"])
        logging.info("%s: %s", kind, results[kind])
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="working folder (data, runs)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--n_train", type=int, default=512)
    parser.add_argument("--n_test", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--contrast_loss_weight", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--events_per_clip", type=int, default=2)
    parser.add_argument("--n_classes", type=int, default=4)
    parser.add_argument("--models", nargs="+", default=["sync", "cavmae"],
                        choices=["sync", "cavmae"])
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = run(args.out, args.epochs, args.n_train, args.n_test, args.batch_size, args.lr,
                  args.contrast_loss_weight, args.seed, args.models, args.events_per_clip,
                  args.n_classes)
    print("model   events found   chance   a2v R@1   v2a R@1")
    for kind in args.models:
        r = results[kind]
        print(f"{kind:7s} {r['found']:12.3f} {r['chance']:8.3f} {r['a2v_R@1']:9.3f} "
              f"{r['v2a_R@1']:9.3f}")
    if args.json:
        from speechbrain_cavmae.data.files import atomic_write_json

        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        atomic_write_json(args.json, results, sort_keys=True)


if __name__ == "__main__":
    main()
