"""``emoselect`` on the command line: a thin layer over :mod:`emoselect.pipeline`.

Bad input ends with one clear line on stderr and exit status 2; an interrupted run says how to resume.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

from .base.options import add_arguments, command_line_names, given
from .base.problems import InputError, problems_table

if TYPE_CHECKING:  # the options records, for annotations only (the commands import them when run)
    from .analysis.experiments import ManipulationOptions
    from .analysis.selectivity import SelectivityOptions, SelectivityResult
    from .base.problems import Problem
    from .run.config import ExtractOptions
    from .stages.manipulate import Manipulated

PROBLEM_LINES = 12


class Parser(argparse.ArgumentParser):
    """argparse with one line for a usage error (the option and what is wrong), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def _extract_arguments(parser: argparse.ArgumentParser) -> None:
    from .run.config import ExtractOptions

    group = parser.add_argument_group("stimuli and network (recorded in RUN/config.yaml)")
    add_arguments(group, ExtractOptions)


def _extract_options(args: argparse.Namespace, recorded: dict | None = None) -> ExtractOptions:
    """The extract options typed on the command line, over those of a config file (``recorded``)."""
    from .run.config import ExtractOptions

    return ExtractOptions.from_dict({**(recorded or {}), **given(ExtractOptions, args)})


def _print_problems(problems: list[Problem], out: TextIO | None = None) -> None:
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


def cmd_inspect(args: argparse.Namespace) -> None:
    from .pictures.stimuli import category_counts
    from .stages.extract import inspect_dataset

    scale = args.scale.partition("=")[2] if args.scale and "=" in args.scale else args.scale  # NAME=LOW-HIGH too
    fmt = args.format.partition("=")[2] if args.format and "=" in args.format else args.format
    stimuli = inspect_dataset(
        args.path, fmt, scale, cache=args.cache, progress=not args.quiet, categories=args.categories
    )
    name = stimuli.datasets[0]
    low, high = stimuli.scales[name]
    print(f"dataset: {args.path}")
    print(f"format: {stimuli.formats[name]}   ratings file: {stimuli.sources[name]}   valence scale: {low:g}-{high:g}")
    print(category_counts(stimuli.table).to_string())
    _print_problems(stimuli.problems)


def cmd_extract(args: argparse.Namespace) -> None:
    from .pictures.stimuli import category_counts
    from .stages.extract import extract_stage

    start = time.time()
    result = extract_stage(_extract_options(args), args.out, progress=not args.quiet)
    print(category_counts(result.stimuli.table).to_string())
    _print_problems(result.stimuli.problems)
    network = result.network
    if network.untrained:
        print(f"note: {network.name} has untrained layers {network.untrained}; readout site is {network.readout_site}")
    print(
        f"{len(network.sites)} probe sites ({', '.join(list(network.sites)[:3])} ... {list(network.sites)[-1]}), "
        f"readout {network.readout_site} ({network.readout_dim}-d)"
    )
    print(f"wrote {args.out}/stimuli.csv, problems.csv, responses/, config.yaml in {time.time() - start:.1f} s")


def _selectivity_arguments(parser: argparse.ArgumentParser) -> None:
    from .analysis.selectivity import SelectivityOptions

    add_arguments(parser.add_argument_group("selectivity"), SelectivityOptions)


def _selectivity_options(args: argparse.Namespace, recorded: dict | None = None) -> SelectivityOptions:
    """Selectivity options: typed flags over a config file's values over the declared defaults."""
    from .analysis.selectivity import SelectivityOptions
    from .base.options import from_dict

    values = {**_unseeded(recorded), **given(SelectivityOptions, args)}
    return from_dict(SelectivityOptions, values, "selectivity")


def _unseeded(recorded: dict | None) -> dict:
    """A config section's options without ``seed``, which config.yaml files of earlier versions
    recorded in every section (the run's seed is its extract seed)."""
    return {key: value for key, value in (recorded or {}).items() if key != "seed"}


def _print_selectivity(result: SelectivityResult) -> None:
    print(result.pair_note)
    layers = result.layers.pivot(index="layer", columns="dataset", values="tuning_quality")
    layers = layers.reindex(list(dict.fromkeys(result.layers["layer"])))
    overlap = result.overlap.pivot(index="layer", columns="category", values="n_selective").reindex(layers.index)
    overlap = overlap[list(dict.fromkeys(result.overlap["category"]))]
    table = layers.round(3).add_prefix("TQ ").join(overlap.add_prefix("n selective "))
    print(table.to_string())
    deepest = result.overlap[result.overlap["layer"] == layers.index[-1]]
    for row in deepest.itertuples():
        print(
            f"{row.layer} {row.category}: Jaccard {row.jaccard:.3f} vs {row.jaccard_null_mean:.3f} with shuffled "
            f"labels (permutation p = {row.p_value:.2g}; independent-units reference p = {row.p_independent:.2g})"
        )


