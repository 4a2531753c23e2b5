"""WebDataset shards: the shard tool, the shard data pipeline and the recipes reading them.

* the tool writes shards and an index (counts, sha256), leaves bad samples out (or stops
  at the first one), and a second run keeps the good shards and rewrites the rest;
* a shard dataset yields the items of the file dataset, tensor for tensor (training
  augmentation drawn in the same order, multi-frame evaluation, the skip policy, frames
  decoded from a clip stored in the shard);
* ``file://``, ``pipe:`` and ``http://`` shard URLs give the items of local paths;
* shards are verified as they are read: a replaced shard is refused by name before any of
  its samples is used, a damaged member makes its sample a bad sample (raised or counted),
  and shards written without member lists are checked as a whole at their end (with a
  warning) until a rerun of the shard tool adds the lists;
* two ranks read disjoint samples that together are the epoch, in the same number of steps;
* a recipe trained and evaluated from shards ends with the weights and results of the same
  recipe from the manifests (no shuffling, fixed seed), and a pretraining run killed
  (SIGKILL) mid-epoch resumes without repeating a sample (one test: they share a process);
* ``torchrun --nnodes 2`` (two launchers, c10d rendezvous on localhost, gloo) trains from
  shards, killed (SIGKILL, both launchers and their workers) mid-epoch and relaunched: the
  resumed epoch trains on every sample exactly once, and its checkpoint loads.
"""

import functools
import http.server
import json
import logging
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from media import tone, write_video, write_wav
from processes import REPO, free_port, kill_group, subprocess_env
from recipe_cli import (
    AUDIOSET, DECODER, ENCODER, HP, chain_while_killing, kill_all_after_intra_epoch_checkpoint,
)

pytest.importorskip("webdataset")

from speechbrain_cavmae.checkpoints import load_original_checkpoint  # noqa: E402
from speechbrain_cavmae.data.dataset import SkippedSample, build_dataset  # noqa: E402
from speechbrain_cavmae.data.errors import BadSampleError, ManifestError  # noqa: E402
from speechbrain_cavmae.data.manifest import read_manifest, write_manifest  # noqa: E402
from speechbrain_cavmae.data.shards import (  # noqa: E402
    ShardError,
    ShardLoader,
    build_shard_dataset,
)
from speechbrain_cavmae.data.shard_writer import file_sha256  # noqa: E402
from speechbrain_cavmae.cli import main as cavmae  # noqa: E402
from speechbrain_cavmae.training.recipe import build_datasets  # noqa: E402


def _shard(manifest, out, size, prefix, *extra):
    assert cavmae(["shard", "--manifest", str(manifest), "--output", str(out),
                   "--shard_size", str(size), "--prefix", prefix, *extra]) == 0
    index = json.loads((Path(out) / f"{prefix}-index.json").read_text())
    last = len(index["shards"]) - 1
    return f"{out}/{prefix}-{{000000..{last:06d}}}.tar", index


@pytest.fixture(scope="module")
def shards(toy, tmp_path_factory):
    """The toy set as shards: train 4 x 16, valid / test 2 x 16, written in this process.

    Writer processes (``--num_workers 2``, each a fresh interpreter: seconds of start-up)
    are checked by ``test_shard_tool_index_bad_samples_and_resume``, whose shards written
    by two processes and rewritten by one have the same sha256.
    """
    out = tmp_path_factory.mktemp("shards")
    patterns = {split: _shard(toy[split], out, 16, split)[0]
                for split in ("train", "valid", "test")}
    return patterns


def _items_equal(files, shards):
    assert [x.id if isinstance(x, SkippedSample) else x["id"] for x in files] == \
        [x.id if isinstance(x, SkippedSample) else x["id"] for x in shards]
    for a, b in zip(files, shards):
        if isinstance(a, SkippedSample):
            assert isinstance(b, SkippedSample) and a.reason == b.reason
            continue
        assert set(b) == set(a) | {"position"}
        for key in a:
            if key != "id":
                assert torch.equal(a[key], b[key]), (a["id"], key)


