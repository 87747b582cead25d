"""Any category set (--categories COLUMN): K >= 2 categories from a ratings column, through every stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import MANIPULATE, SMALL, make_emotion6, make_generic, make_oasis
from emoselect.analysis.tuning import d_prime, permutation_p_values, preferred_category, tuning_values
from emoselect.base.problems import InputError
from emoselect.cli import main
from emoselect.pictures.stimuli import build_stimuli, category_names

SIX = ("animals", "bodies", "faces", "food", "objects", "places")
HUES = {"animals": (200, 60, 40), "bodies": (40, 200, 60), "faces": (40, 60, 200), "food": (200, 200, 40),
        "objects": (200, 40, 200), "places": (40, 200, 200)}  # fmt: skip


def make_six(root: Path, per_category: int = 10, seed: int = 0) -> Path:
    """ratings.csv with image, valence and a ``kind`` column of six categories; each category's
    pictures share a colour (so some units can prefer it), with noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for kind in SIX:
        for i in range(per_category):
            name = f"{kind}_{i}.png"
            noise = rng.integers(-40, 40, (40, 48, 3))
            pixels = np.clip(np.array(HUES[kind])[None, None, :] + noise, 0, 255).astype(np.uint8)
            root.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / name)
            rows.append((name, round(float(rng.uniform(1, 9)), 2), 5.0, kind.upper() if i == 0 else kind))
    return make_generic(root, rows, header="image,valence,arousal,kind")


def test_tuning_values_for_k_categories_equal_a_hand_computation():
    names = ("a", "b", "c", "d")
    labels = np.array(["a", "a", "b", "b", "c", "c", "d", "d", "unknown"])
    responses = np.array([[1, 0], [3, 0], [2, 1], [2, 3], [0, 5], [0, 7], [4, 2], [4, 2], [99, 99]], float)
    z = tuning_values(responses, labels, names)
    used = responses[:8]
    for unit in range(2):
        mean, sd = used[:, unit].mean(), used[:, unit].std(ddof=1)
        expected = [(used[labels[:8] == c, unit].mean() - mean) / sd for c in names]
        np.testing.assert_allclose(z[unit], expected)
    assert list(preferred_category(z)) == [3, 2]  # unit 0 prefers d (mean 4), unit 1 prefers c (mean 6)
    d = d_prime(responses, labels, names)
    inside, rest = used[6:8, 0], used[:6, 0]
    expected_d = (inside.mean() - rest.mean()) / np.sqrt((inside.var(ddof=1) + rest.var(ddof=1)) / 2)
    np.testing.assert_allclose(d[0, 3], expected_d)


def test_a_planted_unit_is_significant_for_its_category_among_six():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.array(SIX), 12)
    responses = rng.normal(size=(len(labels), 3))
    responses[labels == "faces", 0] += 3.0  # unit 0 prefers faces; units 1-2 are noise
    z = tuning_values(responses, labels, SIX)
    assert SIX[preferred_category(z)[0]] == "faces"
    p = permutation_p_values(responses, labels, 199, np.random.default_rng(2), names=SIX)
    assert p[0] == pytest.approx(1 / 200) and p[1] > 0.01 and p[2] > 0.01


def test_categories_come_from_a_csv_column_with_missing_and_odd_values(tmp_path):
    root = make_six(tmp_path / "six", per_category=3)
    ratings = (root / "ratings.csv").read_text().splitlines()
    ratings[1] = ratings[1].rsplit(",", 1)[0] + ","  # one picture without a category
    (root / "ratings.csv").write_text("\r\n".join(ratings) + "\r\n")  # Windows line endings
    stimuli = build_stimuli({"six": root}, scales={"six": "1-9"}, category_column="kind", progress=False)
    assert category_names(stimuli.table) == SIX  # upper-case labels folded, sorted
    assert (stimuli.table["category"] == "unknown").sum() == 1
    assert set(stimuli.table["category_source"]) == {"column kind"}
    assert any("no 'kind' value" in p.problem for p in stimuli.problems)
    with pytest.raises(InputError, match="no column 'emotion' for --categories"):
        build_stimuli({"six": root}, scales={"six": "1-9"}, category_column="emotion", progress=False)
    oasis = make_oasis(tmp_path / "oasis", n=6)
    with pytest.raises(InputError, match="oasis ratings have no category column"):
        build_stimuli({"o": oasis}, category_column="kind", progress=False)


def test_one_category_is_refused_and_emotion6_gives_its_dominant_emotion(tmp_path):
    make_generic(tmp_path / "one", [("a.png", 2, 3, "x"), ("b.png", 4, 3, "x")], header="image,valence,arousal,kind")
    with pytest.raises(InputError, match="at least 2 are needed"):
        build_stimuli({"one": tmp_path / "one"}, scales={"one": "1-9"}, category_column="kind", progress=False)
    stimuli = build_stimuli({"e6": make_emotion6(tmp_path / "e6")}, category_column="dominant", progress=False)
    assert dict(zip(stimuli.table["image_id"], stimuli.table["category"])) == {
        "anger/1": "anger",
        "joy/1": "joy",
        "neutral/3": "neutral",
    }
    with pytest.raises(InputError, match="Emotion6 gives 'dominant'"):
        build_stimuli({"e6": tmp_path / "e6"}, category_column="kind", progress=False)


def test_a_whole_run_with_six_categories(tmp_path):
    for name, seed in (("a", 0), ("b", 1)):
        make_six(tmp_path / name, seed=seed)
    run = tmp_path / "run"
    sets = ["--dataset", f"a={tmp_path / 'a'}", "--dataset", f"b={tmp_path / 'b'}", "--scale", "a=1-9"]
    words = [*sets, "--scale", "b=1-9", "--categories", "kind", *SMALL, "--null-permutations", "10", "--controls", "1"]
    assert main(["-q", "run", *words, *MANIPULATE, "--out", str(run)]) == 0
    units = pd.read_csv(run / "units.csv")
    assert [f"t_{name}" for name in SIX] == [c for c in units.columns if c.startswith("t_")]
    assert set(units["preferred"]) <= set(SIX) | {"none"}
    overlap = pd.read_csv(run / "overlap.csv")
    assert set(overlap["category"]) == set(SIX) and len(overlap) == 6 * overlap["layer"].nunique()
    readout = pd.read_csv(run / "readout.csv")
    assert set(readout["emotion"]) == set(SIX)  # one one-vs-rest head per category and dataset
    summary = pd.read_csv(run / "manipulation_summary.csv", dtype={"layer": str})
    selective = pd.read_csv(run / "selective.csv", dtype={"layer": str})
    here = selective[selective["layer"] == MANIPULATE[1]]
    assert set(summary["emotion"]) == set(here["category"]) and set(summary["emotion"]) <= set(SIX)
    layers = pd.read_csv(run / "layers.csv")
    assert {f"n_preferring_{name}" for name in SIX} <= set(layers.columns)
    html = (run / "report.html").read_text()
    assert "Traceback" not in html and all(name in html for name in ("faces", "places"))
    assert (run / "figures" / "overlap.png").is_file() and (run / "control" / "overlap.csv").is_file()
