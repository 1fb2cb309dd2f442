"""
Masked-modeling pre-training of `EcgPmaForPreTraining` with Accelerate: one loop from a laptop CPU to many GPUs
(`accelerate launch`, `torchrun`), with the MAE learning-rate rule, warm-up + cosine schedule, gradient accumulation
and clipping, mixed precision, resumable safetensors checkpoints, tqdm progress and TensorBoard logs.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import compile_regions, gather_object, set_seed
from datasets import Dataset, IterableDataset
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from ..configuration_ecg_pma import EcgPmaConfig
from ..constants import MIXED_PRECISIONS
from ..feature_extraction_ecg_pma import EcgPmaFeatureExtractor
from ..modeling_ecg_pma import EcgPmaForPreTraining
from .checkpoint import (
    CHECKPOINT_PREFIX,
    load_training_state,
    prune_checkpoints,
    refuse_sharded_training,
    resumable_checkpoint,
    save_training_state,
    truncate_train_log,
    write_manifest,
)
from .collator import EcgDataCollator, LeadSetSampler


if TYPE_CHECKING:
    from ..data.crops import StreamReport

logger = logging.getLogger(__name__)


@dataclass
class PretrainingArguments:
    """
    Settings of a pre-training run. Defaults follow the ST-MEM schedule the PMA paper reuses: AdamW with betas
    (0.9, 0.95) and weight decay 0.01, base learning rate 1.2e-3 x effective batch / 256, 40 warm-up epochs then
    cosine decay, 800 epochs.
    """

    output_dir: str
    per_device_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    base_learning_rate: float = 1.2e-3  # scaled by the effective batch size / 256 (MAE rule)
    learning_rate: float | None = None  # the peak learning rate itself, instead of the MAE rule
    weight_decay: float = 0.01
    adam_betas: tuple[float, float] = (0.9, 0.95)
    num_train_epochs: float = 800
    max_steps: int | None = None  # optimizer steps; overrides num_train_epochs
    warmup_epochs: float = 40
    warmup_steps: int | None = None  # overrides warmup_epochs
    max_grad_norm: float | None = 1.0
    mixed_precision: str = "auto"  # "auto": bf16 on GPUs that support it, else fp32; or "no", "bf16", "fp16"
    save_steps: int | None = 1000
    save_total_limit: int | None = 3
    logging_steps: int = 10
    seed: int = 0
    resume_from_checkpoint: str | None = None  # a checkpoint folder, or "latest"
    dataloader_num_workers: int = 0
    use_cpu: bool = False  # train on the CPU even where a GPU is available
    # torch.compile, one Transformer block compiled once and reused (Accelerate's regional compilation: a shorter
    # cold start than compiling the whole model).
    torch_compile: bool = False
    disable_tqdm: bool = False
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    # Train on random lead subsets: each sample is cut to one lead set drawn from these (e.g. ["12", "6", "2"]), as
    # the feature extractor cuts records (`LeadSetSampler`), a function of (seed, micro-batch, process) like the
    # masking noise; masking then applies to the present leads only. None: the leads the records have.
    lead_sets: list[str] | None = None

    def __post_init__(self):
        # Checked here, before any data is read or any step is trained.
        positive = {
            "per_device_batch_size": self.per_device_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "logging_steps": self.logging_steps,
        }
        if self.max_steps is not None:
            positive["max_steps"] = self.max_steps
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        for name in ("warmup_steps", "save_steps", "save_total_limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"`{name}` must be a non-negative integer or None, got {value!r}.")
        if not 0 < self.num_train_epochs < math.inf:
            raise ValueError(f"`num_train_epochs` must be positive, got {self.num_train_epochs!r}.")
        if not 0 <= self.warmup_epochs < math.inf:
            raise ValueError(f"`warmup_epochs` must be non-negative, got {self.warmup_epochs!r}.")
        if not 0 < self.base_learning_rate < math.inf:
            raise ValueError(f"`base_learning_rate` must be positive, got {self.base_learning_rate!r}.")
        if self.learning_rate is not None and not 0 < self.learning_rate < math.inf:
            raise ValueError(f"`learning_rate` must be positive or None, got {self.learning_rate!r}.")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(f"`mixed_precision` must be one of {MIXED_PRECISIONS}, got {self.mixed_precision!r}.")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer, got {self.seed!r}.")

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.output_dir) / "checkpoints"


@dataclass
class PretrainingResult:
    output_dir: str
    global_step: int
    losses: list[dict]


def resolve_mixed_precision(choice: str, use_cpu: bool = False) -> str:
    on_cpu = use_cpu or not torch.cuda.is_available()
    if choice == "fp16" and on_cpu:
        raise ValueError("`mixed_precision='fp16'` needs a CUDA GPU; on the CPU use 'bf16' or 'no'.")
    if choice != "auto":
        return choice
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: biases, norms and per-lead/SEP/mask vectors are not decayed (as in MAE)."""
    decayed, not_decayed = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if parameter.ndim <= 1 or name.endswith(".bias") or "norm" in name or name.endswith("mask_token"):
            not_decayed.append(parameter)
        else:
            decayed.append(parameter)
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": not_decayed, "weight_decay": 0.0}]


