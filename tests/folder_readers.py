"""Every way the package reads a model folder, for the tests that check they agree
(``tests/test_bad_inputs.py``, ``tests/test_folder_schema_fuzz.py``)."""

from argparse import Namespace

from speechbrain_cavmae import CAVMAEClassifier
from speechbrain_cavmae.checkpoints.loader import load_encoder_weights, load_model
from speechbrain_cavmae.checkpoints.model_folder import read_input_config
from speechbrain_cavmae.inference import AudioVisualClassifier
from speechbrain_cavmae.lobes import CAVMAEAudioEncoder
from speechbrain_cavmae.tools import inputs
from speechbrain_cavmae.training.recipe import load_pretrained


def every_reader(folder, savedir, arch):
    """``{name: call}`` of every reader of ``folder``: ``from_hparams`` (linking into
    ``savedir``; its model), ``load_model``, ``--pretrained_path`` into a 4-class
    classifier of ``arch``, ``load_encoder_weights``, an encoder's ``ckpt_path``, the
    tools' loader and ``read_input_config``."""
    return {
        "from_hparams": lambda: AudioVisualClassifier.from_hparams(
            source=str(folder), savedir=str(savedir)).mods.model,
        "load_model": lambda: load_model(folder),
        "load_pretrained": lambda: load_pretrained(CAVMAEClassifier(4, **arch), folder),
        "load_encoder_weights": lambda: load_encoder_weights(folder),
        "ckpt_path": lambda: CAVMAEAudioEncoder(ckpt_path=str(folder)),
        "tools": lambda: inputs.load_model(Namespace(model=str(folder), device="cpu")),
        "read_input_config": lambda: read_input_config(str(folder)),
    }
