"""measure() and sweep_arena() end to end against the fake board on a pty."""
from __future__ import annotations

import json
import os

import pytest

from pipeline.board.client import BoardClient
from pipeline.board.measure import measure, smallest_ok_arena, sweep_arena
from pipeline.errors import PipelineError, SerialLinkError
from tests.board.fakeboard import CYCLES, MODEL_HASH, FakeBoard

FAST = dict(handshake_attempts=10, handshake_interval=0.2)


def test_measure_end_to_end():
    frames = [os.urandom(300) for _ in range(3)]
    with FakeBoard(garbage=b"noise\r\n") as b:
        m = measure(b.port, expect_hash=MODEL_HASH, bench_runs=7, frames=frames, macs=1_000_000, timeout=2, **FAST)
    json.dumps(m)  # JSON-able as it is
    assert m["source"] == "emulator" and m["info"]["hash"] == MODEL_HASH and "ok" not in m["info"]
    # the board's figures as reported
    assert m["bench"]["runs"] == 7 and m["bench"]["median_cycles"] == CYCLES
    assert m["mem"]["ram_total"] == 17_104 + 24_960 + 1_024 + 1_312
    assert [o["op"] for o in m["profile"]["ops"]][0] == "CONV_2D"
    assert m["golden"]["count"] == 4 and len(m["golden"]["outputs"]) == 4
    # derived
    assert m["ram_total_bytes"] == m["mem"]["ram_total"]
    assert m["ram_percent_of_264KB"] == round(100 * m["ram_total_bytes"] / 270336, 2)
    assert m["cycles_per_mac"] == round(CYCLES / 1_000_000, 3)
    assert m["golden_exact_rate"] == 1.0 and m["golden_top1_agree"] == 1.0
    assert m["infer_outputs"] == [b.infer_bytes(f).hex() for f in frames]
    assert m["infer_top1"] == [b.top1(b.infer_bytes(f)) for f in frames] and len(m["infer_us"]) == 3
    link = m["link"]
    assert link["exchanges"] >= 5 + 3 * 4 and link["retries"] == 0 and link["ignored"] >= 5 and link["seconds"] > 0
    assert m["protocol_gaps"] == {}
    # order: mem last, after the invokes (its stack high-water then includes them)
    cmds = [r.split(" ")[0] for r in b.requests if r.strip()]
    assert cmds[-1] == "mem" and cmds.index("bench") < cmds.index("golden") < cmds.index("load")


def test_measure_without_frames_or_macs():
    with FakeBoard(image="board") as b:
        m = measure(b.port, expect_hash=None, bench_runs=1, timeout=2, **FAST)
    assert m["source"] == "board" and "cycles_per_mac" not in m
    assert m["infer_outputs"] == [] and m["infer_top1"] == [] and m["infer_us"] == []


def test_measure_lists_missing_fields():
    with FakeBoard(omit={"mem": ["stack_peak"]}) as b:
        m = measure(b.port, expect_hash=MODEL_HASH, bench_runs=1, timeout=2, **FAST)
    assert m["protocol_gaps"] == {"mem": ["stack_peak"]}


def test_measure_refuses_a_board_with_another_model():
    with FakeBoard(model_hash="0000000000000000") as b:
        with pytest.raises(PipelineError, match="the board runs model 0000000000000000") as e:
            measure(b.port, expect_hash=MODEL_HASH, timeout=2, **FAST)
    assert "make flash" in e.value.hint


def test_measure_refuses_bench_runs_out_of_range():
    with pytest.raises(PipelineError, match="1..1000"):
        measure("loop://", expect_hash=None, bench_runs=0)


def test_measure_silent_board_is_a_link_error_in_time():
    with FakeBoard(silent=True) as b:
        with pytest.raises(SerialLinkError, match="no answer to 'info'"):
            measure(b.port, expect_hash=None, timeout=0.5, handshake_attempts=3, handshake_interval=0.1)


def test_sweep_arena_by_port_restores_the_full_arena():
    with FakeBoard(arena_size=16384, min_arena=13680) as b:
        steps = sweep_arena(b.port, [16000, 14000, 13000], timeout=2, **FAST)
    assert [s["arena_limit"] for s in steps] == [16000, 14000, 13000]
    assert [s["alloc_ok"] for s in steps] == [True, True, False]
    assert smallest_ok_arena(steps) == 14000
    assert b.requests[-1].startswith("arena 0 ") and b.arena_limit == 16384 and b.status == "ready"


def test_sweep_arena_with_an_open_client_and_alloc_errors():
    with FakeBoard(min_arena=13680, arena_alloc_error=True) as b, BoardClient(b.port, timeout=2) as c:
        c.handshake(attempts=10, interval=0.2)
        steps = sweep_arena(c, [15000, 12000])
        assert steps[1] == {"arena_limit": 12000, "alloc_ok": False, "arena_used": 0, "invoke_ok": False,
                            "golden_exact": False, "err": "alloc", "msg": steps[1]["msg"]}
        assert c.request("mem").ok  # the board is usable afterwards
    assert b.requests[-2].startswith("arena 0 ")


def test_sweep_arena_refuses_a_size_above_the_compiled_arena():
    with FakeBoard(arena_size=16384) as b:
        with pytest.raises(PipelineError, match="exceeds the compiled arena"):
            sweep_arena(b.port, [20000], timeout=2, **FAST)
