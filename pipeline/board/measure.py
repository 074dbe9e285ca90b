"""Read back what the board measures: ``measure(port, ...) -> dict`` (JSON-able, ``measured.json``).

Every figure is kept as the board reported it (under ``info``, ``mem``, ``bench``, ``profile``,
``golden``); the figures derived here (RAM share, cycles per MAC, golden rates, per-op
shares) sit at the top level next to them. Whether the board is real or emulated is what its own
``info`` says (``image``), nothing else.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from pipeline.board.client import BoardClient, BoardError
from pipeline.board.protocol import PROTOCOL_VERSION, Reply
from pipeline.board.targets import RP2040
from pipeline.errors import PipelineError

RP2040_RAM_BYTES = RP2040.ram_bytes
BENCH_MAX_RUNS = 1000  # the firmware's limit for `bench <n>`

# Fields docs/protocol.md promises per reply; any missing one is listed in `protocol_gaps`.
EXPECTED_FIELDS: dict[str, tuple[str, ...]] = {
    "info": ("proto", "fw", "model", "hash", "image", "board", "clock_hz", "cores", "arena_size", "arena_limit",
             "input_bytes", "output_bytes", "golden_count", "status", "setup_error"),
    "mem": ("arena_size", "arena_limit", "arena_used", "data_bytes", "bss_bytes", "heap_used", "stack_size",
            "stack_peak", "ram_total", "ram_size"),
    "bench": ("runs", "min_us", "median_us", "max_us", "min_cycles", "median_cycles", "max_cycles", "clock_hz"),
    "profile": ("ops", "total_cycles"),
    "golden": ("count", "exact", "max_diff", "top1_agree", "outputs"),
    "arena": ("arena_limit", "alloc_ok", "arena_used", "invoke_ok", "golden_exact"),
}


def source_label(info: dict[str, Any]) -> str:
    """How the report names where the figures come from, from the board's own ``info``."""
    clock = info.get("clock_hz")
    mhz = f"{clock / 1e6:g} MHz" if isinstance(clock, (int, float)) and clock else "clock unknown"
    cores = info.get("cores")
    core_text = "single core" if cores == 1 else (f"{cores} cores" if cores else "cores unknown")
    if info.get("image") == "emulator":
        return f"emulator image ({core_text}, {mhz}, UART)"
    if info.get("image") == "board":
        return f"board image ({info.get('board', 'pico')}, {core_text}, {mhz}, USB CDC)"
    return f"unknown image {info.get('image')!r} ({core_text}, {mhz})"


def _num(d: dict[str, Any], key: str) -> float | None:
    v = d.get(key)
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _ratio(a: float | None, b: float | None, digits: int = 4) -> float | None:
    if a is None or not b:
        return None
    return round(a / b, digits)


def _gaps(cmd: str, reply: Reply) -> list[str]:
    return [k for k in EXPECTED_FIELDS.get(cmd, ()) if k not in reply.payload]


def _profile_by_op(ops: Any) -> dict[str, dict[str, Any]]:
    """Per operator type: invocations, cycles, us and share of the summed cycles."""
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(ops, list):
        return out
    total = sum(o.get("cycles", 0) for o in ops if isinstance(o, dict) and isinstance(o.get("cycles"), (int, float)))
    for o in ops:
        if not isinstance(o, dict):
            continue
        e = out.setdefault(str(o.get("op", "?")), {"count": 0, "cycles": 0, "us": 0})
        e["count"] += 1
        e["cycles"] += o.get("cycles", 0) if isinstance(o.get("cycles"), (int, float)) else 0
        e["us"] += o.get("us", 0) if isinstance(o.get("us"), (int, float)) else 0
    for e in out.values():
        e["percent"] = round(100.0 * e["cycles"] / total, 2) if total else None
    return out


def _transfer_s(nbytes: int, baudrate: int) -> float:
    return nbytes * 10.0 / baudrate  # 8N1: 10 bit times per byte


