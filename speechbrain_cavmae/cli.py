"""``cavmae``: one command for every speechbrain-cavmae tool.

::

    cavmae <command> [flags]      # cavmae <command> --help for its flags

``python -m speechbrain_cavmae <command> [flags]`` is the same command. Each command is a
module of :mod:`speechbrain_cavmae.tools`; only the chosen command's module is imported,
and no command imports torch before it runs, so ``--help`` answers at once.

Example
-------
>>> parser = build_parser(["toy"])
>>> sorted(COMMANDS)[:4]
['balance', 'classify', 'convert', 'embed']
"""

import argparse
import importlib
import sys

from speechbrain_cavmae.tools import common

#: command -> (module, one-line summary)
COMMANDS = {
    "convert": ("speechbrain_cavmae.tools.convert",
                "an original CAV-MAE .pth (or any checkpoint) to a model folder"),
    "classify": ("speechbrain_cavmae.tools.classify",
                 "top-k classes of video or audio files"),
    "export": ("speechbrain_cavmae.tools.export",
               "a model as ONNX (or torch.export) graphs + a JSON description of its inputs"),
    "embed": ("speechbrain_cavmae.tools.extract_features",
              "audio, visual and joint embeddings of a manifest's clips"),
    "retrieval": ("speechbrain_cavmae.tools.retrieval",
                  "audio<->visual retrieval recall on a manifest"),
    "inpaint": ("speechbrain_cavmae.tools.inpaint",
                "figures of masked inputs and their reconstructions"),
    "prepare": ("speechbrain_cavmae.tools.prepare",
                "manifests from videos, or from AudioSet / VGGSound metadata"),
    "extract": ("speechbrain_cavmae.tools.extract",
                "pre-extract 16 kHz audio and frames from videos"),
    "shard": ("speechbrain_cavmae.tools.shard",
              "WebDataset tar shards of a manifest, with an index"),
    "validate": ("speechbrain_cavmae.tools.validate",
                 "decode every sample of a manifest and report the bad ones"),
    "stats": ("speechbrain_cavmae.tools.stats", "fbank mean and std of a manifest"),
    "balance": ("speechbrain_cavmae.tools.balance",
                "class-balanced sampling weights of a manifest"),
    "toy": ("speechbrain_cavmae.tools.toy", "write the toy audio-visual dataset"),
    "index": ("speechbrain_cavmae.tools.index",
              "index your media files for search by sound or by sight"),
    "search": ("speechbrain_cavmae.tools.search",
               "moments of indexed files that sound or look like a query"),
    "serve": ("speechbrain_cavmae.tools.serve", "a local web page to search an index"),
}


def build_parser(argv=(), prog="cavmae"):
    """The ``cavmae`` parser; only the command named in ``argv`` gets its flags (and its
    module imported)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=common.plain_text(__doc__.split("\n\n")[0]),
        formatter_class=common.HelpFormatter, allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, summary) in COMMANDS.items():
        if name != chosen:
            commands.add_parser(name, help=summary, allow_abbrev=False)
            continue
        module = importlib.import_module(module_name)
        sub = commands.add_parser(name, help=summary, description=common.description(module),
                                  formatter_class=common.HelpFormatter, allow_abbrev=False)
        common.add_tool_arguments(sub, module)
        sub.set_defaults(_run=module.run, _parser=sub)
    return parser


def main(argv=None, prog=None):
    """Entry point of the ``cavmae`` console script (and of ``python -m
    speechbrain_cavmae``, ``prog`` naming it in the usage lines)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv, prog or "cavmae")
    args = parser.parse_args(argv)
    return common.execute(args._run, args, args._parser)


if __name__ == "__main__":
    sys.exit(main())
