"""One HTML page per run folder, built from the tables and figures the stages left there.

Nothing is computed here: every number on the page is read from a CSV of the run folder, so the
page and the tables can never disagree. Sections whose stage has not run are left out and say so.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import yaml

from ..base import manifest
from ..base.files import write_text_atomic
from ..run.config import read_config
from ..run.folder import FILES, RunFolder

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1em; }
th, td { border: 1px solid #ddd; padding: .25em .5em; text-align: right; } th { background: #f4f4f4; }
td:first-child, th:first-child { text-align: left; } td.text, th.text { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: .5em 0; }
.supported { background: #dff0d8; } .contradicted { background: #f8d7da; } .inconclusive { background: #fcf3cf; }
.wide { overflow-x: auto; } .note { color: #555; font-size: .9em; } pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: .8em; }
"""


def _table(frame: pd.DataFrame, digits: int = 3, limit: int = 60) -> str:
    shown = frame.head(limit).copy()
    for column in shown.select_dtypes("float").columns:
        shown[column] = shown[column].map(
            lambda v: "" if pd.isna(v) else f"{v:.{digits}g}" if abs(v) < 1e-3 and v else f"{v:.{digits}f}"
        )
    text = f'<div class="wide">{shown.to_html(index=False, escape=True, border=0)}</div>'
    if len(frame) > limit:
        text += f'<p class="note">first {limit} of {len(frame)} rows; the full table is in the CSV file.</p>'
    return text


def _figure(run: Path, name: str, caption: str) -> str:
    path = RunFolder(run).file(f"figures/{name}")
    if not path.is_file():
        return ""
    return f'<figure><img src="figures/{html.escape(name)}" alt="{html.escape(caption)}"><figcaption class="note">{html.escape(caption)}</figcaption></figure>'


def _csv(run: Path, name: str) -> pd.DataFrame | None:
    """One of a run folder's declared tables (run/folder.py FILES), or None where it was not written
    or the stage that writes it has not finished (no manifest entry: interrupted, or never run)."""
    if FILES.get(name) not in manifest.read(run):
        return None
    return RunFolder(run).optional_table(name)


SCORECARD_NOTE = (
    "<p class='note'>Each claim of Liu, Bo, Ding &amp; Fang tested on this run by one pre-specified statistic. "
    'Verdicts follow fixed rules (docs/science.md, "The scorecard"): the p-values of one network\'s claims are '
    "Holm-adjusted; a claim is <i>supported</i> when its adjusted p &lt; alpha in the claimed direction, "
    "<i>contradicted</i> when the adjusted p of the opposite direction is (never for an overlap claim: "
    "below-chance overlap is no evidence against it), else <i>inconclusive</i>; the manipulation claims over "
    "many cells need at least half of them significant. Selectivity nulls shuffle the category labels of all "
    "units at once; the trained network is compared with the spread of its random-init controls. The paper "
    "expects the trained network to support each claim and the random-init controls not to.</p>"
)


def _scorecard_section(run: Path) -> list[str]:
    """The first block: each claim of the paper with its test, effect, p and verdict."""
    claims = _csv(run, "claims.csv")
    if claims is None or claims.empty:
        return [
            "<h2>The paper's claims on these data</h2><p class='note'>no scorecard yet: run the selectivity "
            "(and manipulate) stages.</p>"
        ]
    rows = []
    for record in claims.itertuples(index=False):
        cells = [
            record.claim,
            record.network,
            record.verdict,
            _number(record.effect),
            _number(record.p),
            _number(record.p_holm),
            _number(record.p_opposite_holm),
            _number(record.min_p),
            f"{record.test}. {'' if pd.isna(record.note) else record.note}",
        ]
        rows.append(
            f"<tr class='{html.escape(str(record.verdict)).replace(' ', '-')}'>"
            + "".join(
                f"<td class='{'text' if i in (0, 1, 2, 8) else ''}'>{html.escape(str(c))}</td>"
                for i, c in enumerate(cells)
            )
            + "</tr>"
        )
    header = "".join(
        f"<th class='{'text' if i in (0, 1, 2, 8) else ''}'>{h}</th>"
        for i, h in enumerate(
            (
                "claim",
                "network",
                "verdict",
                "effect",
                "p",
                "p (Holm)",
                "p opposite (Holm)",
                "smallest attainable p",
                "test",
            )
        )
    )
    return [
        "<h2>The paper's claims on these data</h2>",
        SCORECARD_NOTE,
        f"<div class='wide'><table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>",
    ]


def _number(value: float | None) -> str:
    return "" if pd.isna(value) else f"{value:.3g}"


