"""Build a manifest from a folder of videos and a label table.

Usage::

    cavmae prepare videos --videos VIDEO_DIR --output manifest.json
        [--label_csv labels.csv] [--labels video_labels.csv | --labels_from_folder]
        [--extracted DIR] [--manifest_format original|speechbrain] [--write_label_csv labels.csv]

Labels come from either

* ``--labels FILE``: a CSV whose rows are ``video_id,label[,label...]``
  (the label field may be quoted and comma-separated), or AudioSet's
  segment lists (``YTID, start_seconds, end_seconds, "positive_labels"``;
  ``video_id`` is then ``{YTID}_{start:.3f}`` as in AudioSet downloads);
* ``--labels_from_folder``: the name of each video's parent folder (a
  mid or display name of the label table, or a new class when no table is
  given; ``--write_label_csv`` then writes the table built from folders).

Every entry gets ``video`` (the file), ``wav`` (the file itself, audio is
read from the container, or ``DIR/audio/{video_id}.wav`` with
``--extracted DIR`` as written by :mod:`speechbrain_cavmae.tools.extract`) and
``video_path`` (``DIR/frames`` with ``--extracted``). Paths are written
relative to the manifest. Videos without labels are reported and left out
unless ``--keep_unlabelled``.
"""

import csv
import logging
import os

from speechbrain_cavmae.data import LabelTable, split_labels, write_manifest
from speechbrain_cavmae.tools import common
from speechbrain_cavmae.tools.extract import list_videos, video_id_of

logger = logging.getLogger(__name__)


def read_video_labels(path):
    """video_id -> list of labels from a labels CSV or AudioSet segment list."""
    out = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:  # a BOM is dropped
        for row in csv.reader(handle, skipinitialspace=True):
            if not row or row[0].startswith("#") or row[0] in ("video_id", "YTID", "ID"):
                continue
            if len(row) >= 4 and _is_float(row[1]) and _is_float(row[2]):
                video_id = f"{row[0]}_{float(row[1]):.3f}"
                labels = split_labels(",".join(row[3:]))
            else:
                video_id, labels = row[0], split_labels(",".join(row[1:]))
            out[video_id] = labels
    return out


def _is_float(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def build_entries(videos, labels=None, from_folder=False, extracted=None, table=None,
                  keep_unlabelled=False):
    """Manifest entries (dict id -> entry) and the label table used."""
    names = []
    data = {}
    missing = []
    for video in videos:
        video_id = video_id_of(video)
        if from_folder:
            label = os.path.basename(os.path.dirname(os.path.abspath(video)))
            if table is not None and label in table:
                label = table.mids[table.index(label)]
            elif table is None and label not in names:
                names.append(label)
            vid_labels = [label]
        else:
            vid_labels = (labels or {}).get(video_id, [])
        if not vid_labels and not keep_unlabelled:
            missing.append(video)
            continue
        entry = {"video_id": video_id, "video": os.path.abspath(video), "labels": vid_labels}
        if extracted:
            entry["wav"] = os.path.abspath(os.path.join(extracted, "audio", f"{video_id}.wav"))
            entry["video_path"] = os.path.abspath(os.path.join(extracted, "frames"))
        else:
            entry["wav"] = os.path.abspath(video)
        if video_id in data:
            raise ValueError(f"duplicate video id {video_id!r}: {data[video_id]['video']} and {video}")
        data[video_id] = entry
    if table is None and from_folder:
        table = LabelTable(sorted(names))
    return data, table, missing


def add_arguments(parser):
    """The flags of ``cavmae prepare videos``."""
    common.add_videos(parser)
    common.add_output(parser, help="manifest to write")
    common.add_label_csv(parser)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--labels", default=None,
                        help="video_id,labels CSV or an AudioSet segments CSV")
    source.add_argument("--labels_from_folder", action="store_true",
                        help="each video's parent folder names its class")
    parser.add_argument("--extracted", default=None,
                        help="output folder of cavmae extract (audio/ and frames/)")
    parser.add_argument("--manifest_format", dest="format", default="original",
                        choices=["original", "speechbrain"], help="manifest format")
    parser.add_argument("--write_label_csv", default=None,
                        help="write the label table (built from folders) here")
    parser.add_argument("--keep_unlabelled", action="store_true",
                        help="keep videos without labels")


def run(args):
    """Write the manifest; returns 1 when some label is not in the table."""
    table = LabelTable.from_csv(args.label_csv) if args.label_csv else None
    labels = read_video_labels(args.labels) if args.labels else None
    videos = list_videos(args.videos)
    data, table, missing = build_entries(videos, labels, args.labels_from_folder,
                                         args.extracted, table, args.keep_unlabelled)
    unknown = sorted({lab for e in data.values() for lab in e["labels"]
                      if table is not None and lab not in table})
    if unknown:
        raise ValueError(f"labels not in {args.label_csv}: {', '.join(unknown[:10])}")
    common.ensure_parent(args.output)
    write_manifest(data, args.output, fmt=args.format)
    if args.write_label_csv and table is not None:
        common.ensure_parent(args.write_label_csv)
        table.to_csv(args.write_label_csv)
    print(f"{len(data)} entries written to {args.output}; {len(missing)} video(s) without "
          "labels left out")
    for video in missing[:20]:
        print(f"  no labels: {video}")
    return 0
