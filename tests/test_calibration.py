"""The scorecard on null data, end to end: benchmarks/calibration.py's replicates (run folders of noise
networks with correlated units, and the same with the ratings shuffled over the pictures) through the
real selectivity stage. A fast version of the benchmark: it fails when a verdict rate is far above alpha.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from emoselect.analysis.selectivity import SelectivityOptions

HERE = Path(__file__).resolve().parent.parent / "benchmarks" / "calibration.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("calibration", HERE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_claim_is_supported_or_contradicted_more_than_alpha_on_null_run_folders(tmp_path):
    calibration = _benchmark()
    units = {f"layer{i}": n for i, n in enumerate((16, 24, 32, 32, 48), 1)}
    source = calibration.synthetic_source(tmp_path / "source", units, n_pictures=240, controls=2)
    table = calibration.calibrate(
        source, ["synthetic", "shuffled"], 10, SelectivityOptions(null_permutations=99), loading=1.5
    )
    n = table["n"].sum()
    for column in ("supported", "contradicted"):
        pooled = float((table[column] * table["n"]).sum() / n)
        # pooled over every claim and network (about 400 verdicts); alpha + 3 Monte Carlo errors
        assert pooled <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / n), (column, table.to_string())
        assert (table[column] <= 0.5).all(), table.to_string()  # no single claim far off


def test_the_null_replicates_carry_no_rating_information(tmp_path):
    calibration = _benchmark()
    units = {"layer1": 8, "layer2": 8, "layer3": 8}
    source = calibration.synthetic_source(tmp_path / "source", units, n_pictures=60, controls=1)
    run = calibration.replicate(source, tmp_path / "rep", "halves", seed=3, loading=1.5)
    import pandas as pd

    before = pd.read_csv(source / "stimuli.csv").set_index("image_id")
    after = pd.read_csv(run / "stimuli.csv").set_index("image_id")
    assert set(after["dataset"]) == {"A", "B"} and len(after) == len(before)
    assert (after["valence"] != before.loc[after.index, "valence"]).mean() > 0.8  # ratings moved
    assert (run / "control" / "stimuli.csv").read_text() == (run / "stimuli.csv").read_text()  # one labelling
    rows = np.flatnonzero(after["dataset"].to_numpy() == "B")
    kept = np.load(source / "responses" / "syn" / "layer2.npy")[
        [list(before.index).index(i) for i in after.index[rows]]
    ]
    np.testing.assert_array_equal(np.load(run / "responses" / "B" / "layer2.npy"), kept)  # responses follow pictures


def test_manipulation_claims_on_shuffled_ratings_through_the_real_network(tmp_path, oasis_dir, mobilenet_weights):
    """Issue 19: the real pipeline (a real ImageNet-trained network, real OASIS pictures, readout heads,
    the lesion, mean-ablation and gain sweeps) on ratings shuffled over the pictures. The heads are at
    chance, so their cells are "not applicable", and no manipulation claim comes out supported more
    often than alpha allows (a fast version of `benchmarks/calibration.py --manipulate`)."""
    import pandas as pd

    from emoselect.analysis.experiments import ManipulationOptions
    from emoselect.cli import main

    calibration = _benchmark()
    source = tmp_path / "source"
    extract = f"-q extract --dataset oasis={oasis_dir} --model mobilenet_v2 --weights {mobilenet_weights} " \
        f"--limit 240 --resize 96 --crop 96 --workers 0 --out {source}"  # fmt: skip
    assert main(extract.split()) == 0
    options = ManipulationOptions(
        layers=["features.15.conv.1.2", "features.16.conv.1.2", "features.17.conv.1.2", "features.18.2"],
        betas=[0.0, 2.0],
        sets_per_shard=10,
    )
    verdicts, cells = [], []
    for seed in range(3):
        run = calibration.replicate(source, tmp_path / f"shuffled-{seed}", "shuffled", seed, 1.5)
        claims = calibration.claims_of(run, SelectivityOptions(null_permutations=99), options)
        manipulation = claims["claim"].str.contains("heads' AUC|selective minus random|transfers to another")
        verdicts += list(claims.loc[manipulation, "verdict"])
        summary = pd.read_csv(run / "manipulation_summary.csv")
        cells += list(summary["applicable"])
    assert len(verdicts) == 3 * 7, verdicts  # enhancement, lesion, mean-ablation and their trends; transfer
    supported = verdicts.count("supported") / len(verdicts)
    assert supported <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / len(verdicts)), verdicts
    assert np.mean(cells) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / len(cells)), cells  # heads at chance
