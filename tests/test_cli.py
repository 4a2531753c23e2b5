"""The ``cavmae`` command: every subcommand's help through the console script, the shared
flag vocabulary, ``--help`` without torch, exit statuses and the missing-extra hint.

``classify --json`` against ``classify_file`` is in ``tests/test_inference.py``; the tools'
work itself in ``tests/test_retrieval_inpaint.py``, ``tests/test_data_tools.py`` and
``tests/test_model_folder.py``.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from processes import run, subprocess_env
from speechbrain_cavmae.cli import COMMANDS
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
}
#: Former spellings: accepted, never shown.
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


def test_former_spellings_still_parse():
    from speechbrain_cavmae.tools import common, extract, toy, validate

    args = common.build_parser(toy).parse_args(["--out", "x", "--n-train", "3"])
    assert (args.output, args.n_train) == ("x", 3)
    args = common.build_parser(extract).parse_args(
        ["--videos", "v", "--out", "o", "--frames", "4", "--jobs", "2", "--manifest", "m"])
    assert (args.output, args.n_frames, args.num_workers, args.write_manifest) == (
        "o", 4, 2, "m")
    args = common.build_parser(validate).parse_args(["m.json", "--jobs", "3"])
    common.check_required(args)
    assert (args.manifest, args.num_workers) == ("m.json", 3)


def test_python_dash_m_forms_still_run(tmp_path):
    proc = run(["-m", "speechbrain_cavmae.toy", "--out", tmp_path / "toy", "--n-train", "2",
                "--n-valid", "1", "--n-test", "1", "--image-size", "32"])
    assert (tmp_path / "toy" / "train.json").is_file(), proc.stdout
    proc = run(["-m", "speechbrain_cavmae.convert", "--help"])
    assert proc.stdout.startswith("usage: python -m speechbrain_cavmae.convert")


def test_convert_defaults_are_the_fbank_constants():
    """``cavmae convert`` repeats AudioSet's fbank statistics so that its ``--help`` needs no
    torch; they must stay those of ``data/fbank.py``."""
    from speechbrain_cavmae.data import fbank
    from speechbrain_cavmae.tools import convert

    assert (convert.DEFAULT_MEAN, convert.DEFAULT_STD) == (fbank.DEFAULT_MEAN, fbank.DEFAULT_STD)
