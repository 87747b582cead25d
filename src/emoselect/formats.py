"""Readers for affective picture sets in the formats their authors distribute.

Each reader takes the set's folder and returns a :class:`Ratings`: one row per rated picture with
``image_id``, ``path`` (``None`` where no image file was found), ``valence``, ``arousal`` and, for the
generic format only, ``category``; plus the set's rating scale and the problems met on the way.
Nothing here decides categories or opens images; :mod:`emoselect.stimuli` does that.

Supported formats (``FORMATS``): ``oasis``, ``iaps``, ``naps``, ``gaped``, ``emotion6`` and ``csv``
(a generic ``image,valence[,arousal][,category]`` file whose scale the user states).
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .problems import InputError, Problem

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm"}
MISSING_MARKS = {"", ".", "na", "nan", "n/a", "-", "--", "none", "null"}
GAPED_FILES = ["A", "H", "N", "P", "Sn", "Sp"]
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


def parse_number(value) -> float:
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


def as_scale(scale) -> tuple[float, float]:
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


class ImageIndex:
    """All image files under a folder, findable by relative path or by file stem, ignoring case.

    Stray files (``Thumbs.db``, ``.DS_Store``, ``desktop.ini``, anything that is not an image by its
    extension) are not indexed.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.by_relstem: dict[str, list[Path]] = {}
        self.by_stem: dict[str, list[Path]] = {}
        for path in sorted(self.root.rglob("*")):
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


def _finish(
    fmt: str,
    source: Path,
    scale,
    rows: list[dict],
    index: ImageIndex,
    problems: list[Problem],
    dataset: str,
    with_category: bool = False,
    merge: str = "conflict",
) -> Ratings:
    """Turn parsed rows into a Ratings: merge duplicate IDs, report missing images and unrated ones."""
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


# ---------------------------------------------------------------------------------------------
# One reader per format


def read_oasis(root: Path, dataset: str = "oasis", source: Path | None = None, **_) -> Ratings:
    """OASIS: ``OASIS.csv`` (CR line endings, empty first header cell); images/<Theme>.jpg, 1-7."""
    source = Path(source) if source else _case_insensitive(Path(root), "OASIS.csv")
    if source is None:
        raise InputError(f"{root}: no OASIS.csv")
    rows = _split_rows(read_text(source), ",")
    header, body = rows[0], [r for r in rows[1:] if any(c.strip() for c in r)]
    theme = _column(header, "Theme", source)
    val = _column(header, "Valence_mean", source)
    aro = _column(header, "Arousal_mean", source)
    index, problems, out = ImageIndex(root), [], []
    for row in body:
        if len(row) <= max(theme, val, aro):
            problems.append(Problem(dataset, str(source), f"short row skipped: {','.join(row)[:60]!r}", "excluded"))
            continue
        name = row[theme].strip()
        path = index.find(name + ".jpg", folders=("images", ""))
        out.append(
            dict(
                image_id=name,
                path=str(path) if path else None,
                valence=row[val],
                arousal=parse_number(row[aro]),
                _extra=row[0],
            )
        )
    return _finish("oasis", source, NATIVE_SCALES["oasis"], out, index, problems, dataset)


def _find_iaps_header(lines: list[str]) -> int | None:
    for i, line in enumerate(lines[:200]):
        tokens = {t.strip().lower() for t in re.split(r"\t|\s{2,}", line)}
        if {"iaps", "valmn"} <= tokens:
            return i
    return None


