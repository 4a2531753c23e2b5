"""Run several recipe command lines one after the other in a single Python process.

Usage (by the end-to-end tests)::

    python tests/recipe_chain.py PLAN.json

``PLAN.json`` is a list of runs, each ``{"argv": [script, arg, ...], "probe": path}``.
Each run executes the recipe *script* itself (``runpy``, as ``__main__``, with
``sys.argv`` set to ``argv``), exactly as ``python script arg ...`` would, but without
paying the start-up of torch and SpeechBrain (seconds) once per run.

With ``probe``, the run records the dtype of the output of every ``torch.nn.Linear`` call,
separately while gradients are enabled (training steps) and disabled (validation and
test), and writes ``{"train": {dtype: calls}, "eval": {dtype: calls}}`` to that path: the
evidence that ``--precision bf16`` really runs the training steps under autocast.
"""

import collections
import json
import runpy
import sys

import torch


def _probe_linear_dtypes():
    counts = {"train": collections.Counter(), "eval": collections.Counter()}

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Linear) and isinstance(output, torch.Tensor):
            counts["train" if torch.is_grad_enabled() else "eval"][str(output.dtype)] += 1

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    return counts, handle


def main(plan_path):
    with open(plan_path, encoding="utf8") as handle:
        plan = json.load(handle)
    for run in plan:
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


if __name__ == "__main__":
    main(sys.argv[1])
