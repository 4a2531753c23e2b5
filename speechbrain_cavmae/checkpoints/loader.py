"""The one loader of CAV-MAE weights: every model the package reads goes through here.

Accepted sources (:func:`detect_format`):

* ``"model_folder"``: a folder with ``hyperparams.yaml`` and ``model.ckpt`` (written by the
  recipes, ``cavmae convert`` or
  :func:`speechbrain_cavmae.checkpoints.model_folder.write_model_folder`); it describes the
  architecture (both head counts included), so nothing has to be passed. The
  ``model.ckpt`` of such a folder counts as the folder, and so does a recipe's output
  folder holding one under ``model/``;
* ``"checkpoint_dir"``: a SpeechBrain checkpoint directory (``save/CKPT+...``) with a
  ``model.ckpt``;
* ``"original"``: an original CAV-MAE ``.pth`` (flat names, ``module.`` prefix allowed);
* ``"speechbrain"``: a state dict with this package's names (``pretrained.pth``,
  ``finetuned.pth``, ``model.ckpt``);
* ``"imagenet_mae"``: ImageNet MAE ViT weights (initialisation only).

Weights are renamed with :func:`speechbrain_cavmae.checkpoints.original.original_to_speechbrain`,
checked (every value a tensor, every floating-point value finite), the audio positional
embeddings are interpolated in time in one place (:func:`load_weights`), and the load is
strict: missing and unexpected keys are errors naming them. Partial loads happen only
where they are the point (:func:`speechbrain_cavmae.checkpoints.load` with ``into=``: the encoder of a pretraining checkpoint into
a classifier, a decoder absent from a fine-tuned checkpoint, a head of another size), and
then one log line says what was loaded and what was freshly initialised.

Attention heads are not stored in weights. Without a model folder they default only for
the widths the original released (encoder 768 -> 12 heads, decoder 512 -> 16); any other
width is an error naming the argument to pass.

Authors
 * speechbrain-cavmae contributors 2026
"""

import logging
import os
import re
from collections import OrderedDict

import torch

from speechbrain_cavmae.checkpoints.original import (
    CheckpointMismatchError,
    init_from_imagenet_mae_state,
    is_original_state_dict,
    original_to_speechbrain,
    sync_architecture,
    unwrap_state_dict,
)
from speechbrain_cavmae.model.pos_embed import resize_time_pos_embed

logger = logging.getLogger(__name__)

MODEL_FILE = "model.ckpt"
HPARAMS_FILE = "hyperparams.yaml"
LABELS_FILE = "label_encoder.txt"
#: Sub-folder of a recipe's output folder holding its model folder.
RUN_MODEL_SUBDIR = "model"

#: Head counts of the released models, by token width (encoder / decoder).
RELEASED_HEADS = {768: 12}
RELEASED_DECODER_HEADS = {512: 16}

ENCODER_ARGS = (
    "img_size", "audio_length", "n_mels", "patch_size", "in_chans", "embed_dim",
    "modality_specific_depth", "shared_depth", "num_heads", "mlp_ratio", "qkv_bias",
    "drop_path_rate", "trainable_pos_embed",
)
DECODER_ARGS = ("decoder_embed_dim", "decoder_depth", "decoder_num_heads")


class HeadsNotStoredError(ValueError):
    """Raised when a checkpoint's attention head count is needed but cannot be known."""


class NonFiniteWeightError(ValueError):
    """Raised when a checkpoint holds NaN or infinite weights."""


class SizeMismatchError(ValueError):
    """Raised when sizes given to the loader (hparams) disagree with the checkpoint's."""


class NotAModelError(ValueError):
    """Raised when a path given as a model exists but is not one (a media file, a folder
    of something else)."""


#: Parts of the encoder that :func:`speechbrain_cavmae.checkpoints.load` builds (``part=``), by the streams they run
#: (``None``: the whole encoder; ``"joint"``: both branches and the joint stream only).
HALVES = {None: (None, "a", "v"), "audio": ("a",), "visual": ("v",), "joint": (None,)}


