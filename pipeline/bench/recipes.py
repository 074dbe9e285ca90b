"""``make bench``: benchmarks that print measured figures (never timed tests).

1. Every shipped recipe end to end in a fresh runs directory (wall time, per recipe and in all),
   then a re-run with nothing changed.
2. Host TFLM accuracy of the whole test split (seconds), INT4 vs int8 weight bytes and accuracy.
3. Board figures per recipe from ``measured.json`` (emulated Pico unless ``--port``).
4. Kernels: the int8 and int4 board images built with pico-tflmicro's stock kernels and with picotflm's
   (same model, the emulated Pico): cycles per invoke on two cores and on one (`cores 1`), per op,
   cycles/MAC, RAM, flash, and every output bit-exact with host TFLM on the golden inputs and on the
   whole test split.
5. Serial soak: request/reply exchanges with the emulated Pico, desyncs counted, exchanges per second.

Writes ``<runs>/bench/bench.md`` and ``bench.csv`` and prints the Markdown.
"""
from __future__ import annotations

import csv
import io
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

RECIPES = ["int8", "prune-int8", "boundary-int8", "cluster-int8", "pcqat-int8", "int4", "cluster-int4", "codebook-4bit",
           "codebook-2bit", "prune-groups-2bit"]


def _run(recipe: str, runs: Path) -> float:
    from pipeline.flow.rundir import RunDir
    from pipeline.flow.recipe import load_recipe
    from pipeline.flow.runner import RunOptions, run_recipe

    t0 = time.perf_counter()
    run_recipe(load_recipe(recipe), RunDir.of(recipe, runs), RunOptions(progress=False),
               log=lambda s: print(f"  {recipe}: {s}", file=sys.stderr))
    return time.perf_counter() - t0


def _metrics(runs: Path, recipe: str, stage: str) -> dict:
    from pipeline.flow.rundir import stage_metrics

    return stage_metrics(json.loads((runs / recipe / "manifest.json").read_text()), stage)


def _payload(runs: Path, recipe: str) -> dict:
    """``convert.payload_bytes`` of a recipe's flashed model ({} when it has none)."""
    from pipeline.tflite.reader import payload_bytes
    from pipeline.errors import PipelineError

    path = runs / recipe / "model.tflite"
    try:
        return payload_bytes(path.read_bytes()) if path.is_file() else {}
    except PipelineError:
        return {}


def soak(elf: Path, exchanges: int) -> dict:
    from pipeline.board.client import BoardClient
    from pipeline.board.connect import board_port
    from pipeline.errors import PipelineError

    errors = 0
    from pipeline.board.emulator import image_kind

    with board_port(elf, None, image_kind(elf)) as (port, _), BoardClient(port, timeout=5.0) as board:
        board.handshake()
        t0 = time.perf_counter()
        for i in range(exchanges):
            try:
                r = board.request("info" if i % 2 else "mem")
                if not r.ok:
                    errors += 1
            except PipelineError:
                errors += 1
        seconds = time.perf_counter() - t0
        stats = board.stats.as_dict()
    return {"exchanges": exchanges, "errors": errors, "seconds": round(seconds, 2),
            "exchanges_per_second": round(exchanges / seconds, 1), "link": stats}


