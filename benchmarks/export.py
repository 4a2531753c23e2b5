"""ONNX Runtime against PyTorch eager and the original as released, on the CPU (one run).

ViT-B CAV-MAE classifier (527 classes, multimodal, random weights), one frame per clip as
the original's forward, batch 1 and 4, float32, 2 threads everywhere
(``torch.set_num_threads`` / ORT intra-op threads). The variants are interleaved round by
round (the machine is shared); the median time of each is reported with the load average.
Also: ORT graph-optimisation levels (batch 1), and ``--quantize int8``: speed, top-1
agreement with float32 on a generated set and on the real clips, largest score difference.

::

    python -m benchmarks.export --original_src /path/to/cav-mae/src \\
        --out benchmarks/results/<date>-export [--rounds 5] [--work /tmp/export-bench]

Authors
 * speechbrain-cavmae contributors 2026
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time

import torch

from speechbrain_cavmae.export.runtime import OrtGraph
from speechbrain_cavmae.export.writer import export_model
from speechbrain_cavmae.model.classifier import CAVMAEClassifier

THREADS = 2
CLIPS = ("00W1lcxW-WU_40.000.mp4", "KlsG1EnBEjc_000361.mp4")


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original_src", required=True, help="'src' folder of a cav-mae checkout")
    parser.add_argument("--out", required=True)
    parser.add_argument("--work", default="/tmp/export-bench")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                          "..", "shared", "samples"))
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    os.makedirs(args.out, exist_ok=True)
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    load_start = os.getloadavg()

    model = CAVMAEClassifier(527).eval()
    cfg = {"n_frames": 10}
    t0 = time.perf_counter()
    export_model(model, os.path.join(args.work, "fp32"), cfg, labels=None,
                 score_activation="sigmoid", only=["multimodal"])
    export_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    desc8 = export_model(model, os.path.join(args.work, "int8"), cfg, quantize="int8",
                         score_activation="sigmoid", only=["multimodal"])
    export8_s = time.perf_counter() - t0

    from benchmarks.original_model import load_original_module, quiet

    module = load_original_module(args.original_src, attention="math")
    original = quiet(module.CAVMAEFT, label_dim=527).eval()

    graphs = {
        "ort_fp32": OrtGraph(os.path.join(args.work, "fp32", "multimodal.onnx"), THREADS),
        "ort_fp32_basic": OrtGraph(os.path.join(args.work, "fp32", "multimodal.onnx"), THREADS,
                                   level="basic"),
        "ort_fp32_extended": OrtGraph(os.path.join(args.work, "fp32", "multimodal.onnx"),
                                      THREADS, level="extended"),
        "ort_int8": OrtGraph(os.path.join(args.work, "int8", "multimodal.int8.onnx"), THREADS),
    }
    inputs = {b: (torch.randn(b, 1024, 128), torch.randn(b, 3, 224, 224)) for b in (1, 4)}

    def variant(name, b):
        a, v = inputs[b]
        if name == "eager":
            return lambda: model(a, v)
        if name == "original":
            return lambda: original(a, v, "multimodal")
        return lambda: graphs[name](a, v.unsqueeze(1))

    plan = [(n, b) for b in (1, 4) for n in ("eager", "original", "ort_fp32", "ort_int8")]
    plan += [("ort_fp32_basic", 1), ("ort_fp32_extended", 1)]
    times = {f"{n}@{b}": [] for n, b in plan}
    with torch.inference_mode():
        for n, b in plan:  # warm-up
            variant(n, b)()
        for _ in range(args.rounds):
            for n, b in plan:
                times[f"{n}@{b}"].append(_timed(variant(n, b)))
    med = {k: statistics.median(v) for k, v in times.items()}
    speed = {k: (int(k.split("@")[1]) / s) for k, s in med.items()}
    ratios = {}
    for b in (1, 4):
        ratios[f"ort_fp32_vs_eager@{b}"] = med[f"eager@{b}"] / med[f"ort_fp32@{b}"]
        ratios[f"ort_fp32_vs_original@{b}"] = med[f"original@{b}"] / med[f"ort_fp32@{b}"]
        ratios[f"eager_vs_original@{b}"] = med[f"original@{b}"] / med[f"eager@{b}"]
        ratios[f"ort_int8_vs_ort_fp32@{b}"] = med[f"ort_fp32@{b}"] / med[f"ort_int8@{b}"]
    ratios["ort_all_vs_basic@1"] = med["ort_fp32_basic@1"] / med["ort_fp32@1"]
    ratios["ort_all_vs_extended@1"] = med["ort_fp32_extended@1"] / med["ort_fp32@1"]

    # int8 accuracy: a generated set of 32 clips (one frame) and the real clips
    gen = torch.Generator().manual_seed(3)
    a, v = torch.randn(32, 1024, 128, generator=gen), torch.randn(32, 1, 3, 224, 224, generator=gen)
    s32 = torch.cat([graphs["ort_fp32"](a[i:i + 8], v[i:i + 8]) for i in range(0, 32, 8)]).sigmoid()
    s8 = torch.cat([graphs["ort_int8"](a[i:i + 8], v[i:i + 8]) for i in range(0, 32, 8)]).sigmoid()
    accuracy = {"generated": {
        "clips": 32, "top1_agreement": float((s32.argmax(-1) == s8.argmax(-1)).float().mean()),
        "max_score_diff": float((s32 - s8).abs().max())}}
    clips = [os.path.join(args.samples, c) for c in CLIPS]
    if all(os.path.isfile(c) for c in clips):
        from speechbrain_cavmae.inference import AudioVisualClassifier

        fp32 = AudioVisualClassifier.from_hparams(os.path.join(args.work, "fp32"))
        int8 = AudioVisualClassifier.from_hparams(os.path.join(args.work, "int8"))
        real = []
        for clip in clips:
            x, f, mode = fp32.file_inputs(clip)
            p, q = fp32.scores_batch(x, f, mode=mode)[0], int8.scores_batch(x, f, mode=mode)[0]
            real.append({"clip": os.path.basename(clip), "top1_same": int(p.argmax() == q.argmax()),
                         "max_score_diff": float((p - q).abs().max())})
        accuracy["real_clips"] = real
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "threads": THREADS, "load_average_at_start": load_start,
                    "load_average_at_end": os.getloadavg(),
                    "onnxruntime": __import__("onnxruntime").__version__,
                    "torch": torch.__version__},
        "command": "python -m benchmarks.export "
                   + " ".join(sys.argv[1:] if argv is None else argv),
        "model": "CAVMAEClassifier(527), ViT-B, multimodal, one frame per clip, float32",
        "rounds": args.rounds, "median_s": med, "samples_per_s": speed, "ratios": ratios,
        "export_s": {"fp32": export_s, "int8": export8_s},
        "int8_at_export": desc8.get("int8"), "int8_accuracy": accuracy, "times_s": times,
    }
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf8") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps({k: result[k] for k in ("median_s", "ratios", "int8_accuracy", "machine")},
                     indent=1))


if __name__ == "__main__":
    main()
