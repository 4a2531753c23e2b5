"""Tests of the checkpoint converter (original CAV-MAE .pth -> SpeechBrain model folder)."""

import re
from pathlib import Path

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from media import write_label_csv
from speechbrain.dataio.encoder import CategoricalEncoder

from speechbrain_cavmae import CAVMAE, CAVMAEClassifier
from speechbrain_cavmae.checkpoints.original import CheckpointMismatchError, original_to_speechbrain
from speechbrain_cavmae.checkpoints.model_folder import hparams_text, resolve_activation
from speechbrain_cavmae.cli import main as cavmae
from speechbrain_cavmae.checkpoints import load
from speechbrain_cavmae.tools.convert import convert

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "original_parity.pt"


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURE, weights_only=False)


@pytest.fixture
def original_ft(fixture, tmp_path):
    path = tmp_path / "audioset_ft.pth"
    # DataParallel prefix, as the released checkpoints
    torch.save({"module." + k: v for k, v in fixture["ft_state_dict"].items()}, path)
    return path


def load_folder(folder):
    with open(folder / "hyperparams.yaml", encoding="utf8") as handle:
        return load_hyperpyyaml(handle, {"pretrained_path": str(folder)})


def test_convert_finetuned_matches_original_outputs(fixture, original_ft, tmp_path):
    csv = write_label_csv(tmp_path / "labels.csv", [f"/m/{i}" for i in range(5)])
    out = tmp_path / "model"
    summary = convert(original_ft, out, label_csv=csv, num_heads=4)
    assert summary["kind"] == "classifier" and summary["num_classes"] == 5
    for name in ("model.ckpt", "hyperparams.yaml", "label_encoder.txt", "labels.csv"):
        assert (out / name).is_file(), name
    text = (out / "hyperparams.yaml").read_text()
    assert "!new:speechbrain_cavmae.CAVMAEClassifier" in text
    assert "!new:speechbrain.utils.parameter_transfer.Pretrainer" in text
    hp = load_folder(out)
    for key, value in dict(sample_rate=16000, n_mels=128, audio_length=128, n_frames=10,
                           image_size=64, dataset_mean=-5.081, dataset_std=4.4849, mode="multimodal",
                           audio_only_mode="missingaudioonly", score_activation="softmax").items():
        assert hp[key] == value, key
    model = hp["model"]
    assert isinstance(model, CAVMAEClassifier)
    assert model.encoder.blocks_u[0].attn.num_heads == 4
    assert len(model.encoder.blocks_a) == 11
    state = torch.load(out / "model.ckpt", weights_only=True)
    assert "head.fc.weight" in state and not any(k.startswith("module.") for k in state)
    model.load_state_dict(state)  # strict
    model.eval()
    inputs = fixture["inputs"]
    with torch.no_grad():
        for mode, expected in fixture["ft"].items():
            got = model(inputs["audio"], inputs["image"], mode=mode)
            assert torch.allclose(got, expected, atol=1e-4), mode
    labels = CategoricalEncoder()
    labels.load(out / "label_encoder.txt")
    assert [labels.ind2lab[i] for i in range(5)] == [f"name {i}" for i in range(5)]
    # the pretrainer in the yaml points at the written files
    assert hp["pretrainer"].paths["model"] == f"{out}/model.ckpt"
    assert hp["pretrainer"].paths["label_encoder"] == f"{out}/label_encoder.txt"


def test_convert_pretrained_checkpoint(fixture, tmp_path):
    path = tmp_path / "pretrained.pth"
    torch.save(fixture["pretrain_state_dict"], path)
    out = tmp_path / "pt"
    summary = convert(path, out, num_heads=4, decoder_num_heads=4)
    assert summary["kind"] == "pretrain"
    model = load(str(out)).model  # the folder's yaml rebuilt, model.ckpt loaded strictly
    assert isinstance(model, CAVMAE)
    assert model.decoder.blocks[0].attn.num_heads == 4
    assert not (out / "label_encoder.txt").exists()
    assert "label_encoder: !ref <pretrained_path>" not in (out / "hyperparams.yaml").read_text()
    # every tensor written is the original's, under its new name; nothing else is written
    written = torch.load(out / "model.ckpt", weights_only=True)
    expected = original_to_speechbrain(fixture["pretrain_state_dict"])
    assert set(written) == set(expected)
    for key, value in expected.items():
        assert torch.equal(written[key], value), key


def test_label_csv_of_wrong_size(original_ft, tmp_path):
    csv = write_label_csv(tmp_path / "labels.csv", ["/m/a", "/m/b"])
    with pytest.raises(ValueError, match="2 labels but the checkpoint has 5"):
        convert(original_ft, tmp_path / "out", label_csv=csv, num_heads=4)


def test_not_a_cavmae_checkpoint(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointMismatchError, match="not a CAV-MAE checkpoint"):
        convert(path, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match=r"missing\.pth: checkpoint not found"):
        convert(tmp_path / "missing.pth", tmp_path / "out")


