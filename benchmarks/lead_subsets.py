"""
Encoder inference throughput (ECGs/s, fp32, SDPA) with lead masks: the 12-lead batch with `lead_mask=None`, with an
all-true mask, and (with `--baseline-rev`) the same weights in the modeling code of an earlier git revision, before
lead masks existed; then a uniform 2-lead batch (leads I, II: the other leads' tokens are not computed) and a mixed
batch of the challenge lead sets (12 tokens' worth, with an attention mask). Prints one JSON line; every ratio is
measured in this run, the variants timed in interleaved rounds (median of `--repeats`).

    python benchmarks/lead_subsets.py --baseline-rev 511d57b
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from ecg_pma import LEAD_SETS, EcgPmaConfig, EcgPmaModel


sys.path.insert(0, str(Path(__file__).parent))
from common import machine_info, median_seconds  # noqa: E402


REPO_ROOT = Path(__file__).resolve().parents[1]


def baseline_model(revision: str, model: EcgPmaModel):
    """`model`'s weights in `EcgPmaModel` as the modeling code of git `revision` defines it."""
    package = Path(tempfile.mkdtemp()) / "ecg_pma_baseline"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("modeling_ecg_pma.py", "configuration_ecg_pma.py"):
        source = subprocess.run(
            ["git", "show", f"{revision}:ecg_pma/{name}"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout
        (package / name).write_text(source)
    sys.path.insert(0, str(package.parent))
    configuration = importlib.import_module("ecg_pma_baseline.configuration_ecg_pma")
    modeling = importlib.import_module("ecg_pma_baseline.modeling_ecg_pma")
    config = configuration.EcgPmaConfig.from_dict(model.config.to_dict())
    baseline = modeling.EcgPmaModel(config).eval()
    baseline.load_state_dict(model.state_dict())
    return baseline


def lead_mask_of(lead_sets: list[str], config: EcgPmaConfig, batch: int) -> torch.Tensor:
    """One row per sample, cycling through `lead_sets`."""
    return torch.tensor(
        [[name in LEAD_SETS[lead_sets[i % len(lead_sets)]] for name in config.lead_names] for i in range(batch)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="vit-s-paper")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline-rev", default=None, help="git revision whose model is the 'before' row")
    args = parser.parse_args()

    torch.manual_seed(0)
    config = EcgPmaConfig.from_preset(args.preset)
    model = EcgPmaModel(config).eval()
    signals = torch.randn(args.batch, config.num_leads, config.signal_length)
    variants = {
        "12_leads_mask_none": lambda: model(signals),
        "12_leads_mask_all_true": lambda: model(signals, lead_mask=torch.ones(signals.shape[:2], dtype=torch.bool)),
        "2_leads_uniform": lambda: model(signals, lead_mask=lead_mask_of(["2"], config, args.batch)),
        "mixed_lead_sets": lambda: model(
            signals, lead_mask=lead_mask_of(["12", "6", "4", "3", "2"], config, args.batch)
        ),
    }
    if args.baseline_rev:
        before = baseline_model(args.baseline_rev, model)
        with torch.inference_mode():
            torch.testing.assert_close(before(signals).layer_representations, model(signals).layer_representations)
        variants["12_leads_before"] = lambda: before(signals)

    with torch.inference_mode():
        seconds = median_seconds(variants, args.repeats)
    throughput = {name: round(args.batch / value, 3) for name, value in seconds.items()}
    for name, value in throughput.items():
        print(f"{name}: {value} ECGs/s", file=sys.stderr)
    report = {
        "benchmark": "lead_subsets",
        "preset": args.preset,
        "batch": args.batch,
        "repeats": args.repeats,
        "baseline_rev": args.baseline_rev,
        **machine_info(),
        "ecgs_per_s": throughput,
        "all_true_mask_vs_none": round(throughput["12_leads_mask_all_true"] / throughput["12_leads_mask_none"], 3),
        "two_leads_vs_twelve": round(throughput["2_leads_uniform"] / throughput["12_leads_mask_none"], 3),
        "mixed_vs_twelve": round(throughput["mixed_lead_sets"] / throughput["12_leads_mask_none"], 3),
    }
    if args.baseline_rev:
        report["mask_none_vs_before"] = round(throughput["12_leads_mask_none"] / throughput["12_leads_before"], 3)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
