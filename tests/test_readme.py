"""
README.md stays true: every Python and shell block runs as written, in order, in a fresh folder with no network,
after the README's own offline data step; the blocks that cannot (the network, GPUs, a browser) say so on their first
line (`# needs: ...`) and are listed here by name; every `ecg-pma` command line parses.
"""

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO_ROOT, shared_data_dir

from ecg_pma.cli import build_parser


README = (REPO_ROOT / "README.md").read_text()
NEEDS = "# needs:"

# The blocks the README marks as not runnable here, by name (their first command), with what they need. A block newly
# marked must be added here: nothing is skipped silently.
NOT_RUN = {
    "make demo": "the network (pip installs .venv); tests/test_readme.py runs every other block",
    "ecg-pma download physionet2021-sample data/physionet2021-sample": "the network (PhysioNet, or a mirror given "
    "with --index-url)",
    "ecg-pma pretrain --all-splits --preset vit-b-paper --output-dir outputs/paper-pretrained": "the corpora, "
    "downloaded (hundreds of GB), and GPUs",
    "accelerate launch --multi_gpu --num_machines 2 --num_processes 16 --machine_rank $RANK": "several GPU machines",
    "ecg-pma download ptb-xl data/ptb-xl --subset records100": "the network (PTB-XL, 1.7 GB) and GPUs",
    "ecg-pma benchmark --model runs/pretrained --suite ptbxl --data data/ptb-xl --seeds 0 1 2 --output-dir "
    "results/ptbxl": "the PTB-XL download (the network, 1.7 GB) and a pre-trained model of your own",
    "ecg-pma pretrain --data data/simulated --data-format wfdb --labels-csv data/simulated/labels.csv --preset tiny": "19 "
    "minutes for the benchmark; tests/test_model_benchmark.py runs the same benchmark command on the 40 records",
    "ecg-pma push outputs/cli-probed your-org/ecg-pma-probe --private --dataset physionet-challenge-2021": "the "
    "network and a Hugging Face token",
    "ecg-pma app outputs/cli-probed --examples data/physionet2021-sample": "a browser (the app serves until stopped)",
    "ecg-pma convert-st-mem st_mem_vit_base_encoder.pth converted/st-mem-encoder": "ST-MEM's checkpoints, "
    "downloaded by hand from the links above",
}


@dataclass
class Block:
    language: str  # python or bash
    code: str
    line: int  # of the opening fence in README.md

    @property
    def commands(self) -> list[str]:
        return [line for line in self.code.splitlines() if line.strip() and not line.lstrip().startswith("#")]

    @property
    def name(self) -> str:
        """The first command, without its comment or line continuation."""
        return self.commands[0].split("  #")[0].rstrip(" \\")

    @property
    def needs(self) -> str | None:
        first = self.code.splitlines()[0]
        return first.removeprefix(NEEDS).strip() if first.startswith(NEEDS) else None


def readme_blocks() -> list[Block]:
    """The Python and shell blocks of README.md, in order."""
    return [
        Block(match[1], match[2], README.count("\n", 0, match.start()) + 1)
        for match in re.finditer(r"^```(python|bash)\n(.*?)^```", README, flags=re.S | re.M)
    ]


def bash_blocks() -> list[str]:
    return [block.code for block in readme_blocks() if block.language == "bash"]


def test_readme_has_the_two_commands():
    assert "make demo" in bash_blocks()[0] and "make test" in bash_blocks()[0]
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()


def test_the_blocks_not_run_are_marked_in_the_readme_and_listed_here_by_name():
    assert {block.name: block.needs for block in readme_blocks() if block.needs} == NOT_RUN


def command_lines():
    lines = []
    for block in bash_blocks():
        for command in block.replace("\\\n", " ").splitlines():
            words = shlex.split(command, comments=True)
            if "ecg_pma.cli" in words:
                words = ["ecg-pma", *words[words.index("ecg_pma.cli") + 1 :]]
            if words and words[0] == "ecg-pma":
                lines.append(words[1:])
    return lines


def test_every_ecg_pma_command_line_in_the_readme_parses():
    lines = command_lines()
    assert len(lines) >= 10
    parser = build_parser()
    for words in lines:
        parser.parse_args(words)


def test_the_readme_says_where_its_data_comes_from():
    lines = [" ".join(words) for words in command_lines()]
    assert "download physionet2021-sample data/physionet2021-sample" in lines
    assert any(line.startswith("simulate ") for line in lines)
    assert "mkdir -p data && cp -r ../shared/data/physionet2021 data/physionet2021-sample\n" in bash_blocks()


