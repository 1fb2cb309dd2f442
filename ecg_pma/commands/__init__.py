"""One module per `ecg-pma` subcommand: each has `add_parser(subparsers)` (its options) and `run(args)` (its work).

Heavy libraries (torch, transformers, datasets) are imported inside `run`, so `ecg-pma --help` stays fast.
"""

from . import (
    app,
    convert,
    convert_st_mem,
    demo,
    download,
    evaluate,
    export_onnx,
    finetune,
    predict,
    pretrain,
    probe_layers,
    push,
    simulate,
)


# The order in which `ecg-pma --help` lists them.
COMMANDS = (
    demo,
    pretrain,
    finetune,
    probe_layers,
    predict,
    evaluate,
    push,
    export_onnx,
    convert,
    convert_st_mem,
    download,
    app,
    simulate,
)
