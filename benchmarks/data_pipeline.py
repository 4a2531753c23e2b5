"""Data-pipeline throughput (samples/s per CPU core) and fidelity to the original path.

Runs in one process with ``torch.set_num_threads(1)``, so the figures are
per core; a DataLoader with ``k`` workers scales them by about ``k``.

Cases (each builds the dataset with :func:`speechbrain_cavmae.data.dataset.build_dataset`
and reads ``dataset[i]`` in a loop):

* ``extracted``: pre-extracted 16 kHz wav + 224 px JPEG frames (the original
  layout, written by ``speechbrain_cavmae.tools.extract``), train mode, no augmentation;
* ``extracted_aug``: the same with the fine-tuning augmentation (mixup 0.5,
  freqm 48, timem 192, noise, label smoothing 0.1);
* ``extracted_on_device``: ``features_on_device`` (waveform out, no CPU fbank);
* ``video_256x144`` / ``video_1280x720``: decoding the mp4 on the fly (train
  mode, one random frame of ten).

Uses the two clips of ``../shared/samples`` when present (otherwise it
writes synthetic clips of the same sizes). ``--fidelity`` also measures the
correlation of on-the-fly features with an emulation of the original
two-step path (see ``tests/media.py``).

Usage::

    python -m benchmarks.data_pipeline [--samples 200] [--out results/data_pipeline.json] [--fidelity]
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "samples"
CLIPS = {"256x144": "00W1lcxW-WU_40.000.mp4", "1280x720": "KlsG1EnBEjc_000361.mp4"}


def _media():
    sys.path.insert(0, str(ROOT / "tests"))
    import media  # noqa: E402  (tests/media.py: synthetic clips, original-path emulation)

    return media


def clips(workdir):
    """{size: mp4 path}: the real clips, or synthetic ones of the same size."""
    if all((SHARED / c).is_file() for c in CLIPS.values()):
        return {k: str(SHARED / c) for k, c in CLIPS.items()}, "shared/samples"
    media = _media()
    out = {}
    for key, (w, h, fps) in {"256x144": (256, 144, 12.5), "1280x720": (1280, 720, 30000 / 1001)}.items():
        out[key] = media.write_video(os.path.join(workdir, f"synthetic_{key}.mp4"), n_frames=int(fps * 10),
                                     fps=fps, size=(w, h), audio_freqs=(440.0, 660.0))
    return out, "synthetic"


def write_manifest(path, entries):
    with open(path, "w") as handle:
        json.dump(entries, handle)
    return path


def throughput(manifest, config, n, label_csv=None):
    from speechbrain_cavmae.data.dataset import build_dataset

    ds = build_dataset(manifest, label_csv, config, train=True)
    for i in range(min(3, len(ds))):  # warm-up (caches, lazy imports)
        ds[i]
    torch.manual_seed(0)
    start = time.perf_counter()
    for i in range(n):
        ds[i % len(ds)]
    elapsed = time.perf_counter() - start
    return {"samples": n, "seconds": round(elapsed, 3), "samples_per_s_per_core": round(n / elapsed, 1)}


def fidelity(videos, workdir):
    """Correlation of on-the-fly outputs with the emulated original two-step path."""
    from speechbrain_cavmae.data.dataset import build_dataset

    media = _media()
    result = {}
    for key, video in videos.items():
        vid = Path(video).stem
        wav = media.original_wav(video, os.path.join(workdir, f"orig_{vid}.wav"))
        media.original_frames(video, os.path.join(workdir, "orig_frames"), vid)
        ref_fbank = media.original_loader_fbank(wav)
        ref_frames = torch.stack([
            media.original_loader_image(os.path.join(workdir, "orig_frames", f"frame_{i}", f"{vid}.jpg"))
            for i in range(10)])
        manifest = write_manifest(os.path.join(workdir, f"fly_{key}.json"), {vid: {"video": video}})
        row = {}
        for name, cfg in {"default": {}, "mono_mix": {"audio_channel": None},
                          "bicubic": {"image_interpolation": "bicubic"}}.items():
            item = build_dataset(manifest, None, dict(cfg, multi_frame=True), train=False)[0]
            row[name] = {
                "fbank_corr": round(float(np.corrcoef(item["fbank"].flatten(), ref_fbank.flatten())[0, 1]), 6),
                "frames_corr": round(float(np.corrcoef(item["frames"].flatten(), ref_frames.flatten())[0, 1]), 6),
            }
        result[key] = row
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description="Data pipeline throughput per CPU core.")
    parser.add_argument("--samples", type=int, default=200, help="samples per extracted case")
    parser.add_argument("--video_samples", type=int, default=20, help="samples per on-the-fly case")
    parser.add_argument("--out", default=str(ROOT / "results" / "data_pipeline.json"))
    parser.add_argument("--fidelity", action="store_true", help="also measure correlation with the original path")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    from speechbrain_cavmae.cli import main as cavmae

    work = tempfile.mkdtemp(prefix="cavmae_bench_")
    videos, source = clips(work)
    listing = os.path.join(work, "videos.txt")
    with open(listing, "w") as handle:
        handle.write("\n".join(videos.values()) + "\n")
    out_dir = os.path.join(work, "extracted")
    assert cavmae(["extract", "--videos", listing, "--output", out_dir]) == 0
    labels = os.path.join(work, "labels.csv")
    with open(labels, "w") as handle:
        handle.write("index,mid,display_name\n0,/m/a,a\n1,/m/b,b\n")
    entries = {}
    for k in range(16):  # distinct ids over the same two extracted clips
        for j, video in enumerate(videos.values()):
            vid = Path(video).stem
            entries[f"{vid}_{k}"] = {"video_id": vid, "wav": os.path.join(out_dir, "audio", f"{vid}.wav"),
                                     "video_path": os.path.join(out_dir, "frames"), "labels": ["/m/a", "/m/b"][j]}
    extracted = write_manifest(os.path.join(work, "extracted.json"), entries)

    aug = {"mixup": 0.5, "freqm": 48, "timem": 192, "noise": True, "label_smooth": 0.1}
    cases = {
        "extracted": (extracted, {"frame_source": "extracted"}, args.samples),
        "extracted_aug": (extracted, dict(aug, frame_source="extracted"), args.samples),
        "extracted_on_device": (extracted, {"frame_source": "extracted", "features_on_device": True}, args.samples),
    }
    for key, video in videos.items():
        manifest = write_manifest(os.path.join(work, f"video_{key}.json"),
                                  {f"v{k}": {"video_id": Path(video).stem, "video": video, "labels": "/m/a"}
                                   for k in range(4)})
        cases[f"video_{key}"] = (manifest, {"frame_source": "video", "audio_source": "video"}, args.video_samples)

    results = {}
    print(f"{'case':<22} {'samples/s/core':>15} {'ms/sample':>10}")
    for name, (manifest, cfg, n) in cases.items():
        res = throughput(manifest, cfg, n, labels)
        results[name] = res
        print(f"{name:<22} {res['samples_per_s_per_core']:>15.1f} {1000 / res['samples_per_s_per_core']:>10.1f}")

    report = {
        "benchmark": "data_pipeline",
        "clips": source,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "results": results,
    }
    if args.fidelity:
        report["fidelity"] = fidelity(videos, work)
        for key, row in report["fidelity"].items():
            for name, vals in row.items():
                print(f"fidelity {key:<9} {name:<9} fbank r={vals['fbank_corr']:.6f} frames r={vals['frames_corr']:.6f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=1)
    print(f"written {args.out}")
    return report


if __name__ == "__main__":
    main()