def read_iaps(root: Path, dataset: str = "iaps", source: Path | None = None, **_) -> Ratings:
    """IAPS: tab-separated ``AllSubjects_1-20.txt`` from the technical manual, scale 1-9.

    The header (``desc IAPS valmn ... set``) is found by its content after any preamble; '.' marks a
    missing value; IDs like ``2345.1`` name ``2345.1.jpg`` (any extension case). Pictures rated in
    several sets appear once per set; their means are averaged and the merge is reported.
    """
    source = (
        Path(source)
        if source
        else _find_by_content(Path(root), "*.txt", lambda t: _find_iaps_header(t.split("\n")) is not None)
    )
    lines = read_text(source).split("\n")
    start = _find_iaps_header(lines)
    if start is None:
        raise InputError(
            f"{source}: no header line with 'IAPS' and 'valmn' columns; is this the IAPS AllSubjects file?"
        )
    header = [h.strip() for h in lines[start].split("\t")]
    col = {name: _column(header, name, source) for name in ("IAPS", "valmn", "aromn")}
    set_col = _optional_column(header, "set")
    index, problems, out = ImageIndex(root), [], []
    for line in lines[start + 1 :]:
        cells = [c.strip() for c in line.split("\t")]
        if not line.strip() or len(cells) <= max(col.values()) or not cells[col["IAPS"]]:
            if line.strip():
                problems.append(
                    Problem(dataset, str(source), f"line not read (too few columns): {line[:60]!r}", "excluded")
                )
            continue
        image_id = cells[col["IAPS"]]
        path = index.find(image_id + ".jpg")
        extra = f"set {cells[set_col]}" if set_col is not None and set_col < len(cells) else "set ?"
        out.append(
            dict(
                image_id=image_id,
                path=str(path) if path else None,
                valence=cells[col["valmn"]],
                arousal=parse_number(cells[col["aromn"]]),
                _extra=extra,
            )
        )
    return _finish("iaps", source, NATIVE_SCALES["iaps"], out, index, problems, dataset, merge="mean")


def _naps_header_rows(sheet: pd.DataFrame) -> int | None:
    for r in range(min(len(sheet), 20)):
        cells = {str(c).strip().lower() for c in sheet.iloc[r] if pd.notna(c)}
        if {"id", "description"} <= cells:
            return r
    return None


def _read_excel(path: Path) -> pd.DataFrame:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas' notice that its xlrd engine is deprecated
            return pd.read_excel(
                path, header=None, dtype=object, engine="xlrd" if path.suffix.lower() == ".xls" else "openpyxl"
            )
    except Exception as error:  # xlrd/openpyxl raise many types for broken files
        raise InputError(f"{path}: cannot read this spreadsheet ({type(error).__name__}: {error})") from error


def read_naps(root: Path, dataset: str = "naps", source: Path | None = None, **_) -> Ratings:
    """NAPS: the authors' .xls/.xlsx with three header rows, scale 1-9.

    Row 1 holds group labels (Women, Men, All; merged cells, so forward-filled), row 2 the measure
    (Valence, Av/Ap, Arousal), row 3 ``ID, Category, Nr, V/H, Description`` then ``M, SD`` pairs.
    The "All" valence and arousal means are used; the file is ID + .jpg (any case).
    """
    source = (
        Path(source)
        if source
        else _find_by_content(Path(root), "*.xls*", lambda p: _naps_header_rows(_read_excel(p)) is not None, text=False)
    )
    sheet = _read_excel(source)
    r = _naps_header_rows(sheet)
    if r is None or r < 2:
        raise InputError(
            f"{source}: no NAPS header (a row with 'ID' and 'Description' under two rows of group and measure labels)"
        )
    group = sheet.iloc[r - 2].ffill().astype(str).str.strip().str.lower()
    measure = sheet.iloc[r - 1].ffill().astype(str).str.strip().str.lower()
    stat = sheet.iloc[r].astype(str).str.strip().str.lower()

    def column(measure_name: str) -> int:
        hits = [
            c
            for c in range(sheet.shape[1])
            if group.iloc[c] == "all" and measure.iloc[c].startswith(measure_name) and stat.iloc[c] == "m"
        ]
        if not hits:
            raise InputError(f"{source}: no 'All' / '{measure_name.title()}' / 'M' column in the three header rows")
        return hits[0]

    id_col, val_col, aro_col = list(stat).index("id"), column("valence"), column("arousal")
    index, out = ImageIndex(root), []
    problems: list[Problem] = []
    for _, row in sheet.iloc[r + 1 :].iterrows():
        if pd.isna(row.iloc[id_col]) or not str(row.iloc[id_col]).strip():
            continue
        image_id = str(row.iloc[id_col]).strip()
        path = index.find(image_id + ".jpg")
        out.append(
            dict(
                image_id=image_id,
                path=str(path) if path else None,
                valence=row.iloc[val_col],
                arousal=parse_number(row.iloc[aro_col]),
                _extra="",
            )
        )
    return _finish("naps", source, NATIVE_SCALES["naps"], out, index, problems, dataset)