def measure(port: str, *, expect_hash: str | None, bench_runs: int = 10, frames: Sequence[bytes] = (),
            macs: int | None = None, timeout: float = 10.0, invoke_timeout: float = 30.0, baudrate: int = 115200,
            handshake_attempts: int = 30, handshake_interval: float = 0.3,
            log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Handshake, then ``profile``, ``bench <bench_runs>``, ``golden``, ``load``/``infer`` of each
    frame (raw input-tensor bytes, in order), and ``mem`` last: ``stack_peak`` is a high-water mark,
    so only after the invokes does ``ram_total`` include the stack they need.

    ``timeout`` is the wait for a plain reply; ``invoke_timeout`` the wait for the first single
    invoke (``profile``), whose wall time then sets the waits for ``bench`` and ``golden``."""
    if isinstance(bench_runs, bool) or not isinstance(bench_runs, int) or not 1 <= bench_runs <= BENCH_MAX_RUNS:
        raise PipelineError(f"measure.bench_runs is {bench_runs!r}; the firmware's bench takes 1..{BENCH_MAX_RUNS} runs",
                            hint=f"set it within that range, e.g. --set measure.bench_runs={BENCH_MAX_RUNS}")
    frames = list(frames or [])
    say = log or (lambda _msg: None)
    t_start = time.monotonic()
    gaps: dict[str, list[str]] = {}
    with BoardClient(port, baudrate=baudrate, timeout=timeout, log=say) as board:
        info = board.handshake(expect_hash, attempts=handshake_attempts, interval=handshake_interval)
        gaps["info"] = _gaps("info", info)
        I = info.figures()
        say(f"board answered: {source_label(I)}, model {I.get('model')} ({I.get('hash')}), firmware {I.get('fw')}")

        t0 = time.monotonic()
        prof = board.request("profile", timeout=invoke_timeout)
        per_invoke = max(time.monotonic() - t0, 0.001)  # an upper bound: includes the link
        gaps["profile"] = _gaps("profile", prof)

        say(f"bench: {bench_runs} invokes")
        bench = board.request("bench", bench_runs, timeout=timeout + 2.0 * bench_runs * per_invoke)
        gaps["bench"] = _gaps("bench", bench)

        one_core = None
        if _num(I, "cores") == 2:  # the same image again on core 0 alone, then both cores back
            board.request("cores", 1)
            say(f"bench on one core: {bench_runs} invokes")
            one_core = board.request("bench", bench_runs, timeout=timeout + 4.0 * bench_runs * per_invoke)
            board.request("cores", 2)
            gaps["bench one core"] = _gaps("bench", one_core)

        n_golden = int(_num(I, "golden_count") or 0)
        out_bytes = int(_num(I, "output_bytes") or 0)
        golden_wait = timeout + 2.0 * max(n_golden, 1) * per_invoke \
            + _transfer_s(n_golden * (2 * out_bytes + 3), baudrate)
        golden = board.request("golden", timeout=golden_wait)
        gaps["golden"] = _gaps("golden", golden)

        infers: list[dict[str, Any]] = []
        for i, frame in enumerate(frames):
            if i == 0 or (i + 1) % 10 == 0:
                say(f"infer: frame {i + 1} of {len(frames)}")
            infers.append(board.send_frame(frame, timeout=timeout + 2.0 * per_invoke))

        mem = board.request("mem")
        gaps["mem"] = _gaps("mem", mem)
        stats = board.stats

    M, B, G, P = mem.figures(), bench.figures(), golden.figures(), prof.figures()
    result: dict[str, Any] = {
        "protocol": PROTOCOL_VERSION,
        "source": I.get("image"),
        "source_label": source_label(I),
        "port": port,
        "model": I.get("model"),
        "model_hash": I.get("hash"),
        "firmware": I.get("fw"),
        "clock_hz": I.get("clock_hz"),
        "info": I,
        "mem": M,
        "bench": B,
        "profile": P,
        "golden": G,
    }

    # RAM: the board's own total, and whether its parts add up to it.
    ram_size = _num(M, "ram_size") or RP2040_RAM_BYTES
    ram_total = _num(M, "ram_total")
    parts = [_num(M, k) for k in ("data_bytes", "bss_bytes", "heap_used", "stack_peak")]
    if _num(M, "core1_stack_peak") is not None:  # the board image: core 1's stack is part of the total
        parts.append(_num(M, "core1_stack_peak"))
    result.update({
        "ram_total_bytes": ram_total,
        "ram_size_bytes": ram_size,
        "ram_percent_of_264KB": round(100.0 * ram_total / RP2040_RAM_BYTES, 2) if ram_total is not None else None,
        "ram_free_bytes": (ram_size - ram_total) if ram_total is not None else None,
        "ram_parts_sum_bytes": sum(parts) if None not in parts else None,
        "arena_used_percent": round(100.0 * M["arena_used"] / M["arena_size"], 2)
        if _num(M, "arena_used") is not None and _num(M, "arena_size") else None,
    })
    if ram_size != RP2040_RAM_BYTES:
        result["ram_size_note"] = f"the board reports {ram_size} B of RAM, an RP2040 has {RP2040_RAM_BYTES}"

    # Latency.
    median_us, median_cycles = _num(B, "median_us"), _num(B, "median_cycles")
    if one_core is not None:
        O = one_core.figures()
        result["bench_one_core"] = O
        if _num(O, "median_cycles") and median_cycles:
            result["two_core_speedup"] = round(O["median_cycles"] / median_cycles, 3)
    result["latency_ms"] = round(median_us / 1000.0, 3) if median_us is not None else None
    result["inferences_per_second"] = round(1e6 / median_us, 2) if median_us else None
    if macs:
        result["macs"] = int(macs)
        if median_cycles is not None:
            result["cycles_per_mac"] = round(median_cycles / macs, 3)
    if _num(P, "total_cycles") is not None and median_cycles:
        result["profile_overhead_cycles"] = P["total_cycles"] - median_cycles
    result["profile_by_op"] = _profile_by_op(P.get("ops"))

    # Golden agreement.
    count = _num(G, "count")
    result["golden_exact_rate"] = _ratio(_num(G, "exact"), count)
    result["golden_top1_agree"] = _ratio(_num(G, "top1_agree"), count)

    # Frames from the host.
    result["infer_outputs"] = [r["output"].hex() for r in infers]
    result["infer_top1"] = [r["top1"] for r in infers]
    result["infer_us"] = [r["us"] for r in infers]
    result["infer_cycles"] = [r["cycles"] for r in infers]
    if infers:
        us = sorted(r["us"] for r in infers)
        result["infer_median_us"] = us[len(us) // 2]

    result["link"] = stats.as_dict()
    result["seconds"] = round(time.monotonic() - t_start, 3)
    result["protocol_gaps"] = {k: v for k, v in gaps.items() if v}
    return result


def sweep_arena(client_or_port: BoardClient | str, sizes: Sequence[int], *, expect_hash: str | None = None,
                timeout: float = 10.0, invoke_timeout: float = 30.0, baudrate: int = 115200,
                handshake_attempts: int = 30, handshake_interval: float = 0.3,
                log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """``arena <bytes>`` for each size (each re-runs the board's setup with that limit), then always
    ``arena 0`` to give the board its compiled arena back. Works on a board whose setup failed at boot.

    ``client_or_port``: an open :class:`BoardClient` (used as it is: no handshake) or a port (opened,
    handshaken without requiring ``status == "ready"``, closed). Returns one dict per size, in order:
    the board's figures (``arena_limit``, ``alloc_ok``, ``arena_used``, ``invoke_ok``,
    ``golden_exact``), plus ``err``/``msg`` when the board answered a too-small limit with error
    ``alloc`` instead. See :func:`smallest_ok_arena`."""
    sizes = list(sizes)
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, int) or s < 1:
            raise PipelineError(f"arena sizes must be positive integers, got {s!r}")
    if isinstance(client_or_port, BoardClient):
        return _sweep(client_or_port, sizes, invoke_timeout, log or client_or_port.log)
    with BoardClient(client_or_port, baudrate=baudrate, timeout=timeout, log=log) as board:
        board.handshake(expect_hash, attempts=handshake_attempts, interval=handshake_interval, require_ready=False)
        return _sweep(board, sizes, invoke_timeout, log or board.log)


def _sweep(board: BoardClient, sizes: list[int], invoke_timeout: float,
           say: Callable[[str], None]) -> list[dict[str, Any]]:
    compiled = board.info.get("arena_size") if board.info is not None else None
    for s in sizes:
        if isinstance(compiled, int) and s > compiled:
            raise PipelineError(f"arena size {s} B exceeds the compiled arena ({compiled} B)",
                                hint="the board can only shrink its arena; rebuild with a larger one")
    steps: list[dict[str, Any]] = []
    failed = True
    try:
        for s in sizes:
            r = board.request("arena", s, timeout=invoke_timeout, raise_on_error=False)
            if r.ok:
                step = r.figures()
            elif r.err == "alloc":  # a limit too small may also come back as an error
                step = {"arena_limit": s, "alloc_ok": False, "arena_used": 0, "invoke_ok": False,
                        "golden_exact": False, "err": r.err, "msg": r.msg}
            else:
                raise BoardError(f"the board answered 'arena {s}' with error {r.err}: {r.msg}", reply=r)
            say(f"arena {s} B: alloc {'ok' if step.get('alloc_ok') else 'failed'}, used {step.get('arena_used')} B")
            steps.append(step)
        failed = False
    finally:
        try:  # always give the board its full arena back
            board.request("arena", 0, timeout=invoke_timeout)
        except PipelineError:
            if not failed:
                raise
    return steps


def smallest_ok_arena(steps: Sequence[dict[str, Any]]) -> int | None:
    """The smallest limit at which tensors were allocated, the invoke ran and the golden outputs
    stayed bit-exact (None when none did)."""
    good = [st["arena_limit"] for st in steps
            if st.get("alloc_ok") and st.get("invoke_ok") and st.get("golden_exact") and "arena_limit" in st]
    return min(good) if good else None