def offline_environment(home: Path) -> dict[str, str]:
    """
    The `ecg-pma` console script and this tree first on the paths; no network (every HTTP client goes through a
    proxy on a closed port, and the Hugging Face libraries are offline); caches under `home`.
    """
    closed = "http://127.0.0.1:9"
    return {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "HF_HOME": str(home / "hf"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        **dict.fromkeys(("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"), closed),
        "NO_PROXY": "",
        "no_proxy": "",
    }


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    """
    Every block run in order in a fresh clone-like folder whose `../shared/data` is the project's shared data (what
    the README's offline step copies): (results of the blocks run, names of those not run, the folder).
    """
    root = tmp_path_factory.mktemp("readme")
    (root / "shared").symlink_to(shared_data_dir("physionet2021").parents[1], target_is_directory=True)
    clone = root / "clone"
    clone.mkdir()
    env = offline_environment(root)
    results, not_run = [], []
    for block in readme_blocks():
        if block.needs:
            not_run.append(block.name)
            continue
        command = (
            [sys.executable, "-c", block.code] if block.language == "python" else ["bash", "-e", "-c", block.code]
        )
        start = time.perf_counter()
        result = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True, timeout=900)
        result.seconds = time.perf_counter() - start  # printed by the test: where the suite's time goes
        results.append((block, result))
        if result.returncode != 0:
            break  # the blocks after it depend on it
    return results, not_run, clone