def mask_noise(shape: tuple[int, ...], seed: int, micro_step: int, process_index: int) -> torch.Tensor:
    """
    The masking noise of one micro-batch, a function of (seed, micro-batch, process) only: a resumed run draws the
    same masks as an uninterrupted one, whatever else consumed random numbers in between.
    """
    generator = torch.Generator().manual_seed((seed * 1_000_003 + micro_step) * 1009 + process_index)
    return torch.rand(shape, generator=generator)


# Keeps the lead-set draws' seeds apart from any other stream seeded by (seed, micro-batch, process).
LEAD_SET_STREAM = 1


def lead_set_generator(seed: int, micro_step: int, process_index: int) -> torch.Generator:
    """
    The generator of one micro-batch's lead-set draws, a function of (seed, micro-batch, process) only, as the
    masking noise is: a resumed run draws the same lead sets as an uninterrupted one (a generator kept by the data
    loader would start over, and is copied into every worker).
    """
    sequence = np.random.SeedSequence([seed, micro_step, process_index, LEAD_SET_STREAM])
    return torch.Generator().manual_seed(int(sequence.generate_state(1, dtype=np.uint64)[0]))


@dataclass
class TrainingProgress:
    """Where a run stands: what a checkpoint's `progress.json` holds, and all a resumed run needs to continue."""

    global_step: int = 0  # optimizer steps done
    micro_step: int = 0  # batches consumed over the run (each draws its own mask)
    epoch: int = 0
    batches_in_epoch: int = 0  # batches of the current epoch already consumed (skipped on resume)

    @classmethod
    def from_dict(cls, values: dict) -> TrainingProgress:
        return cls(**{item.name: int(values[item.name]) for item in fields(cls)})


@dataclass
class PretrainingSchedule:
    total_steps: int  # optimizer steps
    warmup_steps: int
    learning_rate: float  # peak: base learning rate x effective batch / 256


