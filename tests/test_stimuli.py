"""Categories, splits, overrides and every bad-input case of the stimulus stage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import make_generic, make_image, make_oasis
from emoselect.base.problems import InputError
from emoselect.pictures.images import ImageProblem, load_rgb
from emoselect.pictures.stimuli import assign_split, build_stimuli, categorize, category_counts, to_scale


def test_thresholds_map_linearly_onto_each_scale():
    assert to_scale(4.3, (1, 9)) == pytest.approx(4.3)
    assert to_scale(4.3, (1, 7)) == pytest.approx(1 + 3.3 * 6 / 8)
    assert to_scale(6.0, (0, 100)) == pytest.approx(62.5)
    values = np.array([1.0, 4.29, 4.3, 5.0, 6.0, 6.01, np.nan])
    assert list(categorize(values, (1, 9))) == [
        "unpleasant",
        "unpleasant",
        "neutral",
        "neutral",
        "neutral",
        "pleasant",
        "unknown",
    ]
    on_100 = (values - 1) / 8 * 100
    assert list(categorize(on_100, (0, 100))) == list(categorize(values, (1, 9)))


def test_margin_marks_pictures_near_a_boundary_unknown():
    values = np.array([4.0, 4.2, 4.4, 4.7, 5.8, 6.1, 6.4])
    assert list(categorize(values, (1, 9), margin=0.25)) == [
        "unpleasant",
        "unknown",
        "unknown",
        "neutral",
        "unknown",
        "unknown",
        "pleasant",
    ]


def test_split_is_stratified_seeded_and_independent_of_other_datasets():
    table = pd.DataFrame(
        {
            "dataset": ["a"] * 40 + ["b"] * 8,
            "category": ["pleasant"] * 20 + ["neutral"] * 12 + ["unknown"] * 8 + ["neutral"] * 8,
        }
    )
    split = assign_split(table, seed=3)
    assert np.array_equal(split, assign_split(table, seed=3))
    assert not np.array_equal(split, assign_split(table, seed=4))
    counts = pd.crosstab([table["dataset"], table["category"]], split)
    assert counts.loc[("a", "pleasant")].to_dict() == {"none": 0, "train": 6, "units": 8, "val": 2, "test": 4}
    assert counts.loc[("a", "neutral")].to_dict() == {"none": 0, "train": 4, "units": 5, "val": 1, "test": 2}
    # three fractions: no units split, the same val and test pictures as a units split of 0
    paper = assign_split(table, fractions=(0.5, 0.25, 0.25), seed=3)
    assert np.array_equal(paper, assign_split(table, fractions=(0, 0.5, 0.25, 0.25), seed=3))
    paper_counts = pd.crosstab([table["dataset"], table["category"]], paper)
    assert paper_counts.loc[("a", "pleasant")].to_dict() == {"none": 0, "train": 10, "val": 5, "test": 5}
    assert set(split[32:40]) == {"none"}
    alone = assign_split(table[table["dataset"] == "a"].reset_index(drop=True), seed=3)
    assert np.array_equal(alone, split[:40])
    with pytest.raises(InputError):
        assign_split(table, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(InputError, match="four"):
        assign_split(table, fractions=(0.5, 0.5))


def test_overrides_file_records_a_visual_check(tmp_path):
    make_oasis(tmp_path / "set", n=4, valences=[1.5, 3.0, 5.0, 6.5])
    (tmp_path / "over.csv").write_text("image_id,category\nThing 1,neutral\nThing 4,unknown\nNope,pleasant\n")
    stimuli = build_stimuli({"s": tmp_path / "set"}, overrides=tmp_path / "over.csv", progress=False)
    table = stimuli.table.set_index("image_id")
    assert table.loc["Thing 1", "category"] == "neutral" and table.loc["Thing 1", "category_source"] == "override"
    assert table.loc["Thing 4", "category"] == "unknown" and table.loc["Thing 4", "split"] == "none"
    assert any("Nope" in p.problem for p in stimuli.problems)
    (tmp_path / "bad.csv").write_text("image_id,category\nThing 1,happy\n")
    with pytest.raises(InputError, match="happy"):
        build_stimuli({"s": tmp_path / "set"}, overrides=tmp_path / "bad.csv", progress=False)


def test_oasis_category_counts_match_the_mapped_thresholds(oasis_dir):
    stimuli = build_stimuli({"oasis": oasis_dir}, progress=False)
    independent = pd.read_csv(oasis_dir / "OASIS.csv", lineterminator="\r")["Valence_mean"]
    low, high = 1 + 3.3 * 6 / 8, 1 + 5.0 * 6 / 8
    counts = category_counts(stimuli.table).loc["oasis"]
    assert counts["unpleasant"] == (independent < low).sum()
    assert counts["pleasant"] == (independent > high).sum()
    assert counts["neutral"] == ((independent >= low) & (independent <= high)).sum()
    assert counts["total"] == 900
    rgba = [p for p in stimuli.problems if "Monkey 3" in p.file]
    assert rgba == []  # its alpha channel is fully opaque: nothing to report


# ---------------------------------------------------------------------------------------------
# odd and broken pictures


@pytest.mark.parametrize(
    "mode, note",
    [
        ("L", "grayscale"),
        ("RGBA", "composited on white"),
        ("CMYK", "CMYK"),
        ("I;16", "16-bit"),
        ("P", "palette"),
        ("LA", "composited"),
    ],
)
def test_odd_picture_modes_become_rgb_with_a_note(tmp_path, mode, note):
    suffix = {"CMYK": ".jpg", "L": ".jpg"}.get(mode, ".png")
    path = make_image(tmp_path / f"x{suffix}", mode=mode)
    image, notes = load_rgb(path)
    assert image.mode == "RGB" and image.size == (48, 40)
    assert any(note in n for n in notes), notes


def test_sixteen_bit_is_rescaled_not_clipped(tmp_path):
    array = np.full((20, 20), 32768, dtype=np.uint16)
    Image.fromarray(array).save(tmp_path / "half.png")
    image, _ = load_rgb(tmp_path / "half.png")
    assert np.asarray(image)[0, 0, 0] == round(32768 / 65535 * 255)


def test_transparent_pixels_are_white(tmp_path):
    array = np.zeros((20, 20, 4), dtype=np.uint8)
    Image.fromarray(array, mode="RGBA").save(tmp_path / "clear.png")
    image, _ = load_rgb(tmp_path / "clear.png")
    assert np.all(np.asarray(image) == 255)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (60, 30), (200, 10, 10))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees
    image.save(tmp_path / "rot.jpg", exif=exif)
    loaded, _ = load_rgb(tmp_path / "rot.jpg")
    assert loaded.size == (30, 60)


def test_broken_pictures_raise_a_clear_problem(tmp_path):
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    make_image(tmp_path / "whole.jpg", size=(200, 200))
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    make_image(tmp_path / "dot.png", size=(4, 4))
    with pytest.raises(ImageProblem, match="corrupt or unknown"):
        load_rgb(tmp_path / "junk.jpg")
    with pytest.raises(ImageProblem, match="cannot decode"):
        load_rgb(tmp_path / "cut.jpg")
    with pytest.raises(ImageProblem, match="4x4"):
        load_rgb(tmp_path / "dot.png")
    with pytest.raises(ImageProblem, match="not found"):
        load_rgb(tmp_path / "absent.jpg")
    _, notes = load_rgb(make_image(tmp_path / "small.png", size=(30, 20)))
    assert any("small image" in n for n in notes)


def test_bad_pictures_are_skipped_and_listed_never_lost(tmp_path):
    root = tmp_path / "set"
    rows = [
        ("ok.png", 2.0, 3.0),
        ("junk.jpg", 5.0, 3.0),
        ("cut.jpg", 8.0, 3.0),
        ("gray.png", 8.5, 3.0),
        ("cmyk.jpg", 1.5, 3.0),
        ("tiny.png", 5.0, 3.0),
        ("noval.png", ".", 3.0),
        ("out.png", 12.0, 3.0),
    ]
    root.mkdir()
    (root / "junk.jpg").write_bytes(b"\x00" * 50)
    make_image(root / "big.jpg", size=(300, 300))
    (root / "cut.jpg").write_bytes((root / "big.jpg").read_bytes()[:2000])
    (root / "big.jpg").unlink()
    make_image(root / "gray.png", mode="L")
    make_image(root / "cmyk.jpg", mode="CMYK")
    make_image(root / "tiny.png", size=(3, 3))
    make_generic(root, rows=rows)
    stimuli = build_stimuli({"s": root}, scales={"s": "1-9"}, progress=False)
    table = stimuli.table.set_index("image_id")
    assert sorted(table.index) == ["cmyk", "gray", "noval", "ok", "out"]
    assert table.loc["noval", "category"] == "unknown" and table.loc["out", "category"] == "unknown"
    assert table.loc["gray", "category"] == "pleasant" and table.loc["cmyk", "category"] == "unpleasant"
    listed = {(p.file.rsplit("/", 1)[-1], p.action) for p in stimuli.problems}
    assert {
        ("junk.jpg", "skipped"),
        ("cut.jpg", "skipped"),
        ("tiny.png", "skipped"),
        ("gray.png", "converted"),
        ("cmyk.jpg", "converted"),
    } <= listed
    texts = " | ".join(p.problem for p in stimuli.problems)
    assert "'noval' has no valence rating" in texts and "outside the 1-9 scale" in texts
    assert "fewer than 10" in texts


def test_dataset_with_no_usable_picture_is_an_error(tmp_path):
    root = tmp_path / "set"
    root.mkdir()
    (root / "a.jpg").write_bytes(b"broken")
    make_generic(root, rows=[("a.jpg", 3.0, 3.0)])
    with pytest.raises(InputError, match="no usable picture"):
        build_stimuli({"s": root}, scales={"s": "1-9"}, progress=False)


def test_limit_and_unknown_dataset_names(tmp_path):
    make_oasis(tmp_path / "set", n=6)
    stimuli = build_stimuli({"s": tmp_path / "set"}, limit=3, progress=False)
    assert sorted(stimuli.table["category"]) == ["neutral", "pleasant", "unpleasant"]  # not the first 3 rows
    with pytest.raises(InputError, match="'t'"):
        build_stimuli({"s": tmp_path / "set"}, scales={"t": "1-9"}, progress=False)
    with pytest.raises(InputError, match="no dataset 'x'"):
        stimuli.of("x")


def test_image_checks_are_cached_and_a_changed_file_is_rechecked(tmp_path):
    make_oasis(tmp_path / "set", n=3)
    first = build_stimuli({"s": tmp_path / "set"}, cache_dir=tmp_path / "c", progress=False)
    assert (tmp_path / "c" / "image-checks.json").is_file()
    make_image(tmp_path / "set" / "images" / "Thing 1.jpg", seed=99)
    second = build_stimuli({"s": tmp_path / "set"}, cache_dir=tmp_path / "c", progress=False)
    assert first.table["sha1"].iloc[0] != second.table["sha1"].iloc[0]
    assert first.table["sha1"].iloc[1] == second.table["sha1"].iloc[1]


def test_the_same_picture_twice_is_found_by_content_defect_10_7(tmp_path):
    """A copy within a set is excluded (it would count twice, in two splits); two datasets on the same
    pictures are listed and refused as a cross-dataset pair."""
    import shutil

    from emoselect.analysis.selectivity import SelectivityOptions, define_groups

    root = make_oasis(tmp_path / "set", n=12)
    images = sorted((root / "images").glob("*.jpg"))
    shutil.copy(images[0], images[1])  # the second picture is the first, renamed
    stimuli = build_stimuli({"a": root}, cache_dir=tmp_path / "cache", progress=False)
    assert len(stimuli.table) == 11
    dropped = [p for p in stimuli.problems if "same picture" in p.problem]
    assert len(dropped) == 1 and dropped[0].action == "excluded" and images[1].name in dropped[0].file
    both = build_stimuli({"a": root, "b": root}, cache_dir=tmp_path / "cache", progress=False)
    assert sum("same picture" in p.problem and p.action == "note" for p in both.problems) == 11
    with pytest.raises(InputError, match="share 100% of their pictures"):
        define_groups(both, SelectivityOptions(pair=("a", "b")))


@pytest.mark.parametrize("name", ["../../x", "/abs", "a b", "x/y", ""])
def test_dataset_names_cannot_be_paths_defect_10_3(tmp_path, name):
    root = make_oasis(tmp_path / "set", n=6)
    with pytest.raises(InputError, match="dataset name"):
        build_stimuli({name: root}, cache_dir=tmp_path / "cache", progress=False)


def test_limit_is_a_stratified_seeded_sample_defect_10_11(tmp_path):
    from emoselect.pictures.stimuli import stratified_sample

    table = pd.DataFrame(
        {
            "image_id": [str(i) for i in range(100)],
            "category": ["pleasant"] * 60 + ["neutral"] * 30 + ["unpleasant"] * 9 + ["unknown"],
        }
    )
    sample = stratified_sample(table, 20, seed=0, dataset="d")
    assert sample["category"].value_counts().to_dict() == {"pleasant": 12, "neutral": 6, "unpleasant": 2}
    assert len(sample) == 20 and list(sample.index) == sorted(sample.index)
    pd.testing.assert_frame_equal(sample, stratified_sample(table, 20, seed=0, dataset="d"))
    assert not sample.equals(stratified_sample(table, 20, seed=1, dataset="d"))
    small = stratified_sample(table, 4, seed=0, dataset="d")
    assert set(small["category"]) == {"pleasant", "neutral", "unpleasant"}  # unknown gets no guaranteed slot
    assert stratified_sample(table, 500, seed=0, dataset="d") is table
