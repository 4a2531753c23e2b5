#!/usr/bin/env python3
"""Build a CAV-MAE manifest from AudioSet's segment CSV and a folder of downloaded clips.

AudioSet lists its clips in ``balanced_train_segments.csv``, ``eval_segments.csv`` and
``unbalanced_train_segments.csv`` (comment lines start with ``#``; columns ``YTID,
start_seconds, end_seconds, positive_labels``). A clip is looked up in ``--clips_dir``
(recursively) under the stems ``<YTID>_<start:.3f>`` (the original naming, e.g.
``00W1lcxW-WU_40.000.mp4``), ``<YTID>_<start as int>``, ``<YTID>`` and ``Y<YTID>``, as an
audio file (wav, flac...) and/or a video (mp4, mkv...). Frames come from
``--frames_dir/frame_{i}/<video_id>.jpg`` when extracted, else from the video.

Writes the original-format manifest ``--output`` (``{"data": [{video_id, wav,
video_path | video, labels}]}``) and ``<output>.missing.txt`` (the listed clips not
found), and reports how many are missing::

    python recipes/AudioSet/audioset_prepare.py --segments eval_segments.csv \\
        --clips_dir audioset/eval --output data/audioset_eval.json \\
        [--frames_dir audioset/frames] [--label_csv class_labels_indices.csv]

Authors
 * speechbrain-cavmae contributors 2026
"""

import argparse
import csv
import logging
import sys

from speechbrain_cavmae.data.manifest import LabelTable
from speechbrain_cavmae.training.recipe import index_clip_folder, make_entry, write_prepared

logger = logging.getLogger(__name__)


def read_segments(path):
    """Rows ``(ytid, start, end, [labels])`` of an AudioSet segment CSV."""
    rows = []
    with open(path, newline="", encoding="utf8") as handle:
        lines = (line for line in handle if line.strip() and not line.startswith("#"))
        for i, row in enumerate(csv.reader(lines, skipinitialspace=True)):
            if len(row) < 4:
                raise ValueError(f"{path}: row {i + 1} has {len(row)} columns, expected "
                                 "YTID, start_seconds, end_seconds, positive_labels")
            labels = [x.strip() for x in row[3].split(",") if x.strip()]
            rows.append((row[0].strip(), float(row[1]), float(row[2]), labels))
    return rows


def candidate_ids(ytid, start):
    """Clip file stems tried for one segment, best first."""
    return [f"{ytid}_{start:.3f}", f"{ytid}_{int(start)}", ytid, f"Y{ytid}"]


def prepare_audioset(segments, clips_dir, output, frames_dir=None, label_csv=None):
    """Write the manifest for the clips of ``segments`` found in ``clips_dir``."""
    rows = read_segments(segments)
    table = LabelTable.from_csv(label_csv) if label_csv else None
    index = index_clip_folder(clips_dir)
    entries, missing = [], []
    for ytid, start, _, labels in rows:
        if table is not None:
            unknown = [label for label in labels if label not in table]
            if unknown:
                raise ValueError(f"{segments}: {ytid} has labels {unknown} not in {label_csv}")
        stem = next((s for s in candidate_ids(ytid, start) if s in index), None)
        entry = make_entry(stem, index[stem], labels, frames_dir) if stem else None
        if entry is None:
            missing.append(f"{ytid},{start:.3f}")
            continue
        entries.append(entry)
    return write_prepared(entries, missing, output, len(rows))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", required=True, help="AudioSet *_segments.csv")
    parser.add_argument("--clips_dir", required=True, help="folder of downloaded clips")
    parser.add_argument("--output", required=True, help="manifest JSON to write")
    parser.add_argument("--frames_dir", default=None, help="extracted frames (frame_{i}/)")
    parser.add_argument("--label_csv", default=None, help="check labels against this CSV")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = prepare_audioset(args.segments, args.clips_dir, args.output, args.frames_dir,
                              args.label_csv)
    print(f"{report['found']} of {report['listed']} clips found, "
          f"{len(report['missing'])} missing (see {report['missing_file']})")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
