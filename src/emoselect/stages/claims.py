"""The claims stage: claims.csv (the scorecard) from the tables earlier stages wrote, for the trained
network and its random-init controls.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..analysis.claims import scorecard
from ..base import manifest
from ..base.files import run_lock, write_csv_atomic
from ..run.config import extract_options
from ..run.folder import _optional_csv, control_folders, control_name


def claims_stage(run: str | Path, alpha: float = 0.05) -> pd.DataFrame:
    """claims.csv: the paper's claims tested on this run's tables (see :mod:`emoselect.claims`),
    for the trained network and its random-init control(s). Reads only what earlier stages wrote.

    Parameters
    ----------
    run : path
        A run folder whose selectivity stage finished.
    alpha : float
        False discovery rate.

    Returns
    -------
    DataFrame
        The scorecard (as :func:`emoselect.scorecard`).
    """
    run = Path(run)
    with run_lock(run):
        manifest.require(run, "selectivity")
        manifest.begin(run, "claims")
        table = _claims(run, alpha)
        inputs = ("selectivity", "manipulate") if "manipulate" in manifest.read(run) else ("selectivity",)
        manifest.finish(run, "claims", [run / "claims.csv"], inputs=inputs)
    return table


def _claims(run: Path, alpha: float) -> pd.DataFrame:
    controls = [
        {
            "name": control_name(k),
            **{
                name: _optional_csv(folder / f"{file}.csv")
                for name, file in (("overlap", "overlap"), ("layers", "layers"), ("summary", "manipulation_summary"))
            },
        }
        for k, folder in enumerate(control_folders(run), 1)
    ]
    table = scorecard(
        _optional_csv(run / "trends.csv"),
        _optional_csv(run / "overlap.csv"),
        _optional_csv(run / "layers.csv"),
        _optional_csv(run / "manipulation_summary.csv"),
        controls,
        alpha,
        extract_options(run).seed,
    )
    write_csv_atomic(run / "claims.csv", table)
    return table
