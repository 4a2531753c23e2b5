"""The vocabulary every command-line tool shares, and how a tool runs.

A tool module defines three functions:

* ``add_arguments(parser)``: its flags, the shared ones taken from here so that a flag
  has one name, one meaning and one default in every tool;
* ``run(args)``: the work; it returns the exit status and imports the heavy libraries
  (torch, SpeechBrain, timm) itself, so that ``--help`` answers at once;
* ``main(argv=None)``: ``python -m speechbrain_cavmae.<tool>``, a call to :func:`main_of`.

The ``cavmae`` command (:mod:`speechbrain_cavmae.cli`) runs the same two functions.

Exit status: 0 on success, 1 when the data, a file or a model is the problem (one line
on stderr, no traceback unless ``--debug``), 2 for a usage error (argparse's convention).

Flags renamed when the tools were unified still parse (hidden from ``--help``):
``--checkpoint`` (now ``--model``), ``--data`` (``--manifest``), ``--out`` / ``--out_dir``
(``--output``), ``--jobs`` (``--num_workers``), ``--top-k`` (``--top_k``), ``--frames``
(``--n_frames``) and the dashed flags of ``toy``.

Example
-------
>>> parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
>>> add_model(parser)
>>> add_device(parser)
>>> parser.parse_args(["--checkpoint", "m"]).model, parser.parse_args(["--model", "m"]).device
('m', 'auto')
"""

import argparse
import logging
import os
import sys

from speechbrain_cavmae.settings import SettingError, check_settings

logger = logging.getLogger(__name__)

#: Optional dependencies: module -> what to install.
EXTRAS = {
    "matplotlib": "pip install 'speechbrain-cavmae[plots]'",
    "webdataset": "pip install 'speechbrain-cavmae[shards]'",
    "sklearn": "pip install scikit-learn",
    "cv2": "pip install opencv-python-headless",
    "faiss": "pip install 'speechbrain-cavmae[search]'",
    "flask": "pip install 'speechbrain-cavmae[search]'",
}


class UsageError(Exception):
    """A combination of flags that cannot work (exit status 2)."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and shows each flag's default when it has one."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (
            "%(default)" not in text
            and action.option_strings
            and default not in (None, False, argparse.SUPPRESS)
        ):
            text += " (default: %(default)s)"
        return text


def alias(parser, old, dest, **kwargs):
    """A former spelling of a flag: parsed into ``dest``, hidden from the help."""
    parser.add_argument(old, dest=dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS,
                        **kwargs)


def positional_alias(parser, dest, metavar):
    """A former positional argument, now the flag ``--<dest>``: still accepted in its place
    (and not shown in the help)."""
    parser.add_argument(f"_positional_{dest}", nargs="?", default=None, metavar=metavar,
                        help=argparse.SUPPRESS)


def add_model(parser, required=True, aliases=("--checkpoint",)):
    """``--model``: a model folder, a recipe's output folder or an original ``.pth``."""
    parser.add_argument(
        "--model", required=False, default=None,
        help="model folder (hyperparams.yaml + model.ckpt), a recipe's output folder, or an "
        "original CAV-MAE .pth" + (" (required)" if required else ""),
    )
    for old in aliases:
        alias(parser, old, "model")
    _require(parser, required, "model", "--model")


def add_heads(parser, decoder=True):
    """``--num_heads`` / ``--decoder_num_heads`` for a ``.pth`` that does not record them."""
    parser.add_argument("--num_heads", type=int, default=None,
                        help="encoder attention heads: needed for a .pth whose width is not "
                        "the released 768 (12 heads); a model folder records them")
    if decoder:
        parser.add_argument("--decoder_num_heads", type=int, default=None,
                            help="decoder heads: needed for a pretraining .pth whose decoder "
                            "is not 512 wide (16 heads)")


def add_manifest(parser, required=True, aliases=("--data",)):
    """``--manifest``: a manifest (original CAV-MAE JSON, SpeechBrain JSON or CSV)."""
    parser.add_argument("--manifest", default=None,
                        help="manifest: original CAV-MAE JSON, SpeechBrain JSON or CSV"
                        + (" (required)" if required else ""))
    for old in aliases:
        alias(parser, old, "manifest")
    _require(parser, required, "manifest", "--manifest")


def add_label_csv(parser, required=False):
    """``--label_csv``: the ``index,mid,display_name`` class table."""
    parser.add_argument("--label_csv", default=None,
                        help="index,mid,display_name CSV of the classes"
                        + (" (required)" if required else ""))
    _require(parser, required, "label_csv", "--label_csv")


def add_output(parser, required=True, help="output file or folder", aliases=()):
    """``--output``: where the tool writes."""
    parser.add_argument("--output", default=None,
                        help=help + (" (required)" if required else ""))
    for old in aliases:
        alias(parser, old, "output")
    _require(parser, required, "output", "--output")


def add_device(parser):
    """``--device``: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``..."""
    parser.add_argument("--device", default="auto",
                        help="auto (cuda when available, else cpu), cpu, cuda, cuda:1...")


def add_loader(parser, batch_size=32):
    """``--batch_size`` and ``--num_workers`` of the data loader."""
    parser.add_argument("--batch_size", type=int, default=batch_size, help="clips per batch")
    add_num_workers(parser)


def add_num_workers(parser, help="data loading worker processes (0: in the main process)",
                    aliases=()):
    """``--num_workers``: worker processes."""
    parser.add_argument("--num_workers", type=int, default=0, help=help)
    for old in aliases:
        alias(parser, old, "num_workers", type=int)


