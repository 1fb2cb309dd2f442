"""
`ecg-pma finetune`: linear probing or finetuning with the Trainer.

Its options are those of `FinetuneArguments` (ours), the data options every command shares, and every
`transformers.TrainingArguments` option (`--report_to tensorboard`, `--bf16`, `--gradient_accumulation_steps`,
`--resume_from_checkpoint`, ...), read with `transformers.HfArgumentParser` as transformers' example scripts do. The
`TrainingArguments` defaults are the paper's schedule for the chosen `--mode` (`ecg-pma finetune --mode finetune
--help` shows them). The parser is built only when the subcommand is chosen: importing `TrainingArguments` imports
torch, which `ecg-pma --help` must not wait for; `ecg-pma finetune --help` prints the same text from a snapshot of
the parser (`parser_snapshot.py`).
"""

from __future__ import annotations

import argparse
import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..constants import AGGREGATIONS, FINETUNE_MODES, HEAD_TYPES, PROBE_GATES
from .data_arguments import (
    add_bad_record_arguments,
    add_data_arguments,
    add_training_data_arguments,
    load_training_data,
)
from .parser_snapshot import parser_from_snapshot, write_parser_snapshot
from .training_options import add_hidden_aliases


DESCRIPTION = (
    "Linear probing (--mode probe: encoder frozen, gate and head trained) or finetuning (--mode finetune) of a "
    "classifier with the Trainer. Every TrainingArguments option is accepted; its defaults are the paper's schedule "
    "for the mode. The best epoch by validation macro AUROC is kept; results.json, results.md and a model card are "
    "written to --output-dir. Options are spelled with dashes (--num-train-epochs, as in pretrain and probe-layers); "
    "the TrainingArguments field names (--num_train_epochs) work too."
)

# `ecg-pma finetune --help` is printed from this snapshot of `finetune_argument_parser` (see `parser_snapshot`)
HELP_SNAPSHOT = Path(__file__).with_name("finetune_help.json")
# the files that define that parser (relative to ecg_pma/): any change makes --help build the real parser
HELP_SOURCES = (
    "commands/finetune.py",
    "commands/data_arguments.py",
    "commands/argument_types.py",
    "commands/training_options.py",
    "constants.py",
    "training/finetune.py",
)


@dataclass
class FinetuneArguments:
    """Our own options of `ecg-pma finetune` (beside the data options and `TrainingArguments`)."""

    model: str = field(
        metadata={"help": "a pre-trained model folder or Hub id (for --mode finetune, usually a probed classifier)"}
    )
    mode: str = field(
        default="probe",
        metadata={
            "choices": FINETUNE_MODES,
            "help": "probe: encoder frozen, gate and head trained; finetune: every weight trained; lora: LoRA "
            "adapters on the encoder's attention and MLP projections, gate and head trained in full",
        },
    )
    aggregation: str | None = field(
        default=None,
        metadata={
            "choices": AGGREGATIONS,
            "help": "how the head reads the encoder's layers (default: the model's config)",
        },
    )
    aggregation_layer: int | None = field(
        default=None,
        metadata={"help": "with --aggregation layer: the block index (negative counts from the end)"},
    )
    head_type: str | None = field(
        default=None, metadata={"choices": HEAD_TYPES, "help": "the classification head (default: the model's config)"}
    )
    lora_rank: int = field(default=8, metadata={"help": "--mode lora: rank of the adapters"})
    lora_alpha: float | None = field(default=None, metadata={"help": "--mode lora: scale (default: 2 x rank)"})
    lora_dropout: float = field(default=0.0, metadata={"help": "--mode lora: dropout before the adapters"})
    probe_gate: str = field(
        default="train",
        metadata={
            "choices": PROBE_GATES,
            "help": "--mode probe with PMA: train the gate with the head (default), or keep it at its uniform start, "
            "as the PMA authors' probing optimizer (head parameters only) does",
        },
    )
    augment: bool = field(
        default=False,
        metadata={
            "help": "ST-MEM's finetuning RandAugment on training crops (2 of shift, cutout, drop, flip, erase, sine, "
            "partial sine, partial white noise; level 10; p 0.5)"
        },
    )
    lead_sets: list[str] | None = field(
        default=None,
        metadata={
            "help": "train on random lead subsets: each training sample keeps one of these lead sets (12 6 4 3 2, or "
            "names joined by commas such as I,II), drawn with --seed; validation and test read every lead",
            "nargs": "+",
        },
    )
    single_class_auroc: Literal["exclude", "half"] = field(
        default="exclude",
        metadata={
            "help": "macro AUROC for a label with one class in a split: leave it out (default) or count it as 0.5 "
            "(the PMA authors' convention)"
        },
    )

    def __post_init__(self):
        if self.lora_rank < 1:
            raise ValueError(f"--lora-rank must be at least 1, got {self.lora_rank}.")
        if self.lora_alpha is not None and not self.lora_alpha > 0:
            raise ValueError(f"--lora-alpha must be positive, got {self.lora_alpha}.")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}.")
        if self.aggregation == "layer" and self.aggregation_layer is None:
            raise ValueError("--aggregation layer needs --aggregation-layer (a block index).")
        if self.aggregation_layer is not None and self.aggregation not in (None, "layer"):
            raise ValueError(f"--aggregation-layer is used only with --aggregation layer, not {self.aggregation!r}.")

    def check_model(self) -> None:
        """`--model` is a folder or a Hub id that can be reached; run first, before loading it."""
        from .argument_types import require_model_source

        require_model_source(self.model, "--model")

    def check_against(self, config) -> None:
        """The checks that need the model's config: the layer index must exist. Run before any data is read."""
        depth = config.num_hidden_layers
        if self.aggregation_layer is not None and not -depth <= self.aggregation_layer < depth:
            raise ValueError(
                f"--aggregation-layer {self.aggregation_layer} is out of range: {self.model} has {depth} layers "
                f"(use 0..{depth - 1}, or -{depth}..-1 from the end)."
            )


