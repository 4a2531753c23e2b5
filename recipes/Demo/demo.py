"""End-to-end CAV-MAE demo on the toy audio-visual world (``make demo``).

Steps, each through the project's real entry points:

1. generate (or reuse) the toy dataset (:func:`speechbrain_cavmae.data.toy.generate_toy_dataset`);
2. pretrain a small CAV-MAE with ``recipes/AudioSet/train.py hparams/cavmae.yaml`` and
   command-line overrides (a subprocess, exactly what a user runs);
3. fine-tune from that checkpoint three times (``hparams/cavmae_ft.yaml``,
   ``cavmae_ft_audioonly.yaml``, ``cavmae_ft_videoonly.yaml``) and evaluate on the test
   split (single frame and multi-frame);
4. audio->visual and visual->audio retrieval on the test split with the pretrained
   model's pooled single-modality embeddings (:mod:`speechbrain_cavmae.tools.retrieval`);
5. inpainting figures (:mod:`speechbrain_cavmae.tools.inpaint`) and loss curves
   (:mod:`speechbrain_cavmae.tools.plots`);
6. ``summary.md``: metrics with chance levels, wall time per stage, commands, figures.

``--ablation`` instead pretrains the same model three ways (contrastive + MAE, MAE only,
contrastive only) with the same budget, evaluates retrieval and a multimodal fine-tuning
of each, and prints the comparison table (also written to ``ablation.md``).

Usage::

    python recipes/Demo/demo.py --out results/demo [--quick] [--ablation]

``--quick`` is a shrunken version (fewer clips and epochs, about half the time of the full
one); ``--smoke`` a tiny one (one epoch per stage, a few dozen clips, only the multimodal
fine-tuning) that exercises the plumbing only, as in the tests.

The demo verifies its own results (:data:`CHECKS`, :func:`evaluate_checks`): retrieval
well above chance, fine-tuned accuracies, falling pretraining losses. Each check is
written into ``summary.md`` and ``summary.json`` as pass / fail, and the command exits
with status 1 if one fails (``make demo`` then fails). The thresholds sit well above
chance and below what the full budget reaches (see :data:`CHECKS`); the quick and smoke
budgets record the checks without enforcing them, since they learn too little.

Authors
 * speechbrain-cavmae contributors 2026
"""

import argparse
import datetime
import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # the benchmarks package, for machine_description

from benchmarks.machine import machine_description  # noqa: E402
RECIPE = Path("recipes") / "AudioSet" / "train.py"
HPARAMS = Path("hparams")

#: Fbank statistics of the default toy set (see ``speechbrain_cavmae.data.toy``).
TOY_MEAN = -7.157
TOY_STD = 3.098
N_CLASSES = 8

#: The small model: 64-d, 2 modality-specific + 1 shared layer, 64 px frames, 192
#: fbank frames (1.94 s clips); decoder 64-d x 1 block.
MODEL_ARGS = {
    "embed_dim": 64,
    "modality_specific_depth": 2,
    "shared_depth": 1,
    "num_heads": 4,
    "image_size": 64,
    "audio_length": 192,
    "dataset_mean": TOY_MEAN,
    "dataset_std": TOY_STD,
}
DECODER_ARGS = {"decoder_embed_dim": 64, "decoder_depth": 1, "decoder_num_heads": 4}

#: Settings common to every run: fbank on the training device (batched; much faster
#: than per-clip fbank in the loader on a small CPU), no loader processes.
RUN_ARGS = {"features_on_device": True, "num_workers": 0, "device": "cpu"}

#: Pretraining objective. The paper weighs the contrastive loss 0.01 with temperature
#: 0.05 for ViT-B initialised from ImageNet MAE weights; a 64-d model trained from
#: scratch on 480 clips does not move the contrastive loss off chance with those settings
#: in any affordable number of steps, so the demo uses weight 1.0 and temperature 0.5.
PRETRAIN_OBJECTIVE = {"contrast_loss_weight": 1.0, "contrastive_temperature": 0.5,
                      "mae_loss_weight": 1.0}

ABLATION = {
    "contrastive + MAE": {"contrast_loss_weight": 1.0, "mae_loss_weight": 1.0},
    "MAE only": {"contrast_loss_weight": 0.0, "mae_loss_weight": 1.0},
    "contrastive only": {"contrast_loss_weight": 1.0, "mae_loss_weight": 0.0},
}

FT_MODES = {
    "multimodal": "cavmae_ft.yaml",
    "audioonly": "cavmae_ft_audioonly.yaml",
    "videoonly": "cavmae_ft_videoonly.yaml",
}

