"""End-to-end checks of the recipe paths that must give *right* results, not only finish.

One chain of recipe runs (``recipe_chain.py``: the real ``recipes/*/train.py`` scripts with
their command lines, one after the other in a single process), all with
``--precision bf16`` and a tiny model on the toy data (4 classes, chance accuracy 0.25):

1. AudioSet pretraining (``cavmae.yaml``), 2 epochs;
2. VGGSound pretraining (``vggsound_cavmae.yaml``) from that checkpoint, 2 epochs;
3. VGGSound fine-tuning (``vggsound_cavmae_ft.yaml``: cross-entropy, class-balanced
   sampling) from the VGGSound checkpoint, which must learn the toy classes;
4. evaluation only of that model with ``--ft_mode missingaudioonly`` and
   ``missingvideoonly`` (the multimodally fine-tuned model given one modality);
5. AudioSet fine-tuning (``cavmae_ft.yaml``), 2 epochs: the loss falls;
6. AudioSet visual-only fine-tuning (``cavmae_ft_videoonly.yaml``), which must learn.

Every run records the dtype of its ``nn.Linear`` outputs: bf16 in the training steps,
float32 in evaluation (``--eval_precision`` stays fp32). The class-balanced sampler and
``torch.compile`` are checked in-process.

Measured accuracies of the chain (test split, 32 clips) with the yaml seed 1986 and two
other seeds (7, 42): VGGSound fine-tuning acc@1 0.84 / 0.84 / 0.62; visual input only
(``missingvideoonly``) 0.94 / 0.75 / 0.75; visual-only fine-tuning (10 epochs) 0.75 / 0.53 /
0.75.
The tiny model does not learn the toy audio in this budget: audio only
(``missingaudioonly``) gives 0.25 / 0.34 / 0.47, so only its plumbing is checked.
"""

import collections
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from processes import REPO, run
from recipe_cli import AUDIOSET, DECODER, ENCODER, HP, NO_AUG, VGGSOUND, all_finite, data_args

CHAIN = str(REPO / "tests" / "recipe_chain.py")
BF16 = ["--precision", "bf16"]
MISSING = ("missingaudioonly", "missingvideoonly")
# Pretraining at the yamls' own settings. Two epochs of 8 steps lower the loss a little but
# clearly beyond its epoch-to-epoch noise: 2.167 -> 2.129 (AudioSet), 2.104 -> 2.093
# (VGGSound), against 2.1907 -> 2.1912 when nothing is learnt (--lr 0).
PRETRAIN = ["--batch_size", "8", "--number_of_epochs", "2"]


def _finetune(epochs, batch_size, lr="1e-3"):
    """Fine-tuning that learns the toy task in few steps: no augmentation, a constant lr
    (no halving), weights averaged over the last two epochs."""
    return [*NO_AUG, "--number_of_epochs", str(epochs), "--batch_size", str(batch_size),
            "--lr", lr, "--head_lr", "10", "--lrscheduler_start", "100",
            "--wa_start", str(epochs - 1), "--wa_end", str(epochs)]


def _plan(toy, out):
    runs = {
        "as_pt": [AUDIOSET, HP / "cavmae.yaml", "--train_data", toy["train"],
                  *ENCODER, *DECODER, *PRETRAIN, *BF16],
        "vgg_pt": [VGGSOUND, HP / "vggsound_cavmae.yaml", "--train_data", toy["train"],
                   "--pretrained_path", out / "as_pt" / "pretrained.pth",
                   *ENCODER, *DECODER, *PRETRAIN, *BF16],
        "vgg_ft": [VGGSOUND, HP / "vggsound_cavmae_ft.yaml", *data_args(toy),
                   "--pretrained_path", out / "vgg_pt" / "pretrained.pth", *ENCODER,
                   *_finetune(12, 4), "--topk", "[1, 3]", *BF16],
        "as_ft": [AUDIOSET, HP / "cavmae_ft.yaml", *data_args(toy, test=False),
                  "--pretrained_path", out / "as_pt" / "pretrained.pth", *ENCODER,
                  *_finetune(2, 8), "--multi_frame_eval", "False", *BF16],
        "vid_ft": [AUDIOSET, HP / "cavmae_ft_videoonly.yaml", *data_args(toy),
                   "--pretrained_path", out / "as_pt" / "pretrained.pth", *ENCODER,
                   *_finetune(10, 8), *BF16],
    }
    plan = []
    for name, argv in runs.items():
        plan.append({"argv": [*argv, "--output_folder", out / name],
                     "probe": out / f"{name}.dtypes.json"})
        if name == "vgg_ft":
            # The same fine-tuned model (its checkpoints), evaluated with one modality.
            for mode in MISSING:
                plan.append({"argv": [
                    VGGSOUND, HP / "vggsound_cavmae_ft.yaml", "--valid_data", toy["valid"],
                    "--test_data", toy["test"], "--label_csv", toy["label_csv"], *ENCODER,
                    "--batch_size", "8", "--topk", "[1, 3]", "--output_folder", out / name,
                    "--ft_mode", mode, "--test_results_file", f"{mode}.json", "--test_only",
                ]})
    return [{k: ([str(a) for a in v] if k == "argv" else str(v)) for k, v in p.items()}
            for p in plan]


