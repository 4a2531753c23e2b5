"""Reading and writing models: the one door into checkpoints and the model folder.

:func:`load` takes any source (model folder, recipe output folder, SpeechBrain checkpoint
folder, original ``.pth``, state dict) and returns a :class:`Loaded`: the model (or an
encoder part, or a given model initialised in place) and what its folder says about
feeding it. Everything else here is for the tools that need a piece of that.

Modules
-------
door          : :func:`load` and :class:`Loaded`; a model folder's yaml read once.
loader        : formats, architectures of weights, strict and partial loading rules.
original      : key mapping of the original CAV-MAE ``.pth`` files and ImageNet MAE weights.
model_folder  : writes the self-describing model folder (``hyperparams.yaml``,
                ``model.ckpt``, ``label_encoder.txt``) that :func:`load` and
                ``from_hparams`` read.
trust         : the model-folder schema, checked before a folder is read.
"""

from speechbrain_cavmae.exports import lazy_exports

_LOADER = (
    "HPARAMS_FILE", "LABELS_FILE", "MODEL_FILE", "HeadsNotStoredError", "NonFiniteWeightError",
    "NotAModelError", "SizeMismatchError", "check_state", "folder_of", "model_config",
    "model_source", "read_source",
)
_DOOR = (
    "INPUT_KEYS", "PARTS", "Loaded", "YamlRef", "input_config", "load",
    "load_original_checkpoint", "plain_yaml", "read_settings",
)
#: Public names, by module (imported on first use, so that ``trust`` stays light).
_EXPORTS = dict(
    {name: "loader" for name in _LOADER}, **{name: "door" for name in _DOOR},
    CheckpointMismatchError="original", write_model_folder="model_folder",
    LABEL_CSV_FILE="model_folder", UntrustedCodeError="trust", sync_architecture="original",
)

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
