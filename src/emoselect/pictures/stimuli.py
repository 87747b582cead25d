"""The stimulus table: which pictures, their ratings, emotion category and data split.

``build_stimuli`` reads each picture set's native ratings (:mod:`emoselect.formats`), checks that
every picture opens (:mod:`emoselect.images`), assigns a category from valence and a stratified,
seeded units/train/val/test split (units: the pictures that choose the selective units; the
rest: the readout heads') and a seeded half (the split-half that stands in for a second dataset).
The result is one table with columns
``dataset, image_id, path, valence, arousal, category, split, half, category_source, sha1`` and the list of
problems met. Pictures that cannot be opened, and ratings without a picture, are not in the table but
in the problems; pictures whose category is ``unknown`` stay in the table (their responses are still
recorded in the run folder) and are excluded from every analysis of emoselect's, which all work on
pictures with a category.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..base.files import file_digest, write_csv_atomic, write_text_atomic
from ..base.problems import InputError, Problem
from ..base.randomness import random_stream
from .formats import read_ratings
from .images import MAX_PIXELS, ImageProblem, load_rgb
from .ratings import Ratings, read_text

CATEGORIES = ("pleasant", "neutral", "unpleasant")
UNKNOWN = "unknown"
PAPER_THRESHOLDS = (4.3, 6.0)  # unpleasant below 4.3, pleasant above 6.0, on the 1-9 scale
# fractions of each dataset and category: units (pictures that choose the selective units), and the
# heads' train, val and test splits; units = 0 is the paper's design (units chosen on the heads'
# training pictures)
DEFAULT_SPLIT = (0.4, 0.3, 0.1, 0.2)
MIN_PER_CATEGORY = 10
STIMULI_COLUMNS = [
    "dataset", "image_id", "path", "valence", "arousal", "category", "split", "half", "category_source", "sha1"
]  # fmt: skip


@dataclass
class Stimuli:
    """All datasets' pictures in one table (see module docstring), with per-dataset metadata."""

    table: pd.DataFrame
    scales: dict[str, tuple[float, float]] = field(default_factory=dict)
    formats: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(self.table["dataset"]))

    def of(self, dataset: str) -> pd.DataFrame:
        """The rows of one dataset, in table order, with a fresh 0..n-1 index (= response rows)."""
        rows = self.table[self.table["dataset"] == dataset]
        if rows.empty:
            raise InputError(f"no dataset {dataset!r} in this run (datasets: {', '.join(self.datasets)})")
        return rows.reset_index(drop=True)


COLUMN_SOURCE = "column "  # category_source of categories taken from a ratings column (--categories)


def category_names(table: pd.DataFrame) -> tuple[str, ...]:
    """The analysed categories of a stimulus table, in order: the valence categories (pleasant,
    neutral, unpleasant) unless they were taken from a ratings column (``--categories``); then that
    column's values, sorted."""
    source = table["category_source"].astype(str) if "category_source" in table else pd.Series([], dtype=str)
    if source.str.startswith(COLUMN_SOURCE).any():
        return tuple(sorted(set(table["category"].astype(str)) - {UNKNOWN}))
    return CATEGORIES


def to_scale(value_1_to_9: float, scale: tuple[float, float]) -> float:
    """A value on the 1-9 scale mapped linearly onto ``scale`` = (low, high)."""
    low, high = scale
    return low + (value_1_to_9 - 1.0) * (high - low) / 8.0


def categorize(
    valence: np.ndarray,
    scale: tuple[float, float],
    thresholds: tuple[float, float] = PAPER_THRESHOLDS,
    margin: float = 0.0,
) -> np.ndarray:
    """Category per valence value.

    unpleasant: v < low - m; pleasant: v > high + m; neutral: low + m <= v <= high - m;
    ``unknown`` within the margin of a boundary and for missing values.

    Parameters
    ----------
    valence : ndarray [n]
        Valence ratings on ``scale``.
    scale : (float, float)
        The rating scale's ends (e.g. 1, 7 for OASIS).
    thresholds : (float, float)
        (low, high) on the 1-9 scale, mapped linearly onto ``scale``.
    margin : float
        m, on the 1-9 scale.

    Returns
    -------
    ndarray [n] of str
        ``pleasant``, ``neutral``, ``unpleasant`` or ``unknown``.
    """
    valence = np.asarray(valence, dtype=float)
    low, high = to_scale(thresholds[0], scale), to_scale(thresholds[1], scale)
    m = margin * (scale[1] - scale[0]) / 8.0
    out = np.full(valence.shape, UNKNOWN, dtype=object)
    out[valence < low - m] = "unpleasant"
    out[valence > high + m] = "pleasant"
    out[(valence >= low + m) & (valence <= high - m)] = "neutral"
    return out