# ---------------------------------------------------------------------- formats
def _is_imagenet_mae(state):
    return "patch_embed.proj.weight" in state and any(k.startswith("blocks.") for k in state)


def find_folder(path):
    """``(model folder that path stands for, its yaml text)`` or ``(None, None)``; the
    yaml is read here, once (a folder is one whose yaml declares a ``pretrainer``)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        candidates = (path, os.path.join(path, RUN_MODEL_SUBDIR))
    elif os.path.basename(path) == MODEL_FILE:
        candidates = (os.path.dirname(os.path.abspath(path)),)
    else:
        return None, None
    for folder in candidates:
        hparams = os.path.join(folder, HPARAMS_FILE)
        if not (os.path.isfile(hparams) and os.path.isfile(os.path.join(folder, MODEL_FILE))):
            continue
        try:
            with open(hparams, encoding="utf8") as handle:
                text = handle.read()
        except OSError:
            continue
        if re.search(r"^pretrainer\s*:", text, flags=re.MULTILINE):
            return folder, text
    return None, None


def folder_of(path):
    """The model folder that ``path`` stands for, or ``None``."""
    return find_folder(path)[0]


def yaml_declares(path, key):
    """Whether the yaml file at ``path`` has a top-level ``key:`` entry."""
    try:
        with open(path, encoding="utf8") as handle:
            text = handle.read()
    except OSError:
        return False
    return re.search(rf"^{re.escape(key)}\s*:", text, flags=re.MULTILINE) is not None


def detect_format(source):
    """The format of ``source`` (path or loaded state dict); see the module docstring.

    Example
    -------
    >>> detect_format({"blocks_a.0.attn.qkv.weight": torch.zeros(1)})
    'original'
    """
    if isinstance(source, dict):
        state = unwrap_state_dict(source)
        if is_original_state_dict(state):
            return "original"
        if _is_imagenet_mae(state):
            return "imagenet_mae"
        return "speechbrain"
    kind, where = model_source(source)
    if kind == "weights":
        return detect_format(read_state_file(where, rename=False))
    return kind


#: What a local model path may be, in :func:`model_source`'s messages.
EXPECTED = (f"expected a model folder ({HPARAMS_FILE} + {MODEL_FILE}), a recipe's output "
            "folder, a SpeechBrain checkpoint folder (CKPT+...) or a .pth / .ckpt weights file")
#: Names of weights files (read as such, whatever their content).
WEIGHTS_SUFFIXES = (".pth", ".pt", ".ckpt")
#: The first bytes of the files ``torch.save`` writes (zip archive; legacy pickle).
TORCH_MAGIC = (b"PK\x03\x04", b"\x80")
#: Prefixes of the weights that make a state dict a CAV-MAE (or drop-in encoder) one.
CAVMAE_KEYS = ("encoder.patch_embed_a.", "encoder.patch_embed_v.", "patch_embed_a.",
               "patch_embed_v.", "module.patch_embed_a.", "module.patch_embed_v.")


def is_hub_id(source):
    """Whether ``source`` has the shape of a model-hub id (``owner/name``).

    Example
    -------
    >>> is_hub_id("speechbrain/cavmae-as"), is_hub_id("./runs/ft"), is_hub_id("a/b/c.pth")
    (True, False, False)
    """
    parts = str(source).split("/")
    return (len(parts) == 2 and all(re.fullmatch(r"[A-Za-z0-9][\w.-]*", p) for p in parts)
            and not str(source).endswith(WEIGHTS_SUFFIXES))


def is_weights_file(path):
    """Whether the file at ``path`` starts as the files ``torch.save`` writes do."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    return head.startswith(TORCH_MAGIC)


