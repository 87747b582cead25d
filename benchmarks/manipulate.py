"""Conditions/s of the manipulation engine against the plain way, on the same conditions, same run.

    python benchmarks/manipulate.py [--images 8] [--device auto] [--model vgg16]

Two sweeps on VGG-16 (shared ImageNet weights, OASIS pictures, three random heads on pool5), or on
any other ``--model`` with random weights (e.g. ``vit_b_16``: the replay engine):
  * all layers (probe sites), ``--conditions`` gains per layer;
  * the last three layers (VGG-16: conv5), ``--deep-conditions`` gains per layer;
each condition scales a random quarter of the layer's channels by a beta from 0..5 (step 0.1), and
as in the experiments each unit set is used with two betas.
The plain way runs, per condition, a full forward pass with a hook that scales the layer's output;
the engine runs the network once to each layer and then only the rest of the network per
condition. Both return head margins; the script checks they agree to 1e-5 relative and prints
conditions/s (condition x picture passes per second), the ratio, and each way's peak memory (peak
resident set size of a fresh process; on CUDA also the peak allocated GPU memory).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

from benchlib import SHARED, peak_rss_mb, write_json


def build(model: str):
    """VGG-16 with the shared ImageNet weights, or any other model with random weights."""
    from emoselect.engine.probe import load_network

    weights = str(SHARED / "weights" / "vgg16_imagenet_features.pth") if model == "vgg16" else "random"
    return load_network(model, weights)


def setup(images: int, layers: list[str], conditions: int, device: str, model: str):
    from emoselect.analysis.records import Head
    from emoselect.engine.manipulation import load_pictures
    from emoselect.engine.responses import pick_device
    from emoselect.pictures.stimuli import build_stimuli

    network = build(model).to(pick_device(device))
    stimuli = build_stimuli({"oasis": SHARED / "data" / "oasis"}, limit=images, progress=False)
    pictures = load_pictures(list(stimuli.table["path"]), network)
    rng = np.random.default_rng(0)
    heads = [
        Head(
            "oasis",
            e,
            (rng.normal(size=(2, network.readout_dim)) / 160).astype(np.float32),
            rng.normal(size=2).astype(np.float32),
            1,
        )
        for e in ("pleasant", "neutral", "unpleasant")
    ]
    plan = {}
    grid = np.round(np.arange(0, 5.01, 0.1), 1)
    for layer in layers:  # like the paper: unit sets (a random quarter of the channels) x betas of 0..5
        n = network.units[layer]
        sets = [rng.choice(n, n // 4, replace=False) for _ in range(max(1, conditions // 2))]
        gains = np.ones((conditions, n), np.float32)
        for c in range(conditions):
            gains[c, sets[c % len(sets)]] = rng.choice(grid[grid != 1.0])
        plan[layer] = gains
    return network, pictures, plan, heads


def child(method: str, images: int, layers: list[str], conditions: int, device: str, out: str, model: str) -> None:
    """Run one way in this (fresh) process; save margins and timing."""
    from emoselect.engine.manipulation import Execution, evaluate, evaluate_naive

    network, pictures, plan, heads = setup(images, layers, conditions, device, model)
    cuda = network.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    warm = {layers[-1]: plan[layers[-1]][:1]}
    (evaluate if method == "engine" else evaluate_naive)(network, pictures[:1], warm, heads)
    start = time.perf_counter()
    if method == "engine":
        margins = evaluate(network, pictures, plan, heads, Execution(chunk_images=len(pictures), progress=False))
    else:
        margins = evaluate_naive(network, pictures, plan, heads, batch=len(pictures))
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    np.savez(out, **margins)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mb": peak_rss_mb(),
                "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
                "device": str(network.device),
            }
        )
    )


def sweep(name: str, images: int, layers: list[str], conditions: int, device: str, model: str) -> dict:
    results = {}
    for method in ("naive", "engine"):
        out = f"/tmp/emoselect-bench-{os.getpid()}-{method}.npz"
        command = [
            sys.executable,
            __file__,
            "--child",
            method,
            "--images",
            str(images),
            "--conditions",
            str(conditions),
            "--device",
            device,
            "--out",
            out,
            "--model",
            model,
            "--layers",
            *layers,
        ]
        text = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        results[method] = json.loads(text)
        results[method]["margins"] = dict(np.load(out))
        os.unlink(out)
    worst = max(
        np.abs(results["engine"]["margins"][k] - results["naive"]["margins"][k]).max()
        / np.abs(results["naive"]["margins"][k]).max()
        for k in layers
    )
    passes = conditions * len(layers) * images
    print(
        f"\n{name}: {len(layers)} layers x {conditions} conditions x {images} pictures = {passes} condition-picture passes"
        f" on {results['engine']['device']}"
    )
    for method in ("naive", "engine"):
        r = results[method]
        gpu = f", peak GPU {r['peak_gpu_mb']:.0f} MB" if r["peak_gpu_mb"] else ""
        print(
            f"  {method:>6}: {r['seconds']:8.1f} s  {passes / r['seconds']:8.2f} conditions/s  "
            f"peak RSS {r['peak_rss_mb']:.0f} MB{gpu}"
        )
    print(
        f"  ratio engine / naive: {results['naive']['seconds'] / results['engine']['seconds']:.2f}x   "
        f"largest relative difference of the margins: {worst:.2e}"
    )
    return {
        "layers": len(layers),
        "conditions": conditions,
        "images": images,
        "passes": passes,
        "largest_relative_difference": float(worst),
        **{f"{method}_{key}": results[method][key] for method in ("naive", "engine")
           for key in ("seconds", "peak_rss_mb", "peak_gpu_mb")},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--conditions", type=int, default=4, help="conditions per layer in the all-layer sweep")
    parser.add_argument("--deep-conditions", type=int, default=16, help="conditions per layer in the conv5 sweep")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default="vgg16", help="vgg16 (shared weights) or any --model, random weights")
    parser.add_argument("--child", choices=["naive", "engine"], help=argparse.SUPPRESS)
    parser.add_argument("--layers", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results to this file (benchmarks/all.py)")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.images, args.layers, args.conditions, args.device, args.out, args.model)
        return
    if not (SHARED / "weights" / "vgg16_imagenet_features.pth").is_file():
        sys.exit(f"{SHARED} has no shared weights: set EMOSELECT_SHARED")
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPU cores, {args.model}"
        + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "")
    )
    sites = list(build(args.model).sites)
    results = {
        "all layers": sweep("all layers", args.images, sites, args.conditions, args.device, args.model),
        "last three layers": sweep(
            "last three layers", args.images, sites[-3:], args.deep_conditions, args.device, args.model
        ),
    }
    from emoselect.engine.responses import pick_device

    write_json(args.json, {"model": args.model, **results}, pick_device(args.device))


if __name__ == "__main__":
    main()