@pytest.fixture(scope="module")
def chain(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("chain")
    plan = out / "plan.json"
    plan.write_text(json.dumps(_plan(toy, out), indent=1))
    run([CHAIN, plan])
    return out


def _history(folder):
    return json.loads((folder / "history.json").read_text())


def _results(folder, name="test_results.json"):
    return json.loads((folder / name).read_text())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["as_pt", "vgg_pt", "vgg_ft", "as_ft", "vid_ft"])
def test_bf16_trains_every_recipe_path(chain, name):
    """``--precision bf16``: the training steps run under bf16 autocast (every Linear output
    is bf16), evaluation in float32, and the training loss is finite and falls."""
    dtypes = json.loads((chain / f"{name}.dtypes.json").read_text())
    assert set(dtypes["train"]) == {"torch.bfloat16"}, dtypes
    assert set(dtypes["eval"]) <= {"torch.float32"}, dtypes  # pretraining: no evaluation
    if name.endswith("ft"):
        assert set(dtypes["eval"]) == {"torch.float32"}, dtypes
    log = (chain / name / "log.txt").read_text()
    assert "Using training precision: `--precision=bf16`" in log
    losses = [h["train"]["loss"] for h in _history(chain / name)]
    assert len(losses) >= 2 and all(math.isfinite(x) for x in losses), losses
    # Falls measured: 0.038, 0.011 (pretraining), 1.19, 0.043, 0.146 (fine-tuning).
    assert losses[-1] < losses[0] - 0.005, losses


@pytest.mark.slow
def test_vggsound_pretrain_then_finetune_learns(chain):
    for name in ("as_pt", "vgg_pt"):
        assert [h["epoch"] for h in _history(chain / name)] == [1, 2]
        assert (chain / name / "pretrained.pth").is_file()
    # The VGGSound pretraining started from the AudioSet checkpoint.
    log = (chain / "vgg_pt" / "log.txt").read_text()
    assert f"{chain / 'as_pt' / 'pretrained.pth'}: loaded" in log
    ft = chain / "vgg_ft"
    log = (ft / "log.txt").read_text()
    assert f"{chain / 'vgg_pt' / 'pretrained.pth'}: loaded" in log
    assert "class-balanced sampling of the training set" in log
    hp = (ft / "hyperparams.yaml").read_text()
    assert "\nloss: CE" in hp and "\nbalanced_sampling: true" in hp.lower()
    results = _results(ft)
    assert results["weights"] == "average of 2 epoch(s)"
    assert len(results["per_frame"]) == 10
    # 4 classes, 32 test clips: chance acc@1 0.25 (P(acc@1 >= 0.5) by chance ~ 0.002).
    # Measured acc@1 0.84 and mAP 0.87 (0.62 and 0.60 with the worst of three seeds).
    for key in ("single_frame", "multi_frame"):
        stats = results[key]
        assert all_finite(stats), stats
        assert stats["acc@1"] >= 0.5 and stats["mAP"] >= 0.5, results
        assert stats["acc@1"] <= stats["acc@3"], results
    assert "test multi_frame_acc@1" in (ft / "train_log.txt").read_text()


@pytest.mark.slow
def test_missing_modality_modes_through_the_recipe(chain):
    ft = chain / "vgg_ft"
    multi = _results(ft)
    audio, visual = (_results(ft, f"{mode}.json") for mode in MISSING)
    for res in (audio, visual):
        # Evaluation only: the same averaged weights as the multimodal evaluation.
        assert res["weights"] == multi["weights"] == "average of 2 epoch(s)"
        assert all_finite(res["single_frame"])
    # Audio only: no frame was read, so there is no per-frame / multi-frame evaluation.
    assert "per_frame" not in audio and "multi_frame" not in audio
    assert audio["single_frame"]["loss"] != pytest.approx(multi["single_frame"]["loss"])
    # Visual input only: each of the 10 frames is evaluated, and the model still knows
    # the classes from the picture (measured acc@1 0.94, worst seed 0.75).
    assert len(visual["per_frame"]) == 10
    assert visual["single_frame"]["loss"] != pytest.approx(multi["single_frame"]["loss"])
    assert visual["single_frame"]["loss"] != pytest.approx(audio["single_frame"]["loss"])
    for key in ("single_frame", "multi_frame"):
        assert visual[key]["acc@1"] >= 0.5, visual
    log = (ft / "log.txt").read_text()
    assert log.count("evaluating the average of 2 epoch(s)") == 3


