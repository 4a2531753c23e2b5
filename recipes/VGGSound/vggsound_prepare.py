#!/usr/bin/env python3
"""Build CAV-MAE manifests from VGGSound's ``vggsound.csv`` and a folder of clips.

``vggsound.csv`` has no header; its columns are ``YTID, start_seconds, label, split``
(``train`` / ``test``). A clip is looked up in ``--clips_dir`` (recursively) under the
stems ``<YTID>_<start:06d>`` (the usual naming, e.g. ``KlsG1EnBEjc_000361.mp4``),
``<YTID>_<start>`` and ``<YTID>``, as an audio file and/or a video. Frames come from
``--frames_dir/frame_{i}/<video_id>.jpg`` when extracted, else from the video.

Writes ``<out_dir>/vggsound_train.json`` and ``<out_dir>/vggsound_test.json``
(original format), a ``.missing.txt`` next to each, and, unless ``--label_csv`` gives
the original class table, ``<out_dir>/class_labels_indices_vgg.csv`` (classes sorted by
name, the display name used as id)::

    python recipes/VGGSound/vggsound_prepare.py --csv vggsound.csv \\
        --clips_dir vggsound/video --out_dir data/vggsound [--frames_dir vggsound/frames]

Authors
 * speechbrain-cavmae contributors 2026
"""

import argparse
import csv
import logging
import os
import sys

from speechbrain_cavmae.data.manifest import LabelTable
from speechbrain_cavmae.training.recipe import index_clip_folder, make_entry, write_prepared

logger = logging.getLogger(__name__)


def read_vggsound_csv(path):
    """Rows ``(ytid, start, label, split)``."""
    rows = []
    with open(path, newline="", encoding="utf8") as handle:
        for i, row in enumerate(csv.reader(handle)):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 4:
                raise ValueError(f"{path}: row {i + 1} has {len(row)} columns, expected "
                                 "YTID, start_seconds, label, split")
            rows.append((row[0].strip(), int(float(row[1])), row[2].strip(), row[3].strip()))
    return rows


def candidate_ids(ytid, start):
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
            stem = next((s for s in candidate_ids(ytid, start) if s in index), None)
            entry = make_entry(stem, index[stem], [mid], frames_dir) if stem else None
            if entry is None:
                missing.append(f"{ytid},{start}")
                continue
            entries.append(entry)
        output = os.path.join(out_dir, f"vggsound_{split}.json")
        reports[split] = write_prepared(entries, missing, output, listed)
    return reports


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", required=True, help="vggsound.csv")
    parser.add_argument("--clips_dir", required=True, help="folder of downloaded clips")
    parser.add_argument("--out_dir", required=True)
    parser.add_argument("--frames_dir", default=None, help="extracted frames (frame_{i}/)")
    parser.add_argument("--label_csv", default=None, help="the original class table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    reports = prepare_vggsound(args.csv, args.clips_dir, args.out_dir, args.frames_dir,
                               args.label_csv)
    for split, report in reports.items():
        if split != "label_csv":
            print(f"{split}: {report['found']} of {report['listed']} clips found, "
                  f"{len(report['missing'])} missing (see {report['missing_file']})")
    return reports


if __name__ == "__main__":
    main(sys.argv[1:])
