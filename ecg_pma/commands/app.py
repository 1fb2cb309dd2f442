"""`ecg-pma app`: the Gradio web demo for a classifier, served on this machine."""

from __future__ import annotations

import argparse


def add_parser(commands) -> None:
    app = commands.add_parser(
        "app", help="web demo (Gradio): upload a WFDB record, see the plot, labels, explanation and layer weights"
    )
    app.add_argument("model", help="a saved classifier folder or a Hub repo id")
    app.add_argument("--examples", default=None, help="a folder of WFDB records offered as examples")
    app.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    app.add_argument("--port", type=int, default=7860)
    app.add_argument("--trust-remote-code", action="store_true", help="load the code saved with the model")
    app.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..visualization.app import build_app, launch_app

    demo = build_app(args.model, examples_dir=args.examples, trust_remote_code=args.trust_remote_code)
    launch_app(demo, host=args.host, port=args.port)
    return 0
