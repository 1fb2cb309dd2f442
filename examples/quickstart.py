"""
Quick start: a small ECG-PMA classifier on a real 12-lead WFDB record, saved and reloaded with the Auto classes.

    python examples/quickstart.py [RECORD] [OUTPUT_DIR]

RECORD defaults to a PhysioNet 2021 record in ../shared/data. The weights are random: this shows the plumbing
(preprocessing, mixture-of-layers head, saving with code), not a diagnosis.
"""

import sys
from pathlib import Path

import torch
from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor, EcgPmaForSequenceClassification


REPO = Path(__file__).resolve().parents[1]
record = sys.argv[1] if len(sys.argv) > 1 else str(REPO.parent / "shared/data/physionet2021/HR06002")
output_dir = Path(sys.argv[2] if len(sys.argv) > 2 else REPO / "outputs/quickstart")

config = EcgPmaConfig.from_preset("tiny", aggregation="pma", id2label={0: "NSR", 1: "AF", 2: "STach"})
model = EcgPmaForSequenceClassification(config).eval()
extractor = EcgPmaFeatureExtractor.from_model_config(config)

features = extractor(record, return_tensors="pt")
record_index = features.pop("record_index")  # which record each window came from: bookkeeping, not a model input
with torch.inference_mode():
    out = model(**features)
print(f"record {record}: input {tuple(features['signals'].shape)} (windows, leads, samples)")
print(
    "per-label probabilities:",
    {config.id2label[i]: round(p, 3) for i, p in enumerate(out.logits.sigmoid()[0].tolist())},
)
print("PMA layer weights:", [round(w, 3) for w in out.layer_weights[0].tolist()])

model.save_pretrained(output_dir)
extractor.save_pretrained(output_dir)
reloaded = AutoModelForSequenceClassification.from_pretrained(output_dir).eval()
reloaded_extractor = AutoFeatureExtractor.from_pretrained(output_dir)
with torch.inference_mode():
    reloaded_logits = reloaded(reloaded_extractor(record, return_tensors="pt")["signals"]).logits
difference = (reloaded_logits - out.logits).abs().max().item()
print(f"saved to {output_dir} ({', '.join(sorted(p.name for p in output_dir.iterdir()))})")
print(f"reloaded with the Auto classes: max |logit difference| = {difference:.1e}")
if difference > 1e-5:
    raise SystemExit("the reloaded model disagrees with the saved one")