#: Budgets. ``full``: ``make demo``; ``quick``: a shrunken version (``--quick``);
#: ``smoke``: the test's plumbing check (``--smoke``), whose results are not checked.
BUDGETS = {
    "full": {
        "data": {"n_train": 960, "n_valid": 80, "n_test": 80},
        "pretrain": {"number_of_epochs": 60, "batch_size": 24, "lr": 1e-3,
                     "warmup_steps": 20, "lrscheduler_start": 50, "lrscheduler_step": 5},
        "finetune": {"number_of_epochs": 8, "batch_size": 24, "lr": 1e-3, "head_lr": 5,
                     "warmup_steps": 10, "lrscheduler_start": 5, "lrscheduler_step": 1,
                     "wa_start": 6, "wa_end": 8},
        "inpaint_clips": 2,
    },
    "quick": {
        "data": {"n_train": 256, "n_valid": 16, "n_test": 48},
        "pretrain": {"number_of_epochs": 45, "batch_size": 16, "lr": 1e-3,
                     "warmup_steps": 5, "lrscheduler_start": 100, "lrscheduler_step": 10},
        "finetune": {"number_of_epochs": 4, "batch_size": 16, "lr": 1e-3, "head_lr": 5,
                     "warmup_steps": 4, "lrscheduler_start": 100, "lrscheduler_step": 1,
                     "wa_start": 3, "wa_end": 4},
        "inpaint_clips": 1,
        # the recorded quick run (benchmarks/results/2026-11-30-demo-quick/) reached R@1 of
        # 1-3x chance and fine-tuned accuracies of 0.44-0.69: too little learning for the
        # checks, which are recorded but not enforced at this budget
        "enforce_checks": False,
    },
    "smoke": {
        "data": {"n_train": 32, "n_valid": 8, "n_test": 8},
        "pretrain": {"number_of_epochs": 1, "batch_size": 8, "lr": 1e-3,
                     "warmup_steps": 1, "lrscheduler_start": 100, "lrscheduler_step": 10},
        "finetune": {"number_of_epochs": 1, "batch_size": 8, "lr": 1e-3, "head_lr": 5,
                     "warmup_steps": 1, "lrscheduler_start": 100, "lrscheduler_step": 1,
                     "wa_start": 1, "wa_end": 1},
        "inpaint_clips": 1,
        # each recipe run costs ~8 s of imports: one fine-tuning shows the plumbing, and
        # its missing-modality evaluations are left out
        "finetune_modes": ["multimodal"],
        "missing_modes": [],
        "enforce_checks": False,
    },
}

#: The demo's own checks: ``(name, metric, comparison, threshold)``. ``metric`` is a key of
#: :func:`check_metrics`; thresholds are multiples of chance (``chance_r1`` = 1 / test
#: clips, ``chance_medr`` = (test clips + 1) / 2, ``chance_acc`` = 1 / classes) or plain
#: numbers. They are enforced for the full budget (``make demo``) only. The thresholds stay
#: well above chance and below what the full demo reaches (recorded run of 2026-11-30,
#: ``benchmarks/results/2026-11-30-demo-full/``: R@1 8x / 10x chance, median ranks 5 / 6 of
#: 40.5, fine-tuned accuracies 0.96-1.0, the multimodal model given audio only 0.875 and
#: frames only 0.80, total loss 0.74x, masked reconstruction 0.67x, contrastive drop 0.70;
#: chance accuracy 0.125). The loss thresholds
#: leave a margin below what even the shorter ``--quick`` run reached
#: (``benchmarks/results/2026-11-30-demo-quick/``: total loss 0.83x and masked
#: reconstruction loss 0.74x of the first epoch's, contrastive loss 0.29 lower). The
#: contrastive loss starts at its chance level ln(batch size) and is checked by its drop,
#: not a ratio: its floor is far above zero at these batch sizes.
CHECKS = [
    ("audio->visual retrieval R@1 >= 3x chance", "a2v_R@1", ">=", (3, "chance_r1")),
    ("visual->audio retrieval R@1 >= 3x chance", "v2a_R@1", ">=", (3, "chance_r1")),
    ("audio->visual median rank <= half of chance", "a2v_MedR", "<=", (0.5, "chance_medr")),
    ("visual->audio median rank <= half of chance", "v2a_MedR", "<=", (0.5, "chance_medr")),
    ("fine-tuned multimodal accuracy >= 6x chance (0.75)", "ft_multimodal_acc", ">=",
     (6, "chance_acc")),
    ("fine-tuned audio-only accuracy >= 4x chance (0.5)", "ft_audioonly_acc", ">=",
     (4, "chance_acc")),
    ("fine-tuned visual-only accuracy >= 4x chance (0.5)", "ft_videoonly_acc", ">=",
     (4, "chance_acc")),
    ("multimodal model given audio only (missingaudioonly) >= 3x chance (0.375)",
     "ft_missingaudioonly_acc", ">=", (3, "chance_acc")),
    ("multimodal model given frames only (missingvideoonly) >= 3x chance (0.375)",
     "ft_missingvideoonly_acc", ">=", (3, "chance_acc")),
    ("pretraining loss, last epoch <= 0.95 x first", "pretrain_loss_ratio", "<=",
     (0.95, None)),
    ("masked reconstruction loss, last epoch <= 0.9 x first", "pretrain_loss_mae_ratio", "<=",
     (0.9, None)),
    ("contrastive loss falls by >= 0.05 from the first epoch", "pretrain_loss_c_drop", ">=",
     (0.05, None)),
]