@pytest.mark.slow
def test_every_block_runs_as_written_in_order_offline(readme_run):
    results, not_run, clone = readme_run
    for block, result in results:
        assert result.returncode == 0, (
            f"README.md line {block.line}, block {block.name!r}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        )
    assert not_run == list(NOT_RUN)  # by name, printed here
    print("not run (marked `# needs:` in the README):", *(f"\n  {name}: {NOT_RUN[name]}" for name in not_run))
    print(
        "ran, seconds:", *(f"\n  {result.seconds:6.1f}  line {block.line}: {block.name}" for block, result in results)
    )
    ran = [block.name for block, _ in results]
    assert "mkdir -p data && cp -r ../shared/data/physionet2021 data/physionet2021-sample" in ran
    assert len([block for block, _ in results if block.language == "python"]) >= 3
    for written in (
        "outputs/my-model/model.safetensors",
        "outputs/cli-pretrained/model.safetensors",
        "outputs/cli-probed/pipeline_ecg_pma.py",
        "outputs/cli-any-leads/results.json",
        "outputs/cli-study/layerwise_probe.png",
        "outputs/cli-probed/model-int8.onnx",
        "outputs/predictions.csv",
        "outputs/exports.csv",
        "data/converted/E07500.hea",
        "outputs/ecg.png",
        "outputs/space/app.py",
    ):
        assert (clone / written).exists(), written
    assert sorted(path.name for path in clone.iterdir()) == ["data", "outputs"]  # nothing in the clone's root


@pytest.mark.slow
def test_the_finetune_output_shown_in_the_readme_is_what_a_run_prints(readme_run):
    results, _, _ = readme_run
    (training,) = [result for block, result in results if block.name.startswith("ecg-pma pretrain --data")]
    shown = re.search(r"prints, first, one line.*?```text\n(.*?)```", README, flags=re.S)[1].splitlines()
    printed = (training.stderr + training.stdout).splitlines()
    assert shown[0] in printed  # the line saying what was created, word for word
    assert "LOAD REPORT" not in training.stderr
    table = [line for line in shown if line.startswith("| ")]
    assert table and all(line in printed for line in table[:2])  # the results table's header


def test_the_install_block_puts_the_examples_command_on_the_path_and_make_installs_every_extra():
    """The examples call `ecg-pma` and `python` bare: the first block activates the environment `make` creates."""
    import tomllib

    first = bash_blocks()[0]
    assert "source .venv/bin/activate" in first
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "VENV ?= .venv\n" in makefile and '-e ".[dev]"' in makefile
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    # "the `dev` extra, which includes every optional extra"
    for extra, requirements in extras.items():
        assert set(requirements) <= set(extras["dev"]), extra
    named = set(re.findall(r"pip install -e '\.\[([\w,]+)\]'", README)[0].split(","))
    assert named == set(extras) - {"dev"}
    assert "ecg-pma[" not in README  # not published by that name: installs are from the clone


def test_the_commands_take_the_simulated_records_as_the_readme_says():
    """
    "the command-line examples take them with `--data data/simulated --data-format wfdb --labels-csv ...`": every
    example reading the challenge records parses with those options instead (the slow test below reads the records).
    """
    challenge = "--data data/physionet2021-sample --data-format physionet2021"
    simulated = "--data data/simulated --data-format wfdb --labels-csv data/simulated/labels.csv"
    assert simulated in " ".join(README.split())
    parser = build_parser()
    lines = [" ".join(words) for words in command_lines() if challenge in " ".join(words)]
    assert len(lines) >= 5
    for line in lines:
        parser.parse_args(shlex.split(line.replace(challenge, simulated)))


def idle_rerun() -> list[dict[str, str]]:
    """The rows of benchmarks/README.md's idle deployment rerun, the run the README's deployment numbers quote."""
    text = (REPO_ROOT / "benchmarks" / "README.md").read_text()
    section = text.split("### Idle rerun by the lead", 1)[1].split("\n#", 1)[0]
    rows = [
        [cell.strip(" *") for cell in line.strip("|").split("|")] for line in section.splitlines() if line[:2] == "| "
    ]
    header = rows[0]
    return [dict(zip(header, row)) for row in rows[2:]]


def test_the_deployment_numbers_are_the_benchmark_runs():
    rows = {(row["preset"], row["batch"]): row for row in idle_rerun()}
    assert len(rows) == 4

    def ratio(row, column):
        return float(row[column].rstrip("×"))

    def speed(row, column):
        return float(row[column])

    readme = " ".join(README.split())
    speedup = {key: ratio(row, "ORT int8 / eager") for key, row in rows.items()}
    assert (
        f"ViT-B: {speedup['vit-b-paper', '32']:.2f}× at batch 32 and {speedup['vit-b-paper', '1']:.2f}× at batch 1"
        in readme
    )
    assert (
        f"ViT-S: {speedup['vit-s-paper', '32']:.2f}× at batch 32. At batch 1 it measured {speedup['vit-s-paper', '1']:.2f}×"
        in readme
    )
    fp32 = [ratio(row, "ORT fp32 / eager") for row in rows.values()]
    assert f"ORT fp32 (optimized): {min(fp32):.2f}–{max(fp32):.2f}×" in readme
    all_leads = [ratio(row, "all-leads / masked") for row in rows.values()]
    assert f"within noise of the masked one ({min(all_leads):.2f}–{max(all_leads):.2f}×)" in readme
    masked = [speed(row, "int8 masked graph") / speed(row, "int8 earlier graph") for row in rows.values()]
    every_lead = [speed(row, "ORT int8") / speed(row, "int8 earlier graph") for row in rows.values()]
    both = masked + every_lead
    assert (
        f"int8 graphs ran {min(both):.2f}–{max(both):.2f}× the earlier unfused file (the masked graph "
        f"{min(masked):.2f}–{max(masked):.2f}×, the all-leads graph {min(every_lead):.2f}–{max(every_lead):.2f}×"
    ) in readme
    largest = rows["vit-b-paper", "32"]
    assert (
        f"ViT-B int8 at batch 32 ran {largest['int8 GOP/s']} GOP/s, {largest['fraction of the 946 GOP/s int8 ceiling']} of"
        in readme
    )


def test_the_upload_types_the_readme_lists_are_those_the_web_demo_takes():
    from ecg_pma.visualization.app import ACCEPTED_UPLOAD_SUFFIXES

    listed = re.search(r"A file of a type the box does not take \(it takes (.*?)\)", " ".join(README.split()))[1]
    assert set(re.findall(r"`(\.\w+)`", listed)) == set(ACCEPTED_UPLOAD_SUFFIXES)


@pytest.mark.slow
def test_the_simulated_records_load_as_the_readme_says(readme_run):
    from ecg_pma.data import load_wfdb_folder

    _, _, clone = readme_run
    folder = clone / "data" / "simulated"
    records = load_wfdb_folder(folder, labels_csv=folder / "labels.csv", cache_dir=clone.parent / "cache")
    assert sum(len(split) for split in records.values()) == 240  # `ecg-pma simulate data/simulated --num-records 240`
    record_ids = [record_id for split in records.values() for record_id in split["record_id"]]
    assert (
        folder / "sim00000.hea"
    ).exists() and "sim00000" in record_ids  # "`data/simulated/sim00000` is a record path"


def test_every_ecg_pma_name_the_readme_spells_out_exists():
    """`ecg_pma.x.y` in the README is a module or an attribute a newcomer can import, or a folder of the package."""
    import importlib

    names = sorted(set(re.findall(r"`(ecg_pma(?:\.\w+)+)", README)))
    assert len(names) >= 10
    for name in names:
        parts = name.split(".")
        if (REPO_ROOT.joinpath(*parts)).is_dir():
            continue
        for end in range(len(parts), 0, -1):
            try:
                found = importlib.import_module(".".join(parts[:end]))
                break
            except ModuleNotFoundError:
                continue
        for attribute in parts[end:]:
            assert hasattr(found, attribute), f"README.md names `{name}`, which does not exist"
            found = getattr(found, attribute)
