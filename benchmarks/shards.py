"""Shards vs extracted files, and seeking vs sequential 720p decoding, as ratios.

One process, ``torch.set_num_threads(1)``: every figure is per CPU core, and each ratio
compares two cases measured in the same run, in interleaved rounds (so that a change of
the machine's load during the run affects both sides alike): a ratio is the median over
the rounds of the round's ratio; rates are medians over the rounds.

* ``loader``: training items per second (train mode, no augmentation) read from the
  extracted layout (``build_dataset``: 16 kHz wav + ten 224 px JPEG files per clip) and
  from shards of the same manifest (``build_shard_dataset``, shuffle buffer of 100) with
  FLAC audio (the default) and with WAV audio (``--audio_format wav``), with CPU fbank and
  with ``features_on_device``; the ratios shards / files; and the DataLoader workers
  needed to feed 1000 samples/s, ``ceil(1000 / per-core rate)`` (assuming workers scale
  linearly, one core each). The files are in the page cache: this compares CPU cost, not
  the file-system load that shards remove.
* ``seek``: one frame of the ten of a training sample (``load_video_frames(indices=[i])``
  for each i), decoded with seeking vs sequentially from the start (``seek=False``:
  ``speedup``), and vs the decoder before issue 17 (sequential, with a container probe
  that decodes the first frames: ``speedup_vs_before``), on the 1280x720 sample clip and
  on that clip re-encoded with a keyframe every 30, 60, 120 and 250 frames (the same
  pictures, with the keyframe spacing as the one variable); with the bounds set by the
  keyframe spacing and by the reference frames (packets decoded sequentially / with
  seeking, from the packet index).
* ``verify``: the cost of checking shards as they are read (``<shard>.members.sha256`` and
  the whole-file sha256, see ``speechbrain_cavmae/data/shards.py``), with vs without the
  checks (the without side: the same reader with hashing and checks switched off in this
  process, as the reader was before them), FLAC shards of the manifest of ``loader``: the
  records alone (tar reading and hashing: MB per second, the ratio verified / unverified)
  and the training items per core (CPU fbank, the ratio), in CPU time of the process (the
  main figures) and in wall time.

Usage::

    python -m benchmarks.shards [--rounds 3] [--samples 64] [--only {loader,seek,verify}]
                                [--out results/shards.json]
"""

import argparse
import contextlib
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.data_pipeline import _media, clips, write_manifest

ROOT = Path(__file__).resolve().parents[1]


def extracted_manifest(work, copies=16):
    """The two sample clips (or synthetic ones) extracted to the original layout, listed
    ``copies`` times under distinct ids."""
    from speechbrain_cavmae.cli import main as cavmae

    videos, source = clips(work)
    listing = os.path.join(work, "videos.txt")
    Path(listing).write_text("\n".join(videos.values()) + "\n")
    out_dir = os.path.join(work, "extracted")
    assert cavmae(["extract", "--videos", listing, "--output", out_dir]) == 0
    entries = {}
    for k in range(copies):
        for video in videos.values():
            vid = Path(video).stem
            entries[f"{vid}_{k}"] = {"video_id": vid, "labels": [],
                                     "wav": os.path.join(out_dir, "audio", f"{vid}.wav"),
                                     "video_path": os.path.join(out_dir, "frames")}
    return write_manifest(os.path.join(work, "extracted.json"), entries), videos, source


