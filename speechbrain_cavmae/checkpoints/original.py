"""Loading checkpoints released with the original CAV-MAE, and ImageNet MAE initialisation.

Original state dicts (``torch.save(model.state_dict())``, usually under DataParallel's
``module.`` prefix) use flat names (``blocks_a.0.attn.qkv.weight``, ``decoder_embed.weight``,
``mlp_head.1.bias``). Here the encoder, decoder and head are sub-modules, so names are mapped:

==============================  ==========================
original                        speechbrain-cavmae
==============================  ==========================
``patch_embed_a.*`` (encoder)   ``encoder.patch_embed_a.*``
``decoder_embed.*``             ``decoder.embed.*``
``decoder_pos_embed_a``         ``decoder.pos_embed_a``
``decoder_blocks.N.*``          ``decoder.blocks.N.*``
``decoder_pred_a.*``            ``decoder.pred_a.*``
``mask_token``                  ``decoder.mask_token``
``mlp_head.0.*`` / ``.1.*``     ``head.norm.*`` / ``head.fc.*``
``register_tokens`` (Sync)      ``encoder.register_tokens``
``cls_token_a`` / ``_v`` (Sync) ``encoder.cls_token_a`` / ``_v``
``constrative_head_audio.N.*``  ``encoder.contrastive_head_a.N.*`` (``_visual``: ``_v``)
==============================  ==========================

CAV-MAE Sync checkpoints (github edsonroteia/cav-mae-sync) are the same layout plus the
Sync rows above (their spelling ``constrative``); :func:`sync_architecture` reads the Sync
options the weights tell.

The original gives every block six LayerNorms; only the shared blocks use the audio/visual
ones, so ``norm*_a`` / ``norm*_v`` of the modality-specific and decoder blocks (never used in
the original forward pass) are dropped on loading.

Authors
 * speechbrain-cavmae contributors 2026
"""

import logging
import re
from collections import OrderedDict

import torch


logger = logging.getLogger(__name__)

ENCODER_PREFIXES = (
    "patch_embed_a.", "patch_embed_v.", "modality_a", "modality_v", "pos_embed_a",
    "pos_embed_v", "blocks_a.", "blocks_v.", "blocks_u.", "norm_a.", "norm_v.", "norm.",
    "register_tokens", "cls_token_a", "cls_token_v",
)
#: The Sync release's contrastive heads (two plain ViT blocks per stream).
SYNC_RENAMES = (
    ("constrative_head_audio.", "encoder.contrastive_head_a."),
    ("constrative_head_visual.", "encoder.contrastive_head_v."),
)
DECODER_RENAMES = (
    ("decoder_embed.", "embed."),
    ("decoder_modality_a", "modality_a"),
    ("decoder_modality_v", "modality_v"),
    ("decoder_pos_embed_a", "pos_embed_a"),
    ("decoder_pos_embed_v", "pos_embed_v"),
    ("decoder_blocks.", "blocks."),
    ("decoder_norm.", "norm."),
    ("decoder_pred_a.", "pred_a."),
    ("decoder_pred_v.", "pred_v."),
    ("mask_token", "mask_token"),
)
HEAD_RENAMES = (("mlp_head.0.", "head.norm."), ("mlp_head.1.", "head.fc."))
UNUSED_NORM = re.compile(r"^(blocks_a|blocks_v|decoder_blocks|constrative_head_audio|"
                         r"constrative_head_visual)\.\d+\.norm[12]_[av]\.")


class CheckpointMismatchError(RuntimeError):
    """Raised when a state dict does not fit the model (missing or unexpected keys)."""


def unwrap_state_dict(state):
    """Take the state dict out of ``{"model": ...}`` / ``{"state_dict": ...}`` wrappers and
    strip DataParallel's ``module.`` prefix."""
    if isinstance(state, dict):
        for key in ("model", "state_dict"):
            if key in state and isinstance(state[key], dict) and not torch.is_tensor(state[key]):
                state = state[key]
    if not isinstance(state, dict):
        raise TypeError(f"expected a state dict, got {type(state).__name__}")
    return OrderedDict(
        (k[len("module."):] if k.startswith("module.") else k, v) for k, v in state.items()
    )


