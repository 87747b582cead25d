"""Figures as PNG files, drawn from the stage tables (never from hidden state).

Every function takes tables (pandas DataFrames as written to the run folder) and a file path, and
returns the path. Colours: pleasant blue, neutral grey, unpleasant vermillion (colour-blind safe);
other category sets (``--categories``) take the Okabe-Ito palette in their sorted order.
Figures are drawn without pyplot, so importing emoselect never changes a notebook's plotting backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..analysis.experiments import CHANCE, CHOSEN
from ..base.files import write_atomic
from ..pictures.stimuli import CATEGORIES

if TYPE_CHECKING:
    from matplotlib.axes import Axes

COLOURS = {"pleasant": "#0072B2", "neutral": "#7F7F7F", "unpleasant": "#D55E00"}
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")  # Okabe-Ito
DPI = 130


def category_order(values: pd.Series) -> tuple[str, ...]:
    """The categories named in a table column, in drawing order: the valence categories (all three,
    in their order) when the values are among them, else the values sorted."""
    present = {str(v) for v in pd.Series(values).dropna() if str(v) not in ("", "unknown", "none")}
    return CATEGORIES if present <= set(CATEGORIES) else tuple(sorted(present))


def colour(category: str, order: tuple[str, ...]) -> str:
    """A category's colour: the valence categories' own, else the palette by position in ``order``."""
    if order == CATEGORIES:
        return COLOURS.get(category, "0.3")
    return PALETTE[order.index(category) % len(PALETTE)] if category in order else "0.3"


def _subplots(
    rows: int = 1, columns: int = 1, figsize: tuple[float, float] = (6, 4), **options: Any
) -> tuple[Figure, Any]:  # the axes: one Axes, or an array of them (squeeze)
    """A new figure and its axes, without pyplot: drawing never touches the caller's plotting
    backend or open figures (e.g. in a notebook)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, columns, **options)


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda temporary: fig.savefig(temporary, dpi=DPI, bbox_inches="tight", format="png"))
    return path


def _layer_axis(ax: Axes, layers: list[str]) -> None:
    """Layer names along x; a panel without layers says so (e.g. no selective units to manipulate)."""
    if not layers:
        ax.set_xticks([])
        ax.text(0.5, 0.5, "no selective units here", transform=ax.transAxes, ha="center", va="center", color="0.4")
        return
    ax.set_xticks(range(len(layers)))
    crowded = len(layers) > 6 or sum(len(str(layer)) for layer in layers) > 30  # long module paths too
    ax.set_xticklabels(layers, rotation=60 if crowded else 0, ha="right" if crowded else "center", fontsize=8)
    ax.set_xlim(-0.5, len(layers) - 0.5)