def pretrain(
    model: EcgPmaForPreTraining,
    train_dataset: Dataset | IterableDataset,
    args: PretrainingArguments,
    feature_extractor: EcgPmaFeatureExtractor | None = None,
    protocol: dict | None = None,
    stream_report: StreamReport | None = None,
) -> PretrainingResult:
    """
    Pre-trains `model` on `train_dataset` (rows with `signals (leads, samples)`: an `ecg_pma.data.EcgTrainingDataset`
    drawing one random crop per record per epoch, or windows from `ecg_pma.data.extract_features`; map-style or
    streamed) and saves the final model (weights, config, code), the feature extractor and a model card to
    `args.output_dir`. `protocol` (the data choices: windows, dropped short records, ...) is written to
    `pretraining_data.json` and the card. `stream_report` (the `StreamReport` counting a stream's records, whose
    corpora are `protocol`'s): under several processes, its counts are every process's totals, logged as training
    goes and written at the end, with every process's ids in its files; its `max_bad_share` stops all processes at
    the same step.
    """
    refuse_sharded_training()
    output_dir = Path(args.output_dir)
    if args.lead_sets:
        protocol = {**(protocol or {}), "lead sets (one drawn per sample)": ", ".join(map(str, args.lead_sets))}
    report_to = [tracker for tracker in args.report_to if importlib.util.find_spec(tracker) is not None]
    accelerator = Accelerator(
        cpu=runs_on_cpu(args),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=resolve_mixed_precision(args.mixed_precision, args.use_cpu),
        log_with=report_to or None,
        project_dir=str(output_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
    )
    refuse_sharded_training(accelerator)
    set_seed(args.seed)

    streamed = isinstance(train_dataset, IterableDataset)
    schedule = pretraining_schedule(train_dataset, args, accelerator.num_processes)
    if streamed:
        if stream_report is not None:  # before any record is read (and any DataLoader worker starts)
            stream_report.distribute(accelerator.process_index, accelerator.num_processes)
        # whole shards: each process counts its own records; else every process reads (and counts) them all
        count_reduction = "sum" if shares_whole_shards(train_dataset, accelerator.num_processes) else "max"
        train_dataset = stream_share(train_dataset, accelerator.process_index, accelerator.num_processes)
    dataloader = pretraining_dataloader(train_dataset, args, model.config)
    optimizer = torch.optim.AdamW(
        parameter_groups(model, args.weight_decay), lr=schedule.learning_rate, betas=tuple(args.adam_betas)
    )
    # Stepped once per optimizer step here; Accelerate's scheduler wrapper would step it once per process.
    scheduler = get_cosine_schedule_with_warmup(optimizer, schedule.warmup_steps, schedule.total_steps)
    if streamed:
        # Split by node above, so not prepared (Accelerate would split it again); and without a prepared loader,
        # gradients are synchronised every `gradient_accumulation_steps` batches on every process alike, whichever
        # process ends a pass over its share first.
        model, optimizer = accelerator.prepare(model, optimizer)
    else:
        model, optimizer, dataloader = accelerator.prepare(model, optimizer, dataloader)
    if args.torch_compile:
        # Here rather than through `Accelerator(dynamo_plugin=...)`: Accelerate keeps that setting process-wide, so a
        # second `pretrain` call in the same process would silently keep the first call's choice.
        model = compile_regions(model, backend="inductor")
    progress = resume_progress(args, accelerator, model, optimizer, scheduler)

    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "pretraining_args.json").write_text(json.dumps(asdict(args), indent=2, default=str))
        (output_dir / "pretraining_data.json").write_text(json.dumps(protocol or {}, indent=2))
        truncate_train_log(output_dir / "train_log.jsonl", progress.global_step)  # later steps are logged again
    if report_to:
        accelerator.init_trackers(
            "pretraining", config={"learning_rate": schedule.learning_rate, "total_steps": schedule.total_steps}
        )
    lead_set_sampler = None
    if args.lead_sets:  # cut as the extractor that made the rows cuts records (the one saved with the model)
        extractor = feature_extractor or EcgPmaFeatureExtractor.from_model_config(unwrapped(accelerator, model).config)
        lead_set_sampler = LeadSetSampler(unwrapped(accelerator, model).config, args.lead_sets, extractor)
    stream_counts = None
    if streamed and stream_report is not None and accelerator.num_processes > 1:
        stream_counts = StreamTotals(stream_report, count_reduction)
    losses = train_steps(
        accelerator,
        model,
        optimizer,
        scheduler,
        dataloader,
        progress,
        schedule,
        args,
        report_to,
        lead_set_sampler,
        stream_counts,
    )
    if stream_counts is not None:
        stream_counts.update(accelerator)
        stream_counts.merge_id_files(accelerator)
    elif stream_report is not None:
        stream_report.refresh()  # the DataLoader workers' counts
    if stream_report is not None and accelerator.is_main_process:  # a stream's counts are complete only now
        (output_dir / "pretraining_data.json").write_text(json.dumps(protocol or {}, indent=2))
    save_pretrained_model(accelerator, model, output_dir, feature_extractor, progress, protocol)
    accelerator.end_training()
    return PretrainingResult(output_dir=str(output_dir), global_step=progress.global_step, losses=losses)


def runs_on_cpu(args: PretrainingArguments) -> bool:
    """
    Accelerate's `cpu` for the run, also what the command's `PartialState` takes before the data are read (one state
    per process: the two must agree). Without an accelerator, `cpu=True` lets torchrun / mpirun processes form a
    MULTI_CPU (gloo) world.
    """
    return args.use_cpu or not torch.accelerator.is_available()


SHARDS_PER_PROCESS = 8  # from this many shards per process on, uneven shares are close enough to share whole shards


