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


def one_line(text: object, limit: int = 160) -> str:
    """An error's text on one line (whitespace runs joined), cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def yaml_error(path: object, error: Exception) -> InputError:
    """A YAML parse error of ``path`` in one line: the file, line and column of the problem, and
    what is wrong there (PyYAML's message spans several lines)."""
    mark = getattr(error, "problem_mark", None)
    where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    what = getattr(error, "problem", None) or error
    return InputError(f"{path}{where}: not valid YAML ({one_line(what)})")


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
