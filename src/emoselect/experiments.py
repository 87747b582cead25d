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

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .readout import Head, ReadoutOptions, binary_metrics
from .stats import benjamini_hochberg, exceedance_p_value
from .stimuli import CATEGORIES

PROFILES = {
    "quick": {"layers": 4, "betas": [0.0, 0.5, 1.0, 2.0, 4.0], "repeats": 2},
    "paper": {"layers": None, "betas": [round(0.1 * i, 1) for i in range(51)], "repeats": 10},
}


@dataclass
class ManipulationOptions:
    """Options of the manipulation stage (see ``emoselect manipulate -h``).

    ``profile`` sets defaults for ``layers`` (quick: the 4 deepest sites; paper: all), ``betas``
    (quick: 0, 0.5, 1, 2, 4; paper: 0 to 5 in steps of 0.1) and ``repeats`` (quick 2, paper 10);
    explicit values override. ``auto`` (the default) is ``paper`` on a GPU and ``quick`` on a CPU. ``random_from``: ``all`` units of the layer or only ``nonselective``
    ones. ``transfer``: also test each dataset's heads on the other datasets.
    """

    profile: str = "auto"
    layers: list[str] | None = None
    betas: list[float] | None = None
    repeats: int | None = None
    random_from: str = "all"
    gain_form: str = "channels"
    transfer: bool = True
    readout: ReadoutOptions = field(default_factory=ReadoutOptions)
    chunk_images: int = 32
    batch_samples: int = 64
    alpha: float = 0.05
    seed: int = 0

    def profile_for(self, device) -> str:
        """The profile in force on ``device`` (a torch.device): ``auto`` resolves by device type."""
        if self.profile != "auto":
            return self.profile
        return "paper" if getattr(device, "type", str(device)) == "cuda" else "quick"

    def resolved(self, sites: list[str], device="cpu") -> tuple[list[str], list[float], int]:
        """(layers, betas, repeats) after applying the profile's defaults."""
        from .problems import InputError

        if self.profile != "auto" and self.profile not in PROFILES:
            raise InputError(f"unknown profile {self.profile!r}; use auto, {', '.join(PROFILES)}")
        if self.random_from not in ("all", "nonselective"):
            raise InputError(f"random_from must be 'all' or 'nonselective', got {self.random_from!r}")
        if self.gain_form not in ("channels", "tuning"):
            raise InputError(f"gain_form must be 'channels' or 'tuning', got {self.gain_form!r}")
        profile = PROFILES[self.profile_for(device)]
        layers = self.layers or (sites[-profile["layers"]:] if profile["layers"] else list(sites))
        unknown = [layer for layer in layers if layer not in sites]
        if unknown:
            raise InputError(f"layers {unknown} are not probe sites of this network ({', '.join(sites)})")
        betas = sorted({float(b) for b in (self.betas if self.betas is not None else profile["betas"])} | {0.0, 1.0})
        if min(betas) < 0:
            raise InputError("betas must be >= 0 (a negative slope is not a gain)")
        repeats = self.repeats if self.repeats is not None else profile["repeats"]
        if repeats < 1:
            raise InputError("repeats must be at least 1")
        return layers, betas, repeats


@dataclass
class LayerPlan:
    """The conditions of one layer: ``gains`` [n_conditions, n_units] (row 0 = intact) and one
    description row per condition (emotion, units, repeat, beta, n_units)."""

    layer: str
    gains: np.ndarray
    conditions: pd.DataFrame


