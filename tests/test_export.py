"""``cavmae export``: tiny models exported to ONNX (and torch.export), run in ONNX Runtime
and compared with PyTorch; the exported folder used as a model; bad export targets."""

import json
import os

import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from media import REAL_CLIPS, SHARED_SAMPLES, write_label_csv, write_video  # noqa: E402

from speechbrain_cavmae.checkpoints.model_folder import write_model_folder  # noqa: E402
from speechbrain_cavmae.cli import main as cavmae  # noqa: E402
from speechbrain_cavmae.export.description import EXPORT_FILE  # noqa: E402
from speechbrain_cavmae.export.runtime import ExportedModel  # noqa: E402
from speechbrain_cavmae.export.writer import ExportError, export_model  # noqa: E402
from speechbrain_cavmae.lobes import CAVMAEAudioEncoder, CAVMAEVisualEncoder  # noqa: E402
from speechbrain_cavmae.model.cavmae import CAVMAE  # noqa: E402
from speechbrain_cavmae.model.classifier import CAVMAEClassifier  # noqa: E402
from speechbrain_cavmae.model.modes import MODES, get_mode  # noqa: E402
from speechbrain_cavmae.tools.extract_features import embed_batch  # noqa: E402

ARCH = dict(img_size=32, audio_length=32, embed_dim=32, modality_specific_depth=1,
            shared_depth=1, num_heads=4)
DEC = dict(decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=4)
CFG = dict(sample_rate=16000, audio_channel=0, dataset_mean=-5.0, dataset_std=4.5,
           n_frames=3, image_interpolation="bilinear")
TOL = 1e-4
#: The classifier fine-tuned in each mode that is exported (with its missing-modality modes).
FINETUNED = {"multimodal": "multimodal", "audioonly": "audioonly", "videoonly": "videoonly",
             "missingaudioonly": "multimodal", "missingvideoonly": "multimodal"}


