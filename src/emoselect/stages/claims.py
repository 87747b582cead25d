"""The claims stage: claims.csv (the scorecard) from the tables earlier stages wrote, for the trained
network and its random-init controls.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..analysis.claims import scorecard
from ..base import manifest
from ..run.folder import RunFolder, control_name


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
    folder = RunFolder(Path(run))
    needs = ("selectivity", "manipulate") if "manipulate" in manifest.read(folder.path) else ("selectivity",)
    with folder.stage("claims", needs=needs) as out:
        table = _claims(folder, alpha)
        out.write_csv("claims.csv", table)
    return table


def _claims(run: RunFolder, alpha: float) -> pd.DataFrame:
    """The scorecard of a run folder's tables and its controls' (see :func:`emoselect.scorecard`)."""
    controls = [
        {
            "name": control_name(k),
            "overlap": control.optional_table("overlap.csv"),
            "summary": control.optional_table("manipulation_summary.csv"),
        }
        for k, control in enumerate(run.controls, 1)
    ]
    return scorecard(
        run.optional_table("trends.csv"),
        run.optional_table("overlap.csv"),
        run.optional_table("manipulation_summary.csv"),
        controls,
        alpha,
        run.seed,
    )
