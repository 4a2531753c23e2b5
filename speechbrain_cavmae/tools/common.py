"""The vocabulary every command-line tool shares, and how a tool runs.

A tool module defines two functions, which the ``cavmae`` command
(:mod:`speechbrain_cavmae.cli`) runs:

* ``add_arguments(parser)``: its flags, the shared ones taken from here so that a flag
  has one name, one type, one default and one help text in every tool (only ``--output``
  says what the tool writes there);
* ``run(args)``: the work; it returns the exit status and imports the heavy libraries
  (torch, SpeechBrain, timm) itself, so that ``--help`` answers at once.

Every file or folder a command reads or writes is a named flag (``--model``,
``--manifest``, ``--videos``, ``--output``...); the one positional argument is the list of
files ``cavmae classify`` classifies. Each flag has one spelling, snake_case as
SpeechBrain's.

Exit status: 0 on success, 1 when the data, a file or a model is the problem (one line
on stderr, no traceback unless ``--debug``), 2 for a usage error (argparse's convention).

Example
-------
>>> parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
>>> add_model(parser)
>>> add_device(parser)
>>> parser.parse_args(["--model", "m"]).device
'auto'
"""

import argparse
import logging
import os
import re
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
    "onnx": "pip install 'speechbrain-cavmae[onnx]'",
    "onnxruntime": "pip install 'speechbrain-cavmae[onnx]'",
    "onnxscript": "pip install 'speechbrain-cavmae[onnx]'",
}


class UsageError(Exception):
    """A combination of flags that cannot work (exit status 2)."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks; marks required flags and shows each optional
    flag's default when it has one."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.option_strings and action.required:
            return text + " (required)"
        default = action.default
        if (
            "%(default)" not in text
            and action.option_strings
            and default not in (None, False, argparse.SUPPRESS)
        ):
            text += " (default: %(default)s)"
        return text


def add_model(parser, required=True):
    """``--model``: a model folder, a recipe's output folder or an original ``.pth``."""
    parser.add_argument(
        "--model", required=required, default=None,
        help="model folder (hyperparams.yaml + model.ckpt), a recipe's output folder, or an "
        "original CAV-MAE .pth",
    )


def add_heads(parser, decoder=True):
    """``--num_heads`` / ``--decoder_num_heads`` for a ``.pth`` that does not record them."""
    parser.add_argument("--num_heads", type=int, default=None,
                        help="encoder attention heads: needed for a .pth whose width is not "
                        "the released 768 (12 heads); a model folder records them")
    if decoder:
        parser.add_argument("--decoder_num_heads", type=int, default=None,
                            help="decoder heads: needed for a pretraining .pth whose decoder "
                            "is not 512 wide (16 heads)")


def add_manifest(parser, required=True):
    """``--manifest``: a manifest (original CAV-MAE JSON, SpeechBrain JSON or CSV)."""
    parser.add_argument("--manifest", required=required, default=None,
                        help="manifest: original CAV-MAE JSON, SpeechBrain JSON or CSV")


def add_label_csv(parser, required=False):
    """``--label_csv``: the ``index,mid,display_name`` class table."""
    parser.add_argument("--label_csv", required=required, default=None,
                        help="index,mid,display_name CSV of the classes")


def add_videos(parser):
    """``--videos``: the videos a command reads, as a folder or a list file."""
    parser.add_argument("--videos", required=True,
                        help="folder of videos (searched recursively) or a list file (one "
                        "video path per line)")


def add_output(parser, required=True, help="output file or folder"):
    """``--output``: where the tool writes (its help says what is written there)."""
    parser.add_argument("--output", required=required, default=None, help=help)


def add_device(parser):
    """``--device``: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``..."""
    parser.add_argument("--device", default="auto",
                        help="auto (cuda when available, else cpu), cpu, cuda, cuda:1...")


def add_batch_size(parser):
    """``--batch_size``: clips per batch."""
    parser.add_argument("--batch_size", type=int, default=32, help="clips per batch")


