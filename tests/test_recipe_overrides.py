"""The recipes' command line before anything trains: the model sizes of a
``--pretrained_path`` model folder, the documented small-model flag set on every yaml.

In-process and fast: the yamls are loaded and their Brains built (tiny models), nothing is
trained. The full fine-tuning run from a pretraining folder without size flags is in the
chain of ``test_recipes.py`` (``test_finetuning_from_a_pretraining_folder_takes_its_sizes``);
the bad command lines (a disagreeing size flag, an unknown key) are cases of
``test_bad_inputs.py``.
"""

import logging
import re
import shlex
from pathlib import Path

import pytest
import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from media import write_label_csv

from speechbrain_cavmae import CAVMAE
from speechbrain_cavmae.checkpoints import load, model_config
from speechbrain_cavmae.checkpoints.model_folder import write_model_folder
from speechbrain_cavmae.training import recipe

REPO = Path(__file__).resolve().parents[1]
YAMLS = sorted((REPO / "hparams").glob("*.yaml"))
TINY = dict(img_size=32, audio_length=64, embed_dim=32, modality_specific_depth=1,
            shared_depth=1, num_heads=4, decoder_embed_dim=16, decoder_depth=1,
            decoder_num_heads=2)


def quick_check_flags():
    """The "Quick check" flag set of ``docs/recipes.md``."""
    text = (REPO / "docs" / "recipes.md").read_text()
    found = re.search(r"\*\*Quick check\*\*.*?`(--embed_dim [^`]+)`", text, re.DOTALL)
    assert found, "docs/recipes.md lost its Quick check flag set"
    return shlex.split(found.group(1))


def build(argv, out):
    """What a recipe's ``main`` does before training: the Brain of ``argv``."""
    hparams_file, run_opts, overrides = sb.parse_arguments(
        [*map(str, argv), "--output_folder", str(out), "--num_workers", "0"])
    overrides = recipe.complete_overrides(overrides, hparams_file)
    with open(hparams_file, encoding="utf8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    recipe.check_hparams(hparams)
    return hparams, recipe.make_brain(hparams, run_opts)


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    root = tmp_path_factory.mktemp("overrides")
    return write_label_csv(str(root / "labels.csv"), ["/m/a", "/m/b", "/m/c"])


@pytest.mark.parametrize("yaml_path", YAMLS, ids=lambda p: p.name)
def test_quick_check_flags_build_every_yaml(yaml_path, labels, tmp_path, caplog):
    """The one documented tiny flag set builds the Brain of every yaml (fine-tuning yamls
    included), with no SpecAugment warning."""
    flags = quick_check_flags()
    extra = ["--label_csv", labels, "--pretrained_path", str(tmp_path / "unused.pth")]
    with caplog.at_level(logging.WARNING, logger="speechbrain_cavmae"):
        hparams, brain = build([yaml_path, *flags, *extra], tmp_path / "run")
    cfg = model_config(brain.modules.model)
    given = dict(zip(flags[::2], flags[1::2]))
    assert cfg["embed_dim"] == int(given["--embed_dim"])
    assert cfg["num_heads"] == int(given["--num_heads"])
    assert cfg["img_size"] == int(given["--image_size"])
    assert cfg["audio_length"] == int(given["--audio_length"])
    if hparams["task"] == "pretrain":
        assert cfg["decoder_embed_dim"] == int(given["--decoder_embed_dim"])
    assert not [r for r in caplog.records if "SpecAugment" in r.getMessage()]


@pytest.fixture(scope="module")
def pretraining_folder(tmp_path_factory):
    """A tiny pretraining model folder, as a run of ``cavmae.yaml`` writes it."""
    out = tmp_path_factory.mktemp("pre") / "model"
    write_model_folder(CAVMAE(**TINY), str(out), norm_pix_loss=True)
    return out


@pytest.mark.parametrize("yaml_name", ["cavmae_ft.yaml", "vggsound_cavmae.yaml"])
def test_sizes_come_from_the_pretrained_folder(yaml_name, pretraining_folder, labels,
                                               tmp_path):
    """Fine-tuning (and continued pretraining) from a folder with no size flag builds the
    folder's architecture and loads its weights."""
    hparams, brain = build([REPO / "hparams" / yaml_name, "--label_csv", labels,
                            "--pretrained_path", pretraining_folder], tmp_path / "run")
    cfg = model_config(brain.modules.model)
    for key, value in TINY.items():
        if key in cfg:
            assert cfg[key] == value, key
    loaded = load(hparams["pretrained_path"], into=brain.modules.model).report
    assert loaded["loaded"]


def test_audio_length_may_differ_from_the_folder(pretraining_folder, labels, tmp_path):
    """``--audio_length`` is the one size that may differ (positions are interpolated)."""
    hparams, brain = build([REPO / "hparams" / "cavmae_ft.yaml", "--label_csv", labels,
                            "--pretrained_path", pretraining_folder, "--audio_length", "96"],
                           tmp_path / "run")
    assert model_config(brain.modules.model)["audio_length"] == 96
    load(hparams["pretrained_path"], into=brain.modules.model).report


@pytest.mark.parametrize("yaml_path", YAMLS, ids=lambda p: p.name)
def test_yamls_name_the_commands_that_exist(yaml_path):
    """The shards are written by ``cavmae shard`` (the yamls named a module path)."""
    text = yaml_path.read_text()
    assert "python -m speechbrain_cavmae.tools.shard" not in text
    assert "written by cavmae shard --manifest ... --output ..." in text


def test_data_config_dict_reaches_the_on_device_fbank(labels, tmp_path):
    """One route for data settings: a ``data_config:`` dict feeds the brain's on-device
    fbank and augmentation as it feeds the dataset (the brain read only top-level keys)."""
    hparams, brain = build([REPO / "hparams" / "cavmae_ft.yaml", *quick_check_flags(),
                            "--label_csv", labels, "--pretrained_path",
                            str(tmp_path / "unused.pth")], tmp_path / "run")
    brain.hparams.data_config = {"audio_length": 48, "dataset_mean": -3.0,
                                 "dataset_std": 2.0, "timem": 8}
    fbank = brain.fbank_module()
    assert (fbank.audio_length, fbank.dataset_mean, fbank.dataset_std) == (48, -3.0, 2.0)
    assert brain._augment.timem == 8
