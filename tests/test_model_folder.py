"""The model folder is the one artifact, read by one loader.

One tiny pretraining run and one fine-tuning run from it (a non-ViT-B model: embed_dim 64,
4 heads, decoder 32-d with 4 heads, 64 px, 96 frames, 1 epoch on 8 clips) are shared by
every test: each writer (the two recipes, ``convert``) x each reader (``from_hparams``,
the drop-in encoders' ``ckpt_path``, ``--pretrained_path``, the tools' loading) must give
the outputs of the model that was saved; the errors name what is wrong.
"""

import contextlib
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from media import REAL_CLIPS, SHARED_SAMPLES
from processes import run
from recipe_cli import AUDIOSET, CHAIN, HP, NO_AUG, write_plan

from speechbrain_cavmae import CAVMAE, CAVMAEClassifier, CAVMAEAudioEncoder
from speechbrain_cavmae.tools import extract_features as fx
from speechbrain_cavmae.checkpoints.original import CheckpointMismatchError
from speechbrain_cavmae.tools.convert import convert
from speechbrain_cavmae.inference import AudioVisualClassifier
from speechbrain_cavmae.checkpoints import HeadsNotStoredError, NonFiniteWeightError, load
from speechbrain_cavmae.cli import main as cavmae
from speechbrain_cavmae.tools.inputs import eval_loader

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
    """A pretraining run, then a fine-tuning run initialised from its output folder (one
    process: ``recipe_chain.py``)."""
    root = tmp_path_factory.mktemp("model_folder")
    # next to the toy manifests: their media paths are relative to the manifest
    here = Path(toy["train"]).parent
    train = _subset(toy["train"], 8, here / "model_folder_train.json")
    valid = _subset(toy["valid"], 4, here / "model_folder_valid.json")
    pre, ft, nosize = root / "pretrain", root / "finetune", root / "ft_nosize"
    plan = [
        {"argv": [AUDIOSET, HP / "cavmae.yaml", "--train_data", train, "--output_folder", pre,
                  *MODEL_ARGS, "--decoder_embed_dim", "32", "--decoder_depth", "1",
                  "--decoder_num_heads", "4"]},
        # --pretrained_path is the pretraining run's output folder: its model folder is read
        {"argv": [AUDIOSET, HP / "cavmae_ft.yaml", "--train_data", train, "--valid_data", valid,
                  "--label_csv", toy["label_csv"], "--output_folder", ft, "--pretrained_path",
                  pre, *MODEL_ARGS, *NO_AUG, "--multi_frame_eval", "False",
                  "--weight_averaging", "False"]},
        # the same with no size flag at all: the sizes are the model folder's; statistics
        # of its own (recorded by its folder, read back by convert of its finetuned.pth)
        {"argv": [AUDIOSET, HP / "cavmae_ft.yaml", "--train_data", train, "--valid_data", valid,
                  "--label_csv", toy["label_csv"], "--output_folder", nosize,
                  "--pretrained_path", pre, "--num_workers", "0", "--noprogressbar",
                  "--batch_size", "4", "--number_of_epochs", "1", *NO_AUG,
                  "--multi_frame_eval", "False", "--dataset_mean", "-4.5",
                  "--dataset_std", "3.5", "--wa_start", "1", "--wa_end", "1"]},
    ]
    run([CHAIN, write_plan(root / "plan.json", plan)])
    return {"root": root, "pre": pre, "ft": ft, "nosize": nosize, "valid": valid, "toy": toy}


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


def test_finetuning_from_a_pretraining_folder_takes_its_sizes(runs):
    """Fine-tuning with ``--pretrained_path`` a pretraining run and no size flag builds the
    folder's architecture (the yaml's is ViT-B at 224 px and 1024 frames)."""
    text = (runs["nosize"] / "model" / "hyperparams.yaml").read_text()
    for line in ("num_heads: 4", "embed_dim: 64", "modality_specific_depth: 1",
                 "audio_length: 96", "image_size: 64", "dataset_mean: -4.5", "loss: \"BCE\""):
        assert line in text, line
    log = (runs["nosize"] / "log.txt").read_text()
    assert "architecture from the model folder " + str(runs["pre"] / "model") in log


def test_the_test_log_names_the_weights_it_reports(runs):
    """The averaged model's test line says so (not "Epoch loaded: 1", the last epoch)."""
    test_lines = [line for line in (runs["nosize"] / "train_log.txt").read_text().splitlines()
                  if "test " in line]
    assert len(test_lines) == 1 and test_lines[0].startswith(
        "weights: average of 1 epoch(s) - test "), test_lines
    results = json.loads((runs["nosize"] / "test_results.json").read_text())
    assert results["weights"] == "average of 1 epoch(s)"


