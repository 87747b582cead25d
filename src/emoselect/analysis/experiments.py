"""The paper's functional experiments on top of the manipulation engine.

For every manipulated layer and emotion: the selective units of that emotion (from selectivity,
chosen on the units split, pictures the heads never see), and random sets of as many units from the
same layer, are scaled by each beta of a grid (attention gain: enhancement beta > 1, attenuation
0 < beta < 1; beta = 0 is the lesion, beta = 1 the intact network) and mean-ablated (set to their
mean response over the heads' training pictures). Every head is evaluated on the validation and
test pictures of every dataset: its own (the paper's main result) and the other datasets
(cross-dataset transfer).

The primary metric is the AUC of the head's margins (threshold-free: a manipulation that only moves
every margin, and so the decision threshold, does not change it); F1, accuracy and balanced accuracy
at margin 0 are reported beside it. A cell is tested only where the intact head recognises its
emotion on test pictures above chance (:func:`head_tests`). The beta is chosen on the validation
AUC and reported on the test split; selective vs random is tested by sequential Monte Carlo
p-values (Besag & Clifford 1991: random sets in the order drawn, until ``hits`` of them reach the
selective set's effect, or the cap) with Benjamini-Hochberg correction across layers.

Optionally (``gain_form='tuning'``), the Lindsay & Miller form scales every unit of the layer by
gain = max(0, 1 + beta * f), f = the unit's tuning value for the emotion divided by the layer's
largest |tuning value|; its control shuffles f over the units.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ..base.options import check, option
from ..base.problems import InputError
from ..base.randomness import random_stream
from ..pictures.stimuli import CATEGORIES
from .records import Head, ReadoutOptions
from .stats import auc, auc_null, benjamini_hochberg, binary_metrics, exceedance_p_value, sequential_p

# the names of the unit sets in the manipulation tables (column ``units``): the intact network, the
# selective units and the random sets of their size (the paper's form), and the tuning-form gains
# with their shuffled-tuning counterparts
INTACT, SELECTIVE, RANDOM, TUNING, TUNING_SHUFFLED = "intact", "selective", "random", "tuning", "tuning_shuffled"
CHOSEN = (SELECTIVE, TUNING)  # chosen by selectivity
CHANCE = (RANDOM, TUNING_SHUFFLED)  # their chance counterparts

# repeats: random sets that get the whole beta grid (gain test); lesion_repeats: random sets in all
# for the lesion test (the ones beyond ``repeats`` are only lesioned). Smallest attainable one-sided
# p = 1 / (sets + 1): gains 1/50 in quick, lesions 1/100; both 1/100 in paper. The sets are caps:
# a test stops drawing once ``hits`` random sets reach the selective set's effect (then p >= hits /
# sets, far from significance). quick manipulates the 4 deepest layers (a depth trend's exact
# permutation p can reach 1/24).
# controls: random-init control networks of `emoselect run` (smallest p of a trained-vs-controls rank: 1/(K+1)).
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"layers": 4, "betas": [0.0, 0.5, 1.0, 2.0, 4.0], "repeats": 49, "lesion_repeats": 99, "controls": 4},
    "paper": {
        "layers": None,
        "betas": [round(0.5 * i, 1) for i in range(11)],
        "repeats": 99,
        "lesion_repeats": 99,
        "controls": 10,
    },
}


@dataclass
class ManipulationOptions:
    """Options of the manipulation stage (see ``emoselect manipulate -h``).

    ``profile`` sets defaults for ``layers`` (quick: the 4 deepest sites; paper: all), ``betas``
    (quick: 0, 0.5, 1, 2, 4; paper: 0 to 5 in steps of 0.5), ``repeats`` (random sets swept over
    every beta: quick 49, paper 99) and ``lesion_repeats`` (random sets lesioned, at least ``repeats``:
    99);
    explicit values override. ``auto`` (the default) is ``paper`` on a GPU and ``quick`` on a CPU.
    ``random_from``: ``all`` units of the layer or only ``nonselective`` ones. ``transfer``: also
    test each dataset's heads on the other datasets.
    """

    profile: str = option(
        "auto",
        "quick: the 4 deepest layers, betas 0 0.5 1 2 4, 4 controls; paper: all layers, "
        "betas 0..5 step 0.5, 10 controls; 49 (quick) or 99 (paper) random sets for the gains, 99 "
        "lesioned; auto: paper on a GPU, quick on a CPU",
        choices=("auto", *PROFILES),
    )
    layers: list[str] | None = option(
        None,
        "layers to manipulate, by name or range (conv4_1:conv5_3); overrides the profile",
        nargs="+",
        optional=True,
    )
    betas: list[float] | None = option(
        None,
        "gain values (overrides the profile; 0 and 1 always included)",
        kind=float,
        nargs="+",
        low=0,
        optional=True,
    )
    repeats: int | None = option(
        None,
        "random unit sets swept over every beta, per layer and emotion (default: the profile's, quick 49, paper 99)",
        kind=int,
        low=1,
        optional=True,
    )
    lesion_repeats: int | None = option(
        None,
        "random unit sets lesioned, per layer and emotion (at least --repeats; "
        "default: the profile's, 99); smallest attainable p = 1/(sets + 1)",
        kind=int,
        low=1,
        optional=True,
    )
    hits: int = option(
        10,
        "sequential Monte Carlo: stop drawing random sets for a test once this many reach the selective "
        "set's effect (p = hits / sets drawn); 0: always use every set",
        kind=int,
        low=0,
    )
    random_from: str = option("all", "pool of the random unit sets", choices=("all", "nonselective"))
    gain_form: str = option(
        "channels",
        "channels: scale the selective units (paper); tuning: 1 + beta * tuning value (Lindsay & Miller)",
        choices=("channels", "tuning"),
    )
    transfer: bool = option(
        True, "do not test heads on the other datasets", kind=bool, negate=True, flag="--no-transfer"
    )
    readout: ReadoutOptions = option(factory=ReadoutOptions, help="training of the heads", cli=False)
    chunk_images: int = option(32, "pictures per engine chunk (memory bound)", kind=int, low=1)
    sets_per_shard: int = option(
        25,
        "unit sets per block of conditions (per layer and category): the unit of the result cache and "
        "of a cluster shard (emoselect sweep --executor slurm)",
        kind=int,
        low=1,
    )
    batch_samples: int = option(64, "picture-conditions per forward pass", kind=int, low=1)
    alpha: float = option(
        0.05, "false discovery rate for every test", kind=float, low=0, high=1, open_low=True, open_high=True
    )
    NESTED: ClassVar[dict] = {"readout": ReadoutOptions}
    RECORDED: ClassVar[tuple] = (
        "readout_site",
        "engine",
        "engine_seconds",
        "conditions",
    )  # results the stage writes beside

    def __post_init__(self) -> None:
        check(self)
        if self.repeats is not None and self.lesion_repeats is not None and self.lesion_repeats < self.repeats:
            raise InputError(
                f"--lesion-repeats {self.lesion_repeats} is below the {self.repeats} random sets swept over every "
                f"beta (--repeats {self.repeats}), which are lesioned too: give at least {self.repeats}, or fewer --repeats"
            )

    def profile_for(self, device: Any) -> str:
        """The profile in force on ``device`` (a torch.device): ``auto`` resolves by device type."""
        if self.profile != "auto":
            return self.profile
        return "paper" if getattr(device, "type", str(device)) == "cuda" else "quick"

    def resolved(self, sites: list[str], device: Any = "cpu") -> Swept:
        """What the sweep covers on ``sites`` after applying the profile's defaults."""
        profile = PROFILES[self.profile_for(device)]
        layers = select_sites(self.layers, sites) if self.layers else None
        layers = layers or (sites[-profile["layers"] :] if profile["layers"] else list(sites))
        betas = sorted({float(b) for b in (self.betas if self.betas is not None else profile["betas"])} | {0.0, 1.0})
        repeats = self.repeats if self.repeats is not None else profile["repeats"]
        if self.lesion_repeats is not None and self.lesion_repeats < repeats:
            source = (
                f"--repeats {self.repeats}" if self.repeats is not None else f"the {self.profile_for(device)} profile"
            )
            raise InputError(
                f"--lesion-repeats {self.lesion_repeats} is below the {repeats} random sets swept over every beta "
                f"({source}), which are lesioned too: give at least {repeats}, or fewer --repeats"
            )
        lesion_repeats = max(
            repeats, self.lesion_repeats if self.lesion_repeats is not None else profile["lesion_repeats"]
        )
        return Swept(layers=layers, betas=betas, repeats=repeats, lesion_repeats=lesion_repeats)


