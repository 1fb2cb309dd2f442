"""
The PhysioNet/Computing in Cardiology Challenge 2020/2021 12-lead databases (CPSC2018, INCART, PTB, PTB-XL, Georgia,
Chapman-Shaoxing, Ningbo) as a `datasets.DatasetDict`, labelled by the SNOMED-CT codes of each header's `# Dx:` line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from datasets import DatasetDict, Sequence, Value

from .records import (
    build_splits,
    find_records,
    hash_split,
    header_signal_files_absent,
    multi_hot,
    read_wfdb_header,
    record_features,
    report_missing,
    with_missing_records,
)


# The 30 diagnoses scored by the 2021 challenge: SNOMED-CT code -> abbreviation (its dx_mapping_scored table).
SCORED_SNOMED = {
    "164889003": "AF",
    "164890007": "AFL",
    "6374002": "BBB",
    "426627000": "Brady",
    "733534002": "CLBBB",
    "713427006": "CRBBB",
    "270492004": "IAVB",
    "713426002": "IRBBB",
    "39732003": "LAD",
    "445118002": "LAnFB",
    "164909002": "LBBB",
    "251146004": "LQRSV",
    "698252002": "NSIVCB",
    "10370003": "PR",
    "365413008": "PRWP",
    "284470004": "PAC",
    "427172004": "PVC",
    "164947007": "LPR",
    "111975006": "LQT",
    "164917005": "QAb",
    "47665007": "RAD",
    "59118001": "RBBB",
    "427393009": "SA",
    "426177001": "SB",
    "426783006": "NSR",
    "427084000": "STach",
    "63593006": "SVPB",
    "164934002": "TAb",
    "59931005": "TInv",
    "17338001": "VPB",
}
# Pairs the challenge scores as one class: the second code counts as the first.
EQUIVALENT_SNOMED = {
    "164909002": "733534002",
    "59118001": "713427006",
    "63593006": "284470004",
    "17338001": "427172004",
}
LABEL_SETS = ("scored", "all")
# The source databases of the 2021 release (1.0.3) by record-name prefix; Chapman-Shaoxing and Ningbo share `JS` and
# are told apart by number (Chapman-Shaoxing JS00001-JS10646, Ningbo from JS10647 on).
SOURCE_PREFIXES = {
    "cpsc2018": "A",
    "cpsc2018-extra": "Q",
    "incart": "I",
    "ptb": "S",
    "ptb-xl": "HR",
    "georgia": "E",
    "chapman": "JS",
    "ningbo": "JS",
}
LAST_CHAPMAN_NUMBER = 10646


def record_source(record_id: str) -> str | None:
    """`'JS00012'` -> `'chapman'`, `'HR06009'` -> `'ptb-xl'`; None for a name no challenge source uses."""
    match = re.fullmatch(r"([A-Z]+)(\d+)", record_id)
    if match is None:
        return None
    prefix, number = match.groups()
    if prefix == "JS":
        return "chapman" if int(number) <= LAST_CHAPMAN_NUMBER else "ningbo"
    return next((source for source, known in SOURCE_PREFIXES.items() if known == prefix), None)


def select_sources(records: list[str], sources, root) -> list[str]:
    """The record paths whose name belongs to one of `sources` (keys of `SOURCE_PREFIXES`)."""
    unknown = sorted(set(sources) - set(SOURCE_PREFIXES))
    if unknown:
        raise ValueError(f"Unknown PhysioNet 2021 source(s) {unknown}; expected some of {list(SOURCE_PREFIXES)}.")
    selected = [path for path in records if record_source(Path(path).name) in set(sources)]
    if not selected:
        raise FileNotFoundError(f"PhysioNet 2021: no record of source(s) {list(sources)} below {root}.")
    return selected


def parse_header_comments(comments: list[str]) -> dict[str, str]:
    """`['Age: 78', 'Sex: Male', 'Dx: 1,2']` -> `{'age': '78', 'sex': 'Male', 'dx': '1,2'}`."""
    fields = {}
    for comment in comments:
        key, separator, value = comment.partition(":")
        if separator:
            fields[key.strip().lower()] = value.strip()
    return fields


def read_header_fields(record_path: str) -> tuple[dict[str, str], list[str]]:
    """The header's `# Key: value` comments, and the signal files it names that are not on disk."""
    header = read_wfdb_header(record_path)
    return parse_header_comments(header.comments or []), header_signal_files_absent(header, record_path)


