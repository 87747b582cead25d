"""Each native ratings format read from a fixture that reproduces its quirks."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from conftest import make_emotion6, make_gaped, make_generic, make_iaps, make_naps, make_oasis
from emoselect.base.problems import InputError
from emoselect.pictures.formats import detect_format, read_ratings
from emoselect.pictures.ratings import parse_number, parse_scale, read_text


def by_id(ratings):
    return ratings.table.set_index("image_id")


def test_oasis_cr_line_endings_empty_header_cell_and_trailing_space(tmp_path):
    make_oasis(tmp_path, n=4, valences=[1.5, 3.0, 5.0, 6.5])
    assert b"\n" not in (tmp_path / "OASIS.csv").read_bytes()
    ratings = read_ratings(tmp_path)
    assert ratings.format == "oasis" and ratings.scale == (1.0, 7.0)
    table = by_id(ratings)
    assert list(table.index) == ["Thing 1", "Thing 2", "Thing 3", "Thing 4"]  # "Thing 2 " stripped
    assert table.loc["Thing 2", "path"].endswith("images/Thing 2.jpg")
    np.testing.assert_allclose(table["valence"], [1.5, 3.0, 5.0, 6.5])
    assert ratings.problems == []


def test_iaps_header_found_by_content_missing_marks_repeats_and_extension_case(tmp_path):
    make_iaps(tmp_path)
    ratings = read_ratings(tmp_path)
    assert ratings.format == "iaps" and ratings.scale == (1.0, 9.0)
    table = by_id(ratings)
    assert set(table.index) == {"1050", "1710", "2345.1", "5500", "7000", "6350"}
    assert table.loc["2345.1", "path"].endswith("2345.1.jpg")
    assert table.loc["1710", "path"].endswith("1710.JPG")
    assert table.loc["5500", "valence"] == pytest.approx((5.42 + 5.62) / 2)  # rated in sets 1 and 8
    assert np.isnan(table.loc["7000", "valence"]) and table.loc["7000", "arousal"] == 2.5
    merged = [p for p in ratings.problems if p.action == "merged"]
    assert len(merged) == 1 and "5500" in merged[0].problem and "set 1" in merged[0].problem


@pytest.mark.parametrize("kind", ["xlsx", "xls"])
def test_naps_three_header_rows_uses_all_group_means(tmp_path, kind):
    make_naps(tmp_path, kind)
    ratings = read_ratings(tmp_path)
    assert ratings.format == "naps" and ratings.scale == (1.0, 9.0)
    table = by_id(ratings)
    np.testing.assert_allclose(table.loc[["Animals_001_h", "Faces_002_v", "People_003_h"], "valence"], [6.8, 5.1, 2.2])
    np.testing.assert_allclose(table.loc[["Animals_001_h", "Faces_002_v", "People_003_h"], "arousal"], [4.2, 3.3, 7.2])
    assert table.loc["Faces_002_v", "path"].endswith("Faces_002_v.JPG")


def test_gaped_per_category_files_bmp_by_stem_and_thumbs_db(tmp_path):
    make_gaped(tmp_path)
    ratings = read_ratings(tmp_path)
    assert ratings.format == "gaped" and ratings.scale == (0.0, 100.0)
    table = by_id(ratings)
    assert len(table) == 6
    assert table.loc["A001", "path"].endswith("A/A001.bmp")
    assert table.loc["P002", "valence"] == pytest.approx(90.2)
    assert not any("Thumbs" in p.file for p in ratings.problems)


def test_emotion6_bracketed_header_and_relative_paths(tmp_path):
    make_emotion6(tmp_path)
    ratings = read_ratings(tmp_path)
    assert ratings.format == "emotion6" and ratings.scale == (1.0, 9.0)
    table = by_id(ratings)
    assert list(table.index) == ["anger/1", "joy/1", "neutral/3"]
    assert table.loc["joy/1", "path"].endswith("images/joy/1.jpg")
    assert table.loc["anger/1", "arousal"] == 6.0


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_generic_csv_needs_scale_and_reads_any_delimiter(tmp_path, delimiter):
    make_generic(tmp_path, delimiter=delimiter)
    with pytest.raises(InputError, match="scale"):
        read_ratings(tmp_path / "ratings.csv")
    ratings = read_ratings(tmp_path / "ratings.csv", scale="1-7")
    assert ratings.format == "csv" and ratings.scale == (1.0, 7.0)
    assert list(ratings.table["valence"]) == [1.0, 4.0, 7.0]


def test_generic_csv_category_column(tmp_path):
    make_generic(tmp_path, rows=[("a.png", 2, "Pleasant"), ("b.png", 3, "neutral")], header="image,valence,category")
    table = read_ratings(tmp_path, fmt="csv", scale="1-9").table
    assert list(table["category"]) == ["pleasant", "neutral"]


def test_format_can_be_forced_and_unknown_format_is_clear(tmp_path):
    make_emotion6(tmp_path)
    assert read_ratings(tmp_path, fmt="emotion6").format == "emotion6"
    with pytest.raises(InputError, match="unknown format 'imdb'"):
        read_ratings(tmp_path, fmt="imdb")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no ratings file of a known format"):
        detect_format(empty)
    with pytest.raises(InputError, match="no such file"):
        read_ratings(tmp_path / "nowhere")


def test_text_reading_normalises_line_endings_and_encodings(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("a\r\nb\rc\nd".encode("cp1252") + "\xe9".encode("cp1252"))
    assert read_text(path) == "a\nb\nc\nd\xe9"
    path.write_bytes(b"\xef\xbb\xbfx,y\r")
    assert read_text(path) == "x,y\n"


def test_numbers_and_scales():
    assert np.isnan(parse_number(".")) and np.isnan(parse_number("NA")) and np.isnan(parse_number("abc"))
    assert parse_number("4,5") == 4.5 and parse_number(" 3 ") == 3.0
    assert parse_scale("0-100") == (0.0, 100.0) and parse_scale("-3..3") == (-3.0, 3.0)
    with pytest.raises(InputError):
        parse_scale("seven")
    with pytest.raises(InputError):
        parse_scale("9-1")


def test_duplicate_ids_identical_merge_and_conflicting_excluded(tmp_path):
    make_generic(
        tmp_path,
        rows=[("a.png", 2.0, 3.0), ("a.png", 2.0, 3.0), ("b.png", 5.0, 3.0), ("b.png", 6.0, 3.0), ("c.png", 8.0, 3.0)],
    )
    ratings = read_ratings(tmp_path, scale="1-9")
    assert sorted(ratings.table["image_id"]) == ["a", "c"]
    actions = {p.problem.split("'")[1]: p.action for p in ratings.problems}  # nothing else reported
    assert actions == {"a": "merged", "b": "excluded"}


def test_rating_without_image_and_image_without_rating_are_reported(tmp_path):
    make_oasis(tmp_path, n=3)
    (tmp_path / "images" / "Thing 3.jpg").unlink()
    from conftest import make_image

    make_image(tmp_path / "images" / "Extra.jpg")
    ratings = read_ratings(tmp_path)
    assert list(ratings.table["image_id"]) == ["Thing 1", "Thing 2"]
    kinds = sorted((p.action, p.problem.split(" ")[0]) for p in ratings.problems)
    assert kinds == [("excluded", "rating"), ("skipped", "image")]
    assert ratings.unrated_images[0].endswith("Extra.jpg")


def test_no_rated_image_at_all_is_an_error(tmp_path):
    make_oasis(tmp_path, n=2)
    for path in (tmp_path / "images").iterdir():
        path.unlink()
    with pytest.raises(InputError, match="no rated image"):
        read_ratings(tmp_path)


def test_real_oasis_file(oasis_dir):
    ratings = read_ratings(oasis_dir)
    table = ratings.table
    assert len(table) == 900 and ratings.problems == []
    independent = pd.read_csv(oasis_dir / "OASIS.csv", lineterminator="\r")
    np.testing.assert_allclose(table["valence"], independent["Valence_mean"])
    assert {"Crosswalk 1", "War 2"} <= set(table["image_id"])


@pytest.mark.parametrize(
    "make, ratings_file, content",
    [(make_oasis, "OASIS.csv", b""), (make_oasis, "OASIS.csv", b"\r\r \r"), (make_gaped, "A.txt", b""),
     (make_emotion6, "ground_truth.txt", b"\n\n")],
)  # fmt: skip
def test_an_empty_ratings_file_is_one_message_naming_it(tmp_path, make, ratings_file, content):
    """Issue 20 item 8: a zero-byte (or blank) ratings file was an IndexError from inside the reader."""
    make(tmp_path)
    target = next(p for p in tmp_path.rglob("*") if p.name == ratings_file)
    target.write_bytes(content)
    with pytest.raises(InputError, match=re.escape(f"{target}: the ratings file is empty")):
        read_ratings(tmp_path)


def test_a_set_without_a_usable_picture_says_why_in_the_message(tmp_path):
    """Issue 20 item 17 (part): the message said "see the problems listed above", listing none."""
    from emoselect.pictures.stimuli import build_stimuli

    make_oasis(tmp_path / "broken", n=2)
    for picture in (tmp_path / "broken" / "images").iterdir():
        picture.write_bytes(b"not a picture")
    with pytest.raises(InputError, match=r"no usable picture \(2 problems, the first: .*Thing 1.jpg: "):
        build_stimuli({"b": tmp_path / "broken"}, cache_dir=tmp_path / "checks", progress=False)


def test_a_linked_images_folder_is_searched_and_links_outside_the_set_are_listed(tmp_path):
    """Issue 20 item 17 (part): a symlinked images/ folder was not searched, and nothing said why;
    picture links to files outside the set were followed silently."""
    import shutil

    from emoselect.pictures.stimuli import build_stimuli

    make_oasis(tmp_path / "set", n=4)
    shutil.move(tmp_path / "set" / "images", tmp_path / "elsewhere")
    (tmp_path / "set" / "images").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    stimuli = build_stimuli({"s": tmp_path / "set"}, cache_dir=tmp_path / "checks", progress=False)
    assert len(stimuli.table) == 4
    assert not any("symbolic link" in p.problem for p in stimuli.problems)  # the folder itself is a link: fine
    (tmp_path / "set" / "images").unlink()
    (tmp_path / "set" / "images").mkdir()
    for picture in sorted((tmp_path / "elsewhere").iterdir())[:3]:
        shutil.copy(picture, tmp_path / "set" / "images" / picture.name)
    outside = sorted((tmp_path / "elsewhere").iterdir())[3]
    (tmp_path / "set" / "images" / outside.name).symlink_to(outside)
    stimuli = build_stimuli({"s": tmp_path / "set"}, cache_dir=tmp_path / "checks", progress=False)
    assert len(stimuli.table) == 4
    notes = [p for p in stimuli.problems if "symbolic link" in p.problem]
    assert len(notes) == 1 and notes[0].file.endswith(outside.name) and notes[0].action == "note"
    assert str(outside) in notes[0].problem