def cmd_selectivity(args: argparse.Namespace) -> None:
    from .stages.selectivity import selectivity_stage

    start = time.time()
    result = selectivity_stage(args.run, _selectivity_options(args), progress=not args.quiet)
    _print_selectivity(result)
    print(
        f"wrote {args.run}/units.csv, selective.csv, layers.csv, overlap.csv, examples.csv, figures/ "
        f"in {time.time() - start:.1f} s"
    )


def _manipulation_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    from .analysis.experiments import ManipulationOptions
    from .analysis.records import ReadoutOptions

    group = parser.add_argument_group("readout heads and manipulations")
    add_arguments(group, ManipulationOptions, skip)
    add_arguments(group, ReadoutOptions)


def _manipulation_options(args: argparse.Namespace, recorded: dict | None = None) -> ManipulationOptions:
    """Manipulation options: typed flags over a config file's values over the declared defaults (in
    ``emoselect run`` the one --alpha serves both stages)."""
    from .analysis.experiments import ManipulationOptions
    from .analysis.records import ReadoutOptions
    from .base.options import from_dict

    recorded = _unseeded(recorded)
    readout = {**_unseeded(recorded.pop("readout", {})), **given(ReadoutOptions, args)}
    values = {**recorded, **given(ManipulationOptions, args)}
    values["readout"] = from_dict(ReadoutOptions, readout, "manipulation.readout")
    return from_dict(ManipulationOptions, values, "manipulation")


def _print_manipulation(result: Manipulated) -> None:
    test = result.readout[result.readout["split"] == "test"]
    print(f"readout heads at {test['site'].iloc[0]} (test split):")
    print(test[["dataset", "emotion", "auc", "f1", "balanced_accuracy", "n"]].round(3).to_string(index=False))
    print("Table 1 (test AUC; layer and beta > 1 chosen on the validation AUC; applicable: head above chance):")
    columns = [
        "train_dataset",
        "test_dataset",
        "emotion",
        "applicable",
        "original_auc",
        "enhanced_layer",
        "enhanced_beta",
        "enhanced_auc",
        "random_enhanced_auc",
        "lesioned_layer",
        "lesioned_auc",
        "random_lesioned_auc",
        "ablated_auc",
    ]
    print(result.table1[columns].round(3).to_string(index=False))


def _print_claims(run: str | Path) -> None:
    """The scorecard, one line per claim and network (details in claims.csv and report.html)."""
    from pathlib import Path

    import pandas as pd

    from .analysis.records import read_table

    path = Path(run) / "claims.csv"
    if not path.is_file():
        return
    print("The paper's claims on these data (claims.csv):")
    for row in read_table(path).itertuples(index=False):
        p = "" if pd.isna(row.p) else f" (p = {row.p:.2g})"
        print(f"  {row.verdict:>12}  {row.network}: {row.claim}{p}")


def cmd_manipulate(args: argparse.Namespace) -> None:
    from .stages.manipulate import manipulate_all

    start = time.time()
    result = manipulate_all(args.run, _manipulation_options(args), progress=not args.quiet)
    _print_manipulation(result)
    print(
        f"wrote {args.run}/readout.csv, manipulation.csv, manipulation_summary.csv, table1.csv, figures/ "
        f"in {time.time() - start:.1f} s"
    )


