"""Check a manifest up front and list every problem before training starts.

Usage::

    cavmae validate --manifest MANIFEST [--label_csv LABELS] [--num_workers N]
        [--frame_source auto|extracted|video] [--audio_source auto|wav|video] [--n_frames 10]

For each sample it checks that the audio file exists and decodes, has an
audio track and is at least one 25 ms analysis frame long; that the
frames exist (all ``video_path/frame_{i}/{video_id}.jpg`` for the extracted
layout, or a decodable video track); that every label is in the label
CSV and, with a label CSV, that every entry has labels; and that ids are unique. A
manifest that cannot be read or has no entries is an error. Problems are printed as a table
(id, file, problem) and the exit status is 1 when there are any.
"""

import logging
import os

from speechbrain_cavmae.data import BadSampleError, ManifestError
from speechbrain_cavmae.data import LabelTable, read_manifest, unlabelled_entries
from speechbrain_cavmae.data import cap_workers, process_pool
from speechbrain_cavmae.tools import common

logger = logging.getLogger(__name__)

_STATE = {}


def _init(data, config, label_table, manifest_path):
    from speechbrain_cavmae.data import AVSampleLoader

    _STATE["loader"] = AVSampleLoader(data, config, False, label_table, manifest_path)


def check_sample(sample_id, loader=None):
    """All problems of one sample as (id, file, problem) tuples."""
    from speechbrain_cavmae.data import (
        extracted_frame_path,
        load_extracted_frame,
        load_video_frames,
    )

    loader = loader or _STATE["loader"]
    cfg = loader.cfg
    entry = loader.data[sample_id]
    problems = []

    def note(err):
        problems.append((sample_id, err.path, err.reason))

    if entry.get("duplicate_of"):
        problems.append((sample_id, loader.manifest_path, f"duplicate id {entry['duplicate_of']!r}"))
    if loader.table is not None:
        if not entry["labels"]:
            problems += [(sid, loader.manifest_path, reason)
                         for sid, reason in unlabelled_entries({sample_id: entry})]
        for label in entry["labels"]:
            if label not in loader.table:
                problems.append((sample_id, loader.manifest_path,
                                 f"label {label!r} not in label CSV {loader.table.path}"))
    try:
        loader.waveform(sample_id)  # the configured channel, as training reads it
    except BadSampleError as err:
        note(err)
    try:
        kind, where = loader.frame_source(sample_id)
        if kind == "extracted":
            for i in range(cfg["n_frames"]):
                frame = extracted_frame_path(where, entry["video_id"], i)
                if not os.path.isdir(os.path.dirname(frame)):
                    note(BadSampleError(os.path.dirname(frame), "missing frame folder"))
                    continue
                try:
                    load_extracted_frame(where, entry["video_id"], i)
                except BadSampleError as err:
                    note(err)
        else:
            load_video_frames(where, cfg["n_frames"], indices=[0, cfg["n_frames"] - 1])
    except BadSampleError as err:
        note(err)
    return problems


def _check_chunk(ids):
    out = []
    for sample_id in ids:
        out += check_sample(sample_id)
    return out


def validate(manifest, label_csv=None, config=None, jobs=1, progress=None):
    """Check every sample; returns a list of (id, file, problem).

    ``jobs`` processes check chunks of samples; ``progress`` optionally wraps the iteration
    (over samples, or over chunks with ``jobs > 1``).

    Raises
    ------
    ManifestError
        The manifest cannot be read or has no entries.
    """
    progress = progress or (lambda it, total=None: it)
    from speechbrain_cavmae.data import resolve_config

    cfg = resolve_config(config, train=False)
    data = read_manifest(manifest)
    if not data:
        raise ManifestError(manifest, "manifest has no entries")
    table = LabelTable.from_csv(label_csv) if label_csv else None
    ids = list(data)
    jobs = cap_workers(jobs)
    if jobs <= 1:
        _init(data, cfg, table, os.fspath(manifest))
        problems = []
        for sample_id in progress(ids, total=len(ids)):
            problems += check_sample(sample_id)
        return problems
    chunks = [ids[i::jobs * 4] for i in range(jobs * 4)]
    problems = []
    with process_pool(jobs, initializer=_init,
                      initargs=(data, cfg, table, os.fspath(manifest))) as pool:
        for found in progress(pool.map(_check_chunk, chunks), total=len(chunks)):
            problems += found
    order = {sid: i for i, sid in enumerate(ids)}
    return sorted(problems, key=lambda p: order[p[0]])


def format_table(problems):
    """Plain-text table of problems."""
    rows = [("id", "file", "problem")] + [tuple(str(x) for x in p) for p in problems]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}" for r in rows]
    lines.insert(1, "-" * (widths[0] + widths[1] + 4 + max(len(r[2]) for r in rows)))
    return "\n".join(lines)


def add_arguments(parser):
    """The flags of ``cavmae validate``."""
    common.add_manifest(parser)
    common.add_label_csv(parser)
    common.add_num_workers(parser)
    parser.add_argument("--frame_source", default="auto", choices=["auto", "extracted", "video"],
                        help="where frames come from (auto: extracted when present)")
    parser.add_argument("--audio_source", default="auto", choices=["auto", "wav", "video"],
                        help="where audio comes from (auto: the entry's wav, else its video)")
    common.add_n_frames(parser)


def run(args):
    """Check the manifest; returns 1 when any sample has a problem."""
    config = {"frame_source": args.frame_source, "audio_source": args.audio_source,
              "n_frames": common.n_frames(args)}
    problems = validate(
        args.manifest, args.label_csv, config, args.num_workers,
        progress=lambda it, total=None: common.progress(it, args, total=total, desc="validate"),
    )
    n = len(read_manifest(args.manifest))
    if problems:
        print(format_table(problems))
        bad = len({p[0] for p in problems})
        print(f"\n{len(problems)} problem(s) in {bad} of {n} samples")
        return 1
    print(f"all {n} samples OK")
    return 0
