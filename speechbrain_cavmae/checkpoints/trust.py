"""What a model folder's ``hyperparams.yaml`` may build before it is loaded.

A HyperPyYAML file is code: ``!new:``, ``!name:``, ``!apply:`` and ``!module:`` tags import
and call whatever they name, and the plain YAML tags ``!!python/...`` do the same. So a
model folder from elsewhere could run any command when it is loaded. Every reader of model
folders (``AudioVisualClassifier.from_hparams``, :mod:`speechbrain_cavmae.checkpoints.loader`
and so every tool and ``--pretrained_path``) first calls :func:`check_hparams_code`, which
reads the yaml without building anything and refuses it unless every name it builds is a
class or function of this package, SpeechBrain or torch (:data:`ALLOWED_PACKAGES`), outside
the modules that run commands, download, or load other code or pickles
(:data:`DENIED_MODULES`). The folders this package writes pass; anything else needs the
explicit opt-in ``trust_remote_code=True`` (``--trust_remote_code`` on the command line),
as Hugging Face's option of the same name.

This is a guard against a yaml that runs code, not a sandbox: only load folders from
sources you trust with ``trust_remote_code=True``.

Example
-------
>>> check_hparams_code("model: !new:speechbrain_cavmae.CAVMAE", "a.yaml")
>>> try:
...     check_hparams_code("x: !apply:os.system [echo hi]", "b.yaml")
... except UntrustedCodeError as err:
...     print(str(err)[:54])
b.yaml: line 1: !apply:os.system is not allowed in a m
"""

import inspect
import logging
import os
import pydoc

import yaml

logger = logging.getLogger(__name__)

#: Top-level packages whose classes and functions a model folder may build.
ALLOWED_PACKAGES = ("speechbrain_cavmae", "speechbrain", "torch")

#: Modules (and their sub-modules) of those packages that are refused anyway: they run
#: shell commands, download, import or load other code or pickles, write files or start
#: processes.
DENIED_MODULES = (
    "speechbrain_cavmae.tools", "speechbrain_cavmae.training",
    "speechbrain.utils.superpowers", "speechbrain.utils.fetching",
    "speechbrain.utils.importutils", "speechbrain.utils.data_utils",
    "speechbrain.utils.distributed", "speechbrain.inference", "speechbrain.pretrained",
    "speechbrain.core", "speechbrain.utils.profiling",
    "torch.hub", "torch.serialization", "torch.jit", "torch.package", "torch.export",
    "torch.onnx", "torch.utils.cpp_extension", "torch.utils.data", "torch.distributed",
    "torch.multiprocessing", "torch.library", "torch.compiler", "torch.utils.benchmark",
)

#: HyperPyYAML tags that name something to import.
CALLABLE_TAGS = ("!new:", "!name:", "!apply:", "!module:")
#: HyperPyYAML tags that build nothing by themselves.
PLAIN_TAGS = ("!ref", "!copy", "!tuple", "!PLACEHOLDER")
_STANDARD_TAG = "tag:yaml.org,2002:"


class UntrustedCodeError(ValueError):
    """Raised when a model folder's yaml would build something outside the allow-list."""


def _in(module, prefixes):
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _defining_module(obj):
    if inspect.ismodule(obj):
        return obj.__name__
    module = getattr(obj, "__module__", None)
    if module is None and hasattr(obj, "__objclass__"):  # method descriptors
        module = getattr(obj.__objclass__, "__module__", None)
    return module