#: Fine-tuning on the toy task: single-label cross-entropy, no mixup / SpecAugment /
#: noise (the 1.94 s clips are shorter than the original's 192-frame time mask).
FINETUNE_FIXED = {"loss": "CE", "mixup": 0.0, "freqm": 0, "timem": 0, "noise": False,
                  "label_smooth": 0.0, "balanced_sampling": False, "multi_frame_eval": True}
#: Pretraining: no noise / time roll (it would shift the onset that the frames show).
PRETRAIN_FIXED = {"noise": False}


# ----------------------------------------------------------------------------- helpers
def _fmt(value):
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value != int(value) or abs(value) < 1 else f"{value:g}"
    return str(value)


def override_args(*dicts):
    """``--key value`` arguments from dicts (later dicts win)."""
    merged = {}
    for d in dicts:
        merged.update(d)
    args = []
    for key, value in merged.items():
        args += [f"--{key}", _fmt(value)]
    return args


class Runner:
    """Runs the stages, records commands and wall times.

    Arguments
    ---------
    out : Path
        Output folder of the demo.
    threads : int
        CPU threads of every process (``OMP_NUM_THREADS``, ``torch.set_num_threads``).
    progress : bool
        Show the recipes' progress bars (their stderr) on the terminal.
    """

    def __init__(self, out, threads=2, progress=True):
        self.out = Path(out)
        self.threads = threads
        self.progress = progress
        self.timings = {}
        self.commands = []

    def env(self):
        """Environment of the recipe subprocesses."""
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[key] = str(self.threads)
        return env

    def say(self, message):
        """A progress line on stderr."""
        print(f"[demo] {message}", file=sys.stderr, flush=True)

    def recipe(self, name, hparams_file, folder, overrides, fresh=True):
        """Run the AudioSet recipe; its stdout goes to ``folder.log``
        (``folder.<name>.log`` for a run in an existing folder, ``fresh=False``: e.g. an
        evaluation of its checkpoints).

        Returns the wall time in seconds. Raises ``RuntimeError`` with the log's tail on
        failure.
        """
        folder = Path(folder)
        if fresh and folder.exists():
            shutil.rmtree(folder)  # a fresh run, not a resumed one
        folder.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(RECIPE), str(HPARAMS / hparams_file),
               "--output_folder", str(folder), *overrides]
        if not self.progress:
            cmd.append("--noprogressbar")
        shown = ["python"] + [str(c) for c in cmd[1:]]
        self.commands.append((name, shlex.join(shown)))
        log_path = folder.parent / (f"{folder.name}.log" if fresh else
                                    f"{folder.name}.{name.replace(' ', '_')}.log")
        self.say(f"{name}: {shlex.join(shown)}")
        start = time.time()
        with open(log_path, "w", encoding="utf8") as log:
            proc = subprocess.run(
                cmd, cwd=REPO, env=self.env(), stdout=log,
                stderr=None if self.progress else subprocess.STDOUT,
            )
        seconds = time.time() - start
        self.timings[name] = seconds
        if proc.returncode != 0:
            tail = log_path.read_text(encoding="utf8", errors="replace")[-3000:]
            raise RuntimeError(
                f"{name} failed (exit {proc.returncode}); log {log_path}:\n{tail}"
            )
        self.say(f"{name}: done in {seconds:.0f} s")
        return seconds

    def cavmae(self, name, args):
        """Run ``cavmae ARGS`` in-process and record it; a non-zero exit is an error."""
        from speechbrain_cavmae.cli import main as cavmae

        self.commands.append((name, shlex.join(["cavmae", *args])))
        status = self.timed(name, cavmae, args)
        if status:
            raise RuntimeError(f"{name} failed (exit {status}): cavmae {shlex.join(args)}")

    def timed(self, name, func, *args, **kwargs):
        """Run ``func`` in-process and record its wall time."""
        start = time.time()
        result = func(*args, **kwargs)
        self.timings[name] = time.time() - start
        return result


