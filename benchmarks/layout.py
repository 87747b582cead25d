"""A bare VGG-16 feature pass in PyTorch's default layout, channels-last, and TorchScript-frozen.

    python benchmarks/layout.py [--images 16] [--repeats 3]

What the CPU itself offers before emoselect does anything: random weights and random pictures (the
speed does not depend on them), best of ``--repeats`` passes each, and the largest relative
difference of each way's output from the default layout's.
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision


def rate(model, x: torch.Tensor, repeats: int) -> float:
    """Best pictures/s of ``repeats`` passes (after one warm-up)."""
    best = 0.0
    with torch.inference_mode():
        model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            best = max(best, len(x) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = torchvision.models.vgg16().features.eval()
    x = torch.randn(args.images, 3, 224, 224)
    last = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
        reference = model(x)
        differences = {
            "channels-last input": model(last),
            "TorchScript frozen": frozen(x),
        }
    plain = rate(model, x, args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.images} pictures")
    print(f"  default layout:      {plain:6.2f} pictures/s")
    for name, (ways, batch) in {"channels-last input": (model, last), "TorchScript frozen": (frozen, x)}.items():
        value = rate(ways, batch, args.repeats)
        worst = float((differences[name] - reference).abs().max() / reference.abs().max())
        print(
            f"  {name + ':':<20} {value:6.2f} pictures/s ({value / plain:.2f}x; largest relative difference {worst:.1e})"
        )


if __name__ == "__main__":
    main()
