"""One HTML page per run folder, built from the tables and figures the stages left there.

Nothing is computed here: every number on the page is read from a CSV of the run folder, so the
page and the tables can never disagree. Sections whose stage has not run are left out and say so.
"""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import yaml

from .config import read_config

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1em; }
th, td { border: 1px solid #ddd; padding: .25em .5em; text-align: right; } th { background: #f4f4f4; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: .5em 0; }
.wide { overflow-x: auto; } .note { color: #555; font-size: .9em; } pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: .8em; }
"""


def _table(frame: pd.DataFrame, digits: int = 3, limit: int = 60) -> str:
    shown = frame.head(limit).copy()
    for column in shown.select_dtypes("float").columns:
        shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}g}" if abs(v) < 1e-3 and v else f"{v:.{digits}f}")
    text = f'<div class="wide">{shown.to_html(index=False, escape=True, border=0)}</div>'
    if len(frame) > limit:
        text += f'<p class="note">first {limit} of {len(frame)} rows; the full table is in the CSV file.</p>'
    return text


def _figure(run: Path, name: str, caption: str) -> str:
    path = run / "figures" / name
    if not path.is_file():
        return ""
    return f'<figure><img src="figures/{html.escape(name)}" alt="{html.escape(caption)}"><figcaption class="note">{html.escape(caption)}</figcaption></figure>'


def _csv(run: Path, name: str) -> pd.DataFrame | None:
    path = run / name
    return pd.read_csv(path) if path.is_file() else None


def _selectivity_section(run: Path, config: dict) -> list[str]:
    layers, overlap = _csv(run, "layers.csv"), _csv(run, "overlap.csv")
    if layers is None or overlap is None:
        return ["<h2>Selectivity</h2><p class='note'>not run yet: <code>emoselect selectivity RUN</code></p>"]
    note = config.get("selectivity", {}).get("pair_note", "")
    parts = ["<h2>Selectivity</h2>", f"<p>{html.escape(note)}.</p>",
             _figure(run, "tuning_quality.png", "Tuning quality by layer (trained network; random-init control dashed if run)."),
             _figure(run, "overlap.png", "Jaccard index of the two sides' unit sets vs random sets of the same sizes."),
             _figure(run, "selective_fraction.png", "Share of units selective per category and layer."),
             _figure(run, "example_neurons.png", "Strongest selective unit per category: tuning curves and valence of its top images.")]
    quality = layers.pivot(index="layer", columns="dataset", values="tuning_quality").reindex(list(dict.fromkeys(layers["layer"])))
    quality.columns.name = None
    parts += ["<h3>Tuning quality (mean over units of max |z|)</h3>", _table(quality.reset_index())]
    control = _csv(run / "control", "layers.csv")
    if control is not None:
        c_quality = control.pivot(index="layer", columns="dataset", values="tuning_quality").reindex(quality.index)
        c_quality.columns.name = None
        parts += ["<h3>Random-init control: tuning quality</h3>", _table(c_quality.reset_index())]
    columns = ["layer", "category", "n_units", "n_a", "n_b", "n_selective", "jaccard", "jaccard_random_mean", "p_value", "q_value"]
    parts += ["<h3>Overlap vs chance</h3>", _table(overlap[columns], limit=100)]
    confounds = _csv(run, "confounds.csv")
    if confounds is not None:
        parts += ["<h3>Low-level confounds</h3>",
                  _figure(run, "confounds.png", "Cross-validated category decoding: layer, layer minus image statistics, statistics alone."),
                  _table(confounds[["dataset", "layer", "image_statistics", "layer_responses", "layer_without_statistics",
                                    "share_explained_by_statistics"]], limit=100)]
    return parts


def _manipulation_section(run: Path, config: dict) -> list[str]:
    readout, table1, summary = _csv(run, "readout.csv"), _csv(run, "table1.csv"), _csv(run, "manipulation_summary.csv")
    if readout is None or table1 is None:
        return ["<h2>Readout and manipulations</h2><p class='note'>not run yet: <code>emoselect manipulate RUN</code></p>"]
    settings = config.get("manipulation", {})
    parts = ["<h2>Readout heads</h2>",
             f"<p>Heads read out at <b>{html.escape(str(settings.get('readout_site', readout['site'].iloc[0])))}</b>; "
             f"trained on the training split, epoch chosen on the validation split, reported on the test split.</p>",
             _table(readout[readout["split"] == "test"][["dataset", "emotion", "site", "best_epoch", "f1", "accuracy",
                                                         "balanced_accuracy", "n"]]),
             "<h2>Attention gain and lesion</h2>",
             f"<p>Profile {settings.get('profile', '')}: layers {', '.join(settings.get('layers', []))}; "
             f"betas {settings.get('betas', '')}; "
             f"{settings.get('repeats', '')} random sets per layer and emotion; engine: {settings.get('engine', '')}.</p>",
             "<h3>Table 1 (test split; layer and beta chosen on the validation split)</h3>", _table(table1),
             _figure(run, "attention_change.png", "Change of test F1 with the best gain: selective vs random units."),
             _figure(run, "lesion.png", "Test F1 after lesioning selective vs random units."),
             _figure(run, "transfer.png", "Cross-dataset transfer: heads tested on the other dataset."),
             _figure(run, "attention_curves.png", "Test F1 against beta, per layer.")]
    if summary is not None:
        parts += ["<h3>Per layer</h3>", _table(summary, limit=200)]
    return parts


def write_report(run: str | Path) -> Path:
    """Write RUN/report.html from the run folder's tables and figures; returns its path."""
    run = Path(run)
    config = read_config(run)
    datasets = config.get("datasets", {})
    network = config.get("network", {})
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>emoselect report: {html.escape(run.name)}</title>",
             f"<style>{STYLE}</style></head><body>",
             f"<h1>emoselect report: {html.escape(run.name)}</h1>",
             f"<p>Network <b>{html.escape(str(network.get('model')))}</b>, weights {html.escape(str(network.get('weights')))} "
             f"(sha256 {html.escape(str(network.get('weights_sha256')))}); untrained modules: "
             f"{html.escape(', '.join(network.get('untrained_modules', [])) or 'none')}.</p>"]
    rows = [{"dataset": name, "format": d.get("format"), "scale": "-".join(f"{s:g}" for s in d.get("scale", [])),
             **d.get("categories", {}), "total": d.get("n_images")} for name, d in datasets.items()]
    parts += ["<h2>Stimuli</h2>", _table(pd.DataFrame(rows))]
    problems = _csv(run, "problems.csv")
    if problems is not None and len(problems):
        parts += [f"<p>{len(problems)} problems were found and handled (see problems.csv):</p>", _table(problems, limit=20)]
    parts += _selectivity_section(run, config)
    parts += _manipulation_section(run, config)
    parts += ["<h2>Configuration and provenance</h2>",
              f"<pre>{html.escape(yaml.safe_dump(config, sort_keys=False))}</pre></body></html>"]
    path = run / "report.html"
    path.write_text("\n".join(p for p in parts if p), encoding="utf-8")
    return path
