"""
Whole-folder screening (`ecg-pma predict MODEL FOLDER --output predictions.csv`) end to end, against its parts
measured alone: reading + preprocessing every record (the same DataLoader workers, no model), and the model scoring
the same windows already in memory. Overlap should bring the end-to-end rate to >= 0.8x of the slower part. The folder
holds `--copies` links to each of the 40 real challenge records. Prints one JSON line.

    python benchmarks/folder_screening.py [--preset vit-s-paper] [--copies 5] [--backend onnxruntime]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForSequenceClassification
from ecg_pma.serving.inference import score_windows, window_forward
from ecg_pma.serving.onnx_export import export_classifier_onnx
from ecg_pma.serving.screening import RecordWindows, keep_items, list_records, screen_records


sys.path.insert(0, str(Path(__file__).parent))
from common import CHALLENGE_RECORDS, machine_info  # noqa: E402


def linked_folder(folder: Path, data: Path, copies: int) -> None:
    """`copies` sub-folders of links to every record of `data` (nothing is copied)."""
    for copy in range(copies):
        target = folder / f"copy{copy}"
        target.mkdir(parents=True)
        for path in sorted(data.iterdir()):
            if path.suffix in (".hea", ".mat", ".dat"):
                (target / path.name).symlink_to(path.resolve())


def read_all(paths: list[str], names: list[str], extractor, batch_size: int, num_workers: int) -> list[torch.Tensor]:
    """The screening's reading and preprocessing alone: the same DataLoader, no model."""
    loader = DataLoader(
        RecordWindows(paths, names, extractor), batch_size=batch_size, num_workers=num_workers, collate_fn=keep_items
    )
    windows = [item[1] for items in loader for item in items]
    if any(item is None for item in windows):
        raise RuntimeError("a challenge record failed to read")
    return [item["signals"] for item in windows]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="vit-s-paper")
    parser.add_argument("--data", default=str(CHALLENGE_RECORDS))
    parser.add_argument("--copies", type=int, default=5, help="links to each of the 40 records (5: 200 records)")
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = EcgPmaConfig.from_preset(args.preset, aggregation="pma", num_labels=6)
    model = EcgPmaForSequenceClassification(config).eval()
    extractor = EcgPmaFeatureExtractor.from_model_config(config)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        linked_folder(scratch / "records", Path(args.data), args.copies)
        onnx_path = None
        if args.backend == "onnxruntime":
            onnx_path = scratch / "model.onnx"
            export_classifier_onnx(model, onnx_path, optimize=True)
            model.set_attn_implementation("sdpa")
        paths, names = list_records([str(scratch / "records")])

        start = time.perf_counter()
        windows = read_all(paths, names, extractor, args.batch_size, args.num_workers)
        read_seconds = time.perf_counter() - start

        signals = torch.cat(windows)
        forward = window_forward(model, args.backend, onnx_path)
        with torch.inference_mode():
            score_windows(forward, signals[: args.batch_size], config, args.batch_size)  # warm-up
            start = time.perf_counter()
            score_windows(forward, signals, config, args.batch_size)
            model_seconds = time.perf_counter() - start

        start = time.perf_counter()
        summary = screen_records(
            model, extractor, [str(scratch / "records")], scratch / "predictions.csv", backend=args.backend,
            onnx_path=onnx_path, batch_size=args.batch_size, num_workers=args.num_workers, progress=False,
        )  # fmt: skip
        screening_seconds = time.perf_counter() - start
    if summary.predicted != len(paths):
        raise RuntimeError(f"screened {summary.predicted} of {len(paths)} records")
    rates = {
        "read_preprocess_records_per_s": len(paths) / read_seconds,
        "model_records_per_s": len(paths) / model_seconds,
        "end_to_end_records_per_s": len(paths) / screening_seconds,
    }
    slower_part = min(rates["read_preprocess_records_per_s"], rates["model_records_per_s"])
    # what running the parts one after the other (no overlap) would give
    sequential = 1 / (1 / rates["read_preprocess_records_per_s"] + 1 / rates["model_records_per_s"])
    print(
        json.dumps(
            {
                "benchmark": "folder_screening",
                **machine_info(),
                "preset": args.preset,
                "backend": args.backend,
                "records": len(paths),
                "windows": len(signals),
                "model_ecgs_per_s": round(len(signals) / model_seconds, 2),
                **{name: round(value, 2) for name, value in rates.items()},
                "sequential_records_per_s": round(sequential, 2),
                "end_to_end_vs_slower_part": round(rates["end_to_end_records_per_s"] / slower_part, 2),
                "target_0.8_met": rates["end_to_end_records_per_s"] >= 0.8 * slower_part,
                "num_workers": args.num_workers,
                "batch_size": args.batch_size,
            }
        )
    )


if __name__ == "__main__":
    main()
