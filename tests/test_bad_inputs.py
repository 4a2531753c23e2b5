"""Bad-input matrix: every generated bad file, manifest and checkpoint has one outcome.

Each case of :data:`CASES` builds (or picks, from the module's ``env``) one bad input and
asserts what a careful user expects of it: a named error (its type, and a message naming
the file and the problem), a counted skip under ``on_bad_sample: skip``, or a correct
result. Everything is in-process with tiny models (embed 32, one block each, 4 heads, 32 px,
32 fbank frames); the faults that need a training run (an epoch whose every sample is
skipped, non-finite losses, a truncated ``history.json``) share the recipe runs of
:func:`test_recipe_faults`. One two-process DDP run (the only subprocess) checks that a
process whose every training sample is skipped stops both processes with the same error.
"""

import contextlib
import io
import json
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from media import tone, write_frames, write_label_csv, write_original_manifest, write_video
from folder_readers import every_reader
from media import write_wav
from processes import REPO, import_script, run_ranks
from recipe_cli import DECODER, ENCODER, HP

from speechbrain_cavmae import CAVMAE, CAVMAEClassifier, cli
from speechbrain_cavmae.checkpoints import NonFiniteWeightError, NotAModelError, load
from speechbrain_cavmae.checkpoints.model_folder import write_model_folder
from speechbrain_cavmae.checkpoints.original import CheckpointMismatchError
from speechbrain_cavmae.checkpoints.trust import UntrustedCodeError
from speechbrain_cavmae.data.dataset import BadSampleCounter, SkippedSample, build_dataset
from speechbrain_cavmae.data.errors import BadSampleError, ManifestError
from speechbrain_cavmae.data.manifest import LabelTable, read_manifest
from speechbrain_cavmae.inference import AudioVisualClassifier
from speechbrain_cavmae.settings import SettingError
from speechbrain_cavmae.tools import convert, extract, validate
from speechbrain_cavmae.training.guard import EmptyEpochError, NonFiniteLossError
from speechbrain_cavmae.training import recipe

AUDIOSET_RECIPE = import_script(REPO / "recipes" / "AudioSet" / "train.py")

MIDS = ["/m/a", "/m/b", "/m/c", "/m/d"]
ARCH = dict(img_size=32, audio_length=32, embed_dim=32, modality_specific_depth=1,
            shared_depth=1, num_heads=4)
DEC = dict(decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=4)
CONFIG = {"audio_length": 32, "image_size": 32, "n_frames": 10}


# ----------------------------------------------------------------------------- media
def truncated_copy(src, dst, keep):
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[:keep] if isinstance(keep, int) else data[:int(len(data) * keep)])
    return str(dst)


