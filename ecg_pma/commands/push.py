"""`ecg-pma push`: upload a saved model to the Hub."""

from __future__ import annotations

import argparse


def add_parser(commands) -> None:
    push = commands.add_parser("push", help="upload a saved model (weights, code, extractor, card) to the Hub")
    push.add_argument("model_dir")
    push.add_argument("repo_id")
    push.add_argument("--token", default=None, help="default: HF_TOKEN or the stored login")
    push.add_argument("--private", action="store_true")
    push.add_argument("--revision", default=None, help="a branch (created from main if needed)")
    push.add_argument("--commit-message", default=None)
    push.add_argument("--dataset", action="append", default=None, help="dataset id for the card metadata (repeatable)")
    push.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..hub import push_to_hub

    commit = push_to_hub(
        args.model_dir,
        args.repo_id,
        token=args.token,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
        datasets=args.dataset,
    )
    print(f"Pushed {args.model_dir} to {args.repo_id}: {commit.commit_url}")
    return 0