def shares_whole_shards(stream: IterableDataset, num_processes: int) -> bool:
    """Whether [`stream_share`] gives each process whole shards of `stream` (else every process reads it all)."""
    return (
        num_processes == 1
        or stream.n_shards % num_processes == 0
        or stream.n_shards >= SHARDS_PER_PROCESS * num_processes
    )


def stream_share(stream: IterableDataset, process_index: int, num_processes: int) -> IterableDataset:
    """
    The part of a streamed corpus one of `num_processes` processes trains on: whole shards (source files, chunks of
    exams), so that each process reads only its own, when they share out evenly or nearly (a shard more or less
    than another process is at most one in `SHARDS_PER_PROCESS`: the training loop keeps the processes in step,
    but a smaller share is gone through more often); else every process reads all and keeps one record in
    `num_processes` (`split_dataset_by_node`).
    """
    if num_processes == 1:
        return stream
    if shares_whole_shards(stream, num_processes):
        return stream.shard(num_shards=num_processes, index=process_index)
    return split_dataset_by_node(stream, rank=process_index, world_size=num_processes)


def pretraining_dataloader(
    train_dataset: Dataset | IterableDataset, args: PretrainingArguments, config: EcgPmaConfig
) -> DataLoader:
    """Batches of `signals` only; shuffled (map-style datasets), incomplete last batches dropped."""
    streamed = isinstance(train_dataset, IterableDataset)
    # an `EcgTrainingDataset` (random crops) is a torch dataset already
    dataset = (
        train_dataset.with_format("torch") if isinstance(train_dataset, (Dataset, IterableDataset)) else train_dataset
    )
    return DataLoader(
        dataset,
        batch_size=args.per_device_batch_size,
        shuffle=not streamed,
        drop_last=True,
        collate_fn=EcgDataCollator(config=config, with_labels=False),  # lead sets: drawn in `train_steps`
        num_workers=args.dataloader_num_workers,
        # Its own generator: starting an epoch must not draw from the global random state, which a resumed run
        # restores from the checkpoint (an extra draw there would change dropout from then on).
        generator=torch.Generator().manual_seed(args.seed),
    )


def pretraining_schedule(
    train_dataset: Dataset | IterableDataset, args: PretrainingArguments, num_processes: int
) -> PretrainingSchedule:
    """Optimizer steps, warm-up steps and peak learning rate (MAE rule) from the dataset size and the arguments."""
    effective_batch = args.per_device_batch_size * args.gradient_accumulation_steps * num_processes
    streamed = isinstance(train_dataset, IterableDataset)
    if streamed and args.max_steps is None:
        raise ValueError("A streamed dataset has no length: give `max_steps`.")
    steps_per_epoch = (
        None
        if streamed
        else max(
            len(train_dataset) // (args.per_device_batch_size * num_processes) // args.gradient_accumulation_steps, 1
        )
    )
    if not streamed and len(train_dataset) < args.per_device_batch_size * num_processes:
        raise ValueError(
            f"The dataset has {len(train_dataset)} windows, fewer than one batch of {args.per_device_batch_size} per "
            f"process on {num_processes} process(es)."
        )
    total_steps = args.max_steps or math.ceil(args.num_train_epochs * steps_per_epoch)
    warmup_steps = (
        args.warmup_steps if args.warmup_steps is not None else round(args.warmup_epochs * (steps_per_epoch or 0))
    )
    return PretrainingSchedule(
        total_steps=total_steps,
        warmup_steps=min(warmup_steps, total_steps),
        learning_rate=args.learning_rate or args.base_learning_rate * effective_batch / 256,
    )


def resume_progress(
    args: PretrainingArguments, accelerator: Accelerator, model, optimizer, scheduler
) -> TrainingProgress:
    """A fresh start, or the progress of `args.resume_from_checkpoint` (a folder, or `"latest"`) with the model,
    optimizer, schedule and random state restored from it."""
    if not args.resume_from_checkpoint:
        return TrainingProgress()
    checkpoint = Path(args.resume_from_checkpoint)
    if args.resume_from_checkpoint == "latest":
        checkpoint = resumable_checkpoint(args.checkpoint_dir)  # the newest intact one, with a warning otherwise
    progress = TrainingProgress.from_dict(
        load_training_state(checkpoint, unwrapped(accelerator, model), optimizer, scheduler, accelerator.process_index)
    )
    accelerator.print(f"Resumed from {checkpoint} at step {progress.global_step}.")
    return progress


