"""End-to-end pretraining throughput: the real recipe fed by the real data pipeline.

Writes synthetic clips in the original pre-extracted layout (10 s of 16 kHz audio as wav,
ten 224 px JPEG frames at quality 75, as ``speechbrain_cavmae.tools.extract`` writes them), then

1. ``loader``: iterates the training DataLoader alone (the recipe's dataset and collate
   function, ``features_on_device``) with ``--num_workers`` workers: the samples/s the
   data side can deliver;
2. ``recipe``: runs ``recipes/AudioSet/train.py hparams/cavmae.yaml`` for one epoch on the
   same manifest and reads the epoch's ``samples_per_s`` (measured after the first five
   steps) from its ``history.json``: the pace of real training, data loading included.

Compare ``recipe`` with ``benchmarks.measure --task pretrain`` (synthetic tensors, no data
loading) at the same batch size and precision to see whether data loading limits training.
The manifest lists each clip ``--repeat`` times under different ids so that a long epoch
needs few files; every sample is still read and decoded.

Usage::

    python -m benchmarks.e2e --clips 256 --repeat 16 --batch_size 128 --num_workers 14 \\
        --precision bf16 --out results/bench/e2e.json
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 16000
N_FRAMES = 10


def write_clip(args):
    """One synthetic clip: a few partials and noise as wav, ten smooth JPEG frames."""
    import soundfile
    from PIL import Image

    root, index, seconds, size = args
    rng = np.random.default_rng(index)
    vid = f"clip{index:05d}"
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    audio = sum(rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * rng.uniform(80, 4000) * t)
                for _ in range(4)) + 0.02 * rng.standard_normal(t.size)
    soundfile.write(os.path.join(root, "audio", f"{vid}.wav"), audio.astype(np.float32),
                    SAMPLE_RATE, subtype="PCM_16")
    for k in range(N_FRAMES):
        coarse = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
        img = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=np.float32)
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(root, "frames", f"frame_{k}", f"{vid}.jpg"),
                                  quality=75)
    return vid


def write_dataset(root, clips, repeat, seconds=10.0, size=224, processes=None):
    """Write ``clips`` clips under ``root`` and a manifest listing each ``repeat`` times."""
    root = Path(root)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    for k in range(N_FRAMES):
        (root / "frames" / f"frame_{k}").mkdir(parents=True, exist_ok=True)
    with Pool(processes or os.cpu_count()) as pool:
        vids = pool.map(write_clip, [(str(root), i, seconds, size) for i in range(clips)])
    entries = {
        f"{vid}_{r}": {"video_id": vid, "wav": str(root / "audio" / f"{vid}.wav"),
                       "video_path": str(root / "frames"), "labels": "/m/a"}
        for r in range(repeat) for vid in vids
    }
    manifest = root / "train.json"
    manifest.write_text(json.dumps(entries))
    return manifest


def loader_throughput(manifest, batch_size, num_workers, batches):
    """Samples/s of the training DataLoader alone (after two warm-up batches)."""
    import torch

    from speechbrain_cavmae.data.dataset import build_dataset, collate_av

    dataset = build_dataset(str(manifest), None, {"frame_source": "extracted",
                                                  "features_on_device": True}, train=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                         num_workers=num_workers, collate_fn=collate_av,
                                         drop_last=True, persistent_workers=False)
    seen, start = 0, None
    for i, batch in enumerate(loader):
        if i == 2:
            start = time.perf_counter()
        elif i > 2:
            seen += batch.batchsize
        if i >= batches + 2:
            break
    if start is None or not seen:
        raise RuntimeError("too few batches to time the loader: raise --repeat or --clips")
    return seen / (time.perf_counter() - start)


def recipe_throughput(manifest, out, args):
    """Run the AudioSet pretraining recipe for one epoch; its measured samples/s."""
    cmd = [sys.executable, str(ROOT / "recipes" / "AudioSet" / "train.py"),
           str(ROOT / "hparams" / "cavmae.yaml"), "--train_data", str(manifest),
           "--output_folder", str(out), "--batch_size", str(args.batch_size),
           "--num_workers", str(args.num_workers), "--features_on_device", "True",
           "--number_of_epochs", "1", "--precision", args.precision, "--noprogressbar",
           "--device", args.device, *args.recipe_args]
    if args.compile:
        cmd.append("--compile")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"recipe failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    history = json.loads((Path(out) / "history.json").read_text())
    return history[-1]["train"], wall


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--num_workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--loader_batches", type=int, default=10)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--skip_recipe", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument("recipe_args", nargs=argparse.REMAINDER,
                        help="after '--': extra recipe arguments (e.g. smaller model sizes)")
    args = parser.parse_args(argv)
    args.recipe_args = [a for a in args.recipe_args if a != "--"]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="cavmae_e2e_"))
    t0 = time.perf_counter()
    manifest = write_dataset(work / "data", args.clips, args.repeat)
    result = {"clips": args.clips, "samples": args.clips * args.repeat,
              "batch_size": args.batch_size, "num_workers": args.num_workers,
              "precision": args.precision, "device": args.device, "compile": args.compile,
              "cpu_count": os.cpu_count(), "write_s": round(time.perf_counter() - t0, 1)}
    result["loader_samples_per_s"] = loader_throughput(manifest, args.batch_size,
                                                       args.num_workers, args.loader_batches)
    print(f"loader alone: {result['loader_samples_per_s']:.1f} samples/s "
          f"({args.num_workers} workers)", flush=True)
    if not args.skip_recipe:
        train, wall = recipe_throughput(manifest, work / "out", args)
        result.update(recipe_samples_per_s=train.get("samples_per_s"), recipe_wall_s=round(wall, 1),
                      recipe_train_loss=train.get("loss"))
        print(f"recipe epoch: {result['recipe_samples_per_s']} samples/s "
              f"(process {wall:.0f} s)", flush=True)
    line = json.dumps(result)
    print(line)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "a") as handle:
            handle.write(line + "\n")
    return result


if __name__ == "__main__":
    main()
