"""The main job's fine-tune under PyTorch DDP and under Thaw, on the same machine, one after the other.

Usage (optional, never part of CI; needs torch 2.13 CPU, torchvision, safetensors and PyYAML):
    /opt/thaw-ref/bin/python scripts/compare-pytorch-ddp.py [--config configs/demo.yaml] [--target 0.85]

Both sides run the configuration's recipe: torchvision's ImageNet MobileNetV2 (the weights
scripts/fetch-backbone converted), the first data.train_limit Fashion-MNIST training images and the
first data.test_limit test images resized to data.image_size (bilinear), repeated to 3 channels and
ImageNet-normalized; the same global batch split over 2 ranks; AdamW with the same weight decay; the
fixed unfreezing table with discriminative rates (each group below the head divided by the factor);
cosine schedule with warmup; frozen groups' batch norm in eval mode. PyTorch runs under DDP with the gloo
backend, one intra-op thread per rank (Thaw runs one OpenBLAS thread per rank on 2 cores), and must
re-wrap the model in DDP whenever the trainable set changes. Thaw runs launch/local.

It prints, for both: samples per second per epoch (training only), test accuracy per epoch, and the
training time (for Thaw including the feature cache's fills) to the first epoch whose test accuracy
reaches --target.
"""
import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.library
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F
import yaml

# The PyPI torchvision wheel's compiled ops need CUDA libraries that a CPU-only torch lacks; its import
# then fails registering fake kernels for them. MobileNetV2 needs none of those ops.
_register_fake = torch.library.register_fake


def _tolerant_register_fake(op, *args, **kwargs):
    if isinstance(op, str) and op.startswith("torchvision::"):
        return lambda function: function
    return _register_fake(op, *args, **kwargs)


torch.library.register_fake = _tolerant_register_fake
from torchvision.models import mobilenet_v2  # noqa: E402

torch.library.register_fake = _register_fake
from safetensors.torch import load_file  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION = "/usr/share/datasets/fashion-mnist"
# Thaw's MobileNetV2 groups as torchvision feature indices (Sources/ThawNN/Architectures/MobileNetV2.swift).
GROUPS = {"stem": [0], "block1": [1], "block2": [2, 3], "block3": [4, 5, 6], "block4": [7, 8, 9, 10],
          "block5": [11, 12, 13], "block6": [14, 15, 16], "block7": [17, 18]}
