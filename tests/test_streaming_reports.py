"""
Streamed pre-training: memory bounded at every point of the pipeline (no `map` holds `datasets`' default 1,000 raw
records), and counts instead of one log line per record: read / dropped short / skipped per corpus, ids in files.
"""

from __future__ import annotations

import csv
import json
import re

import h5py
import numpy as np
import pytest
from conftest import run_two_processes
from test_cli import ecg_pma
from test_cli_errors import run_cli
from test_corpora import small_code15, write_code15, write_mimic

from ecg_pma import EcgPmaConfig, EcgPmaFeatureExtractor
from ecg_pma.cli import build_parser
from ecg_pma.commands.data_arguments import load_streaming_training_data
from ecg_pma.data.crops import STREAM_BATCH_SIZE


def map_batch_sizes(stream) -> list[int | None]:
    """The batch size of every batched `map` in an `IterableDataset`'s pipeline (its examples iterables' tree)."""
    sizes, pending = [], [stream._ex_iterable]
    while pending:
        iterable = pending.pop()
        if type(iterable).__name__ == "MappedExamplesIterable" and iterable.batched:
            sizes.append(iterable.batch_size)
        pending += [iterable.ex_iterable] if getattr(iterable, "ex_iterable", None) is not None else []
        pending += list(getattr(iterable, "ex_iterables", None) or [])
    return sizes


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    small_code15(root / "code15")  # 24 exams, the six of 7 s shorter than the 10 s window
    write_mimic(root / "mimic", {"10000001": ["41000000", "41000001"], "10000002": ["42000000"]})
    return root


def test_every_streaming_map_holds_a_bounded_batch(corpora, tmp_path):
    arguments = [
        "pretrain", "--data", f"code15:{corpora / 'code15'}", "--data", f"mimic-iv-ecg:{corpora / 'mimic'}",
        "--streaming", "--all-splits", "--output-dir", tmp_path / "out", "--max-steps", "1",
    ]  # fmt: skip
    args = build_parser().parse_args([str(argument) for argument in arguments])
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"))
    train, protocol = load_streaming_training_data(args, extractor, all_splits=True)
    sizes = map_batch_sizes(train.with_format("torch"))
    assert len(sizes) >= 3  # the two corpora's record-id prefixes and the crop
    assert all(size is not None and 1 <= size <= STREAM_BATCH_SIZE for size in sizes), sizes
    assert [corpus["records"] for corpus in protocol["corpora"]] == [{"read": 0, "dropped_short": 0, "skipped": 0}] * 2


