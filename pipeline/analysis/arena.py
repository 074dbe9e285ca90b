"""Arena tuning: the smallest tensor arena that really works on the board, and a recommendation.

``arena_used_bytes()`` after AllocateTensors can miss what Invoke needs, and the host's 64-bit
figure is not the RP2040's. So the board itself is asked: ``arena N`` re-runs its setup with an N-byte
limit inside the compiled buffer, then invokes every golden input; the smallest N at which
allocation, invoke *and* the golden check all pass is the device minimum (found by bisection on
16-byte steps, then checked again at the boundary: N passes, N - 16 fails).

:func:`apply_arena` rebuilds a run with a chosen arena in a trial copy of the run, measures it and
checks the golden outputs there; only a confirmed trial replaces the run's firmware, manifest and
report. A trial that fails leaves the run as it was.
"""
from __future__ import annotations

import math
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from pipeline.board.targets import RP2040
from pipeline.errors import PipelineError, SerialLinkError

ALIGN = 16
MAX_MARGIN_PERCENT = 400
MAX_MARGIN_BYTES = 128 * 1024
RP2040_RAM = RP2040.ram_bytes
TRIAL_DIR = ".arena-trial"  # under the runs directory; the trial copy of a run lives here while --apply runs

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _align_up(n: float) -> int:
    return int(math.ceil(n / ALIGN) * ALIGN)


def check_margin(margin_percent: float, margin_bytes: int) -> None:
    if not (0 <= margin_percent <= MAX_MARGIN_PERCENT) or not (0 <= margin_bytes <= MAX_MARGIN_BYTES):
        raise PipelineError(
            f"arena margin {margin_percent} % + {margin_bytes} B is not allowed",
            hint=f"use a margin of 0-{MAX_MARGIN_PERCENT} % and 0-{MAX_MARGIN_BYTES} bytes",
        )


def check_arena_request(name: str, nbytes: int | None) -> None:
    """An arena size asked for on the command line (``--max-bytes``, ``--arena-bytes``)."""
    if nbytes is None:
        return
    if not (ALIGN <= nbytes <= RP2040_RAM) or nbytes % ALIGN:
        raise PipelineError(f"{name} {nbytes} is not allowed",
                            hint=f"give a multiple of {ALIGN} between {ALIGN} and {RP2040_RAM} (the RP2040's 264 KB)")


def recommend(device_min: int, margin_percent: float, margin_bytes: int) -> int:
    check_margin(margin_percent, margin_bytes)
    return _align_up(device_min * (1 + margin_percent / 100.0) + margin_bytes)


# ------------------------------------------------------------------------------- the sweep
def bisect_minimum(works: Callable[[int], bool], top: int) -> int:
    """The smallest multiple of 16 in (0, top] for which ``works`` is true, given that ``works(top)``
    is (and that it is monotonic: more bytes never hurt)."""
    lo, hi = 0, top  # lo fails (or is below anything tried), hi works
    while hi - lo > ALIGN:
        mid = (lo + hi) // 2
        mid -= mid % ALIGN
        if mid <= lo:
            break
        if works(mid):
            hi = mid
        else:
            lo = mid
    return hi


_MISSING = re.compile(r"missing:\s*(\d+)")
_NODE = re.compile(r"Node (\S+) \(number (\d+)[a-z]*\) failed to (prepare|invoke)")


def explain_setup_error(text: str) -> dict[str, Any]:
    """What the firmware's setup error (TFLM's own first message) says: bytes missing, failing op."""
    out: dict[str, Any] = {"setup_error": text}
    m = _MISSING.search(text or "")
    if m:
        out["missing_bytes"] = int(m.group(1))
    m = _NODE.search(text or "")
    if m:
        out["failing_op"], out["failing_op_index"], out["failing_phase"] = m.group(1), int(m.group(2)), m.group(3)
    return out


def _rebuild_error(limit: int, compiled: int, board_msg: str = "") -> PipelineError:
    return PipelineError(
        f"an arena of {limit:,} B was asked for, but the firmware was compiled with {compiled:,} B"
        + (f" (the board says: {board_msg})" if board_msg else "") + ": the arena buffer is static, so a larger "
        "arena needs a rebuild",
        hint=f"rebuild with a larger arena: `picotflm build RUN --set render.arena_bytes={_align_up(limit)}`, "
             "then run `picotflm arena` again")