def test_converting_a_runs_pth_records_the_runs_settings(runs, tmp_path):
    """``convert`` of a run's ``finetuned.pth`` / ``pretrained.pth`` with no flag records
    the run's statistics, heads, loss, labels and ``norm_pix_loss``, not AudioSet's
    defaults; the words of the folder name the flags that exist."""
    summary = convert(runs["nosize"] / "finetuned.pth", tmp_path / "ft")
    text = (tmp_path / "ft" / "hyperparams.yaml").read_text()
    for line in ("dataset_mean: -4.5", "dataset_std: 3.5", "num_heads: 4", "loss: \"BCE\""):
        assert line in text, line
    assert "--checkpoint" not in text and "(--model)" in text
    assert (tmp_path / "ft" / "labels.csv").exists() and summary["num_classes"] == N_CLASSES
    convert(runs["pre"] / "pretrained.pth", tmp_path / "pre")
    text = (tmp_path / "pre" / "hyperparams.yaml").read_text()
    assert "norm_pix_loss: true" in text and "decoder_num_heads: 4" in text
    # a classifier converted without --loss: the comment says it is not recorded
    convert(runs["ft"] / "finetuned.pth", tmp_path / "noloss", loss=None,
            dataset_mean=-5.0, dataset_std=4.0)
    text = (tmp_path / "noloss" / "hyperparams.yaml").read_text()
    assert "null: pretraining" not in text


def test_inpaint_reads_norm_pix_loss_from_a_recipe_folder(runs, tmp_path, capsys):
    """A pretraining run's folder records ``norm_pix_loss: true`` (the yaml trains with it);
    ``cavmae inpaint`` uses it without a flag and refuses a flag that disagrees."""
    from speechbrain_cavmae.tools.inpaint import resolve_norm_pix

    assert "norm_pix_loss: true" in (runs["pre"] / "model" / "hyperparams.yaml").read_text()
    assert resolve_norm_pix(str(runs["pre"])) is True
    args = ["inpaint", "--model", str(runs["pre"]), "--manifest", runs["valid"],
            "--num_clips", "1", "--output", str(tmp_path), "--device", "cpu"]
    assert cavmae(args) == 0
    assert len(list(tmp_path.glob("*.png"))) == 1
    capsys.readouterr()
    assert cavmae([*args, "--no_norm_pix"]) == 1
    assert "--no_norm_pix disagrees with" in capsys.readouterr().err