@dataclass(frozen=True, kw_only=True)
class Swept:
    """What a manipulation sweep covers: the ``layers``, the gains ``betas`` (0 and 1 included),
    ``repeats`` random unit sets swept over every beta and ``lesion_repeats`` (>= ``repeats``; None:
    ``repeats``) random sets lesioned, per layer and category."""

    layers: list[str]
    betas: list[float]
    repeats: int
    lesion_repeats: int | None = None

    @property
    def lesioned(self) -> int:
        """Random sets lesioned per layer and category."""
        return max(self.repeats, self.lesion_repeats or self.repeats)


def select_sites(requested: list[str], sites: list[str], flag: str = "--layers") -> list[str]:
    """Probe sites by name or by range: ``conv4_1:conv5_3`` is every site from conv4_1 to conv5_3
    in forward order (``:conv2_2`` from the first, ``conv5_1:`` to the last). Returns them in
    forward order, each once; an unknown name or an empty range is an :class:`InputError` naming
    the command-line ``flag``."""
    chosen: set[str] = set()
    for item in requested:
        if ":" in item:
            first, _, last = item.partition(":")
            for end in (first, last):
                if end and end not in sites:
                    raise InputError(f"{flag} {item}: {end!r} is not a probe site ({', '.join(sites)})")
            start, stop = sites.index(first) if first else 0, sites.index(last) if last else len(sites) - 1
            if start > stop:
                raise InputError(f"{flag} {item}: {first} comes after {last} in the network")
            chosen.update(sites[start : stop + 1])
        elif item in sites:
            chosen.add(item)
        else:
            raise InputError(f"{flag}: {item!r} is not a probe site of this network ({', '.join(sites)})")
    return [site for site in sites if site in chosen]