TUNING_COLUMNS = ["layer", "dataset", "tuning_quality", "tuning_quality_null_mean", "tuning_quality_null_lo",
                  "tuning_quality_null_hi", "tuning_quality_excess", "p_tuning_quality"]  # fmt: skip
OVERLAP_COLUMNS = ["layer", "category", "n_eligible_both", "n_a", "n_b", "n_selective", "jaccard", "jaccard_chance",
                   "jaccard_null_mean", "jaccard_excess", "p_value", "q_value", "p_independent"]  # fmt: skip
CONFOUND_COLUMNS = ["dataset", "layer", "image_statistics", "layer_responses", "layer_without_statistics",
                    "share_explained_by_statistics"]  # fmt: skip
SELECTIVITY_FIGURES = [
    ("tuning_quality.png", "Tuning quality by layer against its label-shuffled null (band), trained network and "
     "random-init controls."),
    ("overlap.png", "Jaccard index of the two sides' unit sets vs its label-shuffled null (95% band)."),
    ("selective_fraction.png", "Share of units selective per category and layer."),
    ("example_neurons.png", "Strongest selective unit per category at an early, a middle and a deep layer: mean "
     "response to each category."),
    ("example_valence.png", "Valence of the example units' most activating pictures (the top fraction of each "
     "side's pictures, 10% by default)."),
]  # fmt: skip


def _selectivity_section(run: Path, config: dict) -> list[str]:
    layers, overlap = _csv(run, "layers.csv"), _csv(run, "overlap.csv")
    if layers is None or overlap is None:
        return ["<h2>Selectivity</h2><p class='note'>not run yet: <code>emoselect selectivity RUN</code></p>"]
    note = config.get("selectivity", {}).get("pair_note", "")
    parts = ["<h2>Selectivity</h2>", f"<p>{html.escape(note)}.</p>"]
    parts += [_figure(run, name, caption) for name, caption in SELECTIVITY_FIGURES]
    columns = [c for c in TUNING_COLUMNS if c in layers]
    parts += [
        "<h3>Tuning quality (mean over units of max |z|) against its label-shuffled null</h3>",
        _table(layers[columns], limit=100),
    ]
    control = _csv(run / "control", "layers.csv")
    if control is not None:
        parts += [
            "<h3>Random-init control: tuning quality against its null</h3>",
            _table(control[[c for c in columns if c in control]], limit=100),
        ]
    trends = _csv(run, "trends.csv")
    if trends is not None:
        parts += [
            "<h3>Network-level tests</h3><p class='note'>Per network: the mean overlap excess over layers, and the "
            "Spearman rho of each layer's excess over its null with the layer's depth; p from label shuffles that "
            "recompute the whole statistic (all units and layers at once).</p>",
            _table(trends),
        ]
    columns = [c for c in OVERLAP_COLUMNS if c in overlap]
    parts += [
        "<h3>Overlap vs chance</h3><p class='note'>p_value: label-permutation p (units' correlations kept); "
        "p_independent: the exact p for independent, exchangeable units, a reference only (too small where units "
        "are correlated); q_value: BH across layers (descriptive).</p>",
        _table(overlap[columns], limit=100),
    ]
    confounds = _csv(run, "confounds.csv")
    if confounds is not None:
        caption = "Cross-validated category decoding: layer, layer minus image statistics, statistics alone."
        parts += [
            "<h3>Low-level confounds</h3>",
            _figure(run, "confounds.png", caption),
            _table(confounds[CONFOUND_COLUMNS], limit=100),
        ]
    return parts


def _rescaled_note(summary: pd.DataFrame | None) -> str:
    if summary is None or "gain_rescales_readout" not in summary or not summary["gain_rescales_readout"].any():
        return ""
    layers = ", ".join(dict.fromkeys(summary.loc[summary["gain_rescales_readout"].astype(bool), "layer"]))
    return (
        f"<p class='note'><b>Note:</b> the heads read out directly after {html.escape(layers)} (only pooling "
        f"between): a gain there only rescales the heads' input features, which says little about the network's "
        f"own processing; the scorecard counts these cells.</p>"
    )


