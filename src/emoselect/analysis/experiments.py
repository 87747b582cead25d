"""The paper's functional experiments on top of the manipulation engine.

For every manipulated layer and emotion: the selective units of that emotion (from selectivity),
and R random sets of as many units from the same layer, are scaled by each beta of a grid
(attention gain; beta = 0 is the lesion, beta = 1 the intact network). Every head is evaluated on
the validation and test pictures of every dataset: its own (the paper's main result) and the other
datasets (cross-dataset transfer). The best beta is chosen on the validation split and reported on
the test split; selective vs random is tested by the rank of the selective result among the random
repeats (one-sided, +1 corrected) with Benjamini-Hochberg correction across layers.

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
from .stats import benjamini_hochberg, binary_metrics, rank_p_values

# the names of the unit sets in the manipulation tables (column ``units``): the intact network, the
# selective units and the random sets of their size (the paper's form), and the tuning-form gains
# with their shuffled-tuning counterparts
INTACT, SELECTIVE, RANDOM, TUNING, TUNING_SHUFFLED = "intact", "selective", "random", "tuning", "tuning_shuffled"
CHOSEN = (SELECTIVE, TUNING)  # chosen by selectivity
CHANCE = (RANDOM, TUNING_SHUFFLED)  # their chance counterparts

# repeats: random sets that get the whole beta grid (gain test); lesion_repeats: random sets in all
# for the lesion test (the ones beyond ``repeats`` are only lesioned). Smallest attainable one-sided
# p = 1 / (sets + 1): gains 1/50 in quick (BH over its 2 layers can still reach q = 0.04), lesions
# 1/100; both 1/100 in paper.
# controls: random-init control networks of `emoselect run` (smallest p of a trained-vs-controls rank: 1/(K+1)).
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"layers": 2, "betas": [0.0, 0.5, 1.0, 2.0, 4.0], "repeats": 49, "lesion_repeats": 99, "controls": 4},
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

    ``profile`` sets defaults for ``layers`` (quick: the 2 deepest sites; paper: all), ``betas``
    (quick: 0, 0.5, 1, 2, 4; paper: 0 to 5 in steps of 0.5), ``repeats`` (random sets swept over
    every beta: quick 49, paper 99) and ``lesion_repeats`` (random sets lesioned, at least ``repeats``:
    99);
    explicit values override. ``auto`` (the default) is ``paper`` on a GPU and ``quick`` on a CPU.
    ``random_from``: ``all`` units of the layer or only ``nonselective`` ones. ``transfer``: also
    test each dataset's heads on the other datasets.
    """

    profile: str = option(
        "auto",
        "quick: the 2 deepest layers, betas 0 0.5 1 2 4, 4 controls; paper: all layers, "
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
    RECORDED: ClassVar[tuple] = ("readout_site", "engine", "engine_seconds")  # results the stage writes beside

    def __post_init__(self) -> None:
        check(self)

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
    """The conditions of one layer: ``gains`` [n_conditions, n_units] (row 0 = intact) and one
    description row per condition (emotion, units, repeat, beta, n_units)."""

    layer: str
    gains: np.ndarray
    conditions: pd.DataFrame


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
    selective: pd.DataFrame,
    swept: Swept,
    options: ManipulationOptions,
    *,
    seed: int = 0,
    tuning: pd.DataFrame | None = None,
    categories: tuple[str, ...] = CATEGORIES,
) -> LayerPlan:
    """All conditions of one layer, for each of the ``categories`` (the run's analysed categories).
    beta = 1 is the intact network for every unit set, so it is evaluated once (row 0) and shared.
    Random sets 1..``swept.repeats`` get every beta of ``swept.betas``; sets up to
    ``swept.lesioned`` only beta = 0 (the lesion test). Random sets are drawn from streams keyed by
    ``seed`` (a run's stage uses the run's seed), the layer and the category."""
    rows = [{"emotion": "", "units": INTACT, "repeat": 0, "beta": 1.0, "n_units": 0, "swept": False}]
    gains = [np.ones(n_units, np.float32)]
    for emotion in categories:
        if options.gain_form == "channels":
            conditions = _channel_conditions(layer, emotion, n_units, selective, swept, options, seed)
        else:
            if tuning is None:
                raise ValueError("gain_form='tuning' needs the units table (units.csv) as `tuning`")
            conditions = _tuning_conditions(layer, emotion, n_units, tuning, swept.betas, swept.repeats, seed)
        for gain, row in conditions:
            gains.append(gain.astype(np.float32))
            rows.append(row)
    return LayerPlan(layer, np.stack(gains), pd.DataFrame(rows))


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
) -> Iterator[tuple[np.ndarray, dict]]:
    """(gain [n_units], description) of the paper's form: the emotion's selective units, then its
    random sets, scaled by every beta but 1 (random sets beyond ``swept.repeats`` only by 0)."""
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
        for beta in swept.betas if repeat <= swept.repeats else [0.0]:
            if beta != 1.0:
                gain = np.ones(n_units)
                gain[units] = beta
                yield (
                    gain,
                    {
                        "emotion": emotion,
                        "units": name,
                        "repeat": repeat,
                        "beta": beta,
                        "n_units": len(units),
                        "swept": repeat <= swept.repeats,
                    },
                )


