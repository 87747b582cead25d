"""Speed of `extract` against a bare torchvision forward pass of the same batches, in the same run.

    python benchmarks/extract.py [--images 64] [--batch-size 16] [--device auto] [--model vgg16]
                                 [--precision fp32]

The bare pass gets the pictures already decoded and normalised in memory and runs the model's own
forward with no hooks (VGG-16 with the shared weights: ``features`` -> ``avgpool`` -> flatten, where
extraction stops; any other ``--model``, with random weights: the whole forward pass), in fp32 and
PyTorch's default memory layout (the plain fp32 forward) and, for reference, in the channels-last
layout that emoselect uses; `extract` (in ``--precision``: fp32, or bf16/fp16 autocast) reads the
files, decodes, preprocesses, probes every site, computes image statistics and writes the cache. The
ratio is extract images/s divided by the plain forward's (1.0 = no overhead). Needs ../shared (or
EMOSELECT_SHARED).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

from benchlib import SHARED, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default="vgg16", help="vgg16 (shared weights) or any --model, random weights")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="of `extract`")
    parser.add_argument("--repeats", type=int, default=2, help="alternate the two ways this many times; best of each")
    parser.add_argument("--json", help="also write the results to this file (benchmarks/all.py)")
    args = parser.parse_args()
    if not (SHARED / "weights" / "vgg16_imagenet_features.pth").is_file():
        sys.exit(f"{SHARED} has no shared weights: set EMOSELECT_SHARED")

    from emoselect.engine.probe import load_network
    from emoselect.engine.responses import extract, pick_device
    from emoselect.engine.tensors import normalise, to_tensor
    from emoselect.pictures.images import load_rgb
    from emoselect.pictures.stimuli import build_stimuli

    device = pick_device(args.device)
    shared_vgg = args.model == "vgg16"
    weights = str(SHARED / "weights" / "vgg16_imagenet_features.pth") if shared_vgg else "random"
    network = load_network(args.model, weights).at_precision(args.precision).to(device)
    stimuli = build_stimuli({"oasis": SHARED / "data" / "oasis"}, limit=args.images, progress=False)
    pictures = normalise(
        torch.stack([to_tensor(load_rgb(p)[0], network.prep) for p in stimuli.table["path"]]), network.prep
    )
    model = network.model

    def bare(layout=torch.contiguous_format) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, len(pictures), args.batch_size):
                batch = pictures[i : i + args.batch_size].to(device).contiguous(memory_format=layout)
                if shared_vgg:
                    torch.flatten(model.avgpool(model.features(batch)), 1).cpu()
                else:
                    model(batch).cpu()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return len(pictures) / (time.perf_counter() - start)

    def ours() -> float:
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            extract(stimuli, network, cache_dir=cache, batch_size=args.batch_size, device=str(device), progress=False)
            return len(pictures) / (time.perf_counter() - start)

    bare()  # warm-up
    results = {"bare forward": [], "bare channels-last": [], "extract": []}
    for _ in range(args.repeats):
        results["bare forward"].append(bare())
        results["bare channels-last"].append(bare(torch.channels_last))
        results["extract"].append(ours())
    best = {k: max(v) for k, v in results.items()}
    print(
        f"device: {device} ({torch.cuda.get_device_name(0) if device.type == 'cuda' else f'{os.cpu_count()} CPU cores'}), "
        f"torch {torch.__version__}, {args.model}, `extract` in {args.precision}, {len(pictures)} OASIS images, "
        f"batch {args.batch_size}"
    )
    for name, value in best.items():
        print(f"{name:>18}: {value:7.2f} images/s   (runs: {', '.join(f'{v:.2f}' for v in results[name])})")
    print(f"ratio extract / bare forward: {best['extract'] / best['bare forward']:.3f}")
    write_json(args.json, {"images": len(pictures), "model": args.model, "precision": args.precision,
                           "images_per_s": best, "runs": results}, device)  # fmt: skip


if __name__ == "__main__":
    main()
