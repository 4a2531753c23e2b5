"""Command lines of the recipes for the end-to-end tests: a tiny model on the toy data.

A tiny CAV-MAE (embed_dim 32, one modality-specific layer, 2 heads, 64 px frames, 96 fbank
frames) keeps each recipe run to seconds. The ``toy`` fixture (``conftest.py``) is the
generated data set, 4 classes, 64 training, 32 validation and 32 test clips.
"""

import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from processes import REPO, kill_group, run, subprocess_env

AUDIOSET = str(REPO / "recipes" / "AudioSet" / "train.py")
VGGSOUND = str(REPO / "recipes" / "VGGSound" / "train.py")
HP = REPO / "hparams"
#: Runs several recipe command lines in one process (see its docstring).
CHAIN = REPO / "tests" / "recipe_chain.py"

ENCODER = [
    "--embed_dim", "32", "--modality_specific_depth", "1", "--num_heads", "2",
    "--image_size", "64", "--audio_length", "96", "--num_workers", "0",
    "--warmup_steps", "4", "--noprogressbar",
]
DECODER = ["--decoder_embed_dim", "16", "--decoder_depth", "1", "--decoder_num_heads", "2"]
# The toy task in few steps: no mixup / SpecAugment / noise / smoothing.
NO_AUG = ["--mixup", "0", "--freqm", "0", "--timem", "0", "--noise", "False",
          "--label_smooth", "0"]


def all_finite(stats):
    return all(math.isfinite(v) for v in stats.values() if isinstance(v, (int, float)))


def write_plan(path, plan):
    """Write the plan of ``recipe_chain.py`` (paths as strings); returns ``path``."""
    path.write_text(json.dumps([{k: ([str(a) for a in v] if k == "argv" else v)
                                 for k, v in entry.items()} for entry in plan], default=str))
    return path


def data_args(toy, labels=True, test=True):
    args = ["--train_data", toy["train"], "--valid_data", toy["valid"]]
    if test:
        args += ["--test_data", toy["test"]]
    if labels:
        args += ["--label_csv", toy["label_csv"]]
    return args


def pretrain_args(toy, out, epochs=2, batch_size=8, extra=()):
    return [AUDIOSET, str(HP / "cavmae.yaml"), *data_args(toy, labels=False, test=False),
            "--output_folder", str(out), *ENCODER, *DECODER, "--batch_size", str(batch_size),
            "--number_of_epochs", str(epochs), *extra]


def complete_intra_epoch_steps(save):
    """``{checkpoint name: training step}`` of the complete intra-epoch checkpoints.

    ``AtomicCheckpointer`` publishes ``CKPT.yaml`` last, once every file is written.
    """
    found = {}
    for ckpt in save.glob("CKPT+*") if save.is_dir() else []:
        try:
            meta = (ckpt / "CKPT.yaml").read_text()
            brain = (ckpt / "brain.ckpt").read_text()
        except OSError:
            continue  # not complete yet, or being deleted
        if "brain_intra_epoch_ckpt" in meta:
            found[ckpt.name] = int(re.search(r"step: (\d+)", brain).group(1))
    return found


def kill_after_intra_epoch_checkpoint(args, save, min_step=2, timeout=300):
    """Run ``python *args`` and SIGKILL it once a complete intra-epoch checkpoint of step
    ``min_step`` or later is in ``save``; returns those checkpoints (``{name: step}``).

    Kills the whole process group when no such checkpoint comes within ``timeout`` s.
    """
    return kill_all_after_intra_epoch_checkpoint([args], save, min_step, timeout)


def kill_all_after_intra_epoch_checkpoint(commands, save, min_step=2, timeout=300):
    """Start every ``python *args`` of ``commands`` together (each in a process group of
    its own: the launchers of a multi-node run) and SIGKILL all of them, their process
    groups and every descendant (torchrun's workers), once a complete intra-epoch
    checkpoint of step ``min_step`` or later is in ``save``; returns the complete ones left
    after the kill (``{name: step}``). Every process is killed when none comes within
    ``timeout`` s, and the call then fails with the end of each command's stderr.
    """
    procs, errs = [], []
    killed = {}
    try:
        for args in commands:
            errs.append(tempfile.TemporaryFile("w+"))  # read at the end: a pipe could fill
            procs.append(subprocess.Popen([sys.executable, *map(str, args)], cwd=REPO,
                                          env=subprocess_env(), stdout=subprocess.DEVNULL,
                                          stderr=errs[-1], text=True, start_new_session=True))
        deadline = time.time() + timeout
        while time.time() < deadline and all(p.poll() is None for p in procs):
            done = complete_intra_epoch_steps(save)
            if done and max(done.values()) >= min_step:
                killed = done
                break
            time.sleep(0.01)
    finally:
        for proc in procs:
            if proc.poll() is None:
                kill_group(proc)
        for proc in procs:
            proc.wait(timeout=60)
        stderr = []
        for err in errs:
            err.seek(0)
            stderr.append(err.read()[-3000:])
            err.close()
    assert all(p.returncode == -signal.SIGKILL for p in procs), "\n".join(stderr)
    assert killed, "no intra-epoch checkpoint was written\n" + "\n".join(stderr)
    return complete_intra_epoch_steps(save)  # as left by the kill (a later one may be in)


def chain_while_killing(plan_path, killed_args, save, marker, min_step=2):
    """Run ``recipe_chain.py`` on ``plan_path`` while, alongside (one more core busy, no
    start-up to wait for), ``killed_args`` is run and SIGKILLed by
    :func:`kill_after_intra_epoch_checkpoint`; ``marker`` then says ``go`` (``abort`` when
    the kill failed): the plan's entry with ``"wait_for": marker`` (the resumption) starts
    only then. Returns the complete intra-epoch checkpoints in ``save`` after the kill
    (``{name: step}``) and whether the killed run had written its ``history.json`` (the
    output folder is the parent of ``save``).
    """
    killed = None
    with ThreadPoolExecutor(1) as pool:
        chain = pool.submit(run, [CHAIN, plan_path])
        try:
            kill_after_intra_epoch_checkpoint(killed_args, save, min_step=min_step)
            killed = (complete_intra_epoch_steps(save),
                      (save.parent / "history.json").exists())
        finally:
            partial = f"{marker}.partial"
            with open(partial, "w", encoding="utf8") as handle:
                handle.write("go" if killed is not None else "abort")
            os.replace(partial, marker)
        chain.result()
    return killed