def _tuning_conditions(
    layer: str, emotion: str, n_units: int, tuning: pd.DataFrame, betas: list[float], repeats: int, seed: int
) -> Iterator[tuple[np.ndarray, dict]]:
    """(gain [n_units], description) of the Lindsay & Miller form: gain = max(0, 1 + beta * f), f the
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
                row = {"emotion": emotion, "units": name, "repeat": repeat, "beta": beta, "n_units": n_units}
                yield np.maximum(0.0, 1.0 + beta * values), {**row, "swept": True}


LESIONED = (SELECTIVE, RANDOM)  # unit sets whose beta = 0 silences units (not the tuning form, where gain = 1)


def score_conditions(
    plan: LayerPlan, margins: np.ndarray, heads: list[Head], eval_table: pd.DataFrame, transfer: bool
) -> pd.DataFrame:
    """Metrics of every (head, test dataset, split, condition) of one layer.

    ``margins`` [n_conditions, n_eval, n_heads]; ``eval_table`` the evaluated pictures (dataset,
    category, split) in ``margins`` order. Each condition is scored with the head of its emotion;
    the intact row is scored with every head, and beta = 1 rows of the swept sets are reported
    from it. Rows of kind ``gain`` are the swept sets' betas; rows of kind ``lesion`` the beta = 0
    conditions of unit sets (never of the tuning form, whose gain at beta = 0 is 1).
    """
    rows = []
    conditions = plan.conditions
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
                    "split": split,
                }
                rows += _scored_rows(base, mine, swept, margins[:, mask, h], truth)
    return pd.DataFrame(rows)


def _scored_rows(
    base: dict, conditions: pd.DataFrame, swept: pd.DataFrame, margins: np.ndarray, truth: np.ndarray
) -> list[dict]:
    """The rows of one head on one test set: intact, then beta = 1 of every swept set (= intact), then
    each of the head's conditions as a gain row (swept sets) and/or a lesion row (beta = 0 of a unit
    set). ``margins`` [n_conditions, n_pictures] of this head; ``truth`` [n_pictures] is the emotion."""
    intact = binary_metrics(truth, margins[0] > 0)
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
            **binary_metrics(truth, margins[c] > 0),
        }
        if condition.swept:
            rows.append({**common, "kind": "gain"})
        if condition.units in LESIONED and condition.beta == 0.0:
            rows.append({**common, "kind": "lesion"})
    return rows


def _pct(new: float, old: float) -> float:
    return 100.0 * (new - old) / old if old else np.nan


def _best_columns(f1: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """Per row of ``f1`` [n_sets, n_betas], the column of the highest F1; ties go to the beta
    closest to 1 (no change), then to the smaller beta."""
    preference = np.lexsort((betas, np.abs(betas - 1.0)))  # columns, most preferred first
    best = f1[:, preference] == np.nanmax(f1, axis=1, keepdims=True)
    return preference[best.argmax(axis=1)]


def best_beta(betas: Sequence[float] | np.ndarray, f1: Sequence[float] | np.ndarray) -> float:
    """The beta with the highest F1; ties go to the beta closest to 1 (no change), then the smaller one."""
    betas = np.asarray(betas, float)
    return float(betas[_best_columns(np.asarray(f1, float)[None, :], betas)[0]])


def _gain_outcomes(gain: pd.DataFrame) -> pd.DataFrame:
    """Per swept unit set: beta chosen on val and its test F1 (honest), and beta chosen on test and
    its test F1 (optimistic, as the paper chose it)."""
    index = ["units", "repeat"]
    val = gain[gain["split"] == "val"].pivot(index=index, columns="beta", values="f1")
    test = gain[gain["split"] == "test"].pivot(index=index, columns="beta", values="f1")
    if val.empty or test.empty:
        return pd.DataFrame(
            columns=index + ["n_units", "best_beta", "enhanced_f1", "test_chosen_beta", "test_chosen_f1"]
        )
    test = test.reindex(index=val.index, columns=val.columns)
    betas = val.columns.to_numpy(float)
    values = test.to_numpy()
    rows = np.arange(len(val))
    honest, optimistic = _best_columns(val.to_numpy(), betas), _best_columns(values, betas)
    sizes = gain.drop_duplicates(index).set_index(index)["n_units"].reindex(val.index)
    return pd.DataFrame(
        {
            "units": val.index.get_level_values(0),
            "repeat": val.index.get_level_values(1),
            "n_units": sizes.to_numpy().astype(int),
            "best_beta": betas[honest],
            "enhanced_f1": values[rows, honest],
            "test_chosen_beta": betas[optimistic],
            "test_chosen_f1": values[rows, optimistic],
        }
    )


# the columns of the summary and of Table 1, also when no emotion has selective units to manipulate
SUMMARY_COLUMNS = ["train_dataset", "test_dataset", "emotion", "layer", "units", "n_units", "original_f1", "best_beta",
                   "enhanced_f1", "enhanced_change_pct", "test_chosen_beta", "test_chosen_f1", "test_chosen_change_pct",
                   "lesioned_f1", "lesioned_change_pct", "random_enhanced_f1", "random_test_chosen_f1",
                   "random_lesioned_f1", "n_random", "n_random_lesion", "p_enhance", "p_enhance_below",
                   "min_p_enhance", "p_lesion", "p_lesion_below", "min_p_lesion", "q_enhance", "q_enhance_below",
                   "q_lesion", "q_lesion_below"]  # fmt: skip
TABLE1_COLUMNS = ["train_dataset", "test_dataset", "emotion", "original_f1", "enhanced_layer", "enhanced_beta",
                  "enhanced_f1", "enhanced_change_pct", "random_enhanced_f1", "test_chosen_layer", "test_chosen_beta",
                  "test_chosen_f1", "test_chosen_change_pct", "random_test_chosen_f1", "lesioned_layer", "lesioned_f1",
                  "lesioned_change_pct", "random_lesioned_f1"]  # fmt: skip


def _summary_row(group: pd.DataFrame) -> dict | None:
    """The summary of one train/test dataset, emotion and layer (see :func:`summarise`), or None where
    the emotion has no selective units (or tuning gains) there."""
    intact = group[(group["kind"] == "intact") & (group["split"] == "test")]
    original = float(intact["f1"].iloc[0]) if len(intact) else np.nan
    gains = _gain_outcomes(group[group["kind"] == "gain"])
    lesions = group[(group["kind"] == "lesion") & (group["split"] == "test")]
    if gains.empty or not gains["units"].isin(CHOSEN).any():
        return None
    chosen = gains[gains["units"].isin(CHOSEN)].iloc[0]
    random = gains[gains["units"].isin(CHANCE)]
    lesioned = lesions.loc[lesions["units"] == SELECTIVE, "f1"]
    random_lesioned = lesions.loc[lesions["units"] == RANDOM, "f1"].to_numpy()
    lesioned = float(lesioned.iloc[0]) if len(lesioned) else np.nan
    p_enhance, p_enhance_below = rank_p_values(
        chosen["enhanced_f1"] - original, random["enhanced_f1"].to_numpy() - original
    )
    p_lesion, p_lesion_below = rank_p_values(original - lesioned, original - random_lesioned)
    return dict(
        units=chosen["units"],
        n_units=chosen["n_units"],
        original_f1=original,
        best_beta=chosen["best_beta"],
        enhanced_f1=chosen["enhanced_f1"],
        enhanced_change_pct=_pct(chosen["enhanced_f1"], original),
        test_chosen_beta=chosen["test_chosen_beta"],
        test_chosen_f1=chosen["test_chosen_f1"],
        test_chosen_change_pct=_pct(chosen["test_chosen_f1"], original),
        lesioned_f1=lesioned,
        lesioned_change_pct=_pct(lesioned, original),
        random_enhanced_f1=float(random["enhanced_f1"].mean()) if len(random) else np.nan,
        random_test_chosen_f1=float(random["test_chosen_f1"].mean()) if len(random) else np.nan,
        random_lesioned_f1=float(np.mean(random_lesioned)) if len(random_lesioned) else np.nan,
        n_random=len(random),
        n_random_lesion=len(random_lesioned),
        p_enhance=p_enhance,
        p_enhance_below=p_enhance_below,
        min_p_enhance=1 / (len(random) + 1),
        p_lesion=p_lesion,
        p_lesion_below=p_lesion_below,
        min_p_lesion=1 / (len(random_lesioned) + 1) if len(random_lesioned) else np.nan,
    )


def summarise(manipulation: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per train/test dataset, emotion and layer: intact test F1; enhanced test F1 at the beta with
    the best validation F1 (and, optimistic, at the beta with the best test F1); lesioned test F1;
    the same for the random sets (mean over sets); rank p-values of selective vs random in both
    directions with their smallest attainable value 1 / (sets + 1), and BH q-values across layers."""
    rows = []
    keys = ["train_dataset", "test_dataset", "emotion", "layer"]
    for key, group in manipulation.groupby(keys, sort=False):
        row = _summary_row(group)
        if row is not None:
            rows.append({**dict(zip(keys, key)), **row})
    summary = pd.DataFrame(rows)
    if summary.empty:  # no emotion has selective units at these layers: a table without rows
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    for column in ("p_enhance", "p_enhance_below", "p_lesion", "p_lesion_below"):
        q = column.replace("p_", "q_", 1)
        summary[q] = np.nan
        for _, index in summary.groupby(["train_dataset", "test_dataset", "emotion"]).groups.items():
            summary.loc[index, q] = benjamini_hochberg(summary.loc[index, column].to_numpy())
    return summary


