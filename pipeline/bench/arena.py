"""The arena benchmark: for each run, the device's smallest arena against the live activations.

    python -m pipeline.bench.arena [--runs-dir runs] [--run int8 ...] [--person] [--out DIR]

A run without ``arena.json`` is tuned first (``picotflm arena``'s sweep on the emulated Pico, board
image). Then, per run (:func:`pipeline.analysis.arena.arena_figures`): the arena applied and the device
minimum, the live peak under picotflm's in-place plan and under TFLM's own plan, the ratio of the
minimum to each, what the minimum holds beyond the in-place peak, host TFLM's total (64-bit, reference
kernels, its own planning: the stock arena as TFLM's allocation print-out gives it) and the RAM total.
With ``--person``, pico-tflmicro's person detection is deployed twice first (runs ``person`` and
``person-stock``: picotflm's kernels and plan, pico-tflmicro's kernels and TFLM's plan), so the table
holds both device minimums of the same model, and both are measured on the emulated Pico (invoke on two
cores and on one, golden inputs: :func:`bench_latency`). Writes ``arenabench.md`` and ``arenabench.json`` in
``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.flow.rundir import atomic_write_text

COLUMNS = (("run", "run"), ("kernels", "kernels"), ("applied_arena_bytes", "arena applied B"),
           ("device_min_bytes", "device minimum B"), ("peak_live_in_place_bytes", "live peak, in place B"),
           ("device_min_over_in_place_peak", "minimum / in-place peak"), ("peak_live_bytes", "live peak, TFLM B"),
           ("device_min_over_peak_live", "minimum / TFLM peak"),
           ("beyond_in_place_peak_bytes", "beyond the in-place peak B"),
           ("host_total_bytes_64bit", "host TFLM total B (64-bit)"), ("ram_total_bytes", "RAM total B"))


def _cell(v: Any) -> str:
    return "" if v is None else f"{v:,}" if isinstance(v, int) else str(v)


def arena_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The rows as a Markdown table, then each run's host TFLM tail allocations."""
    md = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    md += ["| " + " | ".join(_cell(r.get(k)) for k, _ in COLUMNS) + " |" for r in rows]
    for r in rows:
        if r.get("host_tail"):
            md += ["", f"{r['run']}: host TFLM's tail (64-bit, reference kernels; head "
                   f"{_cell(r.get('host_head_bytes_64bit'))} B, tail {_cell(r.get('host_tail_bytes_64bit'))} B):", "",
                   "| allocation | count | used B |", "|---|---|---|"]
            md += [f"| {k['what']} | {k['count']:,} | {k['used_bytes']:,} |" for k in r["host_tail"]]
    by_run = {r["run"]: r for r in rows}
    pairs = [(r, by_run[r["run"] + "-stock"]) for r in rows if r["run"] + "-stock" in by_run]
    for r, stock in pairs:
        if r.get("device_min_bytes") and stock.get("device_min_bytes"):
            md += ["", f"{r['run']}: picotflm's device minimum / pico-tflmicro's (stock kernels, TFLM's plan) on the same "
                   f"model: {r['device_min_bytes']:,} / {stock['device_min_bytes']:,} B = "
                   f"**{r['device_min_bytes'] / stock['device_min_bytes']:.3f}**"]
    where = sorted({r["where"] for r in rows if r.get("where")})
    if where:
        md += ["", "Device figures: " + "; ".join(where) + "."]
    return md


PERSON_MODEL = "examples/person_detection/tensorflow/lite/micro/tools/make/downloads/person_model/person_detect_model_data.cpp"


def deploy_pair(runs_dir: Path, model: str, name: str, *, log=print) -> list[str]:
    """``picotflm deploy MODEL`` built twice, as runs ``name`` (picotflm's kernels and in-place plan)
    and ``name-stock`` (pico-tflmicro's kernels, TFLM's own plan): the two arenas the table compares."""
    from pipeline.flow.recipe import deploy_recipe, parse_overrides
    from pipeline.flow.rundir import RunDir
    from pipeline.flow.runner import RunOptions, run_recipe

    names = []
    for kernels, n in (("picotflm", name), ("stock", f"{name}-stock")):
        recipe = deploy_recipe(model, name=n, overrides=parse_overrides([f"build.kernels={kernels}"]))
        run_recipe(recipe, RunDir.of(n, runs_dir), RunOptions(progress=False), log=lambda t: log(f"  {t}"),
                   until="build", write_report=False)
        names.append(n)
    return names


def person_model() -> str | None:
    """pico-tflmicro's person detection model (its C array), when pico-tflmicro is installed."""
    from pipeline.stages.build import ToolchainMissing, find_tflm

    try:
        path = find_tflm() / PERSON_MODEL
    except ToolchainMissing:
        return None
    return str(path) if path.is_file() else None


def bench_arena(runs_dir: Path, names: list[str], *, log=print) -> dict[str, Any]:
    """Tune (when not done yet) and collect the arena figures of ``names`` under ``runs_dir``."""
    from pipeline.analysis.arena import arena_figures, tune_run
    from pipeline.flow.rundir import RunDir

    rows = []
    for name in names:
        run = RunDir.existing(name, runs_dir)
        if not run.path("arena.json").is_file():
            image = (((run.read_manifest().get("stages") or {}).get("build") or {}).get("metrics") or {}).get("image")
            if not image:
                raise PipelineError(f"run {name} has no firmware image to tune", hint=f"run `picotflm build {name}` first")
            tune_run(run, image, port=None, margin_percent=10.0, margin_bytes=256, log=lambda s: log(f"  {s}"))
        rows.append(arena_figures(run))
    return {"rows": rows, "text": "\n".join(arena_markdown(rows))}


