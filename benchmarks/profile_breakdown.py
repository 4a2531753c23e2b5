"""Where a CPU training step's time goes, for two implementations side by side.

Reads operator lists written by ``python -m benchmarks.measure ... --profile_json FILE``
(one profiled iteration each) and splits each step into the parts that decide how far
apart two implementations of the same model can be::

    python -m benchmarks.profile_breakdown original.json ours.json --names original ours

Parts (milliseconds of CPU time in the profiled iteration):

attention kernels     PyTorch's scaled-dot-product kernels, forward and backward (self time)
matrix products       mm / addmm / bmm / baddbmm and the patch-embedding convolutions
casts and copies      copy_ / _to_copy (autocast's casts, contiguous copies)
optimizer step        everything under ``Optimizer.step`` and ``Optimizer.zero_grad``
everything else       the rest: layer norms, GELU, softmax, adds, gathers, Python overhead

It then lists the operators whose self time differs most between the two. CUDA profiles
keep their time in device kernels rather than in these operators; use the table that
``--profile`` writes for those.
"""

import argparse
import json
import sys

ATTENTION = ("scaled_dot_product", "flash_attention", "efficient_attention", "cudnn_attention")
MATRIX = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mkldnn_convolution",
          "aten::convolution_backward"}
CASTS = {"aten::copy_", "aten::_to_copy"}
OPTIMIZER = ("Optimizer.step", "Optimizer.zero_grad")
FIELDS = {"name", "self_ms", "total_ms", "calls"}
PARTS = ("attention kernels", "matrix products", "casts and copies", "optimizer step",
         "everything else", "total")


def breakdown(ops):
    """Split one profiled iteration into :data:`PARTS`.

    Arguments
    ---------
    ops : list of dict
        ``{"name", "self_ms", "total_ms", "calls"}`` per operator, as ``--profile_json`` writes.

    Returns
    -------
    dict
        Milliseconds per part; ``total`` is the sum of all self times.

    Example
    -------
    >>> ops = [{"name": "aten::mm", "self_ms": 6.0, "total_ms": 6.0, "calls": 2},
    ...        {"name": "aten::_fused_adam_", "self_ms": 1.0, "total_ms": 1.0, "calls": 1},
    ...        {"name": "Optimizer.step#Adam.step", "self_ms": 0.5, "total_ms": 1.5, "calls": 1},
    ...        {"name": "aten::gelu", "self_ms": 2.5, "total_ms": 2.5, "calls": 1}]
    >>> breakdown(ops)["optimizer step"], breakdown(ops)["everything else"]
    (1.5, 2.5)
    """
    parts = dict.fromkeys(PARTS, 0.0)
    for op in ops:
        name = op["name"]
        parts["total"] += op["self_ms"]
        if name.startswith(OPTIMIZER):
            parts["optimizer step"] += op["total_ms"]
        elif any(key in name for key in ATTENTION):
            parts["attention kernels"] += op["self_ms"]
        elif name in MATRIX:
            parts["matrix products"] += op["self_ms"]
        elif name in CASTS:
            parts["casts and copies"] += op["self_ms"]
    named = sum(parts[p] for p in PARTS[:4])
    parts["everything else"] = parts["total"] - named
    return parts


def largest_differences(ops_a, ops_b, top=10):
    """Operators whose self time differs most between two iterations.

    Returns
    -------
    list of tuple
        ``(name, ms in a, calls in a, ms in b, calls in b)``, largest difference first.
    """
    a = {op["name"]: op for op in ops_a}
    b = {op["name"]: op for op in ops_b}
    empty = {"self_ms": 0.0, "calls": 0}

    def row(name):
        x, y = a.get(name, empty), b.get(name, empty)
        return name, x["self_ms"], x["calls"], y["self_ms"], y["calls"]

    rows = [row(name) for name in set(a) | set(b)]
    rows.sort(key=lambda r: -abs(r[1] - r[3]))
    return rows[:top]


def load(path):
    """Read a ``--profile_json`` file, naming it in the error when it is not one."""
    try:
        with open(path) as handle:
            data = json.load(handle)
        incomplete = [op for op in data["operators"] if not FIELDS <= op.keys()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise SystemExit(f"{path}: not an operator list from --profile_json ({err!r})") from None
    if incomplete:
        raise SystemExit(f"{path}: not an operator list from --profile_json (an operator "
                         f"lacks {sorted(FIELDS - incomplete[0].keys())})")
    return data


def format_table(names, datas, top=10):
    """The breakdown of each profile side by side, then the largest differences."""
    parts = [breakdown(d["operators"]) for d in datas]
    width = max(len(p) for p in PARTS)
    lines = [f"{'':{width}}  " + "  ".join(f"{n:>16}" for n in names)]
    for part in PARTS:
        cells = [f"{p[part]:9.0f} ms {100 * p[part] / p['total']:3.0f}%" for p in parts]
        lines.append(f"{part:{width}}  " + "  ".join(f"{c:>16}" for c in cells))
    if len(datas) == 2:
        lines.append("")
        lines.append(f"largest differences ({names[0]} - {names[1]}), self ms (calls):")
        for name, ms_a, n_a, ms_b, n_b in largest_differences(
                datas[0]["operators"], datas[1]["operators"], top):
            lines.append(f"  {name[:58]:58}  {ms_a:8.1f} ({n_a:4d})  {ms_b:8.1f} ({n_b:4d})")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="+", help="files written by measure --profile_json")
    parser.add_argument("--names", nargs="+", help="column names (default: the file names)")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args(argv)
    names = args.names or args.profiles
    if len(names) != len(args.profiles):
        parser.error("give one name per profile")
    datas = [load(path) for path in args.profiles]
    sys.stdout.write(format_table(names, datas, args.top) + "\n")


if __name__ == "__main__":
    main()