def _manipulation_section(run: Path, config: dict) -> list[str]:
    readout, table1, summary = _csv(run, "readout.csv"), _csv(run, "table1.csv"), _csv(run, "manipulation_summary.csv")
    if readout is None or table1 is None:
        return [
            "<h2>Readout and manipulations</h2><p class='note'>not run yet: <code>emoselect manipulate RUN</code></p>"
        ]
    settings = config.get("manipulation", {})
    shown = lambda key: html.escape(str(settings.get(key, "")))  # noqa: E731
    parts = [
        *_readout_part(readout, settings),
        "<h2>Enhancement, attenuation, lesion and mean-ablation</h2>",
        "<p class='note'>Every effect is measured on the test AUC of the heads' margins (threshold-free: a "
        "manipulation that only shifts every margin, and so the decision threshold, does not change it); F1 is "
        "reported beside it. A cell is tested only where its intact head recognises its emotion above chance "
        "(its test AUC against label permutations of the test pictures); p-values are sequential Monte Carlo "
        f"(random sets drawn until {shown('hits')} reach the selective set's effect, or the cap).</p>",
        f"<p>Profile {shown('profile')}: layers {html.escape(', '.join(map(str, settings.get('layers', []))))}; "
        f"betas {shown('betas')}; {shown('repeats')} random sets swept over every beta and "
        f"{shown('lesion_repeats')} lesioned per layer and emotion at most ({shown('conditions')} conditions "
        f"evaluated); engine: {shown('engine')}.</p>",
        _rescaled_note(summary),
        "<h3>Table 1 (test split; layer and beta &gt; 1 chosen on the validation AUC)</h3>",
        "<p class='note'>enhanced = the honest enhancement (layer and beta &gt; 1 chosen on the validation AUC); "
        "test_chosen = the optimistic gain chosen on the test F1 itself, as the paper did, for the selective set and "
        "(random_test_chosen) for random sets alike: the difference between the two is selection bias. "
        "lesioned: the layer whose selective lesion lowers the validation AUC most, its mean-ablation beside it.</p>",
        _table(table1),
    ]
    control_table1 = _csv(run / "control", "table1.csv")
    if control_table1 is not None:
        parts += ["<h3>Random-init control: Table 1</h3>", _table(control_table1)]
    parts += _manipulation_figures(run)
    if summary is not None:
        parts += ["<h3>Per layer</h3>", _table(summary, limit=200)]
    return parts


def _readout_part(readout: pd.DataFrame, settings: dict) -> list[str]:
    """The readout heads' paragraph and their test-split table (readout.csv)."""
    columns = ("dataset", "emotion", "site", "best_epoch", "auc", "f1", "accuracy", "balanced_accuracy", "n")
    site = html.escape(str(settings.get("readout_site", readout["site"].iloc[0])))
    return [
        "<h2>Readout heads</h2>",
        f"<p>Heads read out at <b>{site}</b>; trained on the training split, epoch chosen on the validation "
        f"split, reported on the test split (the selective units were chosen on the units split, pictures the "
        f"heads never see).</p>",
        _table(readout[readout["split"] == "test"][[c for c in columns if c in readout]]),
    ]


def _manipulation_figures(run: Path) -> list[str]:
    """The manipulation figures of ``run``/figures with their captions (missing ones are skipped)."""
    parts = [
        _figure(
            run,
            "attention_change.png",
            "Change of test AUC with the best enhancement (gain &gt; 1): selective vs random units (random-init "
            "control below, if run).",
        ),
        _figure(run, "lesion.png", "Test AUC after lesioning (units set to 0) selective vs random units."),
        _figure(
            run,
            "ablation.png",
            "Test AUC after mean-ablation (units set to their mean response over the heads' training pictures).",
        ),
        _figure(run, "transfer.png", "Cross-dataset transfer: heads tested on the other dataset."),
        _figure(run, "attention_curves.png", "Test AUC against beta, per layer (the first dataset's heads)."),
    ]
    for path in sorted((run / "figures").glob("attention_curves_*.png"), key=lambda p: int(p.stem.rsplit("_", 1)[1])):
        parts.append(
            _figure(run, path.name, "Test AUC against beta, per layer (another pair of heads and test pictures).")
        )
    return parts


def _identity(network: dict) -> str:
    """How the weights are identified: their SHA-256, or the seed of random weights."""
    if network.get("weights_sha256"):
        return f"sha256 {network['weights_sha256']}"
    return f"seed {network.get('seed')}"


