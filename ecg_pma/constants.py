"""
The package's named choices, in a module that imports nothing: the `ecg-pma` parser takes its `choices=` from here, so
that `ecg-pma --help` does not wait for torch. The training, inference and data modules import their constants from
here too. `configuration_ecg_pma.py` must stay self-contained (it is saved next to the weights and loaded with
`trust_remote_code`), so the config's choices are written again below; `tests/test_finetune_cli.py` checks that the
two agree.
"""

# The config's choices (configuration_ecg_pma.py: AGGREGATIONS, PRETRAINING_AGGREGATIONS, HEAD_TYPES, PRESETS).
AGGREGATIONS = ("last", "ppa", "pma", "layer")
PRETRAINING_AGGREGATIONS = ("last", "ipa")
HEAD_TYPES = ("linear", "mlp")
PRESET_NAMES = ("tiny", "vit-b-paper", "vit-b-st-mem", "vit-s-paper", "vit-s-st-mem")

SPLITS = ("train", "validation", "test")
DATA_FORMATS = ("ptbxl", "physionet2021", "wfdb", "code15", "code-test", "mimic-iv-ecg")
DTYPES = ("fp32", "bf16")
MIXED_PRECISIONS = ("auto", "no", "bf16", "fp16")
FINETUNE_MODES = ("probe", "finetune", "lora")
PROBE_GATES = ("train", "frozen")

# `ecg-pma benchmark`: the suites, the probe heads and the label fractions (percent of the training records).
BENCHMARK_SUITES = ("ptbxl", "physionet2021", "icbeb2018", "code-test")
PTBXL_LABEL_SETS = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")  # also its tasks
BENCHMARK_HEADS = ("last", "ppa", "pma", "pma-frozen", "layers")  # "layers": one probe per single encoder layer
LABEL_FRACTIONS = (1, 10, 100)
# The names of the PhysioNet/CinC Challenge 2021 lead sets (configuration_ecg_pma.LEAD_SETS: 12 leads; I, II, III, aVR,
# aVL, aVF; I, II, III, V2; I, II, V2; I, II), for `ecg-pma benchmark --lead-sets`.
CHALLENGE_LEAD_SETS = ("12", "6", "4", "3", "2")

# The options that pretrain, finetune and probe-layers share, one spelling and one help text each: the dashed form of
# the `TrainingArguments` field (what `finetune` reads through `HfArgumentParser`), the field's own name and the
# older short forms as aliases. field -> (documented flag, aliases, help).
TRAINING_OPTIONS = {
    "output_dir": ("--output-dir", ("--output_dir",), "the folder the model, its results and checkpoints go to"),
    "num_train_epochs": (
        "--num-train-epochs",
        ("--num_train_epochs", "--epochs"),
        "passes over the training records",
    ),
    "per_device_train_batch_size": (
        "--per-device-train-batch-size",
        ("--per_device_train_batch_size", "--batch-size"),
        "training records (windows) per batch on each device",
    ),
    "learning_rate": ("--learning-rate", ("--learning_rate",), "the peak learning rate"),
    "seed": ("--seed", (), "seeds the new weights, the data order, crops, masks and lead sets"),
}

# The feature extractor's NaN/inf policy (feature_extraction_ecg_pma.py: NAN_POLICIES, self-contained like the config).
NAN_POLICIES = ("raise", "interpolate", "zero")
# What pre-training does with a record it cannot read or use (data/crops.py: BAD_RECORD_POLICIES).
BAD_RECORD_POLICIES = ("raise", "skip")