def _median_ratio(a, b):
    """Median over the interleaved rounds of ``a[i] / b[i]``."""
    ratios = sorted(x / y for x, y in zip(a, b))
    return ratios[len(ratios) // 2]


def _rate(make_iter, n):
    items = make_iter()
    next(items)  # warm-up: lazy imports, first file opens
    start = time.perf_counter()
    count = 0
    for _ in items:
        count += 1
        if count == n:
            break
    return count / (time.perf_counter() - start)


def loader_rates(manifest, work, n, rounds):
    """{config: samples/s per core (median of the rounds) from files and from shards with
    FLAC and with WAV audio, the ratios shards / files and the workers for 1000/s}."""
    from speechbrain_cavmae.data.dataset import build_dataset
    from speechbrain_cavmae.data.shards import build_shard_dataset
    from speechbrain_cavmae.data.shard_writer import shard_manifest

    patterns = {}
    for fmt in ("flac", "wav"):
        folder = os.path.join(work, f"shards_{fmt}")
        index = shard_manifest(manifest, folder, shard_size=8, audio_format=fmt)
        last = len(index["shards"]) - 1
        patterns[fmt] = os.path.join(folder, f"train-{{000000..{last:06d}}}.tar")
    out = {}
    for name, cfg in {"cpu_fbank": {}, "features_on_device": {"features_on_device": True}}.items():
        files = build_dataset(manifest, None, dict(cfg, frame_source="extracted"), train=True)
        sources = {"files": files}
        for fmt, pattern in patterns.items():
            sources[f"shards_{fmt}"] = build_shard_dataset(pattern, None, cfg, train=True,
                                                           shuffle=True, shuffle_buffer=100)

        def endless(source):
            def items():
                while True:
                    if source is files:
                        for i in range(len(files)):
                            yield files[i]
                    else:
                        yield from source
            return items

        runs = {key: [] for key in sources}
        for _ in range(rounds):
            for key, source in sources.items():
                runs[key].append(_rate(endless(source), n))
        med = {k: sorted(v)[len(v) // 2] for k, v in runs.items()}
        row = {f"{k}_samples_per_s_per_core": round(v, 1) for k, v in med.items()}
        for key in sources:
            if key != "files":
                row[f"ratio_{key}_over_files"] = round(_median_ratio(runs[key], runs["files"]), 3)
        row.update({f"workers_for_1000_per_s_{k}": math.ceil(1000 / v) for k, v in med.items()})
        row["rounds"] = {k: [round(x, 1) for x in v] for k, v in runs.items()}
        out[name] = row
    return out


@contextlib.contextmanager
def _unverified():
    """Shards read without their checks (no hashing, no member list) in this process."""
    from speechbrain_cavmae.data import shards

    class Unchecked(shards.ShardCheck):
        def read_list(self):
            return None

        def finish(self, file_sha256, samples):
            pass

    check, read = shards.ShardCheck, shards.HashingReader.read
    shards.ShardCheck = Unchecked
    shards.HashingReader.read = lambda self, size=-1: self.stream.read(size)
    try:
        yield
    finally:
        shards.ShardCheck, shards.HashingReader.read = check, read


def verify_rates(manifest, work, n, rounds, passes=5):
    """Reading shards with vs without their checks, in CPU seconds of this process (what
    a loader worker spends; less sensitive than wall time to other jobs on the machine):
    the records alone (MB of shard files per CPU second, all shards ``passes`` times per
    round) and training items per CPU second; interleaved rounds. Wall-time rates are
    recorded too."""
    from speechbrain_cavmae.data.shards import build_shard_dataset
    from speechbrain_cavmae.data.shard_writer import shard_manifest

    folder = os.path.join(work, "shards_verify")
    index = shard_manifest(manifest, folder, shard_size=8)
    last = len(index["shards"]) - 1
    pattern = os.path.join(folder, f"train-{{000000..{last:06d}}}.tar")
    data = build_shard_dataset(pattern, None, {}, train=True, shuffle=True, shuffle_buffer=100)
    megabytes = sum(os.path.getsize(os.path.join(folder, s["name"]))
                    for s in index["shards"]) / 1e6
    cases = {"verified": contextlib.nullcontext, "unverified": _unverified}
    runs = {f"{part}_{clock}": {key: [] for key in cases}
            for part in ("records", "items") for clock in ("cpu", "wall")}

    def timed(part, key, amount, work_):
        cpu, wall = time.process_time(), time.perf_counter()
        work_()
        runs[f"{part}_cpu"][key].append(amount / (time.process_time() - cpu))
        runs[f"{part}_wall"][key].append(amount / (time.perf_counter() - wall))

    def read_records():
        for _ in range(passes):
            for _ in data.records(data.urls):
                pass

    def read_items():
        count = 0
        while count < n:
            for _ in data:
                count += 1
                if count == n:
                    break

    for _ in range(rounds):
        for key, checks in cases.items():
            with checks():
                for _ in data.records(data.urls):  # warm-up: page cache
                    pass
                timed("records", key, passes * megabytes, read_records)
                timed("items", key, n, read_items)
    out = {"shards": len(index["shards"]), "samples": index["total"],
           "megabytes": round(megabytes, 1), "passes": passes, "items_per_round": n}
    for name, row in runs.items():
        out[name] = {k: round(sorted(v)[len(v) // 2], 1) for k, v in row.items()}
        out[f"ratio_{name}_verified_over_unverified"] = round(
            _median_ratio(row["verified"], row["unverified"]), 3)
    out["units"] = {"records": "MB of shard files per second", "items": "training items "
                    "per second (CPU fbank, one core)"}
    out["rounds"] = {name: {k: [round(x, 1) for x in v] for k, v in row.items()}
                     for name, row in runs.items()}
    return out


def packet_bound(path, n=10):
    """Packets decoded per training frame, sequentially vs with seeking (mean over the ten
    frames): the ratio seeking can reach at most, set by the keyframe spacing
    (``bound``), and the one when only reference frames and the wanted frame are decoded
    (``bound_references``: the reference frames are those a sequential decode with
    ``skip_frame = "NONREF"`` outputs)."""
    import av

    from speechbrain_cavmae.data.frames import _count_and_rate, _PacketIndex, sample_frame_indices

    with av.open(path) as container:
        count, fps = _count_and_rate(container, path)
        stream = container.streams.video[0]
        index = _PacketIndex(container, stream)
    references = set()
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONREF"
        for packet in container.demux(stream):
            copy = None  # the flush packet
            if packet.size:  # a copy without the edit list's discard mark: output it too
                copy = av.Packet(bytes(packet))
                copy.pts, copy.dts, copy.time_base = packet.pts, packet.dts, packet.time_base
            references.update(frame.pts for frame in stream.codec_context.decode(copy))
    is_reference = [pts in references for pts in index.pts]
    frames = sample_frame_indices(count, fps, n)
    sequential = sum(index.frames[k][1] + 1 for k in frames)
    seeking = sum(index.frames[k][1] + 1 - index.start_for(k) for k in frames)
    needed = sum(sum(is_reference[index.start_for(k):index.frames[k][1]]) + 1 for k in frames)
    return {"keyframes": len(index.keys), "packets": len(index.pts),
            "reference_packets": sum(is_reference),
            "sequential": sequential / n, "seeking": seeking / n, "references": needed / n,
            "bound": round(sequential / seeking, 2),
            "bound_references": round(sequential / needed, 2)}


@contextlib.contextmanager
def _plain_open():
    """Containers opened as before issue 17: the stream probe decodes the first frames."""
    from speechbrain_cavmae.data import containers

    shipped = containers.PROBE_OPTIONS
    containers.PROBE_OPTIONS = {}
    try:
        yield
    finally:
        containers.PROBE_OPTIONS = shipped


def seek_rates(path, rounds, n=10):
    """Seconds per training frame (one of ten): seeking, sequential decoding, and the
    decoder before issue 17 (sequential, and a probe that decodes frames)."""
    from speechbrain_cavmae.data.frames import load_video_frames

    load_video_frames(path, indices=[0])  # warm-up
    cases = {"before": (False, _plain_open), "sequential": (False, contextlib.nullcontext),
             "seeking": (True, contextlib.nullcontext)}
    runs = {key: [] for key in cases}
    for _ in range(rounds):
        for key, (seek, opening) in cases.items():
            with opening():
                start = time.perf_counter()
                for i in range(n):
                    load_video_frames(path, n, indices=[i], seek=seek)
                runs[key].append((time.perf_counter() - start) / n)
    med = {k: sorted(v)[len(v) // 2] for k, v in runs.items()}
    return {"before_s_per_frame": round(med["before"], 4),
            "sequential_s_per_frame": round(med["sequential"], 4),
            "seeking_s_per_frame": round(med["seeking"], 4),
            "speedup": round(_median_ratio(runs["sequential"], runs["seeking"]), 2),
            "speedup_vs_before": round(_median_ratio(runs["before"], runs["seeking"]), 2),
            "packets": packet_bound(path, n),
            "rounds": {k: [round(x, 4) for x in v] for k, v in runs.items()}}


def reencoded_720p(work, source, keyint):
    """``source`` (the 1280x720 sample clip, real content) re-encoded with libx264
    (``veryfast``, crf 23, 3 B-frames) with a keyframe every ``keyint`` frames and no
    scene-cut keyframes: the same pictures, with the keyframe spacing as the one variable."""
    params = f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=3"
    return _media().transcode(source, os.path.join(work, f"reencoded_720p_keyint{keyint}.mp4"),
                              options={"preset": "veryfast", "crf": "23", "x264-params": params})


KEYINTS = (30, 60, 120, 250)  # 1 s, 2 s, 4 s, x264's default maximum (8.3 s at 29.97 fps)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per ratio")
    parser.add_argument("--samples", type=int, default=64, help="items per loader round")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "shards.json"))
    parser.add_argument("--only", choices=("loader", "seek", "verify"),
                        help="measure one part only (default: loader and seek)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    work = tempfile.mkdtemp(prefix="cavmae_shards_bench_")
    if args.only == "seek":
        videos, source = clips(work)
    else:
        manifest, videos, source = extracted_manifest(work)
    report = {
        "benchmark": "shards", "clips": source, "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "load_average_start": os.getloadavg(), "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if args.only is None or args.only == "loader":
        report["loader"] = loader_rates(manifest, work, args.samples, args.rounds)
    if args.only == "verify":
        row = report["verify"] = verify_rates(manifest, work, args.samples, args.rounds)
        for name in ("records_cpu", "items_cpu", "records_wall", "items_wall"):
            print(f"verify {name:<13} {row[name]}  ratio verified / unverified "
                  f"{row[f'ratio_{name}_verified_over_unverified']:.3f}")
    for name, row in report.get("loader", {}).items():
        for key in ("files", "shards_flac", "shards_wav"):
            ratio = row.get(f"ratio_{key}_over_files", 1.0)
            print(f"loader {name:<19} {key:<12} {row[f'{key}_samples_per_s_per_core']:7.1f}"
                  f" samples/s/core  ratio to files {ratio:.2f}  workers for 1000/s "
                  f"{row[f'workers_for_1000_per_s_{key}']}")
    if args.only in (None, "seek"):
        report["seek"] = {"sample_1280x720": seek_rates(videos["1280x720"], args.rounds)}
        for keyint in KEYINTS:
            path = reencoded_720p(work, videos["1280x720"], keyint)
            report["seek"][f"reencoded_1280x720_keyint{keyint}"] = seek_rates(path, args.rounds)
    for name, row in report.get("seek", {}).items():
        print(f"seek {name:<34} sequential {row['sequential_s_per_frame'] * 1000:7.1f} ms  "
              f"seeking {row['seeking_s_per_frame'] * 1000:7.1f} ms  speedup {row['speedup']:.2f}"
              f" (vs before issue 17: {row['speedup_vs_before']:.2f})"
              f"  (keyframe bound {row['packets']['bound']}, reference frames bound "
              f"{row['packets']['bound_references']})")
    report["load_average_end"] = os.getloadavg()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf8") as handle:
        json.dump(report, handle, indent=1)
    print(f"written {args.out}")
    return report


if __name__ == "__main__":
    main()
