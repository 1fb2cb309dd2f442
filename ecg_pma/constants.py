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
# The feature extractor's NaN/inf policy (feature_extraction_ecg_pma.py: NAN_POLICIES, self-contained like the config).
NAN_POLICIES = ("raise", "interpolate", "zero")
# What pre-training does with a record it cannot read or use (data/crops.py: BAD_RECORD_POLICIES).
BAD_RECORD_POLICIES = ("raise", "skip")
