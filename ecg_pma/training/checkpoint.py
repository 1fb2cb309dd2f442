"""
Training checkpoints as safetensors + JSON only (no pickle): model, optimizer, learning-rate schedule, progress and
every process's random state. `accelerator.save_state` would write the optimizer, scheduler and RNG states with
`torch.save` (pickle), which this project does not write or load.

A kill at any moment leaves nothing half-written that a resume could pick up: every file is written to a temporary
name and renamed into place, and `manifest.json` (each file's size and SHA-256) is written last. A folder without a
manifest is unfinished; one whose files do not match it is damaged, and `--resume latest` falls back to the newest
intact checkpoint, saying what was wrong. The same atomic safetensors writer (with string metadata) and `read_cache`
serve the caches of long jobs (layer caches, record embeddings, benchmark runs): a cache is whole or absent, and one
that cannot be read is made again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file


logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "step-"
MANIFEST = "manifest.json"


class CheckpointError(ValueError):
    """A checkpoint folder is unfinished or damaged; the message names the folder and the file."""


def refuse_sharded_training(accelerator=None) -> None:
    """
    Stops, before any record is read, a run launched under FSDP or DeepSpeed (`accelerate config` / `accelerate
    launch` set `ACCELERATE_USE_FSDP` / `ACCELERATE_USE_DEEPSPEED`; an `accelerator` tells its `distributed_type`).
    Our checkpoints hold each parameter's full optimizer state on every process (as under DDP); under sharding they
    would hold one process's shard and could not be resumed, so such a run is refused rather than started.
    """
    from accelerate.utils import DistributedType, str_to_bool

    sharded = [
        name
        for name, variable in (("FSDP", "ACCELERATE_USE_FSDP"), ("DeepSpeed", "ACCELERATE_USE_DEEPSPEED"))
        if str_to_bool(os.environ.get(variable, "false") or "false")
    ]
    if accelerator is not None and accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        sharded.append(str(accelerator.distributed_type))
    if sharded:
        raise ValueError(
            f"This run is set up for sharded training ({', '.join(sharded)}), which ecg-pma does not support: its "
            "safetensors checkpoints hold unsharded optimizer state, so a sharded run's checkpoints could not be "
            "resumed. Use data parallelism (`accelerate config`: multi-GPU / multi-node, no FSDP or DeepSpeed); the "
            "model fits on one device."
        )


def _atomic_path(path: Path, write) -> None:
    """Calls `write(temporary_path)`, flushes it to disk and renames it to `path`: `path` is whole or absent."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def write_text_atomically(path: str | Path, text: str) -> None:
    _atomic_path(Path(path), lambda temporary: Path(temporary).write_text(text))


