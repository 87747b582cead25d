"""Calibration of the scorecard on null data, end to end through the selectivity stage.

    .venv/bin/python benchmarks/calibration.py --source RUN [--replicates 20] [--modes shuffled halves synthetic]
                                     [--loading 1.5] [--manipulate] [--json results.json]

``RUN`` is a finished run folder with random-init controls on one picture set (the README demo's).
Each replicate is a new run folder (the trained network and every control) on data with no emotion
information, analysed by ``selectivity_stage`` with the default options, whose claims.csv is read:

* ``shuffled``: the pictures' ratings rows (valence, arousal and the category and split they imply)
  permuted across the pictures, the same permutation for every network (as in one real run); one
  picture set, so a split-half stands in for the pair;
* ``halves``: the same, then the pictures dealt at random into two disjoint picture sets, a real
  cross-dataset pair;
* ``synthetic``: the run's real ratings, but every network's responses replaced by noise with
  correlated units (shared factors with loading ``--loading``, each layer's factors carried over from
  the layer below), the layers' sizes of RUN.

With ``--manipulate`` the manipulate stage runs on each replicate too (readout heads, lesion, gain and
mean-ablation tests on the real network and pictures of RUN, for the network and its first control):
the manipulation claims are calibrated through the real pipeline (``shuffled`` and ``halves`` only,
since ``synthetic`` has no pictures behind its responses).

It prints, per claim and kind of network (trained, controls pooled, trained vs controls), how often
the claim came out supported and contradicted, with the Monte Carlo error of a rate of alpha
(sqrt(alpha (1 - alpha) / n)); a calibrated scorecard keeps each rate at most alpha plus about two
such errors. The stage calls are the same before and after a change of the statistics, so the script
measures both (run it on a checkout of the older code). Needs no network weights and no GPU; time:
about a minute per replicate and mode for a 3-network VGG-16 run on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

PICTURE_COLUMNS = ("dataset", "image_id", "path", "sha1")  # what stays with the picture; the rest is its rating


def network_folders(run: Path) -> list[Path]:
    """The run folder and its controls (RUN/control, RUN/control2, ...), in order."""
    folders, k = [run], 1
    while (run / ("control" if k == 1 else f"control{k}") / "config.yaml").is_file():
        folders.append(run / ("control" if k == 1 else f"control{k}"))
        k += 1
    return folders


def shuffled_ratings(table: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The stimulus table with its rating columns (valence, arousal, category, split, ...) moved
    together to other pictures of the same dataset: no picture keeps information about its rating."""
    out = table.copy()
    labels = [c for c in table.columns if c not in PICTURE_COLUMNS]
    for _, rows in table.groupby("dataset", sort=False):
        order = rng.permutation(len(rows))
        out.loc[rows.index, labels] = rows[labels].to_numpy()[order]
    return out


