"""
LoRA against full finetuning of the classifier (PMA gate, MLP head): trainable parameters, optimizer state, seconds
per training step (forward, backward, AdamW step) and one step's peak memory, for both measured in one run from the
same weights, plus LoRA under reentrant gradient checkpointing (what `finetune --mode lora` runs with
`activation_checkpointing`). Prints one JSON line; each measurement also goes to stderr as it is made.

Timings are interleaved rounds (median of `--repeats`) as in `speed.py`, whose timing and memory helpers this reuses:
`peak_memory_mb` is one step's resident-memory growth on the CPU (the allocator's peak on a GPU), measured after a
warm-up step, so it holds activations and gradients (noisy on a shared machine); `saved_activations_mb` is the exact
size of what autograd keeps for the backward pass; the optimizer's state is reported apart.

    python benchmarks/peft_lora.py                                 # ViT-S, batch 16 (the paper's finetuning batch)
    python benchmarks/peft_lora.py --preset vit-b-paper --rank 16
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from functools import partial
from pathlib import Path

import torch

from ecg_pma import EcgPmaConfig, EcgPmaForSequenceClassification
from ecg_pma.training.lora import add_lora


sys.path.insert(0, str(Path(__file__).parent))
from common import machine_info  # noqa: E402
from speed import interleaved_timings  # noqa: E402


def training_step(model, optimizer, signals, labels) -> None:
    model(signals=signals, labels=labels).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def saved_activations_mb(model, signals, labels) -> float:
    """
    What one forward keeps for the backward pass: the distinct storages autograd saves, parameters excluded. Exact
    and noise-free, unlike resident memory; under checkpointing only the blocks' inputs are kept (the rest is
    recomputed in the backward pass, outside this count).
    """
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters and storage.device.type != "meta":
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(signals=signals, labels=labels).loss
    loss.backward()
    model.zero_grad(set_to_none=True)
    return round(sum(saved.values()) / 2**20, 1)


def optimizer_state_mb(optimizer: torch.optim.Optimizer) -> float:
    tensors = [value for state in optimizer.state.values() for value in state.values() if torch.is_tensor(value)]
    return round(sum(t.numel() * t.element_size() for t in tensors) / 2**20, 2)


def variants(config: EcgPmaConfig, rank: int, device: torch.device) -> dict[str, torch.nn.Module]:
    """The same initial classifier, trained in full, with LoRA, and with LoRA under reentrant checkpointing."""
    full = EcgPmaForSequenceClassification(config).to(device).train()
    lora = add_lora(copy.deepcopy(full), rank=rank).train()
    checkpointed = add_lora(copy.deepcopy(full), rank=rank).train()
    checkpointed.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    return {"full": full, "lora": lora, "lora_checkpointed": checkpointed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="vit-s-paper")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--num-labels", type=int, default=71, help="71: all PTB-XL statements")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    torch.manual_seed(0)
    config = EcgPmaConfig.from_preset(
        args.preset, num_labels=args.num_labels, aggregation="pma", problem_type="multi_label_classification"
    )
    signals = torch.randn(args.batch, config.num_leads, config.signal_length, device=device)
    labels = torch.randint(0, 2, (args.batch, config.num_labels), device=device).float()
    models = variants(config, args.rank, device)
    optimizers = {
        name: torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        for name, model in models.items()
    }
    steps = {name: partial(training_step, models[name], optimizers[name], signals, labels) for name in models}
    timings = interleaved_timings(steps, args.repeats, device)

    results = []
    for name, model in models.items():
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        measurement = {
            "variant": name,
            "trainable_parameters": trainable,
            "total_parameters": sum(p.numel() for p in model.parameters()),
            "optimizer_state_mb": optimizer_state_mb(optimizers[name]),
            "step_s": round(timings[name]["seconds"], 4),
            "ecgs_per_s": round(args.batch / timings[name]["seconds"], 2),
            "peak_memory_mb": timings[name]["peak_memory_mb"],
            "saved_activations_mb": saved_activations_mb(model, signals, labels),
        }
        results.append(measurement)
        print(json.dumps(measurement), file=sys.stderr, flush=True)
    by_name = {r["variant"]: r for r in results}
    full, lora = by_name["full"], by_name["lora"]
    ratios = {
        "lora_trainable_fraction": round(lora["trainable_parameters"] / full["trainable_parameters"], 4),
        "lora_speedup_vs_full": round(full["step_s"] / lora["step_s"], 2),
        "lora_peak_memory_vs_full": round(lora["peak_memory_mb"] / max(full["peak_memory_mb"], 0.1), 2),
        "lora_saved_activations_vs_full": round(lora["saved_activations_mb"] / full["saved_activations_mb"], 2),
        "checkpointed_peak_memory_vs_lora": round(
            by_name["lora_checkpointed"]["peak_memory_mb"] / max(lora["peak_memory_mb"], 0.1), 2
        ),
        "checkpointed_saved_activations_vs_lora": round(
            by_name["lora_checkpointed"]["saved_activations_mb"] / lora["saved_activations_mb"], 2
        ),
    }
    settings = {"preset": args.preset, "batch": args.batch, "rank": args.rank, "num_labels": args.num_labels}
    print(json.dumps({"benchmark": "peft_lora", **machine_info(), **settings, "results": results, **ratios}))


if __name__ == "__main__":
    main()
