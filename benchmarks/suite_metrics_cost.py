"""
What the suite scores (`ecg_pma.evaluation.suite_metrics`: per-class F1 with intervals, precision / recall /
specificity, the PhysioNet 2021 challenge metric with its interval) add to a probe's bootstrap statistics
(`score_with_intervals`), measured in the same run on random probabilities: PTB-XL's `all` test fold (2,198 records,
71 classes) and a PhysioNet 2021 test split of 10 % of the 88,253 challenge records (8,825 records, 26 classes, with a
26-class reward table). Prints one JSON line.

    python benchmarks/suite_metrics_cost.py [--resamples 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


sys.path.insert(0, str(Path(__file__).parent))
from common import machine_info, median_seconds, significant  # noqa: E402

from ecg_pma.data.physionet2021 import EQUIVALENT_SNOMED, SCORED_SNOMED  # noqa: E402
from ecg_pma.evaluation.statistics import bootstrap_indices, score_with_intervals  # noqa: E402
from ecg_pma.evaluation.suite_metrics import ChallengeScorer, suite_scores  # noqa: E402


def reward_table(path: Path) -> list[str]:
    """A 26-class table in the challenge's layout (equivalent codes joined by `|`); its names, as the loader's."""
    merged = {code: f"{code}|{other}" for other, code in EQUIVALENT_SNOMED.items()}
    classes = [merged.get(code, code) for code in SCORED_SNOMED if code not in EQUIVALENT_SNOMED]
    rows = [",".join(["", *classes])]
    for j, name in enumerate(classes):
        rows.append(",".join([name, *(f"{max(0.0, 1 - abs(j - k) / 4):g}" for k in range(len(classes)))]))
    path.write_text("\n".join(rows) + "\n")
    return [SCORED_SNOMED[name.split("|")[0]] for name in classes]


def case(records: int, classes: int, resamples: int, rng, challenge_names=None, weights_file=None) -> dict:
    references = (rng.random((records, classes)) < 0.08).astype(np.int64)
    probabilities = np.clip(references * 0.3 + rng.random((records, classes)) * 0.7, 0, 1)
    thresholds = np.full(classes, 0.5)
    indices = bootstrap_indices(references, resamples, 0)
    scorer = ChallengeScorer(weights_file, challenge_names) if weights_file else None
    seconds = median_seconds(
        {
            "base": lambda: score_with_intervals(references, probabilities, thresholds, indices),
            "extra": lambda: suite_scores(references, probabilities, thresholds, indices, scorer),
        },
        repeats=3,
    )
    base, extra = seconds["base"], seconds["extra"]
    return {
        "records": records,
        "classes": classes,
        "score_with_intervals_seconds": significant(base),
        "suite_scores_seconds": significant(extra),
        "extra_fraction": significant(extra / base),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        weights_file = Path(folder) / "weights.csv"
        names = reward_table(weights_file)
        result = {
            "benchmark": "suite_metrics_cost",
            "resamples": args.resamples,
            "ptbxl_all": case(2_198, 71, args.resamples, rng),
            "physionet2021_with_challenge_metric": case(8_825, 26, args.resamples, rng, names, weights_file),
            **machine_info(),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