def write_report(run: str | Path) -> Path:
    """Write RUN/report.html from the run folder's tables and figures.

    Parameters
    ----------
    run : path
        A run folder; every finished stage's files are checked against manifest.json first.

    Returns
    -------
    Path
        The report's path.
    """
    run = Path(run)
    manifest.check_finished(run)  # never a page from a cut or mixed table
    config = read_config(run)
    datasets = config.get("datasets", {})
    network = config.get("network", {})
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>emoselect report: {html.escape(run.name)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>emoselect report: {html.escape(run.name)}</h1>",
        f"<p>Network <b>{html.escape(str(network.get('model')))}</b>, weights {html.escape(str(network.get('weights')))} "
        f"({html.escape(_identity(network))}); untrained modules: "
        f"{html.escape(', '.join(network.get('untrained_modules', [])) or 'none')}; heads read out at "
        f"<b>{html.escape(str(network.get('readout_site')))}</b>.</p>",
    ]
    rows = [
        {
            "dataset": name,
            "format": d.get("format"),
            "scale": "-".join(f"{s:g}" for s in d.get("scale", [])),
            **d.get("categories", {}),
            "total": d.get("n_images"),
        }
        for name, d in datasets.items()
    ]
    parts += _scorecard_section(run)
    parts += [
        "<h2>Stimuli</h2>",
        _table(pd.DataFrame(rows)),
        _figure(run, "stimuli.png", "Valence distribution and pictures per category of each dataset."),
    ]
    problems = _csv(run, "problems.csv")
    if problems is not None and len(problems):
        parts += [
            f"<p>{len(problems)} problems were found and handled (see problems.csv):</p>",
            _table(problems, limit=20),
        ]
    parts += _selectivity_section(run, config)
    parts += _manipulation_section(run, config)
    parts += [
        "<h2>Configuration and provenance</h2>",
        f"<pre>{html.escape(yaml.safe_dump(config, sort_keys=False))}</pre></body></html>",
    ]
    path = RunFolder(run).file("report.html")
    write_text_atomic(path, "\n".join(p for p in parts if p))
    return path


def write_sweep_page(folder: str | Path, table: pd.DataFrame, status: dict[str, tuple[str, float]]) -> Path:
    """Write SWEEP/sweep.html: the networks (with links to their reports), the comparison figure and
    the claims side by side.

    Parameters
    ----------
    folder : path
        The sweep folder (figures/sweep.png already drawn).
    table : DataFrame
        sweep.csv.
    status : dict[str, (str, float)]
        Per network: ``computed`` or ``reused``, and seconds.

    Returns
    -------
    Path
        The page's path.
    """
    folder = Path(folder)
    networks = []
    for name in dict.fromkeys(table["network"]):
        config = read_config(folder / name).get("network", {})
        link = f"<a href='{html.escape(name)}/report.html'>{html.escape(name)}</a>"
        networks.append(
            f"<tr><td class='text'>{link}</td><td class='text'>{html.escape(str(config.get('model')))}</td>"
            f"<td class='text'>{html.escape(str(config.get('weights')))}</td>"
            f"<td class='text'>{html.escape(str(config.get('readout_site')))}</td><td>{len(config.get('sites', {}))}</td>"
            f"<td class='text'>{html.escape(status.get(name, ('', 0))[0])}</td></tr>"
        )
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>emoselect sweep: {html.escape(folder.name)}</title>",
        f"<style>{STYLE}</style></head><body><h1>emoselect sweep: {html.escape(folder.name)}</h1>",
        "<table><tr><th>network</th><th class='text'>model</th><th class='text'>weights</th>"
        "<th class='text'>readout site</th><th>probe sites</th><th class='text'>this time</th></tr>",
        *networks,
        "</table>",
        _figure(
            folder,
            "sweep.png",
            "Each measure against relative depth, one line per network; the band "
            "is the range of that network's random-init controls (sweep.csv has every value).",
        ),  # fmt: skip
        *_sweep_claims(table),
    ]
    path = folder / "sweep.html"
    write_text_atomic(path, "\n".join(p for p in parts if p) + "</body></html>")
    return path


def _sweep_claims(table: pd.DataFrame) -> list[str]:
    """The claims of every network side by side (verdict, effect, p), coloured like the scorecard."""
    claims = table[table["measure"] == "claim"]
    if claims.empty:
        return []
    networks = list(dict.fromkeys(claims["network"]))
    head = "".join(f"<th class='text'>{html.escape(n)}</th>" for n in networks)
    rows = []
    for claim in dict.fromkeys(claims["claim"]):
        cells = []
        for network in networks:
            found = claims[(claims["claim"] == claim) & (claims["network"] == network)]
            if found.empty:
                cells.append("<td></td>")
                continue
            row = found.iloc[0]
            verdict = html.escape(str(row["verdict"]))
            p = f" (p {_number(row['p'])})" if pd.notna(row["p"]) else ""
            cells.append(f"<td class='text {verdict.replace(' ', '-')}'>{verdict}{p}</td>")
        rows.append(f"<tr><td class='text'>{html.escape(str(claim))}</td>{''.join(cells)}</tr>")
    return [
        "<h2>The paper's claims, network by network</h2>",
        f"<table><tr><th>claim</th>{head}</tr>",
        *rows,
        "</table>",
    ]
