"""How the model tools load a model and feed it.

The model and its folder's input settings come from one read of the source by the one door
(:func:`speechbrain_cavmae.checkpoints.load`), the clips from the evaluation input pipeline
of training (:func:`speechbrain_cavmae.data.build_dataset` with ``train=False``),
configured by those settings and sized for the model. Used by ``embed``, ``retrieval``
and ``inpaint``.

Authors
 * speechbrain-cavmae contributors 2026
"""

from speechbrain_cavmae.tools import common


def load_model(args):
    """The :class:`~speechbrain_cavmae.checkpoints.Loaded` of ``args.model`` (heads from
    ``--num_heads`` / ``--decoder_num_heads`` where the source does not record them), its
    model in eval mode on ``--device``; a ``cavmae export`` folder runs in ONNX Runtime."""
    from speechbrain_cavmae.checkpoints import Loaded, load
    from speechbrain_cavmae.export.description import is_export_folder, read_exported_config

    if is_export_folder(args.model):  # cavmae export's folder, run in ONNX Runtime
        from speechbrain_cavmae.export.runtime import ExportedModel

        return Loaded(model=ExportedModel(args.model), inputs=read_exported_config(args.model),
                      folder=str(args.model))
    loaded = load(args.model, num_heads=getattr(args, "num_heads", None),
                  decoder_num_heads=getattr(args, "decoder_num_heads", None),
                  trust_remote_code=getattr(args, "trust_remote_code", False))
    loaded.model = loaded.model.to(common.resolve_device(args.device)).eval()
    return loaded


def input_config(args, loaded, **config):
    """Data configuration: the input settings of ``loaded`` (the ``--model`` folder's; none
    for a bare ``.pth``), then ``config``, then ``--dataset_mean`` / ``--dataset_std`` when
    given."""
    config = dict(loaded.inputs, **config)
    for key in ("dataset_mean", "dataset_std"):
        if getattr(args, key, None) is not None:
            config[key] = getattr(args, key)
    return config


def model_geometry(model):
    """``(audio_length, image_size)`` the model was built for."""
    enc = model.encoder
    return enc.audio_length, enc.image_grid[0] * enc.patch_size


def eval_loader(manifest, model, batch_size=32, num_workers=0, config=None,
                multi_frame=False):
    """A ``DataLoader`` over ``manifest`` in evaluation mode, sized for ``model``."""
    import torch

    from speechbrain_cavmae.data import build_dataset, collate_av

    audio_length, image_size = model_geometry(model)
    cfg = {"audio_length": audio_length, "image_size": image_size, "multi_frame": multi_frame}
    cfg.update(config or {})
    from speechbrain_cavmae.data import cap_workers

    dataset = build_dataset(manifest, None, cfg, train=False)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=cap_workers(num_workers),
        collate_fn=collate_av
    )