def read_gaped(root: Path, dataset: str = "gaped", **_) -> Ratings:
    """GAPED: per-category tab-separated ``A.txt H.txt N.txt P.txt Sn.txt Sp.txt``, scale 0-100.

    Each has an empty first header cell, then ``Valence Arousal`` (some add norm columns). Rows name
    ``A001.jpg`` but the files are ``A/A001.bmp``: matched on the stem, in the category's folder first.
    """
    root = Path(root)
    files = [f for f in (_case_insensitive(root, name + ".txt") for name in GAPED_FILES) if f]
    if not files:
        raise InputError(f"{root}: none of the GAPED rating files {', '.join(n + '.txt' for n in GAPED_FILES)}")
    index, problems, out = ImageIndex(root), [], []
    for source in files:
        rows = [r for r in _split_rows(read_text(source), "\t") if any(c.strip() for c in r)]
        header = rows[0]
        val, aro = _column(header, "Valence", source), _optional_column(header, "Arousal")
        for row in rows[1:]:
            if len(row) <= val:
                problems.append(Problem(dataset, str(source), f"short row skipped: {row!r}", "excluded"))
                continue
            stem = Path(row[0].strip()).stem
            path = index.find(stem, folders=(source.stem, ""))
            out.append(
                dict(
                    image_id=stem,
                    path=str(path) if path else None,
                    valence=row[val],
                    arousal=parse_number(row[aro]) if aro is not None and aro < len(row) else np.nan,
                    _extra=source.name,
                )
            )
    return _finish("gaped", root, NATIVE_SCALES["gaped"], out, index, problems, dataset)


CATEGORY_COLUMNS = ("csv", "emotion6")  # formats that can give categories from a column (--categories)
DOMINANT = "dominant"


def _dominant(header: list[str], row: list[str]) -> str:
    """Emotion6: the emotion with the highest ``[prob. NAME]`` value ("" where tied or missing)."""
    probabilities = {
        h.strip("[] ").removeprefix("prob.").strip(): parse_number(row[i]) if i < len(row) else np.nan
        for i, h in enumerate(header)
        if h.strip("[] ").startswith("prob.")
    }
    finite = {name: p for name, p in probabilities.items() if np.isfinite(p)}
    if not finite:
        return ""
    best = max(finite.values())
    winners = [name for name, p in finite.items() if p == best]
    return winners[0] if len(winners) == 1 else ""


def read_emotion6(
    root: Path, dataset: str = "emotion6", source: Path | None = None, category_column: str | None = None, **_
) -> Ratings:
    """Emotion6: tab-separated ``ground_truth.txt`` with bracketed headers; paths under images/; 1-9.
    ``category_column="dominant"``: each picture's most likely emotion (ties: none) as its category."""
    source = Path(source) if source else _case_insensitive(Path(root), "ground_truth.txt")
    if source is None:
        raise InputError(f"{root}: no ground_truth.txt")
    rows = [r for r in _split_rows(read_text(source), "\t") if any(c.strip() for c in r)]
    header = rows[0]
    name, val, aro = (_column(header, h, source) for h in ("image_filename", "valence", "arousal"))
    if category_column not in (None, DOMINANT):
        raise InputError(f"--categories {category_column}: Emotion6 gives '{DOMINANT}' (the most likely emotion)")
    index, problems, out = ImageIndex(root), [], []
    for row in rows[1:]:
        if len(row) <= max(name, val, aro):
            problems.append(Problem(dataset, str(source), f"short row skipped: {row!r}", "excluded"))
            continue
        rel = row[name].strip().replace("\\", "/")
        path = index.find(rel, folders=("images", ""))
        record = dict(
            image_id=str(Path(rel).with_suffix("").as_posix()),
            path=str(path) if path else None,
            valence=row[val],
            arousal=parse_number(row[aro]),
            _extra="",
        )
        if category_column:
            record["category"] = _dominant(header, row)
        out.append(record)
    return _finish(
        "emotion6",
        source,
        NATIVE_SCALES["emotion6"],
        out,
        index,
        problems,
        dataset,
        with_category=bool(category_column),
    )


