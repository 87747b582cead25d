"""``emoselect`` on the command line: a thin layer over :mod:`emoselect.pipeline`.

Bad input ends with one clear line on stderr and exit status 2; an interrupted run says how to resume.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .problems import InputError, problems_table

PROBLEM_LINES = 12


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """['a=x', 'b=y'] -> {'a': 'x', 'b': 'y'}, with a clear error for anything else."""
    out = {}
    for value in values or []:
        name, sep, rest = value.partition("=")
        if not sep or not name.strip() or not rest.strip():
            raise InputError(f"{option} takes NAME=VALUE, got {value!r}")
        if name.strip() in out:
            raise InputError(f"{option}: the name {name.strip()!r} is given twice")
        out[name.strip()] = rest.strip()
    return out


def _extract_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("stimuli and network (recorded in RUN/config.yaml)")
    group.add_argument("--dataset", action="append", metavar="NAME=PATH", required=True,
                       help="a picture set: its folder (or ratings file); repeat for several")
    group.add_argument("--format", action="append", metavar="NAME=FMT", help="force a format: oasis, iaps, naps, gaped, emotion6, csv")
    group.add_argument("--scale", action="append", metavar="NAME=LOW-HIGH", help="valence scale (needed for csv), e.g. 1-9")
    group.add_argument("--overrides", metavar="CSV", help="category overrides: image_id,category[,dataset]")
    group.add_argument("--thresholds", nargs=2, type=float, default=(4.3, 6.0), metavar=("LOW", "HIGH"),
                       help="valence boundaries on the 1-9 scale (default: 4.3 6.0, the paper's)")
    group.add_argument("--margin", type=float, default=0.0, help="pictures within this distance of a boundary (1-9 scale) are 'unknown'")
    group.add_argument("--split", nargs=3, type=float, default=(0.5, 0.25, 0.25), metavar=("TRAIN", "VAL", "TEST"))
    group.add_argument("--seed", type=int, default=0, help="seed for splits, random weights and random unit sets")
    group.add_argument("--limit", type=int, help="only the first N rated pictures of each set (a quick look)")
    group.add_argument("--model", default="vgg16", help="torchvision model name (default vgg16)")
    group.add_argument("--weights", default="imagenet", help="imagenet, random, or a state-dict file")
    group.add_argument("--grayscale", action="store_true", help="show the pictures in gray (the journal version)")
    group.add_argument("--readout", default="auto", help="readout site (auto, pool5, fc6, fc7, ...)")
    group.add_argument("--batch-size", type=int, default=32)
    group.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    group.add_argument("--workers", type=int, help="picture-decoding processes (default: cores - 1, at most 4)")
    group.add_argument("--cache", help="cache folder (default $EMOSELECT_CACHE or ~/.cache/emoselect)")


def _extract_options(args):
    from .config import ExtractOptions

    if args.limit is not None and args.limit < 1:
        raise InputError("--limit must be at least 1")
    if args.batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    return ExtractOptions(datasets=_pairs(args.dataset, "--dataset"), formats=_pairs(args.format, "--format"),
                          scales=_pairs(args.scale, "--scale"), overrides=args.overrides,
                          thresholds=tuple(args.thresholds), margin=args.margin, split=tuple(args.split),
                          seed=args.seed, limit=args.limit, model=args.model, weights=args.weights,
                          grayscale=args.grayscale, readout=args.readout, batch_size=args.batch_size,
                          device=args.device, workers=args.workers, cache=args.cache)


def _print_problems(problems, out=None) -> None:
    out = out or sys.stdout
    if not problems:
        print("problems: none", file=out)
        return
    table = problems_table(problems)
    summary = ", ".join(f"{n} {action}" for action, n in table["action"].value_counts().items())
    print(f"problems: {len(table)} ({summary})", file=out)
    for row in table.head(PROBLEM_LINES).itertuples(index=False):
        print(f"  [{row.action}] {row.file}: {row.problem}", file=out)
    if len(table) > PROBLEM_LINES:
        print(f"  ... {len(table) - PROBLEM_LINES} more", file=out)


def cmd_inspect(args) -> None:
    from .pipeline import inspect_dataset
    from .stimuli import category_counts

    stimuli = inspect_dataset(args.path, args.format, args.scale, cache=args.cache, progress=not args.quiet)
    name = stimuli.datasets[0]
    low, high = stimuli.scales[name]
    print(f"dataset: {args.path}")
    print(f"format: {stimuli.formats[name]}   ratings file: {stimuli.sources[name]}   valence scale: {low:g}-{high:g}")
    print(category_counts(stimuli.table).to_string())
    _print_problems(stimuli.problems)


def cmd_extract(args) -> None:
    from .pipeline import extract_stage
    from .stimuli import category_counts

    start = time.time()
    result = extract_stage(_extract_options(args), args.out, progress=not args.quiet)
    print(category_counts(result.stimuli.table).to_string())
    _print_problems(result.stimuli.problems)
    network = result.network
    if network.untrained:
        print(f"note: {network.name} has untrained layers {network.untrained}; readout site is {network.readout_site}")
    print(f"{len(network.sites)} probe sites ({', '.join(list(network.sites)[:3])} ... {list(network.sites)[-1]}), "
          f"readout {network.readout_site} ({network.readout_dim}-d)")
    print(f"wrote {args.out}/stimuli.csv, problems.csv, responses/, config.yaml in {time.time() - start:.1f} s")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="emoselect", description="Find, test and manipulate emotion-selective units in CNNs.")
    parser.add_argument("--version", action="version", version=f"emoselect {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    datasets = commands.add_parser("datasets", help="look at picture sets")
    datasets_commands = datasets.add_subparsers(dest="datasets_command", required=True, metavar="SUBCOMMAND")
    inspect = datasets_commands.add_parser("inspect", help="format found, pictures per category, problems found")
    inspect.add_argument("path", help="the set's folder or ratings file")
    inspect.add_argument("--format", help="force a format")
    inspect.add_argument("--scale", help="valence scale LOW-HIGH (needed for csv)")
    inspect.add_argument("--cache", help="cache folder")
    inspect.set_defaults(func=cmd_inspect)

    extract = commands.add_parser("extract", help="record responses of every probe site to every picture")
    _extract_arguments(extract)
    extract.add_argument("--out", required=True, metavar="RUN", help="run folder to write")
    extract.set_defaults(func=cmd_extract)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except InputError as error:
        print(f"emoselect: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nemoselect: interrupted; finished work is cached, so the same command resumes where it stopped",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