# ------------------------------------------------------------------------------ stages
def make_data(runner, data_dir, budget):
    """Generate (or reuse) the toy dataset; returns its paths."""
    from speechbrain_cavmae.data.toy import generate_toy_dataset

    runner.say(f"toy data in {data_dir}")
    paths = runner.timed("data", generate_toy_dataset, data_dir, **budget["data"])
    runner.commands.append((
        "data",
        "cavmae toy --output {} --n_train {} --n_valid {} --n_test {}".format(
            data_dir, *(budget["data"][k] for k in ("n_train", "n_valid", "n_test"))),
    ))
    return paths


def data_args(paths, with_labels=False):
    """Manifest overrides of the recipe."""
    args = {"train_data": paths["train"], "valid_data": paths["valid"],
            "test_data": paths["test"]}
    if with_labels:
        args["label_csv"] = paths["label_csv"]
    return args


def pretrain(runner, name, folder, paths, budget, objective):
    """Pretrain; returns ``(model folder, history, test results)``."""
    from speechbrain_cavmae.tools.plots import read_history

    overrides = override_args(data_args(paths), MODEL_ARGS, DECODER_ARGS, RUN_ARGS,
                              PRETRAIN_FIXED, budget["pretrain"], objective)
    runner.recipe(name, "cavmae.yaml", folder, overrides)
    folder = Path(folder)
    with open(folder / "test_results.json", encoding="utf8") as handle:
        results = json.load(handle)
    return folder / "model", read_history(folder), results


def finetune(runner, name, folder, paths, budget, mode, checkpoint):
    """Fine-tune in ``mode`` from ``checkpoint``; returns ``(history, test results)``."""
    from speechbrain_cavmae.tools.plots import read_history

    overrides = override_args(data_args(paths, with_labels=True), MODEL_ARGS, RUN_ARGS,
                              FINETUNE_FIXED, budget["finetune"],
                              {"pretrained_path": str(checkpoint)})
    runner.recipe(name, FT_MODES[mode], folder, overrides)
    folder = Path(folder)
    with open(folder / "test_results.json", encoding="utf8") as handle:
        results = json.load(handle)
    return read_history(folder), results


#: The multimodal model evaluated with one modality (the original's missing-modality
#: modes), through the recipe's ``--test_only`` on the multimodal fine-tuning's checkpoints.
MISSING_MODES = ("missingaudioonly", "missingvideoonly")


def evaluate_missing_modality(runner, folder, paths, budget, mode):
    """Evaluate the multimodal fine-tuning in ``folder`` with ``--ft_mode mode``; returns
    its test results (``folder/<mode>.json``)."""
    overrides = override_args(
        {"valid_data": paths["valid"], "test_data": paths["test"],
         "label_csv": paths["label_csv"]},
        MODEL_ARGS, RUN_ARGS, FINETUNE_FIXED,
        {"batch_size": budget["finetune"]["batch_size"], "ft_mode": mode,
         "test_results_file": f"{mode}.json"},
    ) + ["--test_only"]
    runner.recipe(f"evaluate {mode}", FT_MODES["multimodal"], folder, overrides, fresh=False)
    with open(Path(folder) / f"{mode}.json", encoding="utf8") as handle:
        return json.load(handle)


def retrieval(runner, name, checkpoint, data, output):
    """Retrieval on ``data`` with the pretrained model (``cavmae retrieval``); returns its
    results."""
    args = ["retrieval", "--model", str(checkpoint), "--manifest", str(data), "--device", "cpu",
            "--output", str(output), "--no_progress",
            "--dataset_mean", str(TOY_MEAN), "--dataset_std", str(TOY_STD)]
    runner.cavmae(name, args)
    with open(output, encoding="utf8") as handle:
        return json.load(handle)