@pytest.mark.slow
def test_video_only_finetuning_learns(chain):
    out = chain / "vid_ft"
    assert "\nft_mode: videoonly" in (out / "hyperparams.yaml").read_text()
    results = _results(out)
    # 4 classes, 32 test clips: chance acc 0.25 (P(acc >= 0.45) by chance ~ 0.005), chance
    # mAP ~0.3. Measured (10 epochs, seeds 1986 / 7 / 42): acc 0.75 / 0.53 / 0.75, mAP 0.86 /
    # 0.77 / 0.79; with 6 epochs acc fell to 0.44 for one seed, so 10 it is.
    for key in ("single_frame", "multi_frame"):
        assert all_finite(results[key])
        assert results[key]["acc"] >= 0.45 and results[key]["mAP"] >= 0.65, results
    # The visual-only model keeps no use for the audio branch: its head sees only frames.
    state = torch.load(out / "finetuned.pth", map_location="cpu", weights_only=True)
    assert state["head.fc.weight"].shape == (4, 32)


# ----------------------------------------------------------- class-balanced sampling
def _imbalanced_manifest(toy, path, per_class, two_labels):
    """A manifest of toy clips with ``per_class[c]`` clips of class ``c`` (absolute paths);
    the first ``two_labels`` clips of the last class also carry class 0."""
    root = Path(toy["root"])
    src = json.loads(Path(toy["train"]).read_text())["data"]
    mids = [f"/m/toy{c:02d}" for c in range(len(per_class))]
    data, taken = [], collections.Counter()
    for entry in src:
        c = mids.index(entry["labels"])
        if taken[c] == per_class[c]:
            continue
        taken[c] += 1
        labels = [entry["labels"]]
        if c == len(per_class) - 1 and taken[c] <= two_labels:
            labels.append(mids[0])
        data.append({"video_id": entry["video_id"], "wav": str(root / entry["wav"]),
                     "video_path": str(root / entry["video_path"]),
                     "labels": ",".join(labels)})
    assert [taken[c] for c in range(len(per_class))] == list(per_class)
    path.write_text(json.dumps({"data": data}))
    return data, mids


def _reference_weights(data):
    """The original ``gen_weight_file.py`` formula, written out here: a label weighs
    ``1000 / (its number of clips + 0.01)``, a clip the sum over its labels."""
    count = collections.Counter(m for d in data for m in d["labels"].split(","))
    return np.array([sum(1000.0 / (count[m] + 0.01) for m in d["labels"].split(","))
                     for d in data])


def _recipe_train_loader(toy, tmp_path, manifest, **overrides):
    """The training DataLoader that the VGGSound fine-tuning recipe builds (its yaml, its
    ``build_datasets`` / ``loader_kwargs``, ``Brain.make_dataloader``)."""
    import speechbrain as sb
    from hyperpyyaml import load_hyperpyyaml

    from speechbrain_cavmae.training.brains import FinetuneBrain
    from speechbrain_cavmae.training.recipe import build_datasets, loader_kwargs

    values = {"train_data": str(manifest), "valid_data": toy["valid"],
              "label_csv": toy["label_csv"], "num_classes": 4, "embed_dim": 32,
              "modality_specific_depth": 1, "num_heads": 2, "image_size": 64,
              "audio_length": 96, "num_workers": 0, "batch_size": 8,
              "output_folder": str(tmp_path / "out"), **overrides}
    with open(HP / "vggsound_cavmae_ft.yaml", encoding="utf8") as fin:
        hparams = load_hyperpyyaml(fin, values)
    datasets = build_datasets(hparams)
    brain = FinetuneBrain(modules=hparams["modules"], opt_class=hparams["opt_class"],
                          hparams=hparams, run_opts={"device": "cpu"})
    opts = loader_kwargs(hparams, "train_dataloader_opts", datasets, brain.device)
    loader = brain.make_dataloader(datasets["train"], sb.Stage.TRAIN, ckpt_prefix=None,
                                   **opts)
    return loader, datasets["train"]


def _draw_labels(loader, dataset, n_epochs):
    """Label sets of the clips the loader's batches would hold (indices only, no decoding),
    over ``n_epochs`` passes."""
    ids = dataset.data_ids
    drawn = []
    for _ in range(n_epochs):
        for batch in loader.batch_sampler:
            drawn.extend(ids[i] for i in batch)
    return drawn


