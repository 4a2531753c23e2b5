"""Classify clips with a CAV-MAE model folder.

::

    python -m speechbrain_cavmae.classify CLIP [CLIP ...] --model DIR [--top-k 5]
        [--mode MODE] [--device cpu] [--savedir DIR]

prints, for each clip, its top-k classes with their scores. ``DIR`` is a folder written
by ``python -m speechbrain_cavmae.convert`` (or a fine-tuning run with the same layout).
Videos use the audio track and 10 frames (scores averaged over the frames); audio files
use the model's audio-only mode.

Authors
 * speechbrain-cavmae contributors 2026
"""

import argparse
import logging
import sys

from speechbrain_cavmae.checkpoints.trust import add_trust_argument
from speechbrain_cavmae.model.modes import MODES
from speechbrain_cavmae.data.errors import BadSampleError

logger = logging.getLogger(__name__)


def format_table(path, predictions, mode=None):
    """A readable table of ``predictions`` (list of ``Prediction``) for one clip.

    Example
    -------
    >>> from speechbrain_cavmae.inference import Prediction
    >>> print(format_table("a.wav", [Prediction("Dog", 0.91, 3), Prediction("Cat", 0.05, 1)]))
    a.wav
      rank  score   class
         1  0.9100  Dog
         2  0.0500  Cat
    """
    head = path if mode is None else f"{path}  [{mode}]"
    lines = [head, "  rank  score   class"]
    for rank, pred in enumerate(predictions, 1):
        lines.append(f"  {rank:>4}  {pred.score:.4f}  {pred.label}")
    return "\n".join(lines)


def build_parser():
    """Command-line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_cavmae.classify",
        description="Top-k audio-visual event classes of video or audio clips.",
    )
    parser.add_argument("clips", nargs="+",
                        help="video (mp4, mkv...) or audio (wav, flac...) files")
    parser.add_argument("--model", required=True,
                        help="model folder (hyperparams.yaml, model.ckpt)")
    parser.add_argument("--top-k", "--top_k", dest="top_k", type=int, default=5)
    parser.add_argument("--mode", choices=MODES, help="force an inference mode")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0...")
    parser.add_argument("--savedir", help="where from_hparams links the model files")
    parser.add_argument("--log_level", default="WARNING")
    add_trust_argument(parser)
    return parser


def main(argv=None):
    """Entry point; returns 0, or 1 when a clip could not be read."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    from speechbrain_cavmae.inference import AudioVisualClassifier

    model = AudioVisualClassifier.from_hparams(
        source=args.model, savedir=args.savedir, run_opts={"device": args.device},
        trust_remote_code=args.trust_remote_code,
    )
    status = 0
    for i, clip in enumerate(args.clips):
        try:
            preds = model.classify_file(clip, top_k=args.top_k, mode=args.mode)
        except BadSampleError as exc:
            logger.error("%s", exc)
            status = 1
            continue
        if i:
            print()
        print(format_table(clip, preds, args.mode))
    return status


if __name__ == "__main__":
    sys.exit(main())
