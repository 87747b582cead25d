"""Example neurons (the strongest selective unit per category at an early, a middle and the deepest
layer, with its most activating pictures) and the low-level image-statistics check (confounds).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..base.problems import InputError
from ..pictures.stimuli import Stimuli, category_names
from .records import Responses
from .stats import (
    decode_crossvalidated,
)

if TYPE_CHECKING:  # annotations only: the selectivity module imports this one
    from .selectivity import Group, GroupTuning


def example_layers(sites: list[str], chosen: list[str] | None = None) -> list[str]:
    """The layers whose example neurons are shown: ``chosen``, else the sites at relative positions
    3/13, 6/13 and 13/13 (the paper's conv2_1, conv3_2 and conv5_3 of VGG-16's 13 layers)."""
    if chosen:
        unknown = [layer for layer in chosen if layer not in sites]
        if unknown:
            raise InputError(f"--example-layers {unknown} are not probe sites ({', '.join(sites)})")
        return list(dict.fromkeys(chosen))
    return list(dict.fromkeys(sites[max(0, round(len(sites) * k / 13) - 1)] for k in (3, 6, 13)))


def _examples(
    site: str,
    groups: list[Group],
    data: list[np.ndarray],
    tuned: list[GroupTuning],
    selective: list[pd.DataFrame],
    top_fraction: float = 0.1,
) -> tuple[pd.DataFrame, dict]:
    """The strongest selective unit per category at ``site`` (``selective``: the site's selective
    units, one table per category): tuning curves and the valence of its most activating pictures
    (the top ``top_fraction`` of each side's pictures, at least one)."""
    rows, top_images = [], {}
    here = pd.concat(selective, ignore_index=True)
    names = groups[0].names
    small = [g.name for g in groups if len(g.rows) < 100]
    if small and not here.empty:
        warnings.warn(
            f"{', '.join(small)}: fewer than 100 pictures define tuning, so an example unit's top "
            f"{top_fraction:.0%} are only a few pictures",
            stacklevel=2,
        )
    for category in names:
        candidates = here[here["category"] == category]
        if candidates.empty:
            continue
        unit = int(candidates.sort_values("strength", ascending=False)["unit"].iloc[0])
        for group, matrix, tuning in zip(groups, data, tuned):
            response = matrix[:, unit].astype(np.float64)
            top = max(1, int(round(top_fraction * len(response))))
            order = np.argsort(-response, kind="stable")[:top]
            top_images[(category, group.name)] = {"unit": unit, "top": group.valence[order], "all": group.valence}
            for j, shown in enumerate(names):
                values = response[group.categories == shown]
                rows.append(
                    {
                        "layer": site,
                        "unit": unit,
                        "selective_for": category,
                        "dataset": group.name,
                        "category": shown,
                        "mean_response": values.mean(),
                        "sem": values.std(ddof=1) / np.sqrt(len(values)),
                        "n": len(values),
                        "tuning_value": tuning.z[unit, j],
                        "top_valence_mean": float(np.nanmean(group.valence[order])),
                        "n_top": len(order),
                        "all_valence_mean": float(np.nanmean(group.valence)),
                    }
                )
    return pd.DataFrame(rows), top_images


def _confounds(
    stimuli: Stimuli, responses: dict[str, Responses], sites: list[str], seed: int, progress: bool
) -> pd.DataFrame:
    """Cross-validated decoding of category from image statistics, from each layer, and from each
    layer after removing what the image statistics linearly explain."""
    rows = []
    for dataset in dict.fromkeys(responses):
        table = stimuli.of(dataset)
        analysed = table["category"].isin(category_names(stimuli.table)).to_numpy()
        labels = table["category"].to_numpy()[analysed]
        image_stats = responses[dataset].image_stats.to_numpy(np.float64)[analysed]
        if image_stats.shape[0] != len(labels) or image_stats.shape[1] == 0:
            raise InputError(f"no image statistics recorded for {dataset}: rerun `emoselect extract`")
        chance = 1.0 / len(np.unique(labels))
        stats_scores = decode_crossvalidated(image_stats, labels, seed=seed)
        for site in tqdm(sites, desc=f"confounds {dataset}", disable=not progress, leave=False):
            data = np.asarray(responses[dataset].sites[site], np.float64)[analysed]
            layer_scores = decode_crossvalidated(data, labels, seed=seed)
            residual_scores = decode_crossvalidated(data, labels, seed=seed, covariates=image_stats)
            layer, residual = layer_scores.mean(), residual_scores.mean()
            rows.append(
                {
                    "dataset": dataset,
                    "layer": site,
                    "n_images": len(labels),
                    "chance": chance,
                    "image_statistics": stats_scores.mean(),
                    "image_statistics_sd": stats_scores.std(ddof=1),
                    "layer_responses": layer,
                    "layer_responses_sd": layer_scores.std(ddof=1),
                    "layer_without_statistics": residual,
                    "layer_without_statistics_sd": residual_scores.std(ddof=1),
                    "share_explained_by_statistics": (layer - residual) / (layer - chance)
                    if layer > chance
                    else np.nan,
                }
            )
    return pd.DataFrame(rows)
