"""The demo (``make demo``): its plumbing at the tiny ``--smoke`` budget, and its checks.

The learning itself is checked by the demo (``make demo`` exits non-zero when a result
falls below its thresholds, ``CHECKS`` in ``recipes/Demo/demo.py``), not here: the full
demo takes minutes. One ``--smoke`` run (one epoch per stage, 48 clips, one fine-tuning)
checks that the stages run through the recipes' command lines and that the summary,
figures, commands and checks are written; unit tests check the check machinery with
passing and failing numbers.
"""

import json
import math
import os

import pytest

from processes import REPO, import_script, run
from speechbrain_cavmae.tools.plots import parse_train_log, read_history

DEMO = REPO / "recipes" / "Demo" / "demo.py"
demo = import_script(DEMO)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_smoke_demo_writes_its_artefacts(tmp_path):
    """One tiny demo run: the summary, figures, commands, checkpoints and checks."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo"
    run([DEMO, "--out", out, "--smoke", "--threads", "1",
         "--no_progress"], timeout=600)
    budget = demo.BUDGETS["smoke"]
    report = json.loads((out / "summary.json").read_text(encoding="utf8"))
    summary = (out / "summary.md").read_text(encoding="utf8")

    # The budget reached the recipes: one pretraining epoch, and the test split's size.
    assert len(read_history(out / "pretrain")) == budget["pretrain"]["number_of_epochs"]
    assert report["retrieval"]["num_clips"] == budget["data"]["n_test"]
    assert list(report["finetune"]) == budget["finetune_modes"]
    # The recipes saved their exports.
    assert (out / "pretrain" / "pretrained.pth").is_file()
    assert (out / "finetune_multimodal" / "finetuned.pth").is_file()

    # Every command is recorded, with the budget's settings, in run order.
    names = [name for name, _ in report["commands"]]
    assert names == ["data", "pretrain", "finetune multimodal", "retrieval", "inpainting"]
    commands = dict(report["commands"])
    assert commands["pretrain"].startswith("python recipes/AudioSet/train.py hparams/cavmae.yaml")
    assert "--number_of_epochs 1 " in commands["pretrain"]
    assert "hparams/cavmae_ft.yaml" in commands["finetune multimodal"]
    # fine-tuning starts from the pretraining run's model folder (no head flags needed)
    assert (out / "pretrain" / "model" / "hyperparams.yaml").is_file()
    assert f"--pretrained_path {out / 'pretrain' / 'model'}" in commands[
        "finetune multimodal"]
    for _, cmd in report["commands"]:
        assert cmd in summary, cmd
    assert f"python recipes/Demo/demo.py --out {out} --smoke" in summary
    assert set(report["timings"]) == set(names)

    # Metrics in the table; figures are real PNGs, listed in the summary.
    assert f"| audio->visual retrieval R@1 | {report['retrieval']['a2v_R@1']:.3f} |" in summary
    figures = [out / path for _, path in report["figures"]]
    assert {f.name for f in figures} >= {"pretrain_curves.png", "finetune_curves.png"}
    assert any("inpainting" in str(f) for f in figures)
    for fig in figures:
        data = fig.read_bytes()
        assert data[:8] == PNG_MAGIC, fig
        assert len(data) > 10_000, (fig, len(data))  # a real picture, not an empty canvas
        assert f"`{os.path.relpath(fig, out)}`" in summary

    # The checks: all of them, recomputed identically from the written report, each one
    # a row of the summary; recorded but not enforced at this budget (exit status 0).
    assert report["checks_enforced"] is False
    assert "Not enforced with this budget" in summary
    assert [c["name"] for c in report["checks"]] == [c[0] for c in demo.CHECKS]
    recomputed = demo.evaluate_checks(report)
    for written, again in zip(report["checks"], recomputed):
        assert written["passed"] == again["passed"], (written, again)
        assert written["threshold"] == pytest.approx(again["threshold"])
        assert written["value"] == pytest.approx(again["value"], nan_ok=True)
        result = "pass" if written["passed"] else "**FAIL**"
        assert f"| {written['name']} | " in summary
        assert f"{written['comparison']} {written['threshold']:.3f} | {result} |" in summary
    # Only the multimodal fine-tuning ran, without its missing-modality evaluations: the
    # other accuracies are missing and fail.
    by_metric = {c["metric"]: c for c in report["checks"]}
    for metric in ("ft_audioonly_acc", "ft_videoonly_acc", "ft_missingaudioonly_acc",
                   "ft_missingvideoonly_acc"):
        assert math.isnan(by_metric[metric]["value"]) and not by_metric[metric]["passed"]


def _good_report(n_test=80):
    """A report with numbers like those of a successful demo run."""
    return {
        "n_test": n_test,
        "retrieval": {"a2v_R@1": 0.113, "v2a_R@1": 0.138, "a2v_MedR": 5.0, "v2a_MedR": 6.0},
        "finetune": {
            "multimodal": {"single_frame": {"acc@1": 0.95}, "multi_frame": {"acc@1": 0.988}},
            "audioonly": {"single_frame": {"acc@1": 0.912}, "multi_frame": None},
            "videoonly": {"single_frame": {"acc@1": 0.99}, "multi_frame": {"acc@1": 1.0}},
            "missingaudioonly": {"single_frame": {"acc@1": 0.8}},
            "missingvideoonly": {"single_frame": {"acc@1": 0.9},
                                 "multi_frame": {"acc@1": 0.95}},
        },
        "pretrain_loss": [4.8, 4.0],
        "pretrain_loss_mae": [2.1, 1.5],
        "pretrain_loss_c": [2.8, 2.5],
    }


def _failed(report):
    return [c["metric"] for c in demo.evaluate_checks(report) if not c["passed"]]


def test_checks_pass_and_fail():
    report = _good_report()
    checks = demo.evaluate_checks(report)
    assert [c["passed"] for c in checks] == [True] * len(demo.CHECKS)
    thresholds = {c["metric"]: c["threshold"] for c in checks}
    assert thresholds["a2v_R@1"] == pytest.approx(3 / 80)
    assert thresholds["v2a_MedR"] == pytest.approx(81 / 4)
    assert thresholds["ft_multimodal_acc"] == pytest.approx(0.75)
    assert thresholds["ft_videoonly_acc"] == pytest.approx(0.5)
    # The audio-only run has no multi-frame result: its single-frame accuracy is used.
    assert {c["metric"]: c["value"] for c in checks}["ft_audioonly_acc"] == 0.912
    report["checks"], report["checks_enforced"] = checks, True
    assert demo.exit_status(report) == 0

    # Each check fails on its own when its number is bad (just past the threshold).
    bad = [
        (("retrieval", "a2v_R@1"), 2 / 80, "a2v_R@1"),
        (("retrieval", "v2a_R@1"), 0.0, "v2a_R@1"),
        (("retrieval", "a2v_MedR"), 21.0, "a2v_MedR"),
        (("retrieval", "v2a_MedR"), 40.5, "v2a_MedR"),
        (("finetune", "multimodal"), {"single_frame": {"acc@1": 0.9},
                                      "multi_frame": {"acc@1": 0.74}}, "ft_multimodal_acc"),
        (("finetune", "audioonly"), {"single_frame": {"acc@1": 0.49}}, "ft_audioonly_acc"),
        (("finetune", "videoonly"), {"single_frame": {"acc@1": 0.125}}, "ft_videoonly_acc"),
        (("finetune", "missingaudioonly"), {"single_frame": {"acc@1": 0.37}},
         "ft_missingaudioonly_acc"),
        (("finetune", "missingvideoonly"), {"single_frame": {"acc@1": 0.9},
                                            "multi_frame": {"acc@1": 0.125}},
         "ft_missingvideoonly_acc"),
        (("pretrain_loss",), [4.8, 4.6], "pretrain_loss_ratio"),
        (("pretrain_loss_mae",), [2.1, 1.9], "pretrain_loss_mae_ratio"),
        (("pretrain_loss_c",), [2.8, 2.76], "pretrain_loss_c_drop"),
    ]
    assert len(bad) == len(demo.CHECKS)
    for path, value, metric in bad:
        report = _good_report()
        target = report
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        assert _failed(report) == [metric], (path, value)
        report["checks"] = demo.evaluate_checks(report)
        report["checks_enforced"] = True
        assert demo.exit_status(report) == 1
        report["checks_enforced"] = False
        assert demo.exit_status(report) == 0

    # A missing result fails its check rather than passing silently.
    report = _good_report()
    del report["finetune"]["videoonly"]
    del report["retrieval"]["v2a_R@1"]
    assert _failed(report) == ["v2a_R@1", "ft_videoonly_acc"]
    # Thresholds scale with the number of test clips (chance = 1 / clips).
    assert _failed(_good_report(n_test=8)) == ["a2v_R@1", "v2a_R@1", "a2v_MedR", "v2a_MedR"]
    with pytest.raises(ValueError, match="unknown comparison '>'"):
        demo.evaluate_checks(_good_report(), [("x", "a2v_R@1", ">", (1, None))])


@pytest.mark.parametrize("passed, status", [(True, 0), (False, 1)])
def test_main_exit_status_follows_checks(monkeypatch, tmp_path, passed, status):
    """``main`` (``make demo``) exits 1 when an enforced check failed."""
    def fake_run_demo(out, mode, threads, progress, data_dir):
        (tmp_path / "summary.md").write_text("summary", encoding="utf8")
        assert mode == "full"
        return {"total_s": 1.0, "checks_enforced": True,
                "checks": [{"name": "a", "passed": True}, {"name": "b", "passed": passed}]}

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    monkeypatch.setattr("torch.set_num_threads", lambda n: None)
    assert demo.main(["--out", str(tmp_path), "--threads", "1"]) == status


def test_override_args_format():
    args = demo.override_args({"lr": 0.001, "noise": False, "n": 3}, {"n": 4, "x": -7.157})
    assert args == ["--lr", "0.001", "--noise", "False", "--n", "4", "--x", "-7.157"]


def test_parse_train_log(tmp_path):
    log = tmp_path / "train_log.txt"
    log.write_text(
        "epoch: 1, lr: 1.00e-03 - train loss: 2.75, train loss_c: 3.87 - valid loss: 2.39, "
        "valid a2v_R@1: 1.25e-02\n"
        "epoch: 2, lr: 1.00e-03 - train loss: 2.22 - valid loss: 2.10\n"
        "Epoch loaded: 2 - test loss: 2.10\n",
        encoding="utf8",
    )
    history = parse_train_log(log)
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[0]["train"] == {"loss": 2.75, "loss_c": 3.87}
    assert history[0]["valid"]["a2v_R@1"] == pytest.approx(0.0125)
    assert read_history(tmp_path)[1]["train"]["loss"] == 2.22
    with pytest.raises(FileNotFoundError, match="missing"):
        read_history(tmp_path / "missing")
