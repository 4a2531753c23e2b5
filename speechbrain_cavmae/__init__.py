"""speechbrain-cavmae: the Contrastive Audio-Visual Masked Autoencoder for SpeechBrain.

The package in layers (each imports only from those above it):

* :mod:`~speechbrain_cavmae.model`: the model as plain ``torch.nn`` modules;
* :mod:`~speechbrain_cavmae.data`: audio and frame decoding, fbank features, datasets;
* :mod:`~speechbrain_cavmae.checkpoints`: the one loader and the model folder;
* :mod:`~speechbrain_cavmae.training`: ``Brain`` classes and the recipes' plumbing;
* SpeechBrain-facing interfaces: :mod:`~speechbrain_cavmae.lobes` (drop-in encoders),
  :mod:`~speechbrain_cavmae.losses`, :mod:`~speechbrain_cavmae.inference`;
* :mod:`~speechbrain_cavmae.tools`: the command-line tools.

The names below are imported on first use, so ``import speechbrain_cavmae`` stays cheap
(a command's ``--help`` does not load torch).
"""

from speechbrain_cavmae.exports import lazy_exports

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS = {
    "AudioPatchEmbed": "model.patch_embed",
    "ImagePatchEmbed": "model.patch_embed",
    "SelfAttention": "model.attention",
    "set_attention_kernel": "model.attention",
    "SharedBlock": "model.block",
    "vit_block": "model.block",
    "random_masking": "model.masking",
    "structured_noise": "model.masking",
    "MODES": "model.modes",
    "CAVMAEEncoder": "model.encoder",
    "AudioStreamEncoder": "model.encoder",
    "VisualStreamEncoder": "model.encoder",
    "JointStreamEncoder": "model.encoder",
    "CAVMAEDecoder": "model.decoder",
    "CAVMAE": "model.cavmae",
    "CAVMAEClassifier": "model.classifier",
    "CheckpointMismatchError": "checkpoints.original",
    "SizeMismatchError": "checkpoints.loader",
    "init_from_imagenet_mae": "checkpoints.loader",
    "load_original_checkpoint": "checkpoints.door",
    "CAVMAEAudioEncoder": "lobes",
    "CAVMAEVisualEncoder": "lobes",
    "CAVMAEJointEncoder": "lobes",
    "ContrastiveLoss": "losses",
    "MaskedReconstructionLoss": "losses",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
