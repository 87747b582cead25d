"""What every rating-file reader shares: the :class:`Ratings` record, tolerant parsing of numbers,
scales and columns, the index of a set's image files, and the merge of duplicate picture IDs.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..base.problems import InputError, Problem

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm"}
MISSING_MARKS = {"", ".", "na", "nan", "n/a", "-", "--", "none", "null"}
NATIVE_SCALES = {
    "oasis": (1.0, 7.0),
    "iaps": (1.0, 9.0),
    "naps": (1.0, 9.0),
    "gaped": (0.0, 100.0),
    "emotion6": (1.0, 9.0),
}


@dataclass
class Ratings:
    """The ratings of one picture set.

    ``table`` has columns image_id (str), path (str or None), valence, arousal (float, NaN where
    missing) and category (str, only where the file itself states categories). ``scale`` is the
    (lowest, highest) value of the valence scale. ``unrated_images`` lists image files that have no
    rating row.
    """

    format: str
    source: Path
    scale: tuple[float, float]
    table: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    unrated_images: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Small helpers shared by the readers


def read_text(path: Path) -> str:
    """A text file's content with every line ending (CRLF, CR, LF) turned into LF.

    Tries UTF-8 (with or without BOM), then Windows-1252; rating files come from Windows, Mac OS 9
    and Linux machines alike.
    """
    raw = Path(path).read_bytes()
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_number(value: object) -> float:
    """A rating cell as float; NaN for missing marks ('.', '', 'NA'); accepts a decimal comma."""
    if value is None:
        return np.nan
    if isinstance(value, (int, float, np.number)):
        return float(value)
    text = str(value).strip()
    if text.lower() in MISSING_MARKS:
        return np.nan
    if re.fullmatch(r"-?\d+,\d+", text):
        text = text.replace(",", ".")
    try:
        return float(text)
    except ValueError:
        return np.nan


def as_scale(scale: str | Sequence[float]) -> tuple[float, float]:
    """A valence scale given as 'LOW-HIGH' text or as a (low, high) pair."""
    if isinstance(scale, str):
        return parse_scale(scale)
    low, high = scale
    return float(low), float(high)


def parse_scale(text: str) -> tuple[float, float]:
    """'1-9', '0-100', '1,7' or '-3..3' as (low, high); raises InputError if it is not a scale."""
    match = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*(?:-|,|:|\.\.|to)\s*(-?\d+(?:\.\d+)?)\s*", str(text))
    if not match:
        raise InputError(f"cannot read the rating scale {text!r}: write it as LOW-HIGH, e.g. 1-9 or 0-100")
    low, high = float(match.group(1)), float(match.group(2))
    if not high > low:
        raise InputError(f"rating scale {text!r}: the highest value must be above the lowest")
    return low, high


def _files_under(root: Path) -> list[Path]:
    """Every file under ``root``, sorted, following symbolic links to folders (an ``images`` folder
    that is a link is searched) but never into a folder twice (a link loop)."""
    seen, files = set(), []
    for folder, folders, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            folders[:] = []
            continue
        seen.add(real)
        files += [Path(folder) / name for name in names]
    return sorted(files)


class ImageIndex:
    """All image files under a folder, findable by relative path or by file stem, ignoring case.

    Stray files (``Thumbs.db``, ``.DS_Store``, ``desktop.ini``, anything that is not an image by its
    extension) are not indexed.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.by_relstem: dict[str, list[Path]] = {}
        self.by_stem: dict[str, list[Path]] = {}
        for path in _files_under(self.root):
            if path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
                continue
            rel = path.relative_to(self.root).with_suffix("").as_posix().lower()
            self.by_relstem.setdefault(rel, []).append(path)
            self.by_stem.setdefault(path.stem.lower(), []).append(path)

    def all_paths(self) -> set[Path]:
        return {p for paths in self.by_stem.values() for p in paths}

    def find(self, name: str, folders: tuple[str, ...] = ("",), extension: str | None = None) -> Path | None:
        """The image called ``name`` (a file name or relative path; its extension may differ in case
        or kind) under one of ``folders``, else the only file anywhere with that stem; None if absent
        or ambiguous. A name that leaves the folder (absolute, or with '..') is never matched: its row
        is excluded and listed, not matched by stem to another picture of the set."""
        name = name.replace("\\", "/")
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in name.split("/"):
            return None
        stem = Path(name).with_suffix("").as_posix() if Path(name).suffix.lower() in IMAGE_EXTENSIONS else name
        for folder in folders:
            key = f"{folder}/{stem}".strip("/").lower()
            hits = self.by_relstem.get(key, [])
            if extension:
                hits = [p for p in hits if p.suffix.lower() == extension.lower()] or hits
            if len(hits) >= 1:
                return hits[0]
        hits = self.by_stem.get(Path(stem).name.lower(), [])
        return hits[0] if len(hits) == 1 else None


@dataclass(frozen=True, kw_only=True)
class _RatingFile:
    """Where parsed rating rows come from: the ``format`` name, the ``source`` ratings file (or the
    set's folder), the valence ``scale`` (lowest, highest) and the ``dataset`` name problems are
    reported under."""

    format: str
    source: Path
    scale: tuple[float, float]
    dataset: str


