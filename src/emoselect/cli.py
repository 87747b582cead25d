"""``emoselect`` on the command line: a thin layer over :mod:`emoselect.pipeline`.

Bad input ends with one clear line on stderr and exit status 2; an interrupted run says how to resume.
"""
from __future__ import annotations

import argparse
import sys
import time

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
    group.add_argument("--limit", type=int, help="a seeded sample of N pictures of each set, stratified by category (a quick look)")
    group.add_argument("--model", default="vgg16", help="torchvision model name (default vgg16)")
    group.add_argument("--weights", default="imagenet", help="imagenet, random, or a state-dict file")
    group.add_argument("--grayscale", action="store_true", help="show the pictures in gray (the journal version)")
    group.add_argument("--readout", default="auto", help="readout site (auto, pool5, fc6, fc7, ...)")
    group.add_argument("--resize", type=int, help="short side in pixels before the centre crop (default: the weights' own, "
                       "256 for files and random weights)")
    group.add_argument("--crop", type=int, help="centre crop in pixels (default: the weights' own, 224)")
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
                          grayscale=args.grayscale, readout=args.readout, resize=args.resize, crop=args.crop,
                          batch_size=args.batch_size,
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


def _selectivity_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("selectivity")
    group.add_argument("--define-on", choices=["train", "all"], default="train",
                       help="images that define tuning: the training split (default) or all (the paper)")
    group.add_argument("--pair", nargs=2, metavar=("A", "B"), help="the two datasets whose agreement defines selective units")
    group.add_argument("--si-keep", type=float, help="keep the top fraction of units by d' index (journal: 0.8)")
    group.add_argument("--tuning-null", type=int, default=200, metavar="N",
                       help="label permutations for the tuning-quality null and depth-trend test (default 200; 0 = off)")
    group.add_argument("--permutations", type=int, default=0, help="per-unit label permutations (0 = off)")
    group.add_argument("--require-significant", action="store_true", help="selective = also significant (BH) in both datasets")
    group.add_argument("--alpha", type=float, default=0.05, help="false discovery rate for every test (default 0.05)")
    group.add_argument("--valence-tuning", action="store_true", help="Spearman correlation of each unit with valence and arousal")
    group.add_argument("--confounds", action="store_true", help="decode category from low-level image statistics vs each layer")
    group.add_argument("--example-layers", nargs="+", metavar="LAYER",
                       help="layers for the example neurons (default: an early, a middle and the deepest layer)")


def _selectivity_options(args, seed: int):
    from .selectivity import SelectivityOptions

    return SelectivityOptions(define_on=args.define_on, pair=tuple(args.pair) if args.pair else None, si_keep=args.si_keep,
                              permutations=args.permutations, tuning_null=args.tuning_null,
                              require_significant=args.require_significant, alpha=args.alpha,
                              valence_tuning=args.valence_tuning, confounds=args.confounds,
                              example_layers=args.example_layers, seed=seed)


def _print_selectivity(result) -> None:
    print(result.pair_note)
    layers = result.layers.pivot(index="layer", columns="dataset", values="tuning_quality")
    layers = layers.reindex(list(dict.fromkeys(result.layers["layer"])))
    overlap = result.overlap.pivot(index="layer", columns="category", values="n_selective").reindex(layers.index)
    overlap = overlap[[c for c in ("pleasant", "neutral", "unpleasant") if c in overlap]]
    table = layers.round(3).add_prefix("TQ ").join(overlap.add_prefix("n selective "))
    print(table.to_string())
    deepest = result.overlap[result.overlap["layer"] == layers.index[-1]]
    for row in deepest.itertuples():
        print(f"{row.layer} {row.category}: Jaccard {row.jaccard:.3f} vs chance {row.jaccard_null_mean:.3f} "
              f"(exact p = {row.p_value:.2g}, BH q = {row.q_value:.2g})")


def cmd_selectivity(args) -> None:
    from .config import extract_options
    from .pipeline import selectivity_stage

    start = time.time()
    result = selectivity_stage(args.run, _selectivity_options(args, extract_options(args.run).seed), progress=not args.quiet)
    _print_selectivity(result)
    print(f"wrote {args.run}/units.csv, selective.csv, layers.csv, overlap.csv, examples.csv, figures/ "
          f"in {time.time() - start:.1f} s")


def _manipulation_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("readout heads and manipulations")
    group.add_argument("--profile", choices=["auto", "quick", "paper"], default="auto",
                       help="quick: the 2 deepest layers, betas 0 0.5 1 2 4, 2 controls; paper: all layers, betas 0..5 "
                            "step 0.5, 10 controls; 49 (quick) or 99 (paper) random sets for the gains, 99 lesioned; "
                            "auto (default): paper on a GPU, quick on a CPU")
    group.add_argument("--layers", nargs="+", help="layers to manipulate (overrides the profile)")
    group.add_argument("--betas", nargs="+", type=float, help="gain values (overrides the profile; 0 and 1 always included)")
    group.add_argument("--repeats", type=int, help="random unit sets swept over every beta, per layer and emotion "
                       "(default: the profile's, quick 49, paper 99)")
    group.add_argument("--lesion-repeats", type=int, help="random unit sets lesioned, per layer and emotion (at least "
                       "--repeats; default: the profile's, 99); smallest attainable p = 1/(sets + 1)")
    group.add_argument("--random-from", choices=["all", "nonselective"], default="all", help="pool of the random unit sets")
    group.add_argument("--gain-form", choices=["channels", "tuning"], default="channels",
                       help="channels: scale the selective units (paper); tuning: 1 + beta * tuning value (Lindsay & Miller)")
    group.add_argument("--no-transfer", action="store_true", help="do not test heads on the other datasets")
    group.add_argument("--lr", type=float, default=1e-3, help="head learning rate (default 1e-3)")
    group.add_argument("--epochs", type=int, default=10, help="head training epochs (default 10)")
    group.add_argument("--head-batch-size", type=int, default=128)
    group.add_argument("--balanced", action="store_true", help="class-balanced cross-entropy for the heads")
    group.add_argument("--chunk-images", type=int, default=32, help="pictures per engine chunk (memory bound)")
    group.add_argument("--batch-samples", type=int, default=64, help="picture-conditions per forward pass")


