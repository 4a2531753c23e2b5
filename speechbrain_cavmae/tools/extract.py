"""Pre-extract audio and frames from videos into the original CAV-MAE layout.

For each video ``/any/path/{video_id}.{ext}`` this writes

* ``OUT/audio/{video_id}.wav``: 16 kHz, 16-bit PCM mono: the first channel
  as the original ``ffmpeg -ar 16000`` + ``sox remix 1`` pipeline kept
  (``--audio_channel k`` for another, ``--audio_channel mean`` to average them);
* ``OUT/frames/frame_{i}/{video_id}.jpg`` for ``i < --n_frames``: the frames
  of :func:`~speechbrain_cavmae.data.frames.sample_frame_indices`, short
  side resized to 224 (bilinear, as the original extractor's
  ``T.Resize(224)``), centre-cropped, saved as JPEG quality 75 (what
  torchvision's ``save_image`` writes).

No ffmpeg/sox binaries are used (PyAV, torchaudio, PIL). Finished
videos (wav and every frame present) are skipped, so an interrupted run
can be resumed. Failures are reported at the end and give a non-zero exit
status.

Usage::

    cavmae extract --videos list.csv --output DIR [--n_frames 10] [--num_workers 4]
        [--write_manifest DIR/manifest.json]

``--videos`` is a text/CSV file with one video path per line (first column;
a header line ``video``/``path`` is ignored) or a folder searched
recursively for videos. ``--write_manifest`` additionally writes an original
CAV-MAE JSON (``wav`` and ``video_path`` pointing into OUT, no labels).
"""

import logging
import os
import sys

from speechbrain_cavmae.data import VIDEO_EXTS
from speechbrain_cavmae.data import cap_workers, process_pool
from speechbrain_cavmae.tools import common

logger = logging.getLogger(__name__)


def video_id_of(path):
    """File name without its extension (the original's ``video_id``)."""
    return os.path.splitext(os.path.basename(path))[0]


def list_videos(source):
    """Video paths from a list file or a folder."""
    if os.path.isdir(source):
        found = []
        for root, _, files in os.walk(source):
            found += [os.path.join(root, f) for f in files if f.lower().endswith(VIDEO_EXTS)]
        return sorted(found)
    base = os.path.dirname(os.path.abspath(source))
    paths = []
    with open(source, encoding="utf8") as handle:
        for line in handle:
            item = line.strip().split(",")[0].strip()
            if not item or item.lower() in ("video", "path", "video_path"):
                continue
            paths.append(item if os.path.isabs(item) else os.path.normpath(os.path.join(base, item)))
    return paths


def check_unique_ids(videos):
    """Raise a ``ValueError`` naming the paths of videos that share a ``video_id``.

    The output layout is keyed by file name (``audio/{video_id}.wav``), so two videos
    named alike in different folders would write the same files and one of them would be
    silently dropped.

    Example
    -------
    >>> check_unique_ids(["a/x.mp4", "b/y.mp4"])
    >>> try:
    ...     check_unique_ids(["a/x.mp4", "b/x.mkv"])
    ... except ValueError as err:
    ...     print(err)  # doctest: +ELLIPSIS
    2 videos share the id 'x': a/x.mp4, b/x.mkv; ...
    """
    seen = {}
    for video in videos:
        seen.setdefault(video_id_of(video), []).append(video)
    clashes = {vid: paths for vid, paths in seen.items() if len(paths) > 1}
    if clashes:
        details = "; ".join(f"{len(paths)} videos share the id {vid!r}: {', '.join(paths)}"
                            for vid, paths in list(clashes.items())[:5])
        more = f" (and {len(clashes) - 5} more ids)" if len(clashes) > 5 else ""
        raise ValueError(f"{details}{more}; the outputs are named by file name, so rename "
                         "them (or extract the folders into different --output folders)")


def output_paths(out_dir, video_id, n_frames=10):
    wav = os.path.join(out_dir, "audio", f"{video_id}.wav")
    frames = [os.path.join(out_dir, "frames", f"frame_{i}", f"{video_id}.jpg") for i in range(n_frames)]
    return wav, frames


def save_audio(video, wav_path, sample_rate=16000, channel=0):
    """Decode, resample and write a 16-bit PCM wav; returns the waveform."""
    import soundfile

    from speechbrain_cavmae.data import load_audio

    wav = load_audio(video, sample_rate, channel)
    import numpy as np

    data = np.clip(wav.numpy(), -1.0, 1.0 - 1.0 / 32768)
    tmp = wav_path + ".part"
    soundfile.write(tmp, data, sample_rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, wav_path)
    return wav