def cmd_sites(args: argparse.Namespace) -> None:
    """The probe sites of a network, before any extraction: names, module paths, units, feature-map
    size at the crop, relative depth; the readout site; untrained modules; which engine applies."""
    from .analysis.experiments import select_sites
    from .engine.families import family_of
    from .engine.probe import load_network
    from .run.config import ExtractOptions

    given = ExtractOptions.checked_network(
        model=args.model, weights=args.weights, seed=args.seed, readout=args.readout, resize=args.resize, crop=args.crop
    )
    network = load_network(
        given["model"],
        given["weights"],
        given["seed"],
        readout=given["readout"],
        resize=given["resize"],
        crop=given["crop"],
    )
    names = list(network.sites)
    shown = select_sites(args.layers, names) if args.layers else names
    print(f"{network.name} ({family_of(network.name).name}), weights {network.weights}, "
          f"input {network.prep.crop}x{network.prep.crop}: {len(names)} probe sites")  # fmt: skip
    width = max(len(path) for path in network.sites.values())
    print(f"  {'site':<24} {'module':<{width}} {'units':>6} {'size':>9} {'layout':>7} {'depth':>6}")
    for site in shown:
        size = "x".join(str(n) for n in network.spatial.get(site, ()))
        depth = network.depths[site]
        layout = network.layout(site)
        print(
            f"  {site:<24} {network.sites[site]:<{width}} {network.units[site]:>6} {size:>9} {layout:>7} {depth:>6.2f}"
        )
    if network.has_tokens:
        print(
            f"token units: one per channel, mean over patch tokens (--token-pool patch|cls|all); "
            f"{network.prefix_tokens} class/register token(s) before the patches"
        )
    where = f"the input of {network.readout_layer}" if network.readout_layer else "the network's own output, pooled"
    print(f"readout: {network.readout_site} ({network.readout_dim}-d, {where})")
    random = " (random weights: the whole network is a random-init control)" if network.weights == "random" else ""
    print(f"untrained modules: {', '.join(network.untrained) or 'none'}{random}")
    how = {
        "suffix": "suffix engine (a checked chain of stages)",
        "replay": "replay engine (only the blocks from the site on, checked)",
        "full forward": "full forward pass",
    }
    print(f"manipulations: {how[network.engine]}")


def cmd_report(args: argparse.Namespace) -> None:
    from .output.report import write_report

    print(f"wrote {write_report(args.run)}")


def cmd_run(args: argparse.Namespace) -> None:
    from .run.config import OPTION_SECTIONS, recorded_options
    from .stages.run import run_all

    start = time.time()
    recorded = recorded_options(args.config) if args.config else dict.fromkeys(OPTION_SECTIONS, {})
    options = _extract_options(args, recorded["extract"])
    selectivity = _selectivity_options(args, recorded["selectivity"])
    skip = args.no_manipulate or not recorded["run"].get("manipulate", True)
    checked = _manipulation_options(args, recorded["manipulation"])  # checked even where not run
    manipulation = None if skip else checked
    if args.no_control and args.controls not in (None, 0):
        raise InputError(f"--no-control contradicts --controls {args.controls}: give one of them")
    controls = 0 if args.no_control else args.controls if args.controls is not None else recorded["run"].get("controls")
    analysis = run_all(options, args.out, selectivity, manipulation, controls=controls, progress=not args.quiet)
    _print_selectivity(analysis.selectivity)
    if analysis.manipulated is not None:
        _print_manipulation(analysis.manipulated)
    _print_claims(args.out)
    print(
        f"wrote {args.out}/ (tables, figures/{', control*/' if controls != 0 else ''}) and {analysis.report} "
        f"in {(time.time() - start) / 60:.1f} min"
    )


def _datasets_command(commands: argparse._SubParsersAction) -> None:
    """`emoselect datasets inspect PATH`."""
    datasets = commands.add_parser("datasets", help="look at picture sets")
    datasets_commands = datasets.add_subparsers(dest="datasets_command", required=True, metavar="SUBCOMMAND")
    inspect = datasets_commands.add_parser("inspect", help="format found, pictures per category, problems found")
    inspect.add_argument("path", help="the set's folder or ratings file")
    inspect.add_argument("--format", help="force a format (FMT or NAME=FMT)")
    inspect.add_argument("--scale", help="valence scale LOW-HIGH or NAME=LOW-HIGH (needed for csv)")
    inspect.add_argument("--cache", help="cache folder")
    inspect.add_argument("--categories", metavar="COLUMN", help="categories from this ratings column (see extract)")
    inspect.set_defaults(func=cmd_inspect)


def _sites_command(commands: argparse._SubParsersAction) -> None:
    """`emoselect sites MODEL`."""
    sites = commands.add_parser("sites", help="list a network's probe sites, readout site and untrained modules")
    sites.add_argument(
        "model", help="torchvision name (vgg16, resnet50, vit_b_16), timm:NAME, openclip:ARCH or module.path:factory"
    )
    sites.add_argument("--weights", default="imagenet", help="imagenet, random, or a state-dict file")
    sites.add_argument("--seed", type=int, default=0, help="seed of random weights")
    sites.add_argument("--readout", default="auto", help="readout site (auto, pooled, pool5, fc6, fc7, ...)")
    sites.add_argument("--resize", type=int, help="short side before the crop (default: the weights' own)")
    sites.add_argument("--crop", type=int, help="centre crop (default: the weights' own)")
    sites.add_argument("--layers", nargs="+", help="show only these sites, by name or range (conv4_1:conv5_3)")
    sites.set_defaults(func=cmd_sites)


