"""Run several recipe command lines one after the other in a single Python process.

Usage (by the end-to-end tests)::

    python tests/recipe_chain.py PLAN.json
    python -m torch.distributed.run --standalone --nproc_per_node=2 \\
        tests/recipe_chain.py PLAN.json

``PLAN.json`` is a list of runs, each ``{"argv": [script, arg, ...], "probe": path,
"wait_for": path, "remove_before": [path, ...], "copy_after": [[src, dst], ...]}`` (all but
``argv`` optional). Each run executes the recipe *script* itself (``runpy``, as ``__main__``, with
``sys.argv`` set to ``argv``), exactly as ``python script arg ...`` would, but without
paying the start-up of torch and SpeechBrain (seconds) once per run.

``wait_for`` holds the run back until the file exists and says ``go`` (another process,
run alongside, has done what this run needs; the chain stops when it says anything else);
``remove_before`` deletes files before the run (a result that the run must write anew);
``copy_after`` copies files or folders after it (the state between two runs that share an
output folder, for the test to compare with the state after the second).

With ``probe``, the run records the dtype of the output of every ``torch.nn.Linear`` call,
separately while gradients are enabled (training steps) and disabled (validation and
test), and writes ``{"train": {dtype: calls}, "eval": {dtype: calls}}`` to that path: the
evidence that ``--precision bf16`` really runs the training steps under autocast.

Under ``torchrun`` every process runs the plan. A recipe leaves its process group at the
end, and the next one creates the default group again; torchrun's own store still holds
the keys of the first group (the same group name comes back), so each run after the first
gets a store of its own, hosted by rank 0 on a free port that rank 0 publishes in
torchrun's store.
"""

import collections
import json
import os
import runpy
import shutil
import socket
import sys
import time
from datetime import timedelta

import torch

#: torchrun's own store (``MASTER_ADDR``, ``MASTER_PORT``), when the workers use it.
AGENT_STORE = ((os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
               if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" else None)


def _probe_linear_dtypes():
    counts = {"train": collections.Counter(), "eval": collections.Counter()}

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Linear) and isinstance(output, torch.Tensor):
            counts["train" if torch.is_grad_enabled() else "eval"][str(output.dtype)] += 1

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    return counts, handle


def _own_store(index):
    """Point ``env://`` of run ``index`` (> 0) at a new store on a port chosen by rank 0."""
    host, port = AGENT_STORE
    agent = torch.distributed.TCPStore(host, port, is_master=False,
                                       timeout=timedelta(seconds=600))
    key = f"recipe_chain/run{index}/port"
    if int(os.environ["RANK"]) == 0:
        with socket.socket() as sock:
            sock.bind((host, 0))
            agent.set(key, str(sock.getsockname()[1]))
    os.environ["MASTER_PORT"] = agent.get(key).decode()
    os.environ["TORCHELASTIC_USE_AGENT_STORE"] = "False"


def _wait_for(path, timeout=600):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"recipe_chain: {path} did not appear within {timeout} s")
        time.sleep(0.05)
    with open(path, encoding="utf8") as handle:
        said = handle.read().strip()
    if said != "go":
        raise SystemExit(f"recipe_chain: {path} says {said!r}, not 'go': stopping")


def _copy(src, dst):
    if os.path.isdir(src):
        shutil.copytree(src, dst)
    else:
        shutil.copy2(src, dst)


def main(plan_path):
    with open(plan_path, encoding="utf8") as handle:
        plan = json.load(handle)
    for index, run in enumerate(plan):
        if index and AGENT_STORE:
            _own_store(index)
        if run.get("wait_for"):
            _wait_for(run["wait_for"])
        for path in run.get("remove_before", []):
            os.remove(path)
        counts = handle = None
        if run.get("probe"):
            counts, handle = _probe_linear_dtypes()
        sys.argv = [str(a) for a in run["argv"]]
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
        finally:
            if handle is not None:
                handle.remove()
        if counts is not None:
            with open(run["probe"], "w", encoding="utf8") as out:
                json.dump({k: dict(v) for k, v in counts.items()}, out)
        for src, dst in run.get("copy_after", []):
            _copy(src, dst)


if __name__ == "__main__":
    main(sys.argv[1])
