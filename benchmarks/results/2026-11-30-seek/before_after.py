"""Interleaved rounds of sequential decoding, seeking as at dabf423 and seeking now.

One frame of the ten of a training sample (``load_video_frames(indices=[i])``, i = 0..9),
on the 1280x720 sample clip and on the benchmark's generated clip; each case is timed in
turn within each round, and a ratio is the median over the rounds of the round's ratio.
The decoder of dabf423 is read from git into a module next to the current one. Run from the
repository root::

    OMP_NUM_THREADS=1 python benchmarks/results/2026-11-30-seek/before_after.py 7 out.json
"""

import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from benchmarks.data_pipeline import SHARED  # noqa: E402
from benchmarks.shards import _median_ratio, synthetic_720p  # noqa: E402
from speechbrain_cavmae.data import frames as after  # noqa: E402

BEFORE = "dabf423"


def load_before(work):
    source = subprocess.run(["git", "show", f"{BEFORE}:speechbrain_cavmae/data/frames.py"],
                            cwd=ROOT, check=True, capture_output=True, text=True).stdout
    path = Path(work) / "frames_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("speechbrain_cavmae.data._frames_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(rounds, out):
    torch.set_num_threads(1)
    work = tempfile.mkdtemp(prefix="cavmae_seek_ab_")
    before = load_before(work)
    clips = {"sample_1280x720": str(SHARED / "KlsG1EnBEjc_000361.mp4"),
             "synthetic_1280x720_keyint60": synthetic_720p(work)}
    report = {"before": BEFORE, "rounds": rounds}
    for name, path in clips.items():
        cases = {
            "sequential": lambda i: after.load_video_frames(path, indices=[i], seek=False),
            "seeking_before": lambda i: before.load_video_frames(path, indices=[i]),
            "seeking_after": lambda i: after.load_video_frames(path, indices=[i]),
        }
        for case in cases.values():
            case(0)  # warm-up
        runs = {key: [] for key in cases}
        for _ in range(rounds):
            for key, case in cases.items():
                start = time.perf_counter()
                for i in range(10):
                    case(i)
                runs[key].append((time.perf_counter() - start) / 10)
        report[name] = {
            "ratio_sequential_over_seeking_before": round(
                _median_ratio(runs["sequential"], runs["seeking_before"]), 2),
            "ratio_sequential_over_seeking_after": round(
                _median_ratio(runs["sequential"], runs["seeking_after"]), 2),
            "ratio_seeking_before_over_after": round(
                _median_ratio(runs["seeking_before"], runs["seeking_after"]), 2),
            "s_per_frame": {k: [round(x, 4) for x in v] for k, v in runs.items()},
        }
        print(name, {k: v for k, v in report[name].items() if k != "s_per_frame"}, flush=True)
    with open(out, "w", encoding="utf8") as handle:
        json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
