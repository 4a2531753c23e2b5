"""Subprocess helpers of the end-to-end tests.

Every child runs in its own process group (``start_new_session``), so a timeout kills the
whole tree: the recipe, its DataLoader workers and torchrun's workers. A timed-out child
never keeps running in the background of the rest of the suite.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def subprocess_env(**extra):
    """Environment of the recipe runs: the repository importable, one thread per process
    (several threads per process on a small, shared machine slow torch down a lot)."""
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    env.update(extra)
    return env


def kill_group(proc):
    """SIGKILL the process group of ``proc`` (started with ``start_new_session``)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run(args, timeout=600, check=True, env=None, cwd=REPO):
    """Run ``python *args`` in its own process group; return a ``CompletedProcess``.

    On timeout the whole group is killed and ``subprocess.TimeoutExpired`` is raised with
    the output so far. With ``check``, a non-zero exit raises an ``AssertionError`` holding
    the end of stderr.
    """
    cmd = [sys.executable, *map(str, args)]
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env or subprocess_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        stdout, stderr = proc.communicate()
        raise subprocess.TimeoutExpired(cmd, timeout, output=stdout, stderr=stderr) from None
    finally:
        if proc.poll() is None:
            kill_group(proc)
            proc.wait()
    done = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    if check and done.returncode != 0:
        raise AssertionError(
            f"command failed ({done.returncode}): {' '.join(cmd)}\n{stderr[-15000:]}"
        )
    return done


def torchrun(args, nproc=2, timeout=600, check=True, env=None):
    """``torchrun --standalone --nproc_per_node=N`` of a script; returns the process.

    ``--standalone`` lets torchrun pick a free rendezvous port itself, so there is no race
    between choosing a port and binding it, and nothing is retried.
    """
    return run(["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                *args], timeout=timeout, check=check, env=env)
