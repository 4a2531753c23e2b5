"""``cavmae index`` / ``cavmae search``: incremental indexing, resume after SIGKILL, bad
files, same-modal and cross-modal queries (:mod:`speechbrain_cavmae.search`).

The clips are generated: each has two halves, each half a class with its own tone and its
own colour (the sound has its sight), plus a little noise of its own. A tiny CAV-MAE is
trained for a few seconds with the contrastive loss on the clips' windows so that
cross-modal hits can beat chance.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from media import write_video, write_wav
from processes import kill_group, subprocess_env
from speechbrain_cavmae.cli import main as cavmae
from speechbrain_cavmae.losses import ContrastiveLoss
from speechbrain_cavmae.model.cavmae import CAVMAE
from speechbrain_cavmae.search import VideoSearch
from speechbrain_cavmae.search import embedder as embedder_module
from speechbrain_cavmae.search.embedder import Embedder

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

N_CLASSES = 4
COLOURS = np.array([(220, 40, 40), (40, 200, 40), (40, 60, 220), (230, 220, 40)], np.uint8)
FPS, SECONDS, RATE = 10, 2.0, 16000
HEADS = ["--num_heads", "2", "--decoder_num_heads", "2"]


def clip_classes(k):
    """Classes of the first and second half of clip ``k`` (always different)."""
    return k % N_CLASSES, (k + 1 + k // N_CLASSES) % N_CLASSES


def class_at(k, seconds):
    first, second = clip_classes(k)
    return first if seconds < SECONDS / 2 else second


def write_clip(path, k, seed=None):
    """Clip ``k``: each half a tone and a colour of its class, plus noise of its own."""
    rng = np.random.default_rng(k if seed is None else seed)
    t = np.arange(int(SECONDS * RATE)) / RATE
    freq = 400.0 * 1.6 ** np.array([class_at(k, s) for s in t])
    audio = 0.4 * np.sin(2 * np.pi * freq * t) + 0.03 * rng.standard_normal(len(t))
    half = int(FPS * SECONDS / 2)
    write_video(str(path), n_frames=int(FPS * SECONDS), fps=FPS, size=(48, 48),
                audio_rate=RATE, audio_signal=audio,
                colours=lambda i: COLOURS[clip_classes(k)[0 if i < half else 1]])
    return str(path)


def tiny_model():
    torch.manual_seed(0)
    return CAVMAE(img_size=32, audio_length=64, embed_dim=32, modality_specific_depth=1,
                  num_heads=2, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)


def train_contrastive(model, clips, steps=60):
    """A few full-batch steps of the contrastive loss on the clips' windows."""
    reader = Embedder(model)
    fbanks, frames = [], []
    for path in clips:
        _, _, _, fbank, frame, _ = reader.read(path)
        fbanks.append(fbank)
        frames.append(frame)
    fbank, frame = torch.cat(fbanks), torch.cat(frames)
    enc, loss_fn = model.encoder, ContrastiveLoss(bidirectional=True)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(steps):
        loss = loss_fn(enc.encode_audio(fbank).mean(1), enc.encode_visual(frame).mean(1))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    folder = root / "clips"
    folder.mkdir()
    paths = [write_clip(folder / f"clip{k}.mp4", k) for k in range(8)]
    model = train_contrastive(tiny_model(), paths)
    ckpt = root / "model.pth"
    torch.save(model.state_dict(), ckpt)
    return {"root": root, "folder": folder, "paths": paths, "model": str(ckpt)}


@pytest.fixture(scope="module")
def indexed(clips):
    """The clips indexed once (by the command line)."""
    out = clips["root"] / "index"
    assert cavmae(["index", str(clips["folder"]), "--model", clips["model"], *HEADS,
                   "--output", str(out), "--batch_files", "3"]) == 0
    return VideoSearch.from_hparams(str(out))