def assign_split(
    table: pd.DataFrame, fractions: Sequence[float] | np.ndarray = DEFAULT_SPLIT, seed: int = 0
) -> np.ndarray:
    """Stratified, seeded units/train/val/test label per row (``none`` for ``unknown`` category).

    ``fractions``: units, train, val, test (three values: train, val, test with no units split).
    Within each dataset and category the rows are shuffled with a generator seeded by
    (seed, dataset, category), so adding a dataset never changes another's split; then
    round(n * val) go to val, round(n * test) to test, round(n * units) to units and the rest to
    train (with no units split, the same val, test and train as before the units split existed).
    """
    fractions = np.asarray(fractions, dtype=float)
    if fractions.shape == (3,):
        fractions = np.concatenate([[0.0], fractions])
    if fractions.shape != (4,) or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise InputError(
            "--split: fractions must be four non-negative numbers (units, train, val, test) summing to 1, got "
            f"{' '.join(f'{v:g}' for v in fractions.ravel())}"
        )
    split = np.full(len(table), "none", dtype=object)
    for (dataset, category), rows in table.groupby(["dataset", "category"], sort=False):
        if category == UNKNOWN:
            continue
        rng = random_stream(seed, dataset, category)  # = default_rng([seed, crc32(dataset), crc32(category)])
        positions = table.index.get_indexer(rows.index)[rng.permutation(len(rows))]
        n_val, n_test = int(round(len(rows) * fractions[2])), int(round(len(rows) * fractions[3]))
        n_units = min(int(round(len(rows) * fractions[0])), len(rows) - n_val - n_test)
        split[positions[:n_val]] = "val"
        split[positions[n_val : n_val + n_test]] = "test"
        split[positions[n_val + n_test : n_val + n_test + n_units]] = "units"
        split[positions[n_val + n_test + n_units :]] = "train"
    return split


def assign_half(table: pd.DataFrame, seed: int = 0) -> np.ndarray:
    """Stratified, seeded halves of each dataset: 1 or 2 per row (0 for ``unknown`` pictures).

    With one dataset, its two halves stand in for two datasets (the pair that defines selective
    units). Within each dataset, category and split the rows are shuffled with a generator seeded by
    (seed, "half", dataset, category, split) and dealt alternately, so each half holds half of every
    category of every split (within one picture) and the halves do not depend on the network.
    """
    half = np.zeros(len(table), dtype=int)
    for (dataset, category, split), rows in table.groupby(["dataset", "category", "split"], sort=False):
        if category == UNKNOWN:
            continue
        rng = random_stream(seed, "half", dataset, category, split)
        positions = table.index.get_indexer(rows.index)[rng.permutation(len(rows))]
        half[positions] = 1 + np.arange(len(rows)) % 2
    return half


