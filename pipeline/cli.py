"""``picotflm``: argument parsing only. Each subcommand is one small function that calls the runner
or a stage; the table :data:`COMMANDS` lists them (add a row to add a subcommand).

Results go to stdout, status and progress to stderr. A :class:`PipelineError` is printed as one
line, ``picotflm: error: <message> (hint: <what to do>)``, with exit code 2 and no traceback
(``--debug`` shows it).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NoReturn

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


def _options(args: argparse.Namespace, rerun: tuple[str, ...] = ()):
    from pipeline.flow.runner import RunOptions

    return RunOptions(progress=not getattr(args, "no_progress", False), force=getattr(args, "force", False),
                      port=getattr(args, "port", None), rerun=rerun)


def _recipe(args: argparse.Namespace, extra: dict | None = None):
    """The recipe named on the command line; for the firmware commands the argument may also be an
    existing run, whose recorded recipe is used (and whose name becomes the run's name)."""
    from pipeline.flow.recipe import parse_overrides, recipe_or_run

    overrides = parse_overrides(getattr(args, "set", None))
    for stage, values in (extra or {}).items():
        overrides.setdefault(stage, {}).update(values)
    recipe, run_name = recipe_or_run(getattr(args, "recipe", None), Path(getattr(args, "runs_dir", "runs")), overrides)
    if run_name is not None and getattr(args, "name", None) is None:
        args.name = run_name
    return recipe


def _run_dir(args: argparse.Namespace, recipe):
    from pipeline.flow.rundir import RunDir

    return RunDir.of(args.name or recipe.name, args.runs_dir)


# ------------------------------------------------------------------------------- subcommands
def cmd_data(args: argparse.Namespace) -> int:
    """Make the dataset of a recipe (or a folder), print its summary, write sample PNGs per class."""
    from pipeline.stages.data import make_dataset, write_samples

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
    from pipeline.flow.runner import run_recipe

    recipe = _recipe(args)
    summary = run_recipe(recipe, _run_dir(args, recipe), _options(args), log=status, until="train")
    _print_train(summary)
    say(summary.line())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run every stage of a recipe (skipping those that are up to date) and write the report."""
    from pipeline.flow.runner import run_recipe

    recipe = _recipe(args)
    summary = run_recipe(recipe, _run_dir(args, recipe), _options(args), log=status)
    for o in summary.outcomes:
        if o.status == "skipped":
            say(f"{o.name}: not run: {o.reason}")
    say(summary.line())
    return 0


def _run_until(args: argparse.Namespace, stage: str, rerun: tuple[str, ...] = ()):
    from pipeline.flow.runner import run_recipe

    recipe = _recipe(args)
    if stage not in recipe.stages:
        raise PipelineError(f"recipe {recipe.name} has no {stage!r} stage",
                            hint=f"add {stage!r} to the recipe's 'stages' (the shipped recipes have it)")
    summary = run_recipe(recipe, _run_dir(args, recipe), _options(args, rerun), log=status, until=stage)
    for o in summary.outcomes:
        if o.status == "skipped":
            say(f"{o.name}: not run: {o.reason}")
    return summary


def cmd_deploy(args: argparse.Namespace) -> int:
    """A user's .tflite through inspect, host TFLM, render, build and measure: what will and won't work
    is printed (and refused) before anything is written."""
    from pipeline.config import check_run_name
    from pipeline.flow.recipe import deploy_recipe, parse_overrides
    from pipeline.flow.rundir import RunDir
    from pipeline.flow.runner import run_recipe
    from pipeline.flow.steps import tflite_check
    from pipeline.flow.table import measure_headline
    from pipeline.stages.support import support_lines

    if args.name is not None:
        check_run_name(args.name)
    recipe = deploy_recipe(args.model, inputs=args.inputs, name=args.name, overrides=parse_overrides(args.set))
    status(f"deploy: inspecting {args.model} (operators, types, host TFLM arena) ...")
    pre = tflite_check(recipe)
    for line in support_lines(pre.table):
        say(line)
    say(f"inputs: {len(pre.inputs.x)} ({pre.inputs.source})")
    summary = run_recipe(recipe, RunDir.of(recipe.name, args.runs_dir), _options(args, rerun=("measure",)), log=status)
    stages = summary.manifest.get("stages", {})
    ver = (stages.get("verify") or {}).get("metrics") or {}
    if ver.get("tflm_vs_tflite_warning"):
        say(f"warning: {ver['tflm_vs_tflite_warning']}")
    for o in summary.outcomes:
        if o.status == "skipped":
            say(f"{o.name}: not run: {o.reason}")
    meas = stages.get("measure") or {}
    if meas.get("status") == "done":
        say(f"measured on {meas['metrics'].get('where')}")
        say(measure_headline(meas["metrics"]))
    say(summary.line())
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """Render the run's model into firmware sources (runs/RUN/firmware/)."""
    summary = _run_until(args, "render")
    say(f"generated sources: {summary.run.path('firmware')}")
    say(summary.line())
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    """Render and build the firmware image; print its flash and static RAM use."""
    summary = _run_until(args, "build")
    m = summary.manifest.get("stages", {}).get("build", {})
    if m.get("status") in ("done", "up to date"):
        b = m["metrics"]
        say(f"{b['image']} image: {summary.run.path('firmware.elf')} (UF2: {summary.run.path('firmware.uf2')})")
        say(f"flash {b['flash_bytes']:,} B of 2 MB ({b['flash_percent_of_2MB']} %), static RAM "
            f"{b['static_ram_bytes']:,} B of 264 KB ({b['static_ram_percent_of_264KB']} %), "
            f"of which tensor arena {b.get('arena_static_bytes') or 0:,} B")
    say(summary.line())
    return 0


def cmd_measure(args: argparse.Namespace) -> int:
    """Read back RAM, latency and golden agreement from the board (--port) or the emulated Pico;
    --layers: every op's output for one input against host TFLM."""
    summary = _run_until(args, "measure", rerun=("measure",))
    _print_measured(summary)
    if getattr(args, "layers", False):
        from pipeline.analysis.layers import compare_run, headline, layers_markdown

        build = summary.manifest.get("stages", {}).get("build", {})
        if build.get("status") not in ("done", "up to date"):
            raise PipelineError(f"run {summary.run.name} has no firmware image to compare layer by layer",
                                hint="see the build stage's reason above")
        status("layers: each op's output for golden input 0, on the board and in host TFLM")
        from pipeline.analysis.report import write_report

        r = compare_run(summary.run, build["metrics"]["image"], port=args.port, log=status)
        write_report(summary.run.root)
        say("\n".join(layers_markdown(r)))
        say(f"Wrote {summary.run.path('layers.json')}: {headline(r)} ({r['board_bytes']:,} bytes read in "
            f"{r['board_seconds']:.1f} s)")
    return 0


def _print_measured(summary) -> None:
    from pipeline.flow.table import measure_headline

    entry = summary.manifest.get("stages", {}).get("measure", {})
    if entry.get("status") == "done":
        say(f"measured on {entry['metrics'].get('where')}")
        say(measure_headline(entry["metrics"]))
    say(summary.line())


def cmd_setup_emulator(args: argparse.Namespace) -> int:
    """setup-emulator: rp2040js installed where the emulated Pico's scripts are."""
    from pipeline.board.emulator import setup_emulator

    say(f"emulated Pico ready in {setup_emulator(status, npm=args.npm)}")
    return 0


def cmd_emulate(args: argparse.Namespace) -> int:
    """Run a firmware image (or a run's firmware.elf) in the emulated Pico until Ctrl-C."""
    from pipeline.board.emulator import serve

    image = Path(args.firmware)
    if not image.exists() and (Path(args.runs_dir) / args.firmware / "firmware.elf").is_file():
        image = Path(args.runs_dir) / args.firmware / "firmware.elf"
    return serve(image, announce=lambda port: say(f"Emulated Pico on {port} (Ctrl-C to stop)"),
                 on_stderr=status, link=args.link)


def cmd_flash(args: argparse.Namespace) -> int:
    """Flash a run's board image (picotool, or UF2 copy to the RPI-RP2 drive), then measure it."""
    from pipeline.board.connect import flashed_board
    from pipeline.flow.rundir import RunDir
    from pipeline.flow.runner import measure_run

    if args.emulator and args.drive:
        raise PipelineError("--drive names a real Pico's RPI-RP2 drive; the emulated Pico brings its own",
                            hint="leave out --drive, or --emulator")
    run = RunDir.existing(args.run, args.runs_dir)
    man = run.read_manifest()
    image = (man.get("stages", {}).get("build", {}).get("metrics") or {}).get("image")
    if image != "board":
        raise PipelineError(f"run {run.name} holds the {image or 'no'} image, not the board image",
                            hint="build it with `picotflm build RECIPE --name NAME --set build.image=board` "
                                 "(or `make flash`)")
    measure_run(run, None, _options(args), log=status, until="build")  # flash the image of today's sources
    with flashed_board(run.path("firmware.uf2"), emulated=args.emulator, drive=args.drive, log=status) as (port, where):
        say(f"flashed {run.path('firmware.uf2')}; the board is on {port} ({where})")
        if not args.no_measure:
            _print_measured(measure_run(run, port, _options(args), log=status, port_label=where))
    return 0


def cmd_arena(args: argparse.Namespace) -> int:
    """Find the smallest arena that works on the board; recommend one with a margin; --apply it."""
    from pipeline.analysis.arena import apply_tuned, check_arena_request, check_margin, tune_run
    from pipeline.analysis.report import write_report
    from pipeline.codegen.layout import layout_markdown

    check_margin(args.margin_percent, args.margin_bytes)
    check_arena_request("--max-bytes", args.max_bytes)
    check_arena_request("--arena-bytes", args.arena_bytes)
    if args.arena_bytes is not None and not args.apply:
        raise PipelineError("--arena-bytes is the size --apply builds with", hint="add --apply, or leave --arena-bytes out")
    summary = _run_until(args, "build")
    run = summary.run
    m = summary.manifest.get("stages", {})
    if (m.get("build") or {}).get("status") not in ("done", "up to date"):
        raise PipelineError(f"run {run.name} has no firmware image", hint="see the build stage's reason above")
    image = m["build"]["metrics"]["image"]
    result = tune_run(run, image, port=args.port, margin_percent=args.margin_percent, margin_bytes=args.margin_bytes,
                      max_bytes=args.max_bytes, log=status)
    r = result
    say(f"arena on {r['where']}:")
    host_min = r["host_min_bytes_64bit"]
    say("  host minimum (64-bit TFLM)                 " + (f"{host_min:>8,} B" if host_min else "not measured"))
    say(f"  arena_used_bytes() on the board            {r['arena_used_bytes']:>8,} B")
    say("  device minimum (allocates, invokes,")
    say(f"  golden outputs bit-exact)                  {r['device_min_bytes']:>8,} B")
    say(f"  scratch gap (minimum - arena_used_bytes()) {r['scratch_gap_bytes']:>+8,} B")
    say(f"  peak live activations                      {r['peak_live_activations_bytes']:>8,} B  (op "
        f"{r['peak_op_index']} {r['peak_op']}; device minimum = {r['device_min_over_peak_live']:.3f}x)")
    if r.get("peak_live_in_place_bytes"):
        say(f"  peak live activations, in-place plan       {r['peak_live_in_place_bytes']:>8,} B  (op "
            f"{r['peak_in_place_op_index']} {r['peak_in_place_op']}; device minimum = "
            f"{r['device_min_over_peak_live_in_place']:.3f}x)")
    say(f"  compiled now                               {r['compiled_arena_bytes']:>8,} B")
    say(f"  recommended (+{args.margin_percent:g} % + {args.margin_bytes} B)".ljust(45) + f"{r['recommended_bytes']:>8,} B")
    say(f"  sweep: {r['steps']} steps in {r['sweep_seconds']:.1f} s ({r['wall_seconds_with_board_start']:.1f} s "
        f"with starting the board)")
    say("")
    say("\n".join(layout_markdown(r["layout"], r.get("host_allocations"))))
    say("")
    if args.apply:
        size = args.arena_bytes or r["recommended_bytes"]
        status(f"applying a {size:,}-byte arena: re-render, rebuild and re-measure in a trial copy of run {run.name}")
        applied = apply_tuned(run, r, size, options=_options(args), log=status)
        say(f"applied and confirmed on {applied['where']}: arena {size:,} B, golden {applied['golden']} bit-exact, "
            f"arena_used_bytes() {applied['arena_used_after']:,} B; static RAM {applied['static_ram_before']:,} -> "
            f"{applied['static_ram_after']:,} B (saved {applied['ram_saved_bytes']:,} B) in {applied['seconds']:.1f} s")
    write_report(run.root)
    say(f"Wrote {run.path('arena.json')}; arena {r['device_min_bytes']:,} B minimum, "
        f"{(r.get('applied') or {}).get('arena_bytes') or r['recommended_bytes']:,} B "
        + ("applied" if r.get("applied") else "recommended") + f"; report: {run.path('report.md')}")
    return 0


def cmd_feasibility(args: argparse.Namespace) -> int:
    """Fits / does not fit across target boards: a run's measured figures, or an estimate from
    --params and --bits; the compression factor still needed and the shipped recipe that gets there."""
    from pipeline.analysis import feasibility

    selected = feasibility.boards([n for n in (args.boards or "").split(",") if n.strip()])
    custom = feasibility.custom_board(args.ram, args.flash)
    if custom is not None:
        selected = (selected if args.boards else []) + [custom]
    if (args.params is None) != (args.bits is None):
        raise PipelineError("--params and --bits go together", hint="e.g. --params 236000000 --bits 32")
    if args.run and args.params is not None:
        raise PipelineError("give a RUN or --params/--bits, not both", hint="see `picotflm feasibility --help`")
    if args.run:
        from pipeline.flow.rundir import RunDir
        from pipeline.analysis.report import write_report

        run = RunDir.existing(args.run, args.runs_dir)
        table = feasibility.run_table(run.read_manifest(), selected)
        if table is None:
            raise PipelineError(f"run {run.name} has no converted model yet", hint=f"run `picotflm run {run.name}` first")
        md, _ = write_report(run.root)
        where = f"; report: {md}"
    elif args.params is not None:
        table = feasibility.estimate_table(args.params, args.bits, args.activation_bytes, args.overhead_bytes, selected)
        where = ""
    else:
        raise PipelineError("nothing to assess", hint="give a RUN, or --params N --bits B for an estimate")
    say("\n".join(feasibility.markdown(table["rows"], table["basis"])))
    say("")
    for row in table["rows"]:
        say(feasibility.headline(row))
    fits = sum(1 for r in table["rows"] if r["fits"])
    say(f"feasibility: fits {fits} of {len(table['rows'])} boards ({'measured' if args.run else 'estimate'}){where}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """Optuna over prune / cluster / bit-width settings, each trial a real run up to host TFLM; the
    Pareto fronts (flash and RAM vs accuracy) and the best recipe as TOML."""
    from pipeline.config import check_run_name
    from pipeline.analysis.search import Budget, closest_text, search

    budget = Budget(args.max_flash, args.max_ram, args.min_accuracy)
    check_run_name(args.name)
    base = _recipe(args)
    status(f"search: {args.trials} trials from recipe {base.name}, {args.epochs} epochs per compression stage")
    r = search(base, budget, trials=args.trials, runs_dir=Path(args.runs_dir), name=args.name, epochs=args.epochs,
               storage=args.storage, seed=args.seed, timeout=args.timeout, log=status)
    say(Path(r["markdown"]).read_text(encoding="utf-8"))
    b = r["best"]
    if r["met"]:
        say(f"best: trial {b['trial']} ({b['describe']}): accuracy {b['accuracy']:.4f}, {b['flash_bytes']:,} B "
            f".tflite, {b['ram_bytes']:,} B arena; run it with `picotflm run {r['recipe_file']}`")
    else:
        say(f"no trial meets the budget; closest: trial {b['trial']} ({b['describe']}): {closest_text(r)}; "
            f"its recipe: {r['recipe_file']}")
    say(f"search {r['study']}: {r['trials_complete']} trials ({r['trials_new']} new) in {r['seconds']:.1f} s; "
        f"{r['markdown']}, {r['png']}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """One comparison table (Markdown + JSON) and plots across runs."""
    from pipeline.analysis.report import write_comparison

    md, js, pngs = write_comparison(args.runs, args.runs_dir, Path(args.out))
    say(md.read_text(encoding="utf-8"))
    status(f"Wrote {md}, {js}" + "".join(f", {p}" for p in pngs))
    return 0


def cmd_switch_sim(args: argparse.Namespace) -> int:
    """The quantization switching policy simulated on host TFLM over runs of one model; threshold sweep."""
    from pipeline.analysis.switch import DEFAULT_THRESHOLDS, SwitchConfig, parse_thresholds, simulate

    thresholds = parse_thresholds(args.thresholds) if args.thresholds else DEFAULT_THRESHOLDS
    cfg = SwitchConfig(thresholds=thresholds, metric=args.metric, switch_cost_us=args.switch_cost_us)
    r = simulate(args.runs, cfg, runs_dir=args.runs_dir, out_dir=args.out, log=status)
    say(Path(r["files"][1]).read_text(encoding="utf-8"))
    say(f"switch-sim: {len(r['variants_smallest_first'])} variants, {len(r['rows'])} thresholds, "
        f"{r['test_samples']} test images in {r['seconds']:.1f} s; {', '.join(r['files'])}")
    return 0


def cmd_switch(args: argparse.Namespace) -> int:
    """One firmware with every variant (smallest first), its switch cost, per-variant figures and the
    automatic policy measured on the board or the emulated Pico."""
    from pipeline.analysis.switch import DEFAULT_THRESHOLDS, parse_thresholds
    from pipeline.analysis.switchfw import build_switching, load_switch_spec, measure_switching

    spec = load_switch_spec(args.runs, threshold=args.threshold, metric=args.metric, frames=args.frames,
                            name=args.name)
    image = args.image
    if image == "emulator" and (args.port or args.flash):
        raise PipelineError("--port and --flash are for the board image, the one a Pico runs",
                            hint="leave out --image emulator")
    # The emulator image gets a folder of its own, unless --name says otherwise.
    out = Path(args.runs_dir) / (spec["name"] + ("-emulator" if image == "emulator" and not args.name else ""))
    b = build_switching(spec["variants"], out, runs_dir=args.runs_dir, image=image, kernels=args.kernels, log=status)
    status(f"switch: built {out}/firmware.elf: {len(b['variants_smallest_first'])} variants, flash "
           f"{b['flash_bytes']:,} B, static RAM {b['static_ram_bytes']:,} B, arena {b['arena_bytes']:,} B "
           f"({b['build_seconds']:.1f} s)")
    sweep = parse_thresholds(args.thresholds) if args.thresholds else DEFAULT_THRESHOLDS
    port, where = args.port, None
    with contextlib.ExitStack() as stack:
        if args.flash:
            from pipeline.board.connect import flashed_board

            port, where = stack.enter_context(flashed_board(out / "firmware.uf2", drive=args.drive, log=status))
            status(f"switch: flashed {out}/firmware.uf2; the board is on {port}")
        r = measure_switching(out, spec["variants"], runs_dir=args.runs_dir, port=port, image=image,
                              threshold=spec["threshold"], metric=spec["metric"], frames=spec["frames"],
                              sweep_thresholds=sweep, log=status, where=where)
    say(Path(r["files"][1]).read_text(encoding="utf-8"))
    say(f"switch: measured in {r['measure_seconds']:.1f} s; {', '.join(r['files'])}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write report.md and report.json of a run and print the Markdown."""
    from pipeline.flow.rundir import RunDir
    from pipeline.analysis.report import write_report

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


def _deploy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="the .tflite file to deploy")
    p.add_argument("--inputs", default=None, metavar="FILE_OR_DIR",
                   help="inputs to verify and measure with: a .npz (x, optional y labels), a .npy, or an image folder "
                        "(one sub-folder per class gives labels); default: seeded random inputs")
    p.add_argument("--name", default=None, help="run name: the run directory is RUNS_DIR/NAME (default: the file's name)")
    p.add_argument("--runs-dir", default="runs", help="where run directories go (default: runs)")
    p.add_argument("--set", action="append", metavar="STAGE.KEY=VALUE", default=[],
                   help="override a setting, e.g. --set build.kernels=stock or --set tflite.random_inputs=32 (repeatable)")
    p.add_argument("--force", action="store_true", help="run every stage, even those that are up to date")
    p.add_argument("--port", default=None, help="serial port of a real Pico (e.g. /dev/ttyACM0); "
                                                  "default: the emulated Pico")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/samples", help="folder for the sample PNGs (default: runs/samples)")
    p.add_argument("--samples", type=_positive_int, default=8, metavar="N", help="sample images per class (default: 8)")
    p.add_argument("--source", default=None, metavar="DIR",
                   help="a folder of your images, one sub-folder per class (default: synthetic pizzas)")
    p.add_argument("--recipe", default=None, help="recipe whose [data] settings to use (default: int8)")
    p.add_argument("--set", action="append", metavar="STAGE.KEY=VALUE", default=[],
                   help="override a recipe setting, e.g. --set data.seed=3 (repeatable)")


def _measure_args(p: argparse.ArgumentParser) -> None:
    _run_args(p)
    p.add_argument("--port", default=None, help="serial port of a real Pico (e.g. /dev/ttyACM0); "
                                                  "default: the emulated Pico")


def _measure_cmd_args(p: argparse.ArgumentParser) -> None:
    _measure_args(p)
    p.add_argument("--layers", action="store_true",
                   help="also read every op's output for one input from the board and compare each with host "
                        "TFLM: names the first op that differs (writes layers.json and a report section)")


def _emulate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("firmware", help="a firmware image (.elf, .uf2 or .bin) or a run name")
    p.add_argument("--runs-dir", default="runs", help="where run directories are (default: runs)")
    p.add_argument("--link", default=None, help="also make this symlink to the pty (e.g. /tmp/ttyPICO)")


def _flash_args(p: argparse.ArgumentParser) -> None:
    _report_args(p)
    p.add_argument("--drive", default=None, help="the mounted RPI-RP2 drive (default: found automatically)")
    p.add_argument("--no-measure", action="store_true", help="only flash; do not measure afterwards")
    p.add_argument("--emulator", action="store_true",
                   help="flash the emulated Pico instead of a real one: the UF2 goes onto its BOOTSEL drive, "
                        "it boots the board image, and it is measured over its USB serial port")


def _arena_args(p: argparse.ArgumentParser) -> None:
    _measure_args(p)
    p.add_argument("--margin-percent", type=float, default=10.0, help="margin over the device minimum (default 10)")
    p.add_argument("--margin-bytes", type=int, default=256, help="extra bytes (default 256)")
    p.add_argument("--max-bytes", type=int, default=None, metavar="N",
                   help="largest arena limit to try (default: the compiled size; more needs a rebuild)")
    p.add_argument("--apply", action="store_true",
                   help="re-render, rebuild and re-measure with the recommended arena; kept only when confirmed")
    p.add_argument("--arena-bytes", type=int, default=None, metavar="N",
                   help="with --apply: build with N bytes instead of the recommendation (still confirmed)")


def _feasibility_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", default=None, help="a run name or directory: its measured figures")
    p.add_argument("--runs-dir", default="runs", help="where run directories are (default: runs)")
    p.add_argument("--params", type=int, default=None, metavar="N", help="estimate: number of parameters")
    p.add_argument("--bits", type=int, default=None, metavar="B", help="estimate: bits per parameter (32, 16, 8, 4)")
    p.add_argument("--activation-bytes", type=int, default=None, metavar="N",
                   help="estimate: activation bytes (tensor arena); default: unknown, not counted")
    p.add_argument("--overhead-bytes", type=int, default=8192, metavar="N",
                   help="estimate: flatbuffer bytes beyond the weights (default 8192)")
    p.add_argument("--boards", default=None, metavar="A,B",
                   help="boards to list (default: all): rp2040, rp2350, esp32s3, esp32s3-psram, stm32f411, rpi4")
    p.add_argument("--ram", type=int, default=None, metavar="BYTES", help="add a board of your own: its RAM")
    p.add_argument("--flash", type=int, default=None, metavar="BYTES", help="add a board of your own: its flash")


def _search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-flash", type=int, required=True, metavar="BYTES", help="largest .tflite (model flash) in bytes")
    p.add_argument("--max-ram", type=int, required=True, metavar="BYTES", help="largest host TFLM arena in bytes")
    p.add_argument("--min-accuracy", type=float, required=True, metavar="X", help="lowest host TFLM test accuracy (0-1)")
    p.add_argument("--trials", type=_positive_int, default=12, metavar="N", help="trials to run (default 12)")
    p.add_argument("--epochs", type=_positive_int, default=2, metavar="N",
                   help="fine-tuning epochs per compression stage in a trial (default 2)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage: a database URL (default: SQLite in RUNS_DIR/NAME/optuna.db; 'memory': not kept)")
    p.add_argument("--recipe", default=None, help="base recipe for data, model and training (default: int8)")
    p.add_argument("--set", action="append", metavar="STAGE.KEY=VALUE", default=[],
                   help="override a base recipe setting, e.g. --set train.epochs=20 (repeatable)")
    p.add_argument("--runs-dir", default="runs", help="where run directories go (default: runs)")
    p.add_argument("--name", default="search", help="folder of the search in RUNS_DIR (default: search)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="stop starting trials after this")


def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="run names (folders in --runs-dir) or run directories")
    p.add_argument("--runs-dir", default="runs", help="where run directories are (default: runs)")
    p.add_argument("--out", default="runs/compare", help="folder for compare.md/.json and plots (default: runs/compare)")


def _switch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="two or more runs of one model (e.g. int4 int8)")
    p.add_argument("--thresholds", nargs="+", default=None, metavar="T",
                   help="thresholds in [0, 1], space or comma separated (default: 0, 0.05, ..., 1)")
    p.add_argument("--metric", choices=("confidence", "margin"), default="confidence",
                   help="escalate when the top-1 output (confidence) or top-1 minus top-2 (margin) is below "
                        "the threshold (default: confidence)")
    p.add_argument("--switch-cost-us", type=float, default=0.0, metavar="US",
                   help="cost of one switch in microseconds, if known (default 0: unknown, not counted)")
    p.add_argument("--runs-dir", default="runs", help="where run directories are (default: runs)")
    p.add_argument("--out", default="runs/switch", help="folder for switch.md/.json/.png (default: runs/switch)")


