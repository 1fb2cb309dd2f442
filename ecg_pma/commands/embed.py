"""`ecg-pma embed`: deterministic per-layer, pooled and layer-mixture embeddings of every record, to safetensors."""

from __future__ import annotations

import argparse

from .argument_types import output_file, positive_int
from .data_arguments import add_data_arguments


def add_parser(commands) -> None:
    embed = commands.add_parser(
        "embed",
        help="embed every record of a data set (frozen encoder, no masking, fixed windows averaged per record)",
    )
    add_data_arguments(embed)
    embed.add_argument("--model", required=True)
    embed.add_argument(
        "--output",
        type=output_file,
        required=True,
        help="safetensors file: layer_representations (records, layers, hidden), input_representation, pooled, mixed "
        "(the model's PMA mixture, or PPA), with record ids and splits; resumes from its .parts folder",
    )
    embed.add_argument("--batch-size", type=positive_int, default=64)
    embed.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation.benchmark import load_benchmark_model
    from ..evaluation.embeddings import embed_records, evaluation_windows
    from ..training.probe_layers import model_fingerprint
    from .data_arguments import load_raw_records, reading_extractor

    encoder, aggregator, loaded, extractor = load_benchmark_model(args.model)
    extractor = reading_extractor(extractor, args)  # --allow-missing-leads, --nan-policy, ... as every data command
    windows, splits, dropped = evaluation_windows(load_raw_records(args), extractor, args.num_proc, args.short_records)
    embeddings = embed_records(
        encoder,
        windows,
        args.output,
        model_fingerprint(loaded),
        aggregator=aggregator,
        splits=splits,
        batch_size=args.batch_size,
    )
    shape = tuple(embeddings.layer_representations.shape)
    handled = {"drop": "dropped", "pad": "zero-padded"}.get(args.short_records)
    print(
        f"{len(embeddings.record_ids)} records -> {args.output} (layer_representations {shape}, mixed = "
        f"{embeddings.mixture}){f'; {len(dropped)} short record(s) {handled}' if dropped else ''}"
    )
    return 0
