"""`ecg-pma --help` through the installed console script: answered without importing torch or transformers (the
package registers its Auto classes on import, except in the command's own process, where a subcommand registers)."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


HEAVY_MODULES = ("torch", "transformers", "datasets", "wfdb", "scipy")


def console_script() -> str:
    """The `ecg-pma` script installed beside this interpreter (the one `pip install` wrote)."""
    script = Path(sys.executable).parent / "ecg-pma"
    return str(script) if script.exists() else shutil.which("ecg-pma")


def run_console_script(*args) -> subprocess.CompletedProcess:
    # runpy gives the script its own `__main__`, as running it does, so that the check can look at sys.modules after
    code = (
        "import runpy, sys\n"
        "script = sys.argv[1]\n"
        "sys.argv = sys.argv[1:]\n"
        "try:\n    runpy.run_path(script, run_name='__main__')\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, console_script(), *args], capture_output=True, text=True, timeout=120
    )


def test_top_level_help_imports_no_heavy_library():
    result = run_console_script("--help")
    assert result.returncode == 0, result.stderr
    assert "finetune" in result.stdout and "probe-layers" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_help_wall_time_is_printed():
    # measured, not asserted: the machine may be busy; the number is in the test log (-s or the durations table)
    start = time.perf_counter()
    result = subprocess.run([console_script(), "--help"], capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    print(f"ecg-pma --help: {seconds:.2f} s wall ({os.cpu_count()} CPUs)")
