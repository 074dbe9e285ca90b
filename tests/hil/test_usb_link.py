"""The board image's USB serial link under the faults a desk sees: the host closes and reopens the
port (also in the middle of an exchange), the board stops answering, the board resets mid-exchange
(tests/board/test_faultlink.py soaks that with drops, flips and resets). Each ends in a reconnect or
in one clear error, never a hang, never a stale or wrong figure accepted."""
from __future__ import annotations

import os
import signal
import time

import pytest
import serial

from pipeline.board.client import BoardClient
from pipeline.errors import SerialLinkError

pytestmark = pytest.mark.hardware


def test_close_and_reopen_the_port(board_port, host_model):
    _, info, _ = host_model
    for _ in range(3):
        with BoardClient(board_port, timeout=10.0) as b:
            assert b.handshake(info.sha256[:16])["hash"] == info.sha256[:16]
            g = b.request("golden", timeout=120)
            assert g["count"] > 0 and g["exact"] == g["count"]


def test_closing_in_the_middle_of_an_exchange_leaves_no_stale_reply(board_port, host_model):
    _, info, _ = host_model
    with serial.Serial(board_port, 115200, timeout=1) as s:  # a request whose reply nobody reads
        s.write(b"@7 bench 30\n")
        s.flush()
    with BoardClient(board_port, timeout=60.0) as b:
        b.handshake(info.sha256[:16])
        m = b.request("mem")  # its own reply, not bench's: ids tell them apart
        assert m["cmd"] == "mem" and m["arena_used"] > 0
        bench = b.request("bench", 3, timeout=120)
        assert bench["cmd"] == "bench" and bench["runs"] == 3


def test_a_board_that_stops_answering_is_one_clear_error_then_it_recovers(request, board_port, host_model):
    if request.config.getoption("--port"):
        pytest.skip("stops the emulated Pico's process; a real board would have to be halted by hand")
    pico = request.getfixturevalue("emulated_pico")
    _, info, _ = host_model
    with BoardClient(board_port, timeout=2.0, retries=1) as b:
        b.handshake(info.sha256[:16])
        os.kill(pico.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            with pytest.raises(SerialLinkError) as e:
                b.request("info")
            assert time.monotonic() - t0 < 15, "no hang: the wait is bounded by timeout x attempts"
            assert "no reply" in str(e.value) and str(e.value).count("\n") == 0
        finally:
            os.kill(pico.pid, signal.SIGCONT)
        assert b.handshake(info.sha256[:16])["hash"] == info.sha256[:16]  # the link comes back
        g = b.request("golden", timeout=120)
        assert g["exact"] == g["count"]