def inpainting(runner, checkpoint, data, out_dir, num_clips):
    """Inpainting figures of the pretrained model (``cavmae inpaint``); returns the PNG
    paths."""
    args = ["inpaint", "--model", str(checkpoint), "--manifest", str(data), "--output",
            str(out_dir), "--num_clips", str(num_clips), "--mask_ratios", "0.5,0.75",
            "--norm_pix", "--device", "cpu", "--no_progress",
            "--dataset_mean", str(TOY_MEAN), "--dataset_std", str(TOY_STD)]
    runner.cavmae("inpainting", args)
    return sorted(str(path) for path in Path(out_dir).glob("*.png"))


# ----------------------------------------------------------------------------- summary
def _r(value, digits=3):
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else str(value)


def ft_accuracy(results):
    """``(multi-frame acc@1, single-frame acc@1)`` of a fine-tuning test result."""
    single = results.get("single_frame", {}).get("acc@1")
    multi = (results.get("multi_frame") or {}).get("acc@1", single)
    return multi, single


def pretrain_loss_drop(history, key="loss"):
    """``(first, last)`` training ``key`` (a loss) of a pretraining history."""
    losses = [r["train"][key] for r in history if r.get("train", {}).get(key) is not None]
    return (losses[0], losses[-1]) if losses else (float("nan"), float("nan"))


def check_metrics(report):
    """The numbers the checks compare, from a demo report (``summary.json``'s dict).

    Arguments
    ---------
    report : dict
        Needs ``n_test``, ``retrieval``, ``finetune`` (test results per mode),
        ``pretrain_loss``, ``pretrain_loss_mae`` and ``pretrain_loss_c`` (first and last
        epoch).

    Returns
    -------
    dict
        Metric name -> value (``nan`` where a number is missing), plus the chance levels
        ``chance_r1``, ``chance_medr`` and ``chance_acc``.
    """
    nan = float("nan")
    ret = report["retrieval"]
    metrics = {
        "chance_r1": 1.0 / report["n_test"],
        "chance_medr": (report["n_test"] + 1) / 2,
        "chance_acc": 1.0 / N_CLASSES,
    }
    for key in ("a2v_R@1", "v2a_R@1", "a2v_MedR", "v2a_MedR"):
        metrics[key] = float(ret.get(key, nan))
    for mode in (*FT_MODES, *MISSING_MODES):
        multi, _ = ft_accuracy(report["finetune"].get(mode, {}))
        metrics[f"ft_{mode}_acc"] = nan if multi is None else float(multi)
    for key, name in (("pretrain_loss", "pretrain_loss_ratio"),
                      ("pretrain_loss_mae", "pretrain_loss_mae_ratio")):
        first, last = report.get(key, (nan, nan))
        metrics[name] = last / first if first and first == first else nan
    first, last = report.get("pretrain_loss_c", (nan, nan))
    metrics["pretrain_loss_c_drop"] = first - last
    return metrics


def evaluate_checks(report, checks=None):
    """Evaluate the demo's checks on a report.

    A check whose value is missing (``nan``) fails.

    Arguments
    ---------
    report : dict
        See :func:`check_metrics`.
    checks : list, optional
        ``(name, metric, comparison, (factor, chance key or None))``; default
        :data:`CHECKS`.

    Returns
    -------
    list of dict
        One per check: ``name``, ``metric``, ``value``, ``comparison``, ``threshold``,
        ``passed``.

    Example
    -------
    >>> report = {"n_test": 80, "retrieval": {"a2v_R@1": 0.1}, "finetune": {}}
    >>> check = [("A->V R@1 >= 3x chance", "a2v_R@1", ">=", (3, "chance_r1"))]
    >>> result = evaluate_checks(report, check)[0]
    >>> round(result["threshold"], 4), result["passed"]
    (0.0375, True)
    >>> report["retrieval"]["a2v_R@1"] = 0.025
    >>> evaluate_checks(report, check)[0]["passed"]
    False
    """
    metrics = check_metrics(report)
    results = []
    for name, metric, comparison, (factor, chance) in checks or CHECKS:
        threshold = factor * metrics[chance] if chance else factor
        value = metrics[metric]
        if comparison == ">=":
            passed = value >= threshold
        elif comparison == "<=":
            passed = value <= threshold
        else:
            raise ValueError(f"unknown comparison {comparison!r} in check {name!r}")
        results.append({"name": name, "metric": metric, "value": value,
                        "comparison": comparison, "threshold": threshold,
                        "passed": bool(passed)})
    return results


