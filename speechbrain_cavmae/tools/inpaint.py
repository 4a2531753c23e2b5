"""Masked inpainting figures of a pretrained CAV-MAE model.

For each chosen clip and mask ratio, one PNG with two rows (spectrogram, frame) and three
columns: the input, the masked input (masked patches blanked), and the reconstruction
(visible patches from the input, masked patches from the decoder). The masks are drawn
from a generator seeded with ``--seed``, so figures are reproducible.

Models trained with the norm-pix loss predict each patch normalised to zero mean and
unit variance; their predictions are mapped back with the mean and variance of the input
patch (for display only). A model folder written by the pretraining recipe records
``norm_pix_loss``; for a converted folder or a bare ``.pth`` pass ``--norm_pix`` (the
original's released pretrained models, e.g. ``cav-mae-scale++.pth``) or ``--no_norm_pix``
(``cav-mae-base-nonorm.pth``, which the original released for inpainting). A flag that
disagrees with the folder is an error.

Usage::

    cavmae inpaint --model cav-mae-base-nonorm.pth --manifest audioset_eval.json \\
        --ids clipA,clipB --mask_ratios 0.25,0.5,0.75 --output figures [--seed 0] \\
        --no_norm_pix

matplotlib is needed (``pip install 'speechbrain-cavmae[plots]'``); it is checked before
the model runs.

Authors
 * speechbrain-cavmae contributors 2026
"""

import logging
import os
import re

from speechbrain_cavmae.tools import common, inputs

logger = logging.getLogger(__name__)