def cmd_sweep(args: argparse.Namespace) -> None:
    """`emoselect sweep FILE`: every network of a sweep file, then sweep.csv and sweep.html."""
    from .run.config import Cluster
    from .stages.sweep import run_sweep
    from .stages.sweep_file import read_sweep

    cluster = Cluster(**given(Cluster, args))
    sweep = read_sweep(args.file, limit=args.limit)
    out = Path(args.out) if args.out else Path(args.file).with_suffix("")
    result = run_sweep(sweep, out, progress=not args.quiet, cluster=cluster)
    together = " (all networks together, as jobs)" if cluster.executor != "inline" else ""
    for name, (status, seconds) in result.status.items():
        print(f"  {name}: {status}" + (f" in {seconds / 60:.1f} min{together}" if status == "computed" else ""))
    print(f"wrote {out}/sweep.csv and {result.page}")


def _sweep_command(commands: argparse._SubParsersAction) -> None:
    """`emoselect sweep FILE`."""
    from .run.config import Cluster

    sweep = commands.add_parser("sweep", help="the whole analysis for several networks, compared in one table and page")
    sweep.add_argument("file", help="sweep file (YAML: datasets, networks, options; see examples/sweep.yaml)")
    sweep.add_argument("--out", metavar="FOLDER", help="sweep folder (default: the file's path without .yaml)")
    sweep.add_argument("--limit", type=int, help="a seeded sample of N pictures of each set (a quick look)")
    add_arguments(sweep.add_argument_group("where the networks run"), Cluster)
    sweep.set_defaults(func=cmd_sweep)


def _run_command(commands: argparse._SubParsersAction) -> None:
    """``emoselect run``: every stage's options, the controls and the run folder."""
    run = commands.add_parser(
        "run", help="everything: extract (and a random-init control), selectivity, manipulate, report"
    )
    _extract_arguments(run)
    _selectivity_arguments(run)
    _manipulation_arguments(run, skip=("alpha",))  # one --alpha for both stages
    run.add_argument(
        "--config", metavar="FILE", help="a run's config.yaml: repeat that run (flags given here override)"
    )
    run.add_argument(
        "--controls",
        type=int,
        metavar="K",
        help="random-init control networks (seeds seed .. seed+K-1; default: the profile's, quick 4, paper 10; "
        "0 = none); the first also goes through the manipulations",
    )
    run.add_argument("--no-control", action="store_true", help="no random-init control (same as --controls 0)")
    run.add_argument("--no-manipulate", action="store_true", help="skip readout heads and manipulations")
    run.add_argument("--out", required=True, metavar="RUN", help="run folder to write")
    run.set_defaults(func=cmd_run)


def build_parser() -> argparse.ArgumentParser:
    from .base.version import __version__

    parser = Parser(prog="emoselect", description="Find, test and manipulate emotion-selective units in CNNs.")
    parser.add_argument("--version", action="version", version=f"emoselect {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _datasets_command(commands)
    extract = commands.add_parser("extract", help="record responses of every probe site to every picture")
    _extract_arguments(extract)
    extract.add_argument("--out", required=True, metavar="RUN", help="run folder to write")
    extract.set_defaults(func=cmd_extract)

    selectivity = commands.add_parser("selectivity", help="tuning, tuning quality, selective units, overlap vs chance")
    selectivity.add_argument("run", help="run folder made by `emoselect extract`")
    _selectivity_arguments(selectivity)
    selectivity.set_defaults(func=cmd_selectivity)

    manipulate = commands.add_parser(
        "manipulate", help="readout heads; lesion and attention gain of selective vs random units"
    )
    manipulate.add_argument("run", help="run folder with selectivity results")
    _manipulation_arguments(manipulate)
    manipulate.set_defaults(func=cmd_manipulate)

    _sites_command(commands)
    _sweep_command(commands)
    report = commands.add_parser("report", help="write RUN/report.html from the run's tables and figures")
    report.add_argument("run")
    report.set_defaults(func=cmd_report)

    _run_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # usage errors (2) and --help / --version (0)
        return int(stop.code or 0)
    try:
        with command_line_names():  # errors name the flags the user typed
            args.func(args)
    except InputError as error:
        print(f"emoselect: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # no space, read-only, permission denied: one sentence, no traceback
        where = f"{error.filename}: " if error.filename else ""
        print(
            f"emoselect: error: {where}{error.strerror or error} (finished work is kept; the same command "
            f"resumes once this is fixed)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(
            "\nemoselect: interrupted; finished work is cached, so the same command resumes where it stopped",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