def _finish(
    origin: _RatingFile,
    rows: list[dict],
    index: ImageIndex,
    problems: list[Problem],
    with_category: bool = False,
    merge: str = "conflict",
) -> Ratings:
    """Turn parsed rows into a Ratings: merge duplicate IDs, report missing images and unrated ones."""
    fmt, source, scale, dataset = origin.format, origin.source, origin.scale, origin.dataset
    columns = ["image_id", "path", "valence", "arousal"] + (["category"] if with_category else [])
    table = pd.DataFrame(rows, columns=columns + ["_extra"]) if rows else pd.DataFrame(columns=columns + ["_extra"])
    raw = table["valence"]  # the readers keep the cell as written; converted here
    table["valence"] = raw.map(parse_number).astype(float)
    unparsed = table["valence"].isna()
    for image_id, value in zip(table.loc[unparsed, "image_id"], raw[unparsed]):
        if str(value).strip().lower() not in MISSING_MARKS:
            problems.append(
                Problem(
                    dataset,
                    str(source),
                    f"valence {str(value)!r} of {image_id!r} is not a number: category unknown",
                    "note",
                )
            )
    rated = {Path(p).resolve() for p in table["path"].dropna()}
    table = _merge_duplicates(table, source, problems, dataset, merge)
    table = table.drop(columns="_extra")
    missing = table["path"].isna()
    for image_id in table.loc[missing, "image_id"]:
        problems.append(
            Problem(dataset, str(source), f"rating for {image_id!r} has no image file under {index.root}", "excluded")
        )
    table = table.loc[~missing].reset_index(drop=True)
    if table.empty:
        raise InputError(f"{source}: no rated image was found (0 rows with both a rating and an image file)")
    unrated = sorted(str(p) for p in index.all_paths() if p.resolve() not in rated)
    for path in unrated:
        problems.append(Problem(dataset, path, "image file has no rating row", "skipped"))
    return Ratings(fmt, source, scale, table, problems, unrated)


def _merge_duplicates(
    table: pd.DataFrame, source: Path, problems: list[Problem], dataset: str, merge: str
) -> pd.DataFrame:
    """Rows sharing an image_id: identical ones collapse; ``merge='mean'`` averages differing
    ratings (IAPS pictures rated in several sets); otherwise conflicting rows are all excluded."""
    dup_ids = table.loc[table["image_id"].duplicated(keep=False), "image_id"].unique()
    if len(dup_ids) == 0:
        return table
    keep = ~table["image_id"].isin(dup_ids)
    merged = []
    for image_id in dup_ids:
        group = table[table["image_id"] == image_id]
        ratings = group[["valence", "arousal"]].to_numpy(float)
        same = np.allclose(ratings, ratings[0], equal_nan=True)
        if "category" in group and group["category"].nunique(dropna=False) > 1:
            same = False
        if same:
            problems.append(
                Problem(
                    dataset, str(source), f"ID {image_id!r} appears {len(group)} times with the same ratings", "merged"
                )
            )
            merged.append(group.iloc[[0]])
        elif merge == "mean":
            row = group.iloc[[0]].copy()
            row["valence"] = np.nanmean(ratings[:, 0]) if np.isfinite(ratings[:, 0]).any() else np.nan
            row["arousal"] = np.nanmean(ratings[:, 1]) if np.isfinite(ratings[:, 1]).any() else np.nan
            extras = ", ".join(str(e) for e in group["_extra"])
            problems.append(
                Problem(
                    dataset,
                    str(source),
                    f"ID {image_id!r} rated {len(group)} times ({extras}); ratings averaged",
                    "merged",
                )
            )
            merged.append(row)
        else:
            problems.append(
                Problem(
                    dataset,
                    str(source),
                    f"ID {image_id!r} appears {len(group)} times with different ratings; all its rows excluded",
                    "excluded",
                )
            )
    return pd.concat([table[keep]] + merged).sort_index().reset_index(drop=True)


def _optional_column(names: list[str], wanted: str) -> int | None:
    """Index of the header cell equal to ``wanted`` (case and brackets ignored), None if absent."""
    clean = [re.sub(r"[\[\]]", "", str(n)).strip().lower() for n in names]
    return clean.index(wanted.lower()) if wanted.lower() in clean else None


def _column(names: list[str], wanted: str, source: Path) -> int:
    """Index of the header cell equal to ``wanted``; an :class:`InputError` naming the file if absent."""
    index = _optional_column(names, wanted)
    if index is None:
        raise InputError(f"{source}: no column {wanted!r} in the header {names}")
    return index


def _split_rows(text: str, delimiter: str) -> list[list[str]]:
    return [row for row in csv.reader(io.StringIO(text), delimiter=delimiter)]


def _nonblank_rows(text: str, delimiter: str, source: Path) -> list[list[str]]:
    """The rows of a ratings file's ``text`` with at least one non-blank cell (the header first); an
    :class:`InputError` naming ``source`` when there is none (an empty file)."""
    rows = [r for r in _split_rows(text, delimiter) if any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"{source}: the ratings file is empty (no header row)")
    return rows
