"""The ``cavmae`` command: every subcommand's help through the console script, the shared
flag vocabulary, ``--help`` without torch, exit statuses and the missing-extra hint.

``classify --json`` against ``classify_file`` is in ``tests/test_inference.py``; the tools'
work itself in ``tests/test_retrieval_inpaint.py``, ``tests/test_data_tools.py`` and
``tests/test_model_folder.py``.
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from processes import run, subprocess_env
from speechbrain_cavmae.cli import COMMANDS, build_parser
from speechbrain_cavmae.cli import main as cavmae

CONSOLE_SCRIPT = Path(sys.executable).parent / "cavmae"

#: Flags every command has.
RUN_OPTIONS = {"--no_progress", "--debug", "--log_level"}
#: The shared vocabulary: which commands take which shared flag.
SHARED = {
    "--model": {"convert", "classify", "embed", "retrieval", "inpaint", "index", "search",
                "serve"},
    "--manifest": {"embed", "retrieval", "inpaint", "validate", "stats", "balance"},
    "--output": {"convert", "embed", "retrieval", "inpaint", "extract", "balance", "toy",
                 "index"},
    "--device": {"classify", "embed", "retrieval", "inpaint", "index", "search", "serve"},
    "--batch_size": {"embed", "retrieval", "inpaint"},
    "--num_workers": {"embed", "retrieval", "extract", "validate", "stats", "shard"},
    "--label_csv": {"convert", "validate", "balance", "shard"},
    "--audio_channel": {"extract", "shard"},
}
#: Former spellings: gone.
FORMER = ("--checkpoint", "--data", "--out_dir", "--out", "--jobs", "--top-k", "--n-train",
          "--frames", "--size")
HELP_COMMANDS = [*COMMANDS, "prepare videos", "prepare audioset", "prepare vggsound"]


def console(*args, check=True):
    """Run the installed ``cavmae`` console script."""
    assert CONSOLE_SCRIPT.is_file(), (
        f"{CONSOLE_SCRIPT} missing: install the package (make install / pip install -e .)")
    return subprocess.run([str(CONSOLE_SCRIPT), *args], capture_output=True, text=True,
                          check=check, timeout=300, env=subprocess_env())


def options(help_text):
    """``{flag: help}`` of an argparse help text (flags of the 'options:' section)."""
    found, current = {}, None
    for line in help_text.split("options:", 1)[1].splitlines():
        match = re.match(r"^  (-\S+)(?:, (--\S+))?(?: [A-Z_{][^ ]*)?(?:\s{2,}(.*))?$", line)
        if match:
            current = match.group(2) or match.group(1)
            found[current] = match.group(3) or ""
        elif current and line.startswith(" " * 8):
            found[current] += " " + line.strip()
    return found


@pytest.fixture(scope="module")
def helps():
    return {name: console(*name.split(), "--help").stdout for name in HELP_COMMANDS}


def test_every_subcommand_answers_help_through_the_console_script(helps):
    top = console("--help").stdout
    for name in COMMANDS:
        assert re.search(rf"^\s+{name}\s", top, re.M), f"{name} not listed in cavmae --help"
    for name, text in helps.items():
        assert text.startswith(f"usage: cavmae {name}"), text[:200]


def test_shared_flags_one_vocabulary_with_help_and_defaults(helps):
    for name, text in helps.items():
        if name == "prepare":
            continue  # only lists its sources
        flags = options(text)
        assert RUN_OPTIONS <= set(flags), (name, sorted(flags))
        for flag, text_ in flags.items():
            assert flag == "-h" or text_.strip(), f"cavmae {name} {flag} has no help text"
            assert "_" in flag or "-" not in flag[2:], f"cavmae {name}: {flag} is not snake_case"
        for flag, commands in SHARED.items():
            if name in commands:
                assert flag in flags, f"cavmae {name} lacks {flag}"
        for former in FORMER:
            assert not re.search(rf"{former}(?![\w-])", text), f"cavmae {name} shows {former}"
    device = options(helps["classify"])["--device"]
    assert all(options(helps[c])["--device"] == device for c in SHARED["--device"])
    assert "(default: auto)" in device
    assert "(default: 32)" in options(helps["embed"])["--batch_size"]


def test_help_imports_no_heavy_library():
    """``cavmae [<command>] --help`` must not import torch (nor SpeechBrain, timm)."""
    code = (
        "import sys\n"
        "from speechbrain_cavmae.cli import main, COMMANDS\n"
        "for argv in [[], *[[c] for c in COMMANDS]]:\n"
        "    try:\n"
        "        main([*argv, '--help'])\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, (argv, exc.code)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'torchaudio', 'torchvision', 'speechbrain', 'timm'))\n"
        "assert not heavy, heavy[:5]\n"
        "print('light')\n"
    )
    assert run(["-c", code]).stdout.strip().endswith("light")


def test_exit_statuses_and_messages(tmp_path, capsys):
    # usage error: argparse's status 2, naming the missing flag
    with pytest.raises(SystemExit) as exc:
        cavmae(["embed", "--manifest", "m.json", "--output", str(tmp_path)])
    assert exc.value.code == 2
    assert "--model" in capsys.readouterr().err
    # a data problem: status 1, one line, no traceback
    missing = tmp_path / "nope.json"
    assert cavmae(["validate", "--manifest", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and "Traceback" not in err
    assert err.count("\n") == 1
    # the same through the console script
    proc = console("stats", "--manifest", str(missing), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and str(missing) in proc.stderr


def test_missing_extra_names_the_install(tmp_path, monkeypatch, capsys):
    """Without matplotlib, ``inpaint`` says which ``pip install`` fixes it, before loading
    any model (the model path here does not exist)."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code = cavmae(["inpaint", "--model", str(tmp_path / "absent.pth"), "--manifest", "m.json",
                   "--output", str(tmp_path / "fig")])
    err = capsys.readouterr().err
    assert code == 1
    assert "pip install 'speechbrain-cavmae[plots]'" in err and "absent.pth" not in err


