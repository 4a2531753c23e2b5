"""A local web page to search an index by sound or by sight (``cavmae serve``).

Drop or pick a query file (a sound, or a video's sight), see the hits as thumbnails with
their time ranges and play each moment in the page; any hit can be the next query. The
page needs no internet. It binds to 127.0.0.1: another ``--host`` is refused unless
``--allow_remote`` (anyone who reaches the port can then watch every indexed file). Only
indexed files are served (by their id in the index); uploads are limited to
``--max_upload_mb`` and deleted after the query. See ``docs/search.md``.

Usage::

    cavmae serve my-index            # then open http://127.0.0.1:8000/

Authors
 * speechbrain-cavmae contributors 2026
"""

import sys

from speechbrain_cavmae.tools import common


def add_arguments(parser):
    """The flags of ``cavmae serve``."""
    parser.add_argument("index", metavar="INDEX", help="index folder written by cavmae index")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=8000, help="port")
    parser.add_argument("--allow_remote", action="store_true",
                        help="allow a --host other machines can reach (they can then see "
                        "every indexed file)")
    parser.add_argument("--max_upload_mb", type=float, default=200,
                        help="largest query file accepted")
    common.add_model(parser, required=False)
    common.add_device(parser)
    common.add_trust(parser)


def run(args):
    """Serve the page until interrupted."""
    from speechbrain_cavmae.search.query import VideoSearch
    from speechbrain_cavmae.search.server import is_loopback, serve

    if not args.allow_remote and not is_loopback(args.host):
        raise common.UsageError(
            f"--host {args.host} is reachable from other machines, which would expose every "
            "indexed file; bind to 127.0.0.1, or pass --allow_remote if you mean it")
    if not 0 < args.port < 65536:
        raise common.UsageError("--port must be 1..65535")
    search = VideoSearch.from_hparams(args.index, model=args.model,
                                      device=common.resolve_device(args.device),
                                      trust_remote_code=args.trust_remote_code)
    search.store.rebuild()
    serve(search, args.host, args.port, args.allow_remote, args.max_upload_mb)
    return 0
