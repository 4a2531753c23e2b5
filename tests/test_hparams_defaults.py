"""The recipes' default hyperparameters are those of the original CAV-MAE release.

Each ``hparams/*.yaml`` follows one of the original run scripts and says so in its comments.
The expected values below were read from the original repository (YuanGongND/cav-mae):

* ``Sh`` pins: a variable or command-line flag of a script under ``egs/`` (the literal text as
  written in the script, converted as the original's argparse does);
* ``Code`` pins: a value hard-coded in ``src/`` (the file and the snippet that sets it);
* ``Absent`` pins: a feature the original code does not have (the word its file never uses).

Keys without a counterpart in the original (paths, workers, logging, our own options) are not
pinned. Object arguments (``model.embed_dim``, ``opt_class.weight_decay``,
``lr_scheduler.decay_start``...) must reference the pinned top-level key, so that the objects
the recipe builds get the original's values and a command-line override reaches them.

The yaml files are parsed, not instantiated (nothing is built). With ``CAVMAE_ORIGINAL_SRC``
set to the ``src`` folder of a checkout of the original, ``test_pins_match_the_original``
also checks every pin below against the original files themselves.
"""

import os
import re
from collections import namedtuple
from pathlib import Path

import pytest
from ruamel.yaml import YAML

HPARAMS = Path(__file__).resolve().parents[1] / "hparams"

Sh = namedtuple("Sh", "script var text")  # egs/<script>: <var>=<text> or --<flag> <text>
Code = namedtuple("Code", "value file snippet")  # src/<file> contains <snippet>
Absent = namedtuple("Absent", "value file word")  # src/<file> never mentions <word>

AS_PRETRAIN = "egs/audioset/run_cavmae_pretrain_scale++.sh"
AS_FT = "egs/audioset/run_cavmae_ft_bal.sh"
AS_FT_AUDIO = "egs/audioset/run_cavmae_ft_bal_audioonly.sh"
AS_FT_VIDEO = "egs/audioset/run_cavmae_ft_bal_videoonly.sh"
VGG_PRETRAIN = "egs/vggsound/run_cavmae_pretrain_as.sh"
VGG_FT = "egs/vggsound/run_cavmae_ft.sh"
RUN_PRETRAIN = "src/run_cavmae_pretrain.py"
RUN_FT = "src/run_cavmae_ft.py"
TRAIN_PRETRAIN = "src/traintest_cavmae.py"
TRAIN_FT = "src/traintest_ft.py"
MODEL = "src/models/cav_mae.py"


def sh_value(var, text):
    """A script's setting as the original code uses it.

    ``bal``: the balanced sampler is used iff ``--bal bal`` (``if args.bal == 'bal'``);
    ``--skip_frame_agg``: the multi-frame evaluation runs unless it is ``True``;
    ``True``/``False``: ``ast.literal_eval``; numbers: ``type=float`` / ``type=int``.
    """
    if var == "bal":
        return text == "bal"
    if var == "--skip_frame_agg":
        return text != "True"
    if text in ("True", "False"):
        return text == "True"
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return text


def script_pins(script, **pins):
    """``{yaml key: Sh}`` from ``yaml_key=(script variable, text in the script)``."""
    return {key: Sh(script, var, text) for key, (var, text) in pins.items()}


def pretrain_script(script, lr, epoch, batch_size):
    """The settings every original pretraining script sets (``model=cav-mae``)."""
    return script_pins(
        script,
        masking_ratio=("masking_ratio", "0.75"),
        mask_mode=("mask_mode", "unstructured"),
        contrast_loss_weight=("contrast_loss_weight", "0.01"),
        mae_loss_weight=("mae_loss_weight", "1.0"),
        trainable_pos_embed=("tr_pos", "False"),
        norm_pix_loss=("norm_pix_loss", "True"),
        balanced_sampling=("bal", "None"),
        lr=("lr", lr),
        number_of_epochs=("epoch", epoch),
        lrscheduler_start=("lrscheduler_start", "10"),
        lrscheduler_decay=("lrscheduler_decay", "0.5"),
        lrscheduler_step=("lrscheduler_step", "5"),
        dataset_mean=("dataset_mean", "-5.081"),
        dataset_std=("dataset_std", "4.4849"),
        audio_length=("audio_length", "1024"),
        noise=("noise", "True"),
        mixup=("mixup", "0.0"),
        batch_size=("batch_size", batch_size),
    )