def add_fbank_stats(parser):
    """``--dataset_mean`` / ``--dataset_std``: the fbank normalisation, when overriding."""
    parser.add_argument("--dataset_mean", type=float, default=None,
                        help="fbank normalisation mean (default: the model folder's, else "
                        "AudioSet's -5.081)")
    parser.add_argument("--dataset_std", type=float, default=None,
                        help="fbank normalisation std (default: the model folder's, else "
                        "AudioSet's 4.4849)")


def add_trust(parser):
    """``--trust_remote_code``: allow a model folder's yaml to build any class."""
    parser.add_argument("--trust_remote_code", action="store_true",
                        help="let the model folder's hyperparams.yaml build classes outside "
                        "this package, SpeechBrain and torch (it is code: only for folders "
                        "you trust)")


def add_run_options(parser, log_level="WARNING"):
    """``--no_progress``, ``--debug`` and ``--log_level``, added to every tool."""
    parser.add_argument("--no_progress", action="store_true",
                        help="no progress bars (they are off anyway when stderr is not a "
                        "terminal)")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error")
    parser.add_argument("--log_level", default=log_level,
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"), type=str.upper,
                        help="logging level")


def _require(parser, required, dest, flag):
    """Record that ``flag`` must be given (see :func:`check_required`)."""
    if required:
        needed = getattr(parser, "_cavmae_required", ()) + ((dest, flag),)
        parser._cavmae_required = needed
        parser.set_defaults(_required=needed)


def check_required(args):
    """Raise :class:`UsageError` for a required flag that was not given (the required flags
    are checked here rather than by argparse so that their former spellings count)."""
    for name, value in list(vars(args).items()):
        if name.startswith("_positional_") and value is not None:
            dest = name[len("_positional_"):]
            if getattr(args, dest, None) not in (None, value):
                raise UsageError(f"--{dest} given twice ({getattr(args, dest)} and {value})")
            setattr(args, dest, value)
    missing = [flag for dest, flag in getattr(args, "_required", ()) or ()
               if getattr(args, dest, None) is None]
    if missing:
        raise UsageError("the following arguments are required: " + ", ".join(missing))


def resolve_device(name):
    """The torch device string for ``--device`` (``auto``: ``cuda`` when available)."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def progress(iterable, args, **kwargs):
    """``iterable`` wrapped in a tqdm bar on stderr, unless ``--no_progress`` or stderr is
    not a terminal."""
    from tqdm import tqdm

    disable = getattr(args, "no_progress", False) or not sys.stderr.isatty()
    return tqdm(iterable, disable=disable, file=sys.stderr, **kwargs)


def ensure_parent(path):
    """Create the folder that will hold ``path``."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    os.makedirs(folder, exist_ok=True)


def missing_extra(exc):
    """The ``pip install`` line for an ``ImportError`` of an optional dependency, or None."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    return EXTRAS.get(name)


def _error_types():
    from speechbrain_cavmae.data.errors import BadSampleError

    return (BadSampleError, OSError, ValueError, RuntimeError, KeyError)


def execute(run, args, parser):
    """Run ``run(args)`` with the shared logging and error handling; return the exit status.

    Numeric flags are checked first (:mod:`speechbrain_cavmae.settings`: ``--dataset_std 0``,
    ``--top_k -2``...). A :class:`UsageError` or a number out of its range ends as argparse's
    usage errors do (status 2), before anything is read. Data, file and
    model problems print one line (``error: ...``) and return 1; ``--debug`` re-raises them.
    A missing optional dependency names the ``pip install`` that provides it.
    """
    logging.basicConfig(level=getattr(args, "log_level", "WARNING"),
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        check_required(args)
        check_settings(vars(args), prefix="--")
        status = run(args)
    except (UsageError, SettingError) as exc:
        parser.error(str(exc))
    except ImportError as exc:
        hint = missing_extra(exc)
        if hint is None or getattr(args, "debug", False):
            raise
        print(f"error: {exc}; install it with: {hint}", file=sys.stderr)
        return 1
    except _error_types() as exc:
        if getattr(args, "debug", False):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0 if status is None else int(status)


def build_parser(module, prog=None):
    """The stand-alone parser of a tool ``module`` (``python -m speechbrain_cavmae.<tool>``)."""
    spec = getattr(module, "__spec__", None)
    name = (spec.name if spec is not None else module.__name__).rsplit(".", 1)[-1]
    parser = argparse.ArgumentParser(
        prog=prog or f"python -m speechbrain_cavmae.{name}",
        description=description(module), formatter_class=HelpFormatter,
    )
    add_tool_arguments(parser, module)
    return parser


def description(module):
    """A tool's help text: its module docstring without the ``Authors`` section."""
    return (module.__doc__ or "").split("\nAuthors\n")[0].rstrip()


def add_tool_arguments(parser, module):
    """The flags of a tool ``module`` and the run options (which a tool with its own
    sub-commands, ``OWN_RUN_OPTIONS = True``, adds to each of them itself)."""
    module.add_arguments(parser)
    if not getattr(module, "OWN_RUN_OPTIONS", False):
        add_run_options(parser, getattr(module, "LOG_LEVEL", "WARNING"))


def main_of(module_name, argv=None):
    """``main`` of the tool module ``module_name``: parse ``argv`` and :func:`execute`."""
    module = sys.modules[module_name]
    parser = build_parser(module)
    return execute(module.run, parser.parse_args(argv), parser)