def _switch_fw_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_OR_SPEC",
                   help="two or more runs of one model (e.g. int4 int8), or one switch spec (a .toml with a "
                        "[switch] table, or the name of one in pipeline/recipes/switch/)")
    p.add_argument("--name", default=None, help="folder in --runs-dir for the firmware and results "
                                                "(default: switch-<runs>)")
    p.add_argument("--threshold", type=float, default=None, metavar="T",
                   help="the board's policy threshold in [0, 1] (default 0.5, or the spec's)")
    p.add_argument("--metric", choices=("confidence", "margin"), default=None,
                   help="escalate on top-1 (confidence) or top-1 minus top-2 (margin) (default: confidence)")
    p.add_argument("--frames", type=_positive_int, default=None, metavar="N",
                   help="test frames sent per variant and for the policy (default 40)")
    p.add_argument("--thresholds", nargs="+", default=None, metavar="T",
                   help="thresholds of the sweep over the test split (default: 0, 0.05, ..., 1)")
    p.add_argument("--kernels", choices=("picotflm", "stock"), default="picotflm",
                   help="our M0+ kernels or pico-tflmicro's (default: picotflm)")
    p.add_argument("--image", choices=("board", "emulator"), default="board",
                   help="the board image (default: USB CDC, both cores; a Pico or the emulated Pico) or the "
                        "one-core emulator image")
    p.add_argument("--port", default=None, help="a real Pico running this switching firmware (else the emulated Pico)")
    p.add_argument("--flash", action="store_true", help="flash the board image (picotool, or the RPI-RP2 drive) and "
                                                        "measure it")
    p.add_argument("--drive", default=None, help="with --flash: the RPI-RP2 drive's mount point (default: found)")
    p.add_argument("--runs-dir", default="runs", help="where run directories are (default: runs)")


