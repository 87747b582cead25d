"""Problems found in user input, and the one error type the CLI turns into a clear message.

A :class:`Problem` is something a researcher must be told about but that does not stop the analysis
(an unreadable image that is skipped, a rating without an image, a duplicate ID that was merged).
An :class:`InputError` is something that does stop it (no ratings file, an unknown scale); its message
names the file and says what to do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

PROBLEM_COLUMNS = ["dataset", "file", "problem", "action"]


class InputError(ValueError):
    """Bad user input that stops a stage; the message is meant to be printed as is."""


@dataclass(frozen=True)
class Problem:
    """One problem with one file.

    ``action`` says what was done about it: ``skipped`` (the image is not analysed), ``excluded``
    (the rating row is not used), ``merged`` (duplicate rows combined), ``converted`` (the image was
    converted, e.g. CMYK to RGB) or ``note`` (kept as is, worth knowing).
    """

    dataset: str
    file: str
    problem: str
    action: str


def problems_table(problems: list[Problem]) -> pd.DataFrame:
    """The problems as a table with columns dataset, file, problem, action."""
    return pd.DataFrame([asdict(p) for p in problems], columns=PROBLEM_COLUMNS)