def is_original_state_dict(state):
    """True if ``state`` uses the original flat CAV-MAE names."""
    return any(k.startswith(("blocks_a.", "module.blocks_a.")) for k in state)


def original_to_speechbrain(state):
    """Rename an original CAV-MAE state dict to this package's module names.

    Arguments
    ---------
    state : dict
        Original state dict (``module.`` prefix allowed).

    Returns
    -------
    OrderedDict
        State dict for :class:`CAVMAE` or :class:`CAVMAEClassifier`.
    """
    out = OrderedDict()
    unknown = []
    for key, value in unwrap_state_dict(state).items():
        if UNUSED_NORM.match(key):
            continue
        sync = next(((old, new) for old, new in SYNC_RENAMES if key.startswith(old)), None)
        if sync:
            out[sync[1] + key[len(sync[0]):]] = value
            continue
        if key.startswith(ENCODER_PREFIXES):
            out["encoder." + key] = value
            continue
        for old, new in DECODER_RENAMES:
            if key.startswith(old):
                out["decoder." + new + key[len(old):]] = value
                break
        else:
            for old, new in HEAD_RENAMES:
                if key.startswith(old):
                    out[new + key[len(old):]] = value
                    break
            else:
                unknown.append(key)
    if unknown:
        raise CheckpointMismatchError(
            f"not a CAV-MAE checkpoint: unrecognised keys {unknown[:8]}"
            + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
        )
    return out


def speechbrain_to_original(state):
    """Rename this package's state dict to the original flat CAV-MAE names.

    Inverse of :func:`original_to_speechbrain`. The never-used norms of the non-shared
    blocks are not re-created, so load the result into the original code with
    ``strict=False``.
    """
    renames = [(new, old) for old, new in SYNC_RENAMES] + [("encoder.", "")]
    renames += [("decoder." + new, old) for old, new in DECODER_RENAMES]
    renames += [(new, old) for old, new in HEAD_RENAMES]
    out = OrderedDict()
    for key, value in unwrap_state_dict(state).items():
        for prefix, original in renames:
            if key.startswith(prefix):
                out[original + key[len(prefix):]] = value
                break
        else:
            raise CheckpointMismatchError(f"unrecognised key {key!r}")
    return out


def sync_architecture(state):
    """The CAV-MAE Sync constructor arguments a state dict (our names) tells, ``{}`` for
    CAV-MAE weights. What weights cannot tell is ``None`` (the model's constructor then
    names the argument to pass): ``registers_in_shared`` when there are registers,
    ``global_local_loss`` when there are global tokens, and ``num_frames`` for any Sync
    weights.

    Example
    -------
    >>> import torch
    >>> sync_architecture({"encoder.register_tokens": torch.zeros(8, 16)})["num_register_tokens"]
    4
    """
    registers = state.get("encoder.register_tokens")
    opts = {
        "num_register_tokens": 0 if registers is None else registers.shape[0] // 2,
        "global_tokens": "encoder.cls_token_a" in state or "encoder.cls_token_v" in state,
        "contrastive_heads": any(k.startswith("encoder.contrastive_head_") for k in state),
    }
    if not any(opts.values()):
        return {}
    opts["registers_in_shared"] = None if opts["num_register_tokens"] else False
    opts["global_local_loss"] = None if opts["global_tokens"] else False
    opts["num_frames"] = None
    return opts


