"""Benchmark suite entry point: ``python -m benchmarks.run`` (or ``make bench``).

Each measurement runs in its own process (``benchmarks.measure``) so that peak memory and
library state are per configuration. Prints a table and writes JSON.

Examples
--------
Quick CPU suite (small batch sizes)::

    python -m benchmarks.run --quick

Side by side with the original code (a local checkout's ``src`` folder), ratios measured in
one run with the two implementations interleaved::

    python -m benchmarks.run --sections compare --original_src ~/cav-mae/src

GPU (one command, a few minutes)::

    bash benchmarks/gpu.sh
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import torch

SECTIONS = ("pretrain", "inference", "encoder", "data", "compare")


def measure(timeout=1800, **kwargs):
    """Run one ``benchmarks.measure`` process and return its JSON result (or the error)."""
    cmd = [sys.executable, "-m", "benchmarks.measure"]
    for key, value in kwargs.items():
        if value is True:
            cmd.append(f"--{key}")
        elif value not in (None, False):
            cmd += [f"--{key}", str(value)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          cwd=Path(__file__).resolve().parents[1])
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {**kwargs, "error": " | ".join(tail) or f"exit {proc.returncode}"}
    return json.loads(lines[-1])


def precisions(device):
    out = ["fp32"]
    if device == "cuda" and torch.cuda.is_bf16_supported():
        out.append("bf16")
    elif device == "cpu" and cpu_has_bf16():
        out.append("bf16")
    return out


def cpu_has_bf16():
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def row(result, name):
    if "error" in result:
        return f"{name:<58} ERROR {result['error'][:60]}"
    return (f"{name:<58} {result['samples_per_s']:>9.2f} samples/s  "
            f"{result['step_s'] * 1000:>9.1f} ms  {result['peak_mem_mb']:>9.0f} MB")


def run_sections(args):
    device = args.device
    results = {"meta": meta(device), "pretrain": [], "inference": [], "encoder": [],
               "data": None, "compare": []}
    common = dict(device=device, warmup=args.warmup, iters=args.iters, threads=args.threads)
    if "pretrain" in args.sections:
        print("\n# Full-size pretraining step (ViT-B, 1024 frames, 224 px)")
        for precision in precisions(device):
            for batch in args.batches:
                r = measure(task="pretrain", batch=batch, precision=precision, **common)
                results["pretrain"].append(r)
                print(row(r, f"pretrain batch={batch} {precision}"))
    if "inference" in args.sections:
        print("\n# Fine-tuned model inference per mode")
        for precision in precisions(device):
            for mode in ("multimodal", "audioonly", "videoonly", "missingaudioonly",
                         "missingvideoonly"):
                r = measure(task="inference", batch=args.infer_batch, mode=mode,
                            precision=precision, **common)
                results["inference"].append(r)
                print(row(r, f"inference {mode} batch={args.infer_batch} {precision}"))
    if "encoder" in args.sections:
        print("\n# Audio encoder against audio length (cost growth)")
        for precision in precisions(device):
            for length in (256, 512, 1024, 2048):
                r = measure(task="encoder", batch=args.infer_batch, audio_length=length,
                            precision=precision, **common)
                results["encoder"].append(r)
                print(row(r, f"encoder {length} frames batch={args.infer_batch} {precision}"))
    if "data" in args.sections:
        print("\n# Data pipeline")
        results["data"] = data_pipeline()
    if "compare" in args.sections:
        results["compare"] = compare(args, common)
    return results


def data_pipeline():
    """Run ``benchmarks.data_pipeline`` when present and return its JSON."""
    if not (Path(__file__).parent / "data_pipeline.py").exists():
        print("benchmarks/data_pipeline.py not present")
        return None
    out = Path("results/bench/data_pipeline.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "benchmarks.data_pipeline", "--out", str(out)],
                          text=True, cwd=Path(__file__).resolve().parents[1])
    if proc.returncode or not out.exists():
        return {"error": f"exit {proc.returncode}"}
    return json.loads(out.read_text())


def compare(args, common):
    """Ours against the original, interleaved A B A B, ratio per pair, median reported."""
    if not args.original_src:
        print("compare: skipped (pass --original_src PATH/TO/cav-mae/src)")
        return []
    fast = dict(precision=args.fast_precision, compile=args.compile)
    pairs = [
        ("pretrain: our fast path vs the original as released (fp32, timm 0.4.5 attention math)",
         dict(task="pretrain", **fast),
         dict(task="pretrain", precision="fp32", attention="math")),
        ("pretrain fair: same precision, fused attention (SDPA) everywhere in both",
         dict(task="pretrain", attention="fused", **fast),
         dict(task="pretrain", precision=args.fast_precision, attention="fused")),
        ("pretrain: our fast path (attention dispatch) vs the original, same precision, SDPA",
         dict(task="pretrain", **fast),
         dict(task="pretrain", precision=args.fast_precision, attention="fused")),
        ("pretrain: both with our attention dispatch, same precision",
         dict(task="pretrain", **fast),
         dict(task="pretrain", precision=args.fast_precision, attention="dispatch")),
        ("pretrain fair, forward+backward only (no optimizer step), SDPA everywhere in both",
         dict(task="pretrain", attention="fused", optimizer="none", **fast),
         dict(task="pretrain", precision=args.fast_precision, attention="fused",
              optimizer="none")),
        ("pretrain, both fp32: ours vs the original as released",
         dict(task="pretrain", precision="fp32"),
         dict(task="pretrain", precision="fp32", attention="math")),
        ("inference: our fast path vs the original as released",
         dict(task="inference", **fast),
         dict(task="inference", precision="fp32", attention="math")),
        ("inference fair: same precision, SDPA everywhere in both",
         dict(task="inference", attention="fused", **fast),
         dict(task="inference", precision=args.fast_precision, attention="fused")),
        ("inference: both with our attention dispatch, same precision",
         dict(task="inference", **fast),
         dict(task="inference", precision=args.fast_precision, attention="dispatch")),
    ]
    if args.pairs:
        pairs = [p for p in pairs if any(key in p[0] for key in args.pairs)]
    out = []
    print(f"\n# Side by side with the original (batch {args.compare_batch}, "
          f"{args.repeats} interleaved pairs)")
    for name, ours_kw, orig_kw in pairs:
        ratios, a_runs, b_runs = [], [], []
        for _ in range(args.repeats):
            a = measure(impl="ours", batch=args.compare_batch, **ours_kw, **common)
            b = measure(impl="original", original_src=args.original_src,
                        batch=args.compare_batch, **orig_kw, **common)
            a_runs.append(a)
            b_runs.append(b)
            if "error" in a or "error" in b:
                print(f"{name}: ERROR {a.get('error') or b.get('error')}")
                break
            ratios.append(a["samples_per_s"] / b["samples_per_s"])
        entry = {"name": name, "ours": a_runs, "original": b_runs, "ratios": ratios}
        if ratios:
            entry["ratio_median"] = statistics.median(ratios)
            entry["ours_samples_per_s"] = statistics.median(r["samples_per_s"] for r in a_runs)
            entry["original_samples_per_s"] = statistics.median(r["samples_per_s"] for r in b_runs)
            print(f"{name}\n    ours {entry['ours_samples_per_s']:.3f} samples/s, original "
                  f"{entry['original_samples_per_s']:.3f} samples/s, ratio "
                  f"{entry['ratio_median']:.2f}x (pairs: {', '.join(f'{r:.2f}' for r in ratios)})")
        out.append(entry)
    return out


def meta(device):
    info = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    try:
        import timm

        info["timm"] = timm.__version__
    except ImportError:
        pass
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description="speechbrain-cavmae benchmarks")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS,
                        default=["pretrain", "inference", "encoder", "data"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=None)
    parser.add_argument("--infer_batch", type=int, default=None)
    parser.add_argument("--compare_batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", nargs="+", default=None,
                        help="compare: only the pairs whose name contains one of these")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--original_src", default=os.environ.get("CAVMAE_ORIGINAL_SRC"))
    parser.add_argument("--fast_precision", default=None,
                        help="precision of our fast path (default: bf16 where supported)")
    parser.add_argument("--compile", action="store_true", help="torch.compile our model")
    parser.add_argument("--quick", action="store_true", help="small batches, fewer iterations")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    gpu = args.device == "cuda"
    if args.batches is None:
        args.batches = [1, 2] if args.quick else ([16, 32, 64, 96] if gpu else [1, 2, 4])
    if args.infer_batch is None:
        args.infer_batch = 64 if gpu else 4
    if args.quick:
        args.iters, args.warmup = 2, 1
    if args.fast_precision is None:
        args.fast_precision = "bf16" if "bf16" in precisions(args.device) else "fp32"
    results = run_sections(args)
    out = Path(args.out or f"results/bench/bench-{args.device}-{datetime.date.today()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