@dataclass
class LayerPlan:
    """The conditions of one layer: ``gains`` [n_conditions, n_units] (row 0 = intact), ``offsets``
    [n_conditions, n_units] added after the gain (nonzero only where a mean-ablation sets units to
    their mean response) and one description row per condition (emotion, units, repeat, beta,
    form: ``scale`` or ``mean``, n_units, swept)."""

    layer: str
    gains: np.ndarray
    conditions: pd.DataFrame
    offsets: np.ndarray | None = None

    def rows(self, ranges: list[tuple[int, int]]) -> LayerPlan:
        """The plan restricted to row ranges [(start, stop), ...] (the intact row first), renumbered."""
        index = np.concatenate([np.arange(a, b) for a, b in ranges])
        offsets = self.offsets[index] if self.offsets is not None else None
        return LayerPlan(self.layer, self.gains[index], self.conditions.iloc[index].reset_index(drop=True), offsets)


def _random_sets(
    layer: str, emotion: str, chosen: np.ndarray, pool: np.ndarray, count: int, seed: int
) -> list[np.ndarray]:
    """``count`` random unit sets of the selective set's size from ``pool``, from their own stream.

    Raises InputError when the pool cannot give sets of that size, or too few different ones for the
    test (all random sets would be the same set)."""
    if len(pool) <= len(chosen):  # too small, or every random set would be the same set
        raise InputError(
            f"layer {layer}, {emotion}: the pool of random units has {len(pool)} units, too few for "
            f"random sets of the {len(chosen)} selective units (with --random-from nonselective, "
            f"use --random-from all)"
        )
    rng = random_stream(seed, "random-units", layer, emotion)
    return [np.sort(rng.choice(pool, len(chosen), replace=False)) for _ in range(count)]


def plan_layer(
    layer: str,
    n_units: int,
    units: pd.DataFrame,
    swept: Swept,
    options: ManipulationOptions,
    *,
    seed: int = 0,
    categories: tuple[str, ...] = CATEGORIES,
    means: np.ndarray | None = None,
) -> LayerPlan:
    """All conditions of one layer, for each of the ``categories`` (the run's analysed categories).
    ``units``: the table the gains are built from: the selective units (selective.csv) for
    ``options.gain_form = 'channels'``, the units' tuning (units.csv) for ``'tuning'``.
    beta = 1 is the intact network for every unit set, so it is evaluated once (row 0) and shared.
    Random sets 1..``swept.repeats`` get every beta of ``swept.betas``; sets up to
    ``swept.lesioned`` only beta = 0 (the lesion test). With ``means`` [n_units] (each unit's mean
    response over the heads' training pictures), every lesioned set is also mean-ablated (its units
    set to their means: form ``mean``). Random sets are drawn from streams keyed by ``seed`` (a
    run's stage uses the run's seed), the layer and the category."""
    row0 = {"emotion": "", "units": INTACT, "repeat": 0, "beta": 1.0, "form": "scale", "n_units": 0, "swept": False}
    rows = [row0]
    gains, offsets = [np.ones(n_units, np.float32)], [np.zeros(n_units, np.float32)]
    for emotion in categories:
        if options.gain_form == "channels":
            conditions = _channel_conditions(layer, emotion, n_units, units, swept, options, seed, means)
        else:
            conditions = _tuning_conditions(layer, emotion, n_units, units, swept.betas, swept.repeats, seed)
        for gain, offset, row in conditions:
            gains.append(gain.astype(np.float32))
            offsets.append(offset.astype(np.float32))
            rows.append(row)
    stacked = np.stack(offsets)
    return LayerPlan(layer, np.stack(gains), pd.DataFrame(rows), stacked if stacked.any() else None)


def condition_blocks(conditions: pd.DataFrame, sets_per_block: int) -> list[tuple[int, int]]:
    """A layer's conditions (:class:`LayerPlan` rows) cut into blocks: row ranges [(start, stop), ...]
    in order, the intact row alone, then per category runs of up to ``sets_per_block`` consecutive unit
    sets (a set: its units and repeat, every beta of it). The engine evaluates each block on its own."""
    blocks: list[tuple[int, int]] = [(0, 1)]
    start, sets, last = 1, 0, None
    for row, key in enumerate(zip(conditions["emotion"], conditions["units"], conditions["repeat"])):
        if row == 0 or key == last:
            continue
        if sets == sets_per_block or (last is not None and key[0] != last[0]):
            blocks.append((start, row))
            start, sets = row, 0
        sets, last = sets + 1, key
    if start < len(conditions):
        blocks.append((start, len(conditions)))
    return blocks


def block_label(conditions: pd.DataFrame, block: tuple[int, int]) -> str:
    """A block of conditions in words: ``intact`` or ``<category>, <units> <first>-<last>``."""
    rows = conditions.iloc[block[0] : block[1]]
    if block == (0, 1):
        return INTACT
    first, last = rows.iloc[0], rows.iloc[-1]
    return f"{first['emotion']}, {first['units']} {first['repeat']} to {last['units']} {last['repeat']}"


