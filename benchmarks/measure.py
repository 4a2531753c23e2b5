"""One measurement, run in its own process: ``python -m benchmarks.measure --task ... --json``.

Tasks
-----
pretrain   full training step (forward, losses, backward, Adam) of the pretraining model
inference  classifier forward in one mode (no grad)
encoder    audio-only encoder forward at a given audio length (no grad)

Prints one JSON line with samples/s (median over timed iterations), step time and peak
memory (CUDA: max allocated; CPU: the process's peak resident set).
"""

import argparse
import contextlib
import json
import platform
import resource
import statistics
import sys
import time

import torch

from speechbrain_cavmae import CAVMAE, CAVMAEClassifier, ContrastiveLoss, MaskedReconstructionLoss
from speechbrain_cavmae.model.attention import set_attention_kernel

KERNELS = {"math": "explicit", "fused": "fused", "dispatch": "dispatch"}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def autocast(device, precision):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def build(args, device):
    """Model and a closure ``run()`` doing one iteration of the task."""
    b = args.batch
    audio = torch.randn(b, args.audio_length, 128, device=device)
    image = torch.randn(b, 3, args.img_size, args.img_size, device=device)
    if args.task == "pretrain":
        if args.impl == "original":
            from benchmarks.original_model import load_original_module, quiet

            module = load_original_module(args.original_src, attention=args.attention)
            model = quiet(module.CAVMAE, norm_pix_loss=True, audio_length=args.audio_length,
                          img_size=args.img_size).to(device)

            def loss_fn():
                return model(audio, image, 0.75, 0.75, mae_loss_weight=1.0,
                             contrast_loss_weight=0.01)[0]
        else:
            model = CAVMAE(audio_length=args.audio_length, img_size=args.img_size).to(device)
            set_attention_kernel(model, KERNELS[args.attention])
            rec, con = MaskedReconstructionLoss(norm_pix=True), ContrastiveLoss()
            forward = torch.compile(model) if args.compile else model

            def loss_fn():
                out = forward(audio, image, 0.75, 0.75)
                return (rec(out["pred_a"], out["target_a"], out["mask_a"])
                        + rec(out["pred_v"], out["target_v"], out["mask_v"])
                        + 0.01 * con(out["rep_a"], out["rep_v"]))
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = args.optimizer or ("default" if args.impl == "original" else "fused")
        opt = torch.optim.Adam(params, lr=1e-5, betas=(0.95, 0.999), weight_decay=5e-7,
                               **({"fused": True} if optimizer == "fused" else {}))
        args.optimizer = optimizer
        model.train()

        def run():
            with autocast(device, args.precision):
                loss = loss_fn()
            loss.backward()
            if optimizer != "none":
                opt.step()
            opt.zero_grad(set_to_none=True)
        return run

    if args.impl == "original":
        from benchmarks.original_model import load_original_module, quiet

        module = load_original_module(args.original_src, attention=args.attention)
        model = quiet(module.CAVMAEFT, label_dim=527, audio_length=args.audio_length,
                      img_size=args.img_size).to(device).eval()

        def forward():
            return model(audio, image, args.mode)
    else:
        model = CAVMAEClassifier(527, mode=args.mode, audio_length=args.audio_length,
                                 img_size=args.img_size).to(device).eval()
        set_attention_kernel(model, KERNELS[args.attention])
        fn = torch.compile(model) if args.compile else model
        if args.task == "encoder":
            enc = torch.compile(model.encoder.encode_audio) if args.compile else model.encoder.encode_audio

            def forward():
                return enc(audio)
        else:
            def forward():
                return fn(audio, image)

    def run():
        with torch.inference_mode(), autocast(device, args.precision):
            forward()
    return run


def write_profile(run, device, path=None, json_path=None, meta=None):
    """Profile one iteration; write the operator table sorted by self time on the device
    (``path``) and/or every operator's self and total CPU time as JSON (``json_path``, read
    by :mod:`benchmarks.profile_breakdown`)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run()
        sync(device)
    averages = prof.key_averages()
    if path:
        key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        with open(path, "w") as handle:
            handle.write(averages.table(sort_by=key, row_limit=45, max_name_column_width=60))
    if json_path:
        ops = [{"name": e.key, "self_ms": e.self_cpu_time_total / 1000,
                "total_ms": e.cpu_time_total / 1000, "calls": e.count} for e in averages]
        ops.sort(key=lambda op: -op["self_ms"])
        with open(json_path, "w") as handle:
            json.dump({"run": meta or {}, "operators": ops}, handle, indent=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["pretrain", "inference", "encoder"], default="pretrain")
    parser.add_argument("--impl", choices=["ours", "original"], default="ours")
    parser.add_argument("--original_src", help="'src' folder of a cav-mae checkout")
    parser.add_argument("--attention", choices=list(KERNELS), default=None,
                        help="attention kernel: math (explicit everywhere; the original as "
                             "released), fused (SDPA everywhere) or dispatch (our choice: "
                             "explicit in pieces on the CPU in bf16, else SDPA). Default: "
                             "dispatch for ours (our default), fused for the original")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--optimizer", choices=["fused", "default", "none"], default=None,
                        help="pretrain: Adam fused (ours by default), torch's default "
                             "implementation (the original's), or none (forward+backward only)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--audio_length", type=int, default=1024)
    parser.add_argument("--img_size", type=int, default=224)
    parser.add_argument("--mode", default="multimodal")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--profile", default=None,
                        help="after timing, profile one more iteration and write the table "
                             "of operators (by self device time) to this file")
    parser.add_argument("--profile_json", default=None,
                        help="after timing, profile one more iteration and write every "
                             "operator's CPU time to this JSON file (for "
                             "benchmarks.profile_breakdown)")
    args = parser.parse_args(argv)
    if args.attention is None:
        args.attention = "dispatch" if args.impl == "ours" else "fused"
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    run = build(args, device)
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        run()
    sync(device)
    warmup_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.iters):
        t = time.perf_counter()
        run()
        sync(device)
        times.append(time.perf_counter() - t)
    step = statistics.median(times)
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {k: v for k, v in vars(args).items()
              if k not in ("original_src", "profile", "profile_json")}
    result.update(
        step_s=step,
        step_times=times,
        samples_per_s=args.batch / step,
        peak_mem_mb=round(peak_mb, 1),
        warmup_s=round(warmup_s, 2),
        device_name=(torch.cuda.get_device_name() if device.type == "cuda" else platform.processor()
                     or platform.machine()),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
    )
    if args.profile or args.profile_json:
        write_profile(run, device, args.profile, args.profile_json, meta=result)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
