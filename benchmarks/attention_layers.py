"""One attention layer, PyTorch's fused kernel against our explicit one, and the bf16 error.

``python -m benchmarks.attention_layers [--out FILE.json]`` measures two things on the CPU:

* **timing** (the bf16 rows only on a CPU with bf16 instructions, see ``--bf16``):
  forward + backward (and, for one shape, forward without gradients) of one
  :class:`speechbrain_cavmae.model.attention.SelfAttention` layer (qkv projection, attention,
  output projection) at CAV-MAE's shapes, batch 4, under bf16 autocast, with
  ``kernel="fused"`` (``scaled_dot_product_attention``) and ``kernel="explicit"`` (the
  chunked softmax(q k^T) v of :func:`speechbrain_cavmae.model.attention.explicit_attention`);
  plus the float32 decoder shape, and a variant of the explicit path that computes the
  scores in float32 (what keeping the fused kernel's precision would cost). The variants of
  a shape run interleaved (A B A B ...) in one process, so a busy machine slows them alike:
  the ratio of each round is the robust figure, the milliseconds are medians;
* **error**: the relative error (Frobenius norm) of the attention output under bf16
  autocast against the same computation in float64 on the same bf16-rounded inputs, for
  random queries and keys scaled so that the attention logits have standard deviation 1
  and 9, on the 708-token decoder shape.

Shapes (tokens x heads of head_dim): 128 x 12 of 64 (the visible audio tokens of a masked
1024-frame clip), 177 x 12 of 64 (the visible audio + visual tokens in the shared layer),
512 x 12 of 64 (an unmasked 1024-frame clip's audio tokens), 708 x 16 of 32 (the decoder:
512 audio + 196 visual tokens, 512-d), 1024 x 12 of 64 (2048 frames).

Prints a table and writes one JSON file (``--out``).
"""

import argparse
import json
import platform
import statistics
import sys
import time

import torch

from benchmarks.run import cpu_has_bf16
from speechbrain_cavmae.model.attention import SelfAttention, explicit_attention
from benchmarks.machine import machine_description

#: ``(name, tokens, heads, head_dim)``.
SHAPES = [
    ("128 tokens", 128, 12, 64),
    ("177 tokens", 177, 12, 64),
    ("512 tokens", 512, 12, 64),
    ("708-token decoder", 708, 16, 32),
    ("1024 tokens", 1024, 12, 64),
]
DECODER = SHAPES[3]


def explicit_fp32_scores(q, k, v, scale):
    """The explicit attention with the scores and softmax in float32 (bf16 in and out)."""
    attn = ((q.float() * scale) @ k.float().transpose(-2, -1)).softmax(dim=-1)
    return (attn.to(v.dtype) @ v)


class Fp32ScoresAttention(SelfAttention):
    """:class:`SelfAttention` whose explicit path keeps the scores in float32."""

    def forward(self, x, attn_mask=None, is_causal=False):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        with torch.autocast("cpu", enabled=False):
            x = explicit_fp32_scores(q, k, v, self.scale)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


def layer(variant, heads, head_dim):
    """The attention layer of a variant: ``fused``, ``explicit`` or ``explicit_fp32_scores``."""
    dim = heads * head_dim
    if variant == "explicit_fp32_scores":
        module = Fp32ScoresAttention(dim, heads, qkv_bias=True)
    else:
        module = SelfAttention(dim, heads, qkv_bias=True)
        module.kernel = variant
    return module


