"""Fuzz test of the model-folder schema (:mod:`speechbrain_cavmae.checkpoints.trust`).

Seeded, generated ``hyperparams.yaml`` files: the classifier folder's own yaml with lines
added or changed, using every HyperPyYAML / PyYAML tag (``!new:``, ``!name:``, ``!apply:``,
``!applyref:``, ``!module:``, ``!ref``, ``!copy``, ``!tuple``, ``!include:``,
``!PLACEHOLDER``, ``!!python/...``) with qualified names drawn from the real attributes of
``torch``, ``speechbrain``, ``os``, ``subprocess`` and ``builtins``, and paths inside and
outside the folder. For each:

* the checker's verdict (``folder_problems``) equals every reader's: a refused folder is an
  ``UntrustedCodeError`` with one and the same message from every reader, and nothing it
  names ran (each callable is given a marker path to create; none exists afterwards);
* an accepted folder builds, through every reader, only the classes of ``FOLDER_CLASSES``
  (and plain data), and the readers load the same weights.
"""

import builtins
import os
import random
import re
import shutil
import subprocess

import pytest
import speechbrain
import speechbrain.dataio.dataio
import speechbrain.utils.checkpoints
import torch
from folder_readers import every_reader

from speechbrain_cavmae import CAVMAEClassifier
from speechbrain_cavmae.checkpoints.model_folder import write_model_folder
from speechbrain_cavmae.checkpoints.trust import (
    FOLDER_CLASSES,
    LOAD_HOOKS,
    UntrustedCodeError,
    folder_problems,
)

SEED = 24
N_FOLDERS = 70
ARCH = dict(img_size=32, audio_length=32, embed_dim=32, modality_specific_depth=1,
            shared_depth=1, num_heads=4)
CALLABLE_TAGS = ("!new:", "!name:", "!apply:", "!applyref:", "!module:",
                 "!!python/object/apply:", "!!python/object/new:", "!!python/name:",
                 "!!python/module:")


def qualified_names(rng, n=300):
    """``n`` qualified names of real attributes of the modules a yaml could reach."""
    names = []
    for module in (torch, torch.nn, speechbrain.dataio.dataio, speechbrain.utils.checkpoints,
                   os, subprocess, builtins):
        prefix = "builtins" if module is builtins else module.__name__
        names += [f"{prefix}.{a}" for a in dir(module) if not a.startswith("__")]
    names = sorted(set(names))
    return rng.sample(names, n) + sorted(FOLDER_CLASSES) + sorted(LOAD_HOOKS)


TAGS = CALLABLE_TAGS + ("!ref", "!copy", "!tuple", "!include:", "!PLACEHOLDER")


def tagged(rng, names, marker, i):
    """A tagged yaml value (flow style): the ``i``-th folder uses the ``i``-th tag (cycling,
    so that every tag is tried), with a random name or argument."""
    tag = TAGS[i % len(TAGS)]
    if tag in CALLABLE_TAGS:
        return f"{tag}{rng.choice(names)} [{marker}]"
    if tag in ("!ref", "!copy"):
        return tag + " " + rng.choice(["<sample_rate>", "<n_mels> * 2", "<model.__class__>",
                                       "<pretrained_path>/x", "<label_encoder>",
                                       "<sample_rate> ** 99", "<modules[model]>"])
    if tag == "!tuple":
        return rng.choice(["!tuple (1, 2)", "!tuple (a, 3.5)",
                           f"!tuple (!!python/object/apply:os.makedirs [{marker}], 1)",
                           f"(!!python/object/apply:os.makedirs [{marker}], 1)"])
    if tag == "!include:":
        return f"!include:{rng.choice(['other.yaml', '../other.yaml'])}"
    return tag


KINDS = ("top", "nested", "paths", "pretrainer", "model_arg", "plain", "top")


def mutate(rng, text, names, marker, folder, i):
    """The ``i``-th folder's yaml with one generated change (``KINDS`` cycle too, their
    count prime to that of ``TAGS``, so that every tag meets every kind)."""
    kind = KINDS[i % len(KINDS)]
    value = tagged(rng, names, marker, i)
    if kind == "top":
        return text + f"fuzz: {value}\n"
    if kind == "nested":
        return text + f"fuzz:\n    a: [1, {value}]\n"
    if kind == "plain":
        return text + "fuzz: " + rng.choice(["(1, 2)", "[1, 2]", "{a: 1}", "'(x)'", "null"]) + "\n"
    if kind == "paths":
        new = rng.choice([
            "!ref <pretrained_path>/model.ckpt", "!ref <pretrained_path>/../clf/model.ckpt",
            "!ref <pretrained_path>/../outside/model.ckpt", "/etc/passwd", "model.ckpt",
            f"!ref <pretrained_path>/{'../' * 8}etc/passwd", "!ref <sample_rate>",
            f"{folder}/model.ckpt", "!ref <pretrained_path>/./model.ckpt",
            "!ref <pretrained_path>/label_encoder.txt"])
        which = rng.choice(["model", "label_encoder"])
        return text.replace(f"        {which}: !ref <pretrained_path>/",
                            f"        {which}: {new} #", 1)
    if kind == "pretrainer":
        return text.replace("    custom_hooks:", rng.choice([
            f"    collect_in: {marker}\n    custom_hooks:",
            f"    conditions: {{model: {value}}}\n    custom_hooks:"]), 1) if rng.random() < 0.5 \
            else text.replace("!name:speechbrain_cavmae.checkpoints.loader.strict_load_hook",
                              value if "[" not in value else value.split(" [")[0], 1)
    return text.replace("    mode: !ref <mode>", f"    mode: !ref <mode>\n    fuzz: {value}", 1)


