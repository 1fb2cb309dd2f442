"""
Prints pip constraints that pin every dependency of pyproject.toml (runtime and the given extras) to its declared
floor: `name>=X` becomes `name==X`. `make test-min` installs with them to prove that the floors are real.
"""

import re
import sys
from pathlib import Path


try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the copy pip vendors
    from pip._vendor import tomli as tomllib


# Installed before the others (the Makefile's TORCH_SPEC): the only CPU wheel of torch here is 2.13.0.
NOT_PINNED = ("torch",)
# Not ours, but needed with our floors: pyarrow (through datasets) 26 imports only with numpy >= 2, without saying so
# in its metadata, so pip would pair it with numpy 1.24.
TRANSITIVE = ("pyarrow<26",)


def floors(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = project["dependencies"] + [r for extra in extras for r in project["optional-dependencies"][extra]]
    pins = {}
    for requirement in requirements:
        match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(?:>=|==)\s*([0-9][^,;\s]*)", requirement)
        if match is None:
            raise SystemExit(f"{requirement!r} has no floor (>= or ==): declare the oldest version that works.")
        pins[match.group(1).lower()] = match.group(2)
    return [f"{name}=={version}" for name, version in sorted(pins.items()) if name not in NOT_PINNED] + list(
        TRANSITIVE
    )


if __name__ == "__main__":
    print("\n".join(floors(Path(__file__).resolve().parents[1] / "pyproject.toml", sys.argv[1:])))
