"""The drop-in audio encoder on 1-s clips: ``short_audio="pad"`` against ``"interpolate"``.

``python -m benchmarks.lobes [--out FILE.json]`` times
:class:`speechbrain_cavmae.lobes.CAVMAEAudioEncoder` (ViT-B by default: 768 wide, 11 + 1
blocks, 12 heads, ``audio_length`` 1024, random weights) on a batch shaped like
SpeechBrain's Google Speech Commands recipe: 1-s clips as 128-bin fbank features
``[batch, 101, 128]`` (what ``speechbrain.lobes.features.Fbank(n_mels=128)`` gives for
16 000 samples) with relative ``lens`` between 0.7 and 1, ``feature_norm: utterance``,
``pooling: mean``. Variants, sharing one set of weights:

* ``pad``: ``short_audio="pad"`` (the default) with ``mask_padding``: only the 7 time
  columns of the input are computed;
* ``interpolate``: ``short_audio="interpolate"`` (same 7 columns, interpolated positions);
* ``pad_before`` (``--before``): ``pad`` as it was before it stopped computing the
  padding: the features padded to 1024 frames (64 columns), the padding masked.

Two tasks: ``train`` (forward + backward of the pooled output, the encoder in train mode,
as fine-tuning in a recipe) and ``infer`` (forward under ``torch.no_grad``, eval mode).
Each encoder first runs one untimed inference call. The variants of a task run
interleaved (A B A B ...) in one process, so a busy machine slows them alike: per round,
the ratio of each variant's time to ``interpolate``'s is the robust figure; the seconds
are medians. Logs the medians and writes one JSON file (after each task).
"""

import argparse
import logging
import platform
import statistics
import sys

import torch

from benchmarks.attention_layers import time_call
from benchmarks.machine import machine_description
from speechbrain_cavmae.data.files import atomic_write_json
from speechbrain_cavmae.lobes import CAVMAEAudioEncoder

logger = logging.getLogger(__name__)

#: Encoder sizes of ``--size``.
SIZES = {"base": dict(embed_dim=768, modality_specific_depth=11, num_heads=12),
         "tiny": dict(embed_dim=64, modality_specific_depth=2, num_heads=4)}
FRAMES = 101  # speechbrain.lobes.features.Fbank on 1 s at 16 kHz


def encoders(size, before):
    """The variants' encoders, one set of weights: ``{name: CAVMAEAudioEncoder}``."""
    torch.manual_seed(0)
    common = dict(audio_length=1024, feature_norm="utterance", pooling="mean",
                  **SIZES[size])
    out = {"pad": CAVMAEAudioEncoder(short_audio="pad", **common),
           "interpolate": CAVMAEAudioEncoder(short_audio="interpolate", **common)}
    if before:
        out["pad_before"] = CAVMAEAudioEncoder(short_audio="pad", **common)
        out["pad_before"].audio_input.trim_padding = False  # padded to 1024 frames
    state = out["pad"].state_dict()
    for enc in out.values():
        enc.load_state_dict(state)
    return out


def step(encoder, feats, lens, task):
    """One call of ``task`` (``train`` or ``infer``)."""

    def run():
        if task == "train":
            encoder.train()
            encoder(feats, lens).pow(2).sum().backward()
            encoder.zero_grad(set_to_none=True)
        else:
            encoder.eval()
            with torch.no_grad():
                encoder(feats, lens)

    return run


def compare(task, encs, feats, lens, rounds, warmup, iters):
    """Interleaved timing of ``encs`` on one task; ratios to ``interpolate``."""
    seconds = {name: [] for name in encs}
    for _ in range(rounds):
        for name, enc in encs.items():
            seconds[name].append(time_call(step(enc, feats, lens, task), warmup, iters))
    base = seconds["interpolate"]
    return {
        "task": task, "rounds": rounds, "warmup": warmup, "iters": iters,
        "s": {n: statistics.median(s) for n, s in seconds.items()},
        "s_rounds": {n: [round(t, 3) for t in s] for n, s in seconds.items()},
        "ratio_to_interpolate": {n: [round(a / b, 3) for a, b in zip(s, base)]
                                 for n, s in seconds.items() if n != "interpolate"},
        "ratio_median": {n: statistics.median(a / b for a, b in zip(s, base))
                         for n, s in seconds.items() if n != "interpolate"},
    }


def check_outputs(encs, feats, lens):
    """Largest difference between ``pad`` and ``pad_before`` (the same embedding)."""
    with torch.no_grad():
        a = encs["pad"].eval()(feats, lens)
        b = encs["pad_before"].eval()(feats, lens)
    return float((a - b).abs().max())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/lobes.json")
    parser.add_argument("--size", choices=sorted(SIZES), default="base")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per task")
    parser.add_argument("--warmup", type=int, default=0,
                        help="untimed calls per round (each encoder first runs one "
                             "inference call, untimed, in any case)")
    parser.add_argument("--iters", type=int, default=1, help="timed calls per round")
    parser.add_argument("--tasks", nargs="+", default=["train", "infer"],
                        choices=["train", "infer"])
    parser.add_argument("--before", action="store_true",
                        help="also time pad as before (padded to 1024 frames), infer only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    encs = encoders(args.size, args.before)
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(args.batch, FRAMES, 128, generator=gen)
    lens = 0.7 + 0.3 * torch.rand(args.batch, generator=gen)
    lens[0] = 1.0
    for name, enc in encs.items():  # first-call allocations out of the timings
        if name != "pad_before":  # check_outputs runs it
            step(enc, feats, lens, "infer")()
    summary = {
        "machine": machine_description(), "python": platform.python_version(),
        "torch": torch.__version__, "threads": args.threads, "size": args.size,
        "sizes": SIZES[args.size], "batch": args.batch, "frames": FRAMES,
        "lens": [round(v, 3) for v in lens.tolist()], "command": " ".join(sys.argv),
        "results": [],
    }
    if args.before:
        summary["max_abs_diff_pad_vs_pad_before"] = check_outputs(encs, feats, lens)
    for task in args.tasks:
        chosen = {n: e for n, e in encs.items() if task == "infer" or n != "pad_before"}
        row = compare(task, chosen, feats, lens, args.rounds, args.warmup, args.iters)
        summary["results"].append(row)
        atomic_write_json(args.out, summary, indent=1)  # each task kept as it ends
        logger.info("%-6s %s", task, "  ".join(
            f"{n} {s:.3f} s" for n, s in row["s"].items()))
        logger.info("%-6s ratio to interpolate (median of rounds): %s", task, "  ".join(
            f"{n} {r:.2f}x" for n, r in row["ratio_median"].items()))
    logger.info("wrote %s", args.out)
    return summary


if __name__ == "__main__":
    main()