def test_vggsound_class_balanced_sampling_matches_the_original_weights(toy, tmp_path):
    per_class = (16, 8, 4, 4)  # imbalanced; 2 clips of class 3 also carry class 0
    manifest = tmp_path / "imbalanced.json"
    data, mids = _imbalanced_manifest(toy, manifest, per_class, two_labels=2)
    ref = _reference_weights(data)
    labels_of = {d["video_id"]: d["labels"].split(",") for d in data}

    loader, train = _recipe_train_loader(toy, tmp_path, manifest)
    sampler = loader.sampler
    assert isinstance(sampler, torch.utils.data.WeightedRandomSampler)
    assert sampler.replacement and sampler.num_samples == len(data)
    order = [labels_of[sid] for sid in train.data_ids]
    assert order == [d["labels"].split(",") for d in data]  # manifest order
    np.testing.assert_allclose(sampler.weights.numpy(), ref, rtol=1e-12)

    n_epochs = 500  # 500 x 32 clips, 4 batches of 8
    drawn = _draw_labels(loader, train, n_epochs)
    n = len(drawn)
    assert n == n_epochs * 32
    # Expected share of each class among the drawn clips, from the reference weights;
    # single-label classes are (nearly) uniform: that is the point of the balancing.
    p_clip = ref / ref.sum()
    for c, mid in enumerate(mids):
        expected = sum(p for p, d in zip(p_clip, data) if mid in d["labels"].split(","))
        observed = sum(mid in labels_of[sid] for sid in drawn) / n
        sigma = math.sqrt(expected * (1 - expected) / n)
        assert abs(observed - expected) < 5 * sigma, (mid, observed, expected)
        if c in (1, 2):
            assert abs(expected - 0.25) < 0.01, (mid, expected)
    # Without the balancing: the manifest's own proportions (class 0: 18 of 32 clips).
    loader, train = _recipe_train_loader(toy, tmp_path, manifest, balanced_sampling=False)
    assert not isinstance(loader.sampler, torch.utils.data.WeightedRandomSampler)
    drawn = _draw_labels(loader, train, 20)
    share0 = sum(mids[0] in labels_of[sid] for sid in drawn) / len(drawn)
    assert share0 == pytest.approx(18 / 32), share0

    # An original weight file (np.savetxt, one weight a line) replaces the computed ones.
    weight_file = tmp_path / "imbalanced_weight.csv"
    custom = np.arange(1, len(data) + 1, dtype=float)
    np.savetxt(weight_file, custom, delimiter=",")
    loader, _ = _recipe_train_loader(toy, tmp_path, manifest, sample_weights=str(weight_file))
    np.testing.assert_allclose(loader.sampler.weights.numpy(), custom)
    np.savetxt(weight_file, custom[:-1], delimiter=",")
    with pytest.raises(ValueError, match="31 weights for 32 training clips"):
        _recipe_train_loader(toy, tmp_path, manifest, sample_weights=str(weight_file))


# ---------------------------------------------------------------------- torch.compile
def test_compiled_classifier_matches_eager(one_thread):
    """``--compile`` wraps the model in ``torch.compile``: the fine-tuning model must trace
    as one graph and give the eager outputs and gradients.

    A compiled *recipe* run is not affordable here (measured on the shared 2-core machine:
    one epoch with ``--compile`` 747 s against 87 s eager; Inductor compiling the tiny
    classifier's forward alone 104 s), so Dynamo + AOTAutograd (``aot_eager`` backend) trace
    the model in-process instead: graph capture and the joint forward/backward graph, without
    the C++ code generation (7.5 s of CPU).
    """
    from speechbrain_cavmae.model.classifier import CAVMAEClassifier

    torch.manual_seed(0)
    model = CAVMAEClassifier(3, img_size=32, audio_length=32, embed_dim=32,
                             modality_specific_depth=1, num_heads=2)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    audio, image = torch.randn(2, 32, 128), torch.randn(2, 3, 32, 32)
    results = []
    for net in (model, compiled):
        model.zero_grad()
        out = net(audio, image)
        out.square().sum().backward()
        results.append((out.detach(), {k: p.grad.clone() for k, p in
                                       model.named_parameters() if p.grad is not None}))
    (eager, g_eager), (comp, g_comp) = results
    torch.testing.assert_close(comp, eager, rtol=1e-5, atol=1e-6)
    assert set(g_comp) == set(g_eager) and len(g_eager) > 40
    for key in g_eager:
        torch.testing.assert_close(g_comp[key], g_eager[key], rtol=1e-5, atol=1e-6)