def inpaint(model, audio, image, mask_ratio_a=0.75, mask_ratio_v=0.75, seed=0,
            norm_pix=False, mask_mode="unstructured"):
    """Mask and reconstruct a batch.

    Arguments
    ---------
    model : CAVMAE
        Pretraining model (with decoder).
    audio : torch.Tensor
        ``[batch, frames, n_mels]`` normalised fbank.
    image : torch.Tensor
        ``[batch, 3, H, W]`` normalised frames.
    mask_ratio_a, mask_ratio_v : float
        Masking ratios.
    seed : int
        Seed of the masking noise.
    norm_pix : bool
        Undo the per-patch normalisation of the predictions with the input's statistics.
    mask_mode : str
        Audio masking mode.

    Returns
    -------
    dict
        ``audio``, ``audio_masked``, ``audio_recon`` ``[batch, frames, n_mels]``;
        ``image``, ``image_masked``, ``image_recon`` ``[batch, 3, H, W]``; ``mask_a``,
        ``mask_v``; ``loss_a``, ``loss_v`` (mean squared error on masked patches).

    Example
    -------
    >>> import torch
    >>> from speechbrain_cavmae.model.cavmae import CAVMAE
    >>> model = CAVMAE(img_size=32, audio_length=32, embed_dim=32, modality_specific_depth=1,
    ...                num_heads=2, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    >>> out = inpaint(model.eval(), torch.randn(1, 32, 128), torch.randn(1, 3, 32, 32), 0.5, 0.5)
    >>> out["audio_recon"].shape, out["image_recon"].shape, int(out["mask_v"].sum())
    (torch.Size([1, 32, 128]), torch.Size([1, 3, 32, 32]), 2)
    """
    import torch

    from speechbrain_cavmae.model.patchify import unpatchify_audio, unpatchify_image

    require_decoder(model)
    gen = torch.Generator().manual_seed(seed)
    n = audio.shape[0]
    enc = model.encoder
    n_a = enc.audio_grid[0] * (audio.shape[1] // enc.patch_size)
    n_v = enc.image_grid[0] * enc.image_grid[1]
    noise_a = torch.rand(n, n_a, generator=gen).to(audio.device)
    noise_v = torch.rand(n, n_v, generator=gen).to(audio.device)
    with torch.no_grad():
        out = model(audio, image, mask_ratio_a, mask_ratio_v, mask_mode, noise_a, noise_v)
    p = enc.patch_size
    pred_a, pred_v = out["pred_a"].float(), out["pred_v"].float()
    tgt_a, tgt_v = out["target_a"].float(), out["target_v"].float()
    if norm_pix:
        pred_a = pred_a * (tgt_a.var(-1, keepdim=True) + 1e-6) ** 0.5 + tgt_a.mean(-1, keepdim=True)
        pred_v = pred_v * (tgt_v.var(-1, keepdim=True) + 1e-6) ** 0.5 + tgt_v.mean(-1, keepdim=True)
    mask_a = out["mask_a"].float().unsqueeze(-1)
    mask_v = out["mask_v"].float().unsqueeze(-1)
    grid_a = (enc.audio_grid[0], audio.shape[1] // p)
    result = {
        "audio": audio.float(),
        "audio_masked": unpatchify_audio(tgt_a * (1 - mask_a), grid_a, p),
        "audio_recon": unpatchify_audio(tgt_a * (1 - mask_a) + pred_a * mask_a, grid_a, p),
        "image": image.float(),
        "image_masked": unpatchify_image(tgt_v * (1 - mask_v), enc.image_grid, p),
        "image_recon": unpatchify_image(tgt_v * (1 - mask_v) + pred_v * mask_v,
                                        enc.image_grid, p),
        "mask_a": out["mask_a"],
        "mask_v": out["mask_v"],
    }
    for name, pred, tgt, mask in (("a", pred_a, tgt_a, mask_a), ("v", pred_v, tgt_v, mask_v)):
        err = ((pred - tgt) ** 2).mean(-1, keepdim=True)
        result[f"loss_{name}"] = ((err * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp_min(1))
    return result


def require_decoder(model):
    """Raise unless ``model`` has a decoder (a pretraining model)."""
    if not hasattr(model, "decoder"):
        raise ValueError("inpainting needs a pretraining checkpoint (with decoder weights)")


def resolve_norm_pix(source, flag=None):
    """Whether the model of ``source`` (a path, or what the door loaded from it) was
    trained with the norm-pix loss: the ``norm_pix_loss`` its model folder records, else
    ``flag`` (``--norm_pix``: True,
    ``--no_norm_pix``: False).

    Raises
    ------
    ValueError
        Neither the folder nor the flag says it (naming both flags), or the flag
        disagrees with the folder.
    """
    from speechbrain_cavmae.checkpoints import Loaded, read_settings

    if isinstance(source, Loaded):  # already read by the door
        folder, settings, source = source.folder, source.settings, source.folder
    else:
        folder, settings = read_settings(source)
    recorded = settings.get("norm_pix_loss")
    if recorded is None:
        if flag is None:
            raise ValueError(
                f"{folder or source}: does not record whether the model was trained with "
                "the norm-pix loss (a converted or bare checkpoint): pass --norm_pix (the "
                "original's released pretrained models, e.g. cav-mae-scale++.pth) or "
                "--no_norm_pix (cav-mae-base-nonorm.pth, released for inpainting)")
        return bool(flag)
    if flag is not None and bool(flag) != bool(recorded):
        raise ValueError(
            f"--{'norm_pix' if flag else 'no_norm_pix'} disagrees with {folder}, which "
            f"records norm_pix_loss: {recorded}; drop the flag")
    return bool(recorded)


def _to_rgb(image):
    import torch

    from speechbrain_cavmae.data import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image.cpu() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()


def save_figure(result, index, path, title=""):
    """Write the 2 x 3 figure of clip ``index`` of an :func:`inpaint` result to ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(12, 6))
    names = ("input", "masked", "reconstruction")
    lo = float(result["audio"][index].min())
    hi = float(result["audio"][index].max())
    for col, key in enumerate(("audio", "audio_masked", "audio_recon")):
        spec = result[key][index].cpu().t().numpy()  # [n_mels, frames]
        axes[0, col].imshow(spec, origin="lower", aspect="auto", vmin=lo, vmax=hi)
        axes[0, col].set_title(f"spectrogram: {names[col]}")
    for col, key in enumerate(("image", "image_masked", "image_recon")):
        # Masked patches are 0 in normalised space: they show as the ImageNet mean colour.
        axes[1, col].imshow(_to_rgb(result[key][index]))
        axes[1, col].set_title(f"frame: {names[col]}")
    for ax in axes.flat:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _safe(name):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def run_inpainting(model, data, out_dir, ids=None, num_clips=4, mask_ratios=(0.75,),
                   seed=0, norm_pix=False, device="cpu", batch_size=8, mask_mode="unstructured",
                   config=None, progress=None):
    """Write one figure per (clip, mask ratio); returns the list of written paths.

    ``config`` overrides data settings of the loader (e.g. ``{"dataset_mean": ..., "dataset_std": ...}``).
    """
    os.makedirs(out_dir, exist_ok=True)
    loader = inputs.eval_loader(data, model, batch_size, config=config)
    wanted = list(ids) if ids else None
    written, found = [], set()
    for batch in (progress(loader) if progress else loader):
        if batch is None:
            continue
        keep = [i for i, sid in enumerate(batch.id)
                if (wanted is None and len(found) + i < num_clips) or (wanted and sid in wanted)]
        if wanted is None:
            keep = keep[: max(num_clips - len(found), 0)]
        if not keep:
            if wanted is None and len(found) >= num_clips:
                break
            continue
        audio = batch.fbank.data[keep].to(device).float()
        image = batch.frame.data[keep].to(device).float()
        clip_ids = [batch.id[i] for i in keep]
        for ratio in mask_ratios:
            result = inpaint(model, audio, image, ratio, ratio, seed, norm_pix, mask_mode)
            for j, sid in enumerate(clip_ids):
                path = os.path.join(out_dir, f"{_safe(sid)}_mask{ratio:.2f}.png")
                title = (f"{sid}  mask {ratio:.2f}  mse audio {float(result['loss_a'][j]):.3f}"
                         f"  visual {float(result['loss_v'][j]):.3f}")
                written.append(save_figure(result, j, path, title))
        found.update(clip_ids)
    if wanted:
        missing = sorted(set(wanted) - found)
        if missing:
            raise KeyError(f"{data}: clip id(s) not found: {missing}")
    return written


def add_arguments(parser):
    """The flags of ``cavmae inpaint``."""
    common.add_model(parser)
    common.add_heads(parser)
    common.add_manifest(parser)
    common.add_output(parser, help="folder of the figures")
    parser.add_argument("--ids", default=None, help="comma-separated clip ids")
    parser.add_argument("--num_clips", type=int, default=4,
                        help="the first N clips (without --ids)")
    parser.add_argument("--mask_ratios", default="0.75", help="comma-separated mask ratios")
    parser.add_argument("--mask_mode", default="unstructured",
                        choices=("unstructured", "time", "freq", "tf"), help="audio masking")
    parser.add_argument("--seed", type=int, default=0, help="seed of the masks")
    norm = parser.add_mutually_exclusive_group()
    norm.add_argument("--norm_pix", action="store_const", const=True, default=None,
                      help="the model was trained with the norm-pix loss (needed for a "
                      "converted or bare checkpoint; a model folder of the pretraining "
                      "recipe records it)")
    norm.add_argument("--no_norm_pix", dest="norm_pix", action="store_const", const=False,
                      help="the model was trained without the norm-pix loss")
    common.add_batch_size(parser)
    common.add_device(parser)
    common.add_fbank_stats(parser)
    common.add_trust(parser)


def run(args):
    """Write the figures and print their paths."""
    import matplotlib  # noqa: F401  (fail before running the model when it is missing)

    loaded = inputs.load_model(args)
    model = loaded.model
    require_decoder(model)
    norm_pix = resolve_norm_pix(loaded if loaded.folder else args.model, args.norm_pix)
    ratios = [float(x) for x in args.mask_ratios.split(",") if x.strip()]
    ids = [x.strip() for x in args.ids.split(",")] if args.ids else None
    paths = run_inpainting(
        model, args.manifest, args.output, ids, args.num_clips, ratios, args.seed,
        norm_pix, common.resolve_device(args.device), args.batch_size,
        mask_mode=args.mask_mode, config=inputs.input_config(args, loaded),
        progress=lambda it: common.progress(it, args, desc="inpaint", unit="batch"),
    )
    for path in paths:
        print(path)
    return 0