def finetune_script(script, *, ftmode, head_lr, bal, lr, epoch, lrscheduler_start, wa_start,
                    wa_end, batch_size, loss, n_class, skip_frame_agg):
    """The settings every original fine-tuning script sets (``model=cav-mae-ft``)."""
    pins = script_pins(
        script,
        ft_mode=("ftmode", ftmode),
        freeze_base=("freeze_base", "False"),
        head_lr=("head_lr", head_lr),
        balanced_sampling=("bal", bal),
        lr=("lr", lr),
        number_of_epochs=("epoch", epoch),
        lrscheduler_start=("lrscheduler_start", lrscheduler_start),
        lrscheduler_decay=("lrscheduler_decay", "0.5"),
        lrscheduler_step=("lrscheduler_step", "1"),
        weight_averaging=("wa", "True"),
        wa_start=("wa_start", wa_start),
        wa_end=("wa_end", wa_end),
        dataset_mean=("dataset_mean", "-5.081"),
        dataset_std=("dataset_std", "4.4849"),
        audio_length=("audio_length", "1024"),
        noise=("noise", "True"),
        freqm=("freqm", "48"),
        timem=("timem", "192"),
        mixup=("mixup", "0.5"),
        batch_size=("batch_size", batch_size),
        label_smooth=("label_smooth", "0.1"),
        loss=("--loss", loss),
        num_classes=("--n_class", n_class),
    )
    # absent from a script: run_cavmae_ft.py's multi-frame evaluation runs
    pins["multi_frame_eval"] = Sh(script, "--skip_frame_agg", skip_frame_agg)
    return pins


def architecture(depth_snippet):
    """The ViT-B sized encoder that both original models default to."""
    return {
        "patch_size": Code(16, MODEL, "patch_size=16"),
        "embed_dim": Code(768, MODEL, "embed_dim=768"),
        "num_heads": Code(12, MODEL, "num_heads=12"),
        "mlp_ratio": Code(4.0, MODEL, "mlp_ratio=4."),
        "modality_specific_depth": Code(11, depth_snippet[0], depth_snippet[1]),
        # blocks_u: the 12 - modality_specific_depth shared layers
        "shared_depth": Code(1, MODEL, "range(12-modality_specific_depth)"),
        # no drop_path passed to Block, whose default is 0
        "drop_path_rate": Code(0.0, MODEL, "drop_path=0."),
    }


def common(run, train):
    """Settings hard-coded in the original training code, both tasks."""
    return {
        "n_mels": Code(128, run, "'num_mel_bins': 128"),
        "image_size": Code(224, run, "image_size = 224"),
        "sample_rate": Code(16000, "src/preprocess/extract_audio.py", "-ar 16000"),
        "weight_decay": Code(5e-7, train, "weight_decay=5e-7"),
        "opt_class.betas": Code([0.95, 0.999], train, "betas=(0.95, 0.999)"),
        # run_cavmae_*.py parse --warmup True, but the training loop never reads it: the
        # learning rate starts at its full value
        "warmup_steps": Absent(0, train, "warm"),
        "train_dataloader_opts.drop_last": Code(True, run, "pin_memory=True, drop_last=True)"),
    }


PRETRAIN_CODE = {
    **architecture((RUN_PRETRAIN, "modality_specific_depth=11, tr_pos=args.tr_pos")),
    **common(RUN_PRETRAIN, TRAIN_PRETRAIN),
    "decoder_embed_dim": Code(512, MODEL, "decoder_embed_dim=512"),
    "decoder_depth": Code(8, MODEL, "decoder_depth=8"),
    "decoder_num_heads": Code(16, MODEL, "decoder_num_heads=16"),
    "freqm": Code(0, RUN_PRETRAIN, "'freqm': 0, 'timem': 0, 'mixup': args.mixup"),
    "timem": Code(0, RUN_PRETRAIN, "'freqm': 0, 'timem': 0, 'mixup': args.mixup"),
    "label_smooth": Code(0, RUN_PRETRAIN, "'label_smooth': 0"),
    # training takes one of the 10 extracted frames at random
    "n_frames": Code(10, "src/dataloader.py", "frame_idx = random.randint(0, 9)"),
    "train_dataloader_opts.shuffle": Code(True, RUN_PRETRAIN, "shuffle=True"),
    "contrastive_temperature": Code(0.05, MODEL, "torch.transpose(video_rep, 0, 1)) / 0.05"),
    # CAVMAE.forward calls forward_contrastive(a, v) with bidirect_contrast=False
    "contrastive_loss.bidirectional": Code(
        False, MODEL, "self.forward_contrastive(latent_c_a.mean(dim=1), latent_c_v.mean(dim=1))"),
}