def time_call(fn, warmup, iters):
    """Median seconds of ``fn()`` over ``iters`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step(module, x, precision, backward):
    """One forward (+ backward) call of ``module`` on ``x``."""
    dtype = torch.bfloat16 if precision == "bf16" else None

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
            if backward:
                module(x).float().sum().backward()
            else:
                with torch.no_grad():
                    module(x)

    return run


def compare(name, tokens, heads, head_dim, variants, precision="bf16", backward=True,
            batch=4, rounds=5, warmup=2, iters=5):
    """Interleaved timing of ``variants`` on one shape; returns a result dict.

    ``ratios[v]``: per round, the first variant's time over ``v``'s (> 1: ``v`` is faster).
    """
    torch.manual_seed(0)
    modules = {v: layer(v, heads, head_dim) for v in variants}
    state = modules[variants[0]].state_dict()
    for module in modules.values():
        module.load_state_dict(state)
    x = torch.randn(batch, tokens, heads * head_dim, requires_grad=backward)
    seconds = {v: [] for v in variants}
    for _ in range(rounds):
        for v in variants:
            seconds[v].append(time_call(step(modules[v], x, precision, backward), warmup, iters))
    base = variants[0]
    return {
        "name": name, "tokens": tokens, "heads": heads, "head_dim": head_dim, "batch": batch,
        "precision": precision, "backward": backward, "rounds": rounds, "warmup": warmup,
        "iters": iters,
        "ms": {v: 1000 * statistics.median(s) for v, s in seconds.items()},
        "ms_rounds": {v: [round(1000 * t, 2) for t in s] for v, s in seconds.items()},
        "ratios": {v: [a / b for a, b in zip(seconds[base], seconds[v])]
                   for v in variants[1:]},
        "ratio_median": {v: statistics.median(a / b for a, b in zip(seconds[base], seconds[v]))
                         for v in variants[1:]},
    }


def relative_errors(tokens=708, heads=16, head_dim=32, batch=4, logit_std=1.0, seed=0):
    """Relative error of the bf16 attention outputs against float64 on the same inputs.

    Queries, keys and values are drawn in float32 and rounded to bf16 (what the bf16 qkv
    projection hands the kernel); queries are scaled so that the logits
    ``q k^T / sqrt(head_dim)`` have standard deviation ``logit_std``.

    Returns
    -------
    dict
        ``{"fused": e, "explicit": e, "explicit_fp32_scores": e}`` with
        ``e = ||out - ref|| / ||ref||``.
    """
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, heads, tokens, head_dim)
    q, k, v = (torch.randn(shape, generator=gen).to(torch.bfloat16) for _ in range(3))
    q = (q.float() * logit_std).to(torch.bfloat16)
    scale = head_dim**-0.5
    ref = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = {
            "fused": torch.nn.functional.scaled_dot_product_attention(q, k, v),
            "explicit": explicit_attention(q, k, v, scale=scale),
        }
    outputs["explicit_fp32_scores"] = explicit_fp32_scores(q, k, v, scale)
    return {name: float((out.double() - ref).norm() / ref.norm())
            for name, out in outputs.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/attention_layers.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per shape")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5, help="timed calls per round")
    parser.add_argument("--shapes", nargs="+", default=None,
                        help="names of SHAPES to time (default: all)")
    parser.add_argument("--bf16", type=lambda v: v.lower() == "true", default=None,
                        help="time the bf16 rows (default: only on a CPU with bf16 "
                             "instructions, avx512_bf16 or amx_bf16; elsewhere bf16 matrix "
                             "products are emulated and their timings say nothing)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    common = {"batch": args.batch, "rounds": args.rounds, "warmup": args.warmup,
              "iters": args.iters}
    bf16 = args.bf16 if args.bf16 is not None else cpu_has_bf16()
    timing = []
    for name, tokens, heads, head_dim in SHAPES:
        if args.shapes and name not in args.shapes:
            continue
        if bf16:
            variants = ["fused", "explicit"]
            if name == DECODER[0]:
                variants.append("explicit_fp32_scores")
            timing.append(compare(name, tokens, heads, head_dim, variants, **common))
            if name == DECODER[0]:
                timing.append(compare(name, tokens, heads, head_dim, ["fused", "explicit"],
                                      backward=False, **common))
        if name == DECODER[0]:
            timing.append(compare(name, tokens, heads, head_dim, ["fused", "explicit"],
                                  precision="fp32", **common))
    errors = [{"tokens": DECODER[1], "heads": DECODER[2], "head_dim": DECODER[3],
               "batch": args.batch, "logit_std": std,
               "relative_error": relative_errors(*DECODER[1:], batch=args.batch,
                                                 logit_std=std)}
              for std in (1.0, 9.0)]
    report = {
        "benchmark": "attention_layers",
        "command": " ".join(["python -m benchmarks.attention_layers",
                             *(sys.argv[1:] if argv is None else argv)]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "torch": torch.__version__, "python": platform.python_version(),
        "machine": machine_description(), "threads": args.threads,
        "cpu_has_bf16": cpu_has_bf16(), "bf16_timed": bf16,
        "note": "variants of a row interleaved in one process; ratio = fused ms / other ms "
                "per round (> 1: the other is faster), median over rounds",
        "timing": timing, "errors": errors,
    }
    print(f"{'shape':<20} {'prec':<5} {'grad':<5} {'fused ms':>9} {'explicit ms':>12} "
          f"{'ratio':>6} {'fp32-scores ms':>15}")
    for row in timing:
        extra = row["ms"].get("explicit_fp32_scores")
        print(f"{row['name']:<20} {row['precision']:<5} {str(row['backward']):<5} "
              f"{row['ms']['fused']:>9.1f} {row['ms']['explicit']:>12.1f} "
              f"{row['ratio_median']['explicit']:>6.2f} "
              f"{'' if extra is None else f'{extra:.1f}':>15}")
    for err in errors:
        print(f"relative error, logits std {err['logit_std']:g}: " + ", ".join(
            f"{k} {100 * v:.2f} %" for k, v in err["relative_error"].items()))
    if args.out:
        from pathlib import Path

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", encoding="utf8") as handle:
            json.dump(report, handle, indent=1)
    return report


if __name__ == "__main__":
    main()