def init_from_imagenet_mae_state(model, mae_state):
    """Initialise a CAV-MAE model from an ImageNet MAE ViT state dict, as the original did.

    ViT blocks ``0..D-1`` go into both modality branches and blocks ``D..`` into the shared
    blocks (their norms copied to the joint, audio and visual sets); the final norm into
    ``norm_a`` and ``norm_v``; the patch embedding into the visual branch and, summed over
    the RGB channels (the original's choice), into the audio branch; the visual positional
    embedding without its class-token row. When ``mae_state`` holds MAE's decoder
    (``decoder_embed``, ``decoder_blocks``, ``decoder_pred``...) it initialises our decoder,
    with the audio prediction head taken from the first ``p*p`` rows of ``decoder_pred``.
    Accepts timm's ``vit_base_patch16_224.mae`` layout and the MAE repository's
    ``mae_pretrain_vit_base_full.pth`` (``{"model": ...}``).

    Arguments
    ---------
    model : CAVMAE or CAVMAEClassifier or CAVMAEEncoder holder
        Model to initialise in place (its sizes must match the ViT).
    mae_state : dict
        The MAE state dict (read from a file by
        :func:`speechbrain_cavmae.checkpoints.loader.init_from_imagenet_mae`).

    Returns
    -------
    list
        Names of our parameters that were initialised.
    """
    mae = unwrap_state_dict(mae_state)
    enc = model.encoder
    depth = len(enc.blocks_a)
    target = {}
    for key, value in mae.items():
        m = re.match(r"^blocks\.(\d+)\.(.+)$", key)
        if not m:
            continue
        idx, rest = int(m.group(1)), m.group(2)
        if idx < depth:
            target[f"encoder.blocks_a.{idx}.{rest}"] = value
            target[f"encoder.blocks_v.{idx}.{rest}"] = value
        else:
            shared = f"encoder.blocks_u.{idx - depth}."
            target[shared + rest] = value
            nm = re.match(r"^(norm[12])\.(weight|bias)$", rest)
            if nm:
                for mod in ("a", "v"):
                    target[f"{shared}{nm.group(1)}_{mod}.{nm.group(2)}"] = value
    for mod in ("a", "v"):
        if "norm.weight" in mae:
            target[f"encoder.norm_{mod}.weight"] = mae["norm.weight"]
            target[f"encoder.norm_{mod}.bias"] = mae["norm.bias"]
    proj_w = mae["patch_embed.proj.weight"]
    target["encoder.patch_embed_v.proj.weight"] = proj_w
    target["encoder.patch_embed_v.proj.bias"] = mae["patch_embed.proj.bias"]
    target["encoder.patch_embed_a.proj.weight"] = proj_w.sum(dim=1, keepdim=True)
    target["encoder.patch_embed_a.proj.bias"] = mae["patch_embed.proj.bias"]
    if "pos_embed" in mae:
        target["encoder.pos_embed_v"] = _drop_cls(mae["pos_embed"], enc.pos_embed_v.shape[1])
    if hasattr(model, "decoder") and "decoder_embed.weight" in mae:
        dec = {
            "decoder.embed.weight": mae["decoder_embed.weight"],
            "decoder.embed.bias": mae["decoder_embed.bias"],
            "decoder.mask_token": mae["mask_token"],
            "decoder.norm.weight": mae["decoder_norm.weight"],
            "decoder.norm.bias": mae["decoder_norm.bias"],
            "decoder.pred_v.weight": mae["decoder_pred.weight"],
            "decoder.pred_v.bias": mae["decoder_pred.bias"],
        }
        n_a = model.decoder.pred_a.out_features
        dec["decoder.pred_a.weight"] = mae["decoder_pred.weight"][:n_a]
        dec["decoder.pred_a.bias"] = mae["decoder_pred.bias"][:n_a]
        if "decoder_pos_embed" in mae:
            dec["decoder.pos_embed_v"] = _drop_cls(
                mae["decoder_pos_embed"], model.decoder.pos_embed_v.shape[1]
            )
        for key, value in mae.items():
            if key.startswith("decoder_blocks."):
                dec["decoder.blocks." + key[len("decoder_blocks."):]] = value
        target.update(dec)
    own = model.state_dict()
    bad = [k for k in target if k not in own or own[k].shape != target[k].shape]
    if bad:
        raise CheckpointMismatchError(
            f"ImageNet MAE weights do not fit the model: {bad[:8]}"
            + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
        )
    with torch.no_grad():
        for key, value in target.items():
            own[key].copy_(value)
    logger.info("initialised %d tensors from ImageNet MAE weights", len(target))
    return sorted(target)


def _drop_cls(pos, n):
    """Positional embedding ``[1, n(+1), dim]`` without a leading class-token row."""
    return pos[:, -n:] if pos.shape[1] == n + 1 else pos