def add_loader(parser):
    """``--batch_size`` and ``--num_workers`` of the data loader."""
    add_batch_size(parser)
    add_num_workers(parser)


def add_num_workers(parser):
    """``--num_workers``: worker processes."""
    parser.add_argument("--num_workers", type=int, default=0,
                        help="worker processes reading the data in parallel (0: none, all "
                        "in the main process)")


#: Video frames per clip when neither the flag nor a model folder says otherwise.
DEFAULT_N_FRAMES = 10


def add_n_frames(parser):
    """``--n_frames``: video frames per clip (None: a model folder's record, else
    :data:`DEFAULT_N_FRAMES`; see :func:`n_frames`)."""
    parser.add_argument("--n_frames", type=int, default=None,
                        help=f"video frames per clip (default: what the model folder records, "
                        f"else {DEFAULT_N_FRAMES})")


def n_frames(args):
    """``--n_frames`` of a tool without a model folder: the flag, else the default."""
    return DEFAULT_N_FRAMES if args.n_frames is None else args.n_frames


def audio_channel(text):
    """``--audio_channel``'s value: a channel index (int), or None for ``mean`` (the mean of
    the channels), as the data pipeline's ``audio_channel``.

    Example
    -------
    >>> audio_channel("1"), audio_channel("mean")
    (1, None)
    """
    if text == "mean":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"a channel index >= 0 or 'mean', got {text!r}")
    return value


def add_audio_channel(parser):
    """``--audio_channel``: the channel of multichannel audio kept."""
    parser.add_argument("--audio_channel", type=audio_channel, default=0,
                        help="channel of multichannel audio kept (0: the first, as the "
                        "original's sox remix 1), or 'mean' to average the channels")


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


def add_run_options(parser):
    """``--no_progress``, ``--debug`` and ``--log_level``, added to every tool."""
    parser.add_argument("--no_progress", action="store_true",
                        help="no progress bars (they are off anyway when stderr is not a "
                        "terminal)")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error")
    parser.add_argument("--log_level", default="WARNING",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"), type=str.upper,
                        help="logging level")


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
    from speechbrain_cavmae.data import BadSampleError

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


#: reST markup of the docstrings: ``:func:`~a.b.name``` / ``:mod:`a.b``` roles, double
#: backquotes, and a paragraph's closing ``::`` (a literal block follows).
_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_TILDE_ROLE = re.compile(r":[a-z]+:`~[^`]*?\.?([^.`]+)`")


def plain_text(text):
    """reST of a docstring rendered as the plain text of a ``--help``: roles become their
    target (``~`` keeps the last name), double backquotes go, ``Usage::`` ends in one
    colon and a lone ``::`` line is dropped.

    Example
    -------
    >>> print(plain_text("Runs :func:`~a.b.run` of :mod:`a.tools`, like ``cavmae x``::"))
    Runs run of a.tools, like cavmae x:
    >>> plain_text("Usage::"), plain_text("::")
    ('Usage:', '')
    """
    text = _TILDE_ROLE.sub(r"\1", text)
    text = _ROLE.sub(r"\1", text)
    text = text.replace("``", "")
    text = re.sub(r"(?m)^[ \t]*::[ \t]*$\n?(?:[ \t]*\n)?", "", text)
    text = re.sub(r"(?m)(\S)[ \t]*::[ \t]*$", r"\1:", text)
    return text.strip("\n")


def description(module):
    """A tool's help text: its module docstring, without the ``Authors`` section, as plain
    text (:func:`plain_text`)."""
    return plain_text((module.__doc__ or "").split("\nAuthors\n")[0].rstrip())


def add_tool_arguments(parser, module):
    """The flags of a tool ``module`` and the run options (which a tool with its own
    sub-commands, ``OWN_RUN_OPTIONS = True``, adds to each of them itself)."""
    module.add_arguments(parser)
    if not getattr(module, "OWN_RUN_OPTIONS", False):
        add_run_options(parser)