def refusal(name):
    """Why the dotted ``name`` of a tag may not be built, or ``None`` when it may.

    The name is resolved as HyperPyYAML resolves it (importing only modules of
    :data:`ALLOWED_PACKAGES`), and the module defining what it resolves to is checked, so
    that ``torch.os.system`` is refused like ``os.system``.

    Example
    -------
    >>> refusal("speechbrain.dataio.encoder.CategoricalEncoder") is None
    True
    >>> print(refusal("torch.os.system"))  # doctest: +ELLIPSIS
    it resolves to ....system, outside speechbrain_cavmae, speechbrain and torch
    """
    parts = name.split(".")
    if parts[0] not in ALLOWED_PACKAGES:
        return f"{parts[0]!r} is not one of {', '.join(ALLOWED_PACKAGES)}"
    if any(p.startswith("_") for p in parts):
        return "private names are not allowed"
    if _in(name, DENIED_MODULES):
        return "that module runs commands, downloads or loads code"
    try:
        obj = pydoc.locate(name)
    except Exception as exc:  # an import error inside the package
        return f"it cannot be imported ({type(exc).__name__}: {exc})"
    if obj is None:
        return "no such class or function"
    module = _defining_module(obj)
    if module is None:
        if callable(obj) or inspect.ismodule(obj):
            return "where it is defined is unknown"
        return None  # a plain value (a dtype, a number)
    shown = f"{module}.{getattr(obj, '__qualname__', '')}".rstrip(".")
    if not _in(module, ALLOWED_PACKAGES):
        return f"it resolves to {shown}, outside {', '.join(ALLOWED_PACKAGES[:-1])} and " \
               f"{ALLOWED_PACKAGES[-1]}"
    if _in(module, DENIED_MODULES):
        return f"it resolves to {shown}, which runs commands, downloads or loads code"
    return None


def _nodes(root):
    """Every node of a composed YAML document (aliases visited once)."""
    seen, todo = set(), [root]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                todo += [key, value]
        elif isinstance(node, yaml.SequenceNode):
            todo += list(node.value)


def hparams_problems(text):
    """``(line, tag, reason)`` of every tag of a HyperPyYAML ``text`` that may not be built.

    The text is composed (parsed, nothing constructed), so tags written with ``%TAG``
    shorthands or in verbatim form are seen as the loader would see them.
    """
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        return [(None, None, f"cannot be parsed to check it ({exc})")]
    problems = []
    for root in documents:
        for node in _nodes(root) if root is not None else ():
            tag, line = node.tag or "", node.start_mark.line + 1
            if tag.startswith(_STANDARD_TAG):
                if tag[len(_STANDARD_TAG):].startswith("python/"):
                    problems.append((line, tag, "Python object tags run code"))
                continue
            if tag in PLAIN_TAGS or tag == "!applyref:" or tag.startswith("!applyref:"):
                continue
            prefix = next((p for p in CALLABLE_TAGS if tag.startswith(p)), None)
            if prefix is None:
                reason = ("includes another file, which is not checked"
                          if tag.startswith("!include:") else "unknown tag")
                problems.append((line, tag, reason))
                continue
            reason = refusal(tag[len(prefix):])
            if reason is not None:
                problems.append((line, tag, reason))
    return problems


def check_hparams_code(text, source, trust_remote_code=False):
    """Refuse a model folder's yaml that builds anything outside the allow-list.

    Arguments
    ---------
    text : str
        The HyperPyYAML text.
    source : str
        The file, named in the error.
    trust_remote_code : bool
        Skip the check (the yaml may run any code: only for folders you trust).

    Raises
    ------
    UntrustedCodeError
        Naming the file, the line, the tag and why, and the opt-in.
    """
    if trust_remote_code:
        logger.warning("%s: trust_remote_code=True: its yaml may run any code", source)
        return
    problems = hparams_problems(text)
    if not problems:
        return
    where = "; ".join(
        (f"line {line}: {tag} is not allowed in a model folder ({reason})" if tag else reason)
        for line, tag, reason in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    raise UntrustedCodeError(
        f"{source}: {where}{more}. A model folder's yaml may only build classes and "
        f"functions of {', '.join(ALLOWED_PACKAGES)}; if you trust this folder, load it with "
        "trust_remote_code=True (--trust_remote_code on the command line)")


def check_hparams_file(path, trust_remote_code=False):
    """:func:`check_hparams_code` of the yaml file at ``path``."""
    path = os.fspath(path)
    if trust_remote_code:
        return check_hparams_code("", path, True)
    with open(path, encoding="utf8") as handle:
        text = handle.read()
    return check_hparams_code(text, path)
