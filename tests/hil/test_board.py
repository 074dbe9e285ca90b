"""Hardware-in-the-loop: the same tests against a real Pico (--port) or the emulated one (--emulator)."""
import zlib

import numpy as np
import pytest

from pipeline.board.client import BoardError
from pipeline.board.measure import measure, smallest_ok_arena, sweep_arena
from pipeline.stages.verify import images_to_input, run_tflm

pytestmark = pytest.mark.hardware

RP2040_RAM = 264 * 1024


def test_handshake_names_this_model(board, host_model):
    data, info, _ = host_model
    reply = board.handshake(info.sha256[:16])
    assert reply["proto"] == 1 and reply["status"] == "ready" and reply["setup_error"] == ""
    assert reply["input_bytes"] == info.input.nbytes and reply["output_bytes"] == info.output.nbytes
    assert reply["image"] in ("emulator", "board") and reply["clock_hz"] > 0


def test_golden_outputs_are_bit_exact(board):
    board.handshake()
    g = board.request("golden", timeout=60)
    assert g["count"] > 0 and g["exact"] == g["count"] and g["max_diff"] == 0 and g["top1_agree"] == g["count"]


def test_timing_is_sane(board, host_model):
    _, info, _ = host_model
    board.handshake()
    b = board.request("bench", 5, timeout=60)
    assert b["runs"] == 5 and b["median_of"] == 5
    assert 0 < b["min_us"] <= b["median_us"] <= b["max_us"]
    assert 0 < b["min_cycles"] <= b["median_cycles"] <= b["max_cycles"]
    cycles_per_mac = b["median_cycles"] / info.macs
    assert 3 < cycles_per_mac < 300, cycles_per_mac  # the M0+ floor is ~3; soft float is ~290
    # the cycle counter and the microsecond timer agree on the clock (within 2 %)
    assert abs(b["median_cycles"] / b["median_us"] * 1e6 - b["clock_hz"]) < 0.02 * b["clock_hz"]


def test_profile_lists_the_models_operators(board, host_model):
    _, info, _ = host_model
    board.handshake()
    p = board.request("profile", timeout=60)
    assert [op["op"] for op in p["ops"]] == info.op_sequence
    assert sum(op["cycles"] for op in p["ops"]) <= p["total_cycles"]


def test_memory_fits_the_rp2040(board):
    board.handshake()
    board.request("golden", timeout=60)  # run the model first: the stack high-water mark then counts
    m = board.request("mem")
    assert 0 < m["arena_used"] <= m["arena_limit"] <= m["arena_size"]
    assert m["bss_bytes"] >= m["arena_size"]  # the arena is a static buffer in .bss
    assert 0 < m["stack_peak"] <= 4096
    assert m["ram_total"] == m["data_bytes"] + m["bss_bytes"] + m["heap_used"] + m["stack_peak"] + m["core1_stack_peak"]
    assert m["ram_total"] < RP2040_RAM and m["ram_size"] == RP2040_RAM


def test_frames_from_the_host_agree_with_host_tflm(board, host_model):
    data, info, ds = host_model
    board.handshake()
    x = images_to_input(ds.x_test[:6], info)
    host, _ = run_tflm(data, x, 64 * 1024)
    for frame, expected in zip(x, host):
        got = board.send_frame(frame.tobytes())
        assert got["output"] == expected.tobytes()
        assert got["top1"] == int(np.argmax(expected))


def test_bad_requests_get_errors_and_the_board_keeps_answering(board, host_model):
    _, info, _ = host_model
    board.handshake()
    with pytest.raises(BoardError, match="unknown"):
        board.request("selfdestruct")
    with pytest.raises(BoardError):
        board.request("load", info.input.nbytes, "00")
    with pytest.raises(BoardError):
        board.request("bench", 0)
    with pytest.raises(BoardError):
        board.request("infer", info.input.nbytes, f"{zlib.crc32(b'x') ^ 1:08x}")  # wrong CRC
    board._write(b"x" * 2000 + b"\n")  # an over-long line: refused, then the next request works
    assert board.request("info")["status"] == "ready"


def test_measure_end_to_end(board_port, host_model):
    data, info, ds = host_model
    frames = [f.tobytes() for f in images_to_input(ds.x_test[:3], info)]
    m = measure(board_port, expect_hash=info.sha256[:16], bench_runs=3, frames=frames, macs=info.macs)
    assert m["golden_exact_rate"] == 1.0 and m["cycles_per_mac"] > 0
    assert len(m["infer_outputs"]) == 3 and m["ram_total_bytes"] < RP2040_RAM


def test_arena_sweep_finds_the_smallest_working_arena(board_port, host_model):
    _, info, _ = host_model
    from pipeline.board.client import BoardClient

    with BoardClient(board_port, timeout=10.0) as b:
        used = b.handshake(info.sha256[:16])
        m = b.request("mem")
        sizes = [m["arena_used"] - 64, m["arena_used"], m["arena_used"] + 16, m["arena_size"]]
        steps = sweep_arena(b, sizes)
    ok = smallest_ok_arena(steps)
    assert ok is not None and ok <= m["arena_used"] + 16
    assert not steps[0]["alloc_ok"]
    assert used["arena_limit"] == used["arena_size"]


def test_device_minimum_arena_is_tight_and_restored(board_port, host_model):
    from pipeline.analysis.arena import find_device_minimum
    from pipeline.board.client import BoardClient

    _, info, _ = host_model
    found = find_device_minimum(board_port, expect_hash=info.sha256[:16])
    assert found["arena_used_bytes"] <= found["device_min_bytes"] <= found["compiled_arena_bytes"]
    assert found["device_min_bytes"] - found["arena_used_bytes"] < 256
    with BoardClient(board_port, timeout=10.0) as b:  # the board got its full arena back
        info_reply = b.handshake(info.sha256[:16])
        assert info_reply["arena_limit"] == info_reply["arena_size"] and info_reply["status"] == "ready"
