"""Shared fixtures: tiny configs, and the real records in ../shared/data (required under CI)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path


# `make test` runs the suite in two pytest-xdist workers (one per core of CI's 2-core machine). Each worker, and every
# process a test starts, then computes on one thread: two workers with two OpenMP threads each would put four
# spin-waiting threads on two cores, which made the integrated-gradients test 5x slower on a loaded machine.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
# The Hugging Face libraries' caches (downloads, remote-code modules, datasets) and torch.compile's kernels in a folder
# of this test process, not the user's: tests never read what an earlier run or another worker left there. Inductor's
# cache does not key its C++ kernels to the thread count: a kernel compiled by a 2-thread process and run by a 1-thread
# worker corrupted the heap ("malloc(): unaligned tcache chunk detected", test_compiled_pretraining_... aborted).
TEST_CACHES = tempfile.mkdtemp(prefix="ecg-pma-tests-caches-")
atexit.register(shutil.rmtree, TEST_CACHES, ignore_errors=True)
HF_HOME = os.path.join(TEST_CACHES, "hf")
os.environ["HF_HOME"] = HF_HOME
os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(TEST_CACHES, "torchinductor")

import pytest  # noqa: E402
import torch  # noqa: E402

from ecg_pma import EcgPmaConfig  # noqa: E402


if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # in case torch was imported before OMP_NUM_THREADS was set


REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ECG_PMA_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_data_dir(*parts: str) -> Path:
    """A folder of ../shared/data. Missing data skips the test locally but fails it under CI=true."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        message = f"real test data not found at {path} (set ECG_PMA_SHARED_DATA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def tiny_config() -> EcgPmaConfig:
    return EcgPmaConfig.from_preset("tiny", num_labels=3)


@pytest.fixture(scope="module")
def challenge(tmp_path_factory):
    """The 40 real challenge records, as raw rows and as model-ready windows for the tiny config."""
    from ecg_pma import EcgPmaFeatureExtractor
    from ecg_pma.data import extract_features, load_physionet2021

    cache = tmp_path_factory.mktemp("cache")
    raw = load_physionet2021(shared_data_dir("physionet2021"), cache_dir=cache)
    extractor = EcgPmaFeatureExtractor.from_model_config(EcgPmaConfig.from_preset("tiny"))
    return raw, extract_features(raw, extractor, window_mode="sliding"), extractor


@pytest.fixture
def signals() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(4, 12, 1000, generator=generator)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# Folders the suite may write in the repository: interpreter and tool caches, virtual environments.
NOT_GUARDED = ("__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", ".git")


def snapshot_tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file below `root` (outside `NOT_GUARDED` folders, virtual environments and egg-info) -> (mtime, size)."""
    files = {}
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [
            name
            for name in subfolders
            if name not in NOT_GUARDED and not name.startswith(".venv") and not name.endswith(".egg-info")
        ]
        for name in names:
            path = Path(folder, name)
            try:
                stat = path.lstat()
            except FileNotFoundError:  # removed while walking
                continue
            files[str(path.relative_to(root))] = (stat.st_mtime_ns, stat.st_size)
    return files


def written_since(before: dict[str, tuple[int, int]], root: Path) -> list[str]:
    """Files below `root` created or changed since `before` was taken (deletions of files are listed too)."""
    after = snapshot_tree(root)
    changed = [path for path, stamp in after.items() if before.get(path) != stamp]
    return sorted(changed + [path for path in before if path not in after])


@pytest.fixture(scope="session", autouse=True)
def _nothing_written_into_the_repository():
    """
    Tests write only under pytest's temporary folders: the suite fails if it created, changed or removed any file of
    the repository tree (ignored ones such as outputs/ included, so a user's results are never overwritten).
    """
    before = snapshot_tree(REPO_ROOT)
    yield
    written = written_since(before, REPO_ROOT)
    if written:
        pytest.fail(
            f"The test suite wrote into the repository tree {REPO_ROOT} (tests must write under tmp_path): "
            + ", ".join(written[:20])
            + (f" and {len(written) - 20} more" if len(written) > 20 else "")
        )


BLOCK_PACKAGE = """
import sys
sys.modules["ecg_pma"] = None  # only the code saved next to the weights may be used here
try:
    import ecg_pma  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("ecg_pma is importable; the test would prove nothing")
"""


def run_without_package(tmp_path: Path, script: str, *args: str, env: dict | None = None):
    """
    Runs `script` in a fresh Python process that cannot import `ecg_pma` (offline and with an empty module cache
    unless `env` says otherwise).
    """
    import subprocess
    import sys

    path = tmp_path / "fresh_process.py"
    path.write_text(BLOCK_PACKAGE + script)
    env = {
        **os.environ,
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": "",
        **(env or {}),
    }
    result = subprocess.run(
        [sys.executable, str(path), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


TORCHRUN_LOCK = os.path.join(tempfile.gettempdir(), "ecg-pma-tests-torchrun.lock")


def run_two_processes(arguments: list, timeout: int = 600, torchrun_options: tuple = ()):
    """
    `ecg-pma ARGUMENTS` as two gloo processes on the CPU (`torchrun --standalone --nproc_per_node 2`, as the README
    says; one compute thread each, offline), returning the `CompletedProcess`. One such run at a time across the
    pytest-xdist workers: twice in session 7, with the other worker running tests too, a two-process run waited
    until its timeout (not reproduced alone, where each takes 20-30 s). On a timeout the whole process group is
    killed, so that no rank is left waiting in the background.
    """
    import signal
    import subprocess
    import sys

    from filelock import FileLock

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               *torchrun_options, "--module", "ecg_pma.cli", *arguments]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with FileLock(TORCHRUN_LOCK):
        process = subprocess.Popen(
            [str(part) for part in command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
