"""Time of the whole selectivity stage on a synthetic run folder of paper size.

    python benchmarks/selectivity.py [--images 1200] [--permutations 1000]

Builds a run folder with 2 datasets x ``--images`` pictures and VGG-16's 13 layers (4,224 units;
planted selective units plus noise), then times ``selectivity_stage`` (tables and figures written)
with the defaults (999 label shuffles for the overlap, tuning-quality and network-level nulls), and again with the optional per-unit permutation test, valence tuning and the
confound check. Needs no network and no data.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from benchlib import write_json

UNITS = {
    "conv1_1": 64,
    "conv1_2": 64,
    "conv2_1": 128,
    "conv2_2": 128,
    "conv3_1": 256,
    "conv3_2": 256,
    "conv3_3": 256,
    "conv4_1": 512,
    "conv4_2": 512,
    "conv4_3": 512,
    "conv5_1": 512,
    "conv5_2": 512,
    "conv5_3": 512,
}
CATEGORIES = ("pleasant", "neutral", "unpleasant")


def make_run(folder: Path, images: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for dataset in ("a", "b"):
        categories = rng.choice(CATEGORIES, images)
        valence = np.select([categories == "pleasant", categories == "neutral"], [7.0, 5.0], 2.5) + rng.normal(
            0, 0.5, images
        )
        split = rng.choice(["train", "val", "test"], images, p=[0.5, 0.25, 0.25])
        rows.append(
            pd.DataFrame(
                {
                    "dataset": dataset,
                    "image_id": [f"{dataset}{i}" for i in range(images)],
                    "path": "",
                    "valence": valence,
                    "arousal": rng.uniform(1, 9, images),
                    "category": categories,
                    "split": split,
                    "category_source": "valence",
                    "sha1": "",
                }
            )
        )
        out = folder / "responses" / dataset
        out.mkdir(parents=True)
        for layer, n in UNITS.items():
            data = rng.gamma(2.0, 1.0, size=(images, n)).astype(np.float32)
            for k, category in enumerate(CATEGORIES):  # a tenth of each layer prefers each category
                data[categories == category, k * n // 10 : (k + 1) * n // 10] += 0.5
            np.save(out / f"{layer}.npy", data)
        pd.DataFrame(
            rng.uniform(size=(images, 4)), columns=["luminance", "rms_contrast", "colourfulness", "hsf_energy"]
        ).to_csv(out / "image_stats.csv", index=False)
    pd.concat(rows).to_csv(folder / "stimuli.csv", index=False)
    config = {
        "extract": {"datasets": {"a": "", "b": ""}, "seed": 0},
        "datasets": {d: {"scale": [1.0, 9.0], "format": "csv", "ratings_file": ""} for d in ("a", "b")},
        "network": {"model": "vgg16", "sites": UNITS, "readout_site": "pool5"},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    from emoselect.base import manifest

    written = [folder / "stimuli.csv", *(p for p in (folder / "responses").rglob("*") if p.is_file())]
    manifest.finish(folder, "extract", written)  # what an extract stage records, so later stages accept it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--json", help="also write the results to this file (benchmarks/all.py)")
    args = parser.parse_args()
    seconds = {}
    from emoselect.analysis.selectivity import SelectivityOptions
    from emoselect.stages.selectivity import selectivity_stage

    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder)
        make_run(run, args.images)
        print(f"2 datasets x {args.images} images x {sum(UNITS.values())} units (13 layers)")
        for key, label, options in (
            (
                "defaults",
                "defaults (999 label shuffles: overlap, tuning-quality and network-level nulls)",
                SelectivityOptions(),
            ),
            (
                "everything",
                f"+ permutation test ({args.permutations}), valence tuning, confounds",
                SelectivityOptions(permutations=args.permutations, valence_tuning=True, confounds=True),
            ),
        ):
            start = time.perf_counter()
            selectivity_stage(run, options, progress=False)
            seconds[key] = time.perf_counter() - start
            print(f"  {label}: {seconds[key]:.1f} s (tables and figures written)")
    units = sum(UNITS.values())
    write_json(args.json, {"images": args.images, "units": units, "seconds": seconds}, torch.device("cpu"))


if __name__ == "__main__":
    main()