def _channel_conditions(
    layer: str,
    emotion: str,
    n_units: int,
    selective: pd.DataFrame,
    swept: Swept,
    options: ManipulationOptions,
    seed: int,
    means: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, dict]]:
    """(gain [n_units], offset [n_units], description) of the paper's form: the emotion's selective
    units, then its random sets, scaled by every beta but 1 (random sets beyond ``swept.repeats``
    only by 0), each set also mean-ablated where ``means`` are given."""
    here = selective[selective["layer"] == layer]
    chosen = np.sort(here.loc[here["category"] == emotion, "unit"].to_numpy())
    if len(chosen) == 0:
        return
    nonselective = np.setdiff1d(np.arange(n_units), here["unit"].to_numpy())
    pool = nonselective if options.random_from == "nonselective" else np.arange(n_units)
    sets = [(SELECTIVE, 0, chosen)] + [
        (RANDOM, r + 1, units)
        for r, units in enumerate(_random_sets(layer, emotion, chosen, pool, swept.lesioned, seed))
    ]
    for name, repeat, units in sets:
        row = {"emotion": emotion, "units": name, "repeat": repeat, "n_units": len(units)}
        for beta in swept.betas if repeat <= swept.repeats else [0.0]:
            if beta != 1.0:
                gain = np.ones(n_units)
                gain[units] = beta
                yield gain, np.zeros(n_units), {**row, "beta": beta, "form": "scale", "swept": repeat <= swept.repeats}
        if means is not None:
            gain, offset = np.ones(n_units), np.zeros(n_units)
            gain[units], offset[units] = 0.0, means[units]
            yield gain, offset, {**row, "beta": 0.0, "form": "mean", "swept": False}


def _tuning_conditions(
    layer: str, emotion: str, n_units: int, tuning: pd.DataFrame, betas: list[float], repeats: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray, dict]]:
    """(gain [n_units], offset (none), description) of the Lindsay & Miller form: gain = max(0, 1 + beta * f), f the
    units' tuning values for the emotion over the layer's largest |value|, then f shuffled ``repeats`` times."""
    f = tuning.loc[tuning["layer"] == layer].groupby("unit")[f"t_{emotion}"].mean().reindex(range(n_units)).to_numpy()
    f = np.nan_to_num(
        f / np.nanmax(np.abs(f)) if np.isfinite(f).any() and np.nanmax(np.abs(f)) > 0 else np.zeros(n_units)
    )
    rng = random_stream(seed, "shuffled-tuning", layer, emotion)
    profiles = [(TUNING, 0, f)] + [(TUNING_SHUFFLED, r + 1, rng.permutation(f)) for r in range(repeats)]
    for name, repeat, values in profiles:
        for beta in betas:
            if beta != 1.0:
                row = {"emotion": emotion, "units": name, "repeat": repeat, "beta": beta, "form": "scale"}
                yield (
                    np.maximum(0.0, 1.0 + beta * values),
                    np.zeros(n_units),
                    {**row, "n_units": n_units, "swept": True},
                )


LESIONED = (SELECTIVE, RANDOM)  # unit sets whose beta = 0 silences units (not the tuning form, where gain = 1)


def score_conditions(
    plan: LayerPlan, margins: np.ndarray, heads: list[Head], eval_table: pd.DataFrame, transfer: bool
) -> pd.DataFrame:
    """Metrics of every (head, test dataset, split, condition) of one layer.

    ``margins`` [n_conditions, n_eval, n_heads]; ``eval_table`` the evaluated pictures (dataset,
    category, split) in ``margins`` order. Each condition is scored with the head of its emotion:
    AUC of its margins (threshold-free), and F1, accuracy and balanced accuracy at margin 0. The
    intact row is scored with every head, and beta = 1 rows of the swept sets are reported from it.
    Rows of kind ``gain`` are the swept sets' betas; ``lesion`` the beta = 0 conditions of unit
    sets (never of the tuning form, whose gain at beta = 0 is 1); ``ablation`` their mean-ablations.
    """
    rows = []
    conditions = plan.conditions
    layer_units = plan.gains.shape[1]
    for h, head in enumerate(heads):
        mine = conditions[conditions["emotion"] == head.emotion]
        swept = mine[mine["swept"]].drop_duplicates(["units", "repeat"])
        for test in dict.fromkeys(eval_table["dataset"]):
            if test != head.dataset and not transfer:
                continue
            for split in ("val", "test"):
                mask = ((eval_table["dataset"] == test) & (eval_table["split"] == split)).to_numpy()
                if not mask.any():
                    continue
                truth = eval_table["category"].to_numpy()[mask] == head.emotion
                base = {
                    "train_dataset": head.dataset,
                    "test_dataset": test,
                    "emotion": head.emotion,
                    "layer": plan.layer,
                    "layer_units": layer_units,
                    "split": split,
                }
                rows += _scored_rows(base, mine, swept, margins[:, mask, h], truth)
    return pd.DataFrame(rows)


def _metrics(truth: np.ndarray, margins: np.ndarray, area: float) -> dict:
    """The reported metrics of one condition: AUC (``area``, computed for all conditions at once) and
    the threshold-0 metrics of :func:`binary_metrics`."""
    return {"auc": float(area), **binary_metrics(truth, margins > 0)}


