"""
`ecg-pma finetune --help` without torch: the finetune parser is `HfArgumentParser` over `TrainingArguments`, whose
import takes torch and transformers (tens of seconds on a cold, busy machine). Its options are written once into
`finetune_help.json` (per `--mode`, since the defaults are the mode's), and `--help` is answered from that snapshot
by a plain `argparse` parser with the same actions, which prints the same text. The snapshot is used only under the
transformers version it was made with and while the package files that define the parser are unchanged (a digest);
otherwise `--help` builds the real parser. `tests/test_command_help.py` checks that the snapshot is current and prints
exactly what `HfArgumentParser` prints; after changing the finetune options or upgrading transformers, write it
again with `make help-snapshot`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable
from importlib import metadata
from pathlib import Path


_SUPPRESS = "==SUPPRESS=="  # argparse.SUPPRESS as stored; argparse compares it by identity, so it is restored


def _text(value):
    """A default as `--help` prints it (`%(default)s`), or the SUPPRESS marker."""
    return _SUPPRESS if value is argparse.SUPPRESS else str(value)


def describe_parser(parser: argparse.ArgumentParser) -> dict:
    """Everything `parser.format_help()` reads: its groups and, in order, each action's help-relevant fields."""
    if parser._mutually_exclusive_groups:
        raise ValueError("parser snapshots do not hold mutually exclusive groups")
    groups = parser._action_groups
    group_of = {id(action): index for index, group in enumerate(groups) for action in group._group_actions}
    return {
        "groups": [{"title": group.title, "description": group.description} for group in groups],
        "actions": [
            {
                "group": group_of[id(action)],
                "option_strings": action.option_strings,
                "dest": action.dest,
                "nargs": action.nargs,
                "const": None if action.const is None else _text(action.const),
                "default": _text(action.default),
                "choices": None if action.choices is None else [str(choice) for choice in action.choices],
                "required": action.required,
                "help": None if action.help is None else _text(action.help),
                "metavar": action.metavar,
                "is_help": isinstance(action, argparse._HelpAction),
            }
            for action in parser._actions
        ],
    }


def parser_from_description(description: dict, prog: str | None, text: str) -> argparse.ArgumentParser:
    """A plain parser whose `--help` prints what the described parser's does (it parses nothing else)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=text, formatter_class=argparse.ArgumentDefaultsHelpFormatter, add_help=False
    )
    groups = parser._action_groups[:2]  # positional arguments, options: every parser has them
    groups += [parser.add_argument_group(group["title"], group["description"]) for group in description["groups"][2:]]
    for action in description["actions"]:
        restore = {key: argparse.SUPPRESS if action[key] == _SUPPRESS else action[key] for key in ("default", "help")}
        group = groups[action["group"]]
        if action["is_help"]:
            group.add_argument(*action["option_strings"], action="help", help=restore["help"])
        elif not action["option_strings"]:
            group.add_argument(action["dest"], nargs=action["nargs"], choices=action["choices"], **restore)
        elif action["nargs"] == 0:  # a flag: store_true / store_false / store_const
            group.add_argument(
                *action["option_strings"],
                dest=action["dest"],
                action="store_const",
                const=action["const"],
                required=action["required"],
                **restore,
            )
        else:
            metavar = action["metavar"]
            group.add_argument(
                *action["option_strings"],
                dest=action["dest"],
                nargs=action["nargs"],
                choices=action["choices"],
                required=action["required"],
                metavar=tuple(metavar) if isinstance(metavar, list) else metavar,
                **restore,
            )
    return parser


PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def sources_digest(sources: tuple[str, ...]) -> str:
    """SHA-256 of the package files (paths relative to `ecg_pma/`) that define a parser: a stale snapshot is never used."""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.encode() + b"\0" + (PACKAGE_ROOT / source).read_bytes())
    return digest.hexdigest()


def write_parser_snapshot(
    parser_for_mode: Callable, modes: tuple[str, ...], path: Path, sources: tuple[str, ...]
) -> None:
    """
    `parser_for_mode(modes[0])` described, and the defaults each other mode changes (by action index), one action a
    line, with the transformers version and the digest of the `sources` it was made from.
    """
    first, *others = (describe_parser(parser_for_mode(mode)) for mode in modes)
    defaults = {
        mode: {
            str(index): action["default"]
            for index, (action, base) in enumerate(zip(other["actions"], first["actions"]))
            if action != base
        }
        for mode, other in zip(modes[1:], others)
    }
    for other in others:  # the modes differ in defaults only
        assert [{**a, "default": None} for a in other["actions"]] == [{**a, "default": None} for a in first["actions"]]
    lines = ",\n".join(json.dumps(action) for action in first["actions"])
    path.write_text(
        f'{{"transformers": {json.dumps(metadata.version("transformers"))},\n'
        f'"sources": {json.dumps(sources_digest(sources))},\n'
        f'"first_mode": {json.dumps(modes[0])},\n"groups": {json.dumps(first["groups"])},\n'
        f'"defaults": {json.dumps(defaults)},\n"actions": [\n{lines}\n]}}\n'
    )


def parser_from_snapshot(
    path: Path, mode: str, prog: str | None, text: str, sources: tuple[str, ...]
) -> argparse.ArgumentParser | None:
    """
    The parser `path` describes for `mode`, or None where the snapshot is missing, was made under another
    transformers, or from other versions of the `sources` (then the caller builds the real parser).
    """
    try:
        snapshot = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    if snapshot["transformers"] != metadata.version("transformers") or snapshot["sources"] != sources_digest(sources):
        return None
    if mode != snapshot["first_mode"] and mode not in snapshot["defaults"]:
        return None
    defaults = snapshot["defaults"].get(mode, {})
    actions = [
        {**action, "default": defaults.get(str(index), action["default"])}
        for index, action in enumerate(snapshot["actions"])
    ]
    return parser_from_description({"groups": snapshot["groups"], "actions": actions}, prog, text)
