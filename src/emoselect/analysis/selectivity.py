"""Emotion selectivity of units: pure numpy on response matrices [n_images, n_units].

Definitions (Liu, Bo, Ding & Fang; docs/science.md gives them in full):

* tuning value of a unit for category e: z_e = (mean response to e - mean over all analysed images)
  / SD over all analysed images (sample SD, ddof=1); units with zero variance get NaN;
* preferred category: argmax_e z_e;
* tuning quality of a layer: mean over its units of max_e |z_e| (units with NaN left out);
* journal version: d'_e = (mean_e - mean_rest) / sqrt((var_e + var_rest) / 2), SI = max_e d'_e;
* selective units: the same preferred category in both datasets of a pair;
* overlap: Jaccard index J = |A & B| / |A | B| of the two datasets' sets per category; its excess
  is J minus the Jaccard of the chance-expected intersection of sets of those sizes, tested against
  its label-permutation null: the category labels of each side's defining pictures are shuffled (one
  shuffle for all units and all layers, so the units' correlations and the layers' dependence are
  kept) and the preferred categories, sets and excess recomputed; one-sided p = (1 + #{null >=
  excess}) / (1 + P). The exact hypergeometric null (random sets of independent, exchangeable units) is kept
  as a descriptive reference (``p_independent``);
* tuning-quality null: tuning quality under the same label shuffles;
* network-level tests (``trends``): the mean overlap excess over layers, and the Spearman rho of each
  layer's overlap excess and tuning-quality excess with depth, each against the same statistic
  recomputed per shuffle. Every stream of random numbers is keyed by the network's responses
  (:func:`network_key`), so no two networks share null draws.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..base.options import check, name_of, option
from ..base.problems import InputError
from ..base.randomness import random_stream
from ..pictures.stimuli import Stimuli, assign_half, category_names, shared_pictures
from .examples import _confounds, _examples, example_layers
from .records import Responses
from .stats import (
    benjamini_hochberg,
    chance_jaccard,
    exceedance_p_value,
    intersection_pmf,
    jaccard_null,
    spearman_columns,
)
from .trends import network_tests
from .tuning import (
    CATEGORY_ORDER,
    d_prime,
    jaccard,
    label_permutations,
    permutation_p_values,
    preferred_category,
    shuffled_tuning,
    top_fraction,
    tuning_quality,
    tuning_values,
)

# ---------------------------------------------------------------------------------------------
# The stage: from a run's stimuli and responses to the selectivity tables


@dataclass
class SelectivityOptions:
    """Options of the selectivity stage (see ``emoselect selectivity -h``).

    ``define_on``: which images define tuning: ``units`` (the default: stimuli.csv's units split,
    pictures the readout heads never see, so a lesion or gain test cannot reuse the noise that chose
    the units; a table without a units split, made with ``--split 0 ...`` or before it existed, falls
    back to ``train`` and says so), ``train`` (the heads' training split: the paper's design) or
    ``all`` (every analysed picture, the paper's selectivity).
    ``pair``: the two datasets whose agreement defines selective units (default: the first two;
    with one dataset a seeded split-half of it stands in). ``si_keep``: keep only this top fraction of
    units by d' selectivity index in each dataset (journal version: 0.8). ``permutations``: per-unit label permutations (0 = off);
    ``require_significant``: selective units must also be significant (BH q < ``alpha``) in both
    datasets. ``null_permutations``: label shuffles for every null of the claims (overlap, tuning
    quality, network-level tests; 0 = none, and no claim can be tested); ``top_fraction``: the
    share of each side's pictures shown as an example unit's most activating ones. ``valence_tuning``: Spearman correlation of each unit with valence and arousal.
    ``confounds``: decoding check against low-level image statistics. ``example_layers``: the layers
    whose strongest selective units are shown (default: an early, a middle and the deepest layer, at
    the paper's positions 3, 6 and 13 of 13, i.e. conv2_1, conv3_2 and conv5_3 for VGG-16).
    """

    define_on: str = option(
        "units",
        "images that define tuning: the units split (never seen by the readout heads), the heads' "
        "training split (the paper's design) or all",
        choices=("units", "train", "all"),
    )
    pair: tuple[str, str] | None = option(
        None, "the two datasets whose agreement defines selective units", nargs=2, optional=True, metavar=("A", "B")
    )
    si_keep: float | None = option(
        None,
        "keep the top fraction of units by d' index (journal: 0.8)",
        kind=float,
        low=0,
        high=1,
        open_low=True,
        optional=True,
    )
    permutations: int = option(0, "per-unit label permutations (0 = off)", kind=int, low=0)
    null_permutations: int = option(
        999,
        "label shuffles for the overlap, tuning-quality and depth-trend nulls (0 = off: nothing tested)",
        kind=int,
        low=0,
        metavar="N",
    )
    require_significant: bool = option(False, "selective = also significant (BH) in both datasets", kind=bool)
    alpha: float = option(
        0.05, "false discovery rate for every test", kind=float, low=0, high=1, open_low=True, open_high=True
    )
    valence_tuning: bool = option(False, "Spearman correlation of each unit with valence and arousal", kind=bool)
    confounds: bool = option(False, "decode category from low-level image statistics vs each layer", kind=bool)
    example_layers: list[str] | None = option(
        None,
        "layers for the example neurons (default: an early, a middle and the deepest layer)",
        nargs="+",
        optional=True,
        metavar="LAYER",
    )
    top_fraction: float = option(
        0.1,
        "share of each side's pictures shown as an example unit's most activating ones",
        kind=float,
        low=0,
        high=1,
        open_low=True,
    )
    RECORDED: ClassVar[tuple] = ("pair_note",)  # a result the stage writes beside its options
    RENAMED: ClassVar[dict] = {"tuning_null": "null_permutations"}  # config.yaml of older runs

    def __post_init__(self) -> None:
        check(self)
        if self.require_significant and self.permutations < 1:
            raise InputError(
                f"{name_of('require_significant')} needs a permutation test: give "
                f"{name_of('permutations')} N (e.g. 1000)"
            )


@dataclass(frozen=True, kw_only=True)
class Group:
    """The images of one side of the pair: a dataset (or half of one), its defining rows and — where
    given — that dataset's responses, so that :meth:`matrix` selects the group's rows itself.

    ``rows``: indices into the dataset's response rows (= its rows of the stimulus table);
    ``categories``, ``valence`` (1-9 scale), ``arousal``: of each of those rows; ``names``: the
    analysed categories, in order (the tuning-value columns)."""

    name: str
    dataset: str
    rows: np.ndarray
    categories: np.ndarray
    valence: np.ndarray
    arousal: np.ndarray
    names: tuple[str, ...] = CATEGORY_ORDER
    responses: Responses | None = None

    def matrix(self, site: str) -> np.ndarray:
        """The group's responses at ``site``: [n_rows, n_units], in ``rows`` order."""
        if self.responses is None:
            raise ValueError(f"group {self.name} was defined without responses")
        return np.asarray(self.responses.sites[site])[self.rows]


@dataclass(frozen=True, kw_only=True)
class SelectivityResult:
    """The stage's tables (see the README's run-folder table); ``pair_note`` says how the two sides were made.

    ``trends``: the network-level tests (one row per measure and statistic, see
    :func:`emoselect.analysis.trends.network_tests`).
    """

    units: pd.DataFrame
    selective: pd.DataFrame
    layers: pd.DataFrame
    overlap: pd.DataFrame
    examples: pd.DataFrame
    confounds: pd.DataFrame | None
    groups: list[Group]
    pair_note: str
    top_images: dict = field(default_factory=dict)
    trends: pd.DataFrame = field(default_factory=pd.DataFrame)


def _pair(stimuli: Stimuli, options: SelectivityOptions) -> list[str]:
    """The datasets whose agreement defines selectivity: ``options.pair``, else the first two (or the
    only one, whose split-half stands in)."""
    datasets = stimuli.datasets
    pair = list(options.pair) if options.pair else datasets[:2]
    for name in pair:
        if name not in datasets:
            raise InputError(f"--pair names {name!r}, which is not a dataset of this run ({', '.join(datasets)})")
    if len(pair) == 2 and pair[0] == pair[1]:
        raise InputError("--pair needs two different datasets")
    return pair


def define_groups(
    stimuli: Stimuli,
    options: SelectivityOptions,
    seed: int = 0,
    responses: dict[str, Responses] | None = None,
) -> tuple[list[Group], str]:
    """The two sides of the pair, each restricted to its defining images (one dataset: a split-half
    of it seeded by ``seed``), each holding its dataset's ``responses`` where given."""
    names = category_names(stimuli.table)
    pair = _pair(stimuli, options)

    split = defining_split(stimuli.table, options.define_on)

    def defining(table: pd.DataFrame) -> np.ndarray:
        mask = table["category"].isin(names).to_numpy().copy()
        if split is not None:
            mask &= (table["split"] == split).to_numpy()
        return np.flatnonzero(mask)

    def group(name: str, dataset: str, table: pd.DataFrame, rows: np.ndarray) -> Group:
        scale = stimuli.scales.get(dataset, (1.0, 9.0))
        to9 = lambda v: 1 + (np.asarray(v, float) - scale[0]) * 8 / (scale[1] - scale[0])  # noqa: E731
        return Group(
            name=name,
            dataset=dataset,
            rows=rows,
            categories=table["category"].to_numpy()[rows],
            valence=to9(table["valence"].to_numpy()[rows]),
            arousal=table["arousal"].to_numpy(float)[rows],
            names=names,
            responses=responses[dataset] if responses is not None else None,
        )

    images = _defining_images(split, options.define_on)
    if len(pair) == 2:
        share = _shared_share(stimuli, pair)
        groups = [group(n, n, stimuli.of(n), defining(stimuli.of(n))) for n in pair]
        warning = f"; note: they share {share:.0%} of their pictures" if share > 0 else ""
        return groups, f"selective = same preferred category in {pair[0]} and {pair[1]} ({images} images){warning}"
    name = pair[0]
    table = stimuli.of(name)
    rows = defining(table)
    halves = _halves(table, seed)
    groups = [group(f"{name}/half{h}", name, table, rows[halves[rows] == h]) for h in (1, 2)]
    return groups, (
        f"one dataset: a seeded split-half of {name}'s {images} images (stimuli.csv's half column) stands "
        f"in for two datasets; selective = same preferred category in both halves"
    )


def _defining_images(split: str | None, define_on: str) -> str:
    """The pictures that define tuning, in words (for the pair note)."""
    if split is None:
        return "all analysed"
    if split == "units":
        return "units-split"
    return "training-split" + (" (no units split: the heads' training pictures)" * (define_on == "units"))


def _shared_share(stimuli: Stimuli, pair: list[str]) -> float:
    """The fraction of pictures (same file contents) the two datasets of ``pair`` share; an
    :class:`InputError` from one half on (their agreement would not be a cross-dataset test)."""
    share = shared_pictures(stimuli.table, *pair)
    if share >= 0.5:
        raise InputError(
            f"{pair[0]} and {pair[1]} share {share:.0%} of their pictures (same file contents): their "
            f"agreement would not be a cross-dataset test; use two different picture sets, or one "
            f"dataset (a split-half stands in)"
        )
    return share


def defining_split(table: pd.DataFrame, define_on: str) -> str | None:
    """The split whose pictures define tuning (None: all pictures): ``units``, or ``train`` where
    ``define_on`` is train or the table has no units split (``--split 0 ...``, older tables)."""
    if define_on == "all":
        return None
    return "units" if define_on == "units" and (table["split"] == "units").any() else "train"


def _halves(table: pd.DataFrame, seed: int) -> np.ndarray:
    """Each picture's half (1 or 2): stimuli.csv's record, or for a table from before it kept one the
    same halves made again."""
    return table["half"].to_numpy(int) if "half" in table else assign_half(table, seed)


def network_key(responses: dict[str, Responses]) -> str:
    """A short identity of one network's responses (SHA-256 of every site's matrix, 16 hex digits):
    it keys the network's random streams, so two networks never share null draws, and changing one
    network (a control's seed, say) changes no other network's nulls. Every site held counts, not
    only those analysed, so analysing fewer layers keeps the same shuffles."""
    digest = hashlib.sha256()
    for dataset in sorted(responses):
        for site in sorted(responses[dataset].sites):
            matrix = np.ascontiguousarray(responses[dataset].sites[site], dtype=np.float32)
            digest.update(f"{dataset}|{site}|{matrix.shape}".encode())
            digest.update(matrix.tobytes())
    return digest.hexdigest()[:16]


@dataclass
class GroupTuning:
    """One layer's tuning in one group: ``z`` [n_units, K], ``preferred`` [n_units] (-1 undefined),
    ``eligible`` [n_units] (may enter a selective set: kept by --si-keep and, with
    --require-significant, significant), the extra columns for units.csv and layers.csv, and
    ``shuffled`` int8 [n_shuffles, n_units]: the preferred categories under each label shuffle."""

    z: np.ndarray
    preferred: np.ndarray
    eligible: np.ndarray
    unit_columns: dict
    layer_columns: dict
    shuffled: np.ndarray | None = None


def _describe_group(
    site: str, group: Group, data: np.ndarray, options: SelectivityOptions, rng: np.random.Generator
) -> GroupTuning:
    """Tuning values, d' index and the optional tests of one layer's units in one group."""
    names = group.names
    z = tuning_values(data, group.categories, names)
    preferred = preferred_category(z)
    d = d_prime(data, group.categories, names)
    si = np.max(np.where(np.isnan(d), -np.inf, d), axis=1)
    si[np.isinf(si)] = np.nan
    eligible = top_fraction(si, options.si_keep) if options.si_keep else preferred >= 0
    best = np.abs(z).max(axis=1)
    defined = int(np.isfinite(best).sum())
    unit_columns = {
        "layer": site,
        "unit": np.arange(z.shape[0]),
        "dataset": group.name,
        **{f"t_{name}": z[:, k] for k, name in enumerate(names)},
        "preferred": np.array(list(names) + ["none"])[preferred],
        "si": si,
        "kept": eligible.copy(),
    }
    layer_columns = {
        "layer": site,
        "dataset": group.name,
        "n_images": len(group.rows),
        "n_units": z.shape[0],
        "n_undefined": int((preferred < 0).sum()),
        "tuning_quality": tuning_quality(z),
        "tuning_quality_sem": float(np.nanstd(best, ddof=1) / np.sqrt(defined)) if defined > 1 else np.nan,
        **{f"n_preferring_{c}": int((preferred == k).sum()) for k, c in enumerate(names)},
    }
    if options.permutations:
        p = permutation_p_values(data, group.categories, options.permutations, rng, names=names)
        q = benjamini_hochberg(p)
        significant = q < options.alpha
        unit_columns.update(p_permutation=p, q_permutation=q, significant=significant)
        layer_columns["n_significant"] = int(significant.sum())
        if options.require_significant:
            eligible &= significant
    if options.valence_tuning:
        for name, values in (("valence", group.valence), ("arousal", group.arousal)):
            if np.isfinite(values).sum() < 3:
                continue
            rho, p = spearman_columns(data, values)
            q = benjamini_hochberg(p)
            unit_columns.update({f"rho_{name}": rho, f"p_{name}": p, f"q_{name}": q})
            layer_columns[f"n_{name}_positive"] = int(((q < options.alpha) & (rho > 0)).sum())
            layer_columns[f"n_{name}_negative"] = int(((q < options.alpha) & (rho < 0)).sum())
            layer_columns[f"mean_abs_rho_{name}"] = float(np.nanmean(np.abs(rho))) if np.isfinite(rho).any() else np.nan
    return GroupTuning(z, preferred, eligible, unit_columns, layer_columns)


def shuffled_excess(a: GroupTuning, b: GroupTuning, k: int) -> np.ndarray:
    """The overlap excess of category ``k`` (Jaccard minus its chance value at the sets' sizes, see
    :func:`chance_jaccard`) under each label shuffle: [n_shuffles] (NaN where both sets are empty).
    The eligible units stay those of the observed labels (with --si-keep or --require-significant
    the null is conditional on them)."""
    if a.shuffled is None or b.shuffled is None:
        return np.empty(0)
    in_a = (a.shuffled == k) & a.eligible[None, :]
    in_b = (b.shuffled == k) & b.eligible[None, :]
    union = (in_a | in_b).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        observed = np.where(union > 0, (in_a & in_b).sum(axis=1) / union, np.nan)
    return observed - chance_jaccard(in_a.sum(axis=1), in_b.sum(axis=1), *_universes(a, b))


def _universes(a: GroupTuning, b: GroupTuning) -> tuple[int, int, int]:
    """(units eligible on both sides, on side a, on side b)."""
    return int((a.eligible & b.eligible).sum()), int(a.eligible.sum()), int(b.eligible.sum())


def _null_columns(chance: float, excess: float, null: np.ndarray) -> dict:
    """overlap.csv's null columns from the label-shuffle draws of the excess (NaN draws left out):
    the range of J under the shuffles at the observed set sizes, and the permutation p."""
    null = null[np.isfinite(null)]
    if len(null) == 0 or not np.isfinite(chance):
        return {"jaccard_null_mean": np.nan, "jaccard_null_lo": np.nan, "jaccard_null_hi": np.nan, "p_value": np.nan}
    return {
        "jaccard_null_mean": chance + float(null.mean()),
        "jaccard_null_lo": chance + float(np.percentile(null, 2.5)),
        "jaccard_null_hi": chance + float(np.percentile(null, 97.5)),
        "p_value": exceedance_p_value(excess, null),
    }


def _overlap_row(
    site: str, category: str, k: int, a: GroupTuning, b: GroupTuning, groups: list[Group]
) -> tuple[dict, np.ndarray, np.ndarray]:
    """One layer and category of overlap.csv, the label-shuffle draws of its excess [n_shuffles],
    and the selective units (boolean [n_units]: in both sides' sets).

    ``jaccard_excess`` = J - ``jaccard_chance`` (J at the chance-expected intersection of sets of the
    observed sizes); ``p_value`` its label-permutation p (the test); ``p_independent`` the exact p of
    random sets of independent, exchangeable units drawn from the units each observed set could have
    come from (``eligible``) — a reference only, too small where units are correlated.
    """
    in_a, in_b = (a.preferred == k) & a.eligible, (b.preferred == k) & b.eligible
    selective = in_a & in_b
    size_a, size_b, both = int(in_a.sum()), int(in_b.sum()), int(selective.sum())
    universes = _universes(a, b)
    exact = jaccard_null(intersection_pmf(*universes, size_a, size_b), size_a, size_b, both)
    observed = jaccard(in_a, in_b)
    chance = float(chance_jaccard(size_a, size_b, *universes))
    shuffled = shuffled_excess(a, b, k)
    row = {
        "layer": site,
        "category": category,
        "dataset_a": groups[0].name,
        "dataset_b": groups[1].name,
        "n_units": len(a.preferred),
        "n_eligible_a": universes[1],
        "n_eligible_b": universes[2],
        "n_eligible_both": universes[0],
        "n_a": size_a,
        "n_b": size_b,
        "n_selective": both,
        "jaccard": observed,
        "jaccard_chance": chance,
        "jaccard_excess": observed - chance,
        **_null_columns(chance, observed - chance, shuffled),
        "min_p_value": 1.0 / (len(shuffled) + 1),
        "jaccard_independent_mean": exact["mean"],
        "p_independent": exact["p_above"],
    }
    return row, shuffled, selective


def _tuning_null_columns(observed: float, null: np.ndarray) -> dict:
    """layers.csv columns of one layer and side: the tuning-quality null and the excess over it."""
    return {
        "tuning_quality_null_mean": float(null.mean()),
        "tuning_quality_null_lo": float(np.percentile(null, 2.5)),
        "tuning_quality_null_hi": float(np.percentile(null, 97.5)),
        "tuning_quality_excess": observed - float(null.mean()),
        "p_tuning_quality": exceedance_p_value(observed, null),
        "min_p_tuning_quality": 1.0 / (len(null) + 1),
    }


@dataclass(frozen=True)
class _Shared:
    """What every site of one analysis shares: the groups, the options, seed and network key, the
    label shuffles ``orders`` of each group (shared by all sites) and, per group, the tuning-quality
    nulls of the sites analysed so far (appended to)."""

    groups: list[Group]
    options: SelectivityOptions
    seed: int
    network: str
    orders: list[np.ndarray]
    tuning_nulls: list[list[np.ndarray]]

    @classmethod
    def start(cls, groups: list[Group], options: SelectivityOptions, seed: int, network: str) -> _Shared:
        """Before the first site: each group's label shuffles (one stream per network and group), no nulls yet."""
        orders = [
            label_permutations(len(g.rows), options.null_permutations, random_stream(seed, "label-null", network, i))
            for i, g in enumerate(groups)
        ]
        return cls(groups, options, seed, network, orders, [[] for _ in groups])


def _tune_site(site: str, relative_depth: float, depth: int, data: list[np.ndarray], shared: _Shared) -> list:
    """Tuning of one site in each group (``data``: [n_pictures, n_units] per group), with its layer
    columns (depth, and the tuning-quality null from the shared label permutations, whose per-layer
    nulls are appended to ``shared.tuning_nulls``)."""
    groups, options = shared.groups, shared.options
    try:
        tuned = [
            _describe_group(
                site, g, d, options, random_stream(shared.seed, "unit-permutation", shared.network, site, i)
            )
            for i, (g, d) in enumerate(zip(groups, data))
        ]
        for i, (g, d, tuning) in enumerate(zip(groups, data, tuned)):
            tuning.layer_columns.update(layer_index=depth, relative_depth=relative_depth)
            if options.null_permutations:
                null, tuning.shuffled = shuffled_tuning(d, g.categories, shared.orders[i], g.names)
                shared.tuning_nulls[i].append(null)
                tuning.layer_columns.update(_tuning_null_columns(tuning.layer_columns["tuning_quality"], null))
    except ValueError as error:
        raise InputError(f"layer {site}: {error}") from error
    return tuned


def _overlap_site(
    site: str, a: GroupTuning, b: GroupTuning, groups: list[Group]
) -> tuple[list[dict], np.ndarray, list[pd.DataFrame]]:
    """Per category: the overlap row and the selective units (same preferred category in both
    groups) with their tuning values; and the layer's mean Jaccard excess under each label shuffle
    [n_shuffles] (in each shuffle, categories with two empty sets left out, as in the observed mean)."""
    rows, excess, selective = [], [], []
    for k, category in enumerate(groups[0].names):
        row, shuffled, both = _overlap_row(site, category, k, a, b, groups)
        rows.append(row)
        excess.append(shuffled)  # NaN in a shuffle where both sets are empty, as observed
        selective.append(
            pd.DataFrame(
                {
                    "layer": site,
                    "unit": np.flatnonzero(both),
                    "category": category,
                    f"t_{groups[0].name}": a.z[both, k],
                    f"t_{groups[1].name}": b.z[both, k],
                    "strength": (a.z[both, k] + b.z[both, k]) / 2,
                }
            )
        )
    with warnings.catch_warnings():  # a shuffle where every category's sets are empty: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        layer_null = np.nanmean(excess, axis=0) if excess and len(excess[0]) else np.empty(0)
    return rows, layer_null, selective


def _significant_overlap(
    site: str, tuned: list[GroupTuning], groups: list[Group], options: SelectivityOptions
) -> tuple[float, np.ndarray] | None:
    """With the per-unit test on (``--permutations``) and selectivity not already restricted to
    significant units: the layer's mean overlap excess among units significant on both sides, and
    its label-shuffle draws [n_shuffles] (the significant units held fixed: a conditional null).
    Every unit prefers some category, so this is the overlap of units that are tuned at all."""
    if not options.permutations or options.require_significant:
        return None
    a, b = (replace(t, eligible=t.eligible & t.unit_columns["significant"]) for t in tuned)
    observed, draws = [], []
    for k in range(len(groups[0].names)):
        in_a, in_b = (a.preferred == k) & a.eligible, (b.preferred == k) & b.eligible
        observed.append(jaccard(in_a, in_b) - float(chance_jaccard(in_a.sum(), in_b.sum(), *_universes(a, b))))
        draws.append(shuffled_excess(a, b, k))
    with warnings.catch_warnings():  # a shuffle (or the observed sets) empty in every category: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(observed)), np.nanmean(draws, axis=0)


def _with_q_values(overlap: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """BH q-values of the overlap p-values across layers, per category, and ``significant``
    (descriptive: the claim is tested by one statistic, see :func:`emoselect.analysis.trends.network_tests`)."""
    overlap["q_value"] = np.nan
    for category in overlap["category"].unique():
        rows = overlap["category"] == category
        overlap.loc[rows, "q_value"] = benjamini_hochberg(overlap.loc[rows, "p_value"].to_numpy())
    overlap["significant"] = overlap["q_value"] < alpha
    return overlap


def analyse(
    stimuli: Stimuli,
    responses: dict[str, Responses],
    sites: list[str],
    options: SelectivityOptions | None = None,
    progress: bool = True,
    depths: dict[str, float] | None = None,
    *,
    seed: int = 0,
) -> SelectivityResult:
    """Every selectivity table of one network's responses (see the module docstring).

    Each random quantity has its own stream keyed by (seed, purpose, network, layer, side), so the
    tables of one analysis do not depend on which other analyses are switched on, and two networks
    (the network key: :func:`network_key` of ``responses``) never share null draws.

    Parameters
    ----------
    stimuli : Stimuli
        The pictures with category and split (``stimuli.table``, one row per picture).
    responses : dict[str, Responses]
        Per dataset, ``sites`` {site: float32 [n_pictures, n_units]} in ``stimuli.table`` row order.
    sites : list[str]
        Probe sites in forward order (their position is the depth of the trend tests).
    options : SelectivityOptions, optional
        What to compute (defaults: training split, 999 label shuffles, alpha 0.05).
    progress : bool
        Show a progress bar.
    depths : dict[str, float], optional
        Each site's relative depth in the whole network (0-1; default: its position among ``sites``).
    seed : int
        Seed of every random stream (a run's stages use the run's seed).

    Returns
    -------
    SelectivityResult
        ``units`` (one row per unit and side), ``selective``, ``layers`` (tuning quality and its
        null per layer and side), ``overlap`` (Jaccard vs its label-shuffle null per layer and
        category), ``examples``, ``confounds`` (or None), ``trends`` (the network-level tests) and
        the groups that defined tuning.
    """
    options = options or SelectivityOptions()
    groups, note = define_groups(stimuli, options, seed, responses)
    shared = _Shared.start(groups, options, seed, network_key(responses))
    units, layers, overlap, selective, overlap_nulls, significant = [], [], [], [], [], []
    example_sites = example_layers(sites, options.example_layers)
    example_tables: dict[str, tuple[pd.DataFrame, dict]] = {}
    for depth, site in enumerate(tqdm(sites, desc="selectivity", disable=not progress, leave=False)):
        data = [g.matrix(site) for g in groups]
        relative = depths[site] if depths and site in depths else depth / max(len(sites) - 1, 1)
        tuned = _tune_site(site, relative, depth, data, shared)
        for tuning in tuned:
            units.append(pd.DataFrame(tuning.unit_columns))
            layers.append(tuning.layer_columns)
        rows, layer_null, chosen = _overlap_site(site, tuned[0], tuned[1], groups)
        overlap += rows
        selective += chosen
        overlap_nulls.append(layer_null)
        significant.append(_significant_overlap(site, tuned, groups, options))
        if site in example_sites:
            example_tables[site] = _examples(site, groups, data, tuned, chosen, options.top_fraction)
    overlap = _with_q_values(pd.DataFrame(overlap), options.alpha)
    layers = pd.DataFrame(layers)
    trends = network_tests(layers, overlap, sites, shared.tuning_nulls, overlap_nulls, significant)
    selective = pd.concat(selective, ignore_index=True)
    examples = pd.concat([example_tables[site][0] for site in example_sites], ignore_index=True)
    top_images = {(site, *key): value for site in example_sites for key, value in example_tables[site][1].items()}
    confounds = _confounds(stimuli, responses, sites, seed, progress) if options.confounds else None
    return SelectivityResult(
        units=pd.concat(units, ignore_index=True),
        selective=selective,
        layers=layers,
        overlap=overlap,
        examples=examples,
        confounds=confounds,
        groups=groups,
        pair_note=note,
        top_images=top_images,
        trends=trends,
    )