def test_wrong_head_count_is_caught(original_ft, tmp_path):
    """Heads are not stored in checkpoints: a count that does not divide the size fails
    with an error naming the file and the option to set, before anything is written."""
    with pytest.raises(ValueError, match=r"audioset_ft\.pth: num_heads=5 does not divide "
                                         r"embed_dim=32 .*pass num_heads= \(--num_heads"):
        convert(original_ft, tmp_path / "out", num_heads=5)
    assert not (tmp_path / "out").exists()


def test_score_activation_choice():
    assert resolve_activation("auto", 527) == "sigmoid"
    assert resolve_activation("auto", 309) == "softmax"
    assert resolve_activation("sigmoid", 309) == "sigmoid"
    with pytest.raises(ValueError, match="score_activation='relu'; expected auto, sigmoid or"):
        resolve_activation("relu", 5)


def test_audio_only_model_modes(original_ft, tmp_path):
    out = tmp_path / "audio"
    convert(original_ft, out, num_heads=4, mode="audioonly", score_activation="sigmoid",
            audio_length=256)
    hp = load_folder(out)
    assert hp["mode"] == "audioonly" and hp["audio_only_mode"] == "audioonly"
    assert hp["video_only_mode"] is None
    assert hp["score_activation"] == "sigmoid"
    assert hp["audio_length"] == 256 and hp["model"].encoder.audio_length == 256
    load(str(out))


def test_hparams_text_is_self_consistent():
    cfg = dict(img_size=224, audio_length=1024, n_mels=128, patch_size=16, in_chans=3,
               embed_dim=768, modality_specific_depth=11, shared_depth=1, num_heads=12,
               mlp_ratio=4.0, qkv_bias=True, num_classes=527)
    text = hparams_text(cfg, "classifier", "/models/as", score_activation="sigmoid")
    assert re.search(r"^pretrained_path: \"/models/as\"$", text, re.M)
    assert "num_classes: 527" in text and "embed_dim: 768" in text


def test_cli_prints_summary(original_ft, tmp_path, capsys):
    out = tmp_path / "cli"
    assert cavmae(["convert", "--model", str(original_ft), "--output", str(out),
                   "--num_heads", "4", "--log_level", "ERROR"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("converted ") and "5-class classifier" in line
    assert (out / "model.ckpt").is_file()


def test_reconverting_a_folder_keeps_its_fbank_statistics(original_ft, tmp_path):
    """``--dataset_mean`` / ``--dataset_std`` default to what a model folder records (the
    shared flags' meaning in every command), else AudioSet's."""
    first = tmp_path / "first"
    assert cavmae(["convert", "--model", str(original_ft), "--output", str(first),
                   "--num_heads", "4", "--dataset_mean", "-3.5", "--dataset_std", "2.5"]) == 0
    assert cavmae(["convert", "--model", str(first), "--output", str(tmp_path / "again"),
                   "--num_heads", "4"]) == 0
    again = load(str(tmp_path / "again")).inputs
    assert (again["dataset_mean"], again["dataset_std"]) == (-3.5, 2.5)
    assert cavmae(["convert", "--model", str(original_ft), "--output", str(tmp_path / "pth"),
                   "--num_heads", "4"]) == 0
    pth = load(str(tmp_path / "pth")).inputs
    assert (pth["dataset_mean"], pth["dataset_std"]) == (-5.081, 4.4849)


def _yaml_reads(monkeypatch, call):
    """How many times ``call()`` opens a ``hyperparams.yaml``, and its result."""
    import builtins

    real_open, reads = builtins.open, []

    def counting_open(file, *args, **kwargs):
        if str(file).endswith("hyperparams.yaml"):
            reads.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    try:
        result = call()
    finally:
        monkeypatch.setattr(builtins, "open", real_open)
    return len(reads), result


def test_the_door_reads_a_folder_once_and_says_how_to_feed_it(original_ft, tmp_path,
                                                               monkeypatch):
    """``checkpoints.load``: one read of the folder's yaml gives the model, its input
    settings, labels and task; an encoder part comes through the same door."""
    out = tmp_path / "ft"
    convert(original_ft, out, num_heads=4, dataset_mean=-3.5, dataset_std=2.5, loss="BCE")
    reads, loaded = _yaml_reads(monkeypatch, lambda: load(str(out)))
    assert reads == 1
    assert isinstance(loaded.model, CAVMAEClassifier) and not loaded.model.training
    assert (loaded.inputs["dataset_mean"], loaded.inputs["dataset_std"]) == (-3.5, 2.5)
    assert loaded.inputs["audio_length"] == loaded.model.encoder.audio_length
    assert loaded.labels == [f"class_{i}" for i in range(5)]
    assert loaded.task == {"kind": "classifier", "loss": "BCE", "score_activation": "sigmoid"}
    assert loaded.folder == str(out)
    reads, audio = _yaml_reads(monkeypatch, lambda: load(str(out), part="audio"))
    assert reads == 1 and type(audio.model).__name__ == "AudioStreamEncoder"
    assert audio.inputs == loaded.inputs and audio.task["kind"] == "encoder"
    with pytest.raises(ValueError, match="part='half'; expected one of"):
        load(str(out), part="half")
