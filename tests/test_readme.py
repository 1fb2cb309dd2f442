"""README.md stays true: its Python examples run as written, and its command lines parse."""

import os
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


@pytest.fixture
def checkout(tmp_path):
    """
    A folder where the README's relative paths resolve as in a user's clone after `ecg-pma download
    physionet2021-sample data/physionet2021-sample` (the same 40 records, from ../shared/data), so that what the
    examples write (outputs/...) stays under tmp_path.
    """
    root = tmp_path / "clone"
    (root / "data").mkdir(parents=True)
    (root / "data" / "physionet2021-sample").symlink_to(shared_data_dir("physionet2021"), target_is_directory=True)
    return root


def run_in(checkout, *args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, *args], cwd=checkout, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_python_examples_run_in_order(checkout):
    result = run_in(checkout, "-c", "\n\n".join(blocks("python")))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (checkout / "outputs" / "my-model" / "model.safetensors").exists()


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


def test_the_readme_says_where_its_data_comes_from():
    lines = [" ".join(words) for words in command_lines()]
    assert "download physionet2021-sample data/physionet2021-sample" in lines
    assert any(line.startswith("simulate ") for line in lines)
    assert "../shared/data" not in "".join(blocks("python") + blocks("bash"))


@pytest.mark.slow
def test_training_command_lines_run_on_the_challenge_records(checkout):
    runnable = [
        words
        for words in command_lines()
        if words[0] not in ("download", "simulate")
        and ("data/physionet2021-sample" in " ".join(words) or words[0] == "export-onnx")
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
        result = run_in(checkout, "-m", "ecg_pma.cli", *words)
        assert result.returncode == 0, (words, result.stderr[-3000:])
    assert (checkout / "outputs" / "cli-probed" / "pipeline_ecg_pma.py").exists()
