"""``cavmae classify`` before / after a change, as whole processes, in interleaved pairs.

Each round runs the command of each side once (``before`` then ``after``) on the same clips
with ``--json``; every run's scores must equal the first ``before`` run's (same classes, scores
within ``--atol``), and the figure is the median over the rounds of the pair's wall-time ratio
before / after (so that a change of the machine's load during the run affects both sides
alike). Times are the operating system's accounting of each finished process (``os.wait4``:
wall, user and system seconds, peak memory): model loading, decoding and scoring together.

The two sides differ only by ``PYTHONPATH``: ``--before`` is a checkout of the earlier code
(``git worktree add /tmp/before main``), ``--after`` this one. The model is a folder given by
``--model``; ``--make_model DIR`` writes a ViT-B classifier (the released sizes: 768 wide,
11 + 1 blocks, 12 heads, 1024 fbank frames, 224 px) with random weights (seed 0) and the
classes of ``--label_csv`` (527 for AudioSet), so that the timing is that of the released
checkpoints without them.

Usage::

    python -m benchmarks.classify --make_model /tmp/vitb \\
        --label_csv /work/shared/samples/class_labels_indices_as.csv
    python -m benchmarks.classify --model /tmp/vitb --before /tmp/before --after . \\
        --rounds 3 --out benchmarks/results/DATE-classify/pairs.json CLIP [CLIP ...]
    python -m benchmarks.classify --compare A.json B.json   # same scores in two outputs?
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_model(out_dir, label_csv, seed=0):
    """Write a ViT-B CAV-MAE classifier with random weights as a model folder."""
    import torch

    from speechbrain_cavmae.checkpoints.model_folder import write_model_folder
    from speechbrain_cavmae.data.dataset import label_table
    from speechbrain_cavmae.model.classifier import CAVMAEClassifier

    torch.manual_seed(seed)
    n_classes = label_table(label_csv).num_classes
    model = CAVMAEClassifier(n_classes, mode="multimodal")  # the released sizes by default
    return write_model_folder(model.eval(), out_dir, label_csv=label_csv, loss="BCE",
                              source=f"random weights, seed {seed}")


def load_outputs(path):
    """The JSON list that ``cavmae classify --json`` printed (the last one in the file)."""
    text = Path(path).read_text()
    start = text.rfind("\n[\n") + 1 if "\n[\n" in text else text.index("[")
    return json.loads(text[start:text.index("\n]", start) + 2])


def same_scores(first, second, atol=1e-5):
    """Raise ``AssertionError`` unless two ``--json`` outputs name the same files, modes,
    classes and scores (within ``atol``); return the largest score difference."""
    assert [r["file"] for r in first] == [r["file"] for r in second], "different files"
    worst = 0.0
    for a, b in zip(first, second):
        assert "error" not in a and "error" not in b, (a.get("error"), b.get("error"))
        pa, pb = a["predictions"], b["predictions"]
        assert [p["index"] for p in pa] == [p["index"] for p in pb], (a["file"], pa, pb)
        for x, y in zip(pa, pb):
            worst = max(worst, abs(x["score"] - y["score"]))
    assert worst <= atol, f"scores differ by {worst:.3g} > {atol}"
    return worst


def run_once(pythonpath, argv):
    """Run ``cavmae`` (the command next to this Python) with ``argv`` under
    ``PYTHONPATH=pythonpath``; ``(times, parsed --json output)``."""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(pythonpath))
    cmd = [os.path.join(os.path.dirname(sys.executable), "cavmae"), *argv]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} (PYTHONPATH={pythonpath}) exited {proc.returncode}")
    times = {"wall_s": wall, "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
             "peak_rss_mib": usage.ru_maxrss / 1024}
    return times, json.loads(out)


def compare(args):
    """Interleaved pairs before / after; the results as a dict."""
    argv = ["classify", *args.clips, "--model", args.model, "--json", "--top_k", "5",
            "--device", "cpu"]
    reference = None
    rounds = []
    for k in range(args.warmup + args.rounds):
        row = {}
        for side, path in (("before", args.before), ("after", args.after)):
            times, outputs = run_once(path, argv)
            if reference is None:
                reference = outputs
            times["max_score_diff"] = same_scores(reference, outputs, args.atol)
            row[side] = times
        row["ratio_wall"] = row["before"]["wall_s"] / row["after"]["wall_s"]
        row["ratio_cpu"] = ((row["before"]["user_s"] + row["before"]["sys_s"])
                            / (row["after"]["user_s"] + row["after"]["sys_s"]))
        print(f"round {k}{' (warm-up)' if k < args.warmup else ''}: before "
              f"{row['before']['wall_s']:.1f} s, after {row['after']['wall_s']:.1f} s, "
              f"ratio {row['ratio_wall']:.2f}", file=sys.stderr)
        if k >= args.warmup:
            rounds.append(row)

    def med(key, side=None):
        return statistics.median(r[side][key] if side else r[key] for r in rounds)

    return {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_average_at_end": os.getloadavg()},
        "command": ["cavmae", *argv], "before": args.before, "after": args.after,
        "rounds": rounds,
        "median": {"before_wall_s": med("wall_s", "before"), "after_wall_s": med("wall_s", "after"),
                   "ratio_wall": med("ratio_wall"), "ratio_cpu": med("ratio_cpu")},
        "scores": reference,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="*", metavar="CLIP")
    parser.add_argument("--make_model", metavar="DIR", help="write the ViT-B model folder")
    parser.add_argument("--label_csv", help="classes of --make_model")
    parser.add_argument("--compare", nargs=2, metavar="JSON",
                        help="check that two --json outputs have the same scores")
    parser.add_argument("--model", help="model folder")
    parser.add_argument("--before", help="PYTHONPATH of the earlier code")
    parser.add_argument("--after", default=str(ROOT), help="PYTHONPATH of this code")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--atol", type=float, default=1e-5)
    parser.add_argument("--out", help="results JSON")
    args = parser.parse_args(argv)
    if args.make_model:
        if not args.label_csv:
            parser.error("--make_model needs --label_csv")
        info = make_model(args.make_model, args.label_csv)
        print(f"wrote {args.make_model}: {info['num_classes']} classes")
        return 0
    if args.compare:
        diff = same_scores(*(load_outputs(p) for p in args.compare), atol=args.atol)
        print(f"same classes, scores within {diff:.3g}")
        return 0
    if not (args.clips and args.model and args.before):
        parser.error("give CLIP ..., --model and --before")
    results = compare(args)
    print(json.dumps(results["median"], indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