def disjoint_halves(table: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """One picture set dealt at random into two disjoint sets, ``A`` and ``B`` (rows grouped by set)."""
    out = table.copy()
    out["dataset"] = np.where(rng.permutation(len(out)) % 2 == 0, "A", "B")
    return pd.concat([out[out["dataset"] == "A"], out[out["dataset"] == "B"]])


def factor_responses(n_pictures: int, units: dict[str, int], rng: np.random.Generator, loading: float) -> dict:
    """Noise with correlated units: per layer x = loading * F W + e, F [n, 8] shared factors (80% of
    each carried over from the layer below), W [8, units] and e standard normal. float32 per site."""
    factors = rng.standard_normal((n_pictures, 8))
    out = {}
    for site, n in units.items():
        factors = np.sqrt(0.8) * factors + np.sqrt(0.2) * rng.standard_normal(factors.shape)
        weights = rng.standard_normal((8, n))
        out[site] = (loading * factors @ weights + rng.standard_normal((n_pictures, n))).astype(np.float32)
    return out


def write_network(source: Path, target: Path, table: pd.DataFrame, responses: dict | None = None) -> None:
    """A run folder at ``target`` as an extract stage would leave it: ``table`` as stimuli.csv, the
    source's config (datasets renamed where the table renames them) and responses (each dataset's
    rows of the source's, or ``responses`` {site: [n_pictures, units]} in ``table`` order)."""
    from emoselect.base import manifest

    config = yaml.safe_load((source / "config.yaml").read_text())
    sites = list(config["network"]["sites"])
    original = pd.read_csv(source / "stimuli.csv", dtype={"image_id": str, "dataset": str, "sha1": str},
                           keep_default_na=False)  # fmt: skip
    row_of = {(d, i): r for r, (d, i) in enumerate(zip(original["dataset"], original["image_id"]))}
    source_dataset = original["dataset"].iloc[0]
    datasets = list(dict.fromkeys(table["dataset"]))
    target.mkdir(parents=True)
    for dataset in datasets:
        rows = table[table["dataset"] == dataset]
        index = np.array([row_of[(source_dataset, i)] for i in rows["image_id"]])
        folder = target / "responses" / dataset
        folder.mkdir(parents=True)
        for site in sites:
            if responses is not None:
                data = responses[site][np.flatnonzero((table["dataset"] == dataset).to_numpy())]
            else:
                data = np.load(source / "responses" / source_dataset / f"{site}.npy", mmap_mode="r")[index]
            np.save(folder / f"{site}.npy", np.ascontiguousarray(data))
        if responses is None:  # the readout features and image statistics follow the pictures too
            _copy_readout(source / "responses" / source_dataset, folder, config, index)
    entry = config["datasets"][source_dataset]
    config["datasets"] = {d: entry for d in datasets}
    config["extract"]["datasets"] = {d: config["extract"]["datasets"][source_dataset] for d in datasets}
    for stage in ("selectivity", "manipulation"):
        config.pop(stage, None)
    (target / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    table.to_csv(target / "stimuli.csv", index=False)
    shutil.copy(source / "problems.csv", target / "problems.csv")
    written = [target / "stimuli.csv", target / "problems.csv", *(p for p in (target / "responses").rglob("*.npy"))]
    manifest.finish(target, "extract", written)  # what an extract stage records, so later stages accept it


def _copy_readout(source: Path, target: Path, config: dict, index: np.ndarray) -> None:
    """The rows ``index`` of the readout features (``<readout site>.npy``) and image_stats.csv in the
    ``source`` responses folder, written to ``target`` (what the manipulate stage reads)."""
    readout = config["network"].get("readout_site")
    if readout and (source / f"{readout}.npy").is_file():
        data = np.load(source / f"{readout}.npy", mmap_mode="r")[index]
        np.save(target / f"{readout}.npy", np.ascontiguousarray(data))
    if (source / "image_stats.csv").is_file():
        pd.read_csv(source / "image_stats.csv").iloc[index].to_csv(target / "image_stats.csv", index=False)


def synthetic_source(folder: Path, units: dict[str, int], n_pictures: int = 300, controls: int = 2) -> Path:
    """A run folder of ``controls + 1`` noise networks (:func:`factor_responses`, loading 1.5) on
    ``n_pictures`` rated pictures of one set ``syn`` (valence evenly spread on 1-9, the default
    split), as an extract stage would leave it: a source for the ``synthetic`` mode without pictures."""
    from emoselect.pictures.stimuli import assign_split

    valence = np.linspace(1, 9, n_pictures)
    table = pd.DataFrame({
        "dataset": "syn", "image_id": [f"p{i:04d}" for i in range(n_pictures)], "path": "", "valence": valence,
        "arousal": 5.0, "category": np.select([valence < 4.3, valence > 6.0], ["unpleasant", "pleasant"], "neutral"),
        "category_source": "valence", "sha1": [f"{i:040x}" for i in range(n_pictures)],
    })  # fmt: skip
    table["split"] = assign_split(table)
    rng = np.random.default_rng(0)
    for k in range(controls + 1):
        target = folder / ("" if k == 0 else "control" if k == 1 else f"control{k}")
        (target / "responses" / "syn").mkdir(parents=True)
        for site, data in factor_responses(n_pictures, units, rng, 1.5).items():
            np.save(target / "responses" / "syn" / f"{site}.npy", data)
        config = {
            "extract": {"datasets": {"syn": ""}, "seed": 0},
            "datasets": {"syn": {"scale": [1.0, 9.0], "format": "csv", "ratings_file": ""}},
            "network": {"model": "synthetic", "weights": "trained" if k == 0 else "random", "sites": list(units)},
        }
        (target / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        table.to_csv(target / "stimuli.csv", index=False)
        (target / "problems.csv").write_text("dataset,file,problem,action\n")
    return folder


def replicate(source: Path, target: Path, mode: str, seed: int, loading: float) -> Path:
    """One null replicate of ``source`` (the network and its controls) in ``target``."""
    rng = np.random.default_rng([seed, {"shuffled": 1, "halves": 2, "synthetic": 3}[mode]])
    table = pd.read_csv(source / "stimuli.csv", dtype={"image_id": str, "dataset": str, "sha1": str},
                        keep_default_na=False, na_values={"valence": [""], "arousal": [""]})  # fmt: skip
    if mode in ("shuffled", "halves"):
        table = shuffled_ratings(table, rng)
    if mode == "halves":
        table = disjoint_halves(table, rng)
    for k, folder in enumerate(network_folders(source)):
        config = yaml.safe_load((folder / "config.yaml").read_text())
        responses = None
        if mode == "synthetic":
            units = {site: np.load(folder / "responses" / table["dataset"].iloc[0] / f"{site}.npy",
                                   mmap_mode="r").shape[1] for site in config["network"]["sites"]}  # fmt: skip
            responses = factor_responses(len(table), units, rng, loading)
        write_network(folder, target / folder.relative_to(source) if k else target, table, responses)
    return target


def claims_of(run: Path, options: object, manipulation: object = None) -> pd.DataFrame:
    """The selectivity stage on one replicate (default options unless given), with ``manipulation``
    (ManipulationOptions) the manipulate stage too (the trained network and its first control, as
    `emoselect run` does), and its claims.csv."""
    from emoselect.stages.selectivity import selectivity_stage

    selectivity_stage(run, options, progress=False)
    if manipulation is not None:
        from emoselect.stages.manipulate import manipulate_all

        manipulate_all(run, manipulation, progress=False)
    return pd.read_csv(run / "claims.csv")


def kind_of(network: str) -> str:
    """trained, control (any random-init control) or trained vs controls."""
    if network == "trained":
        return "trained"
    comparison = network.startswith("trained vs") or network.startswith("trained - ")  # (older scorecards)
    return "trained vs controls" if comparison else "controls"


def rates(claims: list[pd.DataFrame], alpha: float) -> pd.DataFrame:
    """Per claim and kind of network: n, supported and contradicted rates, and the MC error at alpha."""
    counts: dict = defaultdict(lambda: [0, 0, 0])
    for table in claims:
        for row in table.itertuples(index=False):
            entry = counts[(row.claim, kind_of(row.network))]
            entry[0] += 1
            entry[1] += row.verdict == "supported"
            entry[2] += row.verdict == "contradicted"
    rows = [
        {
            "claim": claim,
            "networks": kind,
            "n": n,
            "supported": s / n,
            "contradicted": c / n,
            "mc_error": float(np.sqrt(alpha * (1 - alpha) / n)),
        }  # fmt: skip
        for (claim, kind), (n, s, c) in counts.items()
    ]
    return pd.DataFrame(rows)


def calibrate(
    source: Path, modes: list[str], replicates: int, options: object, loading: float, manipulation: object = None
) -> pd.DataFrame:
    """Every mode's claims over ``replicates`` null replicates (with ``manipulation`` options the
    manipulation claims too, see :func:`claims_of`); one table of rates per mode."""
    tables = []
    with tempfile.TemporaryDirectory() as scratch:
        for mode in modes:
            claims = []
            for seed in range(replicates):
                run = replicate(source, Path(scratch) / f"{mode}-{seed}", mode, seed, loading)
                claims.append(claims_of(run, options, manipulation))
                shutil.rmtree(run)
                print(f"  {mode} {seed + 1}/{replicates}", file=sys.stderr, flush=True)
            tables.append(rates(claims, 0.05).assign(mode=mode))
    return pd.concat(tables, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", required=True, type=Path, help="a finished run folder with controls")
    parser.add_argument("--modes", nargs="+", default=["shuffled", "halves", "synthetic"])
    parser.add_argument("--replicates", type=int, default=20)
    parser.add_argument("--loading", type=float, default=1.5, help="shared-factor loading of the synthetic units")
    parser.add_argument("--json", help="also write the table to this file")
    parser.add_argument(
        "--manipulate",
        action="store_true",
        help="also run the manipulate stage (default options; the shuffled and halves modes, which keep the pictures)",
    )
    args = parser.parse_args()
    manipulation = None
    if args.manipulate:
        from emoselect.analysis.experiments import ManipulationOptions

        manipulation = ManipulationOptions()
    table = calibrate(args.source, args.modes, args.replicates, None, args.loading, manipulation)
    table["ok"] = (table["supported"] <= 0.05 + 2 * table["mc_error"]) & (
        table["contradicted"] <= 0.05 + 2 * table["mc_error"]
    )
    with pd.option_context("display.width", 200, "display.max_colwidth", 80):
        print(table.round(3).to_string(index=False))
    if args.json:
        Path(args.json).write_text(json.dumps(table.to_dict(orient="records"), indent=1))


if __name__ == "__main__":
    main()