def built_types(value, seen=None):
    """Qualified names of the non-data objects in a loaded yaml value (modules' children
    are the model's own, not built by the yaml)."""
    seen = set() if seen is None else seen
    if id(value) in seen or value is None or isinstance(value, (str, int, float, bool)):
        return set()
    seen.add(id(value))
    if isinstance(value, dict):
        return set().union(*[built_types(v, seen) for v in value.values()], set())
    if isinstance(value, (list, tuple)):
        return set().union(*[built_types(v, seen) for v in value], set())
    name = getattr(value, "__module__", "") + "." + getattr(value, "__qualname__",
                                                             type(value).__qualname__)
    return {name if callable(value) and not isinstance(value, torch.nn.Module)
            else f"{type(value).__module__}.{type(value).__qualname__}"}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    torch.manual_seed(0)
    write_model_folder(CAVMAEClassifier(4, **ARCH).eval(), str(root / "clf"), loss="BCE")
    (root / "outside").mkdir()
    shutil.copy(root / "clf" / "model.ckpt", root / "outside" / "model.ckpt")
    (root / "other.yaml").write_text("a: !apply:os.makedirs [x]\n")
    return root


def test_checker_and_every_reader_agree_and_nothing_else_is_built(base):
    from hyperpyyaml import load_hyperpyyaml

    rng = random.Random(SEED)
    names = qualified_names(rng)
    original = (base / "clf" / "hyperparams.yaml").read_text()
    allowed_types = {f"{c.rsplit('.', 1)[0]}.{c.rsplit('.', 1)[1]}" for c in FOLDER_CLASSES}
    counts = {"refused": 0, "accepted": 0}
    for i in range(N_FOLDERS):
        folder = base / f"f{i:03d}"
        folder.mkdir()
        for name in ("model.ckpt", "label_encoder.txt"):
            os.link(base / "clf" / name, folder / name)  # a hard link is inside
        marker = base / f"marker{i}"
        text = mutate(rng, original, names, marker, folder, i)
        (folder / "hyperparams.yaml").write_text(text)
        problems = folder_problems(text, str(folder), {"pretrained_path": str(folder)})
        outcomes = {}
        for reader, read in every_reader(folder, base / f"sd{i}", ARCH).items():
            try:
                outcomes[reader] = ("loaded", read())
            except UntrustedCodeError as exc:
                outcomes[reader] = ("refused", str(exc))
            except Exception as exc:  # accepted but not loadable: same for every reader
                outcomes[reader] = ("error", type(exc).__name__)
            assert not list(base.glob(f"marker{i}*")), (reader, text)
        verdicts = {reader: o[0] for reader, o in outcomes.items()}
        if problems:
            counts["refused"] += 1
            assert set(verdicts.values()) == {"refused"}, (verdicts, text)
            messages = {o[1] for o in outcomes.values()}
            assert len(messages) == 1, messages
            assert re.search(r": line \d+: .* is not allowed \(|: cannot be parsed to check it",
                             messages.pop())
            continue
        counts["accepted"] += 1
        assert "refused" not in verdicts.values(), (verdicts, text)
        if "error" in verdicts.values():
            continue
        # what the yaml builds: only the folder classes, the load hook and plain data
        hparams = load_hyperpyyaml(text, {"pretrained_path": str(folder)})
        types = built_types({k: v for k, v in hparams.items() if k != "modules"})
        assert types <= allowed_types | set(LOAD_HOOKS) | {
            "speechbrain_cavmae.model.classifier.CAVMAEClassifier"}, (types, text)
        weights = outcomes["load_model"][1].state_dict()
        for reader in ("from_hparams", "tools"):
            got = outcomes[reader][1].state_dict()
            assert all(torch.equal(got[k], weights[k]) for k in weights), reader
    # the generator reaches both verdicts
    assert counts["refused"] > N_FOLDERS // 2 and counts["accepted"] >= 8, counts