def plan_layer(layer: str, n_units: int, selective: pd.DataFrame, betas: list[float], repeats: int,
               options: ManipulationOptions, layer_index: int, tuning: pd.DataFrame | None = None) -> LayerPlan:
    """All conditions of one layer. beta = 1 is the intact network for every unit set, so it is
    evaluated once (row 0) and shared."""
    rows = [{"emotion": "", "units": "intact", "repeat": 0, "beta": 1.0, "n_units": 0}]
    gains = [np.ones(n_units, np.float32)]
    here = selective[selective["layer"] == layer]
    nonselective = np.setdiff1d(np.arange(n_units), here["unit"].to_numpy())
    for e, emotion in enumerate(CATEGORIES):
        rng = np.random.default_rng([options.seed, layer_index, e, 17])
        if options.gain_form == "channels":
            chosen = np.sort(here.loc[here["category"] == emotion, "unit"].to_numpy())
            pool = nonselective if options.random_from == "nonselective" else np.arange(n_units)
            sets = [("selective", 0, chosen)]
            sets += [("random", r + 1, np.sort(rng.choice(pool, min(len(chosen), len(pool)), replace=False)))
                     for r in range(repeats)]
            for name, repeat, units in sets:
                if len(units) == 0:
                    continue
                for beta in betas:
                    if beta == 1.0:
                        continue
                    g = np.ones(n_units, np.float32)
                    g[units] = beta
                    gains.append(g)
                    rows.append({"emotion": emotion, "units": name, "repeat": repeat, "beta": beta, "n_units": len(units)})
        else:
            f = tuning.loc[tuning["layer"] == layer].groupby("unit")[f"t_{emotion}"].mean().reindex(range(n_units)).to_numpy()
            f = np.nan_to_num(f / np.nanmax(np.abs(f)) if np.isfinite(f).any() and np.nanmax(np.abs(f)) > 0 else np.zeros(n_units))
            profiles = [("tuning", 0, f)] + [("tuning_shuffled", r + 1, rng.permutation(f)) for r in range(repeats)]
            for name, repeat, values in profiles:
                for beta in betas:
                    if beta == 1.0:
                        continue
                    gains.append(np.maximum(0.0, 1.0 + beta * values).astype(np.float32))
                    rows.append({"emotion": emotion, "units": name, "repeat": repeat, "beta": beta, "n_units": n_units})
    return LayerPlan(layer, np.stack(gains), pd.DataFrame(rows))


def score_conditions(plan: LayerPlan, margins: np.ndarray, heads: list[Head], eval_table: pd.DataFrame,
                     transfer: bool) -> pd.DataFrame:
    """Metrics of every (head, test dataset, split, condition) of one layer.

    ``margins`` [n_conditions, n_eval, n_heads]; ``eval_table`` the evaluated pictures (dataset,
    category, split) in ``margins`` order. Each condition is scored with the head of its emotion;
    the intact row is scored with every head, and beta = 1 rows are reported from it.
    """
    rows = []
    conditions = plan.conditions
    for h, head in enumerate(heads):
        for test in dict.fromkeys(eval_table["dataset"]):
            if test != head.dataset and not transfer:
                continue
            for split in ("val", "test"):
                mask = ((eval_table["dataset"] == test) & (eval_table["split"] == split)).to_numpy()
                if not mask.any():
                    continue
                truth = (eval_table["category"].to_numpy()[mask] == head.emotion)
                mine = np.flatnonzero((conditions["emotion"] == head.emotion).to_numpy())
                intact = binary_metrics(truth, margins[0, mask, h] > 0)
                base = {"train_dataset": head.dataset, "test_dataset": test, "emotion": head.emotion,
                        "layer": plan.layer, "split": split}
                rows.append({**base, "kind": "intact", "units": "intact", "repeat": 0, "beta": 1.0, "n_units": 0, **intact})
                unit_sets = conditions.iloc[mine].drop_duplicates(["units", "repeat"])
                for name, repeat, n_units in unit_sets[["units", "repeat", "n_units"]].itertuples(index=False):
                    rows.append({**base, "kind": "gain", "units": name, "repeat": int(repeat), "beta": 1.0,
                                 "n_units": int(n_units), **intact})
                for c in mine:
                    condition = conditions.iloc[c]
                    metrics = binary_metrics(truth, margins[c, mask, h] > 0)
                    common = {**base, "units": condition["units"], "repeat": int(condition["repeat"]),
                              "beta": float(condition["beta"]), "n_units": int(condition["n_units"]), **metrics}
                    rows.append({**common, "kind": "gain"})
                    if condition["beta"] == 0.0:
                        rows.append({**common, "kind": "lesion"})
    return pd.DataFrame(rows)


def _pct(new, old):
    return 100.0 * (new - old) / old if old else np.nan


