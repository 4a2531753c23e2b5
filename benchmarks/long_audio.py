"""The audio of one item from a 20-minute file vs from a 10-second file, as ratios.

The audio part of a dataset item (``AVSampleLoader.waveform`` then ``.fbank``: decode,
resample to 16 kHz, 1024-frame fbank) from a 44.1 kHz 16-bit mono file of 20 minutes and
of 10 seconds (the same signal, noise at a low level), wav and flac. Only the first
10.26 s are used; since issue 24 only they are read (``load_audio(max_samples=...)``).
The ``whole`` case reads and resamples all of the file, as before (``waveform(whole=True)``).
The frame of an item is left out: it is the same for both files and would only bring the
ratios closer to 1.

Each case runs in its own process (``--one``), so that its peak memory is its own: the
peak resident set added by the item (``VmHWM`` after it, reset just before it, minus the
resident set before it; after a warm-up item from a 0.1 s file) and the process's whole
peak, and the median time over ``--repeats`` items (one for the ``whole`` case). Cases run
in interleaved rounds; a ratio is the median over the rounds of the round's ratio.

Usage::

    python -m benchmarks.long_audio [--rounds 3] [--repeats 10] [--out results/long_audio.json]
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

RATE = 44100
LONG_S, SHORT_S = 20 * 60, 10


def write_inputs(folder):
    """The wav and flac files of both lengths, a 0.1 s warm-up wav, and a manifest."""
    import soundfile

    rng = np.random.default_rng(0)
    signal = (0.05 * rng.standard_normal(LONG_S * RATE)).astype(np.float32)
    files = {}
    for fmt in ("wav", "flac"):
        for name, seconds in (("long", LONG_S), ("short", SHORT_S)):
            path = os.path.join(folder, f"{name}.{fmt}")
            soundfile.write(path, signal[: seconds * RATE], RATE, subtype="PCM_16")
            files[f"{name}.{fmt}"] = path
    soundfile.write(os.path.join(folder, "warm.wav"), signal[: RATE // 10], RATE, subtype="PCM_16")
    entries = {key: {"wav": path, "video_id": key.replace(".", "_"), "labels": []}
               for key, path in files.items()}
    entries["warm"] = {"wav": os.path.join(folder, "warm.wav"), "video_id": "warm", "labels": []}
    manifest = os.path.join(folder, "manifest.json")
    with open(manifest, "w", encoding="utf8") as handle:
        json.dump(entries, handle)
    return manifest, files


def one(manifest, sid, whole, repeats):
    """Measure one case in this process: {seconds, peak_mb}."""
    import torch

    from speechbrain_cavmae.data.dataset import build_dataset

    torch.set_num_threads(1)
    loader = build_dataset(manifest, None, {"frame_source": "video"}).loader

    def item():
        return loader.fbank(loader.waveform(sid, whole=whole), sid)

    loader.fbank(loader.waveform("warm", whole=whole), "warm")
    times, peaks = [], []
    for _ in range(repeats):
        before = _reset_peak()
        start = time.perf_counter()
        feats = item()
        times.append(time.perf_counter() - start)
        peaks.append(_status_kb("VmHWM") - before)
        assert feats.shape == (1024, 128)
    return {"seconds": statistics.median(times), "peak_mb": max(peaks) / 1024.0,
            "process_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


def _status_kb(field):
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak():
    """Reset the process's peak resident set (``VmHWM``; Linux 4.0+) to the current one,
    which it returns (kB)."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
        handle.write("5")
    return _status_kb("VmRSS")


CASES = {  # name: (manifest id, whole)
    "wav 10 s": ("short.wav", False),
    "wav 20 min": ("long.wav", False),
    "wav 20 min, whole file (before)": ("long.wav", True),
    "flac 10 s": ("short.flac", False),
    "flac 20 min": ("long.flac", False),
}
RATIOS = {  # name: (numerator case, denominator case)
    "wav: 20 min / 10 s": ("wav 20 min", "wav 10 s"),
    "flac: 20 min / 10 s": ("flac 20 min", "flac 10 s"),
    "wav 20 min: whole (before) / window": ("wav 20 min, whole file (before)", "wav 20 min"),
}


def run_case(manifest, name, repeats):
    sid, whole = CASES[name]
    command = [sys.executable, "-m", "benchmarks.long_audio", "--one", manifest, sid,
               "--repeats", str(1 if whole else repeats)] + (["--whole"] if whole else [])
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default=os.path.join("results", "long_audio.json"))
    parser.add_argument("--one", nargs=2, metavar=("MANIFEST", "ID"), help=argparse.SUPPRESS)
    parser.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(*args.one, args.whole, args.repeats)))
        return
    from benchmarks.machine import machine_description

    rounds = []
    with tempfile.TemporaryDirectory() as folder:
        manifest, _ = write_inputs(folder)
        for r in range(args.rounds):
            rounds.append({name: run_case(manifest, name, args.repeats) for name in CASES})
            print(f"round {r + 1}: " + json.dumps(rounds[-1]), flush=True)
    summary = {name: {key: statistics.median(rnd[name][key] for rnd in rounds)
                      for key in ("seconds", "peak_mb", "process_peak_mb")} for name in CASES}
    ratios = {}
    for name, (num, den) in RATIOS.items():
        ratios[name] = {
            "time": statistics.median(rnd[num]["seconds"] / rnd[den]["seconds"] for rnd in rounds),
            "peak_added": statistics.median(
                rnd[num]["peak_mb"] / max(rnd[den]["peak_mb"], 1e-9) for rnd in rounds),
            "process_peak": statistics.median(
                rnd[num]["process_peak_mb"] / rnd[den]["process_peak_mb"] for rnd in rounds),
            # the peaks added by the items (MB): a ratio of two near-zero peaks says little
            "peak_added_mb": [summary[num]["peak_mb"], summary[den]["peak_mb"]],
        }
    result = {"machine": machine_description(), "python": platform.python_version(),
              "load_average": os.getloadavg(), "rounds": rounds, "median": summary,
              "ratios": ratios, "command": "python -m benchmarks.long_audio " + " ".join(
                  argv if argv is not None else sys.argv[1:])}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf8") as handle:
        json.dump(result, handle, indent=1)
    print(json.dumps({"median": summary, "ratios": ratios}, indent=1))


if __name__ == "__main__":
    main()
