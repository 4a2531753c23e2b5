"""Search an index by sound or by sight (``cavmae search``).

The query is a file's sound (``--audio``: an audio file or a video's sound track), a
file's sight (``--video``), optionally only ``--start``..``--end`` seconds of it, or a
moment already in the index (``--indexed PATH@SECONDS``, by its ``--modality``). Hits are
moments of the indexed files (by default) or whole files (``--whole_files``) by
their audio or visual embedding (``--target``; default: the query's own modality; the
other one is cross-modal: "what does this sound look like").

Usage::

    cavmae search my-index --audio bark.wav --target visual --top_k 5
    cavmae search my-index --indexed ~/Videos/park.mp4@12 --json

Authors
 * speechbrain-cavmae contributors 2026
"""

import json
import sys

from speechbrain_cavmae.tools import common


def add_arguments(parser):
    """The flags of ``cavmae search``."""
    parser.add_argument("index", metavar="INDEX", help="index folder written by cavmae index")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--audio", metavar="FILE", help="search by this file's sound")
    query.add_argument("--video", metavar="FILE", help="search by this file's sight")
    query.add_argument("--indexed", metavar="PATH@SECONDS",
                       help="search by the indexed moment of PATH at SECONDS")
    parser.add_argument("--start", type=float, default=None,
                        help="query only from this second of the file")
    parser.add_argument("--end", type=float, default=None,
                        help="query only up to this second of the file")
    parser.add_argument("--modality", choices=("audio", "visual"), default="audio",
                        help="which vector of an --indexed moment is the query")
    parser.add_argument("--target", choices=("audio", "visual"), default=None,
                        help="search the indexed sounds or sights (default: the query's "
                        "modality)")
    parser.add_argument("--whole_files", action="store_true",
                        help="hits are whole files (clip-level vectors), not moments")
    parser.add_argument("--top_k", type=int, default=10, help="number of hits")
    parser.add_argument("--overlapping", action="store_true",
                        help="keep moments that overlap a better hit of the same file (by "
                        "default each hit is a distinct moment)")
    parser.add_argument("--json", action="store_true", help="print the hits as JSON")
    common.add_model(parser, required=False)
    common.add_device(parser)
    common.add_trust(parser)


def run(args):
    """Print the hits."""
    from speechbrain_cavmae.search.query import VideoSearch, parse_indexed

    if args.top_k < 1:
        raise common.UsageError("--top_k must be >= 1")
    if args.indexed and (args.start is not None or args.end is not None):
        raise common.UsageError("--start / --end go with --audio or --video, not --indexed")
    search = VideoSearch.from_hparams(args.index, model=args.model,
                                      device=common.resolve_device(args.device),
                                      trust_remote_code=args.trust_remote_code)
    options = dict(target=args.target, top_k=args.top_k, level="clip" if args.whole_files else "segment",
                   overlapping=args.overlapping)
    if args.indexed:
        path, seconds = parse_indexed(args.indexed)
        hits = search.search_indexed(path, seconds, args.modality, **options)
    else:
        modality = "audio" if args.audio else "visual"
        hits = search.search_file(args.audio or args.video, modality, start=args.start,
                                  end=args.end, **options)
    if args.json:
        print(json.dumps([{"path": h.path, "start": round(h.start, 3),
                           "end": round(h.end, 3), "score": round(h.score, 5)}
                          for h in hits], indent=1))
    else:
        for rank, h in enumerate(hits, 1):
            print(f"{rank:3d}  {h.score:.4f}  {h.start:8.2f}-{h.end:<8.2f} {h.path}")
    return 0