def exit_status(report):
    """``1`` if the report's checks are enforced and one of them failed, else ``0``."""
    if not report.get("checks_enforced", True):
        return 0
    return 0 if all(check["passed"] for check in report["checks"]) else 1


def write_summary(path, report):
    """Write ``summary.md`` from the collected ``report`` dict."""
    n_test = report["n_test"]
    chance_r1 = 1.0 / n_test
    ret = report["retrieval"]
    lines = [
        "# CAV-MAE demo on the toy audio-visual world",
        "",
        f"Date: {report['date']}  ",
        f"Machine: {report['machine']}, {report['threads']} torch thread(s)  ",
        f"Mode: {report['mode']}; total wall time {report['total_s']:.0f} s",
        "",
        "Toy world: 8 classes (a visual object with a sound); object size, brightness and "
        "onset co-vary with pitch, loudness and sound onset inside each clip, with "
        f"distractor noise. {report['n_train']} training, {report['n_valid']} validation "
        f"and {n_test} held-out test clips of 1.94 s (192 fbank frames, 64 px frames).",
        "",
        "## Results on the held-out test clips",
        "",
        "| metric | value | chance |",
        "|---|---|---|",
        f"| audio->visual retrieval R@1 | {_r(ret['a2v_R@1'])} | {_r(chance_r1)} |",
        f"| visual->audio retrieval R@1 | {_r(ret['v2a_R@1'])} | {_r(chance_r1)} |",
        f"| audio->visual retrieval R@10 | {_r(ret['a2v_R@10'])} | {_r(10 * chance_r1)} |",
        f"| visual->audio retrieval R@10 | {_r(ret['v2a_R@10'])} | {_r(10 * chance_r1)} |",
        f"| audio->visual median rank | {ret['a2v_MedR']:g} | {(n_test + 1) / 2:g} |",
        f"| visual->audio median rank | {ret['v2a_MedR']:g} | {(n_test + 1) / 2:g} |",
    ]
    for mode, res in report["finetune"].items():
        multi, single = ft_accuracy(res)
        lines.append(f"| fine-tuned {mode} accuracy (multi-frame) | {_r(multi)} | "
                     f"{_r(1 / N_CLASSES)} |")
        lines.append(f"| fine-tuned {mode} accuracy (middle frame) | {_r(single)} | "
                     f"{_r(1 / N_CLASSES)} |")
    first, last = report["pretrain_loss"]
    lines += [
        f"| pretraining train loss, first -> last epoch | {_r(first)} -> {_r(last)} | |",
        "",
        f"Retrieval: R@1 is {ret['a2v_R@1'] / chance_r1:.1f}x (audio->visual) and "
        f"{ret['v2a_R@1'] / chance_r1:.1f}x (visual->audio) chance, with the pretrained "
        "model's pooled audio-only / visual-only embeddings (no fine-tuning). "
        "Fine-tuning: multi-frame = class probabilities averaged over the 10 frames.",
        "",
        "## Checks",
        "",
        ("The demo exits with status 1 if one of these fails." if report["checks_enforced"]
         else "Not enforced with this budget (too short to learn): recorded only."),
        "",
        "| check | value | threshold | result |",
        "|---|---|---|---|",
    ]
    lines += [f"| {c['name']} | {_r(c['value'])} | {c['comparison']} {_r(c['threshold'])} | "
              f"{'pass' if c['passed'] else '**FAIL**'} |" for c in report["checks"]]
    lines += [
        "",
        "## Settings",
        "",
        "Model: " + ", ".join(f"{k} {v}" for k, v in {**MODEL_ARGS, **DECODER_ARGS}.items()
                              if not k.startswith("dataset")) + ".",
        "",
        "Pretraining: " + ", ".join(f"{k} {_fmt(v)}" for k, v in
                                    {**report["budget"]["pretrain"], **PRETRAIN_OBJECTIVE}.items())
        + ", Adam betas (0.95, 0.999), masking 0.75, norm-pix loss, no noise/roll.",
        "",
        "**Changed from the paper:** contrastive loss weight 1.0 instead of 0.01 and "
        "temperature 0.5 instead of 0.05. The paper trains ViT-B initialised from ImageNet "
        "MAE weights; this 64-d model starts from scratch on a few hundred clips, and with "
        "the paper's settings its contrastive loss stays at chance (ln(batch)) for well over "
        "the demo's budget: random initial embeddings give confidently wrong similarities "
        "at temperature 0.05 and the loss first collapses them. Weight 1.0 and temperature "
        "0.5 let the alignment start within the budget.",
        "",
        "Fine-tuning (each mode from the pretrained checkpoint): "
        + ", ".join(f"{k} {_fmt(v)}" for k, v in {**report["budget"]["finetune"],
                                                   **FINETUNE_FIXED}.items()) + ".",
        "",
        "## Wall time per stage",
        "",
        "| stage | seconds |",
        "|---|---|",
    ]
    lines += [f"| {name} | {sec:.0f} |" for name, sec in report["timings"].items()]
    lines += ["", "## Figures", ""]
    lines += [f"- {caption}: `{fig}`" for caption, fig in report["figures"]]
    lines += ["", "## Commands to reproduce", "", "Everything at once:", "", "```",
              report["demo_command"], "```", "", "Stage by stage (as run):", "", "```"]
    lines += [f"# {name}\n{cmd}" for name, cmd in report["commands"]]
    lines += ["```", ""]
    Path(path).write_text("\n".join(lines), encoding="utf8")
    return path


