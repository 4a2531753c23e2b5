"""Tests of AudioVisualClassifier (from_hparams on a converted folder) and the classify CLI."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from media import REAL_CLIPS, SHARED_SAMPLES, tone, write_label_csv, write_video, write_wav

from speechbrain_cavmae.checkpoints import load_original_checkpoint
from speechbrain_cavmae.cli import main as cavmae
from speechbrain_cavmae.tools.convert import convert
from speechbrain_cavmae.data.audio import load_audio
from speechbrain_cavmae.data.frames import ImageTransform, load_video_frames
from speechbrain_cavmae.data.fbank import KaldiFbank
from speechbrain_cavmae.data.errors import BadSampleError
from speechbrain_cavmae.inference import AudioVisualClassifier, Prediction, probe_streams
from speechbrain_cavmae.model.modes import get_mode

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "original_parity.pt"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "samples"


def colour(k):
    return np.array([(37 * k) % 256, (91 * k + 60) % 256, (13 * k + 200) % 256], dtype=np.uint8)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("inference")
    fixture = torch.load(FIXTURE, weights_only=False)
    ckpt = root / "ft.pth"
    torch.save(fixture["ft_state_dict"], ckpt)
    csv = write_label_csv(root / "labels.csv", [f"/m/{i}" for i in range(5)])
    folder = root / "model"
    convert(ckpt, folder, label_csv=csv, num_heads=4)
    video = write_video(str(root / "clip.mp4"), n_frames=30, fps=10, size=(80, 64),
                        audio_freqs=(660.0,), colours=colour)
    wav = write_wav(str(root / "clip.wav"), tone(880.0, 2.0, 16000))
    silent = write_video(str(root / "silent.mp4"), n_frames=30, fps=10, size=(80, 64),
                         audio_freqs=(), colours=lambda k: colour(k + 7))
    return {"root": root, "ckpt": ckpt, "folder": folder, "video": video, "wav": wav, "csv": csv,
            "silent": silent}


@pytest.fixture(scope="module")
def clf(env):
    return AudioVisualClassifier.from_hparams(source=str(env["folder"]),
                                              savedir=str(env["root"] / "savedir"))


@pytest.fixture(scope="module")
def reference(env):
    return load_original_checkpoint(str(env["ckpt"]), num_heads=4).eval()


def manual_frames(path, n_frames=10):
    transform = ImageTransform(64, interpolation="bilinear")
    return torch.stack([transform(f) for f in load_video_frames(path, n=n_frames)])


def manual_inputs(path, n_frames=10):
    fbank = KaldiFbank(audio_length=128)(load_audio(path).unsqueeze(0))
    return fbank, manual_frames(path, n_frames)


def test_classify_video_averages_frames(clf, env, reference):
    preds = clf.rank_file(env["video"], top_k=3)
    assert len(preds) == 3 and all(isinstance(p, Prediction) for p in preds)
    assert [p.score for p in preds] == sorted([p.score for p in preds], reverse=True)
    assert all(p.label == f"name {p.index}" for p in preds)
    fbank, frames = manual_inputs(env["video"])
    with torch.no_grad():
        per_frame = [torch.softmax(reference(fbank, frames[i:i + 1], mode="multimodal"), -1)
                     for i in range(10)]
    expected = torch.stack(per_frame).mean(0)[0]
    for p in preds:
        assert abs(p.score - expected[p.index].item()) < 1e-5
    # the frames differ, so averaging over them is not the same as using one frame
    assert not torch.allclose(per_frame[0], per_frame[5], atol=1e-6)
    # deterministic
    assert clf.rank_file(env["video"], top_k=3) == preds
    # classify_file: EncoderClassifier's (out_prob, score, index, text_lab), out_prob the
    # log-posteriors (log of the frame-averaged softmax)
    out_prob, score, index, text_lab = clf.classify_file(env["video"])
    assert out_prob.shape == (1, 5) and score.shape == (1,) and index.shape == (1,)
    torch.testing.assert_close(out_prob[0], expected.log(), atol=1e-5, rtol=0)
    assert index.item() == preds[0].index == int(expected.argmax())
    assert score.item() == pytest.approx(float(expected.max().log()), abs=1e-5)
    assert text_lab == [preds[0].label]


def test_classify_audio_file_uses_missingaudioonly(clf, env, reference):
    preds = clf.rank_file(env["wav"], top_k=5)
    assert len(preds) == 5
    assert abs(sum(p.score for p in preds) - 1.0) < 1e-5  # softmax over all 5 classes
    fbank = KaldiFbank(audio_length=128)(load_audio(env["wav"]).unsqueeze(0))
    with torch.no_grad():
        expected = torch.softmax(reference(fbank, None, mode="missingaudioonly"), -1)[0]
    for p in preds:
        assert abs(p.score - expected[p.index].item()) < 1e-5
    # a mode given for a video uses the video's audio alone
    forced = clf.rank_file(env["video"], top_k=5, mode="missingaudioonly")
    fbank = KaldiFbank(audio_length=128)(load_audio(env["video"]).unsqueeze(0))
    with torch.no_grad():
        expected = torch.softmax(reference(fbank, None, mode="missingaudioonly"), -1)[0]
    assert len(forced) == 5
    for p in forced:
        assert abs(p.score - expected[p.index].item()) < 1e-5


def test_sigmoid_scores_from_hparams(env, reference):
    model = AudioVisualClassifier.from_hparams(
        source=str(env["folder"]), savedir=str(env["root"] / "sd_sigmoid"),
        overrides={"score_activation": "sigmoid"},
    )
    preds = model.rank_file(env["wav"], top_k=5)
    fbank = KaldiFbank(audio_length=128)(load_audio(env["wav"]).unsqueeze(0))
    with torch.no_grad():
        expected = torch.sigmoid(reference(fbank, None, mode="missingaudioonly"))[0]
    for p in preds:
        assert abs(p.score - expected[p.index].item()) < 1e-5
    out_prob, score, index, text_lab = model.classify_file(env["wav"])  # log of the sigmoid
    torch.testing.assert_close(out_prob[0], expected.log(), atol=1e-5, rtol=0)
    assert index.tolist() == [preds[0].index] and text_lab == [preds[0].label]


def test_from_hparams_hands_a_hub_id_to_speechbrain_fetching(env, tmp_path, monkeypatch):
    """A model-hub id goes unchanged to SpeechBrain's fetch, for the yaml and (through
    pretrained_path) for the weights and labels; the "hub" is a local copy of the folder
    served by the patched fetch (no network)."""
    import speechbrain.inference.interfaces as interfaces
    import speechbrain.utils.parameter_transfer as transfer

    hub = tmp_path / "hub"
    shutil.copytree(env["folder"], hub)
    real_fetch, calls = interfaces.fetch, []

    def hub_fetch(filename, source, *args, **kwargs):
        calls.append((str(source), filename))
        assert str(source) == "speechbrain-cavmae/tiny-as", source
        return real_fetch(filename, str(hub), *args, **kwargs)

    monkeypatch.setattr(interfaces, "fetch", hub_fetch)
    monkeypatch.setattr(transfer, "fetch", hub_fetch)
    model = AudioVisualClassifier.from_hparams(source="speechbrain-cavmae/tiny-as",
                                               savedir=str(tmp_path / "sd"))
    assert {name for _, name in calls} == {"hyperparams.yaml", "model.ckpt",
                                           "label_encoder.txt"}
    monkeypatch.undo()
    local = AudioVisualClassifier.from_hparams(source=str(env["folder"]))
    assert model.rank_file(env["wav"]) == local.rank_file(env["wav"])


def test_classify_batch_and_encode(clf, env, reference):
    fbank, frames = manual_inputs(env["video"], n_frames=10)
    wavs = torch.stack([load_audio(env["video"]), load_audio(env["video"])])
    batch_frames = torch.stack([frames, frames.flip(0)])
    scores, best, index, labels = clf.classify_batch(wavs, batch_frames)
    assert scores.shape == (2, 5) and best.shape == (2,) and len(labels) == 2
    assert torch.allclose(scores[0], scores[1], atol=1e-5)  # frame order does not matter
    via_fbank = clf.classify_batch(fbank.repeat(2, 1, 1), batch_frames)[0]
    assert torch.allclose(scores, via_fbank, atol=1e-5)
    single = clf.classify_batch(wavs, batch_frames[:, 0], mode="multimodal")[0]
    assert single.shape == (2, 5)
    video_only = clf.classify_batch(None, batch_frames)[0]
    with torch.no_grad():
        expected = torch.stack([torch.softmax(reference(None, frames[i:i + 1],
                                                        mode="missingvideoonly"), -1)
                                for i in range(10)]).mean(0)
    assert torch.allclose(video_only[0].exp(), expected[0], atol=1e-5)

    emb = clf.encode_file(env["video"])
    assert emb["audio"].shape == (32,) and emb["visual"].shape == (32,)
    with torch.no_grad():
        ref_a = reference.encoder.encode_audio(fbank).mean(1)[0]
        ref_v = reference.encoder.encode_visual(frames).mean(1).mean(0)
    assert torch.allclose(emb["audio"], ref_a, atol=1e-5)
    assert torch.allclose(emb["visual"], ref_v, atol=1e-5)
    audio_only = clf.encode_file(env["wav"])
    assert audio_only["visual"] is None and audio_only["audio"].shape == (32,)


def test_folder_can_be_moved_and_loaded_without_savedir(env, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(env["folder"], moved)
    model = AudioVisualClassifier.from_hparams(source=str(moved), savedir=str(tmp_path / "sd"))
    ref = AudioVisualClassifier.from_hparams(source=str(env["folder"]))
    assert model.rank_file(env["wav"]) == ref.rank_file(env["wav"])


def test_pretrained_model_encodes_but_does_not_classify(env, tmp_path, capsys):
    fixture = torch.load(FIXTURE, weights_only=False)
    ckpt = tmp_path / "pt.pth"
    torch.save(fixture["pretrain_state_dict"], ckpt)
    convert(ckpt, tmp_path / "pt", num_heads=4, decoder_num_heads=4)
    model = AudioVisualClassifier.from_hparams(source=str(tmp_path / "pt"),
                                               savedir=str(tmp_path / "sd"))
    emb = model.encode_file(env["video"])
    assert emb["audio"].shape == (32,) and emb["visual"].shape == (32,)
    with pytest.raises(RuntimeError, match="no classification head"):
        model.classify_file(env["video"])
    # the command line points to the command that reads such a model
    assert cavmae(["classify", env["video"], "--model", str(tmp_path / "pt"),
                   "--savedir", str(tmp_path / "sd2")]) == 1
    err = capsys.readouterr().err
    assert "no classification head" in err and "cavmae embed --model" in err


def test_audio_only_model_ignores_frames(env, tmp_path, reference):
    convert(env["ckpt"], tmp_path / "a", num_heads=4, mode="audioonly")
    model = AudioVisualClassifier.from_hparams(source=str(tmp_path / "a"),
                                               savedir=str(tmp_path / "sd"))
    preds = model.rank_file(env["video"], top_k=5)
    fbank = KaldiFbank(audio_length=128)(load_audio(env["video"]).unsqueeze(0))
    with torch.no_grad():
        expected = torch.softmax(reference(fbank, None, mode="audioonly"), -1)[0]
    for p in preds:
        assert abs(p.score - expected[p.index].item()) < 1e-5
    # frames alone: the audio model has no video_only_mode
    with pytest.raises(ValueError, match=r"silent\.mp4: this model cannot classify video alone "
                                         r"\(the file has no audio stream\): video_only_mode "
                                         r"is null"):
        model.classify_file(env["silent"])


def test_bad_file_names_the_file(clf, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video" * 100)
    with pytest.raises(BadSampleError, match=r"broken\.mp4: cannot open container"):
        clf.classify_file(str(bad))
    with pytest.raises(BadSampleError, match=r"absent\.mp4: file not found"):
        clf.classify_file(str(tmp_path / "absent.mp4"))


def test_video_without_audio_uses_its_frames_alone(clf, env, reference):
    """A multimodal model classifies a silent video with video_only_mode
    (missingvideoonly) on its frames: no silence is made up for the missing audio."""
    assert probe_streams(env["silent"]) == (False, True)
    preds = clf.rank_file(env["silent"], top_k=5)
    frames = manual_frames(env["silent"])
    with torch.no_grad():
        per_frame = torch.stack([torch.softmax(reference(None, frames[i:i + 1],
                                                         mode="missingvideoonly"), -1)[0]
                                 for i in range(10)])
        silence = torch.full((1, 128, 128), (0.0 + 5.081) / 4.4849)  # a zero log-mel
        with_silence = torch.stack([torch.softmax(reference(silence, frames[i:i + 1]), -1)[0]
                                    for i in range(10)]).mean(0)
    expected = per_frame.mean(0)
    assert len(preds) == 5
    for p in preds:
        assert abs(p.score - expected[p.index].item()) < 1e-5
    assert (with_silence - expected).abs().max() > 1e-3  # the two readings differ
    emb = clf.encode_file(env["silent"])
    assert emb["audio"] is None
    with torch.no_grad():
        ref_v = reference.encoder.encode_visual(frames).mean(1).mean(0)
    assert torch.allclose(emb["visual"], ref_v, atol=1e-5)


def test_mode_errors_name_the_file_and_the_missing_stream(clf, env):
    for mode in ("multimodal", "missingaudioonly", "audioonly"):
        with pytest.raises(ValueError, match=rf"silent\.mp4: mode '{mode}' needs audio "
                                             r"\(the file has no audio stream\)"):
            clf.classify_file(env["silent"], mode=mode)
    for mode in ("multimodal", "videoonly", "missingvideoonly"):
        with pytest.raises(ValueError, match=rf"clip\.wav: mode '{mode}' needs frames "
                                             r"\(the file has no video stream\)"):
            clf.classify_file(env["wav"], mode=mode)
    with pytest.raises(ValueError, match=r"clip\.mp4: unknown mode 'audio'; expected one of"):
        clf.classify_file(env["video"], mode="audio")


def test_mode_errors_of_batches(clf, env, monkeypatch):
    fbank, frames = manual_inputs(env["video"], n_frames=2)
    with pytest.raises(ValueError, match="give audio, frames or both"):
        clf.classify_batch(None, None)
    with pytest.raises(ValueError, match=r"^mode 'audioonly' needs audio$"):
        clf.classify_batch(None, frames[None], mode="audioonly")
    with pytest.raises(ValueError, match=r"^mode 'missingvideoonly' needs frames$"):
        clf.classify_batch(fbank, None, mode="missingvideoonly")
    with pytest.raises(ValueError, match=r"^unknown mode 'joint'"):
        clf.classify_batch(fbank, frames[None], mode="joint")
    # a model whose hparams allow no audio-only mode refuses audio alone, by file too
    monkeypatch.setattr(clf.hparams, "audio_only_mode", None)
    with pytest.raises(ValueError, match=r"^this model cannot classify audio alone: "
                                         r"audio_only_mode is null"):
        clf.classify_batch(fbank, None)
    with pytest.raises(ValueError, match=r"clip\.wav: this model cannot classify audio alone "
                                         r"\(the file has no video stream\): audio_only_mode"):
        clf.classify_file(env["wav"])
    # an explicit mode still works
    assert len(clf.rank_file(env["wav"], mode="missingaudioonly")) == 5


def test_cli_table(env, capsys):
    code = cavmae(["classify", env["video"], env["wav"], "--model", str(env["folder"]),
                   "--top_k", "2", "--savedir", str(env["root"] / "sd_cli")])
    assert code == 0
    out = capsys.readouterr().out
    blocks = out.strip().split("\n\n")
    assert len(blocks) == 2
    for block, path, mode in zip(blocks, (env["video"], env["wav"]),
                                 ("multimodal", "missingaudioonly")):
        lines = block.splitlines()
        # the head names the mode used (the model's, by the file's streams)
        assert lines[0] == f"{path}  [{mode}]" and lines[1].split() == ["rank", "score", "class"]
        assert len(lines) == 4 and lines[2].split()[0] == "1"
        assert lines[2].split(None, 2)[2].startswith("name ")


def test_cli_json_matches_classify_file_and_goes_on_after_a_bad_file(env, clf, tmp_path,
                                                                     capsys):
    """``cavmae classify --json``: parseable, the scores of ``classify_file``; a bad file in
    the middle is reported with its error, the others are classified, and the exit status
    is 1."""
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00")
    files = [env["video"], str(broken), env["wav"]]
    code = cavmae(["classify", *files, "--model", str(env["folder"]), "--top_k", "3", "--json",
                   "--savedir", str(env["root"] / "sd_json"), "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 1
    assert "1 of 3 files could not be classified" in captured.err
    results = json.loads(captured.out)
    assert [r["file"] for r in results] == files
    assert str(broken) in results[1]["error"] and "predictions" not in results[1]
    for result, path in ((results[0], env["video"]), (results[2], env["wav"])):
        want = clf.rank_file(path, top_k=3)
        assert [p["label"] for p in result["predictions"]] == [p.label for p in want]
        assert [p["index"] for p in result["predictions"]] == [p.index for p in want]
        np.testing.assert_allclose([p["score"] for p in result["predictions"]],
                                   [p.score for p in want], rtol=1e-6)
        # the best class is classify_file's (EncoderClassifier's convention: log scores)
        _, score, index, text_lab = clf.classify_file(path)
        top = result["predictions"][0]
        assert (top["index"], top["label"]) == (int(index[0]), text_lab[0])
        np.testing.assert_allclose(np.log(top["score"]), float(score[0]), rtol=1e-5)
    # a mistyped model folder: one line, exit 1, no hub download attempt
    assert cavmae(["classify", env["wav"], "--model", str(tmp_path / "no_such_model")]) == 1
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "no such model folder" in err


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/samples not available")
def test_real_clips_deterministic(clf):
    assert Path(SHARED_SAMPLES) == SHARED
    for name in REAL_CLIPS:
        path = str(SHARED / name)
        first = clf.rank_file(path, top_k=5)
        second = clf.rank_file(path, top_k=5)
        assert len(first) == 5 and first == second
        assert all(0.0 <= p.score <= 1.0 for p in first)


@pytest.fixture
def no_network(monkeypatch):
    """Every way out of the process fails loudly and is recorded: sockets (connect, name
    resolution) and the hub downloads SpeechBrain and huggingface_hub would make."""
    import socket

    import huggingface_hub
    import speechbrain.utils.fetching as fetching

    calls = []

    def refuse(name):
        def call(*args, **kwargs):
            calls.append(name)
            raise OSError(f"network blocked in this test: {name}")
        return call

    for obj, attr in [(socket.socket, "connect"), (socket.socket, "connect_ex"),
                      (socket, "create_connection"), (socket, "getaddrinfo"),
                      (huggingface_hub, "hf_hub_download"),
                      (huggingface_hub, "snapshot_download"),
                      (fetching, "download_file_hf"), (fetching, "download_file")]:
        monkeypatch.setattr(obj, attr, refuse(f"{getattr(obj, '__name__', obj)}.{attr}"))
    return calls


def test_a_pth_classifies_locally_with_the_network_blocked(env, clf, tmp_path, no_network,
                                                           capsys):
    """``cavmae classify --model X.pth`` (an original CAV-MAE .pth, and a recipe's
    ``finetuned.pth`` under this package's names) and ``from_hparams(source=X.pth)`` load
    the file locally, with no network call attempted, and score as the converted folder."""
    ours = tmp_path / "runs" / "ft" / "finetuned.pth"
    ours.parent.mkdir(parents=True)
    torch.save(load_original_checkpoint(str(env["ckpt"]), num_heads=4).state_dict(), ours)
    want = [p.score for p in clf.rank_file(env["wav"], top_k=5)]
    for pth in (env["ckpt"], ours):
        model = AudioVisualClassifier.from_hparams(source=str(pth), num_heads=4)
        got = model.rank_file(env["wav"], top_k=5)
        assert [p.label for p in got][0].startswith("class_")
        np.testing.assert_allclose([p.score for p in got], want, atol=1e-6)
        assert cavmae(["classify", env["wav"], "--model", str(pth), "--num_heads", "4",
                       "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        np.testing.assert_allclose([p["score"] for p in result[0]["predictions"]], want,
                                   atol=1e-6)
    # a local folder too, and ``cavmae embed --model X.pth``
    AudioVisualClassifier.from_hparams(source=str(env["folder"]), savedir=str(tmp_path / "s"))
    manifest = tmp_path / "clips.json"
    manifest.write_text(json.dumps({"data": [{"video_id": "clip", "wav": env["video"],
                                              "video": env["video"], "labels": ""}]}))
    assert cavmae(["embed", "--model", str(ours), "--num_heads", "4", "--manifest",
                                  str(manifest), "--output", str(tmp_path / "emb")]) == 0
    assert (tmp_path / "emb" / "clip.audio.npy").is_file()
    assert no_network == []
# ------------------------------------------- one audio pass per clip, frames as a batch
class CallCounter:
    """Forward hooks counting the calls of a module and the batch size of each."""

    def __init__(self, module):
        self.batches = []
        self.handle = module.register_forward_hook(
            lambda mod, args, out: self.batches.append(out.shape[0]))


@pytest.mark.parametrize("mode", ["multimodal", "audioonly", "videoonly", "missingaudioonly",
                                  "missingvideoonly"])
def test_scores_batch_encodes_audio_once_and_frames_as_one_batch(clf, env, mode):
    """``scores_batch`` gives the scores of running the model frame by frame (computed
    here from the model itself), with the audio branch run once per clip (the audio-only
    modes: no frames; the visual-only modes: no audio pass at all) and the clip's frames
    through the visual branch as one batch."""
    fbank, frames = clf.load_clip(env["video"])
    fbank, frames = fbank[None].repeat(2, 1, 1), frames[None].repeat(2, 1, 1, 1, 1)
    frames[1] = frames[1].flip(0)  # two clips with different frames
    model, uses = clf.mods.model, get_mode(mode)
    with torch.no_grad():
        audio = fbank if uses.audio else None
        if uses.visual:
            per_frame = torch.stack([torch.softmax(model(audio, frames[:, k], mode=mode), -1)
                                     for k in range(10)], 1).mean(1)
        else:
            per_frame = torch.softmax(model(audio, None, mode=mode), -1)
    enc = model.encoder
    calls_a, calls_v = CallCounter(enc.patch_embed_a), CallCounter(enc.patch_embed_v)
    branch_a = CallCounter(enc.blocks_a[0])
    steps = []
    try:
        scores = clf.scores_batch(fbank, frames, mode=mode, on_step=steps.append)
        log_scores = clf.scores_batch(fbank, frames, mode=mode, log=True)
    finally:
        for counter in (calls_a, calls_v, branch_a):
            counter.handle.remove()
    torch.testing.assert_close(scores, per_frame, atol=1e-6, rtol=0)
    torch.testing.assert_close(log_scores.exp(), per_frame, atol=1e-6, rtol=0)
    assert calls_a.batches == ([2, 2] if uses.audio else [])  # once per call, both clips
    assert branch_a.batches == calls_a.batches
    assert calls_v.batches == ([20, 20] if uses.visual else [])  # 2 clips x 10 frames
    assert steps == list(clf.steps(mode)[1:])


def test_file_report_steps_and_progress_bar(env, capsys, monkeypatch, tmp_path):
    """The progress bar counts the steps of each file (read, audio, frames, join: what
    takes the time), so that a single video moves through 4 steps instead of sitting at
    0/1; a bad file counts its planned steps when it fails."""
    from speechbrain_cavmae.tools import common

    bars = []

    class Bar:
        def __init__(self, iterable, args, total=None, **kwargs):
            self.total, self.n, self.seen = total, 0, []
            bars.append(self)

        def update(self, n=1):
            self.n += n
            self.seen.append(self.n)

        def clear(self):
            pass

        def close(self):
            pass

    monkeypatch.setattr(common, "progress", Bar)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    files = [env["video"], env["wav"], env["silent"], str(broken)]
    code = cavmae(["classify", *files, "--model", str(env["folder"]), "--json",
                          "--savedir", str(env["root"] / "sd_progress")])
    capsys.readouterr()
    assert code == 1
    (bar,) = bars
    assert bar.total == 4 + 3 + 3 + 1  # read+audio+frames+join, read+audio+join, ...
    assert bar.seen == list(range(1, 12))  # one step at a time, to the end
    clf = AudioVisualClassifier.from_hparams(source=str(env["folder"]),
                                             savedir=str(env["root"] / "sd_steps"))
    for path, want in ((env["video"], ["read", "audio", "frames", "join"]),
                       (env["wav"], ["read", "audio", "join"]),
                       (env["silent"], ["read", "frames", "join"])):
        steps = []
        report = clf.file_report(path, top_k=2, on_step=steps.append)
        assert steps == want == list(clf.steps(report["mode"]))


def test_cli_json_says_the_mode_used_and_what_was_cut_or_padded(env, capsys, tmp_path):
    """``--json`` gives the mode each file ran in (not the ``--mode`` flag echoed) and what
    of the file the model saw: audio cut or padded to the model's window (128 fbank frames
    = 1.28 s here), the video's length and the times of its frames (first 10 s)."""
    from speechbrain_cavmae.cli import main as cavmae

    short = write_wav(str(tmp_path / "short.wav"), tone(440.0, 0.5, 16000))
    long_video = write_video(str(tmp_path / "long.mp4"), n_frames=60, fps=5, size=(80, 64),
                             audio_freqs=(330.0,), colours=colour)  # 12 s
    files = [env["video"], env["wav"], env["silent"], short, long_video]
    code = cavmae(["classify", *files, "--model", str(env["folder"]), "--top_k", "2",
                   "--json", "--savedir", str(env["root"] / "sd_json_modes")])
    assert code == 0
    video, wav, silent, short_r, long_r = json.loads(capsys.readouterr().out)
    assert [r["mode"] for r in (video, wav, silent, short_r, long_r)] == [
        "multimodal", "missingaudioonly", "missingvideoonly", "missingaudioonly", "multimodal"]
    # a 3-s video: its audio cut to the 1.28-s window, 10 frames over its 3 s
    assert video["frames"] == 10 and video["audio_seconds"] == pytest.approx(3.0, abs=0.05)
    assert (video["audio_seconds_used"], video["audio_cut"], video["audio_padded"]) == (
        1.28, True, False)
    assert video["video_seconds"] == 3.0 and video["frames_cut"] is False
    assert len(video["frame_seconds"]) == 10 and max(video["frame_seconds"]) < 3.0
    assert wav["frames"] is None and wav["video_seconds"] is None
    assert (wav["audio_seconds"], wav["audio_seconds_used"], wav["audio_cut"]) == (2.0, 1.28, True)
    assert silent["frames"] == 10 and silent["audio_seconds"] is None
    assert silent["audio_cut"] is None and silent["frames_cut"] is False
    assert (short_r["audio_seconds"], short_r["audio_seconds_used"]) == (0.5, 0.5)
    assert (short_r["audio_cut"], short_r["audio_padded"]) == (False, True)
    # a 12-s video: frames from its first 10 s only
    assert long_r["video_seconds"] == 12.0 and long_r["frames_cut"] is True
    assert max(long_r["frame_seconds"]) < 10.0
    # --mode: the mode forced, and only what it reads
    code = cavmae(["classify", env["video"], "--model", str(env["folder"]), "--json",
                   "--mode", "missingaudioonly", "--savedir", str(env["root"] / "sd_json_m")])
    (forced,) = json.loads(capsys.readouterr().out)
    assert code == 0 and forced["mode"] == "missingaudioonly" and forced["frames"] is None
    assert forced["video_seconds"] is None and forced["audio_cut"] is True