def train_steps(
    accelerator: Accelerator,
    model,
    optimizer,
    scheduler,
    dataloader,
    progress: TrainingProgress,
    schedule: PretrainingSchedule,
    args: PretrainingArguments,
    report_to: list[str],
    lead_set_sampler: LeadSetSampler | None = None,
    stream_counts: StreamTotals | None = None,
) -> list[dict]:
    """
    Runs optimizer steps from `progress` (updated in place) to `schedule.total_steps`, with a checkpoint every
    `args.save_steps`; returns one `{step, loss, learning_rate, epoch}` record per step, also appended to
    `train_log.jsonl`. `lead_set_sampler` cuts each batch to lead sets drawn by `lead_set_generator`;
    `stream_counts` adds up a stream's counts over the processes after every step (and may stop them all).
    """
    config = unwrapped(accelerator, model).config
    losses: list[dict] = []
    model.train()
    bar = tqdm(
        total=schedule.total_steps,
        initial=progress.global_step,
        # None: tqdm's own choice, off when stderr is not a terminal (a log file gets no bar)
        disable=True if args.disable_tqdm or not accelerator.is_local_main_process else None,
        desc="Pre-training",
    )
    step_loss = torch.zeros((), device=accelerator.device)
    while progress.global_step < schedule.total_steps:
        if hasattr(dataloader, "set_epoch"):
            dataloader.set_epoch(progress.epoch)
        if hasattr(dataloader.dataset, "set_epoch"):
            # Accelerate forwards the epoch to the dataset only on one process: a crop dataset needs it everywhere.
            dataloader.dataset.set_epoch(progress.epoch)
        skip = progress.batches_in_epoch
        batches = accelerator.skip_first_batches(dataloader, skip) if skip else dataloader
        batches_before = progress.micro_step
        for batch in batches:
            if lead_set_sampler is not None:
                generator = lead_set_generator(args.seed, progress.micro_step, accelerator.process_index)
                batch = lead_set_sampler.cut(batch, generator)
            signals = batch["signals"].to(accelerator.device)
            lead_mask = batch["lead_mask"].to(accelerator.device) if batch.get("lead_mask") is not None else None
            noise = mask_noise(
                (signals.shape[0], config.num_leads, config.num_patches),
                args.seed,
                progress.micro_step,
                accelerator.process_index,
            ).to(signals.device)
            with accelerator.accumulate(model):
                loss = model(signals, noise=noise, lead_mask=lead_mask).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            step_loss += loss.detach() / args.gradient_accumulation_steps
            progress.micro_step += 1
            progress.batches_in_epoch += 1
            if not accelerator.sync_gradients:
                continue

            scheduler.step()
            progress.global_step += 1
            mean_loss = accelerator.gather(step_loss).mean().item()
            step_loss.zero_()
            record = {
                "step": progress.global_step,
                "loss": mean_loss,
                "learning_rate": scheduler.get_last_lr()[0],
                "epoch": progress.epoch,
            }
            losses.append(record)
            log_step(accelerator, record, args, schedule.total_steps, report_to, bar)
            if stream_counts is not None:
                stream_counts.update(accelerator)
                stream_counts.check_bad_share(accelerator)
            if args.save_steps and progress.global_step % args.save_steps == 0:
                save_checkpoint(accelerator, model, optimizer, scheduler, progress, args)
            if progress.global_step >= schedule.total_steps:
                break
        else:
            if progress.micro_step == batches_before and not skip:
                # the others would wait for this process forever at the next gradient synchronisation
                raise ValueError(
                    f"Process {accelerator.process_index}: a pass over its data gave no batch of "
                    f"{args.per_device_batch_size} (too few records, or all too short); use a smaller batch size or "
                    "fewer processes."
                )
            progress.epoch += 1
            progress.batches_in_epoch = 0
    bar.close()
    return losses


