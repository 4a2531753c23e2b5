"""The model folder is the one artifact, read by one loader.

One tiny pretraining run and one fine-tuning run from it (a non-ViT-B model: embed_dim 64,
4 heads, decoder 32-d with 4 heads, 64 px, 96 frames, 1 epoch on 8 clips) are shared by
every test: each writer (the two recipes, ``convert``) x each reader (``from_hparams``,
the drop-in encoders' ``ckpt_path``, ``--pretrained_path``, the tools' loading) must give
the outputs of the model that was saved; the errors name what is wrong.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from media import REAL_CLIPS, SHARED_SAMPLES
from processes import run
from recipe_cli import AUDIOSET, HP, NO_AUG

from speechbrain_cavmae import CAVMAE, CAVMAEClassifier, CAVMAEAudioEncoder
from speechbrain_cavmae import extract_features as fx
from speechbrain_cavmae.checkpoint import CheckpointMismatchError
from speechbrain_cavmae.convert import convert
from speechbrain_cavmae.inference import AudioVisualClassifier
from speechbrain_cavmae.loading import (
    HeadsNotStoredError,
    NonFiniteWeightError,
    load_model,
)
from speechbrain_cavmae.recipe import load_pretrained
from speechbrain_cavmae.retrieval import eval_loader
from speechbrain_cavmae.retrieval import load_model as tool_load_model

ARCH = dict(img_size=64, audio_length=96, embed_dim=64, modality_specific_depth=1,
            shared_depth=1, num_heads=4)
DECODER = dict(decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4)
MODEL_ARGS = [
    "--embed_dim", "64", "--modality_specific_depth", "1", "--num_heads", "4",
    "--image_size", "64", "--audio_length", "96", "--num_workers", "0", "--warmup_steps", "2",
    "--noprogressbar", "--batch_size", "4", "--number_of_epochs", "1",
]
N_CLASSES = 4


def _subset(manifest, n, out):
    with open(manifest, encoding="utf8") as handle:
        data = json.load(handle)
    data["data"] = data["data"][:n]
    with open(out, "w", encoding="utf8") as handle:
        json.dump(data, handle)
    return str(out)


@pytest.fixture(scope="module")
def runs(toy, tmp_path_factory):
    """A pretraining run, then a fine-tuning run initialised from its output folder."""
    root = tmp_path_factory.mktemp("model_folder")
    # next to the toy manifests: their media paths are relative to the manifest
    here = Path(toy["train"]).parent
    train = _subset(toy["train"], 8, here / "model_folder_train.json")
    valid = _subset(toy["valid"], 4, here / "model_folder_valid.json")
    pre = root / "pretrain"
    run([AUDIOSET, HP / "cavmae.yaml", "--train_data", train, "--output_folder", pre,
         *MODEL_ARGS, "--decoder_embed_dim", "32", "--decoder_depth", "1",
         "--decoder_num_heads", "4"])
    ft = root / "finetune"
    # --pretrained_path is the pretraining run's output folder: its model folder is read
    run([AUDIOSET, HP / "cavmae_ft.yaml", "--train_data", train, "--valid_data", valid,
         "--label_csv", toy["label_csv"], "--output_folder", ft, "--pretrained_path", pre,
         *MODEL_ARGS, *NO_AUG, "--multi_frame_eval", "False", "--weight_averaging", "False"])
    return {"root": root, "pre": pre, "ft": ft, "valid": valid, "toy": toy}


def inputs(n=2):
    gen = torch.Generator().manual_seed(0)
    audio = torch.randn(n, 96, 128, generator=gen)
    image = torch.randn(n, 3, 64, 64, generator=gen)
    noise_a, noise_v = torch.rand(n, 48, generator=gen), torch.rand(n, 16, generator=gen)
    return audio, image, noise_a, noise_v


@torch.no_grad()
def outputs(model):
    """What the model computes: logits, or the audio tokens and both reconstructions."""
    model.eval()
    audio, image, noise_a, noise_v = inputs()
    if hasattr(model, "head"):
        return {"logits": model(audio, image, mode="multimodal")}
    out = model(audio, image, 0.75, 0.75, "unstructured", noise_a, noise_v)
    return {"audio": model.encoder.encode_audio(audio), "pred_a": out["pred_a"],
            "pred_v": out["pred_v"]}


def assert_same(got, expected, what):
    assert set(got) == set(expected), what
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], msg=lambda m: f"{what} {key}: {m}")


def saved_model(runs, kind):
    """The model each run exported, rebuilt with its known architecture by plain torch."""
    if kind == "pretrain":
        model = CAVMAE(**ARCH, **DECODER)
        path = runs["pre"] / "pretrained.pth"
    else:
        model = CAVMAEClassifier(N_CLASSES, **ARCH)
        path = runs["ft"] / "finetuned.pth"
    model.load_state_dict(torch.load(path, weights_only=True))  # strict
    return model.eval()


@pytest.fixture(scope="module")
def folders(runs):
    """Model folders of every writer: both recipes and convert (of each run's .pth)."""
    root = runs["root"]
    convert(runs["pre"] / "pretrained.pth", root / "conv_pre", num_heads=4, decoder_num_heads=4)
    convert(runs["ft"] / "finetuned.pth", root / "conv_ft", num_heads=4,
            label_csv=runs["toy"]["label_csv"], loss="BCE")
    return {"recipe pretrain": ("pretrain", runs["pre"] / "model"),
            "recipe finetune": ("finetune", runs["ft"] / "model"),
            "convert pretrain": ("pretrain", root / "conv_pre"),
            "convert finetune": ("finetune", root / "conv_ft")}


def test_run_folders_describe_the_model(runs):
    pre = (runs["pre"] / "model" / "hyperparams.yaml").read_text()
    ft = (runs["ft"] / "model" / "hyperparams.yaml").read_text()
    for text in (pre, ft):
        assert str(runs["root"]) not in text  # relative: the folder can be moved
        for line in ("num_heads: 4", "embed_dim: 64", "target_length: 96", "im_res: 64",
                     "audio_channel: 0", "image_interpolation: bilinear"):
            assert line in text
    assert "decoder_num_heads: 4" in pre and "decoder_embed_dim: 32" in pre
    assert "model: !new:speechbrain_cavmae.CAVMAE\n" in pre
    # the loss decides the activation: BCE -> sigmoid, although 4 classes alone say softmax
    assert 'loss: "BCE"' in ft and "score_activation: sigmoid" in ft
    assert "num_classes: 4" in ft and "mode: multimodal" in ft
    labels = (runs["ft"] / "model" / "label_encoder.txt").read_text()
    assert all(f"'{name}' =>" in labels for name in _toy_names(runs))


def _toy_names(runs):
    from speechbrain_cavmae.data.manifest import LabelTable

    return LabelTable.from_csv(runs["toy"]["label_csv"]).names


def test_every_writer_every_reader(runs, folders, tmp_path):
    expected = {kind: outputs(saved_model(runs, kind)) for kind in ("pretrain", "finetune")}
    audio = inputs()[0]
    for writer, (kind, folder) in folders.items():
        want = expected[kind]
        assert_same(outputs(load_model(folder)), want, f"{writer} -> load_model")
        # a tool given the folder's model.ckpt reads the folder (its heads) too
        assert_same(outputs(tool_load_model(str(folder / "model.ckpt"))), want,
                    f"{writer} -> retrieval/extract_features/inpaint load_model")
        # --pretrained_path: the recipes' initialisation
        fresh = CAVMAE(**ARCH, **DECODER) if kind == "pretrain" else CAVMAEClassifier(
            N_CLASSES, **ARCH)
        info = load_pretrained(fresh, folder)
        assert not info["missing"] and not info["ignored"]
        assert_same(outputs(fresh), want, f"{writer} -> --pretrained_path")
        # drop-in encoder
        lobe = CAVMAEAudioEncoder(ckpt_path=str(folder), pooling="none", mask_padding=False)
        with torch.no_grad():
            tokens = lobe.eval()(audio)
            expected_tokens = saved_model(runs, kind).encoder.encode_audio(audio)
        torch.testing.assert_close(tokens, expected_tokens, msg=f"{writer} -> ckpt_path")
        # from_hparams (the strict Pretrainer hook)
        moved = tmp_path / writer.replace(" ", "_")
        shutil.copytree(folder, moved)  # a moved copy loads as well
        clf = AudioVisualClassifier.from_hparams(source=str(moved), savedir=str(moved / "sd"))
        assert_same(outputs(clf.mods.model), want, f"{writer} -> from_hparams")
    # a recipe's output folder stands for its model folder
    assert_same(outputs(load_model(runs["ft"])), expected["finetune"], "run folder")
    clf = AudioVisualClassifier.from_hparams(source=str(runs["ft"]),
                                             savedir=str(tmp_path / "sd_run"))
    assert_same(outputs(clf.mods.model), expected["finetune"], "run folder from_hparams")
    assert clf.score_activation == "sigmoid"
    assert clf.labels(range(N_CLASSES)) == _toy_names(runs)