ORDER = list(GROUPS) + ["head"]
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_split(prefix, limit, size):
    images = read_idx(f"{FASHION}/{prefix}-images-idx3-ubyte.gz")[:limit]
    labels = read_idx(f"{FASHION}/{prefix}-labels-idx1-ubyte.gz")[:limit]
    x = torch.from_numpy(images.astype(np.float32) / 255).unsqueeze(1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    return (x - MEAN) / STD, torch.from_numpy(labels.astype(np.int64))


def group_modules(model, group):
    return [model.classifier] if group == "head" else [model.features[i] for i in GROUPS[group]]


def plan_for(table, epoch):
    keys = sorted(int(k) for k in table if int(k) <= epoch)
    return table[str(keys[-1])] if keys else ["head"]


def worker(rank, world, config, weights, result_path):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", "29533"
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(config["run"]["seed"])
    data, training, optimizer_settings = config["data"], config["training"], config["optimizer"]
    x, y = load_split("train", data["train_limit"], data["image_size"])
    test_x, test_y = load_split("t10k", data["test_limit"], data["image_size"])

    model = mobilenet_v2(num_classes=1000)
    state = load_file(weights)
    model.load_state_dict(state)
    model.classifier[0].p = config["model"].get("head_dropout", 0.2)
    model.classifier[1] = nn.Linear(1280, config["model"]["classes"])
    # Every rank starts from rank 0's head.
    for p in model.classifier.parameters():
        dist.broadcast(p.data, 0)

    batch = training["batch_size"] // world
    epochs = training["epochs"]
    steps_per_epoch = math.ceil(len(x) / training["batch_size"])
    total_steps = steps_per_epoch * epochs
    warmup = config["schedule"].get("warmup_steps", 0)
    factor = config["unfreezing"].get("discriminative_factor", 2.6)
    table = config["unfreezing"]["table"]
    base_rate = optimizer_settings["learning_rate"]
    records, step, trainable, wrapped, optimizer = [], 0, None, None, None
    generator = torch.Generator().manual_seed(config["run"]["seed"])
    for epoch in range(epochs):
        groups = plan_for(table, epoch)
        if groups != trainable:
            # The trainable set changed: set requires_grad, re-wrap in DDP, and rebuild the optimizer
            # (keeping the Adam state of groups that were already training).
            old_state = optimizer.state if optimizer else {}
            for group in ORDER:
                for module in group_modules(model, group):
                    for p in module.parameters():
                        p.requires_grad_(group in groups)
            wrapped = nn.parallel.DistributedDataParallel(model)
            rates, rate, param_groups = {}, base_rate, []
            for group in reversed(groups):
                rates[group] = rate
                rate /= factor
            for group in groups:
                params = [p for m in group_modules(model, group) for p in m.parameters()]
                param_groups.append({"params": params, "lr": rates[group], "base": rates[group]})
            optimizer = torch.optim.AdamW(param_groups, lr=base_rate, weight_decay=optimizer_settings.get("weight_decay", 0))
            for p, s in old_state.items():
                optimizer.state[p] = s
            trainable = groups
        for group in ORDER:
            for module in group_modules(model, group):
                module.train(group in trainable)
        order = torch.randperm(len(x), generator=generator)
        started, seen = time.perf_counter(), 0
        for s in range(steps_per_epoch):
            indices = order[s * training["batch_size"]: (s + 1) * training["batch_size"]]
            mine = indices[rank * batch: (rank + 1) * batch]
            if step < warmup:
                multiplier = min(1.0, (step + 1) / warmup)
            else:
                progress = min(1.0, (step - warmup) / max(total_steps - warmup, 1))
                multiplier = (1 + math.cos(math.pi * progress)) / 2
            for g in optimizer.param_groups:
                g["lr"] = g["base"] * multiplier
            loss = F.cross_entropy(wrapped(x[mine]), y[mine], reduction="sum") / len(indices)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for p in model.parameters():   # DDP averages over ranks; the loss is already a global mean
                if p.grad is not None:
                    p.grad.mul_(world)
            optimizer.step()
            step += 1
            seen += len(mine)
        seconds = time.perf_counter() - started
        model.eval()
        with torch.no_grad():
            shard = torch.arange(rank, len(test_x), world)
            correct = torch.tensor([(model(test_x[shard]).argmax(1) == test_y[shard]).sum().item(), seen], dtype=torch.float64)
        dist.all_reduce(correct)
        seconds_tensor = torch.tensor([seconds], dtype=torch.float64)
        dist.all_reduce(seconds_tensor, op=dist.ReduceOp.MAX)
        record = {"epoch": epoch + 1, "groups": groups, "seconds": seconds_tensor.item(),
                  "samples_per_second": correct[1].item() / seconds_tensor.item(), "test_accuracy": correct[0].item() / len(test_x)}
        records.append(record)
        if rank == 0:
            print(f"pytorch ddp: epoch {epoch + 1} [{', '.join(groups)}] {record['seconds']:.1f} s, "
                  f"{record['samples_per_second']:.0f} samples/s, test {record['test_accuracy'] * 100:.2f}%", flush=True)
    if rank == 0:
        with open(result_path, "w") as f:
            json.dump(records, f)
    dist.destroy_process_group()


def run_thaw(config_path, weights):
    subprocess.run([os.path.join(ROOT, "launch/local"), "2", config_path, "--set", f"model.pretrained={weights}",
                    "--set", "run.output=runs/compare-thaw", "--set", "checkpoint.every_epochs=0"], cwd=ROOT, check=True)
    records = []
    with open(os.path.join(ROOT, "runs/compare-thaw/metrics.jsonl")) as f:
        for line in f:
            item = json.loads(line)
            if item.get("kind") == "epoch":
                # Time to target counts the frozen-prefix cache's fills too (they are outside "seconds").
                records.append({"epoch": item["epoch"] + 1, "groups": item["trainable_groups"],
                                "seconds": item["seconds"] + (item.get("cache_fill_seconds") or 0),
                                "samples_per_second": item["samples_per_second"], "test_accuracy": item["test"]["accuracy"]})
    return records


def time_to(records, target):
    elapsed = 0.0
    for record in records:
        elapsed += record["seconds"]
        if record["test_accuracy"] >= target:
            return elapsed, record["epoch"]
    return None, None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--weights", default=os.path.expanduser("~/.cache/thaw/backbones/mobilenet_v2.safetensors"))
    parser.add_argument("--target", type=float, default=0.85, help="test accuracy to time")
    arguments = parser.parse_args()
    with open(os.path.join(ROOT, arguments.config)) as f:
        config = yaml.safe_load(f)
    if config["model"]["architecture"] != "mobilenet_v2" or config["unfreezing"].get("policy") != "fixed":
        sys.exit("compare-pytorch-ddp: the recipe must be mobilenet_v2 with a fixed unfreezing table")

    thaw = run_thaw(arguments.config, arguments.weights)
    result_path = os.path.join(ROOT, "runs/compare-pytorch.json")
    mp.spawn(worker, args=(2, config, arguments.weights, result_path), nprocs=2, join=True)
    with open(result_path) as f:
        pytorch = json.load(f)

    print(f"\n{'epoch':>5}  {'thaw samples/s':>14}  {'ddp samples/s':>13}  {'ratio':>6}  {'thaw test':>9}  {'ddp test':>8}")
    for a, b in zip(thaw, pytorch):
        print(f"{a['epoch']:>5}  {a['samples_per_second']:>14.0f}  {b['samples_per_second']:>13.0f}  "
              f"{a['samples_per_second'] / b['samples_per_second']:>6.2f}  {a['test_accuracy'] * 100:>8.2f}%  {b['test_accuracy'] * 100:>7.2f}%")
    total = lambda records: len(records) * int(config["data"]["train_limit"]) / sum(r["seconds"] for r in records)
    print(f"whole run: Thaw {total(thaw):.0f} samples/s, PyTorch DDP {total(pytorch):.0f} samples/s, "
          f"ratio {total(thaw) / total(pytorch):.2f} (goal >= 1)")
    (thaw_time, thaw_epoch), (ddp_time, ddp_epoch) = time_to(thaw, arguments.target), time_to(pytorch, arguments.target)
    if thaw_time is None or ddp_time is None:
        print(f"time to {arguments.target * 100:.0f}% test accuracy: Thaw {thaw_time}, PyTorch {ddp_time} (not reached by one side)")
    else:
        print(f"time to {arguments.target * 100:.0f}% test accuracy: Thaw {thaw_time:.1f} s (epoch {thaw_epoch}), "
              f"PyTorch DDP {ddp_time:.1f} s (epoch {ddp_epoch}), ratio {thaw_time / ddp_time:.2f} (goal <= 0.5)")


if __name__ == "__main__":
    main()