def test_shard_tool_index_bad_samples_and_resume(toy, tmp_path, caplog, capsys):
    data = dict(list(read_manifest(toy["train"]).items())[:6])
    # one clip decoded from its video (stored whole in the shard), one without audio file
    clip = write_video(str(tmp_path / "clip.mp4"), n_frames=30, fps=10, audio_freqs=())
    wav = write_wav(str(tmp_path / "clip.wav"), tone(440, 3.0, 16000))
    data["clip"] = {"video_id": "clip", "wav": wav, "video": clip, "labels": []}
    ids = list(data)
    data["missing"] = dict(data[ids[0]], video_id="missing", wav=str(tmp_path / "gone.wav"))
    order = ids[:4] + ["missing"] + ids[4:]  # the bad sample in the second shard
    manifest = tmp_path / "m.json"
    write_manifest({k: data[k] for k in order}, manifest, fmt="speechbrain")
    out = tmp_path / "out"

    assert cavmae(["shard", "--manifest", str(manifest), "--output", str(out),
                   "--shard_size", "3"]) == 1
    assert "gone.wav: file not found" in capsys.readouterr().err

    pattern, index = _shard(manifest, out, 3, "train", "--on_bad_sample", "skip",
                            "--num_workers", "2")
    assert [s["samples"] for s in index["shards"]] == [3, 2, 2] and index["total"] == 7
    assert index["bad_samples"] == [{"id": "missing", "file": str(tmp_path / "gone.wav"),
                                     "problem": "file not found", "shard": "train-000001.tar"}]
    for entry in index["shards"]:
        assert file_sha256(out / entry["name"]) == entry["sha256"]
    import webdataset as wds

    samples = list(wds.tariterators.tarfile_samples([{"url": str(out / "train-000000.tar")}]))
    first = samples[0]
    assert json.loads(first["json"])["id"] == ids[0]
    jpg = Path(data[ids[0]]["video_path"]) / "frame_3" / f"{ids[0]}.jpg"
    assert first["frame_3.jpg"] == jpg.read_bytes()  # the extracted JPEG, byte for byte
    last = list(wds.tariterators.tarfile_samples([{"url": str(out / "train-000002.tar")}]))[-1]
    assert last["video.mp4"] == Path(clip).read_bytes() and "frame_0.jpg" not in last

    # resume: the complete shard is kept, the deleted and the damaged ones are rewritten
    kept = (out / "train-000000.tar").stat().st_mtime_ns
    (out / "train-000002.tar").unlink()
    with open(out / "train-000001.tar", "ab") as handle:
        handle.write(b"x")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        _, again = _shard(manifest, out, 3, "train", "--on_bad_sample", "skip")
    assert "1 shard(s) already complete, 2 to write" in caplog.text
    assert (out / "train-000000.tar").stat().st_mtime_ns == kept
    assert again["shards"] == index["shards"] and again["bad_samples"] == index["bad_samples"]
    shard = ["shard", "--manifest", str(manifest), "--output", str(out), "--shard_size", "4"]
    assert cavmae(shard) == 1  # exit 1 ...
    with pytest.raises(ValueError, match="written from another manifest or with other settings"):
        cavmae([*shard, "--debug"])  # ... or raise

    # the clip stored in the shard decodes to the frames of the file
    cfg = {"image_size": 64, "audio_length": 96, "multi_frame": True}
    files = build_dataset(manifest, None, cfg, train=False, counter=None)
    shard_set = build_shard_dataset(pattern, None, cfg, train=False)
    good = [files[i] for i in range(len(files)) if files.data_ids[i] != "missing"]
    _items_equal(good, list(shard_set))
    # the same with WAV audio in the shards
    wavs, index = _shard(manifest, out, 3, "wavs", "--on_bad_sample", "skip",
                         "--audio_format", "wav")
    assert index["config"]["audio_format"] == "wav"
    _items_equal(good, list(build_shard_dataset(wavs, None, cfg, train=False)))