def _holds_cavmae(path):
    """Whether the ``.ckpt`` file at ``path`` is a state dict with CAV-MAE weights (read
    memory-mapped where the format allows, so large optimizer files cost little)."""
    if not is_weights_file(path):
        return False
    for mmap in (True, False):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            break
        except Exception:  # not a tensor file, or a format mmap cannot read
            state = None
    return isinstance(state, dict) and any(
        isinstance(k, str) and k.startswith(CAVMAE_KEYS)
        for k in unwrap_state_dict(state) if isinstance(state, dict))


def checkpoint_weights(folder):
    """The weights file of a SpeechBrain checkpoint folder (``save/CKPT+...``):
    ``model.ckpt`` (this package's recipes), else the one ``*.ckpt`` file holding CAV-MAE
    weights (e.g. ``embedding_model.ckpt`` of SpeechBrain's recipes with a drop-in
    encoder; optimizer, counter and other modules' files are passed over).

    Raises
    ------
    NotAModelError
        No such file, or several (named: pass the one to load).
    """
    direct = os.path.join(folder, MODEL_FILE)
    if os.path.isfile(direct):
        return direct
    names = sorted(n for n in os.listdir(folder) if n.endswith(".ckpt")
                   and os.path.isfile(os.path.join(folder, n)))
    found = [n for n in names if _holds_cavmae(os.path.join(folder, n))]
    if len(found) == 1:
        return os.path.join(folder, found[0])
    if found:
        raise NotAModelError(
            f"{folder}: {len(found)} checkpoint files hold CAV-MAE weights "
            f"({', '.join(found)}): give the one to load")
    held = f" (its .ckpt files: {', '.join(names)})" if names else ""
    raise NotAModelError(f"{folder}: not a model: a folder without {MODEL_FILE} and no .ckpt "
                         f"file with CAV-MAE weights{held}; {EXPECTED}")


def model_source(source, hub=False):
    """What the path ``source`` given as a model stands for; nothing is loaded.

    A path that exists is always local: a model folder (or its ``model.ckpt``, or a
    recipe's output folder) is ``("folder", folder)``, a SpeechBrain checkpoint folder
    ``("checkpoint_dir", weights file)`` (:func:`checkpoint_weights`), a folder written
    by ``cavmae export`` ``("export", folder)``, a ``.pth`` /
    ``.pt`` / ``.ckpt`` file or any file written by ``torch.save`` ``("weights", path)``. With ``hub``, a path that does not exist but has
    the shape ``owner/name`` is ``("hub", source)``.

    Raises
    ------
    NotAModelError
        An existing path that is none of those (a wav, a folder of something else).
    FileNotFoundError
        A path that does not exist (and, with ``hub``, is not a hub id).
    """
    path = os.fspath(source)
    from speechbrain_cavmae.export.description import is_export_folder

    if is_export_folder(path):  # cavmae export's folder: run in ONNX Runtime
        return "export", path
    folder = folder_of(path) if os.path.exists(path) else None
    if folder is not None:
        return "folder", folder
    if os.path.isdir(path):
        return "checkpoint_dir", checkpoint_weights(path)
    if os.path.isfile(path):
        if path.endswith(WEIGHTS_SUFFIXES) or is_weights_file(path):
            return "weights", path  # a damaged .pth: "cannot read the checkpoint"
        raise NotAModelError(f"{path}: not a model (neither a weights file nor written by "
                             f"torch.save); {EXPECTED}")
    if hub and is_hub_id(path):
        return "hub", path
    raise FileNotFoundError(f"{path}: no such model folder or file"
                            + (" (nor a model-hub id owner/name)" if hub else ""))