def kernels_compare(run_dir: Path, frames_n: int | None = None,
                    log=lambda s: print(s, file=sys.stderr)) -> list[dict]:
    """Build the run's rendered firmware with each kernel set, measure both in the emulated Pico; then
    picotflm's kernels once more as the board image splits them between the cores (build.emulate_core1,
    row "picotflm split": core 1's jobs run on core 0, on core 1's stack), for the outputs of the split
    ops and core 1's stack peak, measured (not the speed of two cores: one runs both halves in turn)."""
    import numpy as np

    from pipeline.flow.rundir import RunDir
    from pipeline.stages.build import build_firmware
    from pipeline.config import BuildConfig
    from pipeline.tflite.reader import inspect_tflite
    from pipeline.stages.data import Dataset
    from pipeline.board.client import BoardClient
    from pipeline.board.measure import measure
    from pipeline.board.connect import board_port
    from pipeline.stages.build import build_dir_for
    from pipeline.stages.verify import images_to_input, run_tflm

    run = RunDir(root=Path(run_dir), name=Path(run_dir).name)
    data = run.path("model.tflite").read_bytes()
    info = inspect_tflite(data)
    ds = Dataset.load(run.path("data.npz"))
    x = ds.x_test if frames_n is None else ds.x_test[:frames_n]
    inputs = images_to_input(x, info)
    host, _ = run_tflm(data, inputs, 64 * 1024)
    rows = []
    builds = (("stock", BuildConfig(kernels="stock")), ("picotflm", BuildConfig()))
    for label, cfg in builds:
        kernels = cfg.kernels
        log(f"kernels: {run_dir.name} with {label} kernels: build, then {len(inputs)} test frames")
        res = build_firmware(run.path("firmware"), build_dir_for(run.root, f"{cfg.image}-{label}"), cfg, log=log)
        with board_port(res.elf, None, cfg.image) as (port, _):
            m = measure(port, expect_hash=info.sha256[:16], bench_runs=5,
                        frames=[bytes(r.tobytes()) for r in inputs], macs=info.macs)
            with BoardClient(port, timeout=10.0) as board:
                counters = board.request("info")  # after every invoke: the splits that ran
                one_core_ops = _one_core_profile(board, m)
        outs = [bytes.fromhex(o) for o in m["infer_outputs"]]
        exact = sum(o == bytes(h.tobytes()) for o, h in zip(outs, host))
        bench, mem, golden = m["bench"], m["mem"], m["golden"]
        rows.append({
            "run": run_dir.name, "kernels": label, "board_kernels": (m.get("info") or {}).get("kernels"),
            "build_kernels": kernels,
            "split_ops": counters.get("split_ops"), "core1_jobs": counters.get("core1_jobs"),
            "core1_stack_peak": mem.get("core1_stack_peak"), "core1_stack_size": mem.get("core1_stack_size"),
            "quant_tables_missed": (m.get("info") or {}).get("quant_tables_missed"),
            "quant_tables_matched": (m.get("info") or {}).get("quant_tables_matched"),
            "cycles": bench.get("median_cycles"),
            "us": bench.get("median_us"), "cycles_per_mac": m.get("cycles_per_mac"),
            "one_core_cycles": (m.get("bench_one_core") or {}).get("median_cycles"),
            "one_core_us": (m.get("bench_one_core") or {}).get("median_us"),
            "two_core_speedup": m.get("two_core_speedup"),
            "per_op_cycles": {k: v.get("cycles") for k, v in (m.get("profile_by_op") or {}).items()},
            "per_op": per_op_rows(info.layers, (m.get("profile") or {}).get("ops"), one_core_ops),
            "arena_used": mem.get("arena_used"), "stack_peak": mem.get("stack_peak"),
            "ram_total": m.get("ram_total_bytes"), "flash": res.memory.get("flash_bytes"),
            "static_ram": res.memory.get("static_ram_bytes"),
            "golden": f"{golden.get('exact')}/{golden.get('count')}",
            "test_split_exact": f"{exact}/{len(host)}", "test_split_top1": float(np.mean(
                [int(np.frombuffer(o, np.int8).argmax()) == int(lbl) for o, lbl in zip(outs, ds.y_test)])),
        })
    return rows


def _one_core_profile(board, m: dict) -> list | None:
    """The ``profile`` of one invoke on core 0 alone (``cores 1``, then both cores back), for an image
    with two cores; None otherwise."""
    if (m.get("info") or {}).get("cores") != 2:
        return None
    board.request("cores", 1)
    try:
        return board.request("profile", timeout=120.0).figures().get("ops")
    finally:
        board.request("cores", 2)


def per_op_rows(layers, two_core_ops, one_core_ops) -> list[dict]:
    """One row per op of the model, in order: its MACs (from the .tflite) beside the cycles the board's
    ``profile`` gave on two cores and on one. Ops the profile does not name as the model does are left
    out (no figure is paired with the wrong op)."""
    rows = []
    for i, layer in enumerate(layers):
        two = two_core_ops[i] if isinstance(two_core_ops, list) and i < len(two_core_ops) else None
        one = one_core_ops[i] if isinstance(one_core_ops, list) and i < len(one_core_ops) else None
        if not isinstance(two, dict) or two.get("op") != layer.op:
            continue
        one_cycles = one.get("cycles") if isinstance(one, dict) and one.get("op") == layer.op else None
        rows.append({"index": i, "op": layer.op, "macs": layer.macs, "cycles": two.get("cycles"),
                     "one_core_cycles": one_cycles})
    return rows


