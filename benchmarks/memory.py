"""Peak memory of extraction against the number of pictures: it should not grow with them.

    python benchmarks/memory.py [--images 90 900] [--model vgg16] [--device auto]

Each size runs in a fresh process: ``extract`` of that many OASIS pictures (VGG-16 with the shared
weights, or any ``--model`` with random weights) into an empty cache and a run folder, recording
every probe site, as ``emoselect extract`` does;
the process's peak resident set size (and on CUDA the peak allocated GPU memory) is printed per
size, with the ratio of the largest to the smallest. Responses go to memory-mapped files, pictures
are decoded a batch at a time, so the ratio should stay near 1. Needs ../shared (or EMOSELECT_SHARED).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

import torch

from benchlib import SHARED, peak_rss_mb, write_json


def child(images: int, model: str, device: str, batch_size: int) -> None:
    """Extract ``images`` pictures in this (fresh) process; print seconds and peak memory as JSON."""
    from emoselect.engine.probe import load_network
    from emoselect.engine.responses import extract, pick_device
    from emoselect.pictures.stimuli import build_stimuli

    torch_device = pick_device(device)
    weights = str(SHARED / "weights" / "vgg16_imagenet_features.pth") if model == "vgg16" else "random"
    network = load_network(model, weights).to(torch_device)
    stimuli = build_stimuli({"oasis": SHARED / "data" / "oasis"}, limit=images, progress=False)
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as run:
        start = time.perf_counter()
        extract(stimuli, network, run, cache, batch_size, str(torch_device), progress=False)  # as `emoselect extract`
        seconds = time.perf_counter() - start
    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch_device.type == "cuda" else None
    print(
        json.dumps({"images": len(stimuli.table), "seconds": seconds, "peak_rss_mb": peak_rss_mb(), "peak_gpu_mb": gpu})
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, nargs="+", default=[90, 900])
    parser.add_argument("--model", default="vgg16", help="vgg16 (shared weights) or any --model, random weights")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results to this file (benchmarks/all.py)")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.model, args.device, args.batch_size)
        return
    if not (SHARED / "weights" / "vgg16_imagenet_features.pth").is_file():
        sys.exit(f"{SHARED} has no shared weights: set EMOSELECT_SHARED")
    sizes = {}
    for images in args.images:
        command = [sys.executable, __file__, "--child", str(images), "--model", args.model, "--device", args.device,
                   "--batch-size", str(args.batch_size)]  # fmt: skip
        lines = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()
        sizes[images] = json.loads(lines[-1])
        r = sizes[images]
        gpu = f", peak GPU {r['peak_gpu_mb']:.0f} MB" if r["peak_gpu_mb"] else ""
        print(
            f"{r['images']:5d} pictures: peak RSS {r['peak_rss_mb']:7.0f} MB{gpu}  ({r['images'] / r['seconds']:.2f} images/s)"
        )
    peaks = [r["peak_rss_mb"] for r in sizes.values()]
    print(f"ratio of the peak RSS, most to fewest pictures: {peaks[-1] / peaks[0]:.2f}")
    from emoselect.engine.responses import pick_device

    write_json(args.json, {"model": args.model, "sizes": sizes}, pick_device(args.device))


if __name__ == "__main__":
    main()