def find_device_minimum(port: str, *, expect_hash: str | None, max_bytes: int | None = None, log: Log = _quiet,
                        step_timeout: float = 30.0, client_factory: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Bisect the arena limit on the board; return the figures of the search.

    ``max_bytes``: the largest limit to try (default: the compiled size; more needs a rebuild). A
    board that stops answering in the middle (reset, unplugged) gets its request again and, if it
    comes back, the sweep goes on: every step sets the limit itself, so nothing from before the reset
    is relied on, and the result is checked again at the end. A board that does not come back ends
    the sweep with an error; nothing is written then."""
    if client_factory is None:
        from pipeline.board.client import BoardClient as client_factory

    t0 = time.perf_counter()
    steps: list[dict[str, Any]] = []
    with client_factory(port, timeout=10.0) as board:
        info = board.handshake(expect_hash, require_ready=False)
        compiled = int(info["arena_size"])
        top = compiled if max_bytes is None else int(max_bytes)
        if top > compiled:
            raise _rebuild_error(top, compiled)
        top -= top % ALIGN

        # Each step sets the board up again and runs every golden input: a large model's step takes as
        # long as its invokes (person detection on the emulated Pico: ~20 s). The first step may take
        # four times step_timeout; the others three times what it took, at least step_timeout.
        wait = {"s": 4.0 * step_timeout}

        def step(limit: int) -> dict[str, Any]:
            t_step = time.perf_counter()
            try:
                r = board.request("arena", limit, timeout=wait["s"], raise_on_error=False)
            except SerialLinkError as e:
                done = ", ".join(f"{s['arena_limit']}:{'ok' if s['ok'] else 'fail'}" for s in steps[-4:])
                raise PipelineError(
                    f"the board stopped answering during the arena sweep, at a {limit:,}-byte limit "
                    f"after {len(steps)} steps ({done or 'none'}): {e.message}; nothing was written",
                    hint="the board reset or was unplugged: check the cable and power, then run "
                         "`picotflm arena` again (it starts over)") from e
            if not r.ok and r.err == "range":
                raise _rebuild_error(limit, compiled, r.msg or "")
            if not r.ok and r.err not in ("alloc", "setup"):
                raise PipelineError(f"the board answered 'arena {limit}' with error {r.err}: {r.msg}",
                                    hint="flash firmware built by this picotflm")
            if not steps:
                wait["s"] = max(step_timeout, 3.0 * (time.perf_counter() - t_step))
            alloc = bool(r.ok and r.get("alloc_ok"))
            s = {"arena_limit": limit, "alloc_ok": alloc, "arena_used": int(r.get("arena_used") or 0) if r.ok else 0,
                 "invoke_ok": bool(r.ok and r.get("invoke_ok")), "golden_exact": bool(r.ok and r.get("golden_exact"))}
            s["ok"] = s["alloc_ok"] and s["invoke_ok"] and s["golden_exact"]
            if not r.ok:
                s["board_error"] = r.msg
            steps.append(s)
            log(f"arena {limit:,} B: " + ("ok" if s["ok"] else "allocation fails" if not alloc else
                                          "invoke fails" if not s["invoke_ok"] else "golden outputs differ"))
            return s

        try:
            first = step(top)
            if not first["ok"]:
                raise _fails_at_max(board, first, top, compiled)
            used_at_full = first["arena_used"]
            device_min = bisect_minimum(lambda n: step(n)["ok"], top)
            # The boundary once more: a board that reset or misbehaved mid-sweep shows up here.
            again = step(device_min)
            below = step(device_min - ALIGN) if device_min > ALIGN else None
            if not again["ok"] or (below is not None and below["ok"]):
                raise PipelineError(
                    f"the arena sweep did not repeat: {device_min:,} B "
                    + ("failed" if not again["ok"] else f"passed but so did {device_min - ALIGN:,} B")
                    + " on the second try; nothing was written",
                    hint="the board is not deterministic (reset, brown-out, another program on the port?): run again")
        finally:
            try:
                board.request("arena", 0, timeout=wait["s"], raise_on_error=False)
            except PipelineError:
                pass  # the board is gone: the error that got us here says so
        link = board.stats.as_dict() if hasattr(board, "stats") else {}
    used_at_min = again["arena_used"]
    return {
        "compiled_arena_bytes": compiled,
        "max_bytes_tried": top,
        "device_min_bytes": device_min,
        "arena_used_bytes": used_at_full,
        "arena_used_at_min_bytes": used_at_min,
        "scratch_gap_bytes": device_min - used_at_full,
        "steps": len(steps),
        "sweep_seconds": round(time.perf_counter() - t0, 2),
        "link_retries": link.get("retries", 0),
        "image": info.get("image"),
        "step_log": steps,
    }


def _fails_at_max(board, step: dict[str, Any], top: int, compiled: int) -> PipelineError:
    """Why the model does not run at the largest limit: TFLM's own reason from the board's setup error."""
    why: dict[str, Any] = {}
    if not step["alloc_ok"]:
        try:
            info = board.request("info", raise_on_error=False)
            why = explain_setup_error(str(info.get("setup_error") or step.get("board_error") or ""))
        except PipelineError:
            why = explain_setup_error(step.get("board_error") or "")
    what = ("allocation fails" if not step["alloc_ok"] else "invoke fails" if not step["invoke_ok"]
            else "the golden outputs differ from host TFLM")
    detail = []
    if why.get("failing_op"):
        detail.append(f"op {why['failing_op_index']} ({why['failing_op']}) fails to {why['failing_phase']}")
    if why.get("missing_bytes") is not None:
        detail.append(f"{why['missing_bytes']:,} B missing")
    if why.get("setup_error") and not detail:
        detail.append(f"the board says: {why['setup_error']}")
    need = top + why.get("missing_bytes", 0)
    at = "its compiled" if top == compiled else "a"
    err = PipelineError(
        f"the model does not run even with {at} {top:,}-byte arena: {what}" + (f" ({'; '.join(detail)})" if detail else ""),
        hint=(f"rebuild with at least {_align_up(need):,} B: `picotflm build RUN --set render.arena_bytes="
              f"{_align_up(need * 1.1)}`" if why.get("missing_bytes") else
              "rebuild with a larger arena (render.arena_bytes)" if step["alloc_ok"] is False else
              "the board computes other outputs than host TFLM: check `picotflm measure` (golden)"))
    err.details = {**why, "arena_limit": top}  # type: ignore[attr-defined]
    return err


# -------------------------------------------------------------------------- apply, confirmed
def apply_arena(run, arena_bytes: int, *, options=None, log: Log = _quiet,
                confirm: Callable[[dict[str, Any]], str | None] | None = None) -> dict[str, Any]:
    """Rebuild ``run`` with an ``arena_bytes`` arena and make it the run's firmware only when confirmed.

    The run is copied to ``<runs>/.arena-trial/<run>``; there the recipe (as recorded in the run's
    manifest, with ``render.arena_bytes`` set) is re-rendered, rebuilt and re-measured. Confirmed
    means: render, build and measure all done, the board reports the new arena size, and every
    golden output is bit-exact with host TFLM (and ``confirm``, a test hook, has no objection).
    Then the trial's firmware, measurement and manifest replace the run's; otherwise the run is left
    as it was and :class:`PipelineError` says why. The trial copy is removed either way."""
    from pipeline.flow.rundir import RunDir
    from pipeline.flow.recipe import recipe_of_run
    from pipeline.flow.runner import RunOptions, run_recipe

    manifest = run.read_manifest()
    stages = manifest.get("stages") or {}
    build = (stages.get("build") or {}).get("metrics") or {}
    if (stages.get("build") or {}).get("status") not in ("done", "up to date") or not build:
        raise PipelineError(f"run {run.name} has no firmware image to re-arena", hint="run `picotflm build` first")
    if options and options.port:
        raise PipelineError("--apply confirms the new arena on the emulated Pico, which runs the rebuilt image; "
                            "a Pico on a port still runs the old one",
                            hint="leave out --port to apply, then `picotflm flash RUN` puts the new image on the Pico")
    recipe = recipe_of_run(manifest, {"render": {"arena_bytes": int(arena_bytes)}},
                           name=(manifest.get("recipe") or {}).get("name", run.name))
    if "measure" not in recipe.stages:
        raise PipelineError(f"recipe {recipe.name} has no 'measure' stage: a new arena cannot be confirmed",
                            hint="add 'measure' to the recipe's stages")

    trial_root = run.root.parent / TRIAL_DIR / run.name
    if trial_root.exists():
        shutil.rmtree(trial_root)
    trial_root.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(run.root, trial_root, ignore=shutil.ignore_patterns("*.tmp", "*.partial"))
    trial = RunDir(root=trial_root, name=run.name)
    opts = options or RunOptions(progress=False)
    opts = RunOptions(progress=opts.progress, force=False, rerun=("measure",), port=opts.port,
                      emulator=opts.emulator, extra=dict(opts.extra))
    before = build.get("static_ram_bytes")
    t0 = time.perf_counter()
    try:
        try:
            summary = run_recipe(recipe, trial, opts, log=log, until="measure", write_report=False)
        except PipelineError as e:
            raise PipelineError(f"the rebuild with a {arena_bytes:,}-byte arena failed: {e.message}; the run "
                                f"{run.name} is unchanged",
                                hint="use a larger margin (--margin-percent, --margin-bytes) or --arena-bytes: the "
                                     "device minimum is in the run's arena.json" if "setup" in e.message
                                else e.hint) from e
        st = summary.manifest.get("stages") or {}
        reason = _unconfirmed(st, arena_bytes)
        if reason is None and confirm is not None:
            reason = confirm(summary.manifest)
        if reason is not None:
            raise PipelineError(f"a {arena_bytes:,}-byte arena was not confirmed: {reason}; the run {run.name} is "
                                "unchanged (its firmware and config are the previous ones)",
                                hint="use a larger margin (--margin-percent, --margin-bytes) or a larger --arena-bytes")
        _adopt(trial, run, st)
    finally:
        shutil.rmtree(trial_root, ignore_errors=True)
        try:
            trial_root.parent.rmdir()  # only when no other trial is under way
        except OSError:
            pass
    after = st["build"]["metrics"]["static_ram_bytes"]
    golden = st["measure"]["metrics"]["golden"]
    return {"confirmed": True, "arena_bytes": int(arena_bytes), "static_ram_before": before,
            "static_ram_after": after, "ram_saved_bytes": (before - after) if before is not None else None,
            "golden": f"{golden['exact']}/{golden['count']}", "where": st["measure"]["metrics"].get("where"),
            "flash_bytes_after": st["build"]["metrics"].get("flash_bytes"),
            "arena_used_after": (st["measure"]["metrics"].get("mem") or {}).get("arena_used"),
            "seconds": round(time.perf_counter() - t0, 1)}


def _unconfirmed(st: dict[str, Any], arena_bytes: int) -> str | None:
    """Why a trial does not confirm ``arena_bytes`` (None: it does)."""
    for name in ("render", "build", "measure"):
        e = st.get(name) or {}
        if e.get("status") not in ("done", "up to date"):
            return f"the {name} stage is {e.get('status', 'not run')}" + (f": {e['reason']}" if e.get("reason") else "")
    m = st["measure"]["metrics"]
    mem, golden = m.get("mem") or {}, m.get("golden") or {}
    if (st["render"].get("metrics") or {}).get("arena_bytes") != arena_bytes:
        return f"the render stage chose {st['render']['metrics'].get('arena_bytes')} B, not {arena_bytes} B"
    if mem.get("arena_size") != arena_bytes:
        return f"the board reports a {mem.get('arena_size')}-byte arena, not {arena_bytes} B (another firmware?)"
    status = (m.get("info") or {}).get("status")
    if status not in (None, "ready"):
        return f"the board's setup failed: {(m.get('info') or {}).get('setup_error') or status}"
    if not golden or not golden.get("count") or golden.get("exact") != golden.get("count"):
        return f"golden outputs {golden.get('exact', 0)}/{golden.get('count', 0)} bit-exact"
    return None


def _adopt(trial, run, stages: dict[str, Any]) -> None:
    """Move a confirmed trial's rendered sources, image, measurement and manifest into the run.
    The manifest goes last: until then the run's manifest describes its old files."""
    from pipeline.flow.rundir import atomic_write_bytes
    from pipeline.flow.table import STAGE_BY_NAME

    names: list[str] = []
    for stage in ("render", "build", "measure"):
        names += [n for n in STAGE_BY_NAME[stage].outputs if n not in names]
    for name in names:
        src, dst = trial.path(name), run.path(name)
        if src.is_dir():
            new, old = dst.with_name(dst.name + ".new"), dst.with_name(dst.name + ".old")
            for p in (new, old):
                shutil.rmtree(p, ignore_errors=True)
            shutil.copytree(src, new)
            if dst.exists():
                dst.rename(old)
            new.rename(dst)
            shutil.rmtree(old, ignore_errors=True)
        elif src.is_file():
            atomic_write_bytes(dst, src.read_bytes())
    atomic_write_bytes(run.manifest_path, trial.manifest_path.read_bytes())


def host_figures(run) -> dict[str, Any]:
    """What the host knows about the run's arena: the 64-bit minimum, TFLM's allocation print-out and
    the layout read from the flatbuffer (peak live activations)."""
    from pipeline.codegen.layout import arena_layout

    verify = ((run.read_manifest().get("stages") or {}).get("verify") or {}).get("metrics") or {}
    layout = arena_layout(run.path("model.tflite").read_bytes())
    return {"host_min_bytes_64bit": verify.get("host_arena_min_bytes"),
            "host_allocations": verify.get("host_arena_allocations"), "layout": layout}


def in_place_peak(tflite: bytes, layout: dict[str, Any]) -> dict[str, Any]:
    """The live peak when picotflm's kernels run the in-place plan (pipeline/codegen/memplan.py): the
    most bytes the buffers alive during one operator cover, an in-place operator's input, padded copy
    and output overlapping, the padded copies counted (they are in the arena too); and the planned
    area the plan's layout needs. Empty without a plan. (The firmware reports whether it applied the
    plan: ``info`` plan_matched.)"""
    from pipeline.codegen.memplan import inplace_plan

    plan = inplace_plan(tflite)
    if plan is None:
        return {}
    ops = layout["ops"]
    op = ops[plan.live_peak_op]["op"] if 0 <= plan.live_peak_op < len(ops) else None
    return {"peak_live_in_place_bytes": plan.live_peak_bytes, "peak_in_place_op_index": plan.live_peak_op,
            "peak_in_place_op": op, "planned_head_in_place_bytes": plan.head_bytes,
            "in_place_ops": [o.op_index for o in plan.ops]}


def tune(run, port: str, where: str, *, expect_hash: str, margin_percent: float, margin_bytes: int,
         max_bytes: int | None = None, log: Log = _quiet) -> dict[str, Any]:
    """Sweep, compare with the host figures, recommend: the content of ``arena.json``."""
    check_margin(margin_percent, margin_bytes)
    found = find_device_minimum(port, expect_hash=expect_hash, max_bytes=max_bytes, log=log)
    host = host_figures(run)
    layout = host["layout"]
    peak = layout["peak_live_bytes"]
    rec = recommend(found["device_min_bytes"], margin_percent, margin_bytes)
    in_place = in_place_peak(run.path("model.tflite").read_bytes(), layout)
    return {
        "where": where,
        **{k: v for k, v in found.items() if k != "step_log"},
        "host_min_bytes_64bit": host["host_min_bytes_64bit"],
        "host_allocations": host["host_allocations"],
        "peak_live_activations_bytes": peak,
        "peak_op_index": layout["peak_op_index"],
        "peak_op": layout["peak_op"],
        "device_min_over_peak_live": round(found["device_min_bytes"] / peak, 4) if peak else None,
        **in_place,
        **({"device_min_over_peak_live_in_place": round(found["device_min_bytes"] / in_place["peak_live_in_place_bytes"], 4)}
           if in_place else {}),
        "margin_percent": margin_percent,
        "margin_bytes": margin_bytes,
        "recommended_bytes": rec,
        "saved_vs_compiled_bytes": found["compiled_arena_bytes"] - rec,
        "layout": layout,
        "step_log": found["step_log"],
    }


def applied_arena_bytes(path: str | Path) -> int | None:
    """The arena size ``arena --apply`` confirmed for a run (its ``arena.json``), or None when there is
    none. For ``make firmware`` / ``make flash``, which give the board image the same arena. An
    unreadable file is a one-line note on stderr and None: the board image keeps the rendered arena."""
    import json
    import sys

    p = Path(path)
    if not p.is_file():
        return None
    try:
        applied = json.loads(p.read_text()).get("applied") or {}
        return int(applied["arena_bytes"]) if applied.get("confirmed") else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        print(f"note: {p} is unreadable ({type(e).__name__}): the board image keeps the rendered arena; "
              "run make arena again", file=sys.stderr)
        return None


def tune_run(run, image: str, *, port: str | None, margin_percent: float, margin_bytes: int,
             max_bytes: int | None = None, log: Log = _quiet) -> dict[str, Any]:
    """Tune the arena of ``run``'s firmware on the board (``port``) or the emulated Pico; write and
    return ``arena.json``'s content."""
    import time

    from pipeline.board.connect import board_port
    from pipeline.flow.rundir import atomic_write_json
    from pipeline.tflite.reader import inspect_tflite

    data = run.path("model.tflite").read_bytes()
    t0 = time.perf_counter()
    with board_port(run.path("firmware.elf"), port, image) as (port_name, where):
        result = tune(run, port_name, where, expect_hash=inspect_tflite(data).sha256[:16],
                      margin_percent=margin_percent, margin_bytes=margin_bytes, max_bytes=max_bytes, log=log)
    result["wall_seconds_with_board_start"] = round(time.perf_counter() - t0, 2)
    atomic_write_json(run.path("arena.json"), result)
    return result


def apply_tuned(run, result: dict[str, Any], arena_bytes: int | None = None, *, options=None,
                log: Log = _quiet) -> dict[str, Any]:
    """Apply ``arena_bytes`` (default: the recommendation in ``result``) to ``run`` with
    :func:`apply_arena` and record the outcome in ``arena.json``, confirmed or not (a failure is
    recorded, then raised)."""
    from pipeline.flow.rundir import atomic_write_json

    size = arena_bytes or result["recommended_bytes"]
    try:
        result["applied"] = apply_arena(run, size, options=options, log=log)
    except PipelineError as e:
        result["applied"] = {"confirmed": False, "arena_bytes": size, "reason": e.message}
        raise
    finally:
        atomic_write_json(run.path("arena.json"), result)
    return result["applied"]


def arena_figures(run) -> dict[str, Any]:
    """A run's arena against its live activations, for the benchmark: the arena applied (``arena
    --apply``) and the device minimum (``arena.json``), the peak of live activations under picotflm's
    in-place plan and under TFLM's own planning (from the flatbuffer), what the minimum holds beyond
    the in-place peak (TFLM's structures, op data, scratch and the head's fragmentation), host TFLM's
    allocation list (64-bit, reference kernels) and the RAM total the board reported. Figures a run
    lacks are None; a run with no ``arena.json`` is an error."""
    import json

    from pipeline.codegen.layout import arena_layout

    path = run.path("arena.json")
    if not path.is_file():
        raise PipelineError(f"run {run.name} has no arena.json", hint=f"run `picotflm arena {run.name}` first")
    tuned = json.loads(path.read_text())
    data = run.path("model.tflite").read_bytes()
    layout = arena_layout(data)
    manifest = run.read_manifest()
    build = ((manifest.get("stages") or {}).get("build") or {}).get("metrics") or {}
    configs = (manifest.get("recipe") or {}).get("configs") or {}
    kernels = (configs.get("build") or {}).get("kernels")
    ours = kernels != "stock"  # pico-tflmicro's kernels run TFLM's own plan: no in-place figures
    in_place = in_place_peak(data, layout) if ours else {}
    peak = layout["peak_live_bytes"]
    peak_in_place = in_place.get("peak_live_in_place_bytes", peak) if ours else None
    device_min = tuned.get("device_min_bytes")
    applied = tuned.get("applied") or {}
    measured = run.path("measured.json")
    mem = json.loads(measured.read_text()).get("mem") or {} if measured.is_file() else {}
    host = tuned.get("host_allocations") or {}

    def ratio(a: int | None, b: int | None) -> float | None:
        return round(a / b, 3) if a and b else None

    return {
        "run": run.name,
        "where": tuned.get("where"),
        "kernels": kernels,
        "device_min_bytes": device_min,
        "applied_arena_bytes": applied.get("arena_bytes") if applied.get("confirmed") else None,
        "arena_used_bytes": tuned.get("arena_used_bytes"),
        "peak_live_bytes": peak,
        "peak_live_in_place_bytes": peak_in_place,
        "in_place_op": in_place.get("peak_in_place_op"),
        "in_place_ops": in_place.get("in_place_ops"),
        "planned_head_in_place_bytes": in_place.get("planned_head_in_place_bytes"),
        "beyond_in_place_peak_bytes": device_min - peak_in_place if device_min and peak_in_place else None,
        "device_min_over_peak_live": ratio(device_min, peak),
        "device_min_over_in_place_peak": ratio(device_min, peak_in_place),
        "host_total_bytes_64bit": host.get("total_bytes"),
        "host_head_bytes_64bit": host.get("head_bytes"),
        "host_tail_bytes_64bit": host.get("tail_bytes"),
        "host_tail": host.get("kinds") or [],
        "ram_total_bytes": mem.get("ram_total") or build.get("static_ram_bytes"),
        "ram_total_from": "board (measure)" if mem.get("ram_total") else "image (static RAM)" if build else None,
    }
