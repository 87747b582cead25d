"""How much bf16 (or fp16) changes the analysis, against fp32, on the same pictures, in the same run.

    python benchmarks/precision.py [--images 300] [--precision bf16] [--device auto]

VGG-16 with the shared ImageNet weights on a seeded, stratified sample of OASIS (one dataset: its
seeded split-half stands in for the two datasets). Each precision extracts responses (timed), the
selectivity stage runs on each (default options, 50 tuning-null permutations), and heads are trained
on each precision's readout features. Printed: extraction images/s of each; the largest relative
difference of the responses per layer; the share of units whose preferred category changes; the
Jaccard index between the two precisions' selective sets (per layer, pooled over categories); the
heads' test F1 under each.

    python benchmarks/precision.py --compare-runs FP32_RUN BF16_RUN

compares the manipulation decisions of two run folders of the same pictures and options made at two
precisions (``emoselect run ... --precision bf16``): per layer x category cell of
manipulation_summary.csv whether the gain and the lesion tests are significant (q < 0.05) under both,
and per Table-1 row the chosen layer and beta and the F1 changes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOSELECT_SHARED", REPO.parent / "shared"))


def analysed(precision: str, stimuli, device: str, cache: str, batch_size: int):
    """(seconds of extraction, responses, selectivity result, head table) at one precision."""
    from emoselect.analysis.records import ReadoutOptions
    from emoselect.analysis.selectivity import SelectivityOptions, analyse
    from emoselect.engine.probe import load_network
    from emoselect.engine.readout import train_heads
    from emoselect.engine.responses import extract

    network = load_network("vgg16", str(SHARED / "weights" / "vgg16_imagenet_features.pth")).at_precision(precision)
    start = time.perf_counter()
    responses = extract(stimuli, network, cache_dir=cache, batch_size=batch_size, device=device, progress=False)
    seconds = time.perf_counter() - start
    result = analyse(stimuli, responses, list(network.sites), SelectivityOptions(null_permutations=199), progress=False)
    features = {name: r.readout for name, r in responses.items()}
    _, table = train_heads(stimuli, features, ReadoutOptions(), network.readout_site)
    return seconds, responses, result, table


def compare_runs(first: Path, second: Path, alpha: float = 0.05) -> None:
    """Print how the manipulation decisions of two run folders (two precisions) agree."""
    keys = ["train_dataset", "test_dataset", "emotion", "layer", "units"]
    a, b = (pd.read_csv(run / "manipulation_summary.csv", dtype={"layer": str}) for run in (first, second))
    cells = a.merge(b, on=keys, suffixes=("_a", "_b"))
    print(f"{first} vs {second}: {len(cells)} layer x category cells")
    for test in ("q_enhance", "q_lesion"):
        same = ((cells[f"{test}_a"] < alpha) == (cells[f"{test}_b"] < alpha)).sum()
        print(f"  {test} < {alpha}: same decision in {same} of {len(cells)} cells "
              f"(significant: {(cells[f'{test}_a'] < alpha).sum()} and {(cells[f'{test}_b'] < alpha).sum()})")  # fmt: skip
        print(f"  largest difference of {test}: {(cells[f'{test}_a'] - cells[f'{test}_b']).abs().max():.3g}")
    t1 = [
        pd.read_csv(run / "table1.csv", dtype={"enhanced_layer": str, "lesioned_layer": str}) for run in (first, second)
    ]
    rows = t1[0].merge(t1[1], on=["train_dataset", "test_dataset", "emotion"], suffixes=("_a", "_b"))
    for column in ("enhanced_layer", "enhanced_beta", "lesioned_layer"):
        print(f"  Table 1 {column}: same in {(rows[f'{column}_a'] == rows[f'{column}_b']).sum()} of {len(rows)} rows")
    for column in ("original_f1", "enhanced_change_pct", "lesioned_change_pct"):
        print(f"  Table 1 {column}: largest difference {(rows[f'{column}_a'] - rows[f'{column}_b']).abs().max():.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compare-runs", nargs=2, metavar=("FP32_RUN", "OTHER_RUN"), help="compare two run folders")
    args = parser.parse_args()
    if args.compare_runs:
        compare_runs(*map(Path, args.compare_runs))
        return
    if not (SHARED / "weights" / "vgg16_imagenet_features.pth").is_file():
        sys.exit(f"{SHARED} has no shared weights: set EMOSELECT_SHARED")
    from emoselect.engine.responses import pick_device
    from emoselect.pictures.stimuli import build_stimuli

    device = str(pick_device(args.device))
    stimuli = build_stimuli({"oasis": SHARED / "data" / "oasis"}, limit=args.images, progress=False)
    with tempfile.TemporaryDirectory() as cache:  # an empty cache: every picture is computed
        results = {p: analysed(p, stimuli, device, cache, args.batch_size) for p in ("fp32", args.precision)}
    reference, other = results["fp32"], results[args.precision]
    print(f"torch {torch.__version__}, {device}, {len(stimuli.table)} OASIS pictures, VGG-16, batch {args.batch_size}")
    for precision, (seconds, *_rest) in results.items():
        print(f"  extraction {precision}: {len(stimuli.table) / seconds:6.2f} images/s")
    rows = []
    for layer in reference[1]["oasis"].sites:
        a, b = (np.asarray(r[1]["oasis"].sites[layer], np.float64) for r in (reference, other))
        units_a, units_b = (r[2].units[r[2].units["layer"] == layer] for r in (reference, other))
        changed = float((units_a["preferred"].to_numpy() != units_b["preferred"].to_numpy()).mean())
        sets = [set(map(tuple, r[2].selective.loc[r[2].selective["layer"] == layer, ["unit", "category"]].to_numpy()))
                for r in (reference, other)]  # fmt: skip
        union = len(sets[0] | sets[1])
        rows.append({
            "layer": layer, "max_relative_difference": np.abs(a - b).max() / np.abs(a).max(),
            "preferred_changed": changed, "selective_fp32": len(sets[0]), f"selective_{args.precision}": len(sets[1]),
            "selective_jaccard": len(sets[0] & sets[1]) / union if union else 1.0,
        })  # fmt: skip
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(
        f"all layers: preferred category changed for {table['preferred_changed'].mean():.2%} of units; "
        f"selective-set Jaccard {table['selective_jaccard'].mean():.3f} (mean over layers)"
    )
    heads = reference[3].merge(other[3], on=["dataset", "emotion", "split"], suffixes=("_fp32", f"_{args.precision}"))
    test = heads[heads["split"] == "test"][["emotion", "f1_fp32", f"f1_{args.precision}"]]
    print("head test F1:\n" + test.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
