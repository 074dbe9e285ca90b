"""The arena benchmark: for each run, the device's smallest arena against the live activations.

    python -m pipeline.bench.arena [--runs-dir runs] [--run int8 --run person ...] [--out DIR]

A run without ``arena.json`` is tuned first (``picotflm arena``'s sweep on the emulated Pico, board
image). Then, per run (:func:`pipeline.analysis.arena.arena_figures`): the arena applied and the device
minimum, the live peak under picotflm's in-place plan and under TFLM's own plan, the ratio of the
minimum to each, what the minimum holds beyond the in-place peak, host TFLM's total (64-bit, reference
kernels, its own planning: the stock arena as TFLM's allocation print-out gives it) and the RAM total.
Writes ``arenabench.md`` and ``arenabench.json`` in ``--out``.
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
    where = sorted({r["where"] for r in rows if r.get("where")})
    if where:
        md += ["", "Device figures: " + "; ".join(where) + "."]
    return md


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.bench.arena", description=__doc__.splitlines()[0])
    p.add_argument("--runs-dir", default="runs", help="where the runs are (default: runs)")
    p.add_argument("--run", action="append", default=None, help="a run name or directory (repeatable; default: int8)")
    p.add_argument("--out", default=None, help="where arenabench.md/.json go (default: RUNS_DIR/bench)")
    args = p.parse_args(argv)
    runs_dir = Path(args.runs_dir)
    out = Path(args.out) if args.out else runs_dir / "bench"
    try:
        r = bench_arena(runs_dir, args.run or ["int8"], log=lambda s: print(s, file=sys.stderr))
    except PipelineError as e:
        print(f"picotflm: error: {e}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "arenabench.md", r["text"] + "\n")
    atomic_write_text(out / "arenabench.json", json.dumps(r["rows"], indent=1) + "\n")
    print(r["text"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
