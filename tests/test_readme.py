"""README.md stays true: its Python examples run as written, and its command lines parse."""

import re
import shlex
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, shared_data_dir

from ecg_pma.cli import build_parser


README = (REPO_ROOT / "README.md").read_text()


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_has_the_two_commands():
    assert "make demo" in blocks("bash")[0] and "make test" in blocks("bash")[0]
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_python_examples_run_in_order():
    shared_data_dir("physionet2021")
    script = "\n\n".join(blocks("python"))
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def command_lines():
    lines = []
    for block in blocks("bash")[1:]:
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


@pytest.mark.slow
def test_training_command_lines_run_on_the_challenge_records(tmp_path):
    shared_data_dir("physionet2021")
    runnable = [
        words
        for words in command_lines()
        if "../shared/data/physionet2021" in " ".join(words) or words[0] == "export-onnx"
    ]
    assert [words[0] for words in runnable] == [
        "pretrain",
        "finetune",
        "evaluate",
        "predict",
        "probe-layers",
        "export-onnx",
        "export-onnx",
        "export-onnx",
        "predict",
    ]
    for words in runnable:
        result = subprocess.run(
            [sys.executable, "-m", "ecg_pma.cli", *words], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, (words, result.stderr[-3000:])
