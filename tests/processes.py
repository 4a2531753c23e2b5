"""Subprocess helpers of the end-to-end tests.

Every child runs in its own process group (``start_new_session``), so a timeout kills the
whole tree: the recipe, its DataLoader workers and torchrun's workers. A timed-out child
never keeps running in the background of the rest of the suite.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
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


def descendants(pid):
    """Process ids of every descendant of ``pid`` (read from ``/proc``; empty elsewhere)."""
    children = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf8") as handle:
                # pid (comm) state ppid ...: comm may hold spaces, so split after ')'
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_group(proc):
    """SIGKILL ``proc``, its process group and every descendant.

    torchrun starts each worker in a process group of its own, so killing the group of
    ``proc`` (started with ``start_new_session``) alone would leave the workers running.
    """
    pids = descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
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


def free_port():
    """A TCP port free at the time of the call (for a rendezvous on localhost)."""
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def run_ranks(args, nproc=2, timeout=600):
    """Run ``python *args`` as ``nproc`` DDP processes started directly (no torchrun), with
    the ``RANK`` / ``WORLD_SIZE`` / ``MASTER_PORT``... variables torchrun would set; returns
    one ``CompletedProcess`` per rank, whatever their exit status.

    Unlike under torchrun, whose agent stops the other processes as soon as one fails, each
    process ends on its own: a test can check that every rank stopped with its own error.
    The output goes to files (a full pipe would block a process, and with it the others).
    When they are not all done within ``timeout`` s (a hang), every process group is killed
    and ``subprocess.TimeoutExpired`` is raised with the end of each rank's stderr.
    """
    cmd = [sys.executable, *map(str, args)]
    port = str(free_port())
    procs, files = [], []
    try:
        for rank in range(nproc):
            env = subprocess_env(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc),
                                 LOCAL_WORLD_SIZE=str(nproc), MASTER_ADDR="127.0.0.1",
                                 MASTER_PORT=port)
            out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
            files.append((out, err))
            procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err,
                                          text=True, start_new_session=True))
        deadline = time.monotonic() + timeout
        hung = False
        for proc in procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                hung = True
                break
    finally:
        for proc in procs:
            if proc.poll() is None:
                kill_group(proc)
                proc.wait()
        texts = []
        for out, err in files:
            out.seek(0)
            err.seek(0)
            texts.append((out.read(), err.read()))
            out.close()
            err.close()
    if hung:
        stderr = "\n".join(f"--- rank {r}:\n{err[-5000:]}" for r, (_, err) in enumerate(texts))
        raise subprocess.TimeoutExpired(cmd, timeout, stderr=stderr)
    return [subprocess.CompletedProcess(cmd, p.returncode, out, err)
            for p, (out, err) in zip(procs, texts)]


def import_script(path):
    """Import a script that is not part of a package (``recipes/*/train.py``, the demo)."""
    import importlib.util

    path = Path(path)
    name = "script_" + "_".join(path.relative_to(REPO).with_suffix("").parts)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
