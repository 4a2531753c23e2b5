"""Index media files for search by sound or by sight (``cavmae index``).

Every file (folders are walked recursively; manifests give their entries' files) is cut
into windows of the model's input length (``--hop`` seconds apart) and each window's
audio and visual embeddings are stored, with the file's path, size, modification time
and duration, in ``OUTPUT/index.sqlite``; faiss indexes are built from them. Re-running
embeds only new and changed files and drops removed ones; a killed run resumes where it
stopped (at most ``--batch_files`` files are embedded again). Unreadable files are listed
with their reason and skipped. See ``docs/search.md``.

Usage::

    cavmae index ~/Videos ~/Music/field-recordings --model cavmae-as --output my-index
    cavmae index ~/Videos --model cavmae-as --output my-index --json   # again: incremental

Authors
 * speechbrain-cavmae contributors 2026
"""

import json
import os
import sys

from speechbrain_cavmae.tools import common


def add_arguments(parser):
    """The flags of ``cavmae index``."""
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="folders of video and audio files, media files or manifests")
    common.add_model(parser)
    common.add_heads(parser)
    common.add_output(parser, help="the index folder (created, or updated when it exists)")
    parser.add_argument("--hop", type=float, default=None,
                        help="seconds between window starts (default: half the model's "
                        "window: 5.13 s for 1024 fbank frames)")
    parser.add_argument("--batch_files", type=int, default=8,
                        help="files embedded per committed batch (what a killed run loses)")
    parser.add_argument("--windows_per_batch", type=int, default=16,
                        help="windows (moments) decoded and embedded per forward pass")
    parser.add_argument("--hash", action="store_true",
                        help="a file whose size or time changed is embedded again only when "
                        "its SHA-256 changed too")
    parser.add_argument("--json", action="store_true",
                        help="print the summary (added, updated, removed, skipped) as JSON")
    common.add_device(parser)
    common.add_trust(parser)


def model_settings(args):
    """What the index records about its model, so that a search loads the same one."""
    model = args.model
    if os.path.exists(model):
        model = os.path.abspath(model)
    return {"model": model, "num_heads": args.num_heads,
            "decoder_num_heads": args.decoder_num_heads}


def run(args):
    """Add, update and drop files of the index."""
    from speechbrain_cavmae.search.embedder import Embedder
    from speechbrain_cavmae.search.index import update_index

    if args.batch_files < 1:
        raise common.UsageError("--batch_files must be >= 1")
    embedder = Embedder.load(args.model, args.num_heads, args.decoder_num_heads,
                             args.trust_remote_code, common.resolve_device(args.device),
                             args.hop, args.windows_per_batch)
    summary = update_index(
        args.paths, args.output, embedder, model_settings(args), args.batch_files, args.hash,
        progress=lambda it: common.progress(it, args, desc="index", unit="file"))
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"{args.output}: {summary['added']} added, {summary['updated']} updated, "
              f"{summary['removed']} removed, {len(summary['skipped'])} skipped; "
              f"{summary['files']} files, {summary['segments']} moments")
        for item in summary["skipped"]:
            print(f"skipped {item['path']}: {item['reason']}")
    return 0