def _per_mac(cycles, macs) -> str:
    return f"{cycles / macs:.2f}" if cycles and macs else "-"


def per_op_markdown(rows: list[dict]) -> list[str]:
    """Per op: stock vs picotflm cycles/MAC on one core, picotflm on two, and its two-core speed-up."""
    by = {(r["run"], r["kernels"]): r for r in rows}
    md = []
    for run in dict.fromkeys(r["run"] for r in rows):
        stock, pf = by.get((run, "stock")), by.get((run, "picotflm"))
        if not pf or not pf.get("per_op"):
            continue
        stock_ops = {o["index"]: o for o in (stock or {}).get("per_op", [])}
        md += ["", f"Per op, {run} (`profile` on one core after `cores 1`, and on two):", "",
               "| # | op | MACs | stock cycles/MAC, one core | picotflm cycles/MAC, one core | "
               "picotflm cycles/MAC, two cores | picotflm two-core speed-up |", "|" + "---|" * 7]
        for o in pf["per_op"]:
            s = stock_ops.get(o["index"], {})
            up = f"{o['one_core_cycles'] / o['cycles']:.2f}x" if o.get("one_core_cycles") and o.get("cycles") else "-"
            md.append(f"| {o['index']} | {o['op']} | {o['macs']:,} | {_per_mac(s.get('one_core_cycles'), o['macs'])} | "
                      f"{_per_mac(o.get('one_core_cycles'), o['macs'])} | {_per_mac(o.get('cycles'), o['macs'])} | {up} |")
        macs = sum(o["macs"] for o in pf["per_op"])
        up = f"{pf['one_core_cycles'] / pf['cycles']:.2f}x" if pf.get("one_core_cycles") and pf.get("cycles") else "-"
        md.append(f"| | whole invoke (`bench`) | {macs:,} | {_per_mac((stock or {}).get('one_core_cycles'), macs)} | "
                  f"{_per_mac(pf.get('one_core_cycles'), macs)} | {_per_mac(pf.get('cycles'), macs)} | {up} |")
    return md


def kernels_markdown(rows: list[dict]) -> list[str]:
    md = ["| run | kernels | cycles/invoke, two cores | us | cycles/MAC | cycles/invoke, one core | us | two-core speed-up "
          "| arena used B | stack peak core 0 B | core 1 stack peak B | RAM total B | flash B | golden exact "
          "| test split bit-exact | test top-1 acc |", "|" + "---|" * 16]
    for r in rows:
        core1 = f"{r['core1_stack_peak']:,}" if r.get("core1_stack_peak") else "-"
        one = f"{r['one_core_cycles']:,} | {r['one_core_us']:,} | {r['two_core_speedup']:.2f}x" \
            if r.get("two_core_speedup") else "- | - | -"
        md.append(f"| {r['run']} | {r['kernels']} | {r['cycles']:,} | {r['us']:,} | {r['cycles_per_mac']} | {one} | "
                  f"{r['arena_used']:,} | {r['stack_peak']:,} | {core1} | {r['ram_total']:,} | {r['flash']:,} | "
                  f"{r['golden']} | {r['test_split_exact']} | {r['test_split_top1']:.4f} |")
    md.append("\nThe board image on the emulated Pico: two cores in lockstep without bus contention, 125 MHz, no "
              "flash wait states (a two-core speed-up here is an upper bound for a Pico). One core: the same "
              "image after `cores 1`.")
    ops = sorted({op for r in rows for op in r["per_op_cycles"]})
    if ops:
        md += ["", "Cycles per op (`profile`):", "", "| run | kernels | " + " | ".join(ops) + " |",
               "|" + "---|" * (len(ops) + 2)]
        md += [f"| {r['run']} | {r['kernels']} | " + " | ".join(f"{r['per_op_cycles'].get(op, 0):,}" for op in ops)
               + " |" for r in rows]
    md += per_op_markdown(rows)
    by = {(r["run"], r["kernels"]): r for r in rows}
    for run in dict.fromkeys(r["run"] for r in rows):
        a, b = by.get((run, "stock")), by.get((run, "picotflm"))
        if a and b and b["cycles"]:
            md.append(f"\n- {run}: picotflm kernels **{a['cycles'] / b['cycles']:.2f}x** faster than stock "
                      f"({a['cycles']:,} -> {b['cycles']:,} cycles)")
    return md


