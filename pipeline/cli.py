"""``picotflm``: argument parsing only. Each subcommand is one small function that calls the runner
or a stage; the table :data:`COMMANDS` lists them (add a row to add a subcommand).

Results go to stdout, status and progress to stderr. A :class:`PipelineError` is printed as one
line, ``picotflm: error: <message> (hint: <what to do>)``, with exit code 2 and no traceback
(``--debug`` shows it).
"""
from __future__ import annotations

import argparse
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pipeline import __version__
from pipeline.errors import PipelineError

PROG = "picotflm"


# ---------------------------------------------------------------------------- output helpers
def say(text: str = "") -> None:
    """A result, on stdout."""
    print(text, flush=True)


def status(text: str) -> None:
    """Status for the person watching, on stderr."""
    print(text, file=sys.stderr, flush=True)


def _options(args: argparse.Namespace):
    from pipeline.runner import RunOptions

    return RunOptions(progress=not getattr(args, "no_progress", False), force=getattr(args, "force", False))


def _recipe(args: argparse.Namespace, extra: dict | None = None):
    from pipeline.config import load_recipe, parse_overrides

    overrides = parse_overrides(getattr(args, "set", None))
    for stage, values in (extra or {}).items():
        overrides.setdefault(stage, {}).update(values)
    return load_recipe(getattr(args, "recipe", None), overrides)


def _run_dir(args: argparse.Namespace, recipe):
    from pipeline.artifacts import RunDir

    return RunDir.of(args.name or recipe.name, args.runs_dir)


# ------------------------------------------------------------------------------- subcommands
def cmd_data(args: argparse.Namespace) -> int:
    """Make the dataset of a recipe (or a folder), print its summary, write sample PNGs per class."""
    from pipeline.data import make_dataset, write_samples

    recipe = _recipe(args, {"data": {"source": args.source}} if args.source else None)
    cfg = recipe.config("data")
    status(f"data: {'synthetic pizzas' if cfg.source == 'synthetic' else cfg.source} ...")
    ds = make_dataset(cfg, warn=lambda m: status(f"warning: {m}"), progress=not args.no_progress)
    summary = ds.summary()
    say(f"dataset: {summary['source']}, {len(ds.class_names)} classes, images "
        f"{'x'.join(str(d) for d in ds.image_shape)} uint8")
    counts = summary["per_class"]
    say(f"{'class':<14}{'train':>7}{'val':>7}{'test':>7}")
    for c in ds.class_names:
        say(f"{c:<14}{counts['train'][c]:>7}{counts['val'][c]:>7}{counts['test'][c]:>7}")
    n = summary["images"]
    say(f"{'total':<14}{n['train']:>7}{n['val']:>7}{n['test']:>7}")
    written = write_samples(ds, args.out, per_class=args.samples)
    say(f"Wrote {len(written) - 1} sample images and a contact sheet to {args.out} "
        f"({Path(args.out) / 'samples.png'})")
    return 0


def _print_train(summary) -> None:
    m = summary.manifest.get("stages", {}).get("train", {}).get("metrics") or {}
    if not m:
        return
    names = m.get("class_names") or []
    say(f"test accuracy (Keras float): {m['test_accuracy']:.4f} on {m['test_samples']} images; "
        f"{m['epochs_run']} epochs, best epoch {m['best_epoch']} (val accuracy {m['best_val_accuracy']:.4f})")
    width = max([len(n) for n in names] + [8]) + 1
    say("confusion matrix (rows: true class, columns: predicted):")
    say(" " * width + "".join(f"{n[:6]:>7}" for n in names))
    for n, row in zip(names, m["confusion_matrix"]):
        say(f"{n:<{width}}" + "".join(f"{v:>7}" for v in row))


def cmd_train(args: argparse.Namespace) -> int:
    """Run a recipe's data, model and train stages; print test accuracy and confusion matrix."""
    from pipeline.runner import run_recipe

    recipe = _recipe(args)
    summary = run_recipe(recipe, _run_dir(args, recipe), _options(args), log=status, until="train")
    _print_train(summary)
    say(summary.line())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run every stage of a recipe (skipping those that are up to date) and write the report."""
    from pipeline.runner import run_recipe

    recipe = _recipe(args)
    summary = run_recipe(recipe, _run_dir(args, recipe), _options(args), log=status)
    for o in summary.outcomes:
        if o.status == "skipped":
            say(f"{o.name}: not run: {o.reason}")
    say(summary.line())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write report.md and report.json of a run and print the Markdown."""
    from pipeline.artifacts import RunDir
    from pipeline.report import write_report

    run = RunDir.existing(args.run, args.runs_dir)
    md, js = write_report(run.root)
    say(md.read_text(encoding="utf-8"))
    status(f"Wrote {md} and {js}")
    return 0


# ----------------------------------------------------------------------------------- parser
def _common(p: argparse.ArgumentParser, top: bool = False) -> None:
    d = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true", default=d(False),
                   help="no progress bars (for CI logs); status lines still go to stderr")
    p.add_argument("--debug", action="store_true", default=d(False), help="show the traceback of errors")


def _recipe_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", nargs="?", default=None,
                   help="a shipped recipe name (default: int8) or the path of a recipe .toml file")


def _run_args(p: argparse.ArgumentParser) -> None:
    _recipe_arg(p)
    p.add_argument("--name", default=None, help="run name: the run directory is RUNS_DIR/NAME (default: the recipe name)")
    p.add_argument("--runs-dir", default="runs", help="where run directories go (default: runs)")
    p.add_argument("--set", action="append", metavar="STAGE.KEY=VALUE", default=[],
                   help="override a recipe setting, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--force", action="store_true", help="run every stage, even those that are up to date")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/samples", help="folder for the sample PNGs (default: runs/samples)")
    p.add_argument("--samples", type=_positive_int, default=8, metavar="N", help="sample images per class (default: 8)")
    p.add_argument("--source", default=None, metavar="DIR",
                   help="a folder of your images, one sub-folder per class (default: synthetic pizzas)")
    p.add_argument("--recipe", default=None, help="recipe whose [data] settings to use (default: int8)")
    p.add_argument("--set", action="append", metavar="STAGE.KEY=VALUE", default=[],
                   help="override a recipe setting, e.g. --set data.seed=3 (repeatable)")


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run name (a folder in --runs-dir) or the path of a run directory")
    p.add_argument("--runs-dir", default="runs", help="where run directories are (default: runs)")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


COMMANDS: list[Command] = [
    Command("data", "make the dataset, print its summary and write sample images per class", _data_args, cmd_data),
    Command("train", "run the data, model and train stages of a recipe", _run_args, cmd_train),
    Command("run", "run every stage of a recipe and write the report", _run_args, cmd_run),
    Command("report", "write and print the report of a run", _report_args, cmd_report),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Compress a small Keras CNN, convert it to int8 TFLite, run it on a Raspberry Pi Pico "
                    "(TFLM) and measure it.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for c in COMMANDS:
        p = sub.add_parser(c.name, help=c.help, description=c.help)
        c.add_arguments(p)
        _common(p)
        p.set_defaults(handler=c.handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except PipelineError as e:
        if args.debug:
            traceback.print_exc()
        status(f"{PROG}: error: {e}")
        return e.exit_code
    except KeyboardInterrupt:
        status(f"{PROG}: interrupted")
        return 130
    except BrokenPipeError:  # e.g. `picotflm report x | head`
        return 0
