"""The main benchmarks in one go, each in a fresh process, and one table of the results.

    .venv/bin/python benchmarks/all.py [--device auto] [--model vgg16] [--quick] [--json results.json]

Runs ``extract.py`` (extraction against a bare forward pass), ``selectivity.py`` (the whole stage on
a synthetic run of paper size), ``manipulate.py`` (the engine against the plain way, all layers and
the last three) and ``memory.py`` (peak memory of extraction with 90 and 900 pictures), then prints
one Markdown table with the device and versions above it: paste it into docs/performance.md.
(``controls.py``, ``precision.py`` and ``layout.py`` answer narrower questions and run on their own.)
``--quick`` uses fewer pictures (a smoke test of the scripts, not numbers to publish). Needs
../shared (or EMOSELECT_SHARED).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: str, words: list[str], folder: Path) -> dict:
    """One benchmark script in a fresh process; its ``--json`` results."""
    out = folder / f"{script}.json"
    print(f"running benchmarks/{script}.py {' '.join(words)}", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, str(HERE / f"{script}.py"), *words, "--json", str(out)], check=True)
    return json.loads(out.read_text())


def rows(results: dict) -> list[tuple[str, str, str, str, str]]:
    """(what, emoselect, the plain way, ratio, peak memory) per measurement."""
    extract, selectivity, engine, memory = (results[k] for k in ("extract", "selectivity", "manipulate", "memory"))
    rate = extract["images_per_s"]
    out = [(
        f"extraction, {extract['model']} ({extract['images']} pictures, {extract['precision']})",
        f"{rate['extract']:.2f} images/s", f"{rate['bare forward']:.2f} images/s (bare forward)",
        f"{rate['extract'] / rate['bare forward']:.2f}x", f"{extract['peak_rss_mb']:.0f} MB",
    )]  # fmt: skip
    for key, seconds in selectivity["seconds"].items():
        label = "defaults" if key == "defaults" else "+ permutation test, valence tuning, confounds"
        out.append((
            f"selectivity stage, 2 x {selectivity['images']} pictures x {selectivity['units']} units ({label})",
            f"{seconds:.1f} s", "", "", f"{selectivity['peak_rss_mb']:.0f} MB",
        ))  # fmt: skip
    for name in ("all layers", "last three layers"):
        r = engine[name]
        out.append((
            f"manipulation engine, {engine['model']} {name} ({r['layers']} x {r['conditions']} conditions x "
            f"{r['images']} pictures; margins equal to {r['largest_relative_difference']:.0e})",
            f"{r['passes'] / r['engine_seconds']:.1f} conditions/s",
            f"{r['passes'] / r['naive_seconds']:.1f} conditions/s (a full pass per condition)",
            f"{r['naive_seconds'] / r['engine_seconds']:.2f}x",
            f"{r['engine_peak_rss_mb']:.0f} MB{_gpu(r, 'engine')} "
            f"(plain way {r['naive_peak_rss_mb']:.0f} MB{_gpu(r, 'naive')})",
        ))  # fmt: skip
    sizes = list(memory["sizes"].values())
    out.append((
        f"extraction memory, {memory['model']}: {sizes[0]['images']} vs {sizes[-1]['images']} pictures",
        f"{sizes[-1]['peak_rss_mb']:.0f} MB", f"{sizes[0]['peak_rss_mb']:.0f} MB",
        f"{sizes[-1]['peak_rss_mb'] / sizes[0]['peak_rss_mb']:.2f}x", "(peak RSS of each process)",
    ))  # fmt: skip
    return out


def _gpu(result: dict, way: str) -> str:
    """ ", GPU N MB" where the way ran on a GPU."""
    peak = result.get(f"{way}_peak_gpu_mb")
    return f", GPU {peak:.0f} MB" if peak else ""


def table(results: dict) -> str:
    """The Markdown table, with the machine and versions above it."""
    m = results["extract"]
    lines = [
        f"{m['device']}: {m['device_name']}; torch {m['torch']}, torchvision {m['torchvision']}, "
        f"numpy {m['numpy']}, Python {m['python']}; emoselect {m['emoselect_commit']}",
        "",
        "| measurement | emoselect | the plain way | ratio | peak memory |",
        "|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows(results)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default="vgg16", help="vgg16 (shared weights) or any --model, random weights")
    parser.add_argument("--quick", action="store_true", help="few pictures: checks the scripts run")
    parser.add_argument("--json", help="also write every result to this file")
    args = parser.parse_args()
    common = ["--device", args.device]
    model = ["--model", args.model]
    sizes = (["--images", "16"], ["--images", "200"], ["--images", "2"], ["--images", "9", "30"])
    if not args.quick:
        sizes = (["--images", "64"], ["--images", "1200"], ["--images", "8"], ["--images", "90", "900"])
    with tempfile.TemporaryDirectory() as folder:
        results = {
            "extract": run("extract", [*sizes[0], *common, *model], Path(folder)),
            "selectivity": run("selectivity", [*sizes[1]], Path(folder)),
            "manipulate": run("manipulate", [*sizes[2], *common, *model], Path(folder)),
            "memory": run("memory", [*sizes[3], *common, *model], Path(folder)),
        }
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