def flatbuffer_payload_markdown(runs: Path, recipes: list[str]) -> list[str]:
    """One line per recipe: "flatbuffer B vs payload B = ratio x" of its flashed (slimmed) model."""
    from pipeline.tflite.reader import SLIM_GOAL_RATIO, payload_line

    md = []
    for r in recipes:
        p = _payload(runs, r)
        md.append(f"- {r}: {payload_line(p)} (goal <= {SLIM_GOAL_RATIO}x; payload = constant data + scales + "
                  f"zero points, `convert.payload_bytes`)" if p else f"- {r}: flatbuffer vs payload: no model.tflite")
    return [""] + md if md else []


def recipe_rows(runs: Path, recipes: list[str], times: dict[str, float] | None = None) -> list[dict]:
    """One row per recipe run in ``runs``: its .tflite, host TFLM and board figures (``times``: wall s)."""
    times = times or {}
    rows = []
    for r in recipes:
        conv, ver, meas = _metrics(runs, r, "convert"), _metrics(runs, r, "verify"), _metrics(runs, r, "measure")
        rend = _metrics(runs, r, "render")
        bench = meas.get("bench") or {}
        mem = meas.get("mem") or {}
        golden = meas.get("golden") or {}
        pay = _payload(runs, r)
        rows.append({
            "recipe": r, "seconds": round(times[r], 1) if r in times else None, "tflite_bytes": conv.get("tflite_bytes"),
            "weight_bytes": conv.get("weight_bytes"), "device_model_bytes": rend.get("device_model_bytes"),
            "device_weight_bytes": rend.get("device_weight_bytes"), "payload_bytes": pay.get("payload_bytes"),
            "flatbuffer_vs_payload": pay.get("ratio"), "weights": "/".join(conv.get("weight_dtypes") or []),
            "tflm_test_accuracy": round(ver["tflm_test_accuracy"], 4) if ver.get("tflm_test_accuracy") is not None else None,
            "tflm_test_split_seconds": round(ver.get("host_test_split_seconds", 0), 3),
            "board_median_us": bench.get("median_us"), "board_median_cycles": bench.get("median_cycles"),
            "cycles_per_mac": meas.get("cycles_per_mac"), "board_arena_used": mem.get("arena_used"),
            "board_ram_total": meas.get("ram_total_bytes"),
            "golden_exact": f"{golden.get('exact')}/{golden.get('count')}" if golden else None,
            "measured_on": meas.get("where") or meas.get("source_label"),
            "one_core_us": (meas.get("bench_one_core") or {}).get("median_us"),
            "two_core_speedup": meas.get("two_core_speedup"),
        })
    return rows


