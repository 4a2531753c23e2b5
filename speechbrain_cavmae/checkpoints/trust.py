"""The schema of a model folder's ``hyperparams.yaml``: what a folder may contain.

A HyperPyYAML file is code: ``!new:``, ``!name:``, ``!apply:`` and ``!module:`` import and
call what they name, ``!include:`` reads another file, PyYAML's ``!!python/...`` tags build
any object, and a ``!tuple`` (or a plain ``(...)`` scalar) is parsed with PyYAML's unsafe
loader. A model folder is data, so every reader of model folders
(``AudioVisualClassifier.from_hparams``, :mod:`speechbrain_cavmae.checkpoints.loader` and so
every tool, the drop-in encoders' ``ckpt_path`` and the recipes' ``--pretrained_path``)
first calls :func:`check_folder_hparams`, which composes the yaml (parses it; nothing is
built, imported or read) and refuses it unless

* every tag is plain YAML data (strings, numbers, booleans, null, lists, mappings; no
  ``&anchor`` / ``*alias``, which can expand exponentially),
  ``!ref`` / ``!copy`` of keys (``<key>``, ``<key[sub]>``; no attribute access
  ``<key.attr>``, which HyperPyYAML turns into a ``getattr`` call, and no ``**``),
  ``!tuple`` / ``(...)`` of plain values, ``!PLACEHOLDER``, ``!new:`` of one of
  :data:`FOLDER_CLASSES`, or ``!name:`` of one of :data:`LOAD_HOOKS` as a ``custom_hooks``
  entry of the ``Pretrainer``: what :func:`~speechbrain_cavmae.checkpoints.model_folder.
  hparams_text` writes, and nothing else;
* the ``Pretrainer`` takes only :data:`PRETRAINER_ARGS` (as a mapping), with ``paths``
  holding ``model``;
* every path of ``paths``, after ``!ref`` is resolved (with the ``pretrained_path`` the
  reader sets) and symbolic links are followed, is a file inside the folder, and
  ``paths: model`` is the folder's own ``model.ckpt`` (the file the other readers load),
  so that every reader reads the same weights and a ``savedir`` only ever links files of
  the folder.

Anything else is an :class:`UntrustedCodeError` naming the file, the line and the reason.
The one way past it is the explicit opt-in ``trust_remote_code=True``
(``--trust_remote_code`` on the command line, ``trust_remote_code: True`` in a recipe's
yaml), as Hugging Face's option of the same name: only for folders you trust, whose yaml
may then run any code.

Example
-------
>>> check_folder_hparams("n: 1\\nx: !new:speechbrain_cavmae.CAVMAE", "a.yaml", None)
>>> try:
...     check_folder_hparams("x: !apply:os.system [echo hi]", "b.yaml", None)
... except UntrustedCodeError as err:
...     print(str(err)[:62])
b.yaml: line 1: !apply:os.system is not allowed (!apply: calls
"""

import logging
import os
import posixpath
import re

import yaml

logger = logging.getLogger(__name__)

#: The classes a model folder may build (``!new:``): the models, the fbank front end, the
#: label encoder and the ``Pretrainer`` that loads the weights.
FOLDER_CLASSES = frozenset({
    "speechbrain_cavmae.CAVMAE",
    "speechbrain_cavmae.CAVMAEClassifier",
    "speechbrain_cavmae.model.cavmae.CAVMAE",
    "speechbrain_cavmae.model.classifier.CAVMAEClassifier",
    "speechbrain_cavmae.data.fbank.KaldiFbank",
    "speechbrain.dataio.encoder.CategoricalEncoder",
    "speechbrain.utils.parameter_transfer.Pretrainer",
})
PRETRAINER = "speechbrain.utils.parameter_transfer.Pretrainer"
#: Arguments the ``Pretrainer`` may take (no ``collect_in``: the reader decides where files
#: are linked; no ``conditions``).
PRETRAINER_ARGS = ("loadables", "paths", "custom_hooks")
#: The functions a folder may name (``!name:``), only as a ``custom_hooks`` entry.
LOAD_HOOKS = frozenset({"speechbrain_cavmae.checkpoints.loader.strict_load_hook"})
#: The weights file every reader loads (``paths: model`` must be it).
MODEL_FILE = "model.ckpt"

