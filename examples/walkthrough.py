"""A walk through emoselect's Python API on the shared OASIS pictures and VGG-16 weights.

Run from the repository root (a small seeded sample of the pictures keeps it to about a minute on a CPU)::

    .venv/bin/python examples/walkthrough.py --limit 60

Each step is one public function; the command line (`emoselect run`) does the same on a run folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import emoselect as es

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pictures", default=str(SHARED / "data" / "oasis"), help="an OASIS folder")
    parser.add_argument("--weights", default=str(SHARED / "weights" / "vgg16_imagenet_features.pth"))
    parser.add_argument("--limit", type=int, default=60, help="a stratified sample of this many pictures")
    args = parser.parse_args(argv)

    # 1. Stimuli: the ratings file read, categories from valence (the paper's 4.3 / 6.0 on 1-9), a seeded split.
    stimuli = es.build_stimuli({"oasis": args.pictures}, limit=args.limit, progress=False)
    print(stimuli.table.groupby(["category", "split"]).size().unstack(fill_value=0))

    # 2. The network and its probe sites (every ReLU with a feature map: conv1_1 ... conv5_3).
    network = es.load_network("vgg16", args.weights)
    print(f"{len(network.sites)} probe sites, readout at {network.readout_site} ({network.readout_dim}-d)")

    # 3. Responses: the spatial mean of every unit for every picture, cached by picture content.
    responses = es.extract(stimuli, network, progress=False)
    conv5_3 = responses["oasis"].sites["conv5_3"]
    print(f"conv5_3 responses: {conv5_3.shape[0]} pictures x {conv5_3.shape[1]} units")

    # 4. Selectivity: tuning values, tuning quality against its shuffled-label null, and overlap of the units
    #    preferring each category in two halves of the pictures against its exact chance distribution.
    options = es.SelectivityOptions(null_permutations=199)
    result = es.analyse(stimuli, responses, list(network.sites), options, progress=False)
    deepest = result.overlap[result.overlap["layer"] == "conv5_3"]
    print(deepest[["category", "n_selective", "jaccard", "jaccard_null_mean", "p_value"]].to_string(index=False))
    print(result.trends.to_string(index=False))


if __name__ == "__main__":
    main()
