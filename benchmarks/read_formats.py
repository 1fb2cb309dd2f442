"""
Reading speed of every ECG format `ecg_pma.read_ecg` reads, in records/s, beside WFDB's: the real challenge records
are written once into each format (pydicom, edfio and wfdb as writers; HL7 aECG and GE MUSE XML by the tests'
schema-built writers; CSV, .npy with a sidecar JSON, Parquet), then every format is read in interleaved rounds (the
median round reported), through `read_ecg` (format sniffed from the content, scaled to mV, metadata). The Philips row
reads the two published Philips files of tests/data (XLI-compressed, decoded by sierraecg) as many times over.

    python benchmarks/read_formats.py [--records 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import CHALLENGE_RECORDS, machine_info, significant


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def write_corpus(records: list[str], directory: Path) -> dict[str, list[str]]:
    """Each record in every format; returns the paths per format."""
    from ecg_files import published_file, write_arrays, write_ge_muse, write_hl7_aecg

    from ecg_pma import read_ecg, write_ecg

    paths: dict[str, list[str]] = {"wfdb": list(records)}
    for index, record_path in enumerate(records):
        record = read_ecg(record_path)
        stem = directory / f"r{index}"
        for kind, suffix in (("dicom", ".dcm"), ("edf", ".edf")):
            paths.setdefault(kind, []).append(write_ecg(record, f"{stem}{suffix}"))
        paths.setdefault("hl7-aecg", []).append(str(write_hl7_aecg(record, Path(f"{stem}.aecg.xml"))))
        # as GE writes it: 8 leads at 4.88 uV per bit, the other limb leads derived when read
        eight = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
        paths.setdefault("ge-muse", []).append(str(write_ge_muse(record, Path(f"{stem}.muse.xml"), 4.88, eight)))
        for kind, path in write_arrays(record, directory, f"r{index}").items():
            paths.setdefault(kind, []).append(str(path))
    philips = [
        str(published_file(name, directory))
        for name in ("philips_1_03_129DYPRG.xml.gz", "philips_1_04_3191723_ZZDEMOPTONLY.xml.gz")
    ]
    paths["philips"] = [philips[index % 2] for index in range(len(records))]
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from ecg_pma import read_ecg

    records = sorted(str(path.with_suffix("")) for path in CHALLENGE_RECORDS.glob("*.hea"))[: args.records]
    with tempfile.TemporaryDirectory() as directory:
        paths = write_corpus(records, Path(directory))
        seconds: dict[str, list[float]] = {kind: [] for kind in paths}
        for _ in range(args.rounds):
            for kind, files in paths.items():
                start = time.perf_counter()
                for path in files:
                    read_ecg(path)
                seconds[kind].append(time.perf_counter() - start)
    rates = {kind: len(paths[kind]) / statistics.median(times) for kind, times in seconds.items()}
    report = {
        "benchmark": "read_formats",
        **machine_info(),
        "records": len(records),
        "rounds": args.rounds,
        "records_per_s": {kind: significant(rate) for kind, rate in rates.items()},
        "ratio_to_wfdb": {kind: significant(rate / rates["wfdb"], 3) for kind, rate in rates.items()},
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