def table_one(summary: pd.DataFrame, manipulation: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1 per train/test dataset and emotion: original, best enhanced (layer and
    beta chosen on the validation split), lesioned (the layer whose selective lesion lowers the
    validation F1 most), each with its % change; reported on the test split. Beside it, the
    optimistic gain the paper reported: layer and beta chosen on the test split itself, for the
    selective set and (mean over sets, each at its own best test beta) the random sets."""
    rows = []
    val = manipulation[manipulation["split"] == "val"]
    for key, group in summary.groupby(["train_dataset", "test_dataset", "emotion"], sort=False):
        mine = val[(val["train_dataset"] == key[0]) & (val["test_dataset"] == key[1]) & (val["emotion"] == key[2])]
        chosen = mine[mine["units"].isin(CHOSEN)]
        enhanced_val = {layer: sweep["f1"].max() for layer, sweep in chosen[chosen["kind"] == "gain"].groupby("layer")}
        lesion_val = {
            layer: sweep["f1"].iloc[0] for layer, sweep in chosen[chosen["kind"] == "lesion"].groupby("layer")
        }
        if not enhanced_val:
            continue
        by_layer = group.set_index("layer")
        best = by_layer.loc[max(enhanced_val, key=lambda layer: enhanced_val[layer])]
        worst = by_layer.loc[min(lesion_val, key=lambda layer: lesion_val[layer])] if lesion_val else None
        optimistic = by_layer.loc[by_layer["test_chosen_f1"].idxmax()]
        rows.append(
            {
                "train_dataset": key[0],
                "test_dataset": key[1],
                "emotion": key[2],
                "original_f1": best["original_f1"],
                "enhanced_layer": best.name,
                "enhanced_beta": best["best_beta"],
                "enhanced_f1": best["enhanced_f1"],
                "enhanced_change_pct": best["enhanced_change_pct"],
                "random_enhanced_f1": best["random_enhanced_f1"],
                "test_chosen_layer": optimistic.name,
                "test_chosen_beta": optimistic["test_chosen_beta"],
                "test_chosen_f1": optimistic["test_chosen_f1"],
                "test_chosen_change_pct": optimistic["test_chosen_change_pct"],
                "random_test_chosen_f1": optimistic["random_test_chosen_f1"],
                "lesioned_layer": worst.name if worst is not None else None,
                "lesioned_f1": worst["lesioned_f1"] if worst is not None else np.nan,
                "lesioned_change_pct": worst["lesioned_change_pct"] if worst is not None else np.nan,
                "random_lesioned_f1": worst["random_lesioned_f1"] if worst is not None else np.nan,
            }
        )
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=TABLE1_COLUMNS)
