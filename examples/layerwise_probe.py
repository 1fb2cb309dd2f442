"""
The layer-wise probing study: which encoder layer represents an ECG best, and do PPA / PMA beat every single layer?
Encodes each split once, caches the layer representations, probes each layer plus PPA and PMA, writes a table and a plot.

    python examples/layerwise_probe.py --model outputs/pretrained --data ../shared/data/physionet2021
"""

import argparse

from ecg_pma import EcgPmaFeatureExtractor, EcgPmaModel
from ecg_pma.data import extract_features, load_records
from ecg_pma.training.probe_layers import probe_layers


parser = argparse.ArgumentParser()
parser.add_argument("--model", default="outputs/pretrained")
parser.add_argument("--data", default="../shared/data/physionet2021")
parser.add_argument("--data-format", default="physionet2021", choices=("ptbxl", "physionet2021", "wfdb"))
parser.add_argument("--output-dir", default="outputs/layerwise")
parser.add_argument("--num-train-epochs", "--epochs", type=int, default=100)  # as in ecg-pma
args = parser.parse_args()

extractor = EcgPmaFeatureExtractor.from_pretrained(args.model)
windows = extract_features(load_records(args.data_format, args.data), extractor, window_mode="sliding")
rows = probe_layers(
    EcgPmaModel.from_pretrained(args.model), dict(windows), args.output_dir, epochs=args.num_train_epochs
)
for row in rows:
    print(f"{row['probe']:>8}  validation {row['validation_macro_auroc']:.4f}  test {row['test_macro_auroc']:.4f}")
print(f"table and plot in {args.output_dir}")