class StreamTotals:
    """
    A `StreamReport`'s counts added up over the training processes (`reduction` "sum": each process reads its own
    shards; "max": every process reads every record, keeping one crop in `num_processes`, so the furthest has read
    what they all have), set into its protocol entries on every process, with the running totals logged (main
    process) every `report.log_every` records.
    """

    def __init__(self, report: StreamReport, reduction: str):
        self.report, self.reduction = report, reduction
        self.logged = 0  # running totals logged so far (in `log_every` records)

    def update(self, accelerator: Accelerator) -> list[int]:
        """Every process's counts (a collective: all processes call it at the same step); returns the totals."""
        local = torch.tensor(self.report.local_counts(), dtype=torch.int64, device=accelerator.device)
        gathered = accelerator.gather(local[None])  # (processes, corpora x outcomes)
        totals = (gathered.sum(0) if self.reduction == "sum" else gathered.amax(0)).tolist()
        self.report.set_records(totals)
        if accelerator.is_main_process and sum(totals) // self.report.log_every > self.logged:
            self.logged = sum(totals) // self.report.log_every
            logger.warning(f"Streamed so far: {self.report.totals()}.")
        return totals

    def check_bad_share(self, accelerator: Accelerator) -> None:
        """The report's `max_bad_share` on the totals of the last `update`, the same on every process: all stop at
        the same step (each with the error, every process's skipped records listed in the main file), or none."""
        try:
            self.report.check_bad_share()
        except ValueError:
            self.merge_id_files(accelerator)
            raise

    def merge_id_files(self, accelerator: Accelerator) -> None:
        """Every process's ids into the main process's files (a collective, after the last record is read)."""
        gathered = gather_object([self.report.own_id_lines()])
        if accelerator.is_main_process:
            self.report.merge_id_files(gathered)
        accelerator.wait_for_everyone()


def log_step(
    accelerator: Accelerator, record: dict, args: PretrainingArguments, total_steps: int, report_to: list[str], bar
) -> None:
    """One step's record to `train_log.jsonl` (main process), the trackers (every `logging_steps`) and the bar."""
    step = record["step"]
    if accelerator.is_main_process:
        with (Path(args.output_dir) / "train_log.jsonl").open("a") as log:
            log.write(json.dumps(record) + "\n")
    if report_to and (step % args.logging_steps == 0 or step == total_steps):
        accelerator.log({"train/loss": record["loss"], "train/learning_rate": record["learning_rate"]}, step=step)
    bar.update(1)
    bar.set_postfix(loss=f"{record['loss']:.4f}")


def save_pretrained_model(
    accelerator: Accelerator,
    model,
    output_dir: Path,
    feature_extractor: EcgPmaFeatureExtractor | None,
    progress: TrainingProgress,
    protocol: dict | None = None,
) -> None:
    """
    The final model (weights, config, code), its feature extractor and a model card (with the data `protocol`),
    written by the main process.
    """
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final_model = unwrapped(accelerator, model)
        final_model.save_pretrained(output_dir)
        extractor = feature_extractor or EcgPmaFeatureExtractor.from_model_config(final_model.config)
        extractor.save_pretrained(output_dir)
        from ..sharing.modelcard import card_protocol, write_model_card

        training = {"pretraining_steps": progress.global_step, **card_protocol(protocol)}
        write_model_card(output_dir, final_model.config, extractor, training=training)


def unwrapped(accelerator: Accelerator, model) -> EcgPmaForPreTraining:
    """The model without its distributed and compiled wrappers: what is saved and loaded, under its own names."""
    return accelerator.unwrap_model(model, keep_torch_compile=False)


def save_checkpoint(
    accelerator: Accelerator, model, optimizer, scheduler, progress: TrainingProgress, args: PretrainingArguments
):
    directory = args.checkpoint_dir / f"{CHECKPOINT_PREFIX}{progress.global_step}"
    # Compiled blocks name their weights `..._orig_mod....`; a checkpoint keeps the model's own names.
    model_state = {
        name.replace("_orig_mod.", ""): tensor for name, tensor in accelerator.get_state_dict(model).items()
    }
    accelerator.wait_for_everyone()
    save_training_state(
        directory,
        model_state,
        optimizer,
        scheduler,
        asdict(progress),
        accelerator.process_index,
        accelerator.is_main_process,
    )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_manifest(directory)  # last: the checkpoint is whole from here on
        prune_checkpoints(args.checkpoint_dir, args.save_total_limit)
