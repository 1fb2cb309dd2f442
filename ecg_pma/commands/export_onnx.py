"""`ecg-pma export-onnx`: export a saved classifier to ONNX, optionally optimized and int8-quantized."""

from __future__ import annotations

import argparse
import json

from .argument_types import int_in_range, output_file, require_model_source


# The opsets torch.onnx's TorchScript exporter writes (torch.onnx._constants; a test keeps these in step), here
# rather than imported so that `--help` does not import torch. 17 is `ecg_pma.serving.onnx_export.DEFAULT_OPSET`.
MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 7, 20, 17


def add_parser(commands) -> None:
    export = commands.add_parser(
        "export-onnx",
        help="export a saved classifier to ONNX (dynamic batch): OUTPUT (any lead set) and OUTPUT's .all-leads.onnx",
    )
    export.add_argument("model_dir")
    export.add_argument("output", type=output_file)
    export.add_argument("--opset", type=int_in_range(MIN_OPSET, MAX_OPSET), default=DEFAULT_OPSET)
    export.add_argument(
        "--optimize",
        action="store_true",
        help="apply ONNX Runtime's graph optimizations (fused LayerNorm, GELU, MatMul + bias, fused attention) to the "
        "saved files",
    )
    export.add_argument(
        "--quantize",
        choices=("int8",),
        default=None,
        help="int8: ONNX Runtime dynamic quantization of the encoder's linear layers and attention's q/k/v projection "
        "(per-channel weights)",
    )
    export.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    require_model_source(args.model_dir, "model_dir")
    from ..serving.onnx_export import export_onnx

    spec = export_onnx(args.model_dir, args.output, opset=args.opset, optimize=args.optimize, quantize=args.quantize)
    complete = spec["all_leads"]["file"]
    print(
        f"Exported {args.model_dir} to {args.output} (any lead set) and {complete} beside it (records with every "
        f"lead): {json.dumps(spec)}"
    )
    return 0
