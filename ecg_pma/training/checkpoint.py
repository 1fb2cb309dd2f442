"""
Training checkpoints as safetensors + JSON only (no pickle): model, optimizer, learning-rate schedule, progress and
every process's random state. `accelerator.save_state` would write the optimizer, scheduler and RNG states with
`torch.save` (pickle), which this project does not write or load.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file


CHECKPOINT_PREFIX = "step-"


def _flatten_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for parameter_id, entries in state_dict["state"].items():
        for key, value in entries.items():
            name = f"{parameter_id}.{key}"
            if isinstance(value, torch.Tensor):
                tensors[name] = value.detach().cpu().contiguous()
            else:
                scalars[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in [*tensors.items(), *meta["scalars"].items()]:
        parameter_id, key = name.split(".", 1)
        state.setdefault(int(parameter_id), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def random_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{index}"] = state
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    meta = {
        "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
        "python": [python_state[0], list(python_state[1]), python_state[2]],
    }
    return tensors, meta


def set_random_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda_states = [tensors[key] for key in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    name, keys, *rest = meta["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def save_training_state(
    directory: str | Path,
    model_state: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler,
    progress: dict,
    process_index: int,
    is_main_process: bool,
) -> None:
    """Writes one checkpoint folder; every process writes its random state, the main process the rest."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng_tensors, rng_meta = random_state()
    save_file(rng_tensors, directory / f"random_state_{process_index}.safetensors")
    (directory / f"random_state_{process_index}.json").write_text(json.dumps(rng_meta))
    if not is_main_process:
        return
    save_file({k: v.detach().cpu().contiguous() for k, v in model_state.items()}, directory / "model.safetensors")
    optimizer_tensors, optimizer_meta = _flatten_optimizer_state(optimizer.state_dict())
    save_file(optimizer_tensors, directory / "optimizer.safetensors")
    (directory / "optimizer.json").write_text(json.dumps(optimizer_meta))
    (directory / "scheduler.json").write_text(json.dumps(scheduler.state_dict()))
    (directory / "progress.json").write_text(json.dumps(progress, indent=2))


def load_training_state(
    directory: str | Path, model: torch.nn.Module, optimizer, scheduler, process_index: int
) -> dict:
    """Restores what `save_training_state` wrote into `model`, `optimizer` and `scheduler`; returns the progress."""
    directory = Path(directory)
    if not (directory / "progress.json").exists():
        raise FileNotFoundError(f"{directory} is not a training checkpoint (no progress.json).")
    missing, unexpected = model.load_state_dict(load_file(directory / "model.safetensors"), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"Checkpoint {directory} does not match the model: missing {missing}, unexpected {unexpected}."
        )
    optimizer.load_state_dict(
        _unflatten_optimizer_state(
            load_file(directory / "optimizer.safetensors"), json.loads((directory / "optimizer.json").read_text())
        )
    )
    scheduler.load_state_dict(json.loads((directory / "scheduler.json").read_text()))
    rng_file = directory / f"random_state_{process_index}.safetensors"
    if rng_file.exists():
        set_random_state(
            load_file(rng_file), json.loads((directory / f"random_state_{process_index}.json").read_text())
        )
    return json.loads((directory / "progress.json").read_text())


def list_checkpoints(checkpoint_dir: str | Path) -> list[Path]:
    """Checkpoint folders, oldest first."""
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.exists():
        return []
    folders = [
        p for p in checkpoint_dir.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and (p / "progress.json").exists()
    ]
    return sorted(folders, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def prune_checkpoints(checkpoint_dir: str | Path, keep: int | None) -> None:
    if keep is None:
        return
    for folder in list_checkpoints(checkpoint_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(folder)