def add_parser(commands) -> None:
    finetune = commands.add_parser("finetune", help="linear probing or finetuning with the Trainer", add_help=False)
    finetune.parse_known_args = functools.partial(parse_finetune_arguments, prog=finetune.prog)


def finetune_argument_parser(mode: str, prog: str | None = None):
    """`HfArgumentParser` over `FinetuneArguments` and `TrainingArguments` (the paper's defaults for `mode`)."""
    from transformers import HfArgumentParser

    from ..training.finetune import EcgTrainingArguments, reference_training_settings

    parser = HfArgumentParser((FinetuneArguments, EcgTrainingArguments), prog=prog, description=DESCRIPTION)
    # pretrain's and probe-layers' spellings too (--epochs, --batch-size): one command line edits into another
    add_hidden_aliases(parser, "num_train_epochs", float)
    add_hidden_aliases(parser, "per_device_train_batch_size", int)
    add_data_arguments(parser)
    add_training_data_arguments(parser)
    add_bad_record_arguments(parser)
    parser.set_defaults(**reference_training_settings(mode))
    return parser


def write_help_snapshot() -> None:
    """Writes `HELP_SNAPSHOT` (`make help-snapshot`): what `ecg-pma finetune --help` prints for each mode."""
    write_parser_snapshot(finetune_argument_parser, FINETUNE_MODES, HELP_SNAPSHOT, HELP_SOURCES)


def parse_finetune_arguments(args=None, namespace=None, prog=None) -> tuple[argparse.Namespace, list[str]]:
    """
    Parses the subcommand's arguments into `finetune_args` (`FinetuneArguments`), `training_args`
    (`TrainingArguments`) and `data_args` (the shared data options); unknown arguments are returned for the
    top-level parser to report. A value out of range is reported as a usage error.
    """
    args = list(args if args is not None else sys.argv[1:])
    debug = take_debug_flag(args)
    mode_parser = argparse.ArgumentParser(add_help=False)
    mode_parser.add_argument("--mode", choices=FINETUNE_MODES, default="probe")
    mode = mode_parser.parse_known_args(args)[0].mode
    if {"-h", "--help"} & set(args):
        # the same text as the real parser's, without importing torch
        help_parser = parser_from_snapshot(HELP_SNAPSHOT, mode, prog, DESCRIPTION, HELP_SOURCES)
        if help_parser is not None:
            help_parser.parse_args(["--help"])  # prints and exits
    parser = finetune_argument_parser(mode, prog)
    try:
        finetune_args, training_args, data_args, remaining = parser.parse_args_into_dataclasses(
            args, return_remaining_strings=True
        )
    except ValueError as error:
        parser.error(str(error))
    namespace = namespace if namespace is not None else argparse.Namespace()
    namespace.finetune_args, namespace.training_args, namespace.data_args = finetune_args, training_args, data_args
    namespace.handler = run
    if debug:
        namespace.debug = True
    return namespace, remaining


def take_debug_flag(args: list[str]) -> bool:
    """
    Removes a bare `--debug` (the command's own: tracebacks and transformers' load report) from `args`; a `--debug`
    followed by a value (`--debug underflow_overflow`) is `TrainingArguments`' and stays.
    """
    for index, word in enumerate(args):
        if word == "--":
            break
        if word == "--debug" and (index + 1 == len(args) or args[index + 1].startswith("-")):
            del args[index]
            return True
    return False


def run(args: argparse.Namespace) -> int:
    from transformers import set_seed

    from ..configuration_ecg_pma import EcgPmaConfig
    from ..data import id2label
    from ..feature_extraction_ecg_pma import EcgPmaFeatureExtractor
    from ..training.augmentation import RandAugment
    from ..training.finetune import finetune, load_classifier

    options, training_args, data = args.finetune_args, args.training_args, args.data_args
    options.check_model()
    options.check_against(EcgPmaConfig.from_pretrained(options.model))
    extractor = EcgPmaFeatureExtractor.from_pretrained(options.model)
    augment = RandAugment() if options.augment else None
    data.output_dir = training_args.output_dir  # where the records skipped or missing are listed
    raw, windows, protocol = load_training_data(data, extractor, augment=augment, seed=training_args.seed)
    protocol["augmentation"] = repr(augment) if augment else "none"
    set_seed(training_args.seed)  # before the classifier exists: its new gate and head follow the seed
    model = load_classifier(
        options.model, id2label(raw), options.aggregation, options.aggregation_layer, options.head_type
    )
    dataset = {"name": f"{data.data_format} records in {data.data}", "description": describe_data(data)}
    result = finetune(
        model,
        windows["train"],
        windows["validation"],
        training_args,
        options.mode,
        windows["test"],
        extractor,
        probe_gate=options.probe_gate,
        single_class_auroc=options.single_class_auroc,
        protocol=protocol,
        data_info=dataset,
        lead_sets=options.lead_sets,
        lora_rank=options.lora_rank,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
    )
    print((Path(result.output_dir) / "results.md").read_text())
    return 0


def describe_data(data: argparse.Namespace) -> str:
    """One line for the model card: the format, the label set and where the records came from."""
    from ..data.simulate import is_simulated_folder

    source = (
        "simulated ECGs (ecg_pma.data.simulate), not real recordings"
        if is_simulated_folder(data.data)
        else (f"WFDB records read from {data.data}")
    )
    return f"{source}; format {data.data_format}, label set {data.label_set or 'the format default'}"
