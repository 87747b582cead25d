"""Readers for affective picture sets in the formats their authors distribute.

Each reader takes the set's folder and returns a :class:`Ratings`: one row per rated picture with
``image_id``, ``path`` (``None`` where no image file was found), ``valence``, ``arousal`` and, for the
generic format only, ``category``; plus the set's rating scale and the problems met on the way.
Nothing here decides categories or opens images; :mod:`emoselect.stimuli` does that.

Supported formats (``FORMATS``): ``oasis``, ``iaps``, ``naps``, ``gaped``, ``emotion6`` and ``csv``
(a generic ``image,valence[,arousal][,category]`` file whose scale the user states).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..base.problems import InputError, Problem
from .ratings import (
    NATIVE_SCALES,
    ImageIndex,
    Ratings,
    _column,
    _finish,
    _nonblank_rows,
    _optional_column,
    _RatingFile,
    as_scale,
    parse_number,
    read_text,
)

GAPED_FILES = ["A", "H", "N", "P", "Sn", "Sp"]


# ---------------------------------------------------------------------------------------------
# One reader per format


def read_oasis(root: Path, dataset: str = "oasis", source: Path | None = None, **_: object) -> Ratings:
    """OASIS: ``OASIS.csv`` (CR line endings, empty first header cell); images/<Theme>.jpg, 1-7."""
    source = Path(source) if source else _case_insensitive(Path(root), "OASIS.csv")
    if source is None:
        raise InputError(f"{root}: no OASIS.csv")
    rows = _nonblank_rows(read_text(source), ",", source)
    header, body = rows[0], rows[1:]
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
    origin = _RatingFile(format="oasis", source=source, scale=NATIVE_SCALES["oasis"], dataset=dataset)
    return _finish(origin, out, index, problems)


def _find_iaps_header(lines: list[str]) -> int | None:
    for i, line in enumerate(lines[:200]):
        tokens = {t.strip().lower() for t in re.split(r"\t|\s{2,}", line)}
        if {"iaps", "valmn"} <= tokens:
            return i
    return None


def read_iaps(root: Path, dataset: str = "iaps", source: Path | None = None, **_: object) -> Ratings:
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
    origin = _RatingFile(format="iaps", source=source, scale=NATIVE_SCALES["iaps"], dataset=dataset)
    return _finish(origin, out, index, problems, merge="mean")


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


def read_naps(root: Path, dataset: str = "naps", source: Path | None = None, **_: object) -> Ratings:
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
    origin = _RatingFile(format="naps", source=source, scale=NATIVE_SCALES["naps"], dataset=dataset)
    return _finish(origin, out, index, problems)


def read_gaped(root: Path, dataset: str = "gaped", **_: object) -> Ratings:
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
        rows = _nonblank_rows(read_text(source), "\t", source)
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
    origin = _RatingFile(format="gaped", source=root, scale=NATIVE_SCALES["gaped"], dataset=dataset)
    return _finish(origin, out, index, problems)


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
    root: Path,
    dataset: str = "emotion6",
    source: Path | None = None,
    category_column: str | None = None,
    **_: object,
) -> Ratings:
    """Emotion6: tab-separated ``ground_truth.txt`` with bracketed headers; paths under images/; 1-9.
    ``category_column="dominant"``: each picture's most likely emotion (ties: none) as its category."""
    source = Path(source) if source else _case_insensitive(Path(root), "ground_truth.txt")
    if source is None:
        raise InputError(f"{root}: no ground_truth.txt")
    rows = _nonblank_rows(read_text(source), "\t", source)
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
    origin = _RatingFile(format="emotion6", source=source, scale=NATIVE_SCALES["emotion6"], dataset=dataset)
    return _finish(origin, out, index, problems, with_category=bool(category_column))


def _is_generic_csv(text: str) -> bool:
    first = text.split("\n", 1)[0].lower()
    cells = [c.strip() for c in re.split(r"[,;\t]", first)]
    return "image" in cells and "valence" in cells


def read_generic(
    root: Path,
    dataset: str = "csv",
    source: Path | None = None,
    scale: str | Sequence[float] | None = None,
    category_column: str | None = None,
    **_: object,
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
    rows = _nonblank_rows(text, delimiter, source)
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
    origin = _RatingFile(format="csv", source=source, scale=scale, dataset=dataset)
    return _finish(origin, out, index, problems, with_category=cat is not None)


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
    path: str | Path,
    fmt: str | None = None,
    dataset: str | None = None,
    scale: str | Sequence[float] | None = None,
    category_column: str | None = None,
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
