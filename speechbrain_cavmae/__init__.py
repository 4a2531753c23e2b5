"""speechbrain-cavmae: the Contrastive Audio-Visual Masked Autoencoder for SpeechBrain."""

from speechbrain_cavmae.attention import SelfAttention, set_attention_kernel
from speechbrain_cavmae.block import SharedBlock, vit_block
from speechbrain_cavmae.checkpoint import (
    CheckpointMismatchError,
    init_from_imagenet_mae,
    load_original_checkpoint,
)
from speechbrain_cavmae.classifier import MODES, CAVMAEClassifier
from speechbrain_cavmae.decoder import CAVMAEDecoder
from speechbrain_cavmae.encoder import CAVMAEEncoder
from speechbrain_cavmae.lobes import CAVMAEAudioEncoder, CAVMAEJointEncoder, CAVMAEVisualEncoder
from speechbrain_cavmae.losses import ContrastiveLoss, MaskedReconstructionLoss
from speechbrain_cavmae.masking import random_masking, structured_noise
from speechbrain_cavmae.patch_embed import AudioPatchEmbed, ImagePatchEmbed
from speechbrain_cavmae.pretrain import CAVMAE

__version__ = "0.1.0"

__all__ = [
    "AudioPatchEmbed",
    "CAVMAE",
    "CAVMAEAudioEncoder",
    "CAVMAEJointEncoder",
    "CAVMAEVisualEncoder",
    "CAVMAEClassifier",
    "CAVMAEDecoder",
    "CAVMAEEncoder",
    "CheckpointMismatchError",
    "ContrastiveLoss",
    "ImagePatchEmbed",
    "MODES",
    "MaskedReconstructionLoss",
    "SelfAttention",
    "SharedBlock",
    "init_from_imagenet_mae",
    "load_original_checkpoint",
    "random_masking",
    "set_attention_kernel",
    "structured_noise",
    "vit_block",
]