def _inputs(mode, batch, n=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    uses = get_mode(mode)
    a = torch.randn(batch, 32, 128, generator=gen) if uses.audio else None
    f = torch.randn(batch, n, 3, 32, 32, generator=gen) if uses.visual else None
    return a, f


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    labels = write_label_csv(str(d / "labels.csv"), [f"/m/{i}" for i in range(4)])
    models = {m: CAVMAEClassifier(4, mode=m, **ARCH).eval()
              for m in ("multimodal", "audioonly", "videoonly")}
    # the multimodal classifier goes through its folder and the command line
    write_model_folder(models["multimodal"], str(d / "clf"), label_csv=labels, loss="BCE")
    assert cavmae(["export", "--model", str(d / "clf"), "--output", str(d / "clf_onnx")]) == 0
    exported = {"multimodal": ExportedModel(str(d / "clf_onnx"))}
    for m in ("audioonly", "videoonly"):
        export_model(models[m], str(d / f"{m}_onnx"), CFG)
        exported[m] = ExportedModel(str(d / f"{m}_onnx"))
    pre = CAVMAE(**ARCH, **DEC).eval()
    write_model_folder(pre, str(d / "pre"))
    assert cavmae(["export", "--model", str(d / "pre"), "--output", str(d / "pre_onnx")]) == 0
    return {"dir": d, "models": models, "exported": exported, "pre": pre,
            "pre_onnx": ExportedModel(str(d / "pre_onnx"))}


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_equals_pytorch(env, mode):
    """Each of the five modes, on generated batches of several sizes (dynamic batch and
    frame count)."""
    model = env["models"][FINETUNED[mode]]
    exported = env["exported"][FINETUNED[mode]]
    for batch, n in ((1, 3), (2, 1), (5, 2)):
        a, f = _inputs(mode, batch, n, seed=batch)
        with torch.no_grad():
            want = model.forward_frames(a, f, mode=mode)
        got = exported.forward_frames(a, f, mode=mode)
        assert got.shape == want.shape
        assert (got - want).abs().max() < TOL, (mode, batch, n)


def test_onnx_checker_passes_on_every_graph(env):
    d = env["dir"]
    files = [os.path.join(d, sub, name) for sub in os.listdir(d) if sub.endswith("_onnx")
             for name in os.listdir(d / sub) if name.endswith(".onnx")]
    assert len(files) == 3 + 1 + 1 + 3
    for path in files:
        onnx.checker.check_model(path, full_check=True)


def test_description_is_plain_json_with_the_input_pipeline(env):
    with open(env["dir"] / "clf_onnx" / EXPORT_FILE, encoding="utf8") as handle:
        desc = json.load(handle)
    audio, video = desc["input"]["audio"], desc["input"]["video"]
    assert audio["fbank"]["num_mel_bins"] == 128 and audio["audio_length"] == 32
    assert audio["sample_rate"] == 16000 and audio["channel"] == 0
    assert video["image_size"] == 32 and video["n_frames"] == 10
    assert desc["labels"] == [f"name {i}" for i in range(4)]
    assert desc["score_activation"] == "sigmoid"
    assert sorted(desc["graphs"]) == ["missingaudioonly", "missingvideoonly", "multimodal"]


def test_pretraining_model_tokens_and_embed(env):
    pre, exported = env["pre"], env["pre_onnx"]
    for batch in (1, 3):
        gen = torch.Generator().manual_seed(batch)
        a = torch.randn(batch, 32, 128, generator=gen)
        v = torch.randn(batch, 3, 32, 32, generator=gen)
        with torch.no_grad():
            want = pre.encode(a, v)
        got = exported.encode(a, v)
        for x, y in zip(got, want):
            assert (x - y).abs().max() < TOL
        emb, ref = embed_batch(exported, a, v, "tokens"), embed_batch(pre, a, v, "tokens")
        for kind in ("audio", "visual", "joint"):
            assert (emb[kind] - ref[kind]).abs().max() < TOL, kind


@pytest.mark.parametrize("cls", [CAVMAEAudioEncoder, CAVMAEVisualEncoder])
def test_drop_in_encoders_export(tmp_path, cls):
    lobe = cls(**ARCH).eval()
    desc = export_model(lobe, str(tmp_path / "lobe"), CFG, lobe=True)
    graph = ExportedModel(str(tmp_path / "lobe"))._graphs["encoder"]
    onnx.checker.check_model(str(tmp_path / "lobe" / desc["graphs"]["encoder"]["file"]))
    for batch in (1, 4):
        x = (torch.randn(batch, 32, 128) if cls is CAVMAEAudioEncoder
             else torch.randn(batch, 2, 3, 32, 32))
        with torch.no_grad():
            assert (graph(x) - lobe(x)).abs().max() < TOL


def test_exported_program_format(env, tmp_path):
    export_model(env["pre"], str(tmp_path / "ep"), CFG, runtime="exported_program")
    exported = ExportedModel(str(tmp_path / "ep"))
    a, v = torch.randn(2, 32, 128), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = env["pre"].encode(a, v)
    for x, y in zip(exported.encode(a, v), want):
        assert (x - y).abs().max() < TOL


def test_int8_records_and_prints_its_cost(env, capsys):
    out = env["dir"] / "int8"
    assert cavmae(["export", "--model", str(env["dir"] / "clf"), "--output", str(out),
                   "--quantize", "int8"]) == 0
    printed = capsys.readouterr().out
    assert "top-1 agreement with float32" in printed
    desc = json.loads((out / EXPORT_FILE).read_text())
    cost = desc["int8"]["multimodal"]
    assert 0.0 <= cost["top1_agreement"] <= 1.0 and cost["max_score_diff"] >= 0.0
    assert all(spec["file"].endswith(".int8.onnx") for spec in desc["graphs"].values())
    a, f = _inputs("multimodal", 2)
    assert ExportedModel(str(out)).forward_frames(a, f).shape == (2, 3, 4)


def _classify_json(model, clips, capsys):
    capsys.readouterr()
    assert cavmae(["classify", *clips, "--model", model, "--json", "--top_k", "4"]) == 0
    return json.loads(capsys.readouterr().out)


def _same_reports(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g["mode"] == w["mode"]
        assert [p["label"] for p in g["predictions"]] == [p["label"] for p in w["predictions"]]
        for p, q in zip(g["predictions"], w["predictions"]):
            assert abs(p["score"] - q["score"]) < TOL


def test_classify_json_of_export_equals_model_folder(env, tmp_path, capsys):
    """Generated clips: a video with sound, an audio-only and a silent video (the three
    modes the folder runs in)."""
    video = write_video(str(tmp_path / "a.mp4"), n_frames=30, fps=10, size=(48, 40))
    silent = write_video(str(tmp_path / "s.mp4"), n_frames=30, fps=10, size=(48, 40),
                         audio_freqs=())
    import numpy as np
    import soundfile

    wav = str(tmp_path / "t.wav")
    soundfile.write(wav, np.sin(np.arange(16000) * 0.05).astype("float32") * 0.3, 16000)
    clips = [video, wav, silent]
    want = _classify_json(str(env["dir"] / "clf"), clips, capsys)
    got = _classify_json(str(env["dir"] / "clf_onnx"), clips, capsys)
    assert [r["mode"] for r in got] == ["multimodal", "missingaudioonly", "missingvideoonly"]
    _same_reports(got, want)


@pytest.mark.skipif(not all(os.path.isfile(os.path.join(SHARED_SAMPLES, c)) for c in REAL_CLIPS),
                    reason="real clips not available")
def test_real_clips_equal_pytorch(env, capsys):
    clips = [os.path.join(SHARED_SAMPLES, c) for c in REAL_CLIPS]
    want = _classify_json(str(env["dir"] / "clf"), clips, capsys)
    got = _classify_json(str(env["dir"] / "clf_onnx"), clips, capsys)
    _same_reports(got, want)
    from speechbrain_cavmae.inference import AudioVisualClassifier

    src = AudioVisualClassifier.from_hparams(str(env["dir"] / "pre"))
    exp = AudioVisualClassifier.from_hparams(str(env["dir"] / "pre_onnx"))
    for clip in clips:
        a, b = src.encode_file(clip), exp.encode_file(clip)
        for kind in ("audio", "visual"):
            assert (a[kind] - b[kind]).abs().max() < TOL


# ------------------------------------------------------------------ bad export targets
def _one_line_error(capsys, argv, status):
    capsys.readouterr()
    if status == 2:
        with pytest.raises(SystemExit) as exc:
            cavmae(argv)
        assert exc.value.code == 2
    else:
        assert cavmae(argv) == status
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1]


def test_unknown_format_is_a_usage_error(env, capsys):
    line = _one_line_error(capsys, ["export", "--model", str(env["dir"] / "clf"), "--output",
                                    str(env["dir"] / "x"), "--graph_format", "tflite"], 2)
    assert "invalid choice: 'tflite'" in line


def test_quantize_needs_onnx(env, capsys):
    line = _one_line_error(capsys, ["export", "--model", str(env["dir"] / "clf"), "--output",
                                    str(env["dir"] / "x"), "--graph_format", "exported_program",
                                    "--quantize", "int8"], 2)
    assert "--quantize int8 is for --graph_format onnx" in line


def test_nan_weights_are_refused(env, tmp_path, capsys):
    model = CAVMAEClassifier(4, **ARCH).eval()
    with torch.no_grad():
        model.head.fc.weight[0, 0] = float("nan")
    with pytest.raises(ExportError, match=r"head\.fc\.weight holds NaN"):
        export_model(model, str(tmp_path / "nan"), CFG)
    assert not (tmp_path / "nan").exists()
    torch.save(model.state_dict(), tmp_path / "nan.pth")
    line = _one_line_error(capsys, ["export", "--model", str(tmp_path / "nan.pth"), "--output",
                                    str(tmp_path / "out")], 1)
    assert line.startswith("error: ") and "nan" in line.lower()
    assert not (tmp_path / "out").exists()


def test_unexportable_lobe_option_is_named(tmp_path):
    lobe = CAVMAEAudioEncoder(long_audio="window", **ARCH).eval()
    with pytest.raises(ExportError, match=r"long_audio='window' cannot be exported"):
        export_model(lobe, str(tmp_path / "lobe"), CFG, lobe=True)


def test_existing_output_and_exported_source_are_refused(env, capsys):
    line = _one_line_error(capsys, ["export", "--model", str(env["dir"] / "clf"), "--output",
                                    str(env["dir"] / "clf_onnx")], 1)
    assert "exists" in line
    line = _one_line_error(capsys, ["export", "--model", str(env["dir"] / "clf_onnx"),
                                    "--output", str(env["dir"] / "again")], 1)
    assert "already an exported folder" in line


def test_embed_and_retrieval_accept_the_export(env, tmp_path, capsys):
    """``cavmae embed`` / ``retrieval`` on the exported pretraining model give the source
    folder's embeddings and recalls."""
    import numpy as np

    from speechbrain_cavmae.data.toy import generate_toy_dataset

    toy = generate_toy_dataset(tmp_path / "toy", n_train=1, n_valid=1, n_test=5, seed=1,
                               image_size=32, n_classes=3)
    results = {}
    for name in ("pre", "pre_onnx"):
        base = ["--model", str(env["dir"] / name), "--manifest", toy["test"], "--device", "cpu",
                "--batch_size", "2"]
        assert cavmae(["embed", *base, "--output", str(tmp_path / f"emb_{name}")]) == 0
        capsys.readouterr()
        assert cavmae(["retrieval", *base, "--json"]) == 0
        results[name] = json.loads(capsys.readouterr().out)
    assert results["pre"] == pytest.approx(results["pre_onnx"], abs=1e-6)
    index = json.loads((tmp_path / "emb_pre" / "index.json").read_text())
    assert len(index["clips"]) == 5
    for files in index["clips"].values():
        for kind, file in files.items():
            a = np.load(tmp_path / "emb_pre" / file)
            b = np.load(tmp_path / "emb_pre_onnx" / file)
            assert np.abs(a - b).max() < TOL, kind
