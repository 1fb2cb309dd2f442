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
    push.add_argument(
        "--benchmark",
        action="append",
        default=None,
        metavar="DIR",
        help="an `ecg-pma benchmark` output folder whose results go into the card's model-index (repeatable)",
    )
    push.add_argument(
        "--space-dir",
        default=None,
        help="also write a Space-ready folder for the web demo here (app.py, requirements.txt, README with "
        "`sdk: gradio`); its app loads the model by repo id",
    )
    push.add_argument(
        "--space-example", action="append", default=None, help="a WFDB record bundled as an example (repeatable)"
    )
    push.add_argument(
        "--space-bundle-model", action="store_true", help="copy the model into the Space folder instead of loading it"
    )
    push.add_argument(
        "--space-only", action="store_true", help="write the Space folder only; upload nothing (needs --space-dir)"
    )
    push.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..sharing.hub import push_to_hub

    if args.space_only and not args.space_dir:
        raise ValueError("--space-only writes the Space folder only: give it with --space-dir.")
    if args.space_dir:
        from ..sharing.space import write_space

        write_space(
            args.space_dir,
            args.repo_id,
            examples=args.space_example,
            bundle_model_dir=args.model_dir if args.space_bundle_model else None,
        )
        print(f"Space folder written to {args.space_dir} (upload it as a Gradio Space, or run `python app.py` there)")
        if args.space_only:
            return 0
    commit = push_to_hub(
        args.model_dir,
        args.repo_id,
        token=args.token,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
        datasets=args.dataset,
        benchmarks=args.benchmark,
    )
    print(f"Pushed {args.model_dir} to {args.repo_id}: {commit.commit_url}")
    return 0