FINETUNE_CODE = {
    **architecture((RUN_FT, "CAVMAEFT(label_dim=args.n_class, modality_specific_depth=11)")),
    **common(RUN_FT, TRAIN_FT),
    # CAVMAEFT(..., tr_pos=True): the fine-tuning model trains its positional embeddings
    "trainable_pos_embed": Code(True, MODEL, "norm_pix_loss=False, tr_pos=True"),
    "n_frames": Code(10, RUN_FT, "total_frames = 10"),
}

# object arguments: path -> the top-level key it must reference
WIRING = {
    "opt_class.lr": "lr",
    "opt_class.weight_decay": "weight_decay",
    "lr_scheduler.warmup_steps": "warmup_steps",
    "lr_scheduler.decay_start": "lrscheduler_start",
    "lr_scheduler.decay_step": "lrscheduler_step",
    "lr_scheduler.decay": "lrscheduler_decay",
    "epoch_counter.limit": "number_of_epochs",
    "train_dataloader_opts.batch_size": "batch_size",
    "model.audio_length": "audio_length",
    "model.img_size": "image_size",
    "model.n_mels": "n_mels",
    "model.patch_size": "patch_size",
    "model.embed_dim": "embed_dim",
    "model.num_heads": "num_heads",
    "model.mlp_ratio": "mlp_ratio",
    "model.modality_specific_depth": "modality_specific_depth",
    "model.shared_depth": "shared_depth",
    "model.drop_path_rate": "drop_path_rate",
    "model.trainable_pos_embed": "trainable_pos_embed",
}
PRETRAIN_WIRING = {
    **WIRING,
    "model.decoder_embed_dim": "decoder_embed_dim",
    "model.decoder_depth": "decoder_depth",
    "model.decoder_num_heads": "decoder_num_heads",
    "mask_ratio_a": "masking_ratio",
    "mask_ratio_v": "masking_ratio",
    "mae_loss.norm_pix": "norm_pix_loss",
    "contrastive_loss.temperature": "contrastive_temperature",
}
FINETUNE_WIRING = {**WIRING, "model.num_classes": "num_classes", "model.mode": "ft_mode"}

AS_FT_ARGS = dict(head_lr="100", bal="None", lr="5e-5", epoch="15", lrscheduler_start="5",
                  wa_start="3", wa_end="15", batch_size="36", loss="BCE", n_class="527")
EXPECTED = {
    "cavmae.yaml": ({**PRETRAIN_CODE, **pretrain_script(AS_PRETRAIN, "2e-4", "25", "256")},
                    PRETRAIN_WIRING),
    "vggsound_cavmae.yaml": (
        {**PRETRAIN_CODE, **pretrain_script(VGG_PRETRAIN, "5e-5", "10", "120")},
        PRETRAIN_WIRING),
    "cavmae_ft.yaml": (
        {**FINETUNE_CODE, **finetune_script(AS_FT, ftmode="multimodal", skip_frame_agg=None,
                                            **AS_FT_ARGS)},
        FINETUNE_WIRING),
    "cavmae_ft_audioonly.yaml": (
        {**FINETUNE_CODE, **finetune_script(AS_FT_AUDIO, ftmode="audioonly",
                                            skip_frame_agg="True", **AS_FT_ARGS)},
        FINETUNE_WIRING),
    "cavmae_ft_videoonly.yaml": (
        {**FINETUNE_CODE, **finetune_script(AS_FT_VIDEO, ftmode="videoonly",
                                            skip_frame_agg="False", **AS_FT_ARGS)},
        FINETUNE_WIRING),
    "vggsound_cavmae_ft.yaml": (
        {**FINETUNE_CODE, **finetune_script(
            VGG_FT, ftmode="multimodal", head_lr="10", bal="bal", lr="1e-4", epoch="10",
            lrscheduler_start="2", wa_start="3", wa_end="10", batch_size="48", loss="CE",
            n_class="309", skip_frame_agg=None)},
        FINETUNE_WIRING),
}


