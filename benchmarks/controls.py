"""Extraction of K random-init controls: one shared picture decoding against one pass per control.

    python benchmarks/controls.py [--images 240] [--controls 2] [--device auto]

Both ways fill an empty response cache for K seeded random-init VGG-16s (VGG preprocessing) on the
first ``--images`` OASIS pictures; the script checks that they record the same responses and prints
the time of each and their ratio. Needs ../shared (or EMOSELECT_SHARED).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOSELECT_SHARED", REPO.parent / "shared"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--controls", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if not (SHARED / "data" / "oasis").is_dir():
        sys.exit(f"{SHARED} has no OASIS pictures: set EMOSELECT_SHARED")

    from emoselect.engine.probe import load_network
    from emoselect.engine.responses import extract, prefetch_responses
    from emoselect.pictures.stimuli import build_stimuli

    stimuli = build_stimuli({"oasis": SHARED / "data" / "oasis"}, limit=args.images, progress=False)
    networks = [load_network("vgg16", "random", seed=seed) for seed in range(args.controls)]
    with tempfile.TemporaryDirectory() as separate, tempfile.TemporaryDirectory() as shared:
        start = time.perf_counter()
        alone = [
            extract(stimuli, n, cache_dir=separate, batch_size=args.batch_size, device=args.device, progress=False)
            for n in networks
        ]
        seconds_separate = time.perf_counter() - start
        start = time.perf_counter()
        prefetch_responses(stimuli, networks, shared, batch_size=args.batch_size, device=args.device, progress=False)
        seconds_shared = time.perf_counter() - start
        worst = 0.0
        for network, reference in zip(networks, alone):
            together = extract(
                stimuli, network, cache_dir=shared, batch_size=args.batch_size, device=args.device, progress=False
            )["oasis"]
            for site in network.sites:
                a, b = together.sites[site], reference["oasis"].sites[site]
                worst = max(worst, float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)))
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPU cores, {len(stimuli.table)} OASIS pictures, "
        f"{args.controls} random-init VGG-16 controls"
    )
    print(f"  one pass per control: {seconds_separate:7.1f} s")
    print(f"  shared decoding:      {seconds_shared:7.1f} s")
    print(f"  ratio: {seconds_separate / seconds_shared:.2f}x   largest relative difference: {worst:.1e}")


if __name__ == "__main__":
    main()
