"""
`ecg-pma --help` and `ecg-pma <command> --help` through the installed console script: answered without importing
torch or transformers (the package registers its Auto classes on import, except in the command's own process, where
a subcommand registers), `finetune`'s from a snapshot of its `HfArgumentParser` that prints the same text; and the
options pretrain, finetune and probe-layers share, spelled the same way in each.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

from ecg_pma.cli import build_parser
from ecg_pma.commands import COMMANDS
from ecg_pma.commands.parser_snapshot import parser_from_snapshot
from ecg_pma.constants import FINETUNE_MODES, TRAINING_OPTIONS


HEAVY_MODULES = ("torch", "transformers", "datasets", "wfdb", "scipy")
SUBCOMMANDS = list(build_parser()._subparsers._group_actions[0].choices)


def console_script() -> str:
    """The `ecg-pma` script installed beside this interpreter (the one `pip install` wrote)."""
    script = Path(sys.executable).parent / "ecg-pma"
    return str(script) if script.exists() else shutil.which("ecg-pma")


def run_console_script(*args) -> subprocess.CompletedProcess:
    # runpy gives the script its own `__main__`, as running it does, so that the check can look at sys.modules after
    code = (
        "import runpy, sys\n"
        "script = sys.argv[1]\n"
        "sys.argv = sys.argv[1:]\n"
        "try:\n    runpy.run_path(script, run_name='__main__')\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, console_script(), *args], capture_output=True, text=True, timeout=120
    )


def test_every_subcommand_is_checked_here():
    assert len(SUBCOMMANDS) == len(COMMANDS) and "finetune" in SUBCOMMANDS


def snapshot_transformers() -> str:
    from ecg_pma.commands.finetune import HELP_SNAPSHOT

    return json.loads(HELP_SNAPSHOT.read_text())["transformers"]


@pytest.mark.parametrize("command", [[], *([name] for name in SUBCOMMANDS), ["finetune", "--mode", "lora"]])
def test_help_imports_no_heavy_library(command):
    if command[:1] == ["finetune"] and snapshot_transformers() != metadata.version("transformers"):
        pytest.skip(f"the finetune help snapshot is for transformers {snapshot_transformers()}: --help imports it")
    start = time.perf_counter()
    result = run_console_script(*command, "--help")
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {' '.join(['ecg-pma', *command[:1]])}"), result.stdout[:200]
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout.strip().splitlines()[-1]
    # measured, not asserted: the machine may be busy; the number is in the test log (-s)
    print(f"ecg-pma {' '.join(command)} --help: {seconds:.2f} s wall ({os.cpu_count()} CPUs)")


def test_top_level_help_lists_the_subcommands():
    result = subprocess.run([console_script(), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "finetune" in result.stdout and "probe-layers" in result.stdout


@pytest.mark.parametrize("mode", FINETUNE_MODES)
def test_the_finetune_help_snapshot_is_current_and_prints_what_hfargumentparser_prints(monkeypatch, mode):
    from ecg_pma.commands.finetune import DESCRIPTION, HELP_SNAPSHOT, HELP_SOURCES, finetune_argument_parser

    if snapshot_transformers() != metadata.version("transformers"):  # make test-min: the real parser answers
        pytest.skip(f"the snapshot was made with transformers {snapshot_transformers()}")
    monkeypatch.setenv("COLUMNS", "100")  # one width for both
    snapshot_parser = parser_from_snapshot(HELP_SNAPSHOT, mode, "ecg-pma finetune", DESCRIPTION, HELP_SOURCES)
    assert snapshot_parser is not None, "the files that define the finetune parser changed: run `make help-snapshot`"
    expected = finetune_argument_parser(mode, "ecg-pma finetune").format_help()
    assert snapshot_parser.format_help() == expected, "the finetune options changed: run `make help-snapshot`"


def test_a_stale_snapshot_is_not_used(tmp_path):
    from ecg_pma.commands.finetune import DESCRIPTION, HELP_SNAPSHOT, HELP_SOURCES

    stale = tmp_path / "finetune_help.json"
    snapshot = json.loads(HELP_SNAPSHOT.read_text())
    stale.write_text(json.dumps({**snapshot, "sources": "0" * 64}))
    assert parser_from_snapshot(stale, "probe", "ecg-pma finetune", DESCRIPTION, HELP_SOURCES) is None
    stale.write_text(json.dumps({**snapshot, "transformers": "0.0.1"}))
    assert parser_from_snapshot(stale, "probe", "ecg-pma finetune", DESCRIPTION, HELP_SOURCES) is None


# ------------------------------------------------------------------------------- one vocabulary across the commands


def option_actions(command: list[str]) -> dict[str, argparse.Action]:
    """`ecg-pma <command>`'s parser (finetune: its HfArgumentParser), option string -> action."""
    if command[0] == "finetune":
        from ecg_pma.commands.finetune import finetune_argument_parser

        parser = finetune_argument_parser("probe")
    else:
        parser = build_parser()._subparsers._group_actions[0].choices[command[0]]
    return {option: action for action in parser._actions for option in action.option_strings}


TRAINING_COMMANDS = ["pretrain", "finetune", "probe-layers"]


@pytest.mark.parametrize("command", TRAINING_COMMANDS)
def test_pretrain_finetune_and_probe_layers_share_spelling_and_help(command):
    actions = option_actions([command])
    for field, (flag, aliases, help_text) in TRAINING_OPTIONS.items():
        assert actions[flag].dest == field, (command, flag)
        assert actions[flag].help.startswith(help_text), (command, flag, actions[flag].help)
        for alias in aliases:
            assert actions[alias].dest == field and actions[alias].help in (argparse.SUPPRESS, actions[flag].help)


PRETRAIN = ["pretrain", "--data", "d", "--preset", "tiny"]
FINETUNE = ["finetune", "--data", "d", "--model", "m"]
PROBE_LAYERS = ["probe-layers", "--data", "d", "--model", "m"]
SHARED = ["--output-dir", "o", "--num-train-epochs", "3", "--per-device-train-batch-size", "8", "--learning-rate"]
SHARED += ["0.002", "--seed", "7"]


def shared_values(args: argparse.Namespace) -> tuple:
    source = args.training_args if args.command == "finetune" else args
    return tuple(getattr(source, field) for field in TRAINING_OPTIONS)


@pytest.mark.parametrize("command", [PRETRAIN, FINETUNE, PROBE_LAYERS])
def test_one_command_line_edits_into_another(command):
    assert shared_values(build_parser().parse_args([*command, *SHARED])) == ("o", 3, 8, 0.002, 7)
    # the older spellings of each command still work
    old = ["--output_dir", "o", "--epochs", "3", "--batch-size", "8", "--learning_rate", "0.002", "--seed", "7"]
    assert shared_values(build_parser().parse_args([*command, *old])) == ("o", 3, 8, 0.002, 7)