def expected_value(pin):
    return sh_value(pin.var, pin.text) if isinstance(pin, Sh) else pin.value


def source(pin):
    if isinstance(pin, Sh):
        return f"{pin.script}: {pin.var} {pin.text}"
    if isinstance(pin, Absent):
        return f"{pin.file} has no {pin.word!r}"
    return f"{pin.file}: {pin.snippet}"


def lookup(tree, path):
    """The value at a dotted path; a ``!ref <key>`` is followed to the top-level key."""
    node = tree
    for part in path.split("."):
        node = node[part]
    tag = getattr(getattr(node, "tag", None), "value", None)
    if tag == "!ref":
        match = re.fullmatch(r"<(\w+)>", node.value)
        assert match, f"{path}: !ref {node.value} is not a plain reference"
        return lookup(tree, match.group(1))
    if isinstance(node, list):
        return list(node)
    return node


def same(value, expected):
    """Equal and of the same kind (a bool is not a number, a number is not a string)."""
    if isinstance(expected, bool) or isinstance(value, bool):
        return value is expected or (isinstance(value, bool) and value == expected)
    if isinstance(expected, (int, float)):
        return isinstance(value, (int, float)) and value == expected
    return type(value) is type(expected) and value == expected


@pytest.fixture(scope="module")
def parsed():
    yaml = YAML(typ="rt")
    return {name: yaml.load((HPARAMS / name).read_text()) for name in EXPECTED}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_defaults_are_the_originals(parsed, name):
    pins, wiring = EXPECTED[name]
    tree = parsed[name]
    wrong = []
    for key, pin in pins.items():
        value = lookup(tree, key)
        if not same(value, expected_value(pin)):
            wrong.append(f"{key} = {value!r}, the original's is {expected_value(pin)!r} "
                         f"({source(pin)})")
    for path, key in wiring.items():
        node = tree
        for part in path.split("."):
            node = node[part]
        if getattr(getattr(node, "tag", None), "value", None) != "!ref" or node.value != f"<{key}>":
            wrong.append(f"{path} does not reference <{key}>")
    assert wrong == [], f"{name}:\n" + "\n".join(wrong)


def script_settings(text):
    """``{var: text}`` of a script's ``var=value`` lines and ``--flag value`` arguments."""
    settings = {}
    for line in text.splitlines():
        match = re.match(r"^(\w+)=(\S+)", line)
        if match:
            settings[match.group(1)] = match.group(2)
    for flag, value in re.findall(r"(--\w+) (\S+)", text):
        if not value.startswith("$"):
            settings[flag] = value
    return settings


@pytest.mark.skipif(not os.environ.get("CAVMAE_ORIGINAL_SRC"),
                    reason="set CAVMAE_ORIGINAL_SRC to the src folder of a cav-mae checkout")
def test_pins_match_the_original():
    """Every pin above is what the original files say (run against a checkout)."""
    root = Path(os.environ["CAVMAE_ORIGINAL_SRC"]).resolve().parent
    wrong = []
    for name, (pins, _) in sorted(EXPECTED.items()):
        for key, pin in pins.items():
            if isinstance(pin, Sh):
                settings = script_settings((root / pin.script).read_text())
                if settings.get(pin.var) != pin.text:
                    wrong.append(f"{name} {key}: {pin.script} has {pin.var} "
                                 f"{settings.get(pin.var)!r}, pinned {pin.text!r}")
            elif isinstance(pin, Absent):
                if pin.word in (root / pin.file).read_text().lower():
                    wrong.append(f"{name} {key}: {pin.file} mentions {pin.word!r}")
            elif pin.snippet not in (root / pin.file).read_text():
                wrong.append(f"{name} {key}: {pin.snippet!r} not in {pin.file}")
    assert wrong == [], "\n".join(wrong)