def test_run_folders_describe_the_model(runs):
    pre = (runs["pre"] / "model" / "hyperparams.yaml").read_text()
    ft = (runs["ft"] / "model" / "hyperparams.yaml").read_text()
    for text in (pre, ft):
        assert str(runs["root"]) not in text  # relative: the folder can be moved
        for line in ("num_heads: 4", "embed_dim: 64", "audio_length: 96", "image_size: 64",
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
        assert_same(outputs(load(folder).model), want, f"{writer} -> load_model")
        # given the folder's model.ckpt, the loader reads the folder (its heads) too
        assert_same(outputs(load(str(folder / "model.ckpt")).model), want,
                    f"{writer} -> model.ckpt")
        # --pretrained_path: the recipes' initialisation
        fresh = CAVMAE(**ARCH, **DECODER) if kind == "pretrain" else CAVMAEClassifier(
            N_CLASSES, **ARCH)
        info = load(folder, into=fresh).report
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
    # a SpeechBrain checkpoint directory of each run (1 epoch: the exported weights)
    for kind, run_dir in (("pretrain", runs["pre"]), ("finetune", runs["ft"])):
        ckpt = next((run_dir / "save").glob("CKPT+*"))
        assert_same(outputs(load(ckpt, num_heads=4, decoder_num_heads=4).model),
                    expected[kind], f"{kind} CKPT dir -> load_model")
        fresh = CAVMAE(**ARCH, **DECODER) if kind == "pretrain" else CAVMAEClassifier(
            N_CLASSES, **ARCH)
        load(ckpt, into=fresh).report
        assert_same(outputs(fresh), expected[kind], f"{kind} CKPT dir -> --pretrained_path")
    # a recipe's output folder stands for its model folder
    assert_same(outputs(load(runs["ft"]).model), expected["finetune"], "run folder")
    clf = AudioVisualClassifier.from_hparams(source=str(runs["ft"]),
                                             savedir=str(tmp_path / "sd_run"))
    assert_same(outputs(clf.mods.model), expected["finetune"], "run folder from_hparams")
    assert clf.score_activation == "sigmoid"
    assert clf.labels(range(N_CLASSES)) == _toy_names(runs)


def test_tools_read_a_folder_without_heads_and_refuse_a_pth_without_them(runs, tmp_path,
                                                                          capsys):
    folder = runs["pre"] / "model"
    assert cavmae(["embed", "--model", str(folder), "--manifest", runs["valid"],
                   "--output", str(tmp_path / "f"), "--format", "pt", "--device", "cpu"]) == 0
    index = json.loads((tmp_path / "f" / "index.json").read_text())
    model = saved_model(runs, "pretrain")
    batch = next(iter(eval_loader(runs["valid"], model, batch_size=4)))
    expected = fx.embed_batch(model, batch.fbank.data, batch.frame.data)
    for j, sid in enumerate(batch.id):
        got = torch.load(tmp_path / "f" / index["clips"][sid]["all"], weights_only=True)
        for kind in fx.KINDS:
            torch.testing.assert_close(got[kind], expected[kind][j])
    pth = str(runs["pre"] / "pretrained.pth")
    capsys.readouterr()
    # exit 1 with the one-line error naming the flag; the exception itself with --debug
    base = ["embed", "--model", pth, "--manifest", runs["valid"], "--output", str(tmp_path / "x")]
    assert cavmae(base) == 1
    assert "64 wide: pass --num_heads N" in capsys.readouterr().err
    with pytest.raises(HeadsNotStoredError, match=r"64 wide: pass --num_heads N"):
        cavmae([*base, "--debug"])
    with pytest.raises(HeadsNotStoredError, match=r"32 wide: pass --decoder_num_heads N"):
        cavmae([*base, "--num_heads", "4", "--debug"])


def test_heads_are_never_guessed(runs, tmp_path):
    # bare weights away from their run folder (whose model/ folder would record the heads)
    pre, ft = tmp_path / "pretrained.pth", tmp_path / "finetuned.pth"
    shutil.copy(runs["pre"] / "pretrained.pth", pre)
    shutil.copy(runs["ft"] / "finetuned.pth", ft)
    stats = {"dataset_mean": -4.0, "dataset_std": 3.0}
    with pytest.raises(HeadsNotStoredError, match=r"pass --num_heads N"):
        convert(ft, tmp_path / "a", **stats)
    with pytest.raises(HeadsNotStoredError, match=r"pass --decoder_num_heads N"):
        convert(pre, tmp_path / "b", num_heads=4, **stats)
    with pytest.raises(HeadsNotStoredError, match=r"num_heads=N"):
        CAVMAEAudioEncoder(ckpt_path=str(ft))
    with pytest.raises(HeadsNotStoredError, match=r"num_heads=N"):
        load(ft).model
    # a folder records them; a contradicting value is refused
    with pytest.raises(ValueError, match="num_heads=2 given but the model folder records 4"):
        load(runs["ft"] / "model", num_heads=2).model


def _copy_folder(src, dst, edit):
    shutil.copytree(src, dst)
    state = torch.load(dst / "model.ckpt", weights_only=True)
    edit(state)
    torch.save(state, dst / "model.ckpt")
    return dst


def test_folder_with_missing_or_extra_keys_does_not_load(runs, tmp_path):
    src = runs["ft"] / "model"
    missing = _copy_folder(src, tmp_path / "missing", lambda s: s.pop("head.fc.weight"))
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \['head\.fc\.weight'\]"):
        AudioVisualClassifier.from_hparams(source=str(missing), savedir=str(tmp_path / "sd1"))
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \['head\.fc\.weight'\]"):
        load(missing).model
    extra = _copy_folder(src, tmp_path / "extra",
                         lambda s: s.update({"encoder.extra_token": torch.zeros(1)}))
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys.*encoder\.extra_token"):
        AudioVisualClassifier.from_hparams(source=str(extra), savedir=str(tmp_path / "sd2"))


def test_architecture_mismatch_through_pretrained_path(runs):
    deeper = CAVMAEClassifier(N_CLASSES, **dict(ARCH, modality_specific_depth=2))
    before = {k: v.clone() for k, v in deeper.state_dict().items()}
    for source in (runs["pre"], runs["pre"] / "pretrained.pth"):
        with pytest.raises(CheckpointMismatchError,
                           match=r"missing keys \['encoder\.blocks_a\.1\..*the checkpoint has "
                           r"1 modality-specific blocks, the model 2"):
            load(source, into=deeper).report
    assert all(torch.equal(v, before[k]) for k, v in deeper.state_dict().items())
    wider = CAVMAEClassifier(N_CLASSES, **dict(ARCH, embed_dim=128, num_heads=4))
    with pytest.raises(CheckpointMismatchError, match=r"shapes differ: encoder\.\w+"):
        load(runs["pre"], into=wider).report
    # heads are not in the weights: the folder's count is checked
    fewer_heads = CAVMAEClassifier(N_CLASSES, **dict(ARCH, num_heads=2))
    with pytest.raises(CheckpointMismatchError, match="num_heads=4, the model 2"):
        load(runs["pre"], into=fewer_heads).report
    # the partial loads that are the point: encoder of a pretraining model into a classifier
    clf = CAVMAEClassifier(N_CLASSES, **ARCH)
    info = load(runs["pre"], into=clf).report
    assert {k.split(".")[0] for k in info["ignored"]} == {"decoder"}
    assert {k.split(".")[0] for k in info["missing"]} == {"head"}
    # and a fine-tuned model (no decoder) into a pretraining model
    pre = CAVMAE(**ARCH, **DECODER)
    info = load(runs["ft"], into=pre).report
    assert {k.split(".")[0] for k in info["ignored"]} == {"head"}
    assert {k.split(".")[0] for k in info["missing"]} == {"decoder"}


def test_non_finite_and_non_tensor_weights_are_errors(runs, tmp_path):
    key = "encoder.blocks_u.0.attn.qkv.weight"

    def poison(state):
        state[key][0, 0] = float("nan")

    folder = _copy_folder(runs["ft"] / "model", tmp_path / "nan", poison)
    with pytest.raises(NonFiniteWeightError, match=re.escape(repr(key))):
        AudioVisualClassifier.from_hparams(source=str(folder), savedir=str(tmp_path / "sd"))
    with pytest.raises(NonFiniteWeightError, match=re.escape(repr(key))):
        load(folder / "model.ckpt", into=CAVMAEClassifier(N_CLASSES, **ARCH)).report
    state = torch.load(runs["ft"] / "finetuned.pth", weights_only=True)
    state["encoder.norm.weight"] = 3
    torch.save(state, tmp_path / "int.pth")
    with pytest.raises(CheckpointMismatchError, match="'encoder.norm.weight' is a int"):
        load(tmp_path / "int.pth", num_heads=4).model


#: The evaluation data configuration of the fine-tuning run (its yaml and overrides).
EVAL_CONFIG = {"audio_length": 96, "image_size": 64, "n_frames": 10, "sample_rate": 16000,
               "audio_channel": 0, "dataset_mean": -5.081, "dataset_std": 4.4849,
               "image_interpolation": "bilinear"}


@contextlib.contextmanager
def fed(clf):
    """Record the (audio, frames, mode) of every call of the classifier's model (its
    ``forward_frames``: a clip's audio and all its frames ``[batch, n, 3, H, W]``)."""
    calls = []
    model = clf.mods.model
    forward_frames = model.forward_frames

    def record(audio=None, frames=None, mode=None, **kwargs):
        calls.append((audio, frames, mode))
        return forward_frames(audio, frames, mode, **kwargs)

    model.forward_frames = record
    try:
        yield calls
    finally:
        del model.forward_frames


@pytest.fixture(scope="module")
def finetuned(runs, tmp_path_factory):
    savedir = tmp_path_factory.mktemp("ft_savedir")
    # the run's output folder as it is: no conversion step
    return AudioVisualClassifier.from_hparams(source=str(runs["ft"]), savedir=str(savedir))


@pytest.mark.parametrize("name", REAL_CLIPS)
def test_finetuned_run_classifies_a_real_clip_as_evaluated(runs, finetuned, name, tmp_path):
    """classify_file feeds the model exactly the evaluation dataset's tensors."""
    from speechbrain_cavmae.data.dataset import build_dataset

    clip = Path(SHARED_SAMPLES) / name
    if not clip.is_file():
        pytest.skip(f"{clip} not available")
    with fed(finetuned) as calls:
        preds = finetuned.rank_file(str(clip), top_k=N_CLASSES)
    manifest = tmp_path / "clip.json"
    manifest.write_text(json.dumps({"data": [{"video_id": "clip", "wav": str(clip),
                                              "video": str(clip), "labels": ""}]}))
    item = build_dataset(str(manifest), None, dict(EVAL_CONFIG, multi_frame=True),
                         train=False)[0]
    ((audio, frames, mode),) = calls  # the audio once, the 10 frames as one batch
    assert mode == "multimodal" and frames.shape[:2] == (1, 10)
    assert torch.equal(audio[0], item["fbank"])
    for i in range(10):
        assert torch.equal(frames[0, i], item["frames"][i]), f"frame {i}"
    model = saved_model(runs, "finetune")
    with torch.no_grad():
        expected = torch.stack([
            torch.sigmoid(model(item["fbank"][None], item["frames"][i][None])) for i in range(10)
        ]).mean(0)[0]
    names = _toy_names(runs)
    assert [p.index for p in preds] == expected.argsort(descending=True).tolist()
    for p in preds:
        assert p.label == names[p.index]
        assert p.score == pytest.approx(float(expected[p.index]), abs=1e-6)


def test_stereo_48k_wav_is_fed_as_in_training(runs, finetuned, tmp_path):
    """Channel 0 (as the training pipeline and the original), resampled to 16 kHz."""
    import numpy as np
    import soundfile

    from speechbrain_cavmae.data.audio import load_audio
    from speechbrain_cavmae.data.fbank import compute_fbank

    t = np.arange(48000 * 2) / 48000
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t),
                       0.5 * np.sin(2 * np.pi * 3000 * t)], axis=1).astype("float32")
    path = str(tmp_path / "stereo.wav")
    soundfile.write(path, stereo, 48000)
    with fed(finetuned) as calls:
        preds = finetuned.rank_file(path, top_k=2)
    assert len(calls) == 1 and calls[0][1] is None and calls[0][2] == "missingaudioonly"

    def fbank(channel):  # the 96 frames' samples only, as the data pipeline reads them
        wav = load_audio(path, 16000, channel, max_samples=95 * 160 + 400)
        return compute_fbank(wav, 16000, 128, 96, dataset_mean=-5.081, dataset_std=4.4849)

    assert torch.equal(calls[0][0][0], fbank(0))
    assert not torch.allclose(fbank(0), fbank(None), atol=0.1)  # the channel matters here
    model = saved_model(runs, "finetune")
    with torch.no_grad():
        expected = torch.sigmoid(model(fbank(0)[None], None, mode="missingaudioonly"))[0]
    assert preds[0].score == pytest.approx(float(expected.max()), abs=1e-6)


