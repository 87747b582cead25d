"""Options declared once: name, type, default, valid range and help, in the options records' fields.

Every field of an options record (``ExtractOptions``, ``SelectivityOptions``, ``ReadoutOptions``,
``ManipulationOptions``) is declared with :func:`option`. That one declaration drives

* the command line: :func:`add_arguments` makes the flags (help text with the default and range);
* validation: :func:`check` (called by each record's ``__post_init__``, so the Python API is checked
  too) gives one sentence naming the option, the value and the valid range — by its parameter name
  (``batch_size=0``) in the Python API, by its flag (``--batch-size 0``) on the command line
  (:func:`command_line_names`);
* config.yaml: :func:`as_dict` / :func:`from_dict` (an unknown key is an error naming it).

Only the standard library is used here, so that every layer may import it.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .problems import InputError

if TYPE_CHECKING:  # the type of a dataclass (class or instance), for annotations only
    from _typeshed import DataclassInstance

PAIRS = "pairs"  # kind of a NAME=VALUE option given once per name (a dict)
_FLAGS = contextvars.ContextVar("emoselect_command_line_names", default=False)
_Record = TypeVar("_Record", bound="DataclassInstance")  # an options record class


@contextlib.contextmanager
def command_line_names() -> Iterator[None]:
    """While active (the command line), option errors name flags (``--batch-size``) instead of the
    Python API's parameter names (``batch_size``)."""
    token = _FLAGS.set(True)
    try:
        yield
    finally:
        _FLAGS.reset(token)


def name_of(parameter: str, flag: str | None = None) -> str:
    """How an error names an option: its ``flag`` (default ``--`` + the parameter with dashes) on the
    command line, else the Python parameter name."""
    return (flag or "--" + parameter.replace("_", "-")) if _FLAGS.get() else parameter


def shown(parameter: str, value: Any, flag: str | None = None, typed: str | None = None) -> str:
    """An option and its value as the user gave it: ``--batch-size 0`` on the command line (``typed``:
    the value as typed there, default its repr), ``batch_size=0`` in the Python API."""
    if _FLAGS.get():
        return f"{name_of(parameter, flag)} {repr(value) if typed is None else typed}"
    return f"{parameter}={value!r}"


@dataclass(frozen=True)
class Declared:
    """How one option is shown and checked.

    ``kind``: the element type (int, float, str, bool or :data:`PAIRS`); ``nargs``: the number of
    values (None: one; an int: exactly that many; '+': one or more); ``low``/``high``: the valid
    range of each number (``open_low``/``open_high``: the bound itself excluded); ``choices``: the
    valid strings; ``optional``: None is allowed (the default is then computed); ``flag``: the
    command-line name (default ``--`` plus the name with dashes); ``cli``: shown on the command
    line at all (seeds copied from the extract options are not); ``negate``: a ``--no-...`` switch
    that stores False.
    """

    help: str
    kind: Any = str
    nargs: int | str | None = None
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[str, ...] | None = None
    optional: bool = False
    flag: str | None = None
    metavar: str | tuple[str, ...] | None = None
    cli: bool = True
    negate: bool = False


