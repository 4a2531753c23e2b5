"""Export a model for deployment outside this package: ONNX graphs (or ``torch.export``
programs) with a dynamic batch size, plus ``cavmae_export.json``, a plain JSON
description of the inputs (sample rate, channel, Kaldi fbank settings, audio length,
mean and std, frames per clip, image size, resize filter, normalisation), the labels and
the score activation.

::

    cavmae export --model DIR --output EXPORTED [--graph_format onnx | exported_program]
        [--quantize int8] [--encoder audio | visual]

A classifier gets one graph per mode it runs in (its mode and the modes for audio alone
and frames alone), a pretraining model its audio, visual and joint token graphs;
``--encoder`` exports the drop-in encoder (``CAVMAEAudioEncoder`` / ``CAVMAEVisualEncoder``)
of the model's weights instead. Every graph is checked (``onnx.checker``) and compared with
PyTorch on a generated batch. ``--quantize int8`` quantises the MatMuls dynamically and
prints what that costs on a generated batch (top-1 agreement, largest score difference).
The exported folder is itself a model: ``cavmae classify / embed / retrieval --model
EXPORTED`` run it in ONNX Runtime (docs/export.md).

Authors
 * speechbrain-cavmae contributors 2026
"""

import logging
import os

from speechbrain_cavmae.tools import common

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "exported_program")


def add_arguments(parser):
    """The flags of ``cavmae export``."""
    common.add_model(parser)
    common.add_heads(parser, decoder=True)
    common.add_output(parser, help="the exported folder (must not exist)")
    parser.add_argument("--graph_format", choices=FORMATS, default="onnx",
                        help="onnx (run by ONNX Runtime) or exported_program (torch.export "
                        ".pt2); named so as not to clash with embed's --format of files")
    parser.add_argument("--quantize", choices=("int8",), default=None,
                        help="int8: dynamic quantisation of the MatMuls (onnx only); its "
                        "accuracy cost is measured and printed")
    parser.add_argument("--encoder", choices=("audio", "visual"), default=None,
                        help="export the drop-in CAVMAEAudioEncoder / CAVMAEVisualEncoder of "
                        "the model's weights (mean pooling) instead of the model")
    common.add_trust(parser)


def _lobe(args):
    from speechbrain_cavmae.checkpoints import input_config, read_settings
    from speechbrain_cavmae.data.dataset import resolve_config
    from speechbrain_cavmae.lobes import CAVMAEAudioEncoder, CAVMAEVisualEncoder

    cls = CAVMAEAudioEncoder if args.encoder == "audio" else CAVMAEVisualEncoder
    lobe = cls(ckpt_path=args.model, num_heads=args.num_heads).eval()
    cfg = resolve_config(input_config(read_settings(args.model, args.trust_remote_code)[1]),
                         train=False)
    return lobe, cfg, {}


def _model(args):
    import torch

    from speechbrain_cavmae.inference import AudioVisualClassifier

    clf = AudioVisualClassifier.from_hparams(
        source=args.model, run_opts={"device": "cpu"},
        trust_remote_code=args.trust_remote_code, num_heads=args.num_heads)
    model = clf.mods.model
    if not isinstance(model, torch.nn.Module) or hasattr(model, "description"):
        raise ValueError(f"{args.model}: already an exported folder")
    extra = {}
    if clf.is_classifier:
        hp = clf.hparams
        extra = {"labels": clf.labels(range(model.num_classes)),
                 "score_activation": clf.score_activation,
                 "modes": {k: getattr(hp, k, None)
                           for k in ("mode", "audio_only_mode", "video_only_mode")}}
    return model, clf.data_config(), extra


def run(args):
    """Export ``--model`` to ``--output``; prints the graphs and the int8 cost."""
    from speechbrain_cavmae.checkpoints.loader import model_source
    from speechbrain_cavmae.export.writer import export_model

    if args.quantize and args.graph_format != "onnx":
        raise common.UsageError(f"--quantize {args.quantize} is for --graph_format onnx")
    if os.path.exists(args.output):
        raise ValueError(f"{args.output} exists: choose a new --output folder")
    kind, _ = model_source(args.model, hub=True)
    if kind == "export":
        raise ValueError(f"{args.model}: already an exported folder: export the model "
                         "folder it came from")
    model, cfg, extra = _lobe(args) if args.encoder else _model(args)
    desc = export_model(model, args.output, cfg, runtime=args.graph_format,
                        quantize=args.quantize,
                        labels=extra.get("labels"),
                        score_activation=extra.get("score_activation"),
                        modes=extra.get("modes"), lobe=bool(args.encoder), source=args.model)
    print(f"{desc['kind']} -> {args.output} ({args.graph_format}"
          + (f", {args.quantize}" if args.quantize else "") + ")")
    for name, spec in desc["graphs"].items():
        diff = desc["check"]["max_abs_diff_from_pytorch"][name]
        print(f"  {name:<18} {spec['file']:<28} inputs {', '.join(spec['inputs'])}; "
              f"largest difference from PyTorch {diff:.2e}")
    for name, cost in (desc.get("int8") or {}).items():
        if "top1_agreement" in cost:
            print(f"  int8 {name}: top-1 agreement with float32 {cost['top1_agreement']:.3f}, "
                  f"largest score difference {cost['max_score_diff']:.4f} "
                  f"({cost['clips']} generated clips)")
        else:
            print(f"  int8 {name}: lowest cosine similarity with float32 "
                  f"{cost['min_cosine']:.4f} ({cost['clips']} generated clips)")
    return 0