def tuning_quality(layers: pd.DataFrame, path: Path, controls: list[pd.DataFrame] | None = None) -> Path:
    """Tuning quality (mean max |z|) per layer and side against its label-shuffled null (band: 2.5-97.5%
    of the shuffles). Left the trained network; right the first random-init control the same way,
    with the other controls' observed values (mean over sides) as thin grey lines."""
    order = list(dict.fromkeys(layers["layer"]))
    controls = list(controls or [])
    networks = [("trained network", layers)] + (
        [(f"random-init controls ({len(controls)})", controls[0])] if controls else []
    )
    fig, axes = _subplots(1, len(networks), figsize=(6.5 * len(networks), 3.6), squeeze=False, sharey=True)
    x = np.arange(len(order))
    for ax, (label, table) in zip(axes[0], networks):
        for i, (dataset, rows) in enumerate(table.groupby("dataset", sort=False)):
            rows = rows.set_index("layer").reindex(order)
            colour = f"C{i}"
            if "tuning_quality_null_lo" in rows:
                ax.fill_between(
                    x,
                    rows["tuning_quality_null_lo"],
                    rows["tuning_quality_null_hi"],
                    color=colour,
                    alpha=0.15,
                    lw=0,
                    label=f"{dataset}: shuffled labels (95%)",
                )
            ax.errorbar(
                x,
                rows["tuning_quality"],
                yerr=rows["tuning_quality_sem"],
                marker="o",
                ms=3,
                capsize=2,
                color=colour,
                label=f"{dataset}: observed",
            )
        _layer_axis(ax, order)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    for k, other in enumerate(controls[1:], 2):
        mean = other.groupby("layer", sort=False)["tuning_quality"].mean().reindex(order)
        axes[0, -1].plot(x, mean, color="0.55", lw=0.8, label="other controls (mean of sides)" if k == 2 else None)
    for ax in axes[0]:
        ax.legend(fontsize=7, frameon=False)
    axes[0, 0].set_ylabel("tuning quality\n(mean over units of max |z|)")
    fig.suptitle("Emotion tuning quality by layer, against its null", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def overlap(overlap_table: pd.DataFrame, path: Path, control: pd.DataFrame | None = None, alpha: float = 0.05) -> Path:
    """Jaccard index of the two datasets' unit sets per layer and category, against its
    label-shuffled null (95% band, permutation test's * at BH q < alpha); a second row for the
    random-init control (with its own null)."""
    order = list(dict.fromkeys(overlap_table["layer"]))
    networks = [("trained", overlap_table)] + ([("random init", control)] if control is not None else [])
    names = category_order(overlap_table["category"])
    fig, axes = _subplots(
        len(networks), len(names), figsize=(4 * len(names), 3.4 * len(networks)), sharey=True, squeeze=False
    )
    for row, (label, table) in enumerate(networks):
        for ax, category in zip(axes[row], names):
            rows = table[table["category"] == category].set_index("layer").reindex(order)
            x = np.arange(len(order))
            ax.fill_between(
                x,
                rows["jaccard_null_lo"].clip(0, 1),  # the size-adjusted range, shown within J's own range
                rows["jaccard_null_hi"].clip(0, 1),
                color="0.85",
                label="shuffled labels (95% range at these set sizes)",
            )
            ax.plot(x, rows["jaccard_null_mean"], color="0.5", lw=1)
            ax.plot(
                x,
                rows["jaccard"],
                marker="o",
                color=colour(category, names) if row == 0 else "0.3",
                ls="-" if row == 0 else "--",
                label=f"observed ({label})",
            )
            for xi, (value, significant) in enumerate(zip(rows["jaccard"], rows["significant"])):
                if significant:
                    ax.text(xi, value + 0.01, "*", ha="center", fontsize=12, color=colour(category, names))
            _layer_axis(ax, order)
            ax.set_title(f"{category} units ({label})", fontsize=10)
            ax.grid(alpha=0.3)
        axes[row, 0].set_ylabel("Jaccard index of the two\nsides' preferring units")
        axes[row, 0].legend(fontsize=7, frameon=False, loc="upper left")
    fig.suptitle(f"Overlap of unit sets vs shuffled category labels (* permutation p, BH q < {alpha})", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def selective_fraction(overlap_table: pd.DataFrame, path: Path, control: pd.DataFrame | None = None) -> Path:
    """Share of each layer's units selective for each category (trained solid, control dashed)."""
    order = list(dict.fromkeys(overlap_table["layer"]))
    fig, ax = _subplots(figsize=(7, 3.6))
    names = category_order(overlap_table["category"])
    for label, table, style in (("trained", overlap_table, "-"), ("random init", control, "--")):
        if table is None:
            continue
        for category in names:
            rows = table[table["category"] == category].set_index("layer").reindex(order)
            ax.plot(
                range(len(order)),
                100 * rows["n_selective"] / rows["n_units"],
                ls=style,
                marker="o",
                ms=3,
                color=colour(category, names),
                label=f"{category} ({label})",
                alpha=1 if label == "trained" else 0.6,
            )
    _layer_axis(ax, order)
    ax.set_ylabel("% of units selective")
    ax.set_title("Category-selective units per layer" if names != CATEGORIES else "Emotion-selective units per layer")
    ax.legend(fontsize=7, frameon=False, ncol=2)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _example_grid(examples: pd.DataFrame) -> tuple[list[str], Figure, np.ndarray, tuple[str, ...]]:
    """(example layers, figure, axes [layers, categories], category names)."""
    layers = list(dict.fromkeys(examples["layer"])) or [""]
    names = category_order(examples["category"]) if "category" in examples else CATEGORIES
    fig, axes = _subplots(len(layers), len(names), figsize=(3.7 * len(names), 2.7 * len(layers)), squeeze=False)
    return layers, fig, axes, names


def _example_unit_panel(ax: Axes, table: pd.DataFrame, layer: str, category: str, names: tuple[str, ...]) -> None:
    """One panel of :func:`example_neurons`: the unit's mean response (± SEM) to each category, one
    bar group per side of the pair (``table``: that layer's and category's rows of examples.csv)."""
    if table.empty:
        ax.text(0.5, 0.5, f"no {category}-selective unit", ha="center", va="center", fontsize=8, transform=ax.transAxes)
        ax.set_axis_off()
        return
    datasets = list(dict.fromkeys(table["dataset"]))
    width = 0.8 / len(datasets)
    for i, dataset in enumerate(datasets):
        rows = table[table["dataset"] == dataset].set_index("category").reindex(names)
        ax.bar(
            np.arange(len(names)) + (i - (len(datasets) - 1) / 2) * width,
            rows["mean_response"],
            width,
            yerr=rows["sem"],
            color=[colour(k, names) for k in names],
            alpha=1.0 - 0.35 * i,
            edgecolor="k",
            lw=0.5,
            capsize=2,
            label=dataset,
        )
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=8, rotation=30 if len(names) > 3 else 0)
    ax.set_title(f"{layer} unit {int(table['unit'].iloc[0])}: {category}-selective", fontsize=9)


def example_neurons(examples: pd.DataFrame, path: Path) -> Path:
    """The paper's Fig. 2A-C: for each example layer (rows) and category (columns), the strongest
    selective unit's mean response (± SEM) to each category, per side of the pair."""
    layers, fig, axes, names = _example_grid(examples)
    for r, layer in enumerate(layers):
        for c, category in enumerate(names):
            table = examples[(examples["layer"] == layer) & (examples["selective_for"] == category)]
            _example_unit_panel(axes[r, c], table, layer, category, names)
            if c == 0 and not table.empty:
                axes[r, c].set_ylabel("mean response ± SEM")
    handles, labels = next(
        (ax.get_legend_handles_labels() for ax in axes.flat if ax.get_legend_handles_labels()[0]), ([], [])
    )
    fig.suptitle("Example emotion-selective units at an early, a middle and a deep layer", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    if handles:
        labels = [f"bars: {label}" for label in labels]
        fig.legend(handles, labels, loc="upper right", fontsize=7, frameon=False, ncol=len(labels))
    return _save(fig, path)


def example_valence(
    examples: pd.DataFrame, top_images: dict, path: Path, thresholds: tuple[float, float] | None = None
) -> Path:
    """Valence (1-9 scale) of each example unit's most activating pictures (the stage's top fraction of
    each side's pictures) against all pictures,
    with the run's category boundaries ``thresholds`` (1-9 scale; None: none drawn)."""
    layers, fig, axes, names = _example_grid(examples)
    bins = np.linspace(1, 9, 17)
    for r, layer in enumerate(layers):
        for c, category in enumerate(names):
            ax = axes[r, c]
            datasets = list(
                dict.fromkeys(
                    examples.loc[(examples["layer"] == layer) & (examples["selective_for"] == category), "dataset"]
                )
            )
            if not datasets:
                ax.set_axis_off()
                continue
            for i, dataset in enumerate(datasets):
                entry = top_images[(layer, category, dataset)]
                if i == 0:
                    ax.hist(
                        entry["all"][np.isfinite(entry["all"])],
                        bins=bins,
                        density=True,
                        color="0.85",
                        label="all pictures",
                    )
                ax.hist(
                    entry["top"][np.isfinite(entry["top"])],
                    bins=bins,
                    density=True,
                    histtype="step",
                    lw=1.5,
                    color=colour(category, names),
                    ls="-" if i == 0 else "--",
                    label=f"top {len(entry['top'])} ({dataset})",
                )
            for threshold in thresholds or ():
                ax.axvline(threshold, color="k", lw=0.6, ls=":")
            ax.set_title(f"{layer} unit {top_images[(layer, category, datasets[0])]['unit']}: {category}", fontsize=9)
            if r == len(layers) - 1:
                ax.set_xlabel("valence (1-9 scale)")
            if r == 0 and c == 0:
                ax.legend(fontsize=6, frameon=False)
    fig.suptitle("Valence of the example units' most activating pictures (dotted: category boundaries)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def stimuli(table: pd.DataFrame, scales: dict, path: Path, thresholds: tuple[float, float] | None = None) -> Path:
    """The paper's Fig. S1: per dataset, the valence distribution on its own scale coloured by
    category (with the category boundaries ``thresholds``, given on the 1-9 scale; None: none drawn),
    and the number of pictures per category."""
    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = _subplots(
        len(datasets), 2, figsize=(10, 2.8 * len(datasets)), squeeze=False, gridspec_kw={"width_ratios": [3, 1]}
    )
    names = category_order(table["category"])
    for r, dataset in enumerate(datasets):
        rows = table[table["dataset"] == dataset]
        low, high = scales.get(dataset, (1.0, 9.0))
        bins = np.linspace(low, high, 25)
        ax = axes[r, 0]
        ax.hist(
            [rows.loc[rows["category"] == k, "valence"].dropna() for k in names],
            bins=bins,
            stacked=True,
            color=[colour(k, names) for k in names],
            label=list(names),
        )
        unknown = rows.loc[~rows["category"].isin(names), "valence"].dropna()
        if len(unknown):
            ax.hist(unknown, bins=bins, histtype="step", color="k", label="unknown")
        for threshold in thresholds or ():
            ax.axvline(low + (threshold - 1) * (high - low) / 8, color="k", lw=0.6, ls=":")
        ax.set_xlabel(f"valence ({low:g}-{high:g} scale)")
        ax.set_ylabel("pictures")
        ax.set_title(dataset, fontsize=10)
        ax.legend(fontsize=7, frameon=False)
        counts = rows["category"].value_counts().reindex(list(names) + ["unknown"]).fillna(0)
        ax = axes[r, 1]
        ax.bar(range(len(counts)), counts.to_numpy(), color=[colour(k, names) for k in counts.index])
        ax.set_xticks(range(len(counts)))
        ax.set_xticklabels(counts.index, rotation=30, fontsize=8)
        for x, n in enumerate(counts.to_numpy()):
            ax.text(x, n, f"{int(n)}", ha="center", va="bottom", fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def confounds(table: pd.DataFrame, path: Path) -> Path:
    """Cross-validated category decoding per layer: from the layer, from the layer without what the
    low-level image statistics explain, and from the statistics alone."""
    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = _subplots(1, len(datasets), figsize=(6 * len(datasets), 3.6), squeeze=False, sharey=True)
    for ax, dataset in zip(axes[0], datasets):
        rows = table[table["dataset"] == dataset]
        order = list(rows["layer"])
        x = np.arange(len(order))
        ax.plot(x, rows["layer_responses"], marker="o", label="layer responses")
        ax.plot(x, rows["layer_without_statistics"], marker="s", label="layer minus image statistics")
        ax.axhline(rows["image_statistics"].iloc[0], color="C2", ls="--", label="image statistics alone")
        ax.axhline(rows["chance"].iloc[0], color="0.5", ls=":", label="chance")
        _layer_axis(ax, order)
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("balanced accuracy\n(5-fold cross-validated)")
    axes[0, 0].legend(fontsize=7, frameon=False)
    fig.suptitle("Category information in each layer vs low-level image statistics", fontsize=10)
    return _save(fig, path)


def _bar_pair(
    ax: Axes,
    rows: pd.DataFrame,
    selective: pd.Series,
    random: pd.Series,
    colour: str,
    labels: tuple[str, str],
    intact: bool,
) -> None:
    """Selective (``colour``) and random (grey) bars per layer of ``rows``; the intact AUC as a tick, or a
    zero line for changes. A value that is not finite gets no bar."""
    x = np.arange(len(rows))
    for shift, values, shade, label in ((-0.2, selective, colour, labels[0]), (0.2, random, "0.75", labels[1])):
        array = values.to_numpy(float)
        shown = np.isfinite(array)
        ax.bar(x[shown] + shift, array[shown], 0.4, color=shade, label=label)
    if intact:
        ax.plot(x, rows["original_auc"], "k_", ms=18, mew=2, label="intact")
    else:
        ax.axhline(0, color="k", lw=0.6)


@dataclass(frozen=True, kw_only=True)
class _Compared:
    """What a selective-vs-random bar figure shows: the ``selective`` and ``random`` values (one per
    summary row), the q-value column ``q`` that marks a bar, the axis label, the title, the two bars'
    legend ``labels`` and whether the intact network's value is drawn beside them (``intact``)."""

    selective: pd.Series
    random: pd.Series
    q: str
    ylabel: str
    title: str
    labels: tuple[str, str]
    intact: bool


def _selective_vs_random_bars(
    summary: pd.DataFrame, path: Path, compared: _Compared, alpha: float, transfer: bool = False
) -> Path:
    """Bars per layer (selective in the emotion's colour, random grey), one row per network and
    dataset pair and one column per emotion; heads tested on their own dataset, or with ``transfer``
    on the others (the paper's Fig. 4C); * marks BH q < alpha, n/a a cell whose intact head is at
    chance (not tested). ``summary`` may hold a ``network`` column (trained, random init)."""
    selective, random = compared.selective, compared.random
    own = summary["train_dataset"] == summary["test_dataset"]
    chosen = ~own if transfer else own
    network = summary["network"] if "network" in summary else pd.Series("", index=summary.index)
    pairs = list(
        dict.fromkeys(zip(network[chosen], summary.loc[chosen, "train_dataset"], summary.loc[chosen, "test_dataset"]))
    ) or [("", "", "")]
    names = category_order(summary["emotion"])
    fig, axes = _subplots(
        len(pairs), len(names), figsize=(4 * len(names), 3.3 * len(pairs)), squeeze=False, sharey="row"
    )
    for r, (net, train, test) in enumerate(pairs):
        for ax, category in zip(axes[r], names):
            rows = (
                chosen
                & (network == net)
                & (summary["train_dataset"] == train)
                & (summary["test_dataset"] == test)
                & (summary["emotion"] == category)
            )
            _bar_pair(
                ax,
                summary.loc[rows],
                selective[rows],
                random[rows],
                colour(category, names),
                compared.labels,
                compared.intact,
            )
            _mark_cells(ax, summary.loc[rows], selective[rows], compared.q, alpha)
            _layer_axis(ax, list(summary.loc[rows, "layer"]))
            prefix = f"{net}, " if net else ""
            ax.set_title(
                f"{prefix}{train} heads on {test}: {category}" if transfer else f"{prefix}{train}: {category}",
                fontsize=9,
            )
            ax.grid(alpha=0.3, axis="y")
        axes[r, 0].set_ylabel(compared.ylabel)
    axes[0, 0].legend(fontsize=7, frameon=False)
    fig.suptitle(f"{compared.title} (* BH q < {alpha}; n/a: head at chance, not tested)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _mark_cells(ax: Axes, cells: pd.DataFrame, selective: pd.Series, q: str, alpha: float) -> None:
    """Above each layer's selective bar: * where the ``q`` column is below ``alpha``, n/a where the
    cell was not tested (its intact head at chance)."""
    tested = cells["applicable"] if "applicable" in cells else pd.Series(True, cells.index)
    for xi, (value, qv, ok) in enumerate(zip(selective, cells[q], tested)):
        if not ok:
            ax.text(xi, value if np.isfinite(value) else 0, "n/a", ha="center", va="bottom", fontsize=7)
        elif qv < alpha:
            ax.text(xi - 0.2, value, "*", ha="center", va="bottom", fontsize=12)


def attention_change(summary: pd.DataFrame, path: Path, alpha: float = 0.05, transfer: bool = False) -> Path:
    """Change of test AUC with the best (validation-chosen) enhancement, gain > 1, per layer:
    selective vs random; heads tested on their own dataset, or with ``transfer`` on the other
    datasets (the paper's Fig. 4C)."""
    title = (
        "Cross-dataset transfer: enhancement with heads tested on the other dataset"
        if transfer
        else "Enhancement (gain > 1) of emotion-selective vs random units"
    )
    compared = _Compared(
        selective=summary["enhanced_auc"] - summary["original_auc"],
        random=summary["random_enhanced_auc"] - summary["original_auc"],
        q="q_enhance",
        ylabel="change in test AUC\n(best gain > 1, chosen on val)",
        title=title,
        labels=("selective units", "random units (mean)"),
        intact=False,
    )
    return _selective_vs_random_bars(summary, path, compared, alpha, transfer=transfer)


def transfer(summary: pd.DataFrame, path: Path, alpha: float = 0.05) -> Path:
    """Cross-dataset transfer: :func:`attention_change` of heads tested on another dataset's pictures."""
    return attention_change(summary, path, alpha, transfer=True)


def lesion(summary: pd.DataFrame, path: Path, alpha: float = 0.05, mean: bool = False) -> Path:
    """Test AUC after lesioning (units set to 0; with ``mean``: mean-ablation, units set to their mean
    response over the heads' training pictures) selective vs random units, per layer, against the
    intact network."""
    kind, column, q = ("Mean-ablation", "ablated", "q_ablate") if mean else ("Lesion", "lesioned", "q_lesion")
    compared = _Compared(
        selective=summary[f"{column}_auc"],
        random=summary[f"random_{column}_auc"],
        q=q,
        ylabel="test AUC",
        title=f"{kind} of emotion-selective vs random units",
        labels=(f"selective {column}", f"random {column} (mean)"),
        intact=True,
    )
    return _selective_vs_random_bars(summary, path, compared, alpha)


def attention_curves(manipulation: pd.DataFrame, path: Path, train: str | None = None, test: str | None = None) -> Path:
    """The paper's Fig. 4A-C with AUC: test AUC against beta, one panel per layer, for the heads of ``train``
    tested on ``test`` (default: the first dataset on itself): selective units (solid) vs random
    sets (dashed: mean; band: 2.5-97.5% over the sets) per emotion."""
    gain = manipulation[(manipulation["kind"] == "gain") & (manipulation["split"] == "test")]
    train = train if train is not None else (gain["train_dataset"].iloc[0] if len(gain) else "")
    test = test if test is not None else train
    first = gain[(gain["train_dataset"] == train) & (gain["test_dataset"] == test)]
    layers = list(dict.fromkeys(first["layer"])) or [""]
    columns = min(4, len(layers))
    rows_n = int(np.ceil(len(layers) / columns))
    fig, axes = _subplots(rows_n, columns, figsize=(3.4 * columns, 2.8 * rows_n), squeeze=False, sharey=True)
    names = category_order(gain["emotion"])
    for ax, layer in zip(axes.flat, layers):
        here = first[first["layer"] == layer]
        for category in names:
            mine = here[here["emotion"] == category]
            chosen = mine[mine["units"].isin(CHOSEN)].groupby("beta")["auc"].mean()
            control = mine[mine["units"].isin(CHANCE)].groupby("beta")["auc"]
            if control.ngroups:
                low, high = control.quantile(0.025), control.quantile(0.975)
                ax.fill_between(low.index, low, high, color=colour(category, names), alpha=0.12, lw=0)
                ax.plot(
                    control.mean().index,
                    control.mean().values,
                    color=colour(category, names),
                    ls="--",
                    alpha=0.7,
                    label=f"{category} random (mean, 95%)",
                )
            ax.plot(
                chosen.index, chosen.values, color=colour(category, names), marker=".", label=f"{category} selective"
            )
        ax.axvline(1.0, color="k", lw=0.5, ls=":")
        ax.set_title(layer, fontsize=9)
        ax.set_xlabel("beta (ReLU slope)")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(layers) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("test AUC")
    axes.flat[0].legend(fontsize=6, frameon=False)
    heads = f"{train} heads on {test}" if test != train else f"{train}"
    fig.suptitle(f"Performance vs gain per layer ({heads}; beta = 0 is a lesion, 1 the intact network)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


SWEEP_MEASURES = (
    ("tuning_quality_excess", "tuning quality − null"),
    ("overlap_excess", "Jaccard overlap − null"),
    ("enhance_excess", "AUC gain over random sets, enhancement"),
    ("lesion_excess", "AUC loss over random sets, lesion"),
)


def sweep(table: pd.DataFrame, path: Path) -> Path:
    """A sweep's measures against relative depth (0 first probe site, 1 last): one line per network,
    its random-init controls' range as a band of the same colour (``table``: sweep.csv)."""
    layers = table[table["measure"] != "claim"]
    shown = [(m, label) for m, label in SWEEP_MEASURES if (layers["measure"] == m).any()] or list(SWEEP_MEASURES[:1])
    fig, axes = _subplots(1, len(shown), figsize=(4.2 * len(shown), 3.6), squeeze=False)
    networks = list(dict.fromkeys(table["network"]))
    for ax, (measure, label) in zip(axes[0], shown):
        for i, network in enumerate(networks):
            rows = layers[(layers["network"] == network) & (layers["measure"] == measure)].sort_values("relative_depth")
            if rows.empty:
                continue
            colour_ = PALETTE[i % len(PALETTE)]
            x = rows["relative_depth"].astype(float)
            band = rows[["control_min", "control_max"]].astype(float)
            if band.notna().all(axis=None):
                ax.fill_between(x, band["control_min"], band["control_max"], color=colour_, alpha=0.15, lw=0)
            ax.plot(x, rows["value"].astype(float), marker="o", ms=3, color=colour_, label=network)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xlabel("relative depth")
        ax.set_title(label, fontsize=10)
        ax.set_xlim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, frameon=False)
    fig.suptitle("Networks compared along their depth (bands: each network's random-init controls)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
