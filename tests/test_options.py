"""Options are declared once (emoselect.options): every invalid value is one sentence naming the
option, before any work; config.yaml round-trips; `run --config` repeats a run exactly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from conftest import MANIPULATE, SMALL, make_oasis
from emoselect import ExtractOptions, ManipulationOptions, ReadoutOptions, SelectivityOptions
from emoselect.base.options import PAIRS, declared_fields, flag_of
from emoselect.base.problems import InputError
from emoselect.cli import main
from emoselect.run.config import Cluster

RECORDS = (ExtractOptions, SelectivityOptions, ManipulationOptions, ReadoutOptions)


def invalid_values(spec) -> list[list[str]]:
    """Command-line values outside an option's declared range, made from the declaration itself."""
    count = spec.nargs if isinstance(spec.nargs, int) else 1
    bad = []
    if spec.kind in (int, float):
        if spec.low is not None:
            bad.append(spec.low - 1)
        if spec.high is not None:
            bad.append(spec.high + 1)
        bad += ["nan"] if spec.kind is float else ["x", "1.5"]
        if isinstance(spec.nargs, int):
            bad.append("wrong count")
    elif spec.choices:
        bad.append("bogus")
    out = []
    for value in bad:
        if value == "wrong count":
            out.append(["1"] * (count - 1))
        else:
            out.append([f"{value:g}" if isinstance(value, float) else str(value)] * count)
    return out


CASES = [
    (flag_of(f, spec), values)
    for record in RECORDS
    for f, spec in declared_fields(record)
    if spec.cli and spec.kind is not PAIRS
    for values in invalid_values(spec)
]
CASES += [
    ("--thresholds", ["6.0", "4.3"]),
    ("--margin", ["-2"]),
    ("--margin", ["0.9"]),
    ("--permutations", ["-3"]),
    ("--alpha", ["2"]),
    ("--epochs", ["0"]),
    ("--seed", ["-1"]),
    ("--workers", ["-1"]),
    ("--lr", ["-1"]),
    ("--chunk-images", ["0"]),
    ("--head-batch-size", ["0"]),
    ("--split", ["0.5", "0.5", "0.5"]),
    ("--split", ["1", "0", "0"]),
    ("--controls", ["-1"]),
    ("--crop", ["300"]),
    ("--device", ["cuda:7"]),
]


def test_every_declared_option_has_invalid_cases():
    flags = {flag for flag, _ in CASES}
    numeric = [flag_of(f, s) for r in RECORDS for f, s in declared_fields(r) if s.cli and s.kind in (int, float)]
    assert numeric and set(numeric) <= flags


@pytest.mark.parametrize("flag, values", CASES, ids=[f"{f} {' '.join(v)}" for f, v in CASES])
def test_an_invalid_value_is_one_sentence_before_any_work(tmp_path, capsys, flag, values):
    make_oasis(tmp_path / "set", n=3)
    out = tmp_path / "run"
    base = ["-q", "run", "--dataset", f"s={tmp_path / 'set'}", *SMALL, "--out", str(out)]
    if flag == "--crop":
        base += ["--resize", "256"]
    code = main([*base, flag, *values])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and flag in err, err
    assert not out.exists(), "nothing may be written before the options are checked"


SWEEP_CASES = [
    (flag_of(f, spec), values) for f, spec in declared_fields(Cluster) if spec.cli for values in invalid_values(spec)
]


@pytest.mark.parametrize("flag, values", SWEEP_CASES, ids=[f"{f} {' '.join(v)}" for f, v in SWEEP_CASES])
def test_an_invalid_sweep_option_is_one_sentence_before_any_work(tmp_path, capsys, flag, values):
    (tmp_path / "s.yaml").write_text("datasets: {s: set}\nnetworks: {a: {model: vgg16}}\n")
    code = main(["-q", "sweep", str(tmp_path / "s.yaml"), flag, *values])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and flag in err and err.count("\n") == 1, err
    assert not (tmp_path / "s").exists()


def test_the_python_api_checks_on_construction_and_names_parameters_not_flags():
    with pytest.raises(InputError, match=r"^alpha=2\.0: must be a number in \(0, 1\)"):
        SelectivityOptions(alpha=2.0)
    with pytest.raises(InputError, match="^chunk_images=0"):
        ManipulationOptions(chunk_images=0)
    with pytest.raises(InputError, match="^epochs=0"):
        ReadoutOptions(epochs=0)
    with pytest.raises(InputError, match="^batch_size=0: must be an integer >= 1"):
        ExtractOptions(datasets={"a": "x"}, batch_size=0)
    with pytest.raises(InputError, match="^seed=True"):
        ExtractOptions(datasets={"a": "x"}, seed=True)
    with pytest.raises(InputError, match="^datasets is needed"):
        ExtractOptions()
    with pytest.raises(InputError, match=r"^thresholds=\(6\.0, 4\.0\): LOW must be below HIGH"):
        ExtractOptions(datasets={"a": "x"}, thresholds=[6, 4])
    options = ExtractOptions(datasets={"a": "x"}, thresholds=[4, 6], split=[0.5, 0.25, 0.25])  # three: no units split
    assert options.thresholds == (4.0, 6.0) and options.split == (0.0, 0.5, 0.25, 0.25)