LATENCY_COLUMNS = (("run", "run"), ("kernels", "kernels"), ("macs", "MACs"), ("cycles", "cycles, two cores"),
                   ("us", "ms, two cores"), ("cycles_per_mac", "cycles/MAC, two cores"),
                   ("one_core_cycles", "cycles, one core"), ("one_core_us", "ms, one core"),
                   ("one_core_cycles_per_mac", "cycles/MAC, one core"), ("two_core_speedup", "two-core speed-up"),
                   ("golden", "golden exact"))


def bench_latency(runs_dir: Path, names: list[str], *, bench_runs: int = 3, log=print) -> dict[str, Any]:
    """Each built run's invoke on the emulated Pico (its board image): two cores, then the same image after
    ``cores 1``, and its golden inputs against host TFLM."""
    from pipeline.board.connect import board_port
    from pipeline.board.measure import measure
    from pipeline.flow.rundir import RunDir
    from pipeline.tflite.reader import inspect_tflite

    rows = []
    for name in names:
        run = RunDir.existing(name, runs_dir)
        build = (run.read_manifest().get("stages") or {}).get("build") or {}
        image = (build.get("metrics") or {}).get("image")
        if not image or not run.path("firmware.elf").is_file():
            raise PipelineError(f"run {name} has no firmware to measure", hint=f"run `picotflm build {name}` first")
        kernels = (build.get("config") or {}).get("kernels")
        info = inspect_tflite(run.path("model.tflite").read_bytes())
        log(f"  {name}: {bench_runs} invokes on two cores and on one, golden inputs")
        with board_port(run.path("firmware.elf"), None, image) as (port, where):
            m = measure(port, expect_hash=info.sha256[:16], bench_runs=bench_runs, macs=info.macs,
                        invoke_timeout=600.0)
        two, one, golden = m.get("bench") or {}, m.get("bench_one_core") or {}, m.get("golden") or {}
        one_cycles = one.get("median_cycles")
        rows.append({
            "run": name, "kernels": kernels, "macs": info.macs, "where": where,
            "cycles": two.get("median_cycles"), "us": _ms(two.get("median_us")),
            "cycles_per_mac": m.get("cycles_per_mac"), "one_core_cycles": one_cycles,
            "one_core_us": _ms(one.get("median_us")),
            "one_core_cycles_per_mac": round(one_cycles / info.macs, 2) if one_cycles and info.macs else None,
            "two_core_speedup": m.get("two_core_speedup"),
            "golden": f"{golden.get('exact')}/{golden.get('count')}"})
    md = ["| " + " | ".join(h for _, h in LATENCY_COLUMNS) + " |", "|" + "---|" * len(LATENCY_COLUMNS)]
    md += ["| " + " | ".join(_cell(r.get(k)) for k, _ in LATENCY_COLUMNS) + " |" for r in rows]
    where = sorted({r["where"] for r in rows if r.get("where")})
    if where:
        md += ["", "Measured on " + "; ".join(where) + "; one core: the same image after `cores 1`."]
    return {"rows": rows, "text": "\n".join(md)}


def _ms(us: Any) -> float | None:
    return round(us / 1000, 1) if isinstance(us, (int, float)) else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.bench.arena", description=__doc__.splitlines()[0])
    p.add_argument("--runs-dir", default="runs", help="where the runs are (default: runs)")
    p.add_argument("--run", action="append", default=None, help="a run name or directory (repeatable; default: int8)")
    p.add_argument("--person", action="store_true",
                   help="also deploy pico-tflmicro's person detection twice (picotflm, stock) and tune both")
    p.add_argument("--out", default=None, help="where arenabench.md/.json go (default: RUNS_DIR/bench)")
    args = p.parse_args(argv)
    runs_dir = Path(args.runs_dir)
    out = Path(args.out) if args.out else runs_dir / "bench"
    names = list(args.run or ["int8"])
    err = lambda s: print(s, file=sys.stderr)  # noqa: E731
    try:
        if args.person:
            model = person_model()
            if model is None:
                raise PipelineError("pico-tflmicro's person detection model is not installed",
                                    hint="set PICO_TFLMICRO_PATH to a pico-tflmicro checkout, or leave out --person")
            person = deploy_pair(runs_dir, model, "person", log=err)
            names += person
        r = bench_arena(runs_dir, names, log=err)
        if args.person:
            lat = bench_latency(runs_dir, person, log=err)
            r["text"] += "\n\nPerson detection's invoke (picotflm's kernels and plan; pico-tflmicro's stock kernels):\n\n" + lat["text"]
            r["latency"] = lat["rows"]
    except PipelineError as e:
        print(f"picotflm: error: {e}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "arenabench.md", r["text"] + "\n")
    atomic_write_text(out / "arenabench.json", json.dumps({"arena": r["rows"], "latency": r.get("latency", [])},
                                                          indent=1) + "\n")
    print(r["text"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
