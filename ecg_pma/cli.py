"""The `ecg-pma` command. Each subcommand lives in `ecg_pma/commands/`; this module assembles them and runs one."""

from __future__ import annotations

import argparse
import os
import sys

from . import register_auto_classes
from .commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecg-pma", description="ECG foundation model with a mixture of layers (PPA / PMA / IPA)."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    if not sys.stderr.isatty():  # progress bars would fill a log with one line per refresh; set before any import
        for variable in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
            os.environ.setdefault(variable, "1")
    args = build_parser().parse_args(argv)
    register_auto_classes()  # the commands load and save models through the Auto classes
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError) as error:  # ConversionError is a ValueError
        print(f"ecg-pma {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
