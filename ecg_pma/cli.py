"""The `ecg-pma` command. Each subcommand lives in `ecg_pma/commands/`; this module assembles them and runs one."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import re
import sys

from . import register_auto_classes
from .commands import COMMANDS


DEBUG_ENVIRONMENT_VARIABLE = "ECG_PMA_DEBUG"


ANSI_CODE = re.compile(r"\x1b\[[0-9;]*m")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecg-pma", description="ECG foundation model with a mixture of layers (PPA / PMA / IPA)."
    )
    debug_help = f"show the full traceback of an error (or set {DEBUG_ENVIRONMENT_VARIABLE}=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    for subparser in commands.choices.values():
        # accepted after the subcommand too; SUPPRESS keeps a `--debug` given before it
        subparser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    return parser


def _chain(error: BaseException) -> list[BaseException]:
    """`error` and the exceptions it was raised from, outermost first."""
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _request_url(error: BaseException) -> str:
    """` URL` of the request an HTTP client's error (or one it was raised from) was about, else empty."""
    for cause in _chain(error):
        try:
            url = cause.request.url  # httpx raises RuntimeError when the error carries no request
        except (AttributeError, RuntimeError):
            continue
        if url:
            return f" {url}"
    return ""


def describe_error(error: BaseException) -> str:
    """
    One or two lines for a user: what failed, naming the file or record, from our own errors and from the library
    errors that reach the command line (datasets, huggingface_hub, safetensors, OS errors).
    """
    name = type(error).__name__
    if name == "DatasetGenerationError":
        # datasets names only the shard; the record that failed is in the error it was raised from
        causes = [cause for cause in _chain(error)[1:] if type(cause).__name__ != "DatasetGenerationError"]
        if causes:
            return f"reading the dataset failed: {describe_error(causes[0])}"
    if isinstance(error, json.JSONDecodeError):
        return f"invalid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
    if name == "SafetensorError":
        return f"not a readable safetensors file: {error}"
    if name in ("HfHubHTTPError", "RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError"):
        return _first_line(str(error))
    if name in ("ConnectError", "ConnectTimeout", "ConnectionError", "ReadTimeout"):
        return f"could not reach the server{_request_url(error)}: {_first_line(str(error))}"
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.strerror or name}: {error.filename}"
    return _first_line(str(error)) or name


# Errors that bad input, files or settings cause; anything else is a bug and says so.
EXPECTED_ERRORS = (ValueError, TypeError, OSError, KeyError, RuntimeError)
# by name: datasets' and the HTTP clients' errors, without importing those libraries here
EXPECTED_LIBRARY_ERRORS = (
    "DatasetGenerationError",
    "HfHubHTTPError",
    "HTTPError",
    "ConnectError",
    "ConnectTimeout",
    "ReadTimeout",
    "TimeoutException",
)


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of the record (it may be replaced after `main` starts)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _StripTerminalCodes(logging.Filter):
    """Drops ANSI colour codes from library log records (transformers' load report writes them unconditionally)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = ANSI_CODE.sub("", record.getMessage())
        record.args = None
        return True


class _WithoutLoadReport(logging.Filter):
    """
    Drops transformers' LOAD REPORT (a table of every missing weight) from a command's output: the package's own
    loading checks fail on weights that do not fit and say in one line which new modules were created. `--debug`
    keeps it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return " LOAD REPORT" not in str(record.msg)


LOAD_REPORT_FILTER = _WithoutLoadReport()


@contextlib.contextmanager
def load_report_shown(show: bool):
    """
    Whether transformers' LOAD REPORT reaches the output while a command runs (its logger, taken by name:
    transformers not imported); the logger is left as it was afterwards, for whatever else the process loads.
    """
    modeling_logger = logging.getLogger("transformers.modeling_utils")
    if not show:
        modeling_logger.addFilter(LOAD_REPORT_FILTER)
    try:
        yield
    finally:
        modeling_logger.removeFilter(LOAD_REPORT_FILTER)


@functools.cache  # once per process: `main` may run several times in one (tests, notebooks)
def plain_library_output() -> None:
    """
    For a log file or a pipe: no colour codes from transformers (its load report writes them whatever the stream;
    the progress bars are already off through the environment switches `main` sets before any import).
    """
    from transformers.utils import logging as transformers_logging

    handler = _CurrentStderrHandler()
    handler.addFilter(_StripTerminalCodes())
    transformers_logging.disable_default_handler()
    transformers_logging.add_handler(handler)


def main(argv: list[str] | None = None) -> int:
    if not sys.stderr.isatty():  # progress bars would fill a log with one line per refresh; set before any import
        for variable in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
            os.environ.setdefault(variable, "1")
    args = build_parser().parse_args(argv)
    if not sys.stderr.isatty():
        plain_library_output()
    register_auto_classes()  # the commands load and save models through the Auto classes
    debug = args.debug or os.environ.get(DEBUG_ENVIRONMENT_VARIABLE, "") not in ("", "0")
    try:
        with load_report_shown(debug):
            return args.handler(args)
    except KeyboardInterrupt:
        print(f"ecg-pma {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if debug:
            raise
        expected = isinstance(error, EXPECTED_ERRORS) or any(
            type(cause).__name__ in EXPECTED_LIBRARY_ERRORS for cause in _chain(error)
        )
        prefix = "error" if expected else f"unexpected error ({type(error).__name__}, please report it)"
        print(f"ecg-pma {args.command}: {prefix}: {describe_error(error)}", file=sys.stderr)
        print(f"  (run with --debug or {DEBUG_ENVIRONMENT_VARIABLE}=1 for the traceback)", file=sys.stderr)
        return 2 if expected else 1


if __name__ == "__main__":
    sys.exit(main())