def test_shard_items_equal_file_items(toy, shards, tmp_path):
    # training (random frame, SpecAugment, noise) draws the same numbers in the same order
    train_cfg = {"image_size": 64, "audio_length": 96, "freqm": 8, "timem": 8, "noise": True}
    files = build_dataset(toy["train"], toy["label_csv"], train_cfg, train=True)
    shard_set = build_shard_dataset(shards["train"], toy["label_csv"], train_cfg, train=True)
    torch.manual_seed(3)
    expected = [files[i] for i in range(len(files))]
    torch.manual_seed(3)
    _items_equal(expected, list(shard_set))
    # multi-frame evaluation, and the skip policy: a label missing from the label CSV
    labels = (Path(toy["label_csv"]).read_text().splitlines())
    fewer = tmp_path / "labels.csv"
    fewer.write_text("\n".join(labels[:-1]) + "\n")
    eval_cfg = {"image_size": 64, "audio_length": 96, "multi_frame": True,
                "on_bad_sample": "skip"}
    files = build_dataset(toy["test"], fewer, eval_cfg, train=False)
    shard_set = build_shard_dataset(shards["test"], fewer, eval_cfg, train=False)
    expected = [files[i] for i in range(len(files))]
    got = list(shard_set)
    skipped = [x for x in got if isinstance(x, SkippedSample)]
    assert skipped and shard_set.bad_samples.count == files.bad_samples.count == len(skipped)
    assert all(s.position.startswith("test-00000") for s in skipped)
    assert "not in label CSV" in skipped[0].reason
    _items_equal(expected, got)


@pytest.mark.parametrize("scheme", ["file", "pipe", "http"])
def test_shards_stream_from_urls(toy, shards, scheme):
    """``file://``, ``pipe:`` (the index comes from the same command with the index's name)
    and ``http://`` (a local server; WebDataset fetches with curl) give the local items."""
    cfg = {"image_size": 64, "audio_length": 96}
    local = shards["valid"]
    folder, name = local.rsplit("/", 1)
    if scheme == "file":
        pattern = "file://" + local
    elif scheme == "pipe":
        pattern = f"pipe:dd if={local} status=none"  # the name is not the last word
    else:
        if shutil.which("curl") is None:
            pytest.skip("WebDataset reads http:// shards with curl, which is not installed")
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=folder)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        pattern = f"http://127.0.0.1:{server.server_port}/{name}"
    try:
        expected = list(build_shard_dataset(local, None, cfg, train=False))
        streamed = build_shard_dataset(pattern, None, cfg, train=False)
        got = list(streamed)
        assert len(streamed) == len(expected) == 32
        assert [x["position"] for x in got] == [x["position"] for x in expected]
        _items_equal([{k: v for k, v in x.items() if k != "position"} for x in expected], got)
    finally:
        if scheme == "http":
            server.shutdown()


