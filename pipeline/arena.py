"""Arena tuning: the smallest tensor arena that really works on the board, and a recommendation.

``arena_used_bytes()`` after AllocateTensors can miss what Invoke needs, and the host's 64-bit
figure is not the RP2040's. So the board itself is asked: ``arena N`` re-runs its setup with an N-byte
limit inside the compiled buffer, then invokes every golden input; the smallest N at which
allocation, invoke *and* the golden check all pass is the device minimum (found by bisection on
16-byte steps).
"""
from __future__ import annotations

import math
from typing import Any, Callable

from pipeline.errors import PipelineError

ALIGN = 16


def _align_up(n: float) -> int:
    return int(math.ceil(n / ALIGN) * ALIGN)


def check_margin(margin_percent: float, margin_bytes: int) -> None:
    if not (0 <= margin_percent <= 400) or not (0 <= margin_bytes <= 128 * 1024):
        raise PipelineError(
            f"arena margin {margin_percent} % + {margin_bytes} B is not allowed",
            hint="use a margin of 0-400 % and 0-131072 bytes",
        )


def recommend(device_min: int, margin_percent: float, margin_bytes: int) -> int:
    check_margin(margin_percent, margin_bytes)
    return _align_up(device_min * (1 + margin_percent / 100.0) + margin_bytes)


def find_device_minimum(port: str, *, expect_hash: str, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Bisect the arena limit on the board; return the figures of the search."""
    from pipeline.device.client import BoardClient

    steps: list[dict[str, Any]] = []
    with BoardClient(port, timeout=10.0) as board:
        info = board.handshake(expect_hash, require_ready=False)
        compiled = int(info["arena_size"])

        def ok(limit: int) -> bool:
            r = board.request("arena", limit, timeout=60.0, raise_on_error=False)
            good = bool(r.ok and r.get("alloc_ok") and r.get("invoke_ok") and r.get("golden_exact"))
            steps.append({"arena_limit": limit, "alloc_ok": bool(r.ok and r.get("alloc_ok")),
                          "arena_used": r.get("arena_used", 0) if r.ok else 0, "ok": good})
            log(f"arena {limit} B: {'ok' if good else 'fails'}")
            return good

        try:
            if not ok(compiled):
                raise PipelineError(
                    f"the firmware does not run even with its compiled {compiled}-byte arena",
                    hint="re-render with a larger arena (render.arena_bytes) and rebuild",
                )
            used_at_full = steps[-1]["arena_used"]
            lo, hi = 0, compiled  # lo fails (or is untested below), hi works
            while hi - lo > ALIGN:
                mid = (lo + hi) // 2
                mid -= mid % ALIGN
                if mid <= lo:
                    break
                if ok(mid):
                    hi = mid
                else:
                    lo = mid
        finally:
            board.request("arena", 0, timeout=60.0, raise_on_error=False)
        used_at_min = next(s["arena_used"] for s in steps if s["arena_limit"] == hi and s["ok"])
    return {
        "compiled_arena_bytes": compiled,
        "device_min_bytes": hi,
        "arena_used_bytes": used_at_full,
        "arena_used_at_min_bytes": used_at_min,
        "scratch_gap_bytes": hi - used_at_full,
        "steps": len(steps),
        "image": info.get("image"),
    }