def bench_recipes(runs_dir: Path, recipes: list[str], *, soak_exchanges: int = 10_000, kernel_frames: int | None = None) -> dict:
    """Run the recipe benchmark; write ``<runs_dir>/bench/bench.md`` and ``bench.csv``; return
    ``{"text", "rows", "runs"}`` (the Markdown, one row per recipe, the fresh runs directory)."""
    args = SimpleNamespace(runs_dir=runs_dir, recipes=list(recipes), soak=soak_exchanges, kernel_frames=kernel_frames)
    out = Path(args.runs_dir) / "bench"
    runs = out / f"runs-{time.strftime('%Y%m%d-%H%M%S')}"
    runs.mkdir(parents=True, exist_ok=True)

    print(f"bench: all recipes into a fresh {runs} ...", file=sys.stderr)
    t_all = time.perf_counter()
    times = {r: _run(r, runs) for r in args.recipes}
    total = time.perf_counter() - t_all
    t0 = time.perf_counter()
    for r in args.recipes:
        _run(r, runs)
    rerun = time.perf_counter() - t0

    rows = recipe_rows(runs, args.recipes, times)
    md = ["# picotflm benchmarks", "", f"Machine: {sys.platform}, Python {sys.version.split()[0]}. "
          f"Fresh runs directory `{runs}`.", "",
          f"- all {len(args.recipes)} recipes end to end: **{total:.1f} s** (stage cache shared between recipes)",
          f"- re-run with nothing changed: **{rerun:.1f} s**", ""]
    cols = list(rows[0])
    md += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join("" if v is None else str(v) for v in row.values()) + " |" for row in rows]
    by = {row["recipe"]: row for row in rows}
    if "int8" in by and "int4" in by and by["int8"]["weight_bytes"] and by["int4"]["weight_bytes"]:
        ratio = by["int4"]["weight_bytes"] / by["int8"]["weight_bytes"]
        loss = 100 * ((by["int8"]["tflm_test_accuracy"] or 0) - (by["int4"]["tflm_test_accuracy"] or 0))
        md += ["", f"- INT4 weight bytes / int8 weight bytes: **{ratio:.3f}**; accuracy change int8 -> int4: "
               f"**{-loss:+.2f} points** (host TFLM, test split)"]
    md += flatbuffer_payload_markdown(runs, [r for r in ("int8", "int4") if r in by])
    if args.kernel_frames != 0:
        krows = [row for r in ("int8", "int4") if (runs / r / "firmware").is_dir()
                 for row in kernels_compare(runs / r, args.kernel_frames)]
        if krows:
            md += ["", "## Kernels: pico-tflmicro stock vs picotflm (the board image on the emulated Pico, 125 MHz)", ""]
            md += kernels_markdown(krows)
    elf = runs / "int8" / "firmware.elf"
    if args.kernel_frames != 0 and elf.is_file():
        from pipeline.analysis.cycles import (by_instruction_class, cycles_markdown, disassembly,
                                              instructions_markdown, is_link, profile_invoke, text_symbols)
        from pipeline.stages.build import find_toolchain

        gcc = Path(find_toolchain().gcc)
        nm, objdump = str(gcc.with_name("arm-none-eabi-nm")), str(gcc.with_name("arm-none-eabi-objdump"))
        print("bench: where int8's cycles go on one core ...", file=sys.stderr)
        md += ["", "## Where the cycles go: int8 on one core, by function", "",
               "Each instruction's cycles summed by address on the emulated Pico (board image, "
               "`tools/emulator/profile.mjs`), mapped to the ELF's functions (`pipeline/analysis/cycles.py`).", ""]
        prof = profile_invoke(elf, nm, cores=1, runs=4)
        md += cycles_markdown(prof)
        top = [r["function"] for r in prof["rows"] if r["core"] == 0 and not is_link(r["function"])][:6]
        md += ["", "### The same profile by instruction, in the six functions that take the most", "",
               "Each function's cycles by what its instructions do (`objdump`'s disassembly of the ELF): a "
               "multiply-accumulate needs one `muls` (1 cycle), so cycles per multiply is what a MAC costs there "
               "with everything around it, requantization's multiplies counted with the MACs'. On the "
               "Cortex-M0+ a load takes 2 cycles, a taken branch 2, the rest 1.", ""]
        md += instructions_markdown(by_instruction_class(prof["pcs"], text_symbols(elf, nm),
                                                         disassembly(elf, objdump), top))
    if args.soak and elf.is_file():
        print(f"bench: serial soak, {args.soak} exchanges ...", file=sys.stderr)
        s = soak(elf, args.soak)
        md += ["", f"- serial soak with the emulated Pico: **{s['exchanges']:,} exchanges, {s['errors']} errors**, "
               f"{s['exchanges_per_second']} exchanges/s ({s['seconds']} s); link: {s['link']}"]
    elif args.soak:
        md += ["", "- serial soak: not run (no firmware.elf: the firmware stages did not run here)"]
    text = "\n".join(md) + "\n"
    from pipeline.flow.rundir import atomic_write_text

    atomic_write_text(out / "bench.md", text)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "bench.csv", buf.getvalue())
    return {"text": text, "rows": rows, "runs": runs}