def test_fine_tuning_refuses_shards_without_labels(toy, tmp_path):
    """Samples without labels (a misspelled ``labels`` field) are refused as in a manifest:
    from the index before reading, naming the sample and the manifest entry's fields; for
    shards whose index does not record it (an older version), at the sample, naming its
    JSON member and fields. Pretraining reads them."""
    data = json.loads(Path(toy["train"]).read_text())
    data["data"] = data["data"][:3]
    item = data["data"][1]
    item["lables"] = item.pop("labels")
    manifest = Path(toy["train"]).with_name("unlabelled.json")  # the clips' paths are relative
    manifest.write_text(json.dumps(data))
    pattern, index = _shard(manifest, tmp_path, 2, "train")
    assert [s["unlabelled"] for s in index["shards"]] == [1, 0]
    sid = item["video_id"]
    fields = "no labels (its fields: lables, video_id, video_path, wav); fine-tuning needs a " \
        "non-empty 'labels' field"
    cfg = {"image_size": 64, "audio_length": 96}
    with pytest.raises(ManifestError, match=re.escape(
            f"{tmp_path}/train-index.json: 1 of 3 samples of the shards have no labels: shard "
            f"train-000000.tar, sample '{sid}' (key 000000001): {fields}")):
        build_datasets({"task": "finetune", "label_csv": toy["label_csv"], "train_shards": pattern,
                        "valid_shards": pattern})
    assert len(list(build_shard_dataset(pattern, toy["label_csv"], cfg, require_labels=False))) == 3

    for entry in index["shards"]:  # as written before the index recorded it
        del entry["unlabelled"]
    (tmp_path / "train-index.json").write_text(json.dumps(index))
    data = build_shard_dataset(pattern, toy["label_csv"], dict(cfg, on_bad_sample="skip"))
    with pytest.raises(ManifestError, match=re.escape(
            f"{tmp_path}/train-000000.tar:000000001.json: sample '{sid}': no labels (its fields: "
            "id, video_id); fine-tuning needs a non-empty 'labels' field")):
        list(data)


def _subset_shards(toy, split, n, out, name):
    """The first ``n`` samples of a toy split, written as shards of 2 (prefix train)."""
    data = json.loads(Path(toy[split]).read_text())
    data["data"] = data["data"][:n]
    manifest = Path(toy[split]).with_name(f"{name}.json")  # the clips' paths are relative
    manifest.write_text(json.dumps(data))
    return _shard(manifest, out, 2, "train")