def original_frame_image(frame_hwc, size=224):
    """Resize short side (bilinear) + centre crop, as the original extractor."""
    import numpy as np
    from PIL import Image

    from speechbrain_cavmae.data import resized_size

    img = Image.fromarray(np.asarray(frame_hwc, dtype=np.uint8))
    new_w, new_h = resized_size(img.width, img.height, size)
    img = img.resize((new_w, new_h), Image.BILINEAR)
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def save_frames(video, frame_paths, size=224, quality=75):
    """Decode ``len(frame_paths)`` uniformly spaced frames and save JPEGs."""
    from speechbrain_cavmae.data import load_video_frames

    frames = load_video_frames(video, n=len(frame_paths))
    for frame, path in zip(frames, frame_paths):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".part"
        original_frame_image(frame.permute(1, 2, 0).numpy(), size).save(tmp, format="JPEG", quality=quality)
        os.replace(tmp, path)


def extract_one(video, out_dir, n_frames=10, channel=0, size=224):
    """Extract one video; returns (video, status, message)."""
    from speechbrain_cavmae.data import BadSampleError

    video_id = video_id_of(video)
    wav_path, frame_paths = output_paths(out_dir, video_id, n_frames)
    if os.path.isfile(wav_path) and all(os.path.isfile(p) for p in frame_paths):
        return video, "skipped", ""
    os.makedirs(os.path.dirname(wav_path), exist_ok=True)
    try:
        if not os.path.isfile(wav_path):
            save_audio(video, wav_path, channel=channel)
        if not all(os.path.isfile(p) for p in frame_paths):
            save_frames(video, frame_paths, size)
    except BadSampleError as err:
        return video, "failed", err.reason
    except Exception as err:  # keep the batch going; reported at the end
        return video, "failed", f"{type(err).__name__}: {err}"
    return video, "done", ""


def _extract_star(args):
    import torch

    torch.set_num_threads(1)
    return extract_one(*args)


def write_manifest_for(videos, out_dir, manifest_path):
    from speechbrain_cavmae.data import write_manifest

    data = {}
    for video in videos:
        video_id = video_id_of(video)
        wav, _ = output_paths(out_dir, video_id)
        data[video_id] = {
            "video_id": video_id,
            "wav": os.path.abspath(wav),
            "video_path": os.path.abspath(os.path.join(out_dir, "frames")),
            "labels": [],
        }
    write_manifest(data, manifest_path)


def add_arguments(parser):
    """The flags of ``cavmae extract``."""
    common.add_videos(parser)
    common.add_output(parser, help="folder of audio/ and frames/")
    common.add_n_frames(parser)
    common.add_num_workers(parser)
    common.add_audio_channel(parser)
    parser.add_argument("--image_size", type=int, default=224, help="frame side in pixels")
    parser.add_argument("--write_manifest", default=None,
                        help="also write an original CAV-MAE JSON manifest here")


def run(args):
    """Extract every video; returns 1 when some failed."""
    videos = list_videos(args.videos)
    check_unique_ids(videos)
    channel = args.audio_channel
    tasks = [(v, args.output, common.n_frames(args), channel, args.image_size) for v in videos]
    results = []
    workers = cap_workers(args.num_workers)
    if workers > 1:
        with process_pool(workers) as pool:
            jobs = pool.map(_extract_star, tasks, chunksize=4)
            for res in common.progress(jobs, args, total=len(tasks), desc="extract"):
                results.append(res)
    else:
        for task in common.progress(tasks, args, desc="extract"):
            results.append(_extract_star(task))
    failed = [r for r in results if r[1] == "failed"]
    counts = {s: sum(r[1] == s for r in results) for s in ("done", "skipped", "failed")}
    print(f"{len(results)} videos: {counts['done']} extracted, {counts['skipped']} already done, "
          f"{counts['failed']} failed")
    for video, _, message in failed:
        print(f"FAILED {video}: {message}", file=sys.stderr)
    if args.write_manifest:
        ok = [r[0] for r in results if r[1] != "failed"]
        common.ensure_parent(args.write_manifest)
        write_manifest_for(ok, args.output, args.write_manifest)
        print(f"manifest with {len(ok)} entries written to {args.write_manifest}")
    return 1 if failed else 0
