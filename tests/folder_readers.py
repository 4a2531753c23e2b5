"""Every way the package reads a model folder, for the tests that check they agree
(``tests/test_bad_inputs.py``, ``tests/test_folder_schema_fuzz.py``)."""

from argparse import Namespace

from speechbrain_cavmae import CAVMAEClassifier
from speechbrain_cavmae.checkpoints import load, read_settings
from speechbrain_cavmae.inference import AudioVisualClassifier
from speechbrain_cavmae.lobes import CAVMAEAudioEncoder
from speechbrain_cavmae.tools import inputs


def every_reader(folder, savedir, arch):
    """``{name: call}`` of every reader of ``folder``: ``from_hparams`` (linking into
    ``savedir``; its model), ``checkpoints.load`` (the model; ``into=`` a 4-class
    classifier of ``arch``, as ``--pretrained_path``; ``part="encoder"``), an encoder's
    ``ckpt_path``, the tools' loader and ``read_settings`` (no model built). The keys keep
    the names of the entry points the door replaced."""
    return {
        "from_hparams": lambda: AudioVisualClassifier.from_hparams(
            source=str(folder), savedir=str(savedir)).mods.model,
        "load_model": lambda: load(folder).model,
        "load_pretrained": lambda: load(folder, into=CAVMAEClassifier(4, **arch)).report,
        "load_encoder_weights": lambda: load(folder, part="encoder").model,
        "ckpt_path": lambda: CAVMAEAudioEncoder(ckpt_path=str(folder)),
        "tools": lambda: inputs.load_model(Namespace(model=str(folder), device="cpu")).model,
        "read_settings": lambda: read_settings(str(folder)),
    }
