"""Reading and writing models: the one door into checkpoints and the model folder.

:func:`load` takes any source (model folder, recipe output folder, SpeechBrain checkpoint
folder, original ``.pth``, state dict) and returns a :class:`Loaded`: the model (or an
encoder part, or a given model initialised in place) and what its folder says about
feeding it. Everything else here is for the tools that need a piece of that.

Modules
-------
loader        : the door: detects a checkpoint's format, checks and reads a model folder
                once, loads strictly.
original      : key mapping of the original CAV-MAE ``.pth`` files and ImageNet MAE weights.
model_folder  : writes the self-describing model folder (``hyperparams.yaml``,
                ``model.ckpt``, ``label_encoder.txt``) that :func:`load` and
                ``from_hparams`` read.
trust         : the model-folder schema, checked before a folder is read.
"""

from speechbrain_cavmae.checkpoints.loader import (
    HPARAMS_FILE,
    INPUT_KEYS,
    LABELS_FILE,
    MODEL_FILE,
    PARTS,
    Loaded,
    NonFiniteWeightError,
    NotAModelError,
    SizeMismatchError,
    HeadsNotStoredError,
    YamlRef,
    check_state,
    input_config,
    load,
    load_original_checkpoint,
    model_config,
    model_source,
    plain_yaml,
    read_settings,
)
from speechbrain_cavmae.checkpoints.original import CheckpointMismatchError
from speechbrain_cavmae.checkpoints.model_folder import write_model_folder

__all__ = [
    "CheckpointMismatchError", "HPARAMS_FILE", "HeadsNotStoredError", "INPUT_KEYS",
    "LABELS_FILE", "Loaded", "MODEL_FILE", "NonFiniteWeightError", "NotAModelError", "PARTS",
    "SizeMismatchError", "YamlRef", "check_state", "input_config", "load",
    "load_original_checkpoint", "model_config", "model_source", "plain_yaml",
    "read_settings", "write_model_folder",
]