def summarise(manipulation: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per train/test dataset, emotion and layer: intact test F1; enhanced test F1 at the beta with
    the best validation F1; lesioned test F1; the same for the random sets (mean over repeats);
    rank p-values of selective vs random and BH q-values across layers."""
    rows = []
    gain = manipulation[manipulation["kind"] == "gain"]
    keys = ["train_dataset", "test_dataset", "emotion", "layer"]
    for key, group in gain.groupby(keys, sort=False):
        intact = manipulation[(manipulation[keys] == pd.Series(key, index=keys)).all(axis=1)
                              & (manipulation["kind"] == "intact") & (manipulation["split"] == "test")]
        original = float(intact["f1"].iloc[0]) if len(intact) else np.nan
        outcome = {}
        for (units, repeat), sweep in group.groupby(["units", "repeat"], sort=False):
            val = sweep[sweep["split"] == "val"].sort_values("beta")
            test = sweep[sweep["split"] == "test"].set_index("beta")["f1"]
            if val.empty or test.empty:
                continue
            best_beta = float(val.loc[val["f1"].idxmax(), "beta"])
            outcome[(units, repeat)] = (best_beta, float(test.get(best_beta, np.nan)), float(test.get(0.0, np.nan)),
                                        int(sweep["n_units"].iloc[0]))
        chosen = [k for k in outcome if k[0] in ("selective", "tuning")]
        controls = [k for k in outcome if k[0] in ("random", "tuning_shuffled")]
        if not chosen:
            continue
        best_beta, enhanced, lesioned, n_units = outcome[chosen[0]]
        random_enhanced = np.array([outcome[k][1] for k in controls])
        random_lesioned = np.array([outcome[k][2] for k in controls])
        rows.append(dict(zip(keys, key), units=chosen[0][0], n_units=n_units, original_f1=original,
                         best_beta=best_beta, enhanced_f1=enhanced, enhanced_change_pct=_pct(enhanced, original),
                         lesioned_f1=lesioned, lesioned_change_pct=_pct(lesioned, original),
                         random_enhanced_f1=float(np.mean(random_enhanced)) if len(controls) else np.nan,
                         random_lesioned_f1=float(np.mean(random_lesioned)) if len(controls) else np.nan,
                         n_random=len(controls),
                         p_enhance=exceedance_p_value(enhanced - original, random_enhanced - original),
                         p_lesion=exceedance_p_value(original - lesioned, original - random_lesioned)))
    summary = pd.DataFrame(rows)
    if summary.empty:
        return summary
    for column in ("p_enhance", "p_lesion"):
        q = column.replace("p_", "q_")
        summary[q] = np.nan
        for _, index in summary.groupby(["train_dataset", "test_dataset", "emotion"]).groups.items():
            summary.loc[index, q] = benjamini_hochberg(summary.loc[index, column].to_numpy())
    return summary


def table_one(summary: pd.DataFrame, manipulation: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1 per train/test dataset and emotion: original, best enhanced (layer and
    beta chosen on the validation split), lesioned (the layer whose selective lesion lowers the
    validation F1 most), each with its % change; reported on the test split."""
    rows = []
    val = manipulation[manipulation["split"] == "val"]
    for key, group in summary.groupby(["train_dataset", "test_dataset", "emotion"], sort=False):
        mine = val[(val["train_dataset"] == key[0]) & (val["test_dataset"] == key[1]) & (val["emotion"] == key[2])]
        chosen = mine[mine["units"].isin(["selective", "tuning"])]
        enhanced_val = {layer: sweep["f1"].max() for layer, sweep in chosen[chosen["kind"] == "gain"].groupby("layer")}
        lesion_val = {layer: sweep["f1"].iloc[0] for layer, sweep in chosen[chosen["kind"] == "lesion"].groupby("layer")}
        if not enhanced_val:
            continue
        best = group.set_index("layer").loc[max(enhanced_val, key=enhanced_val.get)]
        worst = group.set_index("layer").loc[min(lesion_val, key=lesion_val.get)] if lesion_val else None
        rows.append({"train_dataset": key[0], "test_dataset": key[1], "emotion": key[2],
                     "original_f1": best["original_f1"], "enhanced_layer": best.name, "enhanced_beta": best["best_beta"],
                     "enhanced_f1": best["enhanced_f1"], "enhanced_change_pct": best["enhanced_change_pct"],
                     "lesioned_layer": worst.name if worst is not None else None,
                     "lesioned_f1": worst["lesioned_f1"] if worst is not None else np.nan,
                     "lesioned_change_pct": worst["lesioned_change_pct"] if worst is not None else np.nan})
    return pd.DataFrame(rows)