def parsers():
    """``{command: parser}`` of every command, ``prepare``'s sources as ``prepare <source>``."""
    found = {}
    for name in COMMANDS:
        sub = _subparsers(build_parser([name]))[name]
        inner = _subparsers(sub)
        found.update({f"{name} {k}": v for k, v in inner.items()} if inner else {name: sub})
    return found


def _subparsers(parser):
    return next((a.choices for a in parser._actions
                 if isinstance(a, argparse._SubParsersAction)), {})


def _signature(action):
    return (type(action).__name__, action.type, action.default, tuple(action.choices or ()),
            action.nargs, action.dest)


#: The positional arguments: the media a command reads, the index it opens.
POSITIONALS = {("classify", "clips"), ("index", "paths"), ("search", "index"),
               ("serve", "index")}


def test_one_vocabulary_without_exceptions():
    """Walk every command's parser: each flag has one spelling; a flag of the shared
    vocabulary (``tools/common.py``) has one type, default, choices and help in every
    command (``--output`` says what the command writes there); any other flag name that two
    commands share has one type and one set of choices; the positional arguments are the
    media that ``classify`` and ``index`` read and the index that ``search`` and ``serve``
    open (the interface issue 29 names); ``--log_level`` has one default."""
    from speechbrain_cavmae.tools import common

    probe = argparse.ArgumentParser()
    for add in (common.add_model, common.add_manifest, common.add_label_csv, common.add_videos,
                common.add_output, common.add_device, common.add_loader, common.add_n_frames,
                common.add_fbank_stats, common.add_trust, common.add_run_options,
                common.add_heads, common.add_audio_channel):
        add(probe)
    shared = {a.option_strings[0]: a for a in probe._actions if a.option_strings[0] != "-h"}
    seen = {}
    for name, parser in parsers().items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not action.option_strings:
                assert (name, action.dest) in POSITIONALS, (
                    f"cavmae {name}: positional {action.dest}; every file is a named flag")
                continue
            assert len(action.option_strings) == 1, (name, action.option_strings)
            flag = action.option_strings[0]
            assert re.fullmatch(r"--[a-z0-9]+(_[a-z0-9]+)*", flag), (name, flag)
            if flag in shared:
                want = shared[flag]
                assert _signature(action) == _signature(want), (name, flag)
                assert flag == "--output" or action.help == want.help, (name, flag)
            seen.setdefault(flag, []).append((name, action))
    for flag, uses in seen.items():
        kinds = {(type(a).__name__, a.type, tuple(a.choices or ())) for _, a in uses}
        assert len(kinds) == 1, f"{flag} means different things: {[n for n, _ in uses]}"
    assert {a.default for _, a in seen["--log_level"]} == {"WARNING"}
    for flag, commands in SHARED.items():
        assert commands <= {n for n, _ in seen[flag]}, flag
    extract = parsers()["extract"].parse_args(["--videos", "v", "--output", "o",
                                               "--audio_channel", "mean"])
    assert extract.audio_channel is None  # the mean of the channels, as the data pipeline