def _is_generic_csv(text: str) -> bool:
    first = text.split("\n", 1)[0].lower()
    cells = [c.strip() for c in re.split(r"[,;\t]", first)]
    return "image" in cells and "valence" in cells


def read_generic(
    root: Path,
    dataset: str = "csv",
    source: Path | None = None,
    scale=None,
    category_column: str | None = None,
    **_,
) -> Ratings:
    """A generic CSV ``image,valence[,arousal][,category]`` (comma, semicolon or tab separated).

    ``image`` is a path relative to the CSV's folder (or its images/ subfolder). The valence scale
    cannot be guessed and must be given. A ``category`` column, if present, is used as the category;
    ``category_column`` names another column to read as the category (``--categories``).
    """
    if scale is None:
        raise InputError(
            f"{source or root}: a generic ratings file needs its valence scale; pass it, e.g. --scale {dataset}=1-9"
        )
    scale = as_scale(scale)
    source = Path(source) if source else _find_by_content(Path(root), "*.csv", _is_generic_csv)
    text = read_text(source)
    first = text.split("\n", 1)[0]
    delimiter = max([",", ";", "\t"], key=first.count)
    rows = [r for r in _split_rows(text, delimiter) if any(c.strip() for c in r)]
    header = rows[0]
    img, val = _column(header, "image", source), _column(header, "valence", source)
    aro, cat = (
        _optional_column(header, "arousal"),
        _optional_column(header, category_column or "category"),
    )
    if category_column and cat is None:
        raise InputError(
            f"{source}: no column {category_column!r} for --categories (columns: {', '.join(c.strip() for c in header)})"
        )
    index, problems, out = ImageIndex(source.parent), [], []
    for row in rows[1:]:
        if len(row) <= max(img, val):
            problems.append(Problem(dataset, str(source), f"short row skipped: {row!r}", "excluded"))
            continue
        rel = row[img].strip()
        path = index.find(rel, folders=("", "images"))
        record = dict(
            image_id=Path(rel.replace("\\", "/")).with_suffix("").as_posix(),
            path=str(path) if path else None,
            valence=row[val],
            arousal=parse_number(row[aro]) if aro is not None and aro < len(row) else np.nan,
            _extra="",
        )
        if cat is not None:
            record["category"] = row[cat].strip().lower() if cat < len(row) else ""
        out.append(record)
    return _finish("csv", source, scale, out, index, problems, dataset, with_category=cat is not None)


# ---------------------------------------------------------------------------------------------
# Detection and the one entry point


def _case_insensitive(folder: Path, name: str) -> Path | None:
    if (folder / name).is_file():
        return folder / name
    for path in folder.iterdir() if folder.is_dir() else []:
        if path.name.lower() == name.lower() and path.is_file():
            return path
    return None


def _find_by_content(root: Path, pattern: str, test: Callable, text: bool = True) -> Path:
    candidates = sorted(root.glob(pattern)) + sorted(p for p in root.glob("*/" + pattern))
    for path in candidates:
        try:
            if test(read_text(path) if text else path):
                return path
        except InputError:
            continue
    raise InputError(f"{root}: no {pattern} file in the expected format")


