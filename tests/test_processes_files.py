"""Processes and files (issue 24 item 5, issue 25 point 4): worker counts follow the CPUs
the process may use, pool workers end with their parent, one run per output folder, a
full disk is named, and every output file gets the process's umask.

The in-process bad-input cases (``validate --num_workers 64``, a locked output folder, a
pickle in ``optimizer.ckpt``, a full disk while saving a checkpoint) are in
``test_bad_inputs.py``; here are those that need a subprocess, a umask or a real full disk.
"""

import json
import re
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from media import write_frames, write_label_csv, write_original_manifest, write_video
from processes import REPO, descendants, kill_group, run, run_ranks, subprocess_env
from recipe_cli import DECODER, ENCODER, HP

from speechbrain_cavmae import CAVMAEClassifier
from speechbrain_cavmae.checkpoints.model_folder import write_model_folder
from speechbrain_cavmae.data import pool
from speechbrain_cavmae.data.manifest import LabelTable, read_manifest, write_manifest
from speechbrain_cavmae.data.prepare import write_prepared
from speechbrain_cavmae.training import lock
from speechbrain_cavmae.training.brains import CAVMAEBrain
from speechbrain_cavmae.training.recipe import export_model

ARCH = dict(img_size=32, audio_length=32, embed_dim=32, modality_specific_depth=1,
            shared_depth=1, num_heads=4)


# ------------------------------------------------------------------- worker processes
def _state(pid):
    """``(state, start time)`` of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], fields[19]


def _wait_gone(procs, timeout):
    """Poll until none of ``procs`` ({pid: start time}) runs (gone or a zombie); returns
    the survivors."""
    deadline = time.monotonic() + timeout
    while True:
        alive = {pid for pid, start in procs.items()
                 if (s := _state(pid)) is not None and s[1] == start and s[0] != "Z"}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_available_cpus_follow_the_affinity():
    """A process pinned to one CPU gets one worker for ``--num_workers 64``, with one
    warning naming the flag (twice asked, once warned)."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    code = ("import logging, os; logging.basicConfig(level='WARNING');"
            "os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]});"
            "from speechbrain_cavmae.data.pool import available_cpus, cap_workers;"
            "print(available_cpus(), cap_workers(64), cap_workers(64), cap_workers(0))")
    done = run(["-c", code], timeout=120)
    assert done.stdout.split() == ["1", "1", "1", "0"]
    assert done.stderr.count("--num_workers 64 is more than the 1 CPU(s) available") == 1


def test_cgroup_quota_lowers_the_cpus(monkeypatch):
    """A cgroup quota of 1.5 CPUs leaves 2 of any larger affinity."""
    monkeypatch.setattr(pool, "_cgroup_cpu_limit", lambda: 1.5)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert pool.available_cpus() == 2