def test_required_flags_are_required_in_usage_and_help(helps):
    for name, parser in parsers().items():
        usage = " ".join(parser.format_usage().split())
        for action in parser._actions:
            if not action.option_strings:
                continue
            flag = f"{action.option_strings[0]} {action.metavar or action.dest.upper()}"
            if action.required:
                assert f" {flag}" in usage and f"[{flag}]" not in usage, (name, usage)
    assert re.search(r"^usage: cavmae shard \[-h\] --manifest MANIFEST --output OUTPUT",
                     helps["shard"], re.M)
    assert "(required)" in options(helps["convert"])["--model"]
    assert "(required)" not in options(helps["retrieval"])["--output"]


def test_help_is_plain_text(helps):
    """No reST in any ``--help``: roles, double backquotes, literal-block markers."""
    for name, text in helps.items():
        for markup in ("``", ":func:", ":mod:", ":class:", ":meth:", "::"):
            assert markup not in text, f"cavmae {name} --help shows {markup!r}"


def test_one_spelling_per_command_and_flag(tmp_path, monkeypatch):
    """``cavmae`` and ``python -m speechbrain_cavmae`` run the tools; the former module
    entry points, flag spellings and positional forms are gone (usage errors)."""
    proc = run(["-m", "speechbrain_cavmae", "toy", "--output", tmp_path / "toy",
                "--n_train", "2", "--n_valid", "1", "--n_test", "1", "--image_size", "32"])
    assert (tmp_path / "toy" / "train.json").is_file(), proc.stdout
    proc = run(["-m", "speechbrain_cavmae", "convert", "--help"])
    assert proc.stdout.startswith("usage: python -m speechbrain_cavmae convert")
    for module in ("speechbrain_cavmae.toy", "speechbrain_cavmae.convert",
                   "speechbrain_cavmae.tools.shard", "speechbrain_cavmae.data.stats"):
        proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                              text=True, env=subprocess_env(), timeout=300)
        assert "usage:" not in proc.stdout, module
    monkeypatch.chdir(tmp_path)  # where a wrongly accepted spelling would write
    for argv in (["toy", "--out", "x"], ["toy", "--output", "x", "--n-train", "3"],
                 ["stats", "m.json"], ["validate", "m.json", "--jobs", "2"],
                 ["shard", "m.json", "out"], ["prepare", "videos", "folder", "--output", "m"],
                 ["embed", "--checkpoint", "m", "--data", "m.json", "--out_dir", "o"],
                 ["extract", "--videos", "v", "--output", "o", "--frames", "4"],
                 ["extract", "--videos", "v", "--output", "o", "--mix"],
                 ["shard", "--manifest", "m", "--output", "o", "--audio_channel", "left"],
                 ["classify", "a.wav", "--model", "m", "--top-k", "2"]):
        with pytest.raises(SystemExit) as exc:
            cavmae(argv)
        assert exc.value.code == 2, argv
    assert not (tmp_path / "x").exists()


def test_convert_defaults_are_the_fbank_constants():
    """``cavmae convert`` repeats AudioSet's fbank statistics so that its ``--help`` needs no
    torch; they must stay those of ``data/fbank.py``."""
    from speechbrain_cavmae.data import fbank
    from speechbrain_cavmae.tools import convert

    assert (convert.DEFAULT_MEAN, convert.DEFAULT_STD) == (fbank.DEFAULT_MEAN, fbank.DEFAULT_STD)
