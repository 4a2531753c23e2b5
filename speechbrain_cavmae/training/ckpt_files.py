"""Checkpoint files that cannot be written or read end in one line naming the file.

SpeechBrain's ``Checkpointer`` saves and loads each recoverable through a hook; an error
inside one (a full disk: torch's ``basic_ios::clear: iostream error``; a pickle in
``optimizer.ckpt``: a long ``UnpicklingError``) surfaces without the file's name.
:func:`named_hooks` runs every hook of one save or load so that such an error becomes a
:class:`CheckpointFileError` naming the file and the cause (a full disk is named as such,
see :func:`speechbrain_cavmae.data.files.write_error`).

Example
-------
>>> str(CheckpointFileError("save/CKPT+1/optimizer.ckpt", "cannot read", "truncated"))
'cannot read the checkpoint file save/CKPT+1/optimizer.ckpt: truncated'
"""

import contextlib

from speechbrain.utils.checkpoints import (
    DEFAULT_LOAD_HOOKS,
    DEFAULT_SAVE_HOOKS,
    get_default_hook,
)

from speechbrain_cavmae.data.files import write_error

#: Longest cause kept in the message (torch's load errors run to many lines).
MAX_CAUSE = 300


class CheckpointFileError(RuntimeError):
    """A checkpoint file that could not be written or read: ``path``, ``action``
    (``cannot write`` / ``cannot read``) and ``reason``."""

    def __init__(self, path, action, reason):
        self.path, self.action, self.reason = str(path), action, str(reason)
        super().__init__(f"{action} the checkpoint file {self.path}: {self.reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.action, self.reason))


def first_line(exc):
    """``Type: first line of the message`` of ``exc``, at most :data:`MAX_CAUSE` long."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= MAX_CAUSE else text[: MAX_CAUSE - 3] + "..."


def file_error(exc, path, save):
    """The :class:`CheckpointFileError` of ``exc``, raised saving / loading ``path``."""
    if isinstance(exc, CheckpointFileError):
        return exc
    if save:
        cause = write_error(exc, path) if isinstance(exc, (OSError, RuntimeError)) else exc
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else \
            first_line(cause)
        return CheckpointFileError(path, "cannot write", reason)
    if isinstance(exc, FileNotFoundError):
        return CheckpointFileError(path, "cannot read", "the file is missing")
    return CheckpointFileError(
        path, "cannot read",
        f"{first_line(exc)} (a damaged or foreign file: remove this checkpoint folder "
        "to resume from the one before it)")


def _named(hook, save):
    def run(obj, path, *args, **kwargs):
        try:
            return hook(obj, path, *args, **kwargs)
        except (CheckpointFileError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            raise file_error(exc, path, save) from exc

    return run


@contextlib.contextmanager
def named_hooks(checkpointer, save):
    """While in the block, every save (``save=True``) or load hook of ``checkpointer``'s
    recoverables raises :class:`CheckpointFileError` naming its file."""
    hooks = checkpointer.custom_save_hooks if save else checkpointer.custom_load_hooks
    defaults = DEFAULT_SAVE_HOOKS if save else DEFAULT_LOAD_HOOKS
    before = dict(hooks)
    for name, obj in checkpointer.recoverables.items():
        hook = before.get(name) or get_default_hook(obj, defaults)
        if hook is not None:
            hooks[name] = _named(hook, save)
    try:
        yield
    finally:
        hooks.clear()
        hooks.update(before)
