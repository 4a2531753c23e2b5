"""The demo (``make demo``) in its shrunken ``--quick`` form, end to end.

One run of ``python -m speechbrain_cavmae.demo --out ... --quick`` (toy data, pretraining
and three fine-tunings through the AudioSet recipe's command line, retrieval, inpainting
figures, loss curves, summary), shared by the tests below, which check the learning
signals and the written artefacts. Plus unit tests of the small helpers.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speechbrain_cavmae import demo
from speechbrain_cavmae.plots import parse_train_log, read_history

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    """Run the quick demo once; returns (output folder, report dict, wall seconds)."""
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("demo")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "speechbrain_cavmae.demo", "--out", str(out), "--quick",
         "--no_progress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    seconds = time.time() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "summary.json", encoding="utf8") as handle:
        report = json.load(handle)
    return out, report, seconds, proc.stdout


def test_pretraining_loss_falls(quick_demo):
    out, report, _, _ = quick_demo
    history = read_history(out / "pretrain")
    assert len(history) == demo.BUDGETS["quick"]["pretrain"]["number_of_epochs"]
    first, last = report["pretrain_loss"]
    assert last < first - 0.1, (first, last)
    # Both objectives learn: masked reconstruction of both modalities and the contrastive.
    for key in ("loss_mae_a", "loss_mae_v", "loss_c"):
        values = [r["train"][key] for r in history]
        assert min(values[-3:]) < values[0], (key, values)


def test_retrieval_above_chance(quick_demo):
    _, report, _, _ = quick_demo
    ret = report["retrieval"]
    n_test = demo.BUDGETS["quick"]["data"]["n_test"]
    assert ret["num_clips"] == n_test
    chance = 1.0 / n_test
    assert ret["a2v_R@1"] > chance and ret["v2a_R@1"] > chance, ret
    # Median ranks better than a random ordering's (n + 1) / 2.
    assert ret["a2v_MedR"] < (n_test + 1) / 2 and ret["v2a_MedR"] < (n_test + 1) / 2, ret


def test_finetuned_accuracy_above_chance(quick_demo):
    _, report, _, _ = quick_demo
    chance = 1.0 / demo.N_CLASSES
    for mode in demo.FT_MODES:
        multi, single = demo.ft_accuracy(report["finetune"][mode])
        assert multi is not None and single is not None, mode
        assert multi > chance, (mode, multi)
    assert demo.ft_accuracy(report["finetune"]["multimodal"])[0] >= 2 * chance


def test_artefacts_written(quick_demo):
    out, report, _, stdout = quick_demo
    summary = (out / "summary.md").read_text(encoding="utf8")
    assert "retrieval R@1" in summary and "Commands to reproduce" in summary
    assert f"{report['retrieval']['a2v_R@1']:.3f}" in summary
    assert "recipes/AudioSet/train.py hparams/cavmae.yaml" in summary
    assert "hparams/cavmae_ft_audioonly.yaml" in summary
    assert "summary" not in stdout or "CAV-MAE demo" in stdout
    figures = [out / path for _, path in report["figures"]]
    assert any("inpainting" in str(f) for f in figures)
    assert any(str(f).endswith("pretrain_curves.png") for f in figures)
    for fig in figures:
        data = fig.read_bytes()
        assert data[:8] == PNG_MAGIC, fig
        assert len(data) > 10_000, (fig, len(data))  # a real picture, not an empty canvas
        assert f"`{os.path.relpath(fig, out)}`" in summary
    # The recipes saved their checkpoints and exports.
    assert (out / "pretrain" / "pretrained.pth").is_file()
    for mode in demo.FT_MODES:
        assert (out / f"finetune_{mode}" / "finetuned.pth").is_file()


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
    with pytest.raises(FileNotFoundError):
        read_history(tmp_path / "missing")