def _scored_rows(
    base: dict, conditions: pd.DataFrame, swept: pd.DataFrame, margins: np.ndarray, truth: np.ndarray
) -> list[dict]:
    """The rows of one head on one test set: intact, then beta = 1 of every swept set (= intact), then
    each of the head's conditions as a gain row (swept sets), a lesion row (beta = 0 of a unit set)
    and/or an ablation row (mean-ablation). ``margins`` [n_conditions, n_pictures] of this head;
    ``truth`` [n_pictures] is the emotion."""
    areas = auc(truth, margins)
    intact = _metrics(truth, margins[0], areas[0])
    rows = [{**base, "kind": "intact", "units": INTACT, "repeat": 0, "beta": 1.0, "n_units": 0, **intact}]
    for name, repeat, n_units in swept[["units", "repeat", "n_units"]].itertuples(index=False):
        row = {"kind": "gain", "units": name, "repeat": int(repeat), "beta": 1.0, "n_units": int(n_units)}
        rows.append({**base, **row, **intact})
    for c, condition in zip(conditions.index, conditions.itertuples(index=False)):
        common = {
            **base,
            "units": condition.units,
            "repeat": int(condition.repeat),
            "beta": float(condition.beta),
            "n_units": int(condition.n_units),
            **_metrics(truth, margins[c], areas[c]),
        }
        if condition.form == "mean":
            rows.append({**common, "kind": "ablation"})
            continue
        if condition.swept:
            rows.append({**common, "kind": "gain"})
        if condition.units in LESIONED and condition.beta == 0.0:
            rows.append({**common, "kind": "lesion"})
    return rows


def _pct(new: float, old: float) -> float:
    return 100.0 * (new - old) / old if old else np.nan