_STANDARD = "tag:yaml.org,2002:"
_DATA_TAGS = {_STANDARD + t for t in ("str", "int", "float", "bool", "null", "seq", "map")}
_REF = re.compile(r"<([^<>]*)>")
_REF_NAME = re.compile(r"[A-Za-z_][\w-]*(\[[^\[\]<>.]+\])*")
_TUPLE = re.compile(r"^\(.*\)$", re.DOTALL)


class UntrustedCodeError(ValueError):
    """Raised when a model folder's yaml is outside the schema of
    :mod:`speechbrain_cavmae.checkpoints.trust` (it would build, call or read something a
    model folder does not)."""


class _Problems(list):
    def add(self, node, what, reason):
        self.append((node.start_mark.line + 1 if node is not None else None, what, reason))


def _tag(node):
    return node.tag or ""


def _shown(node):
    """A short rendering of a node's tag (and value) for messages."""
    tag = _tag(node)
    if tag.startswith(_STANDARD):
        tag = "!!" + tag[len(_STANDARD):]
    return tag


def _check_tuple(text, node, problems):
    """A ``!tuple`` / ``(...)`` scalar is parsed by HyperPyYAML with PyYAML's *unsafe*
    loader: only plain scalars may be inside."""
    try:
        inner = yaml.compose("[" + text.strip()[1:-1] + "]", Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        problems.add(node, f"tuple {text!r}", "cannot be parsed as a tuple of plain values")
        return
    for item in inner.value if isinstance(inner, yaml.SequenceNode) else [inner]:
        if not isinstance(item, yaml.ScalarNode) or _tag(item) not in _DATA_TAGS:
            problems.add(node, f"tuple {text!r}",
                         "a tuple may only hold plain numbers and strings")
            return


def _check_ref(text, node, problems):
    refs = _REF.findall(text)
    bad = [r for r in refs if not _REF_NAME.fullmatch(r)]
    if not refs or bad:
        problems.add(node, f"{_shown(node)} {text}",
                     "a reference names a key (<key> or <key[sub]>); attribute access "
                     "(<key.attr>) calls getattr and is not allowed")
    elif "**" in text:
        problems.add(node, f"{_shown(node)} {text}", "'**' is not allowed in a reference")


def _walk(node, problems, parent_key=None, in_hooks=False, seen=None):
    """Check the tags of ``node`` and below; returns the ``!new:Pretrainer`` nodes. A node
    met twice is a YAML alias (``*name``), which the writers never use and which can
    expand exponentially when loaded: refused, and not followed again."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        problems.add(node, "*alias", "YAML aliases are not allowed (use !ref)")
        return []
    seen.add(id(node))
    found = []
    tag = _tag(node)
    if tag.startswith("!new:"):
        name = tag[len("!new:"):]
        if name not in FOLDER_CLASSES:
            problems.add(node, tag, "a model folder may only build "
                         + ", ".join(sorted(FOLDER_CLASSES)))
        elif name == PRETRAINER:
            found.append(node)
    elif tag.startswith("!name:"):
        if tag[len("!name:"):] not in LOAD_HOOKS or not in_hooks:
            problems.add(node, tag, "!name: is only allowed for the Pretrainer's load hook "
                         + ", ".join(sorted(LOAD_HOOKS)))
    elif tag in ("!ref", "!copy"):
        if not isinstance(node, yaml.ScalarNode):
            problems.add(node, tag, "a reference must be a string")
        else:
            _check_ref(node.value, node, problems)
    elif tag == "!tuple":
        if isinstance(node, yaml.ScalarNode):
            _check_tuple(node.value, node, problems)
        else:
            problems.add(node, tag, "a tuple must be a string")
    elif tag == "!PLACEHOLDER":
        pass
    elif tag in _DATA_TAGS:
        if (isinstance(node, yaml.ScalarNode) and node.style is None
                and _TUPLE.match(node.value)):
            _check_tuple(node.value, node, problems)  # HyperPyYAML's implicit tuples
    else:
        prefix = tag.split(":", 1)[0] + ":" if ":" in tag else tag
        why = {
            "!apply:": "!apply: calls what it names",
            "!applyref:": "!applyref: calls a function",
            "!module:": "!module: imports a module",
            "!include:": "!include: reads another file",
            "!name:": "!name: names a function to call",
        }.get(prefix)
        if tag.startswith(_STANDARD + "python/"):
            why = "Python object tags run code"
        problems.add(node, _shown(node), why or "unknown tag")
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            found += _walk(key, problems, seen=seen)
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            found += _walk(value, problems, name, parent_key == "custom_hooks", seen)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found += _walk(item, problems, seen=seen)
    return found


def _resolve(node, top, overrides, problems, seen=()):
    """The string a scalar node stands for after HyperPyYAML's ``!ref`` interpolation
    (with ``overrides`` of top-level keys), or ``None`` (a problem is recorded)."""
    if not isinstance(node, yaml.ScalarNode) or (
            _tag(node) not in ("!ref", "!copy", _STANDARD + "str")):
        problems.add(node, _shown(node) or "value", "a path must be a string")
        return None
    if _tag(node) == _STANDARD + "str":
        return node.value

    def value_of(name):
        key = name.split("[", 1)[0]
        if "[" in name:
            raise KeyError(name)
        if key in overrides:
            return str(overrides[key])
        if key in seen or key not in top:
            raise KeyError(name)
        return _resolve(top[key], top, overrides, problems, seen + (key,))

    try:
        parts = [value_of(m.group(1)) if m.group(1) is not None else m.group(0)
                 for m in re.finditer(r"<([^<>]*)>|[^<]+|<", node.value)]
    except KeyError as exc:
        problems.add(node, f"!ref {node.value}",
                     f"{exc.args[0]!r} is not a top-level key whose value is a path")
        return None
    if any(p is None for p in parts):
        return None
    return "".join(parts)


def _inside(path, root):
    """Whether ``path`` (a resolved path string) is inside the folder ``root``: local
    folders by real path (symbolic links followed), hub ids and URLs by prefix."""
    if os.path.isdir(root):
        real, top = os.path.realpath(path), os.path.realpath(root)
        return real != top and real.startswith(top.rstrip(os.sep) + os.sep), real
    prefix = root.rstrip("/") + "/"
    rest = path[len(prefix):] if path.startswith(prefix) else None
    ok = bool(rest) and all(part not in ("", ".", "..") for part in rest.split("/"))
    return ok, posixpath.normpath(path) if ok else path


def _check_pretrainer(node, top, root, overrides, problems):
    if not isinstance(node, yaml.MappingNode):
        problems.add(node, "!new:" + PRETRAINER, "its arguments must be a mapping of "
                     + ", ".join(PRETRAINER_ARGS))
        return
    args = {}
    for key, value in node.value:
        name = key.value if isinstance(key, yaml.ScalarNode) else None
        if name not in PRETRAINER_ARGS:
            problems.add(key, f"Pretrainer argument {name!r}",
                         "a model folder's Pretrainer takes only " + ", ".join(PRETRAINER_ARGS))
        args[name] = value
    hooks = args.get("custom_hooks")
    if hooks is not None and not isinstance(hooks, yaml.MappingNode):
        problems.add(hooks, "custom_hooks", "must be a mapping")
    for _, hook in hooks.value if isinstance(hooks, yaml.MappingNode) else ():
        if not _tag(hook).startswith("!name:"):
            problems.add(hook, _shown(hook) or "custom hook",
                         "a custom hook may only be !name: of " + ", ".join(sorted(LOAD_HOOKS)))
    paths = args.get("paths")
    if not isinstance(paths, yaml.MappingNode):
        problems.add(paths if paths is not None else node, "Pretrainer paths",
                     "the Pretrainer must have a mapping `paths` with `model`")
        return
    names = [k.value for k, _ in paths.value if isinstance(k, yaml.ScalarNode)]
    if "model" not in names:
        problems.add(paths, "Pretrainer paths", "`paths` has no `model`")
    if root is None:
        return
    for key, value in paths.value:
        path = _resolve(value, top, overrides, problems)
        if path is None:
            continue
        inside, real = _inside(path, root)
        if not inside:
            problems.add(value, f"paths: {key.value}: {path}",
                         f"resolves to {real}, outside the folder {root}")
        elif key.value == "model" and os.path.isdir(root) and real != os.path.realpath(
                os.path.join(root, MODEL_FILE)):
            problems.add(value, f"paths: model: {path}",
                         f"the weights must be the folder's own {MODEL_FILE}, the file "
                         "every reader loads")


def folder_problems(text, root, overrides=None):
    """``(line, what, reason)`` of everything in the HyperPyYAML ``text`` outside the
    schema (see the module docstring); ``[]`` when it conforms.

    Arguments
    ---------
    text : str
        The yaml.
    root : str or None
        The folder (or hub id) the paths must stay inside; ``None`` checks the tags only.
    overrides : dict, optional
        Top-level values the reader sets (``pretrained_path``).
    """
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        return [(None, None, f"cannot be parsed to check it ({exc})")]
    documents = [d for d in documents if d is not None]
    if len(documents) > 1:
        return [(None, None, "holds several YAML documents")]
    if not documents:
        return []
    root_node, problems = documents[0], _Problems()
    if not isinstance(root_node, yaml.MappingNode):
        return [(None, None, "is not a mapping of settings")]
    pretrainers = _walk(root_node, problems)
    top = {k.value: v for k, v in root_node.value if isinstance(k, yaml.ScalarNode)}
    for node in pretrainers:
        _check_pretrainer(node, top, root, dict(overrides or {}), problems)
    return sorted(set(problems), key=lambda p: (p[0] or 0, p[1] or ""))


def check_folder_hparams(text, source, root, overrides=None, trust_remote_code=False):
    """Refuse a model folder's yaml outside the schema (see the module docstring).

    Arguments
    ---------
    text : str
        The HyperPyYAML text.
    source : str
        The file, named in the error.
    root : str or None
        The folder (or hub id) every path must stay inside (``None``: tags only).
    overrides : dict, optional
        Top-level values the reader sets (``pretrained_path``).
    trust_remote_code : bool
        Skip the check (the yaml may then run any code: only for folders you trust).

    Raises
    ------
    UntrustedCodeError
        Naming the file, the lines, what and why, and the opt-in.
    """
    if trust_remote_code:
        logger.warning("%s: trust_remote_code=True: its yaml is not checked and may run any "
                       "code", source)
        return
    problems = folder_problems(text, root, overrides)
    if not problems:
        check_folder_numbers(text, source)
        return
    where = "; ".join(reason if what is None else
                      f"line {line}: {what} is not allowed ({reason})"
                      for line, what, reason in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    raise UntrustedCodeError(
        f"{source}: {where}{more}. A model folder is data: its yaml may only build the "
        "model, its fbank, label encoder and Pretrainer, from files inside the folder "
        "(docs/model_folder.md); if you trust this folder, load it with "
        "trust_remote_code=True (--trust_remote_code on the command line)")


def check_folder_numbers(text, source):
    """Check the numbers a model folder's yaml records (its top-level settings and the
    arguments of the classes it builds) against :data:`speechbrain_cavmae.settings.RULES`,
    as a recipe's hparams are: ``dataset_std: 0`` would make every fbank NaN.

    Raises
    ------
    speechbrain_cavmae.settings.SettingError
        Naming the key and the file.
    """
    import yaml

    from speechbrain_cavmae.settings import check_settings

    class _Plain(yaml.SafeLoader):
        """Tagged mappings read as dicts, other tagged nodes as None."""

    _Plain.add_multi_constructor(
        "!", lambda loader, suffix, node: (loader.construct_mapping(node, deep=True)
                                           if isinstance(node, yaml.MappingNode) else None))
    values = yaml.load(text, Loader=_Plain) or {}
    if not isinstance(values, dict):
        return
    suffix = f" (in {source})"
    check_settings({k: v for k, v in values.items() if not isinstance(v, (dict, list))},
                   suffix=suffix)
    for name, value in values.items():
        if isinstance(value, dict):
            check_settings({k: v for k, v in value.items() if not isinstance(v, (dict, list))},
                           prefix=f"{name}.", suffix=suffix)


def check_hparams_file(path, root=None, overrides=None, trust_remote_code=False):
    """:func:`check_folder_hparams` of the yaml file at ``path``; ``root`` defaults to the
    file's folder."""
    path = os.fspath(path)
    if trust_remote_code:
        return check_folder_hparams("", path, None, trust_remote_code=True)
    with open(path, encoding="utf8") as handle:
        text = handle.read()
    root = os.path.dirname(os.path.abspath(path)) if root is None else root
    return check_folder_hparams(text, path, root, overrides)