READERS: dict[str, Callable[..., Ratings]] = {
    "oasis": read_oasis,
    "iaps": read_iaps,
    "naps": read_naps,
    "gaped": read_gaped,
    "emotion6": read_emotion6,
    "csv": read_generic,
}
FORMATS = list(READERS)


def detect_format(path: Path) -> tuple[str, Path, Path | None]:
    """Which format a folder (or ratings file) is in: (format, root folder, ratings file or None).

    Looks for, in order: OASIS.csv, ground_truth.txt (Emotion6), the GAPED per-category .txt files,
    an IAPS AllSubjects .txt (by its header), a NAPS spreadsheet (by its header rows) and a generic
    CSV with ``image`` and ``valence`` columns.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        root, name = path.parent, path.name.lower()
        if name == "oasis.csv":
            return "oasis", root, path
        if name == "ground_truth.txt":
            return "emotion6", root, path
        if path.suffix.lower() in (".xls", ".xlsx"):
            return "naps", root, path
        content = read_text(path)
        if _find_iaps_header(content.split("\n")) is not None:
            return "iaps", root, path
        if _is_generic_csv(content):
            return "csv", root, path
        if path.stem in GAPED_FILES:
            return "gaped", root, None
        raise InputError(f"{path}: not a ratings file of a known format ({', '.join(FORMATS)})")
    if _case_insensitive(path, "OASIS.csv"):
        return "oasis", path, _case_insensitive(path, "OASIS.csv")
    if _case_insensitive(path, "ground_truth.txt"):
        return "emotion6", path, _case_insensitive(path, "ground_truth.txt")
    if sum(_case_insensitive(path, n + ".txt") is not None for n in GAPED_FILES) >= 2:
        return "gaped", path, None
    checks = [
        ("iaps", "*.txt", lambda t: _find_iaps_header(t.split("\n")) is not None, True),
        ("naps", "*.xls*", lambda p: _naps_header_rows(_read_excel(p)) is not None, False),
        ("csv", "*.csv", _is_generic_csv, True),
    ]
    for fmt, pattern, test, text in checks:
        try:
            return fmt, path, _find_by_content(path, pattern, test, text)
        except InputError:
            continue
    raise InputError(
        f"{path}: no ratings file of a known format found (looked for OASIS.csv, ground_truth.txt, "
        f"GAPED A.txt/N.txt/P.txt..., an IAPS AllSubjects .txt, a NAPS .xls/.xlsx, a CSV with image and "
        f"valence columns); name the format with --format NAME=FORMAT"
    )


def read_ratings(
    path, fmt: str | None = None, dataset: str | None = None, scale=None, category_column: str | None = None
) -> Ratings:
    """Read a picture set's ratings from its folder (or ratings file), detecting the format unless
    ``fmt`` names it. ``scale`` ('LOW-HIGH' or a pair) is required for ``csv`` and overrides the
    native scale of the others. ``category_column`` reads that column into ``category`` (``csv``: any
    column; ``emotion6``: ``dominant``, the emotion with the highest probability)."""
    path = Path(path)
    if fmt is None:
        fmt, root, source = detect_format(path)
    else:
        if fmt not in READERS:
            raise InputError(f"unknown format {fmt!r}; known formats: {', '.join(FORMATS)}")
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        root, source = (path.parent, path) if path.is_file() else (path, None)
    dataset = dataset or fmt
    if category_column and fmt not in CATEGORY_COLUMNS:
        raise InputError(
            f"--categories {category_column}: {fmt} ratings have no category column; it works with csv ratings "
            f"files (any column) and Emotion6 (dominant); for {fmt}, list the categories in a csv file"
        )
    extra = {"category_column": category_column} if category_column else {}
    ratings = READERS[fmt](root, dataset=dataset, source=source, scale=scale, **extra)
    if scale is not None and fmt != "csv":
        ratings.scale = as_scale(scale)
    return ratings