def _best_columns(score: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """Per row of ``score`` [n_sets, n_betas], the column of the highest score; ties go to the beta
    closest to 1 (no change), then to the smaller beta."""
    preference = np.lexsort((betas, np.abs(betas - 1.0)))  # columns, most preferred first
    best = score[:, preference] == np.nanmax(score, axis=1, keepdims=True)
    return preference[best.argmax(axis=1)]


def best_beta(betas: Sequence[float] | np.ndarray, score: Sequence[float] | np.ndarray) -> float:
    """The beta with the highest score; ties go to the beta closest to 1 (no change), then the smaller one."""
    betas = np.asarray(betas, float)
    return float(betas[_best_columns(np.asarray(score, float)[None, :], betas)[0]])


ENHANCE, ATTENUATE = "enhance", "attenuate"  # gains above 1, gains strictly between 0 and 1


def _gain_outcomes(gain: pd.DataFrame, direction: str) -> pd.DataFrame:
    """Per swept unit set (in repeat order), for the betas of ``direction`` (enhance: beta >= 1;
    attenuate: 0 < beta <= 1; beta = 1 is "no change"): the beta with the best validation AUC, its
    validation and test AUC and test F1 (honest), and the beta with the best test F1 and that F1
    (optimistic, as the paper chose it)."""
    index = ["units", "repeat"]
    columns = index + ["n_units", "beta", "val_auc", "auc", "f1", "test_chosen_beta", "test_chosen_f1"]
    keep = gain["beta"] >= 1.0 if direction == ENHANCE else (gain["beta"] > 0) & (gain["beta"] <= 1.0)
    gain = gain[keep]
    val = gain[gain["split"] == "val"]
    test = gain[gain["split"] == "test"]
    if val.empty or test.empty:
        return pd.DataFrame(columns=columns)
    val_auc = val.pivot(index=index, columns="beta", values="auc")
    test_auc = test.pivot(index=index, columns="beta", values="auc").reindex(
        index=val_auc.index, columns=val_auc.columns
    )
    test_f1 = test.pivot(index=index, columns="beta", values="f1").reindex(index=val_auc.index, columns=val_auc.columns)
    betas = val_auc.columns.to_numpy(float)
    rows = np.arange(len(val_auc))
    honest, optimistic = _best_columns(val_auc.to_numpy(), betas), _best_columns(test_f1.to_numpy(), betas)
    sizes = gain.drop_duplicates(index).set_index(index)["n_units"].reindex(val_auc.index)
    return pd.DataFrame(
        {
            "units": val_auc.index.get_level_values(0),
            "repeat": val_auc.index.get_level_values(1),
            "n_units": sizes.to_numpy().astype(int),
            "beta": betas[honest],
            "val_auc": val_auc.to_numpy()[rows, honest],
            "auc": test_auc.to_numpy()[rows, honest],
            "f1": test_f1.to_numpy()[rows, honest],
            "test_chosen_beta": betas[optimistic],
            "test_chosen_f1": test_f1.to_numpy()[rows, optimistic],
        }
    ).sort_values("repeat", kind="stable")


@dataclass(frozen=True, kw_only=True)
class Sequential:
    """How the random sets of a test are used: ``hits`` (Besag-Clifford h: stop once this many random
    sets reach the selective set's effect; 0 = never stop), the caps ``gain_sets`` (swept random
    sets) and ``lesion_sets`` (lesioned ones), and ``described``: the first random sets (always
    evaluated) over which the descriptive random means are taken."""

    hits: int = 10
    gain_sets: int = 49
    lesion_sets: int = 99
    described: int = 24


def _tested(observed: float, null: np.ndarray, cap: int, hits: int) -> tuple[float, float, int, bool]:
    """Sequential p in both directions (:func:`sequential_p`; hits = 0: the plain rank p at the cap):
    (p that the random sets' effects reach ``observed``, p that they are at most it, sets used, done)."""
    h = hits if hits > 0 else cap + 1
    above, used_above, done_above = sequential_p(observed, null, h, cap)
    below, used_below, done_below = sequential_p(-observed, -np.asarray(null, float), h, cap)
    return above, below, max(used_above, used_below), done_above and done_below


def _lesion_outcome(group: pd.DataFrame, kind: str, original: float) -> tuple[dict, np.ndarray]:
    """The selective set's and the random sets' (repeat order) test AUC and F1 for ``kind``
    (``lesion`` or ``ablation``): ({auc, val_auc, f1}, random AUCs [n])."""
    rows = group[group["kind"] == kind]
    test, val = rows[rows["split"] == "test"], rows[rows["split"] == "val"]
    mine = test[test["units"] == SELECTIVE]
    random = test[test["units"] == RANDOM].sort_values("repeat", kind="stable")["auc"].to_numpy()
    mine_val = val.loc[val["units"] == SELECTIVE, "auc"]
    if mine.empty:
        return {"auc": np.nan, "val_auc": np.nan, "f1": np.nan}, random
    return {
        "auc": float(mine["auc"].iloc[0]),
        "val_auc": float(mine_val.iloc[0]) if len(mine_val) else np.nan,
        "f1": float(mine["f1"].iloc[0]),
    }, random


def _mean(values: np.ndarray) -> float:
    values = np.asarray(values, float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else np.nan


# the columns of the summary and of Table 1, also when no emotion has selective units to manipulate
SUMMARY_COLUMNS = ["train_dataset", "test_dataset", "emotion", "layer", "units", "n_units", "layer_units",
                   "head_auc", "p_head", "applicable", "original_auc", "original_f1",
                   "enhanced_beta", "enhanced_val_auc", "enhanced_auc", "enhanced_f1", "random_enhanced_auc",
                   "enhance_excess", "attenuated_beta", "attenuated_auc", "random_attenuated_auc",
                   "test_chosen_beta", "test_chosen_f1", "test_chosen_change_pct", "random_test_chosen_f1",
                   "lesioned_val_auc", "lesioned_auc", "lesioned_f1", "random_lesioned_auc", "lesion_excess",
                   "lesion_excess_per_unit", "ablated_auc", "ablated_f1", "random_ablated_auc", "ablation_excess",
                   "ablation_excess_per_unit", "n_random_described", "n_random_enhance", "n_random_lesion",
                   "n_random_ablation", "hits", "p_enhance", "p_enhance_below", "min_p_enhance", "p_lesion",
                   "p_lesion_below", "min_p_lesion", "p_ablate", "p_ablate_below", "complete", "q_enhance",
                   "q_enhance_below", "q_lesion", "q_lesion_below", "q_ablate", "q_ablate_below"]  # fmt: skip
TABLE1_COLUMNS = ["train_dataset", "test_dataset", "emotion", "applicable", "original_auc", "original_f1",
                  "enhanced_layer", "enhanced_beta", "enhanced_auc", "enhanced_f1", "random_enhanced_auc",
                  "test_chosen_layer", "test_chosen_beta", "test_chosen_f1", "test_chosen_change_pct",
                  "random_test_chosen_f1", "lesioned_layer", "lesioned_auc", "lesioned_f1", "random_lesioned_auc",
                  "ablated_auc", "random_ablated_auc"]  # fmt: skip


def _summary_row(group: pd.DataFrame, applicable: bool, sequential: Sequential) -> dict | None:
    """The summary of one train/test dataset, emotion and layer (see :func:`summarise`), or None where
    the emotion has no selective units (or tuning gains) there. Not ``applicable`` (the intact head
    is at chance): descriptive values only, no p."""
    intact = group[(group["kind"] == "intact") & (group["split"] == "test")]
    original_auc = float(intact["auc"].iloc[0]) if len(intact) else np.nan
    original_f1 = float(intact["f1"].iloc[0]) if len(intact) else np.nan
    gains = group[group["kind"] == "gain"]
    enhanced, attenuated = _gain_outcomes(gains, ENHANCE), _gain_outcomes(gains, ATTENUATE)
    mine = group[group["units"].isin(CHOSEN)]
    if mine.empty:
        return None
    chosen = _chosen_enhancement(enhanced, mine)
    random = enhanced[enhanced["units"].isin(CHANCE)]
    described = random[random["repeat"] <= sequential.described]
    weak = attenuated[attenuated["units"].isin(CHOSEN)]
    weak_random = attenuated[attenuated["units"].isin(CHANCE) & (attenuated["repeat"] <= sequential.described)]
    lesion, random_lesion = _lesion_outcome(group, "lesion", original_auc)
    ablation, random_ablation = _lesion_outcome(group, "ablation", original_auc)
    n_units = int(chosen["n_units"])
    row = dict(
        units=chosen["units"],
        n_units=n_units,
        layer_units=int(group["layer_units"].iloc[0]) if "layer_units" in group else np.nan,
        head_auc=original_auc,
        applicable=applicable,
        original_auc=original_auc,
        original_f1=original_f1,
        enhanced_beta=chosen["beta"],
        enhanced_val_auc=chosen["val_auc"],
        enhanced_auc=chosen["auc"],
        enhanced_f1=chosen["f1"],
        random_enhanced_auc=_mean(described["auc"]),
        enhance_excess=chosen["auc"] - _mean(described["auc"]),
        attenuated_beta=float(weak["beta"].iloc[0]) if len(weak) else np.nan,
        attenuated_auc=float(weak["auc"].iloc[0]) if len(weak) else np.nan,
        random_attenuated_auc=_mean(weak_random["auc"]),
        test_chosen_beta=chosen["test_chosen_beta"],
        test_chosen_f1=chosen["test_chosen_f1"],
        test_chosen_change_pct=_pct(chosen["test_chosen_f1"], original_f1),
        random_test_chosen_f1=_mean(described["test_chosen_f1"]),
        n_random_described=len(described),
        hits=sequential.hits,
    )
    for name, outcome, null in (("lesion", lesion, random_lesion), ("ablation", ablation, random_ablation)):
        row.update(_lesion_columns(name, outcome, null[: sequential.described], n_units))
    row["lesioned_val_auc"] = lesion["val_auc"]
    tests = (
        ("enhance", chosen["auc"] - original_auc, random["auc"].to_numpy() - original_auc, sequential.gain_sets),
        ("lesion", original_auc - lesion["auc"], original_auc - random_lesion, sequential.lesion_sets),
        ("ablate", original_auc - ablation["auc"], original_auc - random_ablation, sequential.lesion_sets),
    )
    return {**row, **_test_columns(tests, applicable, sequential.hits)}


def _chosen_enhancement(enhanced: pd.DataFrame, mine: pd.DataFrame) -> pd.Series:
    """The selective (or tuning) set's row of the ``enhanced`` outcomes, or a row of NaNs naming the
    set (from ``mine``, its conditions) where no gain > 1 was swept (e.g. lesions only)."""
    if enhanced["units"].isin(CHOSEN).any():
        return enhanced[enhanced["units"].isin(CHOSEN)].iloc[0]
    none = {"units": mine["units"].iloc[0], "n_units": mine["n_units"].iloc[0], "repeat": 0}
    return pd.Series({**dict.fromkeys(enhanced.columns, np.nan), **none})


def _lesion_columns(name: str, outcome: pd.Series, null: np.ndarray, n_units: int) -> dict:
    """The summary columns of the selective set's zero-lesion (``name`` 'lesion') or mean-ablation
    ('ablation'): its test AUC and F1, the mean test AUC of the described random sets (``null``),
    and the excess (random mean - selective AUC: how much more the selective set lowers the AUC),
    raw and per unit of the set."""
    prefix = "lesioned" if name == "lesion" else "ablated"
    random_mean = _mean(null)
    excess = random_mean - outcome["auc"]
    return {
        f"{prefix}_auc": outcome["auc"],
        f"{prefix}_f1": outcome["f1"],
        f"random_{prefix}_auc": random_mean,
        f"{name}_excess": excess,
        f"{name}_excess_per_unit": excess / n_units if n_units else np.nan,
    }


def _test_columns(tests: tuple, applicable: bool, hits: int) -> dict:
    """p-values of the (name, observed effect, random sets' effects, cap) ``tests`` (sequential Monte
    Carlo, ``hits`` h; none where not ``applicable``), the random sets each used, the smallest
    attainable p of the enhancement and lesion tests, and whether every test concluded."""
    columns: dict = {}
    complete = True
    for name, observed, null, cap in tests:
        above, below, used, done = _tested(observed, null, cap, hits) if applicable else (np.nan,) * 3 + (True,)
        complete &= bool(done) or not np.isfinite(observed)
        count = "n_random_" + {"enhance": "enhance", "lesion": "lesion", "ablate": "ablation"}[name]
        columns.update({f"p_{name}": above, f"p_{name}_below": below, count: used if applicable else 0})
        if name != "ablate":
            columns[f"min_p_{name}"] = 1 / (cap + 1)
    columns["complete"] = complete
    return columns


def summarise(
    manipulation: pd.DataFrame,
    alpha: float = 0.05,
    heads: pd.DataFrame | None = None,
    sequential: Sequential | None = None,
) -> pd.DataFrame:
    """Per train/test dataset, emotion and layer: the intact head's test AUC and F1 and whether it
    recognises its emotion above chance (``heads``: :func:`head_tests`' table; without it every cell
    is tested); enhancement (beta > 1) and attenuation (0 < beta < 1) at the beta with the best
    validation AUC, reported on the test split (and the paper's optimistic beta chosen on test F1);
    zero-lesion and mean-ablation; the random sets' means over the first ``sequential.described``
    sets and the excess of the selective set over them (also per lesioned unit); sequential Monte
    Carlo p-values of selective vs random in both directions for enhancement, lesion and
    mean-ablation on the AUC (:class:`Sequential`), and BH q-values across layers. ``complete``:
    every test of the row has the random sets it needs. Without ``sequential``: every random set in
    the table is used (caps = the sets there), with the default hits."""
    if sequential is None:
        random = manipulation[manipulation["units"].isin(CHANCE)] if len(manipulation) else manipulation
        caps = [int(random.loc[random["kind"] == kind, "repeat"].max()) if (random["kind"] == kind).any() else 0
                for kind in ("gain", "lesion")]  # fmt: skip
        sequential = Sequential(gain_sets=caps[0], lesion_sets=caps[1], described=max(caps))
    rows = []
    keys = ["train_dataset", "test_dataset", "emotion", "layer"]
    chance = (
        {} if heads is None else {tuple(r[:3]): (r[3], r[4]) for r in heads[keys[:3] + ["p_head", "auc"]].to_numpy()}
    )
    for key, group in manipulation.groupby(keys, sort=False):
        p_head = chance.get(tuple(key[:3]), (np.nan, np.nan))[0]
        applicable = bool(heads is None or (np.isfinite(p_head) and p_head < alpha))
        row = _summary_row(group, applicable, sequential)
        if row is not None:
            rows.append({**dict(zip(keys, key)), **row, "p_head": p_head})
    summary = pd.DataFrame(rows)
    if summary.empty:  # no emotion has selective units at these layers: a table without rows
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    for column in ("p_enhance", "p_enhance_below", "p_lesion", "p_lesion_below", "p_ablate", "p_ablate_below"):
        q = column.replace("p_", "q_", 1)
        summary[q] = np.nan
        for _, index in summary.groupby(["train_dataset", "test_dataset", "emotion"]).groups.items():
            summary.loc[index, q] = benjamini_hochberg(summary.loc[index, column].to_numpy())
    return summary[SUMMARY_COLUMNS]


def head_tests(
    margins: dict[str, np.ndarray], table: pd.DataFrame, heads: list[Head], transfer: bool, seed: int, key: str = "",
    shuffles: int = 999,
) -> pd.DataFrame:  # fmt: skip
    """Does each intact head recognise its emotion on test pictures above chance? Its margins' AUC
    against ``shuffles`` permutations of the test pictures' labels (one-sided, +1 corrected; a stream
    per head and test set keyed by ``seed`` and ``key``, e.g. the heads' digest).

    ``margins``: per dataset, the intact heads' margins [n_pictures, n_heads] in ``table`` order of
    that dataset (``table``: the stimuli, with dataset, category, split). Returns one row per head
    and test dataset: train_dataset, test_dataset, emotion, auc, p_head, n_null."""
    rows = []
    for h, head in enumerate(heads):
        for test in dict.fromkeys(table["dataset"]):
            if test != head.dataset and not transfer:
                continue
            mine = table[table["dataset"] == test]
            mask = (mine["split"] == "test").to_numpy()
            truth = mine["category"].to_numpy()[mask] == head.emotion
            scores = margins[test][mask, h]
            observed = float(auc(truth, scores))
            null = auc_null(
                truth, scores, random_stream(seed, "head-null", key, head.dataset, test, head.emotion), shuffles
            )
            p = exceedance_p_value(observed, null) if np.isfinite(observed) else np.nan
            rows.append({"train_dataset": head.dataset, "test_dataset": test, "emotion": head.emotion, "auc": observed,
                         "p_head": p, "n_null": shuffles})  # fmt: skip
    return pd.DataFrame(rows, columns=["train_dataset", "test_dataset", "emotion", "auc", "p_head", "n_null"])


def table_one(summary: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1 per train/test dataset and emotion: original, best enhanced (beta > 1;
    layer and beta chosen on the validation AUC), lesioned (the layer whose selective lesion lowers
    the validation AUC most; its mean-ablation beside it), reported on the test split as AUC and
    F1. Beside it, the optimistic gain the paper reported: layer and beta chosen on the test split's
    F1 itself, for the selective set and (mean over the described random sets, each at its own best
    test beta) the random sets."""
    rows = []
    for key, group in summary.groupby(["train_dataset", "test_dataset", "emotion"], sort=False):
        by_layer = group.set_index("layer")
        best = (
            by_layer.loc[by_layer["enhanced_val_auc"].idxmax()] if by_layer["enhanced_val_auc"].notna().any() else None
        )
        if best is None:
            continue
        lesioned = by_layer["lesioned_val_auc"]
        worst = by_layer.loc[lesioned.idxmin()] if lesioned.notna().any() else None
        optimistic = by_layer.loc[by_layer["test_chosen_f1"].idxmax()]
        lesion = {
            "lesioned_layer": worst.name if worst is not None else None,
            **{c: (worst[c] if worst is not None else np.nan) for c in
               ("lesioned_auc", "lesioned_f1", "random_lesioned_auc", "ablated_auc", "random_ablated_auc")},
        }  # fmt: skip
        rows.append(
            {
                "train_dataset": key[0],
                "test_dataset": key[1],
                "emotion": key[2],
                "applicable": bool(best["applicable"]),
                "original_auc": best["original_auc"],
                "original_f1": best["original_f1"],
                "enhanced_layer": best.name,
                "enhanced_beta": best["enhanced_beta"],
                "enhanced_auc": best["enhanced_auc"],
                "enhanced_f1": best["enhanced_f1"],
                "random_enhanced_auc": best["random_enhanced_auc"],
                "test_chosen_layer": optimistic.name,
                "test_chosen_beta": optimistic["test_chosen_beta"],
                "test_chosen_f1": optimistic["test_chosen_f1"],
                "test_chosen_change_pct": optimistic["test_chosen_change_pct"],
                "random_test_chosen_f1": optimistic["random_test_chosen_f1"],
                **lesion,
            }
        )
    return pd.DataFrame(rows, columns=TABLE1_COLUMNS) if rows else pd.DataFrame(columns=TABLE1_COLUMNS)
