"""The run folder as one object (RunFolder): its declared files, its seed, its controls, the stage
context; and the defects found in the house-plan review (run seed, category boundaries in figures)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import MANIPULATE, SMALL, make_oasis
from emoselect import ExtractOptions, SelectivityOptions, analyse, extract_stage, read_stimuli, selectivity_stage
from emoselect.base import manifest
from emoselect.base.problems import InputError
from emoselect.cli import main
from emoselect.engine.responses import load_responses
from emoselect.output import figures
from emoselect.pictures.stimuli import assign_half
from emoselect.run.folder import DOWNSTREAM, FILES, RunFolder

VALENCES = np.repeat([2.0, 4.5, 6.5], 10)


def _extracted(tmp_path, seed: int = 5, **extra) -> RunFolder:
    """A run folder of 30 OASIS-like pictures (one dataset: the selectivity stage uses a split-half),
    extracted with the small random-weight network and ``--seed seed``."""
    pictures = make_oasis(tmp_path / "set", n=30, valences=VALENCES)
    options = ExtractOptions(
        datasets={"s": str(pictures)}, model="mobilenet_v3_small", weights="random", workers=0, seed=seed, **extra
    )
    extract_stage(options, tmp_path / "run", progress=False)
    return RunFolder(tmp_path / "run")


def test_the_selectivity_api_uses_the_runs_seed_not_a_default(tmp_path):
    """`selectivity_stage(run, SelectivityOptions(...))` used seed 0 whatever the run's --seed was;
    its label shuffles (seeded random streams) must be the run's, as the command line's are, and its
    split-half is stimuli.csv's, drawn by the extraction from the same seed."""
    run = _extracted(tmp_path, seed=5)
    assert run.seed == 5
    result = selectivity_stage(run.path, SelectivityOptions(null_permutations=10), progress=False)
    stimuli = read_stimuli(run.path)
    sites = list(run.config["network"]["sites"])
    responses = {"s": load_responses(run.path, "s", sites)}
    seeded = analyse(stimuli, responses, sites, SelectivityOptions(null_permutations=10), progress=False, seed=5)
    unseeded = analyse(stimuli, responses, sites, SelectivityOptions(null_permutations=10), progress=False, seed=0)
    pd.testing.assert_frame_equal(result.units, seeded.units)
    pd.testing.assert_frame_equal(result.layers, seeded.layers)
    null = "tuning_quality_null_mean"
    assert not np.allclose(result.layers[null], unseeded.layers[null])  # the shuffles depend on the seed
    halves = stimuli.table["half"].to_numpy()
    assert np.array_equal(halves, assign_half(stimuli.table, seed=5))  # recorded by the extraction, seed 5
    assert not np.array_equal(halves, assign_half(stimuli.table, seed=0))
    assert "seed" not in run.config["selectivity"]  # no options record carries a copy of the seed


def test_every_file_a_run_writes_is_declared_with_its_stage(tmp_path):
    """A whole run (controls, manipulations, report) writes only files of run/folder.py's FILES."""
    pictures = make_oasis(tmp_path / "set", n=30, valences=VALENCES)
    words = ["--null-permutations", "10", *MANIPULATE, "--controls", "1"]
    assert main(["-q", "run", "--dataset", f"s={pictures}", *SMALL, *words, "--out", str(tmp_path / "run")]) == 0
    run = RunFolder(tmp_path / "run")
    for folder in (run, *run.controls):
        written = {p.name for p in folder.path.iterdir() if not p.name.startswith(".")} - {"control"}
        assert written <= set(FILES), written - set(FILES)
    entries = manifest.read(run.path)
    for stage, entry in entries.items():
        for name in entry["files"]:
            owner = FILES[name.split("/")[0]]
            assert owner == stage or name.startswith("figures/"), (stage, name, owner)
    assert set(DOWNSTREAM) == {name for name, stage in FILES.items() if stage != "extract"} | {"figures"}
    assert [c.path.name for c in run.controls] == ["control"] and run.control(1).is_control and not run.is_control


def test_the_stage_context_checks_its_needs_and_records_only_finished_work(tmp_path):
    run = _extracted(tmp_path)
    with pytest.raises(InputError, match="the selectivity stage has not finished"):
        with run.stage("manipulate", needs=("extract", "selectivity")):
            pass
    with pytest.raises(RuntimeError, match="interrupted"):
        with run.stage("claims", needs=("extract",)) as out:
            out.write_csv("claims.csv", pd.DataFrame({"claim": ["x"]}))
            raise RuntimeError("interrupted")
    assert "claims" not in manifest.read(run.path)  # an interrupted stage leaves no entry
    with run.stage("claims", needs=("extract",)) as out:
        out.write_csv("claims.csv", pd.DataFrame({"claim": ["x"]}))
    assert list(manifest.read(run.path)["claims"]["files"]) == ["claims.csv"]
    assert set(manifest.read(run.path)["claims"]["inputs"]) == {"extract"}
    with pytest.raises(ValueError, match="not a file of a run folder"):
        run.file("notes.txt")


def _boundaries_drawn(monkeypatch, draw) -> list[float]:
    """The x positions of the vertical dotted lines a drawing function draws (its figure kept)."""
    kept = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: kept.append(fig) or path)
    draw()
    return sorted(
        round(float(line.get_xdata()[0]), 6)
        for ax in kept[0].axes
        for line in ax.get_lines()
        if line.get_linestyle() == ":"
    )


def test_figures_draw_the_runs_category_boundaries(tmp_path, monkeypatch):
    """The stimulus figure drew the paper's 4.3 / 6.0 whatever --thresholds said."""
    table = pd.DataFrame(
        {
            "dataset": "s",
            "valence": [1.5, 3.0, 4.0, 5.0, 6.8],
            "category": ["unpleasant"] * 2 + ["neutral"] * 2 + ["pleasant"],
        }
    )
    drawn = _boundaries_drawn(
        monkeypatch, lambda: figures.stimuli(table, {"s": (1.0, 9.0)}, tmp_path / "a.png", (3.5, 6.5))
    )
    assert drawn == [3.5, 6.5]
    on_seven = _boundaries_drawn(
        monkeypatch, lambda: figures.stimuli(table, {"s": (1.0, 7.0)}, tmp_path / "b.png", (3.5, 6.5))
    )
    assert on_seven == [1 + 2.5 * 6 / 8, 1 + 5.5 * 6 / 8]  # mapped onto the set's own 1-7 scale
    assert _boundaries_drawn(monkeypatch, lambda: figures.stimuli(table, {"s": (1.0, 9.0)}, tmp_path / "c.png")) == []


def test_the_stages_pass_the_runs_thresholds_to_the_figures(tmp_path, monkeypatch):
    seen = {}

    def spy(name, draw):
        def drawing(*args):
            seen[name] = args[3]
            return draw(*args)

        return drawing

    monkeypatch.setattr(figures, "stimuli", spy("stimuli", figures.stimuli))
    monkeypatch.setattr(figures, "example_valence", spy("valence", figures.example_valence))
    run = _extracted(tmp_path, thresholds=(3.5, 6.2))
    selectivity_stage(run.path, SelectivityOptions(null_permutations=0), progress=False)
    assert seen == {"stimuli": (3.5, 6.2), "valence": (3.5, 6.2)}