def _manipulation_options(args, seed: int):
    from .experiments import ManipulationOptions
    from .readout import ReadoutOptions

    return ManipulationOptions(profile=args.profile, layers=args.layers, betas=args.betas, repeats=args.repeats,
                               lesion_repeats=args.lesion_repeats,
                               random_from=args.random_from, gain_form=args.gain_form, transfer=not args.no_transfer,
                               readout=ReadoutOptions(lr=args.lr, epochs=args.epochs, batch_size=args.head_batch_size,
                                                      balanced=args.balanced, seed=seed),
                               chunk_images=args.chunk_images, batch_samples=args.batch_samples,
                               alpha=getattr(args, "alpha", 0.05), seed=seed)


def _print_manipulation(result) -> None:
    test = result.readout[result.readout["split"] == "test"]
    print(f"readout heads at {test['site'].iloc[0]} (test split):")
    print(test[["dataset", "emotion", "f1", "accuracy", "balanced_accuracy", "n"]].round(3).to_string(index=False))
    print("Table 1 (test split; layer and beta chosen on the validation split):")
    columns = ["train_dataset", "test_dataset", "emotion", "original_f1", "enhanced_layer", "enhanced_beta", "enhanced_f1",
               "enhanced_change_pct", "lesioned_layer", "lesioned_f1", "lesioned_change_pct"]
    print(result.table1[columns].round(3).to_string(index=False))


def _print_claims(run) -> None:
    """The scorecard, one line per claim and network (details in claims.csv and report.html)."""
    from pathlib import Path

    import pandas as pd

    path = Path(run) / "claims.csv"
    if not path.is_file():
        return
    print("The paper's claims on these data (claims.csv):")
    for row in pd.read_csv(path).itertuples(index=False):
        p = "" if pd.isna(row.p) else f" (p = {row.p:.2g})"
        print(f"  {row.verdict:>12}  {row.network}: {row.claim}{p}")


def cmd_manipulate(args) -> None:
    from .config import extract_options
    from .pipeline import manipulate_all

    start = time.time()
    result = manipulate_all(args.run, _manipulation_options(args, extract_options(args.run).seed), progress=not args.quiet)
    _print_manipulation(result)
    print(f"wrote {args.run}/readout.csv, manipulation.csv, manipulation_summary.csv, table1.csv, figures/ "
          f"in {time.time() - start:.1f} s")


def cmd_report(args) -> None:
    from .report import write_report

    print(f"wrote {write_report(args.run)}")


def cmd_run(args) -> None:
    from .pipeline import run_all

    start = time.time()
    options = _extract_options(args)
    manipulation = None if args.no_manipulate else _manipulation_options(args, options.seed)
    analysis = run_all(options, args.out, _selectivity_options(args, options.seed), manipulation,
                       controls=0 if args.no_control else args.controls, progress=not args.quiet)
    _print_selectivity(analysis.selectivity)
    if analysis.manipulated is not None:
        _print_manipulation(analysis.manipulated)
    _print_claims(args.out)
    print(f"wrote {args.out}/ (tables, figures/{', control*/' if not args.no_control else ''}) and {analysis.report} "
          f"in {(time.time() - start) / 60:.1f} min")


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

    selectivity = commands.add_parser("selectivity", help="tuning, tuning quality, selective units, overlap vs chance")
    selectivity.add_argument("run", help="run folder made by `emoselect extract`")
    _selectivity_arguments(selectivity)
    selectivity.set_defaults(func=cmd_selectivity)

    manipulate = commands.add_parser("manipulate", help="readout heads; lesion and attention gain of selective vs random units")
    manipulate.add_argument("run", help="run folder with selectivity results")
    _manipulation_arguments(manipulate)
    manipulate.add_argument("--alpha", type=float, default=0.05, help="false discovery rate (default 0.05)")
    manipulate.set_defaults(func=cmd_manipulate)

    report = commands.add_parser("report", help="write RUN/report.html from the run's tables and figures")
    report.add_argument("run")
    report.set_defaults(func=cmd_report)

    run = commands.add_parser("run", help="everything: extract (and a random-init control), selectivity, manipulate, report")
    _extract_arguments(run)
    _selectivity_arguments(run)
    _manipulation_arguments(run)
    run.add_argument("--controls", type=int, metavar="K",
                     help="random-init control networks (seeds seed .. seed+K-1; default: the profile's, quick 2, paper 10; "
                          "0 = none); the first also goes through the manipulations")
    run.add_argument("--no-control", action="store_true", help="no random-init control (same as --controls 0)")
    run.add_argument("--no-manipulate", action="store_true", help="skip readout heads and manipulations")
    run.add_argument("--out", required=True, metavar="RUN", help="run folder to write")
    run.set_defaults(func=cmd_run)
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
