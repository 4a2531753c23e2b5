"""Classify video or audio files with a CAV-MAE model.

::

    cavmae classify FILE [FILE ...] --model DIR [--top_k 5] [--mode MODE] [--json]

prints, for each file, the mode it ran in and its top-k classes with their scores
(``--json``: one JSON document on stdout, which also says how much of the file the model
saw: audio cut or padded to the model's window, the times of the frames). ``DIR`` is a
model folder (written by ``cavmae convert``, or the ``model/`` folder of a fine-tuning run)
or a weights file (an original CAV-MAE ``.pth``, a run's ``finetuned.pth``: loaded
locally, classes named ``class_<i>``). Videos use the audio track (encoded once) and 10
frames (run as one batch; scores averaged over the frames); audio files use the model's
audio-only mode. The progress bar counts the steps of each file (read, audio, frames,
join). A file that cannot be read or classified is reported (its error in the JSON) and
the others are still classified; the exit status is then 1.

Authors
 * speechbrain-cavmae contributors 2026
"""

import json
import logging
import os
import sys

from speechbrain_cavmae.model.modes import MODES
from speechbrain_cavmae.tools import common

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


def check_model_source(source):
    """What ``--model`` stands for, before anything is loaded
    (:func:`speechbrain_cavmae.checkpoints.loader.model_source`): an existing path is
    local (a model folder, a recipe's output folder, a checkpoint folder or a ``.pth`` /
    ``.ckpt`` file; anything else is "not a model"), a path that does not exist is a
    ``FileNotFoundError`` unless it is a model-hub id ``owner/name``.

    Example
    -------
    >>> check_model_source("speechbrain/some-model")
    >>> try:
    ...     check_model_source("./no/such/folder")
    ... except FileNotFoundError as err:
    ...     print(err)
    ./no/such/folder: no such model folder or file (nor a model-hub id owner/name)
    """
    from speechbrain_cavmae.checkpoints import model_source

    model_source(source, hub=True)


def file_steps(model, clip, mode=None):
    """Progress steps of classifying ``clip`` (``model.steps`` of the mode it runs in);
    1 for a file that will fail (its error is reported when it is classified)."""
    from speechbrain_cavmae.data import BadSampleError

    try:
        return len(model.steps(model.file_mode(clip, mode)))
    except (BadSampleError, ValueError, OSError):
        return 1


def add_arguments(parser):
    """The flags of ``cavmae classify``."""
    parser.add_argument("clips", nargs="+", metavar="FILE",
                        help="video (mp4, mkv...) or audio (wav, flac...) files")
    common.add_model(parser)
    common.add_heads(parser, decoder=False)
    parser.add_argument("--top_k", type=int, default=5, help="classes shown per file")
    parser.add_argument("--mode", choices=MODES, default=None,
                        help="force an inference mode (default: the model's, by the streams "
                        "the file has)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document: a list of {file, mode (the mode used), "
                        "frames, audio_seconds, audio_seconds_used, audio_cut, audio_padded, "
                        "video_seconds, frame_seconds, frames_cut, predictions: [{label, score, "
                        "index}]} or {file, error} (docs/cli.md)")
    common.add_device(parser)
    parser.add_argument("--savedir", default=None,
                        help="where from_hparams links the model files")
    common.add_trust(parser)


def run(args):
    """Classify each file; returns 1 when some file could not be classified."""
    check_model_source(args.model)
    from speechbrain_cavmae.data import BadSampleError
    from speechbrain_cavmae.inference import AudioVisualClassifier

    model = AudioVisualClassifier.from_hparams(
        source=args.model, savedir=args.savedir,
        run_opts={"device": common.resolve_device(args.device)},
        trust_remote_code=args.trust_remote_code, num_heads=args.num_heads,
    )
    results, failed = [], 0
    plans = [file_steps(model, clip, args.mode) for clip in args.clips]
    bar = common.progress(None, args, desc="classify", unit="step", total=sum(plans))
    for clip, planned in zip(args.clips, plans):
        done = []
        try:
            report = model.file_report(clip, top_k=args.top_k, mode=args.mode,
                                       on_step=lambda name: (done.append(name), bar.update(1)))
        except (BadSampleError, ValueError, OSError) as exc:
            logger.error("%s", exc)
            results.append({"file": clip, "error": str(exc)})
            failed += 1
            continue
        finally:
            if planned > len(done):  # the steps a failed file did not get to
                bar.update(planned - len(done))
        preds = report.pop("predictions")
        results.append({"file": clip, **report, "predictions": [p._asdict() for p in preds]})
        if not args.json:
            bar.clear()
            print(("\n" if len(results) > 1 else "") + format_table(clip, preds, report["mode"]))
    bar.close()
    if args.json:
        print(json.dumps(results, indent=2))
    if failed:
        print(f"error: {failed} of {len(args.clips)} files could not be classified",
              file=sys.stderr)
    return 1 if failed else 0
