"""Against a real board (or an emulated Pico started by hand with `picotflm emulate`): ``--port PORT``.

Skipped without ``--port``. The firmware must be picotflm's, for any model."""
from __future__ import annotations

import pytest

from pipeline.board.client import BoardClient
from pipeline.board.measure import measure

pytestmark = pytest.mark.hardware


@pytest.fixture
def serial_port(request) -> str:
    port = request.config.getoption("--port")
    if not port:
        pytest.skip("needs --port PORT (a board, or the pty of an emulated Pico started with `picotflm emulate`)")
    return port


def test_handshake_and_protocol_fields(serial_port):
    with BoardClient(serial_port, timeout=10) as c:
        info = c.handshake()
        assert info["proto"] == 1 and info["image"] in ("board", "emulator") and len(info["hash"]) == 16
        mem = c.request("mem")
        assert mem["ram_size"] == 270336
        assert mem["ram_total"] == mem["data_bytes"] + mem["bss_bytes"] + mem["heap_used"] + mem["stack_peak"]
        assert not c.request("frobnicate", raise_on_error=False).ok


def test_measure_and_a_frame(serial_port):
    with BoardClient(serial_port, timeout=10) as c:
        n = c.handshake()["input_bytes"]
    frames = [bytes(n), bytes(i % 256 for i in range(n))]
    m = measure(serial_port, expect_hash=None, bench_runs=3, frames=frames, timeout=30)
    assert m["bench"]["runs"] == 3 and m["golden"]["count"] >= 1 and len(m["infer_outputs"]) == 2
    assert m["link"]["retries"] == 0