def test_loaders_lower_num_workers(tmp_path, monkeypatch):
    """The recipes' DataLoaders (``num_workers: 64`` in the yaml) and ``embed`` /
    ``retrieval``'s loader get the CPUs available (2 here)."""
    from speechbrain_cavmae.tools.inputs import eval_loader
    from speechbrain_cavmae.training.recipe import loader_kwargs

    monkeypatch.setattr(pool, "available_cpus", lambda: 2)
    hparams = {"seed": 0, "train_dataloader_opts": {"num_workers": 64},
               "valid_dataloader_opts": {"num_workers": 0}}
    assert loader_kwargs(hparams, "train_dataloader_opts")["num_workers"] == 2
    assert loader_kwargs(hparams, "valid_dataloader_opts")["num_workers"] == 0
    video = write_video(str(tmp_path / "clip.mp4"), n_frames=20, fps=10, size=(48, 32))
    manifest = write_original_manifest(str(tmp_path / "m.json"), [
        {"video_id": "a", "wav": video, "video": video, "labels": ""}])
    loader = eval_loader(manifest, CAVMAEClassifier(2, **ARCH), num_workers=64)
    assert loader.num_workers == 2


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to list processes")
def test_shard_workers_end_when_the_tool_is_killed(tmp_path):
    """``cavmae shard --num_workers 2`` SIGKILLed while its pool works: its spawned
    workers and multiprocessing's resource tracker end too (before: alive 30 minutes
    later, waiting for work that would never come)."""
    if pool.available_cpus() < 2:
        pytest.skip("a pool of 2 workers needs 2 CPUs (fewer: no pool is started)")
    video = write_video(str(tmp_path / "clip.mp4"), n_frames=20, fps=10, size=(48, 32))
    manifest = write_original_manifest(str(tmp_path / "m.json"), [
        {"video_id": f"v{i}", "wav": video, "video": video, "labels": ""} for i in range(400)])
    proc = subprocess.Popen(
        [sys.executable, "-m", "speechbrain_cavmae", "shard", "--manifest", manifest,
         "--output", str(tmp_path / "shards"), "--shard_size", "1", "--num_workers", "2",
         "--frame_source", "video", "--audio_source", "video", "--no_progress"],
        cwd=REPO, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    family = {}
    try:
        deadline = time.monotonic() + 180
        workers = []
        while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            workers = [p for p in descendants(proc.pid) if "spawn_main" in _cmdline(p)]
        assert proc.poll() is None, "the tool ended before its workers were seen: " + \
            proc.stderr.read().decode()[-2000:]
        assert len(workers) >= 2, "no pool workers started"
        # every descendant (workers, resource tracker), with its start time against reuse
        family = {pid: s[1] for pid in descendants(proc.pid) if (s := _state(pid))}
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        alive = _wait_gone(family, timeout=60)
        assert not alive, [(pid, _cmdline(pid)) for pid in alive]
    finally:
        kill_group(proc)  # the group holds the orphans too (start_new_session)
        proc.wait()
        for pid in _wait_gone(family, timeout=0):
            os.kill(pid, signal.SIGKILL)


def test_watch_parent_ends_an_orphan(tmp_path):
    """The portable fallback (no ``prctl``): a thread that sees the parent gone ends the
    process."""
    child = ("import os, sys, time; from speechbrain_cavmae.data.pool import watch_parent;"
             "watch_parent(os.getppid(), 0.05); print(os.getpid(), flush=True); "
             "time.sleep(600)")
    parent = (f"import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', {child!r}]);"
              "p.wait()")
    proc = subprocess.Popen([sys.executable, "-c", parent], cwd=REPO, env=subprocess_env(),
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        pid = int(proc.stdout.readline())
        start = _state(pid)[1]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not _wait_gone({pid: start}, timeout=60)
    finally:
        kill_group(proc)
        proc.wait()


# ------------------------------------------------------------------------ file modes
@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def _modes(folder):
    return {str(p.relative_to(folder)): p.stat().st_mode & 0o777
            for p in Path(folder).rglob("*") if p.is_file()}


def test_outputs_get_the_process_umask(tmp_path, umask):
    """Model folders, ``finetuned.pth``, ``history.json``, ``test_results.json``, manifests
    and label CSVs are created as any file of the process: 0644 under umask 022, 0640
    under 027 (before: 0600, unreadable by a colleague)."""
    expected = 0o666 & ~umask
    labels = write_label_csv(str(tmp_path / "in_labels.csv"), ["/m/a", "/m/b"])
    out = tmp_path / "out"
    out.mkdir()
    model = CAVMAEClassifier(2, **ARCH)
    write_model_folder(model, str(out / "model"), label_csv=labels, loss="BCE")
    export_model(model, str(out / "finetuned.pth"))
    brain = SimpleNamespace(hparams=SimpleNamespace(output_folder=str(out)))
    CAVMAEBrain.write_results(brain, "test_results.json", {"acc": 1.0})
    CAVMAEBrain.append_history(brain, {"epoch": 1, "loss": 0.5})
    write_frames(str(tmp_path / "frames"), "a", n=1, size=8)
    data = {"a": {"video_id": "a", "wav": str(tmp_path / "a.wav"),
                  "video_path": str(tmp_path / "frames"),
                  "labels": ["/m/a"]}}
    write_manifest(data, str(out / "manifest.json"))
    write_prepared([{"video_id": "a", "wav": "a.wav", "labels": "/m/a"}], [],
                   str(out / "prepared.json"), 1)
    LabelTable.from_csv(labels).to_csv(str(out / "labels.csv"))
    modes = _modes(out)
    for name in ("model/hyperparams.yaml", "model/model.ckpt", "model/label_encoder.txt",
                 "finetuned.pth", "test_results.json", "history.json", "manifest.json",
                 "prepared.json", "labels.csv"):
        assert modes.pop(name) == expected, (name, oct(expected))
    assert all(mode == expected for mode in modes.values()), modes
    assert len(read_manifest(str(out / "manifest.json"))) == 1


# ------------------------------------------------------------------ output folder lock
def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(folder, host, pid):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, lock.LOCK_NAME)
    with open(path, "w", encoding="utf8") as handle:
        json.dump({"host": host, "pid": pid, "created": time.time()}, handle)
    return path


def test_lock_refused_while_its_run_lives_stale_taken_over(tmp_path, caplog):
    """A live run's lock refuses the folder (naming host and pid); a dead run's lock is
    taken over with a warning; another host's lock is refused; this process may take its
    own lock again; release removes it."""
    import socket

    host = socket.gethostname()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        path = _write_lock(tmp_path / "live", host, sleeper.pid)
        with pytest.raises(lock.OutputFolderLocked,
                           match=rf"in use by process {sleeper.pid} on host {host}"):
            lock.acquire(str(tmp_path / "live"))
        assert json.loads(Path(path).read_text())["pid"] == sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()
    dead = _dead_pid()
    path = _write_lock(tmp_path / "stale", host, dead)
    with caplog.at_level("WARNING", logger=lock.__name__):
        taken = lock.acquire(str(tmp_path / "stale"))
    assert taken.pid == os.getpid() and json.loads(Path(path).read_text())["pid"] == os.getpid()
    assert f"taking over the lock of process {dead} on host {host}" in caplog.text
    lock.acquire(str(tmp_path / "stale"))  # again, from this process
    lock.release(str(tmp_path / "stale"))
    assert not Path(path).exists()
    _write_lock(tmp_path / "remote", "another-host", os.getpid())
    with pytest.raises(lock.OutputFolderLocked, match="on host another-host .*remove the lock"):
        lock.acquire(str(tmp_path / "remote"))


@pytest.mark.slow
def test_ddp_every_rank_stops_on_a_locked_folder(tmp_path):
    """Two DDP processes on an output folder in use by a live run: the main process finds
    the lock, and both stop with its error before anything is written."""
    import socket

    out = tmp_path / "ddp_locked"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        _write_lock(out, socket.gethostname(), sleeper.pid)
        args = [REPO / "recipes" / "AudioSet" / "train.py", HP / "cavmae.yaml",
                "--train_data", tmp_path / "unused.json", "--output_folder", out, *ENCODER,
                *DECODER, "--distributed_backend", "gloo", "--device", "cpu"]
        ranks = run_ranks(args, nproc=2, timeout=300)
    finally:
        sleeper.kill()
        sleeper.wait()
    for rank, proc in enumerate(ranks):
        text = proc.stdout + proc.stderr
        assert proc.returncode != 0, (rank, text[-3000:])
        assert f"in use by process {sleeper.pid}" in text, (rank, text[-3000:])
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [lock.LOCK_NAME, "save"]


# ------------------------------------------------------------------------- full disk
def test_full_disk_during_training_ends_in_one_line(tmp_path, toy):
    """A pretraining run whose output folder is a 600 KB tmpfs (mounted in a user and mount
    namespace; skipped where that is not allowed): it stops at the first checkpoint with
    one line naming the file and "No space left on device" (before: torch's
    ``basic_ios::clear: iostream error``), and removes the unfinished checkpoint."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=600k "
                            f"tmpfs {mnt}"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + probe.stderr.decode()[-200:])
    train = json.loads(Path(toy["train"]).read_text())
    train["data"] = train["data"][:4]
    subset = Path(toy["train"]).parent / "full_disk_train.json"  # its paths are relative
    subset.write_text(json.dumps(train))
    recipe = [sys.executable, str(REPO / "recipes" / "AudioSet" / "train.py"),
              str(HP / "cavmae.yaml"), "--train_data", str(subset),
              "--output_folder", str(mnt / "run"), *ENCODER, *DECODER, "--batch_size", "4",
              "--number_of_epochs", "2"]
    script = (f"mount -t tmpfs -o size=600k tmpfs {mnt} && "
              + " ".join(f"'{a}'" for a in recipe) + f"; echo rc=$?; ls -R {mnt}/run/save")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                          text=True, timeout=600, env=subprocess_env(OMP_NUM_THREADS="1"))
    # SpeechBrain's excepthook logs the uncaught error (to stdout)
    text = done.stdout + done.stderr
    assert "\nrc=1\n" in done.stdout, text[-3000:]
    last = done.stdout.split("\nrc=1\n")[0].strip().splitlines()[-1]
    assert re.fullmatch(r"\S*CheckpointFileError: cannot write the checkpoint file "
                        + re.escape(str(mnt / "run" / "save")) + r"/CKPT\+[^/]+/\w+\.ckpt: No "
                        r"space left on device \(\d+ bytes free\)", last), text[-3000:]
    assert "Logging error" not in text and "basic_ios" not in last
    assert "CKPT+" not in done.stdout.split("\nrc=1\n")[1]  # the unfinished one was removed