# ------------------------------------------------------------------- reading
def check_state(state, source="state dict"):
    """Check that every value is a tensor and every floating-point tensor is finite.

    Raises
    ------
    CheckpointMismatchError
        A value that is not a tensor (named by its key).
    NonFiniteWeightError
        A tensor with NaN or infinite values (named).
    """
    for key, value in state.items():
        if not torch.is_tensor(value):
            raise CheckpointMismatchError(
                f"{source}: {key!r} is a {type(value).__name__}, not a tensor; not a model "
                "state dict"
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise NonFiniteWeightError(
                f"{source}: tensor {key!r} has {bad} non-finite (NaN/inf) values of "
                f"{value.numel()}"
            )
    return state


def read_state_file(path, rename=True, map_location="cpu"):
    """Read a weights file: unwrapped (``{"model": ...}``, ``module.``), checked and, with
    ``rename``, under this package's names."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle errors, truncated files...
        raise CheckpointMismatchError(f"{path}: cannot read the checkpoint: {exc}") from exc
    return prepare_state(state, path, rename)


def prepare_state(state, source="state dict", rename=True):
    """Unwrap, check and (with ``rename``) rename a loaded state dict."""
    try:
        state = unwrap_state_dict(state)
    except TypeError as exc:
        raise CheckpointMismatchError(f"{source}: {exc}") from exc
    check_state(state, source)
    if rename and is_original_state_dict(state):
        state = original_to_speechbrain(state)
    return state


def read_source(source, map_location="cpu", trust_remote_code=False):
    """Weights of any source (:func:`model_source`), with the model folder it came from;
    a model folder's yaml is checked (:func:`check_folder`) before its weights are read.

    Returns
    -------
    tuple
        ``(state under our names, format, folder or None)``; the ImageNet MAE format is
        returned unrenamed.
    """
    if isinstance(source, dict):
        fmt = detect_format(source)
        return prepare_state(source, "state dict", fmt != "imagenet_mae"), fmt, None
    kind, where = model_source(source)
    if kind == "folder":
        check_folder(where, trust_remote_code=trust_remote_code)  # before reading its files
        return read_state_file(os.path.join(where, MODEL_FILE)), "model_folder", where
    if kind == "checkpoint_dir":
        return read_state_file(where), "checkpoint_dir", None
    raw = read_state_file(where, rename=False, map_location=map_location)  # checked
    fmt = detect_format(raw)
    return (original_to_speechbrain(raw) if fmt == "original" else raw), fmt, None


# --------------------------------------------------------------- architecture
def _count(state, prefix):
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    ids = {int(m.group(1)) for k in state for m in [pattern.match(k)] if m}
    return max(ids) + 1 if ids else 0


def released_heads(width, table, name, source):
    """The released head count of a token ``width``, else :class:`HeadsNotStoredError`."""
    if width in table:
        return table[width]
    released = ", ".join(f"{w} -> {h}" for w, h in table.items())
    raise HeadsNotStoredError(
        f"{source}: {name} (attention heads) is not stored in the weights and defaults only "
        f"for the released width ({released}); these weights are {width} wide: pass "
        f"--{name} N (Python: {name}=N), or load a model folder (hyperparams.yaml + "
        "model.ckpt), which records it"
    )


def key_streams(key):
    """The streams (``"a"``, ``"v"``, ``None`` = joint) that use the encoder weight ``key``
    (our names), or ``None`` when ``key`` is not a known encoder weight.

    Example
    -------
    >>> sorted(key_streams("encoder.blocks_u.0.attn.qkv.weight"), key=str)
    [None, 'a', 'v']
    >>> key_streams("encoder.blocks_u.0.norm1_a.weight"), key_streams("encoder.norm.bias")
    ({'a'}, {None})
    >>> sorted(key_streams("encoder.blocks_a.0.mlp.fc1.bias"), key=str)  # the joint stream too
    [None, 'a']
    """
    parts = key.split(".")
    if parts[0] != "encoder" or len(parts) < 2:
        return None
    branch = re.fullmatch(r"(?:patch_embed|pos_embed|modality|blocks)_([av])", parts[1])
    if branch:
        return {branch.group(1), None}
    final = re.fullmatch(r"norm(?:_([av]))?", parts[1])
    if final:
        return {final.group(1)}
    if parts[1] == "blocks_u" and len(parts) > 3:
        norm = re.fullmatch(r"norm[12](?:_([av]))?", parts[3])
        if norm:
            return {norm.group(1)}
        return {None, "a", "v"}
    return None


def select_half(state, half):
    """Split a state dict (our names) into the weights of an encoder ``half``
    (a key of :data:`HALVES`: ``"audio"``, ``"visual"``, ``"joint"`` or ``None``, the whole
    encoder) and those it does not use
    (the other streams' encoder weights, the decoder, the head). Keys that are neither
    stay with the selection, so that a strict load names them.

    Returns
    -------
    tuple
        ``(selected, unused)`` dicts.
    """
    streams = set(HALVES[half])
    selected, unused = OrderedDict(), OrderedDict()
    for key, value in state.items():
        used_by = key_streams(key)
        if used_by is None:
            foreign = key.startswith(("decoder.", "head."))
        else:
            foreign = not used_by & streams
        (unused if foreign else selected)[key] = value
    return selected, unused


def encoder_architecture(state, num_heads=None, n_mels=128, half=None,
                         source="state dict"):
    """Encoder constructor arguments of a state dict under our names, from the weights of
    ``half`` (``"audio"``, ``"visual"``, ``None`` for both): the sizes of the other half
    are not needed (and may be absent, as in the state dict of an audio-only encoder).

    Raises
    ------
    CheckpointMismatchError
        The weights the sizes are read from are absent (named).
    """
    streams = HALVES[half]
    required = ["encoder.blocks_u.0.mlp.fc1.weight"]
    modalities = [m for m in ("a", "v") if m in streams or None in streams]
    for m in modalities:
        required += [f"encoder.patch_embed_{m}.proj.weight", f"encoder.pos_embed_{m}"]
    absent = [k for k in required if k not in state]
    if absent:
        raise CheckpointMismatchError(
            f"{source}: not a CAV-MAE state dict{'' if half is None else ' with the ' + half}"
            f"{'' if half is None else ' encoder'}: no {', '.join(absent)} among "
            f"{len(state)} tensors (e.g. {list(state)[:3]})"
        )
    first = "v" if streams == ("v",) else "a"
    proj = state[f"encoder.patch_embed_{first}.proj.weight"]
    embed_dim, patch_size = proj.shape[0], proj.shape[-1]
    cfg = {
        "n_mels": n_mels,
        "patch_size": patch_size,
        "embed_dim": embed_dim,
        "modality_specific_depth": _count(state, f"encoder.blocks_{first}."),
        "shared_depth": _count(state, "encoder.blocks_u."),
        "num_heads": num_heads or released_heads(embed_dim, RELEASED_HEADS, "num_heads",
                                                 source),
        "mlp_ratio": state["encoder.blocks_u.0.mlp.fc1.weight"].shape[0] / embed_dim,
        "qkv_bias": "encoder.blocks_u.0.attn.qkv.bias" in state,
    }
    if "a" in modalities:
        cfg["audio_length"] = (state["encoder.pos_embed_a"].shape[1] // (n_mels // patch_size)
                               * patch_size)
    if "v" in modalities:
        n_image = state["encoder.pos_embed_v"].shape[1]
        side = int(round(n_image**0.5))
        if side * side != n_image:
            raise CheckpointMismatchError(
                f"{source}: visual positional embedding of {n_image} is not square")
        cfg["img_size"] = side * patch_size
        cfg["in_chans"] = state["encoder.patch_embed_v.proj.weight"].shape[1]
    return cfg


def architecture(state, num_heads=None, decoder_num_heads=None, n_mels=128,
                 need_decoder=True, source="state dict"):
    """Constructor arguments of the model of a state dict under our names.

    Arguments
    ---------
    state : dict
        Our names (see :func:`prepare_state`).
    num_heads, decoder_num_heads : int, optional
        Attention heads; required unless the width is a released one (768 / 512).
    n_mels : int
        Mel bins (not recoverable from the weights).
    need_decoder : bool
        Whether the decoder heads are needed (``False`` when only the encoder is used).
    source : str
        Named in error messages.

    Returns
    -------
    dict
        ``kind`` (``"pretrain"``, ``"classifier"`` or ``"encoder"``) and constructor
        arguments.
    """
    cfg = encoder_architecture(state, num_heads, n_mels, source=source)
    if "head.fc.weight" in state:
        cfg["kind"] = "classifier"
        cfg["num_classes"] = state["head.fc.weight"].shape[0]
    elif "decoder.embed.weight" in state:
        cfg["kind"] = "pretrain"
        if need_decoder:
            dec_dim = state["decoder.embed.weight"].shape[0]
            cfg["decoder_embed_dim"] = dec_dim
            cfg["decoder_depth"] = _count(state, "decoder.blocks.")
            cfg["decoder_num_heads"] = decoder_num_heads or released_heads(
                dec_dim, RELEASED_DECODER_HEADS, "decoder_num_heads", source)
        cfg.update(sync_architecture(state))
    else:
        cfg["kind"] = "encoder"
    return cfg


def check_heads(cfg, source="state dict", names=None):
    """Raise a ``ValueError`` naming ``source`` and the fix when a head count in ``cfg``
    does not divide its token size (heads are not stored in checkpoints). ``names`` maps
    argument names to what the user set (e.g. yaml keys), named in the message.

    Example
    -------
    >>> check_heads({"embed_dim": 64, "num_heads": 4})
    >>> try:
    ...     check_heads({"embed_dim": 64, "num_heads": 5}, "x.pth")
    ... except ValueError as err:
    ...     print(str(err)[:60])
    x.pth: num_heads=5 does not divide embed_dim=64 of the check
    """
    for heads_key, dim_key in (("num_heads", "embed_dim"),
                               ("decoder_num_heads", "decoder_embed_dim")):
        if heads_key not in cfg or dim_key not in cfg:
            continue
        heads, dim = cfg[heads_key], cfg[dim_key]
        if heads < 1 or dim % heads:
            if names and heads_key in names:
                where, fix = "", f"set {names[heads_key]} to"
            else:
                where = " of the checkpoint"
                fix = f"pass {heads_key}= (--{heads_key} on the command line) with"
            raise ValueError(
                f"{source}: {heads_key}={heads} does not divide {dim_key}={dim}{where}; "
                f"{fix} a divisor of {dim} (heads are not stored in checkpoints; the "
                "released ViT-B models use 12 encoder and 16 decoder heads)"
            )


def model_config(model):
    """Constructor arguments of a live :class:`CAVMAE` / :class:`CAVMAEClassifier`
    (everything a model folder must record, both head counts included)."""
    enc = model.encoder
    cfg = {
        "img_size": enc.patch_embed_v.img_size[0],
        "audio_length": enc.audio_length,
        "n_mels": enc.patch_embed_a.n_mels,
        "patch_size": enc.patch_size,
        "in_chans": enc.patch_embed_v.proj.in_channels,
        "embed_dim": enc.embed_dim,
        "modality_specific_depth": len(enc.blocks_a),
        "shared_depth": len(enc.blocks_u),
        "num_heads": enc.blocks_u[0].attn.num_heads,
        "mlp_ratio": enc.blocks_u[0].mlp.fc1.out_features / enc.embed_dim,
        "qkv_bias": enc.blocks_u[0].attn.qkv.bias is not None,
        "trainable_pos_embed": bool(enc.pos_embed_a.requires_grad),
    }
    if hasattr(model, "head"):
        cfg["kind"] = "classifier"
        cfg["num_classes"] = model.num_classes
        cfg["mode"] = model.mode
        if enc.has_special_tokens or enc.contrastive_heads:  # a Sync encoder (docs/sync.md)
            cfg.update(enc.sync_options())
    elif hasattr(model, "decoder"):
        dec = model.decoder
        cfg["kind"] = "pretrain"
        cfg["decoder_embed_dim"] = dec.embed.out_features
        cfg["decoder_depth"] = len(dec.blocks)
        cfg["decoder_num_heads"] = dec.blocks[0].attn.num_heads
        cfg.update(model.sync_options())
    else:
        raise TypeError(f"{type(model).__name__}: not a CAVMAE or CAVMAEClassifier")
    return cfg


def build_model(cfg):
    """Instantiate the model of an :func:`architecture` / :func:`model_config` dict."""
    from speechbrain_cavmae.model.classifier import CAVMAEClassifier
    from speechbrain_cavmae.model.cavmae import CAVMAE

    cfg = dict(cfg)
    kind = cfg.pop("kind")
    if kind == "classifier":
        return CAVMAEClassifier(**cfg)
    cfg.pop("mode", None)
    if kind == "pretrain":
        return CAVMAE(**cfg)
    raise CheckpointMismatchError("the weights have neither a decoder nor a classification "
                                  "head; load them with CAVMAEEncoder / load_encoder")


# ------------------------------------------------------------------ loading
def _few(keys, n=8):
    keys = list(keys)
    return f"{keys[:n]}" + (f" and {len(keys) - n} more" if len(keys) > n else "")


def _depth_hint(state, own):
    """``"; checkpoint has 11 modality-specific blocks, the model 2"`` style hints."""
    hints = []
    for prefix, name in (("encoder.blocks_a.", "modality-specific"),
                         ("encoder.blocks_u.", "shared"), ("decoder.blocks.", "decoder")):
        a, b = _count(state, prefix), _count(own, prefix)
        if a and b and a != b:
            hints.append(f"the checkpoint has {a} {name} blocks, the model {b}")
    return ("; " + "; ".join(hints)) if hints else ""


def _group(keys):
    """Keys summarised by their first two name parts, with counts
    (``"decoder.blocks (12), head (4)"``)."""
    counts = OrderedDict()
    for key in keys:
        top = ".".join(key.split(".")[:2]) if key.split(".")[0] != "head" else "head"
        counts[top] = counts.get(top, 0) + 1
    return ", ".join(f"{k} ({n})" for k, n in counts.items())


def load_weights(model, state, source="state dict", allow_missing=(), allow_unexpected=(),
                 allow_reshaped=()):
    """Load ``state`` (our names) into ``model``: the one place weights are copied.

    The audio positional embeddings (encoder and decoder) are interpolated along time when
    the audio length differs. Everything else must match exactly, except keys starting
    with a prefix of ``allow_missing`` (left at their initialisation), ``allow_unexpected``
    (not used) or ``allow_reshaped`` (another shape: left at their initialisation). When
    something is left out, one INFO line says what was loaded and what was not.

    Raises
    ------
    CheckpointMismatchError
        Missing, unexpected or differently shaped tensors, named (with block depths).

    Returns
    -------
    dict
        ``loaded``, ``ignored`` (keys of ``state`` not used), ``missing`` (keys of the
        model left at their initialisation).
    """
    own = model.state_dict()
    take, ignored, shape_errors = OrderedDict(), [], []
    for key, value in state.items():
        if key not in own:
            ignored.append(key)
            continue
        target = own[key]
        if value.shape != target.shape:
            if key.endswith("pos_embed_a") and value.shape[-1] == target.shape[-1]:
                holder = model.encoder if key.startswith("encoder.") else model.decoder
                rows = holder.audio_grid[0]
                logger.info("%s: interpolating %s from %d to %d time patches", source, key,
                            value.shape[1] // rows, target.shape[1] // rows)
                value = resize_time_pos_embed(value, rows, target.shape[1] // rows)
            elif key.startswith(tuple(allow_reshaped)):
                ignored.append(key)
                continue
            else:
                shape_errors.append(f"{key}: {tuple(value.shape)} in the checkpoint, "
                                    f"{tuple(target.shape)} in the model")
                continue
        take[key] = value
    missing = [k for k in own if k not in take]
    bad_missing = [k for k in missing if not k.startswith(tuple(allow_missing))
                   and not (k.startswith(tuple(allow_reshaped)) and k in state)]
    bad_unexpected = [k for k in ignored if k not in own
                      and not k.startswith(tuple(allow_unexpected))]
    problems = []
    if shape_errors:
        problems.append("shapes differ: " + "; ".join(shape_errors[:6])
                        + (f" and {len(shape_errors) - 6} more" if len(shape_errors) > 6 else ""))
    if bad_missing:
        problems.append(f"missing keys {_few(bad_missing)}")
    if bad_unexpected:
        problems.append(f"unexpected keys {_few(bad_unexpected)}")
    if problems:
        raise CheckpointMismatchError(
            f"{source} does not fit the model: " + "; ".join(problems) + _depth_hint(state, own)
        )
    model.load_state_dict(take, strict=False)
    if missing or ignored:
        logger.info(
            "%s: loaded %d tensors; freshly initialised: %s; not used: %s", source, len(take),
            _group(missing) or "nothing", _group(ignored) or "nothing",
        )
    else:
        logger.info("%s: loaded %d tensors (all of the model's)", source, len(take))
    return {"loaded": list(take), "ignored": ignored, "missing": missing}


def strict_load_hook(model, path):
    """Pretrainer hook of the model folders (``custom_hooks``): strict loading of
    ``model.ckpt``, so that missing or unexpected keys raise instead of SpeechBrain's
    ``strict=False`` warning."""
    load_weights(model, read_state_file(path), os.fspath(path))


def check_folder(folder, overrides=None, trust_remote_code=False):
    """Check the model folder's ``hyperparams.yaml`` against the schema of
    :mod:`speechbrain_cavmae.checkpoints.trust` (before anything in the folder is read),
    with ``pretrained_path`` set to the folder as every reader sets it.

    Raises
    ------
    UntrustedCodeError
        The yaml builds, calls or reads something a model folder does not.
    """
    from speechbrain_cavmae.checkpoints.trust import check_hparams_file

    folder = os.path.abspath(os.fspath(folder))
    check_hparams_file(os.path.join(folder, HPARAMS_FILE), folder,
                       dict({"pretrained_path": folder}, **(overrides or {})),
                       trust_remote_code)


def average_state_dicts(states, names=None):
    """Element-wise running mean of state dicts with the same keys (the original's weight
    averaging); non-floating-point tensors take the last value. The one implementation,
    used by :class:`speechbrain_cavmae.training.state.WeightAverager` and
    :class:`speechbrain_cavmae.training.state.WeightAverager`.

    Example
    -------
    >>> average_state_dicts([{"w": torch.tensor([1.0])}, {"w": torch.tensor([3.0])}])["w"]
    tensor([2.])
    """
    mean, count = None, 0
    for i, state in enumerate(states):
        mean, count = accumulate_mean(mean, count, state, names[i] if names else f"#{i}")
    if mean is None:
        raise ValueError("average_state_dicts: nothing to average")
    return mean


def accumulate_mean(mean, count, state, name="state dict"):
    """One step of the running mean: ``(mean, count)`` updated with ``state`` (copied to
    the CPU). Returns the new ``(mean, count)``."""
    count += 1
    if mean is None:
        return OrderedDict((k, v.detach().to("cpu", copy=True)) for k, v in state.items()), count
    if set(state) != set(mean):
        raise CheckpointMismatchError(
            f"{name}: keys differ from the first state dict: "
            f"{_few(sorted(set(state) ^ set(mean)))}")
    for key, value in state.items():
        value = value.detach().to("cpu")
        if value.is_floating_point():
            mean[key] += (value - mean[key]) / count
        else:
            mean[key] = value.clone()
    return mean, count


def init_from_imagenet_mae(model, mae_state):
    """Initialise a CAV-MAE model from ImageNet MAE ViT weights (a state dict or a file),
    as the original did; see
    :func:`speechbrain_cavmae.checkpoints.original.init_from_imagenet_mae_state`.

    Returns
    -------
    list
        Names of the model's parameters that were initialised.
    """
    if not isinstance(mae_state, dict):
        mae_state = read_state_file(mae_state, rename=False)
    return init_from_imagenet_mae_state(model, mae_state)