@pytest.mark.parametrize("name", ["generated", *REAL_CLIPS])
def test_drop_in_encoder_waveforms_give_the_evaluation_fbank(runs, name, tmp_path):
    """A drop-in audio encoder built from the model folder turns the waveform that the
    evaluation dataset decodes into the fbank that dataset computes (same statistics,
    length, padding), so its tokens are those of evaluation."""
    from media import write_video

    from speechbrain_cavmae.data.dataset import build_dataset

    if name == "generated":  # stereo at 44.1 kHz: channel 0, resampled, as in training
        clip = write_video(str(tmp_path / "stereo.mp4"), n_frames=20, fps=10,
                           audio_freqs=(523.0, 1800.0))
    else:
        clip = Path(SHARED_SAMPLES) / name
        if not clip.is_file():
            pytest.skip(f"{clip} not available")
    # the folder's own statistics are used (here not AudioSet's)
    folder = tmp_path / "model"
    shutil.copytree(runs["ft"] / "model", folder)
    yaml_path = folder / "hyperparams.yaml"
    text = yaml_path.read_text()
    assert "dataset_mean: -5.081" in text and "dataset_std: 4.4849" in text
    yaml_path.write_text(text.replace("dataset_mean: -5.081", "dataset_mean: -3.5")
                         .replace("dataset_std: 4.4849", "dataset_std: 2.5"))
    config = dict(EVAL_CONFIG, dataset_mean=-3.5, dataset_std=2.5)
    manifest = tmp_path / "clip.json"
    manifest.write_text(json.dumps({"data": [{"video_id": "clip", "wav": str(clip),
                                              "video": str(clip), "labels": ""}]}))
    fbank = build_dataset(str(manifest), None, config, train=False)[0]["fbank"]
    wav = build_dataset(str(manifest), None, dict(config, features_on_device=True),
                        train=False)[0]["wav"]
    lobe = CAVMAEAudioEncoder(ckpt_path=str(folder), pooling="none", mask_padding=False).eval()
    got, _, n_windows = lobe.audio_input(wav[None])
    assert n_windows == 1 and got.shape == (1, *fbank.shape)
    torch.testing.assert_close(got[0], fbank, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        tokens = lobe(wav[None])
        expected = saved_model(runs, "finetune").encoder.encode_audio(fbank[None])
    torch.testing.assert_close(tokens, expected, atol=1e-4, rtol=1e-4)