def save_file_atomically(
    tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    """
    `tensors` (made contiguous) and `metadata` (strings; callers JSON-encode what is not one) as one safetensors file,
    its folder made if needed: a kill while writing leaves the previous file or none, never part of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.contiguous() for name, tensor in tensors.items()}
    _atomic_path(path, lambda temporary: save_file(tensors, temporary, metadata=metadata))


def load_file_with_metadata(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the metadata of a safetensors file (`save_file_atomically`)."""
    tensors = load_file(path)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    return tensors, metadata


def read_cache(path: str | Path, load):
    """
    `load(path)` (a cache class's `load`), or None when there is no file at `path` or it cannot be read: a file cut
    short (a kill or a full disk while a writer that was not atomic wrote it) or without the expected tensors and
    metadata is logged and made again by the caller, never trusted.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return load(path)
    except (SafetensorError, OSError, ValueError, KeyError) as error:  # ValueError: JSONDecodeError among others
        logger.warning(f"{path} cannot be read ({type(error).__name__}: {error}); making it again.")
        return None


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: str | Path) -> None:
    """Records every file of a finished checkpoint folder (size and SHA-256); written last, it marks the folder whole."""
    directory = Path(directory)
    files = {
        path.name: {"size": path.stat().st_size, "sha256": file_sha256(path)}
        for path in sorted(directory.iterdir())
        if path.is_file() and path.name != MANIFEST and not path.name.startswith(".")
    }
    write_text_atomically(directory / MANIFEST, json.dumps({"files": files}, indent=2))


def verify_checkpoint(directory: str | Path) -> list[str]:
    """What is wrong with a checkpoint folder against its manifest (nothing: an empty list)."""
    directory = Path(directory)
    try:
        files = json.loads((directory / MANIFEST).read_text())["files"]
    except FileNotFoundError:
        return [f"no {MANIFEST} (the save did not finish)"]
    except (ValueError, KeyError, TypeError) as error:
        return [f"{MANIFEST} is unreadable ({error})"]
    problems = []
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != expected["size"]:
            problems.append(f"{name} has {path.stat().st_size} bytes, not {expected['size']} (truncated?)")
        elif file_sha256(path) != expected["sha256"]:
            problems.append(f"{name} does not match its checksum (corrupted)")
    return problems


def resumable_checkpoint(checkpoint_dir: str | Path) -> Path:
    """
    The newest intact checkpoint below `checkpoint_dir`. Damaged or unfinished newer ones are passed over with a
    warning naming what was wrong; none intact raises `FileNotFoundError` listing why.
    """
    rejected = []
    for folder in reversed(list_checkpoints(checkpoint_dir, finished_only=False)):
        problems = verify_checkpoint(folder)
        if not problems:
            if rejected:
                logger.warning(f"Resuming from {folder}, the newest intact checkpoint.")
            return folder
        rejected.append(f"{folder.name}: {'; '.join(problems)}")
        logger.warning(f"Checkpoint {folder} is not used: {'; '.join(problems)}.")
    detail = f" ({' | '.join(rejected)})" if rejected else ""
    raise FileNotFoundError(f"No intact checkpoint to resume from in {checkpoint_dir}{detail}.")


def truncate_train_log(log_path: str | Path, global_step: int) -> None:
    """Drops the log lines of steps after `global_step`: a resumed run logs them again."""
    log_path = Path(log_path)
    if not log_path.exists():
        return
    kept = [line for line in log_path.read_text().splitlines() if line.strip() and _logged_step(line) <= global_step]
    write_text_atomically(log_path, "".join(line + "\n" for line in kept))


def _logged_step(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # a line cut by a kill mid-write: dropped


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


# The progress fields that differ between processes (each its own pass over its share of a streamed corpus).
DATA_POSITION = ("epoch", "batches_in_epoch")


def save_training_state(
    directory: str | Path,
    model_state: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler,
    progress: dict,
    process_index: int,
    is_main_process: bool,
) -> None:
    """
    Writes one checkpoint folder's files, each atomically; every process writes its random state and its position in
    the data, the main process the rest. Once every process is done, the main process calls `write_manifest`: until
    then the folder is unfinished.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if is_main_process:
        (directory / MANIFEST).unlink(missing_ok=True)  # a folder being rewritten is unfinished until the end
    rng_tensors, rng_meta = random_state()
    save_file_atomically(rng_tensors, directory / f"random_state_{process_index}.safetensors")
    write_text_atomically(directory / f"random_state_{process_index}.json", json.dumps(rng_meta))
    # where this process is in its data: processes reading their own share of a stream end their passes apart
    position = {key: progress[key] for key in DATA_POSITION if key in progress}
    write_text_atomically(directory / f"data_position_{process_index}.json", json.dumps(position))
    if not is_main_process:
        return
    model_tensors = {k: v.detach().cpu().contiguous() for k, v in model_state.items()}
    save_file_atomically(model_tensors, directory / "model.safetensors")
    optimizer_tensors, optimizer_meta = _flatten_optimizer_state(optimizer.state_dict())
    save_file_atomically(optimizer_tensors, directory / "optimizer.safetensors")
    write_text_atomically(directory / "optimizer.json", json.dumps(optimizer_meta))
    write_text_atomically(directory / "scheduler.json", json.dumps(scheduler.state_dict()))
    write_text_atomically(directory / "progress.json", json.dumps(progress, indent=2))


def load_training_state(
    directory: str | Path, model: torch.nn.Module, optimizer, scheduler, process_index: int
) -> dict:
    """
    Restores what `save_training_state` wrote into `model`, `optimizer` and `scheduler`; returns the progress, with
    this process's own position in the data.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"No checkpoint folder {directory}.")
    problems = verify_checkpoint(directory)
    if problems:
        raise CheckpointError(f"Checkpoint {directory} is not intact: {'; '.join(problems)}.")
    missing, unexpected = model.load_state_dict(load_file(directory / "model.safetensors"), strict=False)
    if missing or unexpected:
        raise CheckpointError(
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
    else:
        # saved by fewer processes than resume it: this one starts from the seed (not bit-identical from here on)
        logger.warning(f"Checkpoint {directory} has no random state of process {process_index}; it starts fresh.")
    progress = json.loads((directory / "progress.json").read_text())
    position_file = directory / f"data_position_{process_index}.json"
    if position_file.exists():
        progress.update(json.loads(position_file.read_text()))
    return progress


def list_checkpoints(checkpoint_dir: str | Path, finished_only: bool = True) -> list[Path]:
    """Checkpoint folders, oldest first; only those whose manifest was written unless `finished_only=False`."""
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.exists():
        return []
    folders = [
        p
        for p in checkpoint_dir.iterdir()
        if p.is_dir()
        and p.name.startswith(CHECKPOINT_PREFIX)
        and p.name[len(CHECKPOINT_PREFIX) :].isdigit()
        and (not finished_only or (p / MANIFEST).exists())
    ]
    return sorted(folders, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def prune_checkpoints(checkpoint_dir: str | Path, keep: int | None) -> None:
    if keep is None:
        return
    for folder in list_checkpoints(checkpoint_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(folder)