def faststart_cut_in_audio(src, dst):
    """``src`` remuxed with its index first (``movflags=faststart``), cut at the start of its
    middle audio packet: it opens and decodes cleanly but its audio track ends early."""
    import av

    full = str(dst) + ".full.mp4"
    with av.open(str(src)) as inp, av.open(full, "w", options={"movflags": "faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    with av.open(full) as inp:
        positions = [p.pos for p in inp.demux(inp.streams.audio[0]) if p.pos is not None]
    truncated_copy(full, dst, positions[len(positions) // 2])
    os.remove(full)
    return str(dst)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Every bad file, manifest and checkpoint, built once."""
    d = tmp_path_factory.mktemp("bad_inputs")
    torch.manual_seed(0)
    frames = str(d / "frames")
    labels = write_label_csv(str(d / "labels.csv"), MIDS)
    files = {}

    def wav(name, data, rate=16000, subtype="PCM_16"):
        files[name] = write_wav(str(d / f"{name}.wav"), data, rate, subtype)
        return files[name]

    good = wav("good", tone(440, 2.0, 16000))
    wav("short", tone(440, 0.01, 16000))                          # 160 samples
    wav("nan", np.where(np.arange(16000) == 5, np.nan, tone(440, 1.0, 16000)), subtype="FLOAT")
    wav("inf", np.where(np.arange(16000) == 5, np.inf, tone(440, 1.0, 16000)), subtype="FLOAT")
    wav("empty_data", np.zeros(0, np.float32))
    files["truncated"] = truncated_copy(good, d / "truncated.wav", 44 + 2 * 12786)
    files["header_only"] = truncated_copy(good, d / "header_only.wav", 44)
    (d / "zero.wav").write_bytes(b"")
    files["zero"] = str(d / "zero.wav")
    (d / "random.wav").write_bytes(np.random.default_rng(0).bytes(3000))
    files["random"] = str(d / "random.wav")
    (d / "text.wav").write_text("this is not audio\n" * 20)
    files["text_wav"] = str(d / "text.wav")
    import soundfile

    soundfile.write(str(d / "good.flac"), tone(440, 2.0, 16000), 16000)
    files["flac_truncated"] = truncated_copy(d / "good.flac", d / "truncated.flac", 0.4)
    files["missing"] = str(d / "missing.wav")

    video = write_video(str(d / "good.mp4"), n_frames=20, fps=10, size=(48, 32))
    files["good_mp4"] = video
    files["mp4_truncated"] = truncated_copy(video, d / "truncated.mp4", 0.5)
    garbled = bytearray(Path(video).read_bytes())
    garbled[:256] = np.random.default_rng(1).bytes(256)
    (d / "garbled.mp4").write_bytes(bytes(garbled))
    files["mp4_garbled"] = str(d / "garbled.mp4")
    files["mp4_short_audio"] = faststart_cut_in_audio(video, d / "short_audio.mp4")
    files["mp4_no_audio"] = write_video(str(d / "silent.mp4"), n_frames=20, fps=10,
                                        size=(48, 32), audio_freqs=())
    (d / "text.mp4").write_text("not a video\n" * 50)
    files["mp4_text"] = str(d / "text.mp4")

    for vid in ("ok", "text_jpg", "zero_jpg", "truncated_jpg", "missing_jpg"):
        write_frames(frames, vid, n=10, size=32)
    (d / "frames" / "frame_5" / "text_jpg.jpg").write_text("not an image")
    (d / "frames" / "frame_5" / "zero_jpg.jpg").write_bytes(b"")
    jpg = d / "frames" / "frame_5" / "truncated_jpg.jpg"
    jpg.write_bytes(jpg.read_bytes()[:200])
    (d / "frames" / "frame_5" / "missing_jpg.jpg").unlink()

    # models: a classifier and a pretraining model, their folders and state dicts
    clf, pre = CAVMAEClassifier(4, **ARCH).eval(), CAVMAE(**ARCH, **DEC).eval()
    write_model_folder(clf, str(d / "clf"), label_csv=labels, loss="BCE")
    write_model_folder(pre, str(d / "pre"))
    torch.save(clf.state_dict(), d / "clf.pth")
    torch.save(pre.state_dict(), d / "pre.pth")
    deep = CAVMAE(**dict(ARCH, modality_specific_depth=3), **DEC)
    torch.save(deep.state_dict(), d / "deep.pth")
    return {"dir": d, "files": files, "labels": labels, "frames": frames, "clf": clf,
            "pre": pre}


# ---------------------------------------------------------------------------- checks
def entry(vid="ok", wav=None, **extra):
    item = {"video_id": vid, "labels": "/m/a", **extra}
    if wav is not None:
        item["wav"] = wav
    return item


def manifest(env, name, entries):
    return write_original_manifest(str(env["dir"] / f"{name}.json"), entries)


def expect_bad_sample(env, name, item, path, reason, config=None):
    """With ``on_bad_sample: raise`` a BadSampleError naming ``path`` and ``reason``; with
    ``skip`` the sample is dropped and counted once."""
    path = str(path)
    if "video_path" not in item and "video" not in item and item.get("wav", "").endswith(".wav"):
        item = dict(item, video_path=env["frames"])
    m = manifest(env, name, [item])
    cfg = dict(CONFIG, **(config or {}))
    data = build_dataset(m, env["labels"], dict(cfg, on_bad_sample="raise"), train=False)
    with pytest.raises(BadSampleError) as info:
        data[0]
    assert info.value.path == path, str(info.value)
    assert re.search(reason, info.value.reason), str(info.value)
    assert path in str(info.value)
    counter = BadSampleCounter()
    data = build_dataset(m, env["labels"], dict(cfg, on_bad_sample="skip"), train=False,
                         counter=counter)
    sample = data[0]
    assert isinstance(sample, SkippedSample) and sample.path == path
    assert counter.count == 1


def expect_error(kind, pattern, func, *args, **kwargs):
    with pytest.raises(kind, match=pattern) as info:
        func(*args, **kwargs)
    return info.value


def esc(path):
    return re.escape(str(path))


CASES = {}


def case(func):
    CASES[func.__name__] = func
    return func


# --------------------------------------------------------------------------- audio
def _audio_case(key, reason):
    def check(env):
        path = env["files"][key]
        expect_bad_sample(env, key, entry(wav=path), path, reason)
    check.__name__ = f"audio_{key}"
    return case(check)


for _key, _reason in [
    ("truncated", r"truncated audio: 12786 of the 32000 frames declared in its header"),
    ("header_only", r"truncated audio: 0 of the 32000 frames declared"),
    ("zero", r"cannot decode audio"),
    ("empty_data", r"audio is empty \(0 samples\)"),
    ("nan", r"NaN or infinite samples"),
    ("inf", r"NaN or infinite samples"),
    ("short", r"clip of 160 samples is shorter than one 25 ms frame"),
    ("random", r"cannot decode audio"),
    ("text_wav", r"cannot decode audio"),
    ("flac_truncated", r"cannot decode audio|truncated audio"),
    ("missing", r"file not found"),
    ("mp4_truncated", r"cannot open container"),
    ("mp4_garbled", r"cannot open container"),
    ("mp4_short_audio", r"truncated audio track: \d\.\d\d s decoded of the 2\.\d\d s"),
    ("mp4_no_audio", r"no audio track"),
    ("mp4_text", r"cannot open container"),
]:
    _audio_case(_key, _reason)


@case
def audio_good_wav_and_video_load(env):
    m = manifest(env, "good", [entry(wav=env["files"]["good"], video_path=env["frames"]),
                               entry("good", wav=env["files"]["good_mp4"],
                                     video=env["files"]["good_mp4"])])
    data = build_dataset(m, env["labels"], CONFIG, train=False)
    for i in range(2):
        sample = data[i]
        assert sample["fbank"].shape == (32, 128) and torch.isfinite(sample["fbank"]).all()
        assert sample["frame"].shape == (3, 32, 32)
        assert sample["labels"].tolist() == [1.0, 0.0, 0.0, 0.0]


# -------------------------------------------------------------------------- frames
def _frame_case(vid, reason):
    def check(env):
        path = os.path.join(env["frames"], "frame_5", f"{vid}.jpg")
        expect_bad_sample(env, vid, entry(vid, wav=env["files"]["good"]), path, reason)
    check.__name__ = f"frames_{vid}"
    return case(check)


for _vid, _reason in [("text_jpg", "cannot decode image"), ("zero_jpg", "cannot decode image"),
                      ("truncated_jpg", "cannot decode image"),
                      ("missing_jpg", "extracted frame 5 not found")]:
    _frame_case(_vid, _reason)


@case
def frames_missing_folder(env):
    folder = env["dir"] / "no_frames_here"
    path = folder / "frame_5" / "ok.jpg"
    expect_bad_sample(env, "nofolder", entry(wav=env["files"]["good"], video_path=str(folder)),
                      path, "extracted frame 5 not found", {"frame_source": "extracted"})


@case
def frames_no_source(env):
    m = env["dir"] / "nosource.json"
    expect_bad_sample(env, "nosource", entry(wav=env["files"]["good"], video_path=""), m,
                      r"no video file or extracted frames")


@case
def frames_dotdot_id(env):
    vid = "../ok"
    path = os.path.join(env["frames"], "frame_5", f"{vid}.jpg")
    expect_bad_sample(env, "dotdot", entry(vid, wav=env["files"]["good"]), path,
                      r"video_id '\.\./ok' points outside")


@case
def video_frames_of_a_truncated_video(env):
    path = env["files"]["mp4_truncated"]
    expect_bad_sample(env, "vtrunc", entry(wav=env["files"]["good"], video=path), path,
                      r"cannot decode video")


@case
def unknown_label(env):
    m = str(env["dir"] / "unknown_label.json")
    expect_bad_sample(env, "unknown_label", dict(entry(wav=env["files"]["good"]),
                                                 labels="/m/zz"),
                      m, r"label '/m/zz' not in label CSV")


# ------------------------------------------------------------------------ manifests
def _manifest_case(name, content, pattern, kind=ManifestError):
    def check(env):
        path = env["dir"] / f"{name}.json"
        path.write_text(content)
        expect_error(kind, esc(path) + ": " + pattern, build_dataset, str(path), env["labels"],
                     CONFIG)
    check.__name__ = f"manifest_{name}"
    return case(check)


for _name, _content, _pattern in [
    ("zero_bytes", "", r"empty manifest \(0 bytes\)"),
    ("malformed", '{"data": [{"video_id": "a",}]}', r"not valid JSON: .* \(line 1, column"),
    ("top_level_list", '[{"video_id": "a"}]', r"the top-level JSON value is a list"),
    ("no_entries", '{"data": []}', r"manifest has no entries"),
    ("no_video_id", '{"data": [{"wav": "a.wav"}]}', r"entry 0 has no 'video_id'"),
    ("entry_not_object", '{"data": ["a.wav"]}', r"entry 0 is a str, not an object"),
    ("sb_entry_not_object", '{"a": "a.wav"}', r"entry 'a' is a str, not an object"),
    ("misspelled_labels", '{"data": [{"video_id": "a", "wav": "a.wav", "lables": "/m/a"}]}',
     r"1 of 1 entries have no labels: entry 'a': no labels \(its fields: lables, video_id, "
     r"wav\); fine-tuning needs a non-empty 'labels' field"),
    ("empty_labels", '{"data": [{"video_id": "a", "wav": "a.wav", "labels": ""}]}',
     r"1 of 1 entries have no labels: entry 'a': no labels \(its fields: video_id, wav\)"),
]:
    _manifest_case(_name, _content, _pattern)


@case
def manifest_missing_file(env):
    path = env["dir"] / "nowhere.json"
    expect_error(FileNotFoundError, esc(path) + ": manifest not found", read_manifest, path)


@case
def manifest_csv_without_id(env):
    path = env["dir"] / "noid.csv"
    path.write_text("wav,labels\na.wav,/m/a\n")
    expect_error(ManifestError, esc(path) + ": CSV manifest needs an 'ID' column",
                 read_manifest, path)


@case
def manifest_duplicate_ids_are_renamed_and_reported(env):
    good = env["files"]["good"]
    m = manifest(env, "dups", [entry(wav=good, video_path=env["frames"]),
                               entry(wav=good, video_path=env["frames"])])
    assert list(read_manifest(m)) == ["ok", "ok#2"]
    problems = validate.validate(m, env["labels"], CONFIG)
    assert problems == [("ok#2", m, "duplicate id 'ok'")]


@case
def manifest_pretraining_needs_no_labels(env):
    m = manifest(env, "unlabelled", [dict(entry(wav=env["files"]["good"],
                                                video_path=env["frames"]), labels="")])
    assert build_dataset(m, None, CONFIG, train=True)[0]["fbank"].shape == (32, 128)
    with pytest.raises(ManifestError, match="no labels"):
        build_dataset(m, env["labels"], CONFIG, train=True)


@case
def label_csv_bad(env):
    path = env["dir"] / "bad_labels.csv"
    path.write_text("index,display_name\n0,a\n")
    expect_error(ValueError, esc(path) + r": label CSV lacks column\(s\) \['mid'\]",
                 LabelTable.from_csv, path)


# ------------------------------------------------------------------------- validate
@case
def validate_reports_bad_media_and_missing_labels(env):
    m = manifest(env, "to_validate", [
        entry(wav=env["files"]["good"], video_path=env["frames"]),
        entry("text_jpg", wav=env["files"]["truncated"], video_path=env["frames"]),
        {"video_id": "ok", "wav": env["files"]["good"], "video_path": env["frames"],
         "lables": "/m/a"},
    ])
    problems = validate.validate(m, env["labels"], CONFIG)
    reasons = {(p[0], p[1]): p[2] for p in problems}
    assert "truncated audio" in reasons[("text_jpg", env["files"]["truncated"])]
    assert "cannot decode image" in reasons[("text_jpg", os.path.join(
        env["frames"], "frame_5", "text_jpg.jpg"))]
    assert "lables" in reasons[("ok#2", m)]
    assert cli.main(["validate", "--manifest", m, "--label_csv", env["labels"],
                     "--n_frames", "10"]) == 1


@case
def validate_empty_manifest_exits_1(env):
    path = env["dir"] / "empty_for_validate.json"
    path.write_text('{"data": []}')
    assert cli.main(["validate", "--manifest", str(path)]) == 1
    with pytest.raises(ManifestError, match=esc(path) + ": manifest has no entries"):
        validate.validate(str(path))


# ---------------------------------------------------------------------- checkpoints
def _state(env, kind="clf"):
    return {k: v.clone() for k, v in env[kind].state_dict().items()}


def _saved(env, name, state):
    path = env["dir"] / name
    torch.save(state, path)
    return path


@case
def ckpt_truncated(env):
    path = truncated_copy(env["dir"] / "clf.pth", env["dir"] / "cut.pth", 0.5)
    expect_error(CheckpointMismatchError, esc(path) + ": cannot read the checkpoint",
                 load, path, num_heads=4)


@case
def ckpt_random_bytes(env):
    path = env["dir"] / "random.pth"
    path.write_bytes(np.random.default_rng(2).bytes(5000))
    expect_error(CheckpointMismatchError, esc(path) + ": cannot read the checkpoint",
                 load, path, num_heads=4)


@case
def ckpt_zero_bytes(env):
    path = env["dir"] / "zero.pth"
    path.write_bytes(b"")
    expect_error(CheckpointMismatchError, esc(path) + ": cannot read the checkpoint",
                 load, path, num_heads=4)


@case
def ckpt_foreign(env):
    path = _saved(env, "resnet.pth", {"conv1.weight": torch.zeros(4, 3, 3, 3),
                                      "fc.weight": torch.zeros(10, 4)})
    expect_error(CheckpointMismatchError, esc(path) + ": not a CAV-MAE state dict", load,
                 path, num_heads=4)


@case
def ckpt_not_a_dict(env):
    path = _saved(env, "list.pth", [torch.zeros(2)])
    expect_error(CheckpointMismatchError, esc(path), load, path, num_heads=4)


@case
def ckpt_value_not_a_tensor(env):
    state = _state(env)
    state["encoder.norm.weight"] = "oops"
    path = _saved(env, "str_value.pth", state)
    for reader in (lambda: load(path, num_heads=4).model,
                 lambda: load(path, into=CAVMAEClassifier(4, **ARCH)).report,
                 lambda: convert.convert(path, env["dir"] / "conv_str", num_heads=4)):
        expect_error(CheckpointMismatchError,
                     esc(path) + ": 'encoder.norm.weight' is a str, not a tensor", reader)


@case
def ckpt_nan_weights(env):
    state = _state(env)
    state["encoder.blocks_u.0.attn.qkv.weight"][0, 0] = float("nan")
    path = _saved(env, "nan.pth", state)
    pattern = esc(path) + r": tensor 'encoder.blocks_u.0.attn.qkv.weight' has 1 non-finite"
    expect_error(NonFiniteWeightError, pattern, load, path, num_heads=4)
    # convert's command line stops with the error (exit 1; the exception with --debug) and
    # writes nothing
    out = env["dir"] / "conv_nan"
    argv = ["convert", "--model", str(path), "--output", str(out), "--num_heads", "4"]
    assert cli.main(argv) == 1
    expect_error(NonFiniteWeightError, pattern, cli.main, [*argv, "--debug"])
    assert not (out / "model.ckpt").exists()


@case
def ckpt_inf_in_model_folder_classify(env):
    folder = env["dir"] / "clf_inf"
    shutil.copytree(env["dir"] / "clf", folder)
    state = torch.load(folder / "model.ckpt", weights_only=True)
    state["head.fc.bias"][1] = float("inf")
    torch.save(state, folder / "model.ckpt")
    expect_error(NonFiniteWeightError, r"model\.ckpt: tensor 'head.fc.bias'",
                 AudioVisualClassifier.from_hparams, source=str(folder),
                 savedir=str(env["dir"] / "sd_inf"))


@case
def folder_missing_key(env):
    folder = env["dir"] / "clf_missing"
    shutil.copytree(env["dir"] / "clf", folder)
    state = torch.load(folder / "model.ckpt", weights_only=True)
    del state["head.fc.weight"]
    torch.save(state, folder / "model.ckpt")
    pattern = r"missing keys \['head\.fc\.weight'\]"
    expect_error(CheckpointMismatchError, esc(folder) + ".*" + pattern, load, folder)
    expect_error(CheckpointMismatchError, pattern, AudioVisualClassifier.from_hparams,
                 source=str(folder), savedir=str(env["dir"] / "sd_missing"))


@case
def folder_extra_key(env):
    folder = env["dir"] / "clf_extra"
    shutil.copytree(env["dir"] / "clf", folder)
    state = torch.load(folder / "model.ckpt", weights_only=True)
    state["encoder.extra"] = torch.zeros(1)
    torch.save(state, folder / "model.ckpt")
    expect_error(CheckpointMismatchError, r"unexpected keys \['encoder\.extra'\]", load,
                 folder)


@case
def pretrained_path_deeper_checkpoint(env):
    model = CAVMAEClassifier(4, **ARCH)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    expect_error(CheckpointMismatchError,
                 esc(env["dir"] / "deep.pth") + r" does not fit the model: unexpected keys "
                 r"\['encoder\.blocks_a\.1\..*the checkpoint has 3 modality-specific blocks, "
                 r"the model 1", load, env["dir"] / "deep.pth", into=model)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@case
def pretrained_path_shallower_checkpoint(env):
    model = CAVMAE(**dict(ARCH, modality_specific_depth=2), **DEC)
    expect_error(CheckpointMismatchError, r"missing keys \['encoder\.blocks_a\.1\..*the "
                 r"checkpoint has 1 modality-specific blocks, the model 2", load,
                 env["dir"] / "pre.pth", into=model)


@case
def pretrained_path_wider_model(env):
    model = CAVMAEClassifier(4, **dict(ARCH, embed_dim=64))
    expect_error(CheckpointMismatchError, r"shapes differ: encoder\.", load,
                 env["dir"] / "pre.pth", into=model)


@case
def pretrained_path_missing_decoder_key(env):
    state = _state(env, "pre")
    del state["decoder.blocks.0.mlp.fc1.weight"]
    path = _saved(env, "no_dec_key.pth", state)
    expect_error(CheckpointMismatchError, esc(path) + r" does not fit the model: missing keys "
                 r"\['decoder\.blocks\.0\.mlp\.fc1\.weight'\]", load, path,
                 into=CAVMAE(**ARCH, **DEC))


@case
def pretrained_path_missing_head_key(env):
    state = _state(env)
    del state["head.fc.bias"]
    path = _saved(env, "no_head_key.pth", state)
    expect_error(CheckpointMismatchError, r"missing keys \['head\.fc\.bias'\]", load, path,
                 into=CAVMAEClassifier(4, **ARCH))


@case
def pretrained_path_documented_partial_loads(env):
    """Decoder absent from a fine-tuned checkpoint; head absent or for other classes."""
    pre = CAVMAE(**ARCH, **DEC)
    info = load(env["dir"] / "clf.pth", into=pre).report
    assert {k.split(".")[0] for k in info["missing"]} == {"decoder"}
    for name, value in env["clf"].state_dict().items():
        if name.startswith("encoder."):
            assert torch.equal(pre.state_dict()[name], value), name
    clf = CAVMAEClassifier(7, **ARCH)
    info = load(env["dir"] / "clf.pth", into=clf).report
    assert {k.split(".")[0] for k in info["missing"]} == {"head"}
    info = load(env["dir"] / "pre", into=CAVMAEClassifier(4, **ARCH)).report
    assert {k.split(".")[0] for k in info["ignored"]} == {"decoder"}


@case
def heads_that_do_not_divide(env):
    expect_error(ValueError, esc(env["dir"] / "clf.pth") + r": num_heads=5 does not divide",
                 load, env["dir"] / "clf.pth", num_heads=5)


@case
def imagenet_weights_are_not_a_model(env):
    state = {"patch_embed.proj.weight": torch.zeros(32, 3, 16, 16),
             "blocks.0.attn.qkv.weight": torch.zeros(96, 32)}
    path = _saved(env, "mae.pth", state)
    expect_error(CheckpointMismatchError, esc(path) + ": ImageNet MAE weights do not describe",
                 load, path)


@case
def checkpoint_folder_without_weights(env):
    folder = env["dir"] / "CKPT+empty"
    folder.mkdir(exist_ok=True)
    expect_error(NotAModelError, esc(folder) + ": not a model: a folder without model.ckpt",
                 load, folder)


# --------------------------------------------------------------- model folder code
def _folder_with_yaml_line(env, name, line):
    folder = env["dir"] / name
    shutil.copytree(env["dir"] / "clf", folder)
    with open(folder / "hyperparams.yaml", "a", encoding="utf8") as handle:
        handle.write(line + "\n")
    return folder


@case
def folder_yaml_that_runs_a_command(env):
    marker = env["dir"] / "marker_os"
    folder = _folder_with_yaml_line(env, "evil_os", f"evil: !apply:os.makedirs [{marker}]")
    pattern = r"hyperparams\.yaml: line \d+: !apply:os\.makedirs is not allowed"
    for reader in (lambda: AudioVisualClassifier.from_hparams(
                     source=str(folder), savedir=str(env["dir"] / "sd_evil")),
                 lambda: load(folder).model,
                 lambda: load(folder, into=CAVMAEClassifier(4, **ARCH)).report,
                 lambda: load(folder, part="encoder").model):
        expect_error(UntrustedCodeError, pattern, reader)
        assert not marker.exists()
    # the explicit opt-in builds it
    clf = AudioVisualClassifier.from_hparams(source=str(folder), savedir=str(env["dir"] / "sdt"),
                                             trust_remote_code=True)
    assert marker.is_dir() and clf.is_classifier


@case
def folder_yaml_python_tag_and_denied_torch_function(env):
    marker = env["dir"] / "marker_py"
    for name, line, pattern in [
        ("evil_py", f"evil: !!python/object/apply:os.makedirs [{marker}]",
         r"python/object/apply:os\.makedirs is not allowed .*Python object tags run code"),
        ("evil_hub", "evil: !name:torch.hub.load", r"!name:torch\.hub\.load is not allowed"),
        ("evil_alias", "evil: !name:torch.os.system",
         r"!name:torch\.os\.system is not allowed \(!name: is only allowed for the "),
    ]:
        folder = _folder_with_yaml_line(env, name, line)
        expect_error(UntrustedCodeError, pattern, load, folder)
    assert not marker.exists()


# ------------------------------------------------------------------------ inference
@pytest.fixture(scope="module")
def classifier(env):
    return AudioVisualClassifier.from_hparams(source=str(env["dir"] / "clf"),
                                              savedir=str(env["dir"] / "sd_clf"))


def _classify_case(key, reason):
    def check(env, classifier):
        path = env["files"][key]
        err = expect_error(BadSampleError, esc(path) + ": " + reason, classifier.classify_file,
                           path)
        assert err.path == path
    check.__name__ = f"classify_{key}"
    check.needs_classifier = True
    return case(check)


for _key, _reason in [("short", "clip of 160 samples is shorter than one 25 ms frame"),
                      ("truncated", "truncated audio"), ("missing", "file not found"),
                      ("mp4_text", "cannot open container"), ("nan", "audio contains NaN or infinite")]:
    _classify_case(_key, _reason)


@case
def classify_good_files(env, classifier):
    for key in ("good", "good_mp4"):
        preds = classifier.rank_file(env["files"][key], top_k=4)
        scores = [p.score for p in preds]
        assert len(preds) == 4 and all(0.0 <= s <= 1.0 for s in scores)
        assert scores == sorted(scores, reverse=True)


classify_good_files.needs_classifier = True


# -------------------------------------------------------------------------- extract
@case
def extract_same_file_name_in_two_folders(env):
    videos = env["dir"] / "same_name"
    for sub in ("a", "b"):
        (videos / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(env["files"]["good_mp4"], videos / sub / "clip.mp4")
    out = env["dir"] / "extracted"
    args = ["extract", "--videos", str(videos), "--output", str(out)]
    assert cli.main(args) == 1  # one line on stderr; the exception with --debug
    expect_error(ValueError, r"2 videos share the id 'clip': " + esc(videos / "a" / "clip.mp4")
                 + ", " + esc(videos / "b" / "clip.mp4"), cli.main, [*args, "--debug"])
    assert not out.exists()


# --- numbers and manifest encodings (issue 24)
@contextlib.contextmanager
def _logged(name):
    """The messages logged by logger ``name`` (and its children) inside the block."""
    messages = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: messages.append(record.getMessage())
    log = logging.getLogger(name)
    level, log.level = log.level, logging.DEBUG
    log.addHandler(handler)
    try:
        yield messages
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def _usage_error(main, argv, pattern):
    """``main(argv)`` ends as argparse's usage errors do (exit 2), ``pattern`` on stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2, err.getvalue()
    assert re.search(pattern, err.getvalue()), err.getvalue()


@case
def numbers_embed_fbank_stats(env):
    m = manifest(env, "embed_stats", [entry(wav=env["files"]["good"], video_path=env["frames"])])
    out = env["dir"] / "embed_stats_out"
    argv = ["embed", "--model", str(env["dir"] / "clf"), "--manifest", m, "--output", str(out)]
    for flag, value, rule in [("--dataset_std", "0", r"a finite number > 0 \(it divides"),
                              ("--dataset_std", "inf", r"a finite number > 0"),
                              ("--dataset_mean", "nan", r"a finite number, got nan")]:
        _usage_error(cli.main, [*argv, flag, value], f"error: {flag} must be {rule}")
        assert not out.exists()  # nothing read, nothing written


@case
def numbers_classify_negative_top_k(env):
    argv = ["classify", env["files"]["good"], "--model", str(env["dir"] / "clf")]
    for value in ("-2", "0"):
        _usage_error(cli.main, [*argv, "--top_k", value],
                     rf"error: --top_k must be an integer >= 1, got {value}")


def _recipe_argv(env, hparams, *extra):
    """A tiny recipe run whose training manifest does not exist: the checks must stop it
    before anything is read (else FileNotFoundError)."""
    task = ["--label_csv", env["labels"]] if "_ft" in hparams else DECODER
    return [str(HP / hparams), "--train_data", str(env["dir"] / "not_read.json"),
            "--valid_data", str(env["dir"] / "not_read.json"), *task, "--output_folder",
            str(env["dir"] / "numbers_run"), *ENCODER, *extra]


def _expect_setting_errors(env, cases):
    """Each ``(hparams, flag, value, pattern)`` stops the recipe with a ``SettingError``
    naming the flag before anything is built or written."""
    for hparams, flag, value, pattern in cases:
        with restored_logging():
            expect_error(SettingError, "^" + re.escape(flag) + " must be .*" + pattern,
                         AUDIOSET_RECIPE.main, _recipe_argv(env, hparams, flag, value))
        assert not (env["dir"] / "numbers_run").exists()  # nothing built or written


@case
def numbers_recipe_overrides(env):
    _expect_setting_errors(env, [
        ("cavmae.yaml", "--dataset_std", ".inf", r"got inf"),
        ("cavmae.yaml", "--dataset_std", "0", r"\(it divides the fbank\), got 0"),
        ("cavmae.yaml", "--dataset_mean", "nan", r"a finite number, got 'nan' \(a string\)"),
        ("cavmae.yaml", "--lr", "nan", r"a finite number >= 0, got 'nan' \(a string\)"),
        ("cavmae.yaml", "--masking_ratio", "1.5", r"a finite number in \[0, 1\), got 1\.5"),
        ("cavmae.yaml", "--patch_size", "nan", r"an integer >= 1, got 'nan'"),
        ("cavmae.yaml", "--shared_depth", "-1", r"an integer >= 0, got -1"),
        ("cavmae.yaml", "--max_grad_norm", "-1", r"reverses the gradients\), got -1"),
        ("cavmae_ft.yaml", "--head_lr", "inf", r"head_lr x lr\), got 'inf' \(a string\)"),
        ("cavmae_ft.yaml", "--batch_size", "-4", r"an integer >= 1, got -4"),
    ])


@case
def numbers_recipe_yaml_key(env):
    path = env["dir"] / "bad_std.yaml"
    path.write_text((HP / "cavmae.yaml").read_text().replace("dataset_std: 4.4849",
                                                              "dataset_std: 0.0"))
    argv = _recipe_argv(env, "cavmae.yaml")
    argv[0] = str(path)
    expect_error(SettingError, r"^dataset_std \(in " + esc(path) + r"\) must be a finite "
                 r"number > 0", AUDIOSET_RECIPE.main, argv)


@case
def numbers_recipe_zero_lr_warns_and_goes_on(env):
    for hparams, flag, message in [("cavmae.yaml", "--lr", "lr is 0: nothing will be learned"),
                                   ("cavmae_ft.yaml", "--head_lr",
                                    "head_lr is 0: the classification head will not be")]:
        with restored_logging(), _logged("speechbrain_cavmae.settings") as messages:
            expect_error(FileNotFoundError, r"not_read\.json: manifest not found",
                         AUDIOSET_RECIPE.main, _recipe_argv(env, hparams, flag, "0"))
        assert any(message in text for text in messages), messages
    shutil.rmtree(env["dir"] / "numbers_run")


def _bom_copy(path, name):
    target = Path(path).with_name(name)
    target.write_bytes(b"\xef\xbb\xbf" + Path(path).read_bytes())
    return target


@case
def manifest_byte_order_mark(env):
    frames, good = env["frames"], env["files"]["good"]
    original = Path(manifest(env, "nobom", [entry(wav=good, video_path=frames)]))
    sb_json = env["dir"] / "nobom_sb.json"
    sb_json.write_text(json.dumps({"ok": {"wav": good, "video_path": frames, "labels": "/m/a"}}))
    csv_path = env["dir"] / "nobom.csv"
    csv_path.write_text(f"ID,wav,video_path,labels\nok,{good},{frames},/m/a\n")
    for path in (original, sb_json, csv_path):
        bom = _bom_copy(path, "bom_" + path.name)
        assert read_manifest(bom) == read_manifest(path), path
        assert build_dataset(str(bom), env["labels"], CONFIG, train=False)[0]["labels"].sum() == 1
    table = LabelTable.from_csv(_bom_copy(env["labels"], "bom_labels.csv"))
    assert table.mids == MIDS


@case
def other_user_csvs_byte_order_mark(env):
    """AudioSet / VGGSound metadata, a video label CSV and a weight file read past a BOM."""
    from speechbrain_cavmae.data.prepare import read_audioset_segments, read_vggsound_csv
    from speechbrain_cavmae.tools.prepare_videos import read_video_labels
    from speechbrain_cavmae.training.recipe import read_weight_file

    d = env["dir"]
    for name, text, read in [
        ("segments.csv", '# YTID, start_seconds, end_seconds, positive_labels\n'
                         'abc, 30.000, 40.000, "/m/a,/m/b"\n', read_audioset_segments),
        ("vggsound.csv", "abc,30,dog barking,train\n", read_vggsound_csv),
        ("video_labels.csv", "clip1,/m/a\n", read_video_labels),
        ("weights.csv", "0.5\n1.5\n", lambda p: read_weight_file(p, 2).tolist()),
    ]:
        plain = d / f"nobom_{name}"
        plain.write_text(text, encoding="utf8")
        assert read(_bom_copy(plain, f"bom_{name}")) == read(plain), name


@case
def manifest_speechbrain_json_duplicate_key(env):
    path = env["dir"] / "sb_dups.json"
    good, frames = env["files"]["good"], env["frames"]
    path.write_text('{"ok": {"wav": "%s", "video_path": "%s", "labels": "/m/a"},\n'
                    ' "ok": {"wav": "%s", "video_path": "%s", "labels": "/m/b"}}'
                    % (good, frames, good, frames))
    with _logged("speechbrain_cavmae.data.manifest") as messages:
        data = read_manifest(path)
    assert list(data) == ["ok", "ok#2"]
    assert [data[k]["labels"] for k in data] == [["/m/a"], ["/m/b"]]  # the first one kept
    assert data["ok#2"]["video_id"] == "ok"  # its frames are frame_k/ok.jpg
    assert messages == [f"{path}: duplicate id 'ok' renamed 'ok#2'"]
    assert validate.validate(str(path), env["labels"], CONFIG) == [
        ("ok#2", str(path), "duplicate id 'ok'")]
# --- processes and files (issue 24)
class _InlinePool:
    """Stands for ``ProcessPoolExecutor``: records its size, runs the work in-process."""

    sizes = []

    def __init__(self, max_workers, mp_context=None, initializer=None, initargs=()):
        self.sizes.append(max_workers)
        self.initializer, self.initargs = initializer, initargs

    def __enter__(self):
        if self.initializer is not None:
            self.initializer(*self.initargs)
        return self

    def __exit__(self, *exc):
        return False

    def map(self, func, *iterables, chunksize=1):
        return map(func, *iterables)


@case
def validate_num_workers_above_the_cpus(env):
    """``validate --num_workers 64`` on 2 CPUs starts 2 workers, with one warning (before:
    64 processes of about 300 MB each)."""
    from speechbrain_cavmae.data import pool

    m = manifest(env, "workers", [entry(wav=env["files"]["good"], video_path=env["frames"])])
    _InlinePool.sizes = []
    with pytest.MonkeyPatch.context() as patch, _logged(pool.__name__) as messages:
        patch.setattr(pool, "available_cpus", lambda: 2, raising=False)
        patch.setattr(pool, "ProcessPoolExecutor", _InlinePool)
        patch.setattr(pool, "_WARNED", set(), raising=False)
        patch.setattr(pool, "exit_with_parent", lambda pid: None, raising=False)  # in-process
        assert cli.main(["validate", "--manifest", m, "--num_workers", "64",
                         "--no_progress"]) == 0
    assert _InlinePool.sizes == [2]
    assert messages == ["--num_workers 64 is more than the 2 CPU(s) available to this "
                        "process: using 2 worker processes"], messages


@case
def output_folder_in_use_by_a_live_run(env):
    """A recipe run on an output folder whose lock names a live process of this host is
    refused before it writes anything (before: the two runs raced, one resumed the other's
    checkpoint under its own seed)."""
    import socket

    from speechbrain_cavmae.training.lock import LOCK_NAME, OutputFolderLocked

    out = env["dir"] / "locked_run"
    out.mkdir()
    live = os.getppid()  # the process that started this test: alive
    lock = {"host": socket.gethostname(), "pid": live, "created": 0}
    (out / LOCK_NAME).write_text(json.dumps(lock))
    args = [str(HP / "cavmae.yaml"), "--train_data", str(env["dir"] / "never_read.json"),
            "--output_folder", str(out), *ENCODER, *DECODER, "--seed", "7"]
    expect_error(OutputFolderLocked, rf"{esc(out)} is in use by process {live} on host "
                 rf"{esc(socket.gethostname())} .*\(lock file {esc(out / LOCK_NAME)}\)",
                 AUDIOSET_RECIPE.main, args)
    # nothing written but the (empty) checkpoint folder that building the yaml makes
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [LOCK_NAME, "save"]
    assert json.loads((out / LOCK_NAME).read_text()) == lock


def _checkpointer(folder):
    from speechbrain_cavmae.training.state import AtomicCheckpointer

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return AtomicCheckpointer(str(folder), recoverables={"model": model,
                                                         "optimizer": optimizer})


class _RunsCode:
    def __reduce__(self):
        return (print, ("this pickle ran code",))


@case
def checkpoint_with_a_pickle_in_optimizer_ckpt(env):
    """A pickle in a checkpoint's ``optimizer.ckpt``: resuming stops with one line naming
    the file (before: an ``UnpicklingError`` traceback without it), and runs nothing."""
    from speechbrain_cavmae.training.ckpt_files import CheckpointFileError

    folder = env["dir"] / "pickled_ckpt"
    ckpt = _checkpointer(folder).save_checkpoint()
    bad = ckpt.path / "optimizer.ckpt"
    torch.save({"state": _RunsCode()}, bad)
    err = expect_error(CheckpointFileError, rf"^cannot read the checkpoint file {esc(bad)}: "
                       r"UnpicklingError: .*remove this checkpoint folder",
                       _checkpointer(folder).recover_if_possible)
    assert "\n" not in str(err) and err.path == str(bad)


@case
def checkpoint_save_on_a_full_disk(env):
    """A full disk while a checkpoint is saved: one line naming the file and the cause,
    whether the writer keeps the errno or not (torch's ``basic_ios::clear: iostream
    error``); the unfinished checkpoint is removed, the previous one stays."""
    import errno

    from speechbrain_cavmae.training.ckpt_files import CheckpointFileError

    folder = env["dir"] / "full_disk_ckpt"
    checkpointer = _checkpointer(folder)
    first = checkpointer.save_checkpoint()
    real_save = torch.save

    def full(message):
        def save(obj, path, *args, **kwargs):
            if str(path).endswith("optimizer.ckpt"):
                raise message
            return real_save(obj, path, *args, **kwargs)
        return save

    for raised, free in ((OSError(errno.ENOSPC, "No space left on device"), None),
                         (RuntimeError("basic_ios::clear: iostream error"), 0)):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(torch, "save", full(raised))
            if free is not None:
                patch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(
                    10 ** 9, 10 ** 9, free))
            err = expect_error(CheckpointFileError, r"^cannot write the checkpoint file "
                               + esc(folder) + r"/CKPT\+[^/]+/optimizer\.ckpt: No space left "
                               r"on device( \(0 bytes free\))?$", checkpointer.save_checkpoint)
        assert not Path(err.path).parent.exists()
        assert [c.path for c in checkpointer.list_checkpoints()] == [first.path]


@case
def history_json_on_a_full_disk(env):
    """``history.json`` (any atomic write) on a full disk: an ``OSError`` naming the file
    and the cause; the previous file is intact."""
    import errno

    from speechbrain_cavmae.data import files

    path = env["dir"] / "history.json"
    files.atomic_write_json(path, [{"epoch": 1}])

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(files.os, "fsync", full)
        expect_error(OSError, r"^\[Errno 28\] No space left on device: '" + esc(path) + "'$",
                     files.atomic_write_json, path, [{"epoch": 2}])
    assert json.loads(path.read_text()) == [{"epoch": 1}]
    assert [p.name for p in env["dir"].glob(".history.json*")] == []
# --- fine-tuning from a model folder (issue 24)
def _recipe_usage_error(env, argv, pattern):
    """``recipes/AudioSet/train.py ARGV`` stops with a UsageError matching ``pattern``, and
    run as a script with one line on stderr and exit status 2."""
    import runpy
    import sys

    base = ["--output_folder", str(env["dir"] / "usage_run"), "--label_csv", env["labels"]]
    expect_error(recipe.UsageError, pattern, AUDIOSET_RECIPE.main, [*argv, *base])
    script = str(REPO / "recipes" / "AudioSet" / "train.py")
    saved, err = sys.argv, io.StringIO()
    sys.argv = [script, *argv, *base]
    try:
        with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as info:
            runpy.run_path(script, run_name="__main__")
    finally:
        sys.argv = saved
    assert info.value.code == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and re.search(pattern, lines[0]), lines


@case
def recipe_size_flag_disagrees_with_pretrained_folder(env):
    folder = env["dir"] / "pre"  # num_heads 4
    _recipe_usage_error(
        env, [str(HP / "cavmae_ft.yaml"), "--pretrained_path", str(folder), "--num_heads", "2"],
        r"--num_heads 2 disagrees with the model folder " + esc(folder)
        + r" \(--pretrained_path\), which records num_heads 4: drop --num_heads")


@case
def recipe_unknown_override(env):
    _recipe_usage_error(
        env, [str(HP / "cavmae_ft.yaml"), "--decoder_embd_dim", "32"],
        r"--decoder_embd_dim: .*cavmae_ft.yaml has no key 'decoder_embd_dim' "
        r"\(did you mean --decoder_embed_dim")


@case
def recipe_time_mask_wider_than_input(env):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log = logging.getLogger("speechbrain_cavmae.training.recipe")
    log.addHandler(handler)
    try:
        recipe.check_hparams({"task": "pretrain", "timem": 192, "audio_length": 128,
                              "freqm": 48, "n_mels": 128})
    finally:
        log.removeHandler(handler)
    said = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(said) == 1 and said[0].startswith(
        "timem 192 is not narrower than audio_length 128: a SpecAugment mask can hide the "
        "whole input; pass --timem 25 or less"), said


@case
def inpaint_model_without_norm_pix_record(env):
    from speechbrain_cavmae.tools.inpaint import resolve_norm_pix

    for source in (env["dir"] / "pre", env["dir"] / "pre.pth"):  # converted-like, bare
        expect_error(ValueError, esc(source) + r": does not record whether the model was "
                     r"trained with the norm-pix loss .*pass --norm_pix .* or --no_norm_pix",
                     resolve_norm_pix, str(source))
        assert resolve_norm_pix(str(source), False) is False
    folder = env["dir"] / "pre_normpix"
    write_model_folder(env["pre"], str(folder), norm_pix_loss=True)
    assert resolve_norm_pix(str(folder)) is True
    expect_error(ValueError, r"--no_norm_pix disagrees with " + esc(folder)
                 + r", which records norm_pix_loss: True", resolve_norm_pix, str(folder), False)


@case
def convert_weights_without_recorded_statistics(env):
    expect_error(ValueError, esc(env["dir"] / "pre.pth") + r": no model folder records the "
                 r"fbank statistics .*pass --dataset_mean and pass --dataset_std",
                 convert.convert, str(env["dir"] / "pre.pth"), env["dir"] / "conv_nostats",
                 num_heads=4, decoder_num_heads=4)
    assert not (env["dir"] / "conv_nostats").exists()
# --- media as players show them (issue 24)
def _red_corner(size=(64, 48)):
    """A black picture whose top-left quadrant is red."""
    width, height = size
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[: height // 2, : width // 2] = (255, 0, 0)
    return img


@case
def media_video_rotated_by_its_header(env):
    """A video whose display matrix rotates it by -90 degrees (a phone's portrait video) is
    read as players show it: in a dataset item and in ``cavmae extract``'s frames."""
    from PIL import Image

    video = write_video(str(env["dir"] / "rotated.mp4"), n_frames=20, fps=10, size=(64, 48),
                        rotation=-90, picture=lambda k: _red_corner())
    shown = np.ascontiguousarray(np.rot90(_red_corner(), -1))  # 90 degrees clockwise
    m = manifest(env, "rotated", [entry("rotated", wav=video, video=video)])
    data = build_dataset(m, env["labels"], CONFIG, train=False)
    frame = data[0]["frame"]
    expected = data.loader.video_transform(shown)
    assert (frame - expected).abs().mean() < 0.1
    assert (frame - data.loader.video_transform(_red_corner())).abs().mean() > 0.5
    out = env["dir"] / "rotated_extract"
    assert extract.extract_one(video, str(out), n_frames=10, size=32)[1] == "done"
    saved = np.asarray(Image.open(out / "frames" / "frame_0" / "rotated.jpg"), np.int16)
    wanted = np.asarray(extract.original_frame_image(shown, 32), np.int16)
    assert np.abs(saved - wanted).mean() < 10


@case
def media_audio_track_starting_late(env):
    """An audio track that starts 1 s into the container: the sound is where the frames are
    (1 s of silence first) in a dataset item's fbank and in ``cavmae extract``'s wav."""
    import soundfile

    video = write_video(str(env["dir"] / "late_audio.mp4"), n_frames=30, fps=10,
                        size=(48, 32), audio_seconds=1.0, audio_start=1.0)
    m = manifest(env, "late_audio", [entry("late_audio", wav=video, video=video)])
    data = build_dataset(m, env["labels"], dict(CONFIG, audio_length=256), train=False)
    loudest = data[0]["fbank"].max(dim=1).values  # per 10 ms frame
    silence, sound = loudest[:95], loudest[105:195]
    assert silence.max() < sound.min() - 1.0, (silence.max(), sound.min())
    out = env["dir"] / "late_extract"
    assert extract.extract_one(video, str(out), n_frames=10, size=32)[1] == "done"
    wav, rate = soundfile.read(str(out / "audio" / "late_audio.wav"))
    onset = np.flatnonzero(np.abs(wav) > 0.1)[0] / rate
    assert abs(onset - 1.0) < 0.03, onset
# --- model folders are data (issue 24)
def _folder_with(env, name, line=None, replace=None):
    """A copy of the classifier folder with ``line`` appended to its yaml and the text
    pairs of ``replace`` substituted."""
    folder = env["dir"] / name
    shutil.copytree(env["dir"] / "clf", folder)
    path = folder / "hyperparams.yaml"
    text = path.read_text(encoding="utf8")
    for old, new in replace or ():
        assert old in text
        text = text.replace(old, new)
    path.write_text(text + (line + "\n" if line else ""), encoding="utf8")
    return folder


def _refused_by_every_reader(env, folder, pattern, markers=()):
    """Every reader refuses ``folder`` with the same message, and no marker appears."""
    messages = {}
    for name, read in every_reader(folder, env["dir"] / f"sd_{folder.name}", ARCH).items():
        with pytest.raises(UntrustedCodeError) as info:
            read()
        messages[name] = str(info.value)
        for marker in markers:
            assert not Path(marker).exists(), (name, marker)
    assert len(set(messages.values())) == 1, messages
    message = messages["load_model"]
    assert re.search(esc(folder / "hyperparams.yaml") + ": line \\d+: " + pattern, message), \
        message
    assert "trust_remote_code=True" in message
    return message


class _MakesMarker:
    """Unpickling it creates the folder ``path`` (stands for any code a pickle runs)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.makedirs, (self.path,)


@case
def folder_yaml_unpickles_a_file(env):
    import pickle

    marker = env["dir"] / "marker_pickle"
    for func in ("load_pickle", "load_pkl"):
        folder = _folder_with(env, f"evil_{func}",
                              f"stats: !apply:speechbrain.dataio.dataio.{func} "
                              "[!ref <pretrained_path>/stats.pkl]")
        (folder / "stats.pkl").write_bytes(pickle.dumps(_MakesMarker(marker)))
        _refused_by_every_reader(env, folder, f"!apply:speechbrain\\.dataio\\.dataio\\.{func} "
                                 r"is not allowed \(!apply: calls", [marker])


@case
def folder_yaml_loads_a_shared_library(env):
    folder = _folder_with(env, "evil_so",
                          "ext: !apply:torch.ops.load_library [!ref <pretrained_path>/ext.so]")
    (folder / "ext.so").write_bytes(b"\x7fELF not really")
    _refused_by_every_reader(env, folder, r"!apply:torch\.ops\.load_library is not allowed")


@case
def folder_yaml_writes_files(env):
    markers = [env["dir"] / f"written_{i}" for i in range(3)]
    for name, line in [
        ("save_pkl", f"w: !apply:speechbrain.dataio.dataio.save_pkl [1, {markers[0]}]"),
        ("write_audio", "w: !apply:speechbrain.dataio.dataio.write_audio "
                        f"[{markers[1]}.wav, !new:torch.zeros [16000], 16000]"),
        ("torch_save", f"w: !apply:speechbrain.utils.checkpoints.torch_save [1, {markers[2]}]"),
    ]:
        folder = _folder_with(env, f"evil_{name}", line)
        _refused_by_every_reader(env, folder, r"!apply:speechbrain\.\S+ is not allowed",
                                 [*markers, f"{markers[1]}.wav"])


@case
def folder_weights_outside_the_folder(env):
    outside = env["dir"] / "outside"
    outside.mkdir(exist_ok=True)
    shutil.copy(env["dir"] / "clf" / "model.ckpt", outside / "model.ckpt")
    folder = _folder_with(env, "evil_outside_weights", replace=[(
        "model: !ref <pretrained_path>/model.ckpt",
        "model: !ref <pretrained_path>/../outside/model.ckpt")])
    message = _refused_by_every_reader(env, folder, "paths: model: .* is not allowed")
    assert esc(outside / "model.ckpt").replace("\\", "") in message
    # a model.ckpt that is a link to a file outside is outside too
    linked = _folder_with(env, "evil_linked_weights")
    (linked / "model.ckpt").unlink()
    (linked / "model.ckpt").symlink_to(outside / "model.ckpt")
    _refused_by_every_reader(env, linked, "paths: model: .* is not allowed .*outside the folder")


@case
def folder_label_encoder_outside_the_folder(env):
    secret = env["dir"] / "secret.txt"
    secret.write_text("'root' => 0\n'daemon' => 1\n'bin' => 2\n'sys' => 3\n"
                      "================\n'starting_index' => 0\n")
    folder = _folder_with(env, "evil_labels", replace=[(
        "label_encoder: !ref <pretrained_path>/label_encoder.txt",
        "label_encoder: !ref <pretrained_path>/../secret.txt")])
    _refused_by_every_reader(env, folder, "paths: label_encoder: .* is not allowed")
    savedir = env["dir"] / f"sd_{folder.name}"
    assert not any(p.resolve() == secret.resolve() for p in savedir.rglob("*")), \
        "the outside file was linked into the savedir"


@case
def folder_yaml_tuple_runs_code(env):
    """A ``!tuple`` (or a plain ``(...)``) is parsed by HyperPyYAML with PyYAML's unsafe
    loader: a Python tag inside it ran code although the old allow-list saw no tag."""
    marker = env["dir"] / "marker_tuple"
    for name, line in [("evil_tuple", f"t: !tuple (!!python/object/apply:os.makedirs "
                                      f"[{marker}], 2)"),
                       ("evil_implicit_tuple", f"t: (!!python/object/apply:os.makedirs "
                                               f"[{marker}], 2)")]:
        folder = _folder_with(env, name, line)
        _refused_by_every_reader(env, folder, "tuple .* is not allowed", [marker])


@case
def folder_yaml_alias_expansion(env):
    """Nested YAML aliases (here 9^5 values; a few more levels exhaust the memory when
    HyperPyYAML expands them) are refused before anything is loaded."""
    lines = ["lol0: &lol0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 9) + "]" for i in range(1, 5)]
    folder = _folder_with(env, "evil_aliases", "\n".join(lines))
    _refused_by_every_reader(env, folder, r"\*alias is not allowed \(YAML aliases")


@case
def folder_savedir_used_before_for_another_folder(env):
    """A savedir that held another folder's links gave that folder's weights."""
    torch.manual_seed(5)
    other = env["dir"] / "clf_other"
    write_model_folder(CAVMAEClassifier(4, **ARCH).eval(), str(other), label_csv=env["labels"],
                       loss="BCE")
    savedir = str(env["dir"] / "sd_shared")
    AudioVisualClassifier.from_hparams(source=str(env["dir"] / "clf"), savedir=savedir)
    second = AudioVisualClassifier.from_hparams(source=str(other), savedir=savedir)
    want = torch.load(other / "model.ckpt", weights_only=True)
    got = second.mods.model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)


@case
def not_a_model(env):
    """A wav, a folder of something else or a missing path given as the model: a clear
    error naming it, from every entry point, with no hub request."""
    wav, frames = env["files"]["good"], env["frames"]
    for source in (wav, frames):
        expect_error(NotAModelError, esc(source) + ": not a model", load, source)
        expect_error(NotAModelError, esc(source) + ": not a model",
                     AudioVisualClassifier.from_hparams, source=source)
    missing = str(env["dir"] / "runs" / "ft" / "finetuned.pth")
    expect_error(FileNotFoundError, esc(missing) + ": no such model folder or file",
                 AudioVisualClassifier.from_hparams, source=missing)
    for argv in (["classify", wav], ["embed", "--manifest", wav, "--output",
                                     str(env["dir"] / "emb")]):
        expect_error(NotAModelError, esc(wav) + ": not a model", cli.main,
                     [*argv, "--model", wav, "--debug"])


# --- numbers a model folder records (issue 24)
@case
def folder_records_numbers_out_of_range(env):
    """A model folder whose yaml records ``dataset_std: 0`` (every fbank NaN) or a negative
    width is refused by every reader, naming the key and the file, before it is built."""
    from speechbrain_cavmae.settings import SettingError

    for name, old, new, key in [
        ("std0", "dataset_std: ", "dataset_std: 0.0 #", r"dataset_std \(in "),
        ("width", "embed_dim: 32", "embed_dim: -32", r"model\.embed_dim \(in "),
    ]:
        text = (env["dir"] / "clf" / "hyperparams.yaml").read_text(encoding="utf8")
        line = next(x for x in text.splitlines() if x.lstrip().startswith(old))
        folder = _folder_with(env, f"numbers_{name}", replace=[(line, line.replace(old, new))])
        messages = set()
        for reader, read in every_reader(folder, env["dir"] / f"sd_numbers_{name}",
                                         ARCH).items():
            with pytest.raises(SettingError) as info:
                read()
            messages.add(str(info.value))
        (message,) = messages
        assert re.match(key + esc(folder / "hyperparams.yaml") + r"\) must be ", message), message


# --- frame segments (issue 24)
SYNC = {"frame_segments": True, "n_frames": 16, "clip_length": 200, "multi_frame": True}


@case
def frame_segments_missing_extracted_frame(env):
    """16 frames asked of a layout with 10: frame 10 is named, not replaced."""
    expect_bad_sample(env, "sync_ten_frames", entry("ok", wav=env["files"]["good"]),
                      Path(env["frames"]) / "frame_10" / "ok.jpg", "extracted frame 10 not found",
                      config=SYNC)


@case
def frame_segments_segment_longer_than_clip(env):
    m = manifest(env, "sync_long_segment", [entry("ok", wav=env["files"]["good"],
                                                   video_path=env["frames"])])
    expect_error(ValueError, "audio_length=300 .* longer than clip_length=200; set clip_length",
                 build_dataset, m, None, dict(CONFIG, **SYNC, audio_length=300), train=False)
    expect_error(ValueError, "frame_segments needs .* features_on_device: False",
                 build_dataset, m, None, dict(CONFIG, **SYNC, features_on_device=True))


@case
def frame_segments_embeddings_folder_of_pooled_level(env):
    """``cavmae retrieval --embeddings`` of a folder written without --level segments."""
    from speechbrain_cavmae.tools.retrieval import evaluate_embeddings

    folder = env["dir"] / "pooled_embeddings"
    folder.mkdir(exist_ok=True)
    (folder / "index.json").write_text('{"level": "pooled", "clips": {}}')
    expect_error(ValueError, "level 'pooled', not 'segments' .* --level segments",
                 evaluate_embeddings, str(folder), "max")


# --- search: cavmae index / cavmae search (issue 24)
@case
def search_index_lists_and_skips_bad_media(env):
    """``cavmae index`` over the matrix's files: the bad ones are listed with the reason
    the input pipeline gives and skipped, the good ones indexed; a bad query file is a
    ``BadSampleError`` naming it."""
    from speechbrain_cavmae.search import VideoSearch
    from speechbrain_cavmae.search.embedder import Embedder
    from speechbrain_cavmae.search.index import update_index

    folder = env["dir"] / "search_media"
    folder.mkdir(exist_ok=True)
    good = ("good", "good_mp4", "mp4_no_audio")
    bad = {"zero": "cannot decode audio", "random": "cannot decode audio",
           "text_wav": "cannot decode audio", "nan": "NaN", "empty_data": "empty",
           "header_only": "empty|truncated", "mp4_text": "cannot open container",
           "mp4_garbled": "cannot open container|cannot decode"}
    for key in (*good, *bad):
        src = env["files"][key]
        shutil.copy(src, folder / f"{key}{os.path.splitext(src)[1]}")
    embedder = Embedder(env["pre"])
    summary = update_index([folder], env["dir"] / "search_index", embedder, {"model": "pre"})
    assert (summary["added"], summary["files"]) == (len(good), len(good))
    skipped = {os.path.splitext(os.path.basename(s["path"]))[0]: s["reason"]
               for s in summary["skipped"]}
    assert set(skipped) == set(bad)
    for key, reason in bad.items():
        assert re.search(reason, skipped[key]), (key, skipped[key])
    search = VideoSearch(VideoSearch.from_hparams(str(env["dir"] / "search_index")).store,
                         embedder)
    text = str(folder / "mp4_text.mp4")
    with pytest.raises(BadSampleError, match=esc(text) + ".*cannot open container"):
        search.search_file(text, "visual")
# --- Sync recipes (issue 24)
@case
def sync_recipe_numbers_and_pair_pooling(env):
    """The Sync yamls' pairing numbers are checked before anything is built, and an unknown
    ``pair_pooling`` is refused when the fine-tuning brain is built, not after training."""
    _expect_setting_errors(env, [
        ("cavmae_sync.yaml", "--clip_length", "0", r"an integer >= 1, got 0"),
        ("cavmae_sync.yaml", "--frame_span_s", "-1", r"a finite number > 0, got -1"),
        ("cavmae_sync.yaml", "--num_register_tokens", "-2", r"an integer >= 0, got -2"),
        ("cavmae_sync_ft.yaml", "--clip_length", "nan", r"an integer >= 1, got 'nan'"),
    ])
    from speechbrain_cavmae.model.classifier import CAVMAEClassifier
    from speechbrain_cavmae.training.brains import FinetuneBrain

    model = CAVMAEClassifier(2, img_size=32, audio_length=32, embed_dim=32,
                             modality_specific_depth=1, num_heads=2)
    hparams = {"model": model, "ft_mode": "multimodal", "loss": "BCE",
               "pair_pooling": "median", "output_folder": str(env["dir"])}
    expect_error(ValueError, r"pair_pooling='median'; expected one of \('mean', 'max'\)",
                 FinetuneBrain, modules={"model": model}, hparams=hparams,
                 run_opts={"device": "cpu"})
# --- export targets and exported folders (issue 28)
@case
def export_nan_weights_and_unknown_format(env):
    """``cavmae export`` of weights holding a NaN: one line naming the tensor, exit 1, no
    folder written; an unknown ``--graph_format``: a usage error (exit 2)."""
    import subprocess
    import sys

    from processes import subprocess_env

    model = CAVMAEClassifier(4, **ARCH).eval()
    with torch.no_grad():
        model.head.fc.weight[1, 2] = float("nan")
    path = env["dir"] / "export_nan.pth"
    torch.save(model.state_dict(), path)
    out = env["dir"] / "export_nan_out"
    for argv, status, message in [
        (["--model", str(path)], 1, r"head\.fc\.weight"),
        (["--model", str(env["dir"] / "clf"), "--graph_format", "tflite"], 2,
         r"invalid choice: 'tflite'"),
    ]:
        proc = subprocess.run([sys.executable, "-m", "speechbrain_cavmae", "export", *argv,
                               "--output", str(out)], capture_output=True, text=True,
                              timeout=300, env=subprocess_env())
        assert proc.returncode == status, proc.stderr
        assert "Traceback" not in proc.stderr
        assert re.search(message, proc.stderr.strip().splitlines()[-1]), proc.stderr
        assert not out.exists()


@case
def exported_description_points_outside(env):
    """An exported folder is data: a ``cavmae_export.json`` whose graph file is a path out
    of the folder is refused by every reader, naming the file, before any graph is read."""
    pytest.importorskip("onnxruntime")
    from speechbrain_cavmae.export.runtime import ExportedModel
    from speechbrain_cavmae.inference import AudioVisualClassifier

    folder = env["dir"] / "exported_outside"
    folder.mkdir(exist_ok=True)
    desc = {"format": "cavmae-export", "version": 1, "runtime": "onnx", "kind": "classifier",
            "graphs": {"multimodal": {"file": "../clf/model.ckpt"}},
            "input": {"audio": {}, "video": {}}}
    (folder / "cavmae_export.json").write_text(json.dumps(desc))
    pattern = esc(folder / "cavmae_export.json") + r": graph 'multimodal': file must be a file"
    for read in (lambda: ExportedModel(str(folder)),
                 lambda: AudioVisualClassifier.from_hparams(str(folder))):
        with pytest.raises(ValueError, match=pattern):
            read()


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(env, request, name):
    check = CASES[name]
    if getattr(check, "needs_classifier", False):
        check(env, request.getfixturevalue("classifier"))
    else:
        check(env)


# --------------------------------------------------------------------- recipe faults
def _subset(manifest_path, n, out, edit=None):
    with open(manifest_path, encoding="utf8") as handle:
        data = json.load(handle)
    data["data"] = data["data"][:n]
    if edit:
        for item in data["data"]:
            edit(item)
    with open(out, "w", encoding="utf8") as handle:
        json.dump(data, handle)
    return str(out)


@contextlib.contextmanager
def restored_logging():
    """SpeechBrain's experiment set-up reconfigures the root logger (DEBUG, a file handler
    in the output folder): put it back after the in-process recipe runs."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def _recipe(out, train, valid, epochs, *extra):
    """A tiny pretraining run in this process (no interpreter start-up): returns its log."""
    args = [str(HP / "cavmae.yaml"), "--train_data", train,
            *(["--valid_data", valid] if valid else []),
            "--output_folder", str(out), *ENCODER, *DECODER, "--batch_size", "4",
            "--number_of_epochs", str(epochs), *extra]
    try:
        with restored_logging():
            AUDIOSET_RECIPE.main(args)
    finally:
        log = Path(out, "log.txt")
        text = log.read_text() if log.is_file() else ""
    return text


def _checkpoint_epochs(out):
    epochs = []
    for meta in Path(out, "save").glob("CKPT*/CKPT.yaml"):
        found = re.search(r"^epoch: (\d+)", meta.read_text(), flags=re.MULTILINE)
        epochs.append(int(found.group(1)) if found else None)
    return sorted(epochs)


def test_recipe_faults(toy, tmp_path, one_thread):
    """Three pretraining runs share an output folder: a good epoch; a truncated
    ``history.json`` is set aside and the next epoch goes on (resumed with another ``--lr``,
    which is reported and not used); a diverged epoch (overflowing
    losses, no validation set) stops before anything is saved or exported. A fourth run, whose every training sample
    is bad under ``on_bad_sample: skip``, stops with a clear error and writes nothing."""
    here = Path(toy["train"]).parent
    train = _subset(toy["train"], 4, here / "faults_train.json")
    valid = _subset(toy["valid"], 4, here / "faults_valid.json")
    out = tmp_path / "run"
    _recipe(out, train, valid, 1)
    history = out / "history.json"
    assert [h["epoch"] for h in json.loads(history.read_text())] == [1]
    cut = history.read_text()[:40]
    history.write_text(cut)  # a crash of an older version, say

    # resumed with another --lr: the checkpoint's rate goes on, with a warning naming both
    log = _recipe(out, train, valid, 2, "--lr", "0.001")
    assert re.search(re.escape(str(history)) + r" is not a readable history .*moved it to "
                     + re.escape(str(history)) + r"\.corrupt", log)
    assert re.search(r"the learning rates asked for \(lr 0\.001\) differ from the base rates of "
                     r"the resumed checkpoint .*save/CKPT\+[^ ]+ \(lr 0\.0002\): the run goes on "
                     r"with the checkpoint's \(lr 0\.0002\).* To train with lr 0\.001, start a new "
                     r"run in another --output_folder", log), log[-3000:]
    # step 2 of the 4 warm-up steps: half the checkpoint's base rate
    assert [(h["epoch"], h["lr"]) for h in json.loads(history.read_text())] == [(2, 0.0001)]
    assert (out / "history.json.corrupt").read_text() == cut
    checkpoints = _checkpoint_epochs(out)
    assert max(checkpoints) == 2
    for name in ("pretrained.pth", "model", "test_results.json"):
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()

    # resumed without a validation set (the epoch ends in end_train_stage), a loss weight
    # so large that the losses overflow
    with pytest.raises(NonFiniteLossError, match=r"training diverged: .*NaN or infinite"):
        _recipe(out, train, None, 3, "--mae_loss_weight", "1e39")
    assert _checkpoint_epochs(out) == checkpoints  # the last finite checkpoints stay
    assert [h["epoch"] for h in json.loads(history.read_text())] == [2]
    for name in ("pretrained.pth", "model", "test_results.json"):
        assert not (out / name).exists(), name

    missing = _subset(toy["train"], 4, here / "faults_missing.json",
                      edit=lambda item: item.update(wav=item["wav"] + ".missing"))
    skipped = tmp_path / "skipped"
    with pytest.raises(EmptyEpochError, match=r"train epoch 1: every sample was skipped "
                                              r"\(4 bad sample\(s\)"):
        _recipe(skipped, missing, valid, 1, "--on_bad_sample", "skip")
    assert (skipped / "log.txt").read_text().count("skipping bad sample") == 4
    for name in ("pretrained.pth", "model", "test_results.json", "history.json"):
        assert not (skipped / name).exists(), name
    assert _checkpoint_epochs(skipped) == []


@pytest.mark.slow
def test_ddp_process_without_good_samples_stops_every_process(toy, tmp_path):
    """Two DDP processes (started directly, gloo on CPU), the whole share of process 1 bad
    under ``on_bad_sample: skip``: the processes agree on each step, so process 0 does not
    wait forever in the backward pass for process 1; every step is skipped on both, and
    both stop with the same :class:`EmptyEpochError` (totals summed over the processes)
    and write nothing."""
    here = Path(toy["train"]).parent
    bad = _subset(toy["train"], 8, here / "ddp_half_bad.json")
    data = json.loads(Path(bad).read_text())
    for item in data["data"][1::2]:  # without shuffling, process r reads the clips r::2
        item["wav"] += ".missing"
    Path(bad).write_text(json.dumps(data))
    out = tmp_path / "ddp_bad"
    args = [REPO / "recipes" / "AudioSet" / "train.py", HP / "cavmae.yaml", "--train_data", bad,
            "--output_folder", out, *ENCODER, *DECODER, "--batch_size", "2",
            "--number_of_epochs", "1", "--shuffle", "False", "--on_bad_sample", "skip",
            "--distributed_backend", "gloo", "--device", "cpu"]
    ranks = run_ranks(args, nproc=2)
    message = ("EmptyEpochError: train epoch 1: no training step ran: in every step the whole "
               "batch of at least one DDP process was skipped (4 bad sample(s) over all "
               "processes, listed in the warnings), and the processes step together, so the "
               "other processes' 4 good sample(s) were left out with them")
    for rank, proc in enumerate(ranks):
        text = proc.stdout + proc.stderr  # the main process logs to stdout
        assert proc.returncode != 0 and message in text, (rank, text[-3000:])
    logs = [proc.stdout + proc.stderr for proc in ranks]
    assert logs[0].count("good sample(s) of this process left out") == 2
    assert logs[1].count("every sample of a training batch was skipped") == 2
    for name in ("pretrained.pth", "model", "test_results.json", "history.json"):
        assert not (out / name).exists(), name
    assert _checkpoint_epochs(out) == []