def _flip_frames(shard, key=None):
    """Flip one byte in the middle of every frame JPEG of ``shard`` (of sample ``key``
    only, if given); returns the damaged members."""
    import tarfile

    with tarfile.open(shard) as tar:
        members = [m for m in tar.getmembers() if ".frame_" in m.name
                   and (key is None or m.name.startswith(key + "."))]
    raw = bytearray(Path(shard).read_bytes())
    for m in members:
        raw[m.offset_data + m.size // 2] ^= 0x01
    Path(shard).write_bytes(bytes(raw))
    return [m.name for m in members]


def _read_until_error(dataset):
    """Items read before the error, and the error."""
    items = []
    with pytest.raises((ShardError, BadSampleError)) as info:
        for item in dataset:
            items.append(item)
    return items, info.value


CFG = {"image_size": 64, "audio_length": 96}


def test_replaced_shard_is_refused_by_name(toy, tmp_path):
    """A shard from another manifest copied over ``train-000001.tar`` stops the run with a
    ShardError naming it, before any of its samples is used, whatever ``on_bad_sample``
    says; the same when its member list is copied too."""
    pattern, _ = _subset_shards(toy, "train", 4, tmp_path / "a", "four")
    _subset_shards(toy, "valid", 4, tmp_path / "b", "other")
    shutil.copy(tmp_path / "b" / "train-000001.tar", tmp_path / "a" / "train-000001.tar")
    shard = tmp_path / "a" / "train-000001.tar"
    for policy in ("raise", "skip"):
        data = build_shard_dataset(pattern, None, dict(CFG, on_bad_sample=policy), train=False)
        items, err = _read_until_error(data)
        assert isinstance(err, ShardError)
        assert str(err).startswith(f"{shard}: the description of sample 000000002 "
                                   "(000000002.json) differs from the one ") and \
            f"the shard is not the one {tmp_path}/a/train-index.json lists" in str(err)
        assert [x["position"] for x in items] == ["train-000000.tar/000000000",
                                                   "train-000000.tar/000000001"]
        assert data.bad_samples.count == 0
    shutil.copy(tmp_path / "b" / "train-000001.members.sha256",
                tmp_path / "a" / "train-000001.members.sha256")
    data = build_shard_dataset(pattern, None, dict(CFG, on_bad_sample="skip"), train=False)
    items, err = _read_until_error(data)
    assert isinstance(err, ShardError) and len(items) == 2
    assert str(err).startswith(f"{shard}: its member list {tmp_path}/a/train-000001.members."
                               "sha256 differs from the one")


@pytest.mark.parametrize("scheme", ["local", "pipe"])
def test_flipped_jpeg_bytes_are_bad_samples(toy, tmp_path, caplog, scheme):
    """One flipped byte in each frame JPEG of a sample: a BadSampleError naming the member
    and the reason, or a counted skip; the shard's other samples are read (from a local
    path or a ``pipe:`` command alike)."""
    pattern, _ = _subset_shards(toy, "train", 4, tmp_path, "four")
    shard = str(tmp_path / "train-000000.tar")
    damaged = _flip_frames(shard, "000000001")
    kept = (tmp_path / "train-000001.tar").read_bytes()
    assert len(damaged) == 10
    if scheme == "pipe":
        pattern, shard = f"pipe:cat {pattern}", f"pipe:cat {shard}"
    data = build_shard_dataset(pattern, None, dict(CFG, on_bad_sample="raise"), train=False)
    items, err = _read_until_error(data)
    assert isinstance(err, BadSampleError) and len(items) == 1
    assert err.path == f"{shard}:000000001.frame_0.jpg"
    listed = shard.replace(".tar", ".members.sha256")
    assert err.reason.startswith(f"damaged: its bytes differ from the sha256 in {listed}; "
                                 "rewrite it")
    data = build_shard_dataset(pattern, None, dict(CFG, on_bad_sample="skip"), train=False)
    items = list(data)
    skipped = [x for x in items if isinstance(x, SkippedSample)]
    assert len(items) == 4 and data.bad_samples.count == len(skipped) == 1
    assert skipped[0].path == err.path and skipped[0].position == "train-000000.tar/000000001"
    # a shard none of whose samples matches its member list is refused at its end
    _flip_frames(str(tmp_path / "train-000001.tar"))
    data = build_shard_dataset(pattern, None, dict(CFG, on_bad_sample="skip"), train=False)
    items, refused = _read_until_error(data)
    assert isinstance(refused, ShardError) and str(refused).startswith(
        f"{shard.replace('000000.tar', '000001.tar')}: none of its 2 samples matches its "
        "member list")
    assert data.bad_samples.count == 3 and len(items) == 4
    (tmp_path / "train-000001.tar").write_bytes(kept)
    # in training, a damaged sample is not used as a mixup partner either
    train = build_shard_dataset(pattern, None, dict(CFG, on_bad_sample="skip", mixup=1.0),
                                train=True, shuffle=True, shuffle_buffer=4)
    assert sum(isinstance(x, SkippedSample) for x in train) == 1
    good, bad = list(train.records(train.urls))[:2]
    train.loader.pool = [bad]  # the only partner to draw
    with caplog.at_level(logging.WARNING):
        item = train.item(good)
    assert item["id"] == good["id"]
    assert f"mixup partner unusable, drawing another: sample {bad['id']!r}: {err.path}: " \
        "damaged" in caplog.text


def test_shards_without_member_lists(toy, tmp_path, caplog):
    """Shards written before the member lists: a warning that their samples are not
    checked before use; each shard is checked as a whole at its end (a flipped byte stops
    the run there, naming the shard, from a local path or a ``pipe:`` command); rerunning
    the shard tool adds the lists without rewriting the shards, and rewrites a damaged one."""
    pattern, index = _subset_shards(toy, "train", 4, tmp_path, "four")
    for entry in index["shards"]:  # as written by an older version
        del entry["members_sha256"]
        (tmp_path / entry["name"].replace(".tar", ".members.sha256")).unlink()
    (tmp_path / "train-index.json").write_text(json.dumps(index))
    with caplog.at_level(logging.WARNING):
        data = build_shard_dataset(pattern, None, CFG, train=False)
    assert f"{tmp_path}/train-index.json: 2 of 2 shards (e.g. train-000000.tar) were written " \
        "without a member list" in caplog.text
    assert len(list(data)) == 4
    shard = tmp_path / "train-000001.tar"
    kept = shard.read_bytes()
    _flip_frames(shard, "000000002")
    for prefix in ("", "pipe:cat "):
        data = build_shard_dataset(prefix + pattern, None, dict(CFG, on_bad_sample="skip"),
                                   train=False)
        items, err = _read_until_error(data)
        assert isinstance(err, ShardError) and len(items) == 4  # used before the end
        assert str(err).startswith(f"{prefix}{shard}: its sha256 ") and \
            f"of {prefix}{tmp_path}/train-index.json" in str(err)
    shard.write_bytes(kept)
    mtime = (tmp_path / "train-000000.tar").stat().st_mtime_ns
    manifest = Path(toy["train"]).with_name("four.json")
    _, again = _shard(manifest, tmp_path, 2, "train")
    assert (tmp_path / "train-000000.tar").stat().st_mtime_ns == mtime
    assert all("members_sha256" in e for e in again["shards"])
    assert [(tmp_path / e["name"].replace(".tar", ".members.sha256")).is_file()
            for e in again["shards"]] == [True, True]
    _flip_frames(shard, "000000002")
    data = build_shard_dataset(pattern, None, dict(CFG, on_bad_sample="skip"), train=False)
    assert data.bad_samples.count == 0 and len(list(data)) == 4
    assert data.bad_samples.count == 1


def _epoch_ids(loader):
    batches = list(loader)
    return [list(b.id) for b in batches]


def test_two_ranks_read_disjoint_halves_of_each_epoch(toy, shards, tmp_path):
    cfg = {"image_size": 64, "audio_length": 96}
    everything = set(read_manifest(toy["train"]))
    loaders = [ShardLoader(build_shard_dataset(shards["train"], None, cfg, True, shuffle=True,
                                               shuffle_buffer=8, seed=1, rank=r, world_size=2),
                           batch_size=8, num_workers=workers)
               for r, workers in ((0, 2), (1, 0))]
    for epoch in (1, 2):
        assert len(loaders[0]) == len(loaders[1]) == 4
        halves = [_epoch_ids(loader) for loader in loaders]
        assert [len(h) for h in halves] == [4, 4] and all(len(b) == 8 for h in halves for b in h)
        sets = [{i for b in h for i in b} for h in halves]
        assert len(sets[0]) == len(sets[1]) == 32 and not sets[0] & sets[1]
        assert sets[0] | sets[1] == everything, epoch
        assert all(loader.epoch == epoch for loader in loaders)
    # 5 shards for 2 ranks (13 13 13 13 12): both run the same number of steps, apart
    uneven, _ = _shard(toy["train"], tmp_path, 13, "train")
    loaders = [ShardLoader(build_shard_dataset(uneven, None, cfg, True, rank=r, world_size=2),
                           batch_size=8) for r in (0, 1)]
    halves = [_epoch_ids(loader) for loader in loaders]
    assert len(halves[0]) == len(halves[1]) == len(loaders[0]) == 4
    assert not {i for b in halves[0] for i in b} & {i for b in halves[1] for i in b}


TINY = [*ENCODER, "--batch_size", "8", "--number_of_epochs", "1", "--shuffle", "False"]


def _traced(out, rank=0):
    """``{(epoch, step): ids}`` of ``rank_trace`` (a step traced again keeps the later)."""
    lines = (out / "ranks" / f"rank{rank}_ids.txt").read_text().splitlines()
    return {tuple(map(int, line.split()[:2])): line.split()[2:] for line in lines}


def _pretrain_from_shards(shards, out, *extra, batch_size=16):
    """One epoch of pretraining (4 steps of 16), shuffled shards and buffers of 8."""
    return [AUDIOSET, str(HP / "cavmae.yaml"), "--train_shards", shards["train"],
            "--output_folder", str(out), *ENCODER, *DECODER, "--batch_size", str(batch_size),
            "--number_of_epochs", "1", "--shuffle_buffer", "8", "--rank_trace", "True", *extra]


@pytest.mark.slow
def test_recipes_from_shards_equal_manifests_and_resume_after_sigkill(toy, shards, tmp_path):
    """Two checks sharing one recipe process (the start-up of a recipe costs seconds; the
    run to kill runs alongside it):

    * fine-tuning (SpecAugment and noise on, no shuffling, one epoch) then multi-frame
      evaluation from shards gets the inputs of the run from the manifests, hence the same
      weights and test results, bit for bit (same operations in the same order);
    * a pretraining run from shards killed with SIGKILL after an intra-epoch checkpoint
      resumes and trains on every sample of the epoch exactly once.
    """
    resumed = tmp_path / "resumed"
    pretrain = _pretrain_from_shards(shards, resumed, "--ckpt_interval_minutes", "0",
                                     "--ckpt_interval_steps", "1")
    common = [AUDIOSET, str(HP / "cavmae_ft.yaml"), "--label_csv", toy["label_csv"], *TINY,
              "--freqm", "8", "--timem", "8", "--noise", "True", "--mixup", "0",
              "--multi_frame_eval", "True"]
    plan = [
        {"argv": [*common, "--output_folder", str(tmp_path / "files"), "--train_data",
                  toy["train"], "--valid_data", toy["valid"], "--test_data", toy["test"]]},
        {"argv": [*common, "--output_folder", str(tmp_path / "shards"), "--train_shards",
                  shards["train"], "--valid_shards", shards["valid"], "--test_shards",
                  shards["test"]]},
        # the same command line again, once the run alongside has been killed: it resumes
        {"argv": pretrain, "wait_for": str(tmp_path / "killed")},
    ]
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    killed, _ = chain_while_killing(tmp_path / "plan.json", pretrain, resumed / "save",
                                    tmp_path / "killed", min_step=2)
    on_disk = max(killed.values())

    files, from_shards = (json.loads((tmp_path / k / "test_results.json").read_text())
                          for k in ("files", "shards"))
    assert len(files["per_frame"]) == 10
    assert from_shards == files
    weights = torch.load(tmp_path / "shards" / "finetuned.pth", weights_only=True)
    for key, value in torch.load(tmp_path / "files" / "finetuned.pth", weights_only=True).items():
        assert torch.equal(weights[key], value), key

    assert f"epoch 1 resumed: {16 * on_disk} samples already trained on are left out, " \
        f"{4 - on_disk} batches to go" in (resumed / "log.txt").read_text()
    # steps 1..k of the killed run, k+1..4 of the resumed one (a step traced by both keeps
    # the resumed run's line): every sample exactly once
    batches = _traced(resumed)
    assert sorted(batches) == [(1, s) for s in range(1, 5)]
    assert sorted(i for ids in batches.values() for i in ids) == \
        sorted(read_manifest(toy["train"]))


def _two_launchers(args):
    """Command lines of two torchrun launchers as two nodes (``--nnodes 2``, one process
    each, c10d rendezvous on a free localhost port) running ``python *args``."""
    port = free_port()
    return [["-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
             "--node_rank", str(node), "--rdzv_backend", "c10d", "--rdzv_endpoint",
             f"localhost:{port}", "--rdzv_id", "shards-test", *args] for node in (0, 1)]


@pytest.mark.slow
def test_two_node_torchrun_from_shards(toy, shards, tmp_path):
    """Two torchrun launchers (one process each) rendezvous on localhost as two nodes. The
    first pair is killed (SIGKILL, every process of both) after an intra-epoch checkpoint;
    the same two commands resume the epoch, and neither lose nor repeat a sample."""
    out = tmp_path / "2nodes"
    args = _pretrain_from_shards(shards, out, "--distributed_backend", "gloo", "--device",
                                 "cpu", "--ckpt_interval_minutes", "0",
                                 "--ckpt_interval_steps", "1", batch_size=8)
    killed = kill_all_after_intra_epoch_checkpoint(_two_launchers(args), out / "save")
    on_disk = max(killed.values())
    # each node: 2 shards of 16, 4 steps of 8 (after step 4's checkpoint: 0 steps to go)
    assert 2 <= on_disk <= 4, killed
    traces = [out / "ranks" / f"rank{rank}_ids.txt" for rank in (0, 1)]
    before = [len(t.read_text().splitlines()) for t in traces]

    procs = []
    for cmd in _two_launchers(args):
        procs.append(subprocess.Popen([sys.executable, *cmd], cwd=REPO, env=subprocess_env(),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, start_new_session=True))
    try:
        outputs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                kill_group(p)
                p.wait()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-5000:]

    # the relaunch resumed from the newest checkpoint left by the kill (the one before it
    # may not be deleted yet), the samples of its first steps (both nodes') left out
    log = (out / "log.txt").read_text()
    loaded = re.findall(r"Loading a checkpoint from (\S+)", log)
    assert [Path(c).name for c in loaded] == [max(killed, key=killed.get)], (loaded, killed)
    assert f"epoch 1 resumed: {2 * 8 * on_disk} samples already trained on are left out, " \
        f"{4 - on_disk} batches to go" in log
    # Trained on: steps 1..k of the killed run (k: the checkpoint; its later steps were
    # lost with it) and the steps of the resumed run, which are k+1..4. Together they are
    # the epoch, every sample exactly once. The bound of docs/scale.md (about
    # 1 + shuffle_buffer / shard_size shards per worker) is on what is *read* again: the
    # shards partly consumed at the checkpoint, whose samples already trained on are
    # skipped as they are read; no sample is *trained on* twice, shuffled or not.
    trained = []
    for rank, trace in enumerate(traces):
        lines = [line.split() for line in trace.read_text().splitlines()]
        first = [line for line in lines[:before[rank]] if int(line[1]) <= on_disk]
        again = lines[before[rank]:]
        assert [(int(x[0]), int(x[1])) for x in first + again] == \
            [(1, s) for s in range(1, 5)], rank
        trained.append([i for line in first + again for i in line[2:]])
    assert sorted(trained[0] + trained[1]) == sorted(read_manifest(toy["train"]))
    # each node trained on its own two shards, in 4 steps of 8: the final pass agrees
    halves = [_traced(out, rank) for rank in (0, 1)]
    assert [sorted(h) for h in halves] == [[(1, s) for s in range(1, 5)]] * 2
    ids = [{i for b in h.values() for i in b} for h in halves]
    assert not ids[0] & ids[1] and ids[0] | ids[1] == set(read_manifest(toy["train"]))
    assert ids == [set(t) for t in trained]
    ranks = [torch.load(out / "ranks" / f"rank{r}.pth", weights_only=True) for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    # the checkpoint loads
    model = load_original_checkpoint(str(out / "pretrained.pth"), num_heads=2,
                                     decoder_num_heads=2)
    ckpts = list((out / "save").glob("CKPT+*/model.ckpt"))
    assert len(ckpts) == 1, ckpts  # the end of the epoch: the intra-epoch ones are deleted
    state = torch.load(ckpts[0], map_location="cpu", weights_only=True)
    assert not model.load_state_dict(state, strict=True).missing_keys
    assert all(torch.equal(state[k], ranks[0][k]) for k in state)
    # its loader position, gathered from both nodes: the whole epoch, every shard read
    position = json.loads((ckpts[0].parent / "shard_position.ckpt").read_text())
    assert position == {"epoch": 1, "consumed": {f"train-{i:06d}.tar": "all" for i in range(4)}}