@pytest.fixture
def embedded(monkeypatch):
    """The paths each ``Embedder.moments`` call embeds, in order."""
    calls = []
    original = embedder_module.Embedder.moments

    def moments(self, path, *args, **kwargs):
        calls.append(os.path.basename(path))
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(embedder_module.Embedder, "moments", moments)
    return calls


def index_json(capsys, *args):
    capsys.readouterr()
    assert cavmae(["index", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_reindex_embeds_only_added_and_changed_files(clips, tmp_path, embedded, capsys):
    folder = tmp_path / "media"
    folder.mkdir()
    for k in range(3):
        write_clip(folder / f"clip{k}.mp4", k)
    args = [str(folder), "--model", clips["model"], *HEADS, "--output", str(tmp_path / "ix")]
    first = index_json(capsys, *args)
    assert (first["added"], first["updated"], first["removed"], first["files"]) == (3, 0, 0, 3)
    assert sorted(embedded) == ["clip0.mp4", "clip1.mp4", "clip2.mp4"]
    assert first["clips"] == 3 and first["segments"] >= 3 * 5

    embedded.clear()
    write_clip(folder / "clip3.mp4", 3)  # added
    write_clip(folder / "clip1.mp4", 1, seed=99)  # changed
    os.utime(folder / "clip1.mp4", ns=(1, 1))
    os.remove(folder / "clip2.mp4")  # removed
    second = index_json(capsys, *args)
    assert (second["added"], second["updated"], second["removed"]) == (1, 1, 1)
    assert (second["unchanged"], second["files"]) == (1, 3)
    assert sorted(embedded) == ["clip1.mp4", "clip3.mp4"]

    embedded.clear()
    os.utime(folder / "clip0.mp4", ns=(2, 2))  # same content, new time: --hash keeps it
    third = index_json(capsys, *args, "--hash")
    assert embedded == [] and (third["added"], third["updated"], third["unchanged"]) == (0, 0, 3)
    # the search sees the new state: clip2 gone, clip3 there
    search = VideoSearch.from_hparams(str(tmp_path / "ix"))
    paths = {os.path.basename(h.path) for h in
             search.search_indexed(str(folder / "clip0.mp4"), 0.5, top_k=100)}
    assert paths == {"clip0.mp4", "clip1.mp4", "clip3.mp4"}


def test_bad_files_are_listed_skipped_and_not_retried(clips, tmp_path, embedded, capsys):
    folder = tmp_path / "media"
    folder.mkdir()
    write_clip(folder / "good.mp4", 0)
    tone = np.sin(2 * np.pi * 500 * np.arange(3 * RATE) / RATE).astype(np.float32)
    write_wav(folder / "tone.wav", tone)  # sound only: audio vectors, no sight
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(300))
    (folder / "empty.wav").write_bytes(b"")
    args = [str(folder), "--model", clips["model"], *HEADS, "--output", str(tmp_path / "ix")]
    summary = index_json(capsys, *args)
    assert (summary["added"], summary["files"]) == (2, 2)
    skipped = {os.path.basename(s["path"]): s["reason"] for s in summary["skipped"]}
    assert set(skipped) == {"broken.mp4", "empty.wav"} and all(skipped.values())
    embedded.clear()
    again = index_json(capsys, *args)  # listed again, not decoded again
    assert embedded == [] and len(again["skipped"]) == 2
    capsys.readouterr()
    assert cavmae(["index", *args]) == 0  # the plain summary names them too
    out = capsys.readouterr().out
    assert "skipped" in out and "broken.mp4" in out and "empty.wav" in out
    os.remove(folder / "empty.wav")  # a bad file deleted is forgotten
    assert [s["path"] for s in index_json(capsys, *args)["skipped"]] == [
        str(folder / "broken.mp4")]
    search = VideoSearch.from_hparams(str(tmp_path / "ix"))
    assert [p for p in search.store.bad()] == [str(folder / "broken.mp4")]
    wav = str(folder / "tone.wav")
    assert search.search_indexed(wav, 1.0, "audio", top_k=1)[0].path == wav
    with pytest.raises(ValueError, match="no visual vector"):
        search.search_indexed(wav, 1.0, "visual")
    assert {h.path for h in search.search_indexed(str(folder / "good.mp4"), 1.0, "visual",
                                                   top_k=50)} == {str(folder / "good.mp4")}


def test_own_audio_moment_is_the_first_hit(clips, indexed, capsys):
    store = indexed.store
    for k in (0, 5):
        path = clips["paths"][k]
        fid = store.file_id(path)
        rows = store.db.execute("SELECT start, end FROM segments WHERE file_id = ? AND "
                                "level = 'segment' ORDER BY start", (fid,)).fetchall()
        start, end = rows[len(rows) - 2]
        hits = indexed.search_file(path, "audio", start=start, end=end, top_k=5)
        assert (hits[0].path, hits[0].start, hits[0].end) == (path, start, end)
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    # the command line: same answer as JSON
    capsys.readouterr()
    assert cavmae(["search", str(store.folder), "--audio", path, "--start", repr(start),
                   "--end", repr(end), "--top_k", "3", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)[0]
    assert (first["path"], first["start"]) == (path, pytest.approx(start, abs=1e-3))
    # a whole clip by its sound: that clip first among the clips
    hits = indexed.search_file(clips["paths"][3], "audio", level="clip", top_k=3)
    assert hits[0].path == clips["paths"][3]


def test_windows_embedded_in_chunks_equal_one_batch(clips):
    from speechbrain_cavmae.checkpoints import load

    model = load(clips["model"], num_heads=2, decoder_num_heads=2).model.eval()
    one = Embedder(model, batch_size=64).moments(clips["paths"][2])
    chunked = Embedder(model, batch_size=2).moments(clips["paths"][2])
    assert len(one.starts) == len(chunked.thumbs) == 6  # 2.0 s: windows 0.655 s, hop 0.33
    np.testing.assert_allclose(chunked.audio, one.audio, atol=1e-5)
    np.testing.assert_allclose(chunked.visual, one.visual, atol=1e-5)
    assert chunked.thumbs == one.thumbs and list(one.ends)[-1] == one.duration


def test_hits_are_distinct_moments_unless_overlapping(clips, indexed, capsys):
    def overlaps(hits):
        return sum(a.file_id == b.file_id and a.start < b.end and b.start < a.end
                   for i, a in enumerate(hits) for b in hits[:i])

    distinct = indexed.search_indexed(clips["paths"][1], 0.5, top_k=12)
    every = indexed.search_indexed(clips["paths"][1], 0.5, top_k=12, overlapping=True)
    assert len(distinct) == len(every) == 12
    assert overlaps(distinct) == 0 and overlaps(every) > 0
    assert distinct[0] == every[0] and distinct[0].path == clips["paths"][1]
    capsys.readouterr()
    assert cavmae(["search", str(indexed.store.folder), "--indexed", f"{clips['paths'][1]}@0.5",
                   "--overlapping", "--top_k", "12", "--json"]) == 0
    assert [h["start"] for h in json.loads(capsys.readouterr().out)] == \
        [round(h.start, 3) for h in every]


def test_cross_modal_hits_beat_chance(clips, indexed):
    store = indexed.store
    rows = store.db.execute("SELECT s.id, f.path, s.start, s.end FROM segments s JOIN files f "
                            "ON f.id = s.file_id WHERE s.level = 'segment'").fetchall()
    k_of = {p: k for k, p in enumerate(clips["paths"])}
    for modality, target in (("audio", "visual"), ("visual", "audio")):
        right = 0
        for sid, path, start, end in rows:
            hit = indexed.search_segment(sid, modality, target, top_k=1)[0]
            right += class_at(k_of[hit.path], (hit.start + hit.end) / 2) == \
                class_at(k_of[path], (start + end) / 2)
        accuracy = right / len(rows)
        assert accuracy > 2.0 / N_CLASSES, (modality, target, accuracy)  # chance: 1/4


def test_search_errors_name_the_problem(clips, indexed, tmp_path, capsys):
    assert cavmae(["search", str(tmp_path / "none"), "--audio", clips["paths"][0]]) == 1
    assert "no search index" in capsys.readouterr().err
    assert cavmae(["search", str(indexed.store.folder), "--indexed", "nowhere.mp4@3"]) == 1
    assert "not in the index" in capsys.readouterr().err
    assert cavmae(["search", str(indexed.store.folder), "--indexed", "clip.mp4"]) == 1
    assert "PATH@SECONDS" in capsys.readouterr().err
    # an index built with one model refuses another model's vectors
    other = tmp_path / "other.pth"
    torch.save(tiny_model().state_dict(), other)
    assert cavmae(["index", str(clips["folder"]), "--model", str(other), *HEADS,
                   "--output", str(indexed.store.folder)]) == 1
    assert "new --output" in capsys.readouterr().err
    # a query through a model of another width is refused, naming the index's model
    narrow = tmp_path / "narrow.pth"
    torch.save(CAVMAE(img_size=32, audio_length=64, embed_dim=16, modality_specific_depth=1,
                      num_heads=2, decoder_embed_dim=16, decoder_depth=1,
                      decoder_num_heads=2).state_dict(), narrow)
    assert cavmae(["search", str(indexed.store.folder), "--audio", clips["paths"][0],
                   "--model", str(narrow)]) == 1
    assert "holds 32-d" in capsys.readouterr().err


def count_files(index):
    """Files committed to the index folder so far (0 before its tables exist)."""
    if not (index / "index.sqlite").exists():
        return 0
    db = sqlite3.connect(index / "index.sqlite", timeout=5)
    try:
        return db.execute("SELECT count(*) FROM files").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is being created
        return 0
    finally:
        db.close()


RUN_LOGGED = """
import os, sys, time
from speechbrain_cavmae.search import embedder as E
original = E.Embedder.moments
def moments(self, path, *args, **kwargs):
    out = original(self, path, *args, **kwargs)
    with open(os.environ["EMBED_LOG"], "a") as log:
        log.write(path + "\\n")
    time.sleep(float(os.environ.get("EMBED_SLEEP", "0")))
    return out
E.Embedder.moments = moments
from speechbrain_cavmae.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_killed_run_resumes_losing_at_most_the_batch_in_flight(clips, tmp_path):
    out, log = tmp_path / "ix", tmp_path / "embedded.log"
    args = [sys.executable, "-c", RUN_LOGGED, "index", str(clips["folder"]), "--model",
            clips["model"], *HEADS, "--output", str(out), "--batch_files", "2"]
    env = subprocess_env(EMBED_LOG=str(log), EMBED_SLEEP="0.4")
    proc = subprocess.Popen(args, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    committed, deadline = 0, time.time() + 120
    try:
        while committed < 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
            committed = count_files(out)
        assert proc.poll() is None, proc.stderr.read().decode()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        kill_group(proc)
    assert proc.returncode == -signal.SIGKILL
    at_kill = count_files(out)
    assert 2 <= at_kill < len(clips["paths"])
    subprocess.run(args, env=subprocess_env(EMBED_LOG=str(log)), check=True, timeout=300,
                   stdout=subprocess.DEVNULL)
    search = VideoSearch.from_hparams(str(out))
    assert search.store.counts()["files"] == len(clips["paths"])
    times = {p: 0 for p in clips["paths"]}
    for line in log.read_text().splitlines():
        times[line] += 1
    assert set(times.values()) <= {1, 2}
    assert sum(n == 2 for n in times.values()) <= 2  # the batch in flight, at most
    hits = search.search_indexed(clips["paths"][0], 0.5, top_k=len(clips["paths"]) * 20)
    assert {h.path for h in hits} == set(clips["paths"])