def test_the_command_line_names_flags(tmp_path, capsys):
    """The same checks, reached from the command line, name the flags the user typed."""
    assert main(["extract", "--dataset", f"a={tmp_path}", "--batch-size", "0", "--out", str(tmp_path / "r")]) == 2
    assert "error: --batch-size 0: must be an integer >= 1" in capsys.readouterr().err
    assert main(["extract", "--dataset", f"a={tmp_path}", "--thresholds", "6", "4", "--out", str(tmp_path / "r")]) == 2
    assert "error: --thresholds 6 4: LOW must be below HIGH" in capsys.readouterr().err
    assert main(["extract", "--out", str(tmp_path / "r")]) == 2
    assert "error: --dataset is needed" in capsys.readouterr().err


def test_options_round_trip_through_config_and_unknown_keys_are_named():
    from emoselect.base.options import as_dict, from_dict

    manipulation = ManipulationOptions(layers=["a"], betas=[0, 2], readout=ReadoutOptions(epochs=3))
    assert from_dict(ManipulationOptions, as_dict(manipulation), "manipulation") == manipulation
    extract = ExtractOptions(datasets={"a": "x"}, limit=5, margin=0.2)
    assert ExtractOptions.from_dict(extract.as_dict()) == extract
    with pytest.raises(InputError, match="unknown option 'epoch'"):
        from_dict(ManipulationOptions, {"readout": {"epoch": 3}}, "manipulation")
    with pytest.raises(InputError, match="unknown option 'thresholdz'"):
        ExtractOptions.from_dict({"datasets": {"a": "x"}, "thresholdz": [1, 2]})


def test_run_with_config_repeats_a_run_exactly(tmp_path, capsys):
    make_oasis(tmp_path / "set", n=30, valences=np.repeat([2.0, 4.5, 6.5], 10))
    first, second = tmp_path / "first", tmp_path / "second"
    words = ["--seed", "5", "--margin", "0.1", "--null-permutations", "20", *MANIPULATE, "--controls", "1"]
    assert main(["-q", "run", "--dataset", f"s={tmp_path / 'set'}", *SMALL, *words, "--out", str(first)]) == 0
    assert main(["-q", "run", "--config", str(first / "config.yaml"), "--out", str(second)]) == 0
    tables = sorted(p.relative_to(first) for p in first.rglob("*.csv") if "cache" not in p.parts)
    assert len(tables) > 10 and (first / "control" / "table1.csv").is_file()
    for table in tables:
        assert (second / table).read_bytes() == (first / table).read_bytes(), table
    broken = tmp_path / "broken.yaml"
    broken.write_text((first / "config.yaml").read_text().replace("null_permutations:", "null_permutation:"))
    assert main(["-q", "run", "--config", str(broken), "--out", str(tmp_path / "third")]) == 2
    err = capsys.readouterr().err
    assert "null_permutation" in err and "Traceback" not in err and not (tmp_path / "third").exists()


def test_declarations_cover_every_field():
    for record in RECORDS:
        declared = {f.name for f, _ in declared_fields(record)}
        assert declared == {f.name for f in dataclasses.fields(record)}, record
    assert pd.api.types.is_list_like(ExtractOptions(datasets={"a": "x"}).as_dict()["split"])


@pytest.mark.parametrize(
    "flags, message",
    [
        ("--seed 99999999999999999999", "--seed 99999999999999999999: must be an integer in [0, 4294967295]"),
        ("--seed -1", "--seed -1: must be an integer in [0, 4294967295]"),
        ("--resize 100 --crop 200", "--crop 200 is larger than --resize 100"),
    ],
)
def test_sites_checks_its_flags_as_extract_does(flags, message, capsys):
    """Issue 20 items 11 and 14: a seed beyond torch's range was a ValueError from torch, and
    `emoselect sites` checked none of its flags."""
    assert main(["sites", "vgg11", "--weights", "random", *flags.split()]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_seed_beyond_the_range_is_refused_before_any_work():
    with pytest.raises(InputError, match=r"^seed=18446744073709551616: must be an integer in \[0, 4294967295\]"):
        ExtractOptions(datasets={"a": "x"}, seed=2**64)


@pytest.mark.parametrize(
    "flags, message",
    [
        ("--no-control --controls 3", "--no-control contradicts --controls 3"),
        ("--no-manipulate --repeats 0", "--repeats 0: must be an integer >= 1"),
        ("--no-manipulate --repeats 5 --lesion-repeats 2", "--lesion-repeats 2 is below the 5 random sets"),
    ],
)
def test_run_refuses_contradictions_and_checks_flags_it_will_not_use(tmp_path, flags, message, capsys):
    """Issue 20 item 15: these were silently ignored or changed; the folder is never created."""
    make_oasis(tmp_path / "set", n=6)
    out = tmp_path / "run"
    assert main(["run", "--dataset", f"s={tmp_path / 'set'}", *SMALL, *flags.split(), "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "section, message",
    [
        ({"run": {"controls": "2"}}, "run.controls must be a whole number >= 0, not '2'"),
        ({"run": {"controls": 1.5}}, "run.controls must be a whole number >= 0, not 1.5"),
        ({"run": {"manipulate": "no"}}, "run.manipulate must be true or false, not 'no'"),
        ({"extract": {"datasets": ["a"]}}, "extract.datasets must be a mapping NAME: PATH, not ['a']"),
        ({"selectivity": [1, 2]}, "the selectivity section must be a mapping of options"),
    ],
)
def test_a_config_files_run_section_is_checked_before_any_work(tmp_path, section, message, capsys):
    """Issue 20 item 9: these were TypeErrors (one after extraction), an AttributeError, and "no" counted as true."""
    import yaml

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(section))
    out = tmp_path / "run"
    assert main(["-q", "run", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()