# -------------------------------------------------------------------------------- runs
def prepare_run(out, mode, threads, progress, data_dir):
    """Output folder, budget, stage runner and (cached) toy data shared by both runs."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    budget = BUDGETS[mode]
    runner = Runner(out, threads, progress)
    paths = make_data(runner, Path(data_dir) if data_dir else out / "data", budget)
    return out, budget, runner, paths


def run_demo(out, mode="full", threads=2, progress=True, data_dir=None):
    """The full demo; returns the report dict (also in ``out/summary.json``)."""
    from speechbrain_cavmae.tools.plots import plot_finetuning, plot_pretraining

    start = time.time()
    out, budget, runner, paths = prepare_run(out, mode, threads, progress, data_dir)

    ckpt, pt_history, pt_test = pretrain(runner, "pretrain", out / "pretrain", paths, budget,
                                         PRETRAIN_OBJECTIVE)
    ft = {}
    ft_histories = {}
    for ft_mode in budget.get("finetune_modes", FT_MODES):
        ft_histories[ft_mode], ft[ft_mode] = finetune(
            runner, f"finetune {ft_mode}", out / f"finetune_{ft_mode}", paths, budget,
            ft_mode, ckpt)
    if "multimodal" in ft:
        for missing in budget.get("missing_modes", MISSING_MODES):
            ft[missing] = evaluate_missing_modality(runner, out / "finetune_multimodal",
                                                    paths, budget, missing)
    ret = retrieval(runner, "retrieval", ckpt, paths["test"], out / "retrieval.json")

    figures = []
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    n_valid = budget["data"]["n_valid"]
    figures.append(("pretraining curves", plot_pretraining(
        pt_history, str(fig_dir / "pretrain_curves.png"), chance_r1=1.0 / n_valid)))
    figures.append(("fine-tuning curves", plot_finetuning(
        ft_histories, str(fig_dir / "finetune_curves.png"), chance=1.0 / N_CLASSES)))
    for fig in inpainting(runner, ckpt, paths["test"], fig_dir / "inpainting",
                          budget["inpaint_clips"]):
        figures.append(("inpainting (input / masked / reconstruction)", fig))

    report = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine_description(),
        "threads": threads,
        "mode": mode,
        "budget": budget,
        "n_train": budget["data"]["n_train"],
        "n_valid": budget["data"]["n_valid"],
        "n_test": budget["data"]["n_test"],
        "retrieval": ret,
        "pretrain_test": pt_test,
        "pretrain_loss": pretrain_loss_drop(pt_history),
        "pretrain_loss_mae": pretrain_loss_drop(pt_history, "loss_mae"),
        "pretrain_loss_c": pretrain_loss_drop(pt_history, "loss_c"),
        "finetune": ft,
        "timings": runner.timings,
        "commands": runner.commands,
        "figures": [(c, os.path.relpath(f, out)) for c, f in figures],
        "demo_command": "python recipes/Demo/demo.py --out {}{}".format(
            out, "" if mode == "full" else f" --{mode}"),
    }
    report["checks"] = evaluate_checks(report)
    report["checks_enforced"] = budget.get("enforce_checks", True)
    report["total_s"] = time.time() - start
    write_summary(out / "summary.md", report)
    with open(out / "summary.json", "w", encoding="utf8") as handle:
        json.dump(report, handle, indent=2, default=str)
    return report


def run_ablation(out, mode="full", threads=2, progress=True, data_dir=None):
    """Pretrain three ways with the same budget; returns ``{variant: metrics}``."""
    start = time.time()
    out, budget, runner, paths = prepare_run(out, mode, threads, progress, data_dir)
    rows = {}
    for variant, weights in ABLATION.items():
        slug = variant.replace(" + ", "_").replace(" ", "_")
        objective = dict(PRETRAIN_OBJECTIVE, **weights)
        ckpt, history, _ = pretrain(runner, f"pretrain {variant}", out / f"pretrain_{slug}",
                                    paths, budget, objective)
        ret = retrieval(runner, f"retrieval {variant}", ckpt, paths["test"],
                        out / f"retrieval_{slug}.json")
        _, ft = finetune(runner, f"finetune {variant}", out / f"finetune_{slug}", paths,
                         budget, "multimodal", ckpt)
        multi, _ = ft_accuracy(ft)
        rows[variant] = {"a2v_R@1": ret["a2v_R@1"], "v2a_R@1": ret["v2a_R@1"],
                         "a2v_R@10": ret["a2v_R@10"], "v2a_R@10": ret["v2a_R@10"],
                         "a2v_MedR": ret["a2v_MedR"], "v2a_MedR": ret["v2a_MedR"],
                         "ft_multimodal_acc": multi,
                         "pretrain_s": runner.timings[f"pretrain {variant}"]}
    n_test = budget["data"]["n_test"]
    header = ("| objective | A->V R@1 | V->A R@1 | A->V R@10 | V->A R@10 | A->V MedR | "
              "V->A MedR | fine-tuned acc | pretrain s |")
    lines = [header, "|" + "---|" * 9]
    for variant, r in rows.items():
        lines.append(
            f"| {variant} | {_r(r['a2v_R@1'])} | {_r(r['v2a_R@1'])} | {_r(r['a2v_R@10'])} | "
            f"{_r(r['v2a_R@10'])} | {r['a2v_MedR']:g} | {r['v2a_MedR']:g} | "
            f"{_r(r['ft_multimodal_acc'])} | {r['pretrain_s']:.0f} |")
    lines.append(f"| chance | {_r(1 / n_test)} | {_r(1 / n_test)} | {_r(10 / n_test)} | "
                 f"{_r(10 / n_test)} | {(n_test + 1) / 2:g} | {(n_test + 1) / 2:g} | "
                 f"{_r(1 / N_CLASSES)} | |")
    table = "\n".join(lines)
    text = [
        "# CAV-MAE objective ablation on the toy world",
        "",
        f"Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}  ",
        f"Machine: {machine_description()}, {threads} torch thread(s)  ",
        f"Total wall time {time.time() - start:.0f} s",
        "",
        "Same model, data and budget (pretraining: " + ", ".join(
            f"{k} {_fmt(v)}" for k, v in budget["pretrain"].items()) +
        "; then a multimodal fine-tuning of each). Retrieval on the held-out test clips "
        "with the pretrained model's pooled single-modality embeddings.",
        "",
        table,
        "",
        "Commands:",
        "",
        "```",
    ] + [f"# {name}\n{cmd}" for name, cmd in runner.commands] + ["```", ""]
    (out / "ablation.md").write_text("\n".join(text), encoding="utf8")
    with open(out / "ablation.json", "w", encoding="utf8") as handle:
        json.dump(rows, handle, indent=2)
    print(table)
    return rows


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/demo", help="output folder")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="shrunken version (fewer clips and epochs)")
    size.add_argument("--smoke", action="store_true",
                      help="one epoch per stage on a few clips: the plumbing only (its "
                           "results are recorded, not checked), as in the tests")
    parser.add_argument("--ablation", action="store_true",
                        help="compare contrastive + MAE, MAE only and contrastive only")
    parser.add_argument("--data_dir", default=None,
                        help="toy data folder (default: OUT/data; reused when up to date)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per process")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    mode = "quick" if args.quick else "smoke" if args.smoke else "full"
    if args.ablation:
        run_ablation(args.out, mode, args.threads, not args.no_progress, args.data_dir)
        return 0
    report = run_demo(args.out, mode, args.threads, not args.no_progress, args.data_dir)
    print(Path(args.out, "summary.md").read_text(encoding="utf8"))
    print(f"demo finished in {report['total_s']:.0f} s; summary: {Path(args.out, 'summary.md')}")
    failed = [c["name"] for c in report["checks"] if not c["passed"]]
    status = exit_status(report)
    if failed and status:
        logger.error("demo checks failed: %s", "; ".join(failed))
    return status


if __name__ == "__main__":
    sys.exit(main())