@pytest.mark.slow
def test_streamed_pretraining_counts_per_corpus_and_lists_ids_in_files(corpora, tmp_path):
    result = ecg_pma(
        "pretrain", "--data", f"code15:{corpora / 'code15'}", "--data", f"mimic-iv-ecg:{corpora / 'mimic'}",
        "--streaming", "--shuffle-buffer", "4", "--all-splits", "--preset", "tiny", "--output-dir", tmp_path / "out",
        "--batch-size", "4", "--max-steps", "8", "--warmup-steps", "1", "--save-steps", "0", "--lead-sets", "12", "6",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "shorter than" not in result.stderr  # no line per dropped record
    protocol = json.loads((tmp_path / "out" / "pretraining_data.json").read_text())
    # the final counts written with every other choice of the run (the card's too)
    assert protocol["lead sets (one drawn per sample)"] == "12, 6"
    assert "lead sets (one drawn per sample)" in (tmp_path / "out" / "README.md").read_text()
    code15, mimic = (corpus["records"] for corpus in protocol["corpora"])
    # 8 steps of 4 crops: 32 crops at least (the DataLoader may read ahead), the two corpora interleaved
    assert code15["read"] + mimic["read"] >= 32 and mimic["read"] >= 3 and code15["read"] >= 3
    assert code15["dropped_short"] >= 1 and mimic["dropped_short"] == 0 and code15["skipped"] == mimic["skipped"] == 0
    dropped = (tmp_path / "out" / "short_records_dropped.txt").read_text().split()
    short = {f"code15:{corpora / 'code15'}/{1000 + i}" for i in range(0, 24, 4)}  # the 7 s exams
    assert len(dropped) == len(set(dropped)) and set(dropped) <= short and len(dropped) >= 1
    summary = [line for line in result.stderr.splitlines() if line.startswith("Corpus code15:")]
    assert len(summary) == 1 and f"{code15['dropped_short']} dropped_short" in summary[0], result.stderr[-3000:]
    assert not (tmp_path / "out" / "skipped_records.csv").exists()


def test_streamed_counts_are_totals_across_dataloader_workers(corpora, tmp_path):
    """Two DataLoader worker processes each read part of the stream; the main process's counts are their sum."""
    from torch.utils.data import DataLoader

    arguments = [
        "pretrain", "--data", corpora / "code15", "--data-format", "code15", "--streaming", "--all-splits",
        "--shuffle-buffer", "4", "--output-dir", tmp_path / "out", "--max-steps", "1",
    ]  # fmt: skip
    args = build_parser().parse_args([str(argument) for argument in arguments])
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"))
    train, protocol = load_streaming_training_data(args, extractor, all_splits=True)
    if train.n_shards < 2:  # seen at the datasets floor (3.6): nothing for a second worker to read, nothing to sum
        import datasets

        pytest.skip(f"datasets {datasets.__version__} gives this stream {train.n_shards} shard: one worker reads it")
    short = [f"{1000 + i}" for i in range(0, 24, 4)]  # the six 7 s exams of 24
    for epoch in (1, 2):  # each pass starts new workers
        train.set_epoch(epoch)
        crops = sum(
            len(batch["signals"]) for batch in DataLoader(train.with_format("torch"), batch_size=4, num_workers=2)
        )
        assert crops == 18
        train.report.refresh()
        assert protocol["corpora"][0]["records"] == {"read": 18 * epoch, "dropped_short": 6 * epoch, "skipped": 0}
    (line,) = train.report.summary()
    assert "36 read, 12 dropped_short, 0 skipped" in line
    assert sorted((tmp_path / "out" / "short_records_dropped.txt").read_text().split()) == short  # each id once


def test_streamed_counts_log_running_totals_every_log_every_records(tmp_path, caplog):
    """The periodic totals the README promises: one line every `log_every` records (all corpora), no line per record."""
    from ecg_pma.data.crops import StreamReport

    corpora = [{"format": "code15", "path": "a"}, {"format": "mimic-iv-ecg", "path": "b"}]
    report = StreamReport(corpora, ["code15:a/", "mimic-iv-ecg:b/"], tmp_path, log_every=4)
    with caplog.at_level("WARNING", logger="ecg_pma.data.crops"):
        for number in range(9):
            report.count(f"code15:a/{number}" if number % 3 else f"mimic-iv-ecg:b/{number}", "read")
        report.dropped("code15:a/short")
    totals = [record.getMessage() for record in caplog.records if record.getMessage().startswith("Streamed so far")]
    assert totals == [
        "Streamed so far: code15:a: 2 read, 0 dropped_short, 0 skipped; mimic-iv-ecg:b: 2 read, 0 dropped_short, "
        "0 skipped.",
        "Streamed so far: code15:a: 5 read, 0 dropped_short, 0 skipped; mimic-iv-ecg:b: 3 read, 0 dropped_short, "
        "0 skipped.",
    ]
    assert len(caplog.records) == 2  # the short record is counted and filed, not logged
    assert (tmp_path / "short_records_dropped.txt").read_text().split() == ["code15:a/short"]


def test_a_stream_stops_once_its_skipped_share_passes_max_bad_share(tmp_path):
    """Mid-stream, --max-bad-share is checked from 100 records seen on (missing records count as lost), each skipped
    record listed with its reason before the stop."""
    from ecg_pma.data.crops import StreamReport

    corpora = [{"format": "mimic-iv-ecg", "path": "m", "missing": 2}]
    report = StreamReport(corpora, [""], tmp_path, max_bad_share=0.05)
    for number in range(93):
        report.count(str(number), "read")
    for number in range(93, 96):  # 3 skipped + 2 missing of 98 seen: under 100, not checked yet
        report.skipped(str(number), "unreadable: cut short")
    report.count("96", "read")
    with pytest.raises(ValueError, match=r"m: 6 of the 100 records streamed so far skipped or missing, more than "
                       r"--max-bad-share 0\.05; .*skipped_records\.csv"):  # fmt: skip
        report.skipped("97", "unreadable: cut short")
    listed = (tmp_path / "skipped_records.csv").read_text().splitlines()
    assert listed[0] == StreamReport.SKIPPED_HEADER and len(listed) == 1 + 4


# ------------------------------------------------------------------------------- several training processes (torchrun)


def kill_lead(root, exam_ids, lead: int = 7) -> None:
    """Sets one lead of each of `exam_ids` to NaN in its CODE-15% part file: records the extractor cannot use (a
    required lead with no finite sample), skipped under `--bad-records skip`."""
    for path in root.glob("exams_part*.hdf5"):
        with h5py.File(path, "r+") as handle:
            ids = list(handle["exam_id"][:])
            for exam_id in exam_ids:
                if exam_id in ids:
                    handle["tracings"][ids.index(exam_id), :, lead] = np.nan


def streamed_pretraining(root, output, batch_size: int, max_steps: int, *extra):
    """`pretrain --streaming` on the train split of a CODE-15% folder (two part files: two shards), skipping bad
    records."""
    return [
        "pretrain", "--data", root, "--data-format", "code15", "--streaming", "--bad-records", "skip",
        "--shuffle-buffer", "4", "--preset", "tiny", "--output-dir", output, "--per-device-train-batch-size",
        str(batch_size), "--max-steps", str(max_steps), "--warmup-steps", "1", "--save-steps", "0", *extra,
    ]  # fmt: skip


def two_processes(arguments, logs):
    """`ecg-pma ARGUMENTS` as two gloo processes on the CPU (torchrun, as the README says), each one's stderr in its
    own file under `logs`."""
    return run_two_processes(arguments, timeout=300, torchrun_options=("--log-dir", logs, "--redirects", "2"))


@pytest.mark.slow
def test_two_process_streamed_counts_and_id_files_are_the_single_process_totals(tmp_path, capsys):
    """
    Under two processes each reads its own part file; `pretraining_data.json`, the log's line and the id files are
    the totals of both, equal to a single process's that read the same records. The train split holds 21 exams: 14
    of 10 s, five of 7 s (dropped) and two with a dead lead (skipped). Each process's share is under one streaming
    batch (16 records), so one step reads all of it; the single process reads them all in one pass of 14 crops.
    """
    root = tmp_path / "code15"
    small_code15(root)
    kill_lead(root, [1001, 1003])
    code, err = run_cli(capsys, *streamed_pretraining(root, tmp_path / "one", 2, 7))
    assert code == 0, err[-3000:]
    result = two_processes(streamed_pretraining(root, tmp_path / "two", 2, 1), tmp_path / "logs")
    assert result.returncode == 0, result.stderr[-4000:]
    totals = {"read": 14, "dropped_short": 5, "skipped": 2}
    for output in ("one", "two"):
        (corpus,) = json.loads((tmp_path / output / "pretraining_data.json").read_text())["corpora"]
        assert corpus["records"] == totals, output
    assert "Corpus code15:" in result.stderr or any(
        "14 read, 5 dropped_short, 2 skipped" in path.read_text() for path in (tmp_path / "logs").rglob("stderr.log")
    )
    for name in ("short_records_dropped.txt", "skipped_records.csv"):
        one, two = ((tmp_path / output / name).read_text().splitlines() for output in ("one", "two"))
        assert sorted(one) == sorted(two) and len(two) == len(set(two)), name
    assert len((tmp_path / "two" / "short_records_dropped.txt").read_text().split()) == 5
    skipped = (tmp_path / "two" / "skipped_records.csv").read_text()
    assert skipped.startswith("corpus,path,split,record_id,reason\n") and skipped.count("corpus,path") == 1
    assert ",1001," in skipped and ",1003," in skipped and "no finite sample" in skipped
    assert not list((tmp_path / "two").glob("*.process-*"))  # the second process's own files, merged and removed


@pytest.mark.slow
def test_two_processes_stop_together_when_their_totals_pass_the_bad_share(tmp_path):
    """
    `--max-bad-share` is checked on both processes' totals, on both at the same step: 150 exams, one in three with a
    dead lead; each process reads under 100 records of its part file in 6 steps (alone, too few to judge), together
    more than 100 before that, so both stop with the same error (neither is left waiting for the other), and the
    listing it names holds both processes' skipped records.
    """
    root = tmp_path / "code15"
    exams = [{"exam_id": 2000 + i, "patient_id": i, "part": i % 2, "seconds": 10} for i in range(150)]
    write_code15(root, exams)
    kill_lead(root, [exam["exam_id"] for exam in exams[::3]])  # in both part files
    arguments = streamed_pretraining(root, tmp_path / "out", 8, 6, "--max-bad-share", "0.1")
    result = two_processes(arguments, tmp_path / "logs")
    assert result.returncode != 0
    logs = sorted((tmp_path / "logs").rglob("stderr.log"))
    assert len(logs) == 2, result.stderr[-3000:]
    for log in logs:  # each process stopped by the rule itself
        assert "records streamed so far skipped or missing, more than --max-bad-share 0.1" in log.read_text(), (
            log.read_text()[-3000:]
        )
    steps = [json.loads(line)["step"] for line in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    assert steps[-1] < 6
    lost = int(re.search(r"(\d+) of the (\d+) records streamed so far", logs[0].read_text()).group(1))
    with open(tmp_path / "out" / "skipped_records.csv") as handle:
        listed = [int(row["record_id"]) for row in csv.DictReader(handle)]
    assert len(listed) == lost and {exam_id % 2 for exam_id in listed} == {0, 1}  # both part files' records
    assert not list((tmp_path / "out").glob("*.process-*"))
