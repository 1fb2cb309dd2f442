"""`ecg-pma embed`: deterministic per-layer, pooled and layer-mixture embeddings of every record, to safetensors."""

from __future__ import annotations

import argparse

from ..constants import CHALLENGE_LEAD_SETS
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
    embed.add_argument(
        "--lead-set",
        choices=CHALLENGE_LEAD_SETS,
        default="12",
        help="a PhysioNet/CinC Challenge 2021 lead set (12; 6 = I II III aVR aVL aVF; 4 = I II III V2; 3 = I II V2; "
        "2 = I II): the records are cut to its leads first, as `benchmark --lead-sets` cuts them (the same "
        "embeddings); its leads are recorded in the file's key, so a file of another lead set is embedded again "
        "(default: 12, every lead the records have)",
    )
    embed.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation.benchmark import check_lead_set_coverage, embed_lead_set, lead_set_leads, load_benchmark_model
    from ..evaluation.embeddings import evaluation_windows
    from ..training.probe_layers import model_fingerprint
    from .data_arguments import load_raw_records, reading_extractor

    encoder, aggregator, loaded, extractor = load_benchmark_model(args.model)
    extractor = reading_extractor(extractor, args)  # --allow-missing-leads, --nan-policy, ... as every data command
    windows, splits, dropped = evaluation_windows(load_raw_records(args), extractor, args.num_proc, args.short_records)
    check_lead_set_coverage(windows, args.lead_set, encoder.config.lead_names)  # before any encoding
    embeddings = embed_lead_set(
        encoder,
        windows,
        args.output,
        model_fingerprint(loaded),
        args.lead_set,
        extractor,
        aggregator=aggregator,
        splits=splits,
        batch_size=args.batch_size,
        desc=f"Embedding ({args.lead_set} leads)",
    )
    shape = tuple(embeddings.layer_representations.shape)
    handled = {"drop": "dropped", "pad": "zero-padded"}.get(args.short_records)
    leads = ", ".join(lead_set_leads(args.lead_set, encoder.config.lead_names))
    print(
        f"{len(embeddings.record_ids)} records -> {args.output} (layer_representations {shape}, mixed = "
        f"{embeddings.mixture}, leads {leads}){f'; {len(dropped)} short record(s) {handled}' if dropped else ''}"
    )
    return 0
