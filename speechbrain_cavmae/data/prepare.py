"""Manifests from dataset metadata and a folder of downloaded clips.

* :func:`prepare_audioset`: an AudioSet segment list (``*_segments.csv``: ``YTID,
  start_seconds, end_seconds, "positive_labels"``) -> one manifest;
* :func:`prepare_vggsound`: VGGSound's ``vggsound.csv`` (``YTID, start_seconds, label,
  split``) -> one manifest per split, and the class table when none is given.

A clip is looked up in the clip folder (recursively) under the file stems the usual
downloaders write (:func:`audioset_candidate_ids`, :func:`vggsound_candidate_ids`), as an
audio file and/or a video; frames come from an extracted ``frame_{i}/<video_id>.jpg``
folder when it has the clip, else from the video. Clips not found are listed in
``<manifest>.missing.txt``. Manifests are in the original CAV-MAE JSON format.

Used by ``cavmae prepare audioset|vggsound`` and the recipes' ``*_prepare.py``.

Authors
 * speechbrain-cavmae contributors 2026
"""

import csv
import logging
import os

from speechbrain_cavmae.data.files import atomic_write_json
from speechbrain_cavmae.data.manifest import LabelTable

logger = logging.getLogger(__name__)

#: File extensions of the media a clip folder may hold.
AUDIO_EXTS = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac")
VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv")


def index_clip_folder(folder):
    """Map each media file stem under ``folder`` (recursively) to its files.

    Returns
    -------
    dict
        ``stem -> {"audio": path, "video": path}`` (either may be absent).
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: clip folder not found")
    index = {}
    for root, _, files in os.walk(folder):
        for name in files:
            stem, ext = os.path.splitext(name)
            ext = ext.lower()
            kind = "audio" if ext in AUDIO_EXTS else "video" if ext in VIDEO_EXTS else None
            if kind:
                index.setdefault(stem, {}).setdefault(kind, os.path.join(root, name))
    return index


def make_entry(video_id, files, labels, frames_dir=None):
    """One original-format manifest entry for a located clip.

    Audio comes from an audio file when there is one, else from the video container;
    frames from ``frames_dir/frame_{i}/<video_id>.jpg`` when ``frame_0`` has the clip, else
    from the video.
    """
    entry = {"video_id": video_id, "labels": ",".join(labels)}
    video = files.get("video")
    entry["wav"] = files.get("audio") or video
    if frames_dir and os.path.isfile(os.path.join(frames_dir, "frame_0", f"{video_id}.jpg")):
        entry["video_path"] = os.path.abspath(frames_dir)
    elif video:
        entry["video"] = video
    else:
        return None
    entry["wav"] = os.path.abspath(entry["wav"])
    if "video" in entry:
        entry["video"] = os.path.abspath(entry["video"])
    return entry


def write_prepared(entries, missing, output, listed):
    """Write the manifest and ``<output>.missing.txt``; log what is missing."""
    os.makedirs(os.path.dirname(os.path.abspath(output)) or ".", exist_ok=True)
    atomic_write_json(output, {"data": entries}, indent=1)
    missing_file = os.path.splitext(output)[0] + ".missing.txt"
    with open(missing_file, "w", encoding="utf8") as handle:
        handle.writelines(f"{m}\n" for m in missing)
    level = logging.WARNING if missing else logging.INFO
    logger.log(level, "%s: %d of %d listed clips found, %d missing (listed in %s)",
               output, len(entries), listed, len(missing), missing_file)
    return {"found": len(entries), "missing": missing, "listed": listed,
            "manifest": output, "missing_file": missing_file}


def read_audioset_segments(path):
    """Rows ``(ytid, start, end, [labels])`` of an AudioSet segment CSV."""
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as handle:  # a BOM is dropped
        lines = (line for line in handle if line.strip() and not line.startswith("#"))
        for i, row in enumerate(csv.reader(lines, skipinitialspace=True)):
            if len(row) < 4:
                raise ValueError(f"{path}: row {i + 1} has {len(row)} columns, expected "
                                 "YTID, start_seconds, end_seconds, positive_labels")
            labels = [x.strip() for x in row[3].split(",") if x.strip()]
            rows.append((row[0].strip(), float(row[1]), float(row[2]), labels))
    return rows


def audioset_candidate_ids(ytid, start):
    """Clip file stems tried for one segment, best first."""
    return [f"{ytid}_{start:.3f}", f"{ytid}_{int(start)}", ytid, f"Y{ytid}"]


def prepare_audioset(segments, clips_dir, output, frames_dir=None, label_csv=None):
    """Write the manifest for the clips of ``segments`` found in ``clips_dir``."""
    rows = read_audioset_segments(segments)
    table = LabelTable.from_csv(label_csv) if label_csv else None
    index = index_clip_folder(clips_dir)
    entries, missing = [], []
    for ytid, start, _, labels in rows:
        if table is not None:
            unknown = [label for label in labels if label not in table]
            if unknown:
                raise ValueError(f"{segments}: {ytid} has labels {unknown} not in {label_csv}")
        stem = next((s for s in audioset_candidate_ids(ytid, start) if s in index), None)
        entry = make_entry(stem, index[stem], labels, frames_dir) if stem else None
        if entry is None:
            missing.append(f"{ytid},{start:.3f}")
            continue
        entries.append(entry)
    return write_prepared(entries, missing, output, len(rows))


def read_vggsound_csv(path):
    """Rows ``(ytid, start, label, split)``."""
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as handle:  # a BOM is dropped
        for i, row in enumerate(csv.reader(handle)):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 4:
                raise ValueError(f"{path}: row {i + 1} has {len(row)} columns, expected "
                                 "YTID, start_seconds, label, split")
            rows.append((row[0].strip(), int(float(row[1])), row[2].strip(), row[3].strip()))
    return rows


def vggsound_candidate_ids(ytid, start):
    """Clip file stems tried for one row, best first."""
    return [f"{ytid}_{start:06d}", f"{ytid}_{start}", ytid]


def prepare_vggsound(csv_path, clips_dir, out_dir, frames_dir=None, label_csv=None):
    """Write the train and test manifests (and the label CSV); returns the reports."""
    rows = read_vggsound_csv(csv_path)
    os.makedirs(out_dir, exist_ok=True)
    if label_csv:
        table = LabelTable.from_csv(label_csv)
    else:
        names = sorted({label for _, _, label, _ in rows})
        table = LabelTable(names, names)
        label_csv = os.path.join(out_dir, "class_labels_indices_vgg.csv")
        table.to_csv(label_csv)
    unknown = sorted({label for _, _, label, _ in rows if label not in table})
    if unknown:
        raise ValueError(f"{csv_path}: labels not in {label_csv}: {unknown[:5]}")
    index = index_clip_folder(clips_dir)
    reports = {"label_csv": label_csv}
    for split in sorted({r[3] for r in rows}):
        entries, missing, listed = [], [], 0
        for ytid, start, label, row_split in rows:
            if row_split != split:
                continue
            listed += 1
            mid = table.mids[table.index(label)]
            stem = next((s for s in vggsound_candidate_ids(ytid, start) if s in index), None)
            entry = make_entry(stem, index[stem], [mid], frames_dir) if stem else None
            if entry is None:
                missing.append(f"{ytid},{start}")
                continue
            entries.append(entry)
        output = os.path.join(out_dir, f"vggsound_{split}.json")
        reports[split] = write_prepared(entries, missing, output, listed)
    return reports