def _setup_emulator_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--npm", default="npm", help="the npm executable (default: npm)")


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
    Command("deploy", "take a .tflite onto the Pico: what will and won't work, host TFLM, render, build, measure",
            _deploy_args, cmd_deploy),
    Command("report", "write and print the report of a run", _report_args, cmd_report),
    Command("render", "render the model into firmware sources (C array, op resolver, config, golden data)",
            _run_args, cmd_render),
    Command("build", "render and build the firmware image (CMake + Ninja); print flash and RAM use",
            _run_args, cmd_build),
    Command("measure", "measure RAM, latency and golden agreement on the board (--port) or the emulated Pico",
            _measure_cmd_args, cmd_measure),
    Command("emulate", "run a firmware image in the emulated Pico behind a serial pty", _emulate_args, cmd_emulate),
    Command("setup-emulator", "install the emulated Pico (rp2040js, with npm) for an installed picotflm",
            _setup_emulator_args, cmd_setup_emulator),
    Command("flash", "flash a run's board image to a Pico and measure it", _flash_args, cmd_flash),
    Command("arena", "find the smallest arena that works on the board and recommend one (--apply)",
            _arena_args, cmd_arena),
    Command("compare", "compare runs: one table and plots", _compare_args, cmd_compare),
    Command("switch-sim", "simulate switching int4 -> int8 on low confidence (host TFLM, board latencies)",
            _switch_args, cmd_switch_sim),
    Command("switch", "build one firmware with several variants (e.g. int4 int8) and measure switching on the board",
            _switch_fw_args, cmd_switch),
    Command("feasibility", "fits / does not fit on target boards (a run's measured figures or --params/--bits)",
            _feasibility_args, cmd_feasibility),
    Command("search", "search compression settings (Optuna) for a flash / RAM / accuracy budget; Pareto fronts",
            _search_args, cmd_search),
]


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error reported like every other error: one line, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (hint: see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