def option(
    default: Any = dataclasses.MISSING, help: str = "", *, factory: Callable[[], Any] | None = None, **declared: Any
) -> Any:
    """A dataclass field carrying its :class:`Declared` metadata (``factory`` for mutable defaults)."""
    metadata = {"option": Declared(help=help, **declared)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def declared_fields(record: DataclassInstance | type[DataclassInstance]) -> list[tuple[dataclasses.Field, Declared]]:
    """The fields of an options record (class or instance) with their declarations."""
    return [(f, f.metadata["option"]) for f in dataclasses.fields(record) if "option" in f.metadata]


def flag_of(f: dataclasses.Field, spec: Declared) -> str:
    return spec.flag or "--" + f.name.replace("_", "-")


def dest_of(f: dataclasses.Field, spec: Declared) -> str:
    return flag_of(f, spec).lstrip("-").replace("-", "_")


def _bound(value: float | None, kind: type) -> str:
    """A range's end as written: an integer option's in full (4294967295), a number's short (0.05)."""
    if value is None:
        return ""
    return str(int(value)) if kind is int else f"{value:g}"


def describe(spec: Declared) -> str:
    """The valid values in words: 'an integer >= 1', 'a number in (0, 1)', 'one of a, b'."""
    if spec.choices:
        return "one of " + ", ".join(spec.choices)
    if spec.kind in (int, float):
        noun = "an integer" if spec.kind is int else "a number"
        low, high = (_bound(v, spec.kind) for v in (spec.low, spec.high))
        if spec.low is not None and spec.high is not None:
            return f"{noun} in {'(' if spec.open_low else '['}{low}, {high}{')' if spec.open_high else ']'}"
        if spec.low is not None:
            return f"{noun} {'>' if spec.open_low else '>='} {low}"
        if spec.high is not None:
            return f"{noun} {'<' if spec.open_high else '<='} {high}"
        return noun
    if spec.kind is PAIRS:
        return "NAME=VALUE pairs"
    return {bool: "true or false", str: "text"}.get(spec.kind, str(spec.kind))


def _element_ok(value: Any, spec: Declared) -> bool:
    if spec.kind is bool:
        return isinstance(value, bool)
    if spec.kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if spec.kind is int and not float(value).is_integer():
            return False
        if not math.isfinite(value):
            return False
        if spec.low is not None and (value < spec.low or (spec.open_low and value == spec.low)):
            return False
        return spec.high is None or not (value > spec.high or (spec.open_high and value == spec.high))
    if spec.kind is str:
        return isinstance(value, str) and (spec.choices is None or value in spec.choices)
    return True


def check_value(name: str, value: Any, spec: Declared, flag: str | None = None) -> Any:
    """``value`` converted to the declared shape (lists for several values, ints for integers), or
    an :class:`InputError` naming the option (parameter ``name``, or its ``flag`` on the command
    line), the value and the valid range."""
    if value is None:
        if spec.optional:
            return None
        raise InputError(f"{name_of(name, flag)} is needed ({describe(spec)})")
    if spec.kind is PAIRS:
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise InputError(f"{shown(name, value, flag)}: must be {describe(spec)}")
        return dict(value)
    if spec.nargs is None:
        if not _element_ok(value, spec):
            raise InputError(f"{shown(name, value, flag)}: must be {describe(spec)}")
        return int(value) if spec.kind is int else float(value) if spec.kind is float else value
    values = list(value) if isinstance(value, (list, tuple)) else None
    if values is None or (isinstance(spec.nargs, int) and len(values) != spec.nargs) or not values:
        count = f"{spec.nargs} values" if isinstance(spec.nargs, int) else "one or more values"
        raise InputError(f"{shown(name, value, flag)}: must be {count}, each {describe(spec)}")
    for item in values:
        if not _element_ok(item, spec):
            raise InputError(f"{shown(name, item, flag)}: each value must be {describe(spec)}")
    return [int(v) if spec.kind is int else float(v) if spec.kind is float else v for v in values]


def check(record: DataclassInstance) -> None:
    """Check every declared field of ``record`` and store its normalised value (tuples for fixed
    counts of numbers). Raises :class:`InputError` with one sentence on the first invalid value."""
    for f, spec in declared_fields(record):
        value = getattr(record, f.name)
        if dataclasses.is_dataclass(value):
            continue  # a nested record checks itself
        normal = check_value(f.name, value, spec, flag_of(f, spec))
        if isinstance(spec.nargs, int) and normal is not None:
            normal = tuple(normal)
        object.__setattr__(record, f.name, normal)


def as_dict(record: DataclassInstance) -> dict:
    """The record as plain YAML-able data (tuples as lists, nested records as dicts)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return as_dict(cast("DataclassInstance", value))  # a nested record (an instance)
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {f.name: plain(getattr(record, f.name)) for f in dataclasses.fields(record)}


def from_dict(cls: type[_Record], data: dict, section: str) -> _Record:
    """Rebuild an options record from a config.yaml section; the class's ``RECORDED`` keys (results
    a stage wrote beside its options) are skipped, its ``RENAMED`` keys read under their new names;
    any other unknown key is an error naming it."""
    if not isinstance(data, dict):
        raise InputError(f"config section {section!r} must be a mapping of option: value")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    renamed = getattr(cls, "RENAMED", {})  # old option name -> new one (config.yaml of older runs)
    data = {renamed.get(k, k): v for k, v in data.items()}
    recorded = getattr(cls, "RECORDED", ())
    unknown = [k for k in data if k not in fields and k not in recorded]
    if unknown:
        raise InputError(f"config section {section!r}: unknown option {unknown[0]!r} (known: {', '.join(fields)})")
    nested = getattr(cls, "NESTED", {})  # field name -> options record class
    values = {}
    for name, value in data.items():
        if name in fields:
            plain = name in nested and isinstance(value, dict)
            values[name] = from_dict(nested[name], value, f"{section}.{name}") if plain else value
    return cls(**values)


def _help(spec: Declared, default: Any) -> str:
    text = spec.help
    if spec.kind in (int, float) and (spec.low is not None or spec.high is not None):
        text += f"; {describe(spec)}"
    hidden = default is None or default is False or default is dataclasses.MISSING or default == {}
    if not hidden:
        shown = (
            " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
            if isinstance(default, (list, tuple))
            else default
        )
        text += f" (default: {shown})"
    return text


def add_arguments(group: argparse._ArgumentGroup, cls: type[DataclassInstance], skip: tuple[str, ...] = ()) -> None:
    """Add one flag per declared field of ``cls`` (except ``skip`` and non-CLI fields) to an argparse
    group. Flags default to "not given" (argparse.SUPPRESS), so that :func:`given` returns only
    what the user typed, which then overrides a config file's values and the declared defaults."""
    for f, spec in declared_fields(cls):
        if not spec.cli or f.name in skip:
            continue
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )
        common: dict[str, Any] = {"dest": dest_of(f, spec), "default": argparse.SUPPRESS, "help": _help(spec, default)}
        if spec.kind is bool:
            group.add_argument(flag_of(f, spec), action="store_false" if spec.negate else "store_true", **common)
        elif spec.kind is PAIRS:
            group.add_argument(flag_of(f, spec), action="append", metavar=spec.metavar or "NAME=VALUE", **common)
        else:
            group.add_argument(
                flag_of(f, spec),
                type=spec.kind if spec.kind in (int, float) else str,
                nargs=spec.nargs,
                choices=spec.choices,
                metavar=spec.metavar,
                **common,
            )


def pairs(values: list[str], flag: str) -> dict[str, str]:
    """['a=x', 'b=y'] -> {'a': 'x', 'b': 'y'}, with a clear error for anything else."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name.strip() or not rest.strip():
            raise InputError(f"{flag} takes NAME=VALUE, got {value!r}")
        if name.strip() in out:
            raise InputError(f"{flag}: the name {name.strip()!r} is given twice")
        out[name.strip()] = rest.strip()
    return out


def given(cls: type[DataclassInstance], args: argparse.Namespace) -> dict[str, Any]:
    """The declared options of ``cls`` the user gave on the command line, as field values."""
    out = {}
    for f, spec in declared_fields(cls):
        dest = dest_of(f, spec)
        if spec.cli and hasattr(args, dest):
            value = getattr(args, dest)
            out[f.name] = pairs(value, flag_of(f, spec)) if spec.kind is PAIRS else value
    return out