def read_overrides(path: Path) -> pd.DataFrame:
    """A researcher's category decisions: CSV with image_id, category [, dataset]."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: category override file not found")
    from io import StringIO

    table = pd.read_csv(StringIO(read_text(path)), dtype=str, sep=None, engine="python")
    table.columns = [c.strip().lower() for c in table.columns]
    if not {"image_id", "category"} <= set(table.columns):
        raise InputError(
            f"{path}: an override file needs the columns image_id and category (it has {list(table.columns)})"
        )
    table["category"] = table["category"].str.strip().str.lower()
    table["image_id"] = table["image_id"].str.strip()
    bad = sorted(set(table["category"]) - set(CATEGORIES) - {UNKNOWN})
    if bad:
        raise InputError(f"{path}: unknown categories {bad}; use {', '.join(CATEGORIES + (UNKNOWN,))}")
    return table


class ImageCheckCache:
    """Remembers which files were already opened successfully, keyed by (path, size, mtime, inode,
    ctime): any change of a file's bytes changes its ctime (which no program can set back), so a
    remembered SHA-1 is only reused for the same bytes.

    A JSON file in the cache folder; written atomically, so an interrupted run never leaves it corrupt.
    """

    def __init__(self, folder: Path | None, max_pixels: int = MAX_PIXELS) -> None:
        self.max_pixels = max_pixels
        self.file = Path(folder) / "image-checks.json" if folder else None
        self.entries: dict = {}
        if self.file and self.file.is_file():
            try:
                self.entries = json.loads(self.file.read_text())
            except (json.JSONDecodeError, OSError):
                self.entries = {}

    @staticmethod
    def key(path: Path) -> str:
        stat = path.stat()
        return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}|{stat.st_ctime_ns}"

    def check(self, path: Path) -> tuple[str, list[str]]:
        """(sha1, conversion notes) of a usable picture; raises ImageProblem otherwise."""
        if not path.is_file():
            raise ImageProblem("file not found")
        key = self.key(path)
        entry = self.entries.get(key)
        if entry is not None and entry.get("pixels", np.inf) <= self.max_pixels:
            return entry["sha1"], entry["notes"]
        image, notes = load_rgb(path, self.max_pixels)
        sha1 = file_digest(path)
        self.entries[key] = {"sha1": sha1, "notes": notes, "pixels": image.width * image.height}
        return sha1, notes

    def save(self) -> None:
        if not self.file:
            return
        write_text_atomic(self.file, json.dumps(self.entries))


def stratified_sample(table: pd.DataFrame, size: int, seed: int, dataset: str) -> pd.DataFrame:
    """``size`` rows of ``table`` drawn per category in proportion to its share (largest remainder;
    every analysed category present gets at least one row while ``size`` allows), seeded by (seed,
    dataset); rows keep their table order. The whole table when ``size`` is not smaller."""
    if size >= len(table):
        return table
    counts = table["category"].value_counts().sort_index()
    quota = counts / counts.sum() * size
    take = np.floor(quota).astype(int)
    analysed = [c for c in counts.index if c != UNKNOWN]
    if size >= len(analysed):
        take[analysed] = take[analysed].clip(lower=1)
    order = (quota - np.floor(quota)).sort_values(ascending=False, kind="stable").index
    for category in order:  # hand out what is left, largest remainder first
        if take.sum() >= size:
            break
        if take[category] < counts[category]:
            take[category] += 1
    while take.sum() > size:  # the minimum of one per category overshot
        take[take.idxmax()] -= 1
    rng = random_stream(seed, "limit", dataset)
    chosen = [
        rng.permutation(np.flatnonzero((table["category"] == category).to_numpy()))[:n] for category, n in take.items()
    ]
    return table.iloc[np.sort(np.concatenate(chosen))]


@dataclass(frozen=True, kw_only=True)
class PictureOptions:
    """How picture sets become the stimulus table (the keyword arguments of :func:`build_stimuli`).

    ``overrides``: a CSV ``image_id,category[,dataset]`` that overrides categories; ``thresholds``:
    valence boundaries on the 1-9 scale (the paper's 4.3, 6.0), mapped onto each set's scale;
    ``margin``: pictures within this distance of a boundary (1-9 scale) are ``unknown``; ``split``:
    train, val, test fractions per dataset and category; ``seed``: seeds the splits and ``limit``'s
    sample; ``limit``: a stratified, seeded sample of this many pictures of each set; ``max_pixels``:
    larger pictures are skipped and listed before they are decoded; ``category_column``: take each
    picture's category from this ratings column (a csv file's column; Emotion6: ``dominant``)
    instead of valence thresholds."""

    overrides: str | Path | None = None
    thresholds: tuple[float, float] = PAPER_THRESHOLDS
    margin: float = 0.0
    split: tuple[float, ...] = DEFAULT_SPLIT
    seed: int = 0
    limit: int | None = None
    max_pixels: int = MAX_PIXELS
    category_column: str | None = None


def load_dataset(
    name: str,
    path: str | Path,
    fmt: str | None = None,
    scale: str | tuple[float, float] | None = None,
    how: PictureOptions | None = None,
    overrides: pd.DataFrame | None = None,
    check_cache: ImageCheckCache | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, Ratings, list[Problem]]:
    """One picture set as rows of the stimulus table (without split), its Ratings and its problems;
    ``how.limit`` takes a stratified, seeded sample of that many pictures (:func:`stratified_sample`);
    ``how.category_column`` takes the categories from that column of the ratings (``--categories``);
    ``overrides``: the override table read from ``how.overrides``."""
    how = how or PictureOptions()
    category_column = how.category_column
    ratings = read_ratings(path, fmt=fmt, dataset=name, scale=scale, category_column=category_column)
    problems = list(ratings.problems)
    source = str(ratings.source)
    if category_column:
        table = _from_column(ratings.table.copy(), category_column, name, source, problems)
    else:
        table = _categorised(ratings.table.copy(), ratings.scale, how.thresholds, how.margin, name, source, problems)
    if overrides is not None:
        _override(table, overrides, name, problems)
    if how.limit is not None:
        table = stratified_sample(table, int(how.limit), how.seed, name)
    problems += _links_outside(table, Path(path), name)
    table = _checked_pictures(table, check_cache or ImageCheckCache(None), name, problems, progress)
    if table.empty:
        why = (
            f"{len(problems)} problems, the first: {problems[0].file}: {problems[0].problem}"
            if problems
            else "its ratings list no picture"
        )
        raise InputError(f"dataset {name!r} ({path}): no usable picture ({why})")
    table["path"] = [str(Path(p).resolve()) for p in table["path"]]
    table.insert(0, "dataset", name)
    for category in category_names(table):
        count = int((table["category"] == category).sum())
        if count < MIN_PER_CATEGORY:
            note = f"only {count} {category} pictures (fewer than {MIN_PER_CATEGORY}): statistics for this category are unreliable"
            problems.append(Problem(name, source, note, "note"))
    return table, ratings, problems


def _categorised(
    table: pd.DataFrame,
    scale: tuple[float, float],
    thresholds: tuple[float, float],
    margin: float,
    name: str,
    source: str,
    problems: list[Problem],
) -> pd.DataFrame:
    """``category`` and ``category_source`` columns: a category column of the ratings file where there
    is one (values outside the known categories become unknown), else valence thresholds; valences
    outside the scale and missing valences make a picture unknown. Each case is listed in ``problems``."""
    if "category" in table:
        bad = ~table["category"].isin(CATEGORIES + (UNKNOWN,))
        for image_id, value in table.loc[bad, ["image_id", "category"]].itertuples(index=False):
            note = f"category {value!r} of {image_id!r} is not one of {CATEGORIES}: set to unknown"
            problems.append(Problem(name, source, note, "note"))
        table.loc[bad, "category"] = UNKNOWN
        table["category_source"] = "ratings file"
    else:
        table["category"] = categorize(table["valence"].to_numpy(), scale, thresholds, margin)
        table["category_source"] = "valence"
    low, high = scale
    outside = (table["valence"] < low) | (table["valence"] > high)
    for image_id, value in table.loc[outside, ["image_id", "valence"]].itertuples(index=False):
        note = f"valence {value} of {image_id!r} is outside the {low:g}-{high:g} scale: category unknown"
        problems.append(Problem(name, source, note, "note"))
    table.loc[outside, "category"] = UNKNOWN
    for image_id in table.loc[table["valence"].isna(), "image_id"]:
        problems.append(Problem(name, source, f"{image_id!r} has no valence rating: category unknown", "note"))
    return table


def _from_column(table: pd.DataFrame, column: str, name: str, source: str, problems: list[Problem]) -> pd.DataFrame:
    """``category`` from a ratings column (already read into ``category`` by the format's reader):
    any label; empty cells make a picture unknown (listed in ``problems``)."""
    labels = table["category"].fillna("").astype(str).str.strip().str.lower()
    for image_id in table.loc[labels.isin(["", "nan", UNKNOWN]), "image_id"]:
        problems.append(Problem(name, source, f"{image_id!r} has no {column!r} value: category unknown", "note"))
    table["category"] = labels.where(~labels.isin(["", "nan"]), UNKNOWN)
    table["category_source"] = COLUMN_SOURCE + column
    return table


def _override(table: pd.DataFrame, overrides: pd.DataFrame, name: str, problems: list[Problem]) -> None:
    """Apply the overrides rows of dataset ``name`` (or of no dataset) to ``table``, in place."""
    mine = overrides if "dataset" not in overrides else overrides[overrides["dataset"].fillna(name).str.strip() == name]
    lookup = dict(zip(mine["image_id"], mine["category"]))
    hit = table["image_id"].isin(lookup)
    for image_id in sorted(set(lookup) - set(table["image_id"])):
        problems.append(Problem(name, "overrides", f"override for {image_id!r}: no such image in this dataset", "note"))
    table.loc[hit, "category"] = table.loc[hit, "image_id"].map(lookup)
    table.loc[hit, "category_source"] = "override"


def _checked_pictures(
    table: pd.DataFrame, check_cache: ImageCheckCache, name: str, problems: list[Problem], progress: bool
) -> pd.DataFrame:
    """The rows whose picture opens (with its SHA-1 in ``sha1``); unusable pictures are skipped and
    conversions noted in ``problems``."""
    keep, sha1s = [], []
    for path_text in tqdm(table["path"], desc=f"checking {name} images", unit="img", disable=not progress, leave=False):
        image_path = Path(path_text)
        try:
            sha1, notes = check_cache.check(image_path)
        except ImageProblem as problem:
            problems.append(Problem(name, str(image_path), str(problem), "skipped"))
            keep.append(False)
            sha1s.append("")
            continue
        for note in notes:
            problems.append(Problem(name, str(image_path), note, "converted"))
        keep.append(True)
        sha1s.append(sha1)
    table["sha1"] = sha1s
    return table[np.asarray(keep, dtype=bool)].copy()


def build_stimuli(
    datasets: Mapping[str, str | Path],
    formats: dict[str, str] | None = None,
    scales: dict[str, str] | None = None,
    *,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    **options: Any,
) -> Stimuli:
    """Read every named picture set and return the combined :class:`Stimuli`.

    Parameters
    ----------
    datasets : mapping of str to path
        Dataset name (letters, digits, ``-``, ``_``) -> its folder or ratings file.
    formats, scales : dict[str, str], optional
        Per dataset name: a forced format; a valence scale ``'LOW-HIGH'`` (needed for ``csv``).
    cache_dir : path, optional
        Remembers checked pictures between runs.
    progress : bool
        Show progress bars.
    **options
        The fields of :class:`PictureOptions`: ``overrides``, ``thresholds``, ``margin``,
        ``split``, ``seed``, ``limit``, ``max_pixels``, ``category_column``.

    Returns
    -------
    Stimuli
        ``table`` (one row per usable picture: dataset, image_id, path, valence, arousal, category,
        split, category_source, sha1), ``problems`` (skipped, converted, excluded), scales, formats.
    """
    how = PictureOptions(**options)
    formats, scales = _checked_names(datasets, formats or {}, scales or {})
    override_table = read_overrides(Path(how.overrides)) if how.overrides else None
    check_cache = ImageCheckCache(Path(cache_dir) if cache_dir else None, how.max_pixels)
    tables, stimuli = [], Stimuli(pd.DataFrame(columns=STIMULI_COLUMNS))
    try:
        for name, path in datasets.items():
            table, ratings, problems = load_dataset(
                name, path, formats.get(name), scales.get(name), how, override_table, check_cache, progress
            )
            tables.append(table)
            stimuli.scales[name] = (float(ratings.scale[0]), float(ratings.scale[1]))
            stimuli.formats[name] = ratings.format
            stimuli.sources[name] = str(Path(ratings.source).resolve())
            stimuli.problems.extend(problems)
    finally:
        check_cache.save()
    table, duplicates = drop_duplicate_pictures(pd.concat(tables, ignore_index=True))
    stimuli.problems.extend(duplicates)
    table["split"] = assign_split(table, how.split, how.seed)
    table["half"] = assign_half(table, how.seed)
    stimuli.table = table[STIMULI_COLUMNS]
    names = category_names(stimuli.table)
    if len(names) < 2:
        raise InputError(
            f"--categories {how.category_column}: the pictures fall in {len(names)} category "
            f"({', '.join(names) or 'none'}); at least 2 are needed"
        )
    return stimuli


def _checked_names(
    datasets: Mapping[str, str | Path], formats: dict[str, str], scales: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """The per-dataset formats and scales, once every dataset name is safe and each of their names
    is a dataset's."""
    if not datasets:
        raise InputError("no dataset given; name one as NAME=PATH")
    for name in datasets:
        check_dataset_name(name)
    for name in list(formats) + list(scales):
        if name not in datasets:
            raise InputError(f"--format/--scale name {name!r} is not a dataset of this run ({', '.join(datasets)})")
    return formats, scales


SAFE_NAME = re.compile(r"[A-Za-z0-9_-]+")


def _links_outside(table: pd.DataFrame, root: Path, dataset: str) -> list[Problem]:
    """A note for every picture of ``table`` (column ``path``) that is a symbolic link to a file
    outside the set's folder ``root``: it is analysed, and listed so that nobody is surprised."""
    base = (root if root.is_dir() else root.parent).resolve()
    notes = []
    for picture in table["path"].dropna():
        target = Path(picture).resolve()
        if Path(picture).is_symlink() and not target.is_relative_to(base):
            notes.append(
                Problem(dataset, str(picture), f"a symbolic link to {target}, outside the set's folder", "note")
            )
    return notes


def dataset_name_from(path: str | Path) -> str:
    """A safe dataset name made from a folder's name (other characters become '_')."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", Path(path).name).strip("_") or "dataset"


def check_dataset_name(name: str, what: str = "dataset") -> str:
    """A dataset (or, ``what``, a sweep's network) name is also a folder name in the run folder:
    letters, digits, '-' and '_' only."""
    if not SAFE_NAME.fullmatch(str(name)):
        example = "--dataset oasis=PATH" if what == "dataset" else "networks: {vgg16_trained: ...}"
        raise InputError(
            f"{what} name {name!r}: use only letters, digits, '-' and '_' (it names a folder of the run, e.g. {example})"
        )
    return name


def drop_duplicate_pictures(table: pd.DataFrame) -> tuple[pd.DataFrame, list[Problem]]:
    """The same picture (same file content, SHA-1) twice: a later copy within a dataset is excluded
    (it would count twice and could fall in two splits); copies across datasets are kept and listed
    (cross-dataset analyses check how many pictures two datasets share)."""
    problems, drop = [], []
    sha1s = table["sha1"].astype(str)
    copies = table[(sha1s != "") & sha1s.duplicated(keep=False)]
    for sha1, rows in copies.groupby("sha1", sort=False):
        seen: dict[str, str] = {}  # dataset -> its first copy's path
        for index, row in rows.iterrows():
            if row["dataset"] in seen:
                problems.append(
                    Problem(
                        row["dataset"],
                        str(row["path"]),
                        f"the same picture (SHA-1 {sha1[:12]}) as {seen[row['dataset']]}",
                        "excluded",
                    )
                )
                drop.append(index)
            elif seen:
                other, path = next(iter(seen.items()))
                problems.append(
                    Problem(
                        row["dataset"],
                        str(row["path"]),
                        f"the same picture (SHA-1 {sha1[:12]}) as {path} of {other}",
                        "note",
                    )
                )
                seen[row["dataset"]] = str(row["path"])
            else:
                seen[row["dataset"]] = str(row["path"])
    return table.drop(index=drop).reset_index(drop=True), problems


def shared_pictures(table: pd.DataFrame, a: str, b: str) -> float:
    """Share of the smaller of datasets ``a`` and ``b`` whose pictures (by SHA-1) are also in the other."""
    first = set(table.loc[table["dataset"] == a, "sha1"].astype(str)) - {""}
    second = set(table.loc[table["dataset"] == b, "sha1"].astype(str)) - {""}
    smaller = min(len(first), len(second))
    return len(first & second) / smaller if smaller else 0.0


def category_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Pictures per dataset x category (including ``unknown``), with a total column."""
    counts = pd.crosstab(table["dataset"], table["category"])
    counts = counts.reindex(columns=list(category_names(table)) + [UNKNOWN], fill_value=0)
    counts["total"] = counts.sum(axis=1)
    return counts


def write_stimuli(stimuli: Stimuli, run: Path) -> None:
    """``RUN/stimuli.csv`` and ``RUN/problems.csv``."""
    from ..base.problems import problems_table

    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(run / "stimuli.csv", stimuli.table)
    write_csv_atomic(run / "problems.csv", problems_table(stimuli.problems))


def read_stimuli(run: str | Path) -> Stimuli:
    """The stimulus table of a run folder (metadata from its config.yaml where present).

    Parameters
    ----------
    run : path
        A run folder made by :func:`emoselect.extract_stage`.

    Returns
    -------
    Stimuli
        As :func:`build_stimuli` made it (problems as listed in problems.csv).
    """
    path = Path(run) / "stimuli.csv"
    if not path.is_file():
        raise InputError(f"{path} not found: run `emoselect extract ... --out {run}` first")
    table = pd.read_csv(
        path,
        dtype={"image_id": str, "dataset": str, "sha1": str},
        keep_default_na=False,
        na_values={"valence": [""], "arousal": [""]},
    )
    stimuli = Stimuli(table)
    config = Path(run) / "config.yaml"
    if config.is_file():
        import yaml

        meta = (yaml.safe_load(config.read_text()) or {}).get("datasets", {})
        for name, entry in meta.items():
            stimuli.scales[name] = tuple(entry.get("scale", (np.nan, np.nan)))
            stimuli.formats[name] = entry.get("format", "")
            stimuli.sources[name] = entry.get("ratings_file", "")
    return stimuli