def load_physionet2021(
    root: str | os.PathLike,
    label_set: str = "scored",
    merge_equivalent: bool = True,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    sources=None,
    streaming: bool = False,
    missing: str = "raise",
) -> DatasetDict:
    """
    Loads every WFDB record below `root` whose header has a `# Dx:` line (with `sources`, only those of the named
    source databases, told by record-name prefix: see `SOURCE_PREFIXES`). A record whose header names a signal file
    that is not on disk (a partial download) raises naming it, or with `missing="skip"` is left out and carried in the
    splits' `missing_records` (`{record_id: reason}`), as the other loaders do.

    Args:
        label_set: `"scored"`: the challenge's scored classes, by abbreviation (26 when `merge_equivalent`, which
            counts RBBB as CRBBB, LBBB as CLBBB, SVPB as PAC and VPB as PVC, as the challenge scores them; 30 otherwise).
            `"all"`: every SNOMED-CT code seen (abbreviations where known).
        validation_fraction, test_fraction: the deterministic split by a hash of the record name.
    The SNOMED codes of every record stay in the `dx_codes` column, scored or not.
    """
    if label_set not in LABEL_SETS:
        raise ValueError(f"Unknown PhysioNet 2021 `label_set` {label_set!r}; expected one of {LABEL_SETS}.")
    records = find_records(root)
    if not records:
        raise FileNotFoundError(f"PhysioNet 2021: no WFDB header (.hea) below {root}.")
    if sources:
        records = select_sources(records, sources, root)

    if missing not in ("raise", "skip"):
        raise ValueError(f"`missing` must be 'raise' or 'skip', got {missing!r}.")
    entries, missing_records = [], {}
    for record_path in records:
        fields, absent = read_header_fields(record_path)
        if absent:
            missing_records[Path(record_path).name] = f"signal file {', '.join(absent)} not on disk"
            continue
        if "dx" not in fields:
            raise ValueError(
                f"WFDB record {record_path!r}: no '# Dx:' line in the header; is this a challenge record?"
            )
        codes = [code.strip() for code in fields["dx"].split(",") if code.strip()]
        entries.append((record_path, fields, codes))

    def label_of(code: str) -> str | None:
        if merge_equivalent:
            code = EQUIVALENT_SNOMED.get(code, code)
        if code in SCORED_SNOMED:
            return SCORED_SNOMED[code]
        return code if label_set == "all" else None

    if label_set == "scored":
        label_names = sorted(
            {label_of(code) for code in SCORED_SNOMED if not (merge_equivalent and code in EQUIVALENT_SNOMED)}
        )
    else:
        label_names = sorted({label for _, _, codes in entries for code in codes if (label := label_of(code))})
    label_index = {name: i for i, name in enumerate(label_names)}

    rows_by_split: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for record_path, fields, codes in entries:
        record_id = Path(record_path).name
        label_ids = sorted({label_index[label] for code in codes if (label := label_of(code)) in label_index})
        age = fields.get("age", "")
        rows_by_split[hash_split(record_id, validation_fraction, test_fraction)].append(
            {
                "path": record_path,
                "record_id": record_id,
                "labels": multi_hot(label_ids, len(label_names)),
                "label_ids": label_ids,
                "dx_codes": codes,
                "age": float(age) if age.replace(".", "", 1).isdigit() else None,
                "sex": fields.get("sex"),
            }
        )
    features = record_features(
        12, label_names, {"dx_codes": Sequence(Value("string")), "age": Value("float32"), "sex": Value("string")}
    )
    report_missing(missing_records, missing, f"PhysioNet 2021 {root}", which="whose signal file is")
    splits = build_splits(rows_by_split, features, cache_dir=cache_dir, num_proc=num_proc, streaming=streaming)
    return with_missing_records(splits, missing_records)
