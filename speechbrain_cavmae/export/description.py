"""``cavmae_export.json``: what an exported folder holds and how to feed it.

The file is plain JSON, read with :mod:`json` and checked here; nothing in it is run. Its
``graphs`` name files inside the folder only (a bare file name, no path).

Authors
 * speechbrain-cavmae contributors 2026
"""

import json
import os

#: The description file that marks a folder as an exported model.
EXPORT_FILE = "cavmae_export.json"
#: Value of the ``format`` key.
FORMAT = "cavmae-export"
VERSION = 1
#: Runtimes an exported folder is written for (``cavmae export --format``).
RUNTIMES = ("onnx", "exported_program")
#: What an exported folder holds.
KINDS = ("classifier", "pretrain", "audio_encoder", "visual_encoder")

#: The Kaldi fbank of the original (``torchaudio.compliance.kaldi.fbank`` arguments).
KALDI_FBANK = {"htk_compat": True, "use_energy": False, "window_type": "hanning",
               "dither": 0.0, "frame_length_ms": 25.0, "frame_shift_ms": 10.0}


def is_export_folder(path):
    """Whether ``path`` is a folder holding :data:`EXPORT_FILE`."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, EXPORT_FILE))


def input_description(cfg):
    """The ``input`` section: everything that turns a file into the network's inputs, from
    an evaluation data configuration (``AudioVisualClassifier.data_config``)."""
    from speechbrain_cavmae.data.frames import IMAGENET_MEAN, IMAGENET_STD

    return {
        "audio": {
            "sample_rate": int(cfg["sample_rate"]),
            "channel": cfg.get("audio_channel", 0),  # an index, or null: the mean
            "fbank": dict(KALDI_FBANK, num_mel_bins=int(cfg["n_mels"]),
                          sample_frequency=int(cfg["sample_rate"])),
            "audio_length": int(cfg["audio_length"]),
            "waveform": "mono at sample_rate, float in [-1, 1], its mean removed",
            "long_audio": "keep the first audio_length frames",
            "short_audio": "zero-pad to audio_length frames, then normalise",
            "dataset_mean": float(cfg["dataset_mean"]),
            "dataset_std": float(cfg["dataset_std"]),
            "normalisation": "(fbank - dataset_mean) / dataset_std",
        },
        "video": {
            "n_frames": int(cfg["n_frames"]),
            "frame_times": "n_frames frames spread evenly over the first 10 s",
            "image_size": int(cfg["image_size"]),
            "resize": "short side to image_size, then centre crop",
            "image_interpolation": cfg.get("image_interpolation", "bilinear"),
            "pixel_scale": "RGB / 255",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "layout": "[3, image_size, image_size] (CHW)",
        },
    }


def data_config(desc):
    """The evaluation data configuration (``speechbrain_cavmae.data.dataset`` keys) that
    an exported folder records, the inverse of :func:`input_description`."""
    audio, video = desc["input"]["audio"], desc["input"]["video"]
    return {"sample_rate": audio["sample_rate"], "audio_channel": audio["channel"],
            "n_mels": audio["fbank"]["num_mel_bins"], "audio_length": audio["audio_length"],
            "dataset_mean": audio["dataset_mean"], "dataset_std": audio["dataset_std"],
            "n_frames": video["n_frames"], "image_size": video["image_size"],
            "image_interpolation": video["image_interpolation"]}


def read_exported_config(folder):
    """:func:`data_config` of the exported folder ``folder`` (checked)."""
    return data_config(read_description(folder))


def _bad(folder, problem):
    return ValueError(f"{os.path.join(folder, EXPORT_FILE)}: {problem}")


def read_description(folder):
    """The checked description of the exported folder ``folder``.

    Raises
    ------
    ValueError
        Naming the file: not JSON, another format or version, a graph file that is not a
        bare name inside the folder or is missing, a missing key.
    """
    path = os.path.join(folder, EXPORT_FILE)
    try:
        with open(path, encoding="utf8") as handle:
            desc = json.load(handle)
    except json.JSONDecodeError as exc:
        raise _bad(folder, f"not JSON ({exc})") from None
    if not isinstance(desc, dict) or desc.get("format") != FORMAT:
        raise _bad(folder, f"not a {FORMAT} description")
    if desc.get("version") != VERSION:
        raise _bad(folder, f"version {desc.get('version')!r}; this package reads {VERSION}")
    for key, allowed in (("runtime", RUNTIMES), ("kind", KINDS)):
        if desc.get(key) not in allowed:
            raise _bad(folder, f"{key}={desc.get(key)!r}; expected one of {allowed}")
    for key in ("graphs", "input"):
        if not isinstance(desc.get(key), dict):
            raise _bad(folder, f"no {key!r} section")
    for name, graph in desc["graphs"].items():
        file = graph.get("file") if isinstance(graph, dict) else None
        if not isinstance(file, str) or os.path.basename(file) != file or file in ("", ".", ".."):
            raise _bad(folder, f"graph {name!r}: file must be a file name inside the folder")
        if not os.path.isfile(os.path.join(folder, file)):
            raise _bad(folder, f"graph {name!r}: {file} is missing")
    try:
        data_config(desc)
    except (KeyError, TypeError) as exc:
        raise _bad(folder, f"input section lacks {exc}") from None
    return desc
