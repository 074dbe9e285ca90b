"""The arena sweep against scripted fake boards: the pty fake board of tests/board and the same
board scripted behind pyserial's ``loop://`` (no thread, no pty: each request answered as it is written).

Bad input and bad boards: a limit above the compiled arena (a rebuild is needed), a model that fails
even at the largest limit (TFLM's bytes missing and failing op named), a board that resets mid-sweep
(the sweep goes on) or never comes back (a clear error), a board whose answers do not repeat."""
from __future__ import annotations

import pytest
import serial
from serial.urlhandler import protocol_loop

from pipeline.analysis.arena import bisect_minimum, explain_setup_error, find_device_minimum
from pipeline.errors import PipelineError
from tests.board.fakeboard import MODEL_HASH, FakeBoard


class ScriptedBoard(FakeBoard):
    """The fake board, answered inline (its pty thread stopped), with arena behaviour scripted:

    ``alloc_min``: below it AllocateTensors fails with TFLM's message (bytes missing, maybe the op);
    ``min_arena``: below it (but at or above ``alloc_min``) Invoke runs but the golden outputs differ
    (scratch that ``arena_used_bytes()`` does not count); ``reset_at``: the n-th ``arena`` request is
    lost while the board reboots (boot text, limit back to the compiled size); ``dead_after``: from
    the n-th ``arena`` request on, silence; ``flaky``: answers of these limits flip on the second ask."""

    def __init__(self, *, alloc_min: int | None = None, reset_at: int | None = None, dead_after: int | None = None,
                 node: str = "", flaky: set[int] | None = None, **kw):
        super().__init__(**kw)
        self._stop.set()
        self._thread.join(timeout=2)
        self.alloc_min = self.min_arena if alloc_min is None else alloc_min
        self.reset_at, self.dead_after, self.node = reset_at, dead_after, node
        self.flaky = set(flaky or ())
        self.arena_requests = 0
        self.resets = 0
        self.asked: dict[int, int] = {}

    def take_output(self) -> bytes:
        with self._lock:
            out = bytes(self._out)
            self._out.clear()
        return out

    def _line(self, raw: bytes) -> None:
        text = raw.decode("ascii", "replace")
        if text.startswith("arena"):
            self.arena_requests += 1
            if self.dead_after is not None and self.arena_requests >= self.dead_after:
                return
            if self.reset_at is not None and self.arena_requests == self.reset_at:
                self.resets += 1
                self.arena_limit, self.status, self.setup_error = self.arena_size, "ready", ""
                self.write_raw(b"\r\n\x00\xffpicotflm 0.1.0 booting\r\n")
                return
        super()._line(raw)

    def _arena(self, args):
        if len(args) != 1 or not args[0].isdigit():
            return super()._arena(args)
        n = int(args[0])
        if n > self.arena_size:
            return self._err("range", f"the firmware was compiled with a {self.arena_size}-byte arena", "arena")
        limit = n or self.arena_size
        self.arena_limit = limit
        self.asked[limit] = self.asked.get(limit, 0) + 1
        alloc = limit >= self.alloc_min
        good = limit >= self.min_arena
        if limit in self.flaky and self.asked[limit] > 1:
            good = not good
        if alloc:
            self.status, self.setup_error = "ready", ""
        else:
            self.status = "error"
            self.setup_error = (f"AllocateTensors failed with a {limit}-byte arena: "
                                + (self.node or f"Failed to resize buffer. Requested: {self.alloc_min - 2000}, "
                                   f"available {limit - 2000}, missing: {self.alloc_min - limit}"))
        return {"arena_limit": limit, "alloc_ok": alloc, "arena_used": 13_668 if alloc else 0,
                "invoke_ok": alloc, "golden_exact": alloc and good}


class LoopPort(protocol_loop.Serial):
    """pyserial's loop:// whose far end is a :class:`ScriptedBoard` instead of a mirror."""

    board: ScriptedBoard

    def write(self, data):
        self._pending = getattr(self, "_pending", b"") + bytes(data)
        while b"\n" in self._pending:
            line, _, self._pending = self._pending.partition(b"\n")
            self.board._line(line.rstrip(b"\r"))
            for byte in self.board.take_output():
                self.queue.put(bytes([byte]))
        return len(data)


@pytest.fixture
def loop_board(monkeypatch):
    """``make(**knobs)`` -> a ScriptedBoard reachable as ``loop://``."""
    boards = []
    real = serial.serial_for_url

    def make(**kw) -> ScriptedBoard:
        b = ScriptedBoard(**kw)
        boards.append(b)
        return b

    def for_url(url, *args, **kw):
        if not str(url).startswith("loop://") or not boards:
            return real(url, *args, **kw)
        port = LoopPort(None, **{k: v for k, v in kw.items() if k != "do_not_open"})
        port.board = boards[-1]
        port.port = url
        port.open()
        return port

    monkeypatch.setattr(serial, "serial_for_url", for_url)
    yield make
    for b in boards:
        b.close()


def sweep(port: str, **kw):
    lines: list[str] = []
    res = find_device_minimum(port, expect_hash=MODEL_HASH, log=lines.append, step_timeout=kw.pop("step_timeout", 2.0),
                              **kw)
    return res, lines


# ------------------------------------------------------------------------------ the search
def test_bisection_finds_the_boundary_on_16_byte_steps():
    for boundary in (16, 32, 13_680, 13_696, 19_504):
        asked = []
        got = bisect_minimum(lambda n: asked.append(n) or n >= boundary, 19_504 if boundary <= 19_504 else boundary)
        assert got == boundary and all(n % 16 == 0 for n in asked)
        assert len(asked) <= 11  # log2(19504 / 16)


def test_sweep_on_the_pty_fake_board_restores_the_full_arena():
    with FakeBoard(arena_size=16_384, min_arena=13_680) as b:
        res, lines = sweep(b.port)
        assert b.arena_limit == 16_384  # `arena 0` at the end
    assert res["device_min_bytes"] == 13_680 and res["compiled_arena_bytes"] == 16_384
    assert res["arena_used_bytes"] == 13_668 and res["scratch_gap_bytes"] == 12
    assert res["steps"] == len(res["step_log"]) == len(lines)
    assert [s["arena_limit"] for s in res["step_log"][-2:]] == [13_680, 13_664]  # the boundary checked again


def test_sweep_on_loop_finds_the_minimum_where_golden_first_passes(loop_board):
    b = loop_board(arena_size=19_504, alloc_min=13_200, min_arena=13_792)
    res, lines = sweep("loop://")
    assert res["device_min_bytes"] == 13_792
    assert res["scratch_gap_bytes"] == 13_792 - 13_668
    assert any("golden outputs differ" in l for l in lines) and any("allocation fails" in l for l in lines)
    assert b.arena_limit == 19_504 and res["link_retries"] == 0


def test_max_bytes_limits_the_sweep(loop_board):
    loop_board(arena_size=19_504, min_arena=13_792)
    res, _ = sweep("loop://", max_bytes=16_000)
    assert res["device_min_bytes"] == 13_792 and res["max_bytes_tried"] == 16_000
    assert res["step_log"][0]["arena_limit"] == 16_000


# ---------------------------------------------------------------------------- bad input / bad boards
def test_a_limit_above_the_compiled_arena_says_rebuild(loop_board):
    b = loop_board(arena_size=19_504)
    with pytest.raises(PipelineError) as e:
        sweep("loop://", max_bytes=32_768)
    assert "compiled with 19,504 B" in e.value.message and "needs a rebuild" in e.value.message
    assert "render.arena_bytes=32768" in e.value.hint
    assert b.arena_requests == 0  # refused before any arena request


def test_the_boards_range_error_also_says_rebuild(loop_board):
    """A board whose `info` under-reports the compiled size still refuses; the error is the same."""
    b = loop_board(arena_size=19_504)
    orig = b._answer

    def lying(cmd, args):
        r = orig(cmd, args)
        if cmd == "info":
            r["arena_size"] = 40_000
        return r

    b._answer = lying
    with pytest.raises(PipelineError) as e:
        sweep("loop://")
    assert "needs a rebuild" in e.value.message and "the board says" in e.value.message


def test_a_model_failing_at_the_maximum_names_the_bytes_missing(loop_board):
    loop_board(arena_size=16_384, alloc_min=20_000, min_arena=20_000)
    with pytest.raises(PipelineError) as e:
        sweep("loop://")
    msg = e.value.message
    assert "does not run even with its compiled 16,384-byte arena" in msg
    assert "allocation fails" in msg and "3,616 B missing" in msg
    assert "render.arena_bytes=" in e.value.hint and "at least 20,000 B" in e.value.hint


def test_a_model_failing_at_the_maximum_names_the_op_when_the_board_does(loop_board):
    loop_board(arena_size=16_384, alloc_min=20_000, min_arena=20_000,
               node="Node DEPTHWISE_CONV_2D (number 1f) failed to prepare with status 1")
    with pytest.raises(PipelineError) as e:
        sweep("loop://")
    assert "op 1 (DEPTHWISE_CONV_2D) fails to prepare" in e.value.message


def test_golden_failing_at_the_maximum_is_not_an_allocation_problem(loop_board):
    loop_board(arena_size=16_384, alloc_min=10_000, min_arena=20_000)
    with pytest.raises(PipelineError) as e:
        sweep("loop://")
    assert "golden outputs differ" in e.value.message and "measure" in e.value.hint


def test_a_board_that_resets_mid_sweep_is_asked_again_and_the_sweep_goes_on(loop_board):
    b = loop_board(arena_size=19_504, min_arena=13_792, reset_at=4)
    res, _ = sweep("loop://", step_timeout=0.3)
    assert b.resets == 1 and res["link_retries"] >= 1
    assert res["device_min_bytes"] == 13_792
    assert b.arena_limit == 19_504


def test_a_board_that_resets_mid_sweep_on_the_pty():
    class Resetting(FakeBoard):
        n = 0

        def _line(self, raw):
            if raw.startswith(b"arena"):
                self.n += 1
                if self.n == 3:  # lost in the reboot; the limit falls back to the compiled size
                    self.arena_limit = self.arena_size
                    self.write_raw(b"\r\nboot\r\n")
                    return
            super()._line(raw)

    with Resetting(arena_size=16_384, min_arena=13_680) as b:
        res, _ = sweep(b.port, step_timeout=0.5)
    assert res["device_min_bytes"] == 13_680 and res["link_retries"] >= 1


def test_a_board_that_does_not_come_back_fails_clearly(loop_board):
    b = loop_board(arena_size=19_504, min_arena=13_792, dead_after=5)
    with pytest.raises(PipelineError) as e:
        sweep("loop://", step_timeout=0.2)
    msg = e.value.message
    assert "stopped answering during the arena sweep" in msg and "after 4 steps" in msg
    assert "nothing was written" in msg and "reset or was unplugged" in e.value.hint
    assert b.arena_requests >= 5


def test_answers_that_do_not_repeat_are_not_trusted(loop_board):
    loop_board(arena_size=19_504, min_arena=13_792, flaky={13_792})
    with pytest.raises(PipelineError) as e:
        sweep("loop://")
    assert "did not repeat" in e.value.message and "nothing was written" in e.value.message


def test_a_board_running_another_model_is_refused(loop_board):
    loop_board(model_hash="aaaaaaaaaaaaaaaa")
    with pytest.raises(PipelineError, match="the board runs model aaaaaaaaaaaaaaaa"):
        sweep("loop://")


def test_setup_error_parsing():
    e = explain_setup_error("AllocateTensors failed with a 9000-byte arena: Failed to allocate tail memory. "
                            "Requested: 1200, available 800, missing: 400")
    assert e["missing_bytes"] == 400 and "failing_op" not in e
    e = explain_setup_error("Node CONV_2D (number 0f) failed to prepare with status 1")
    assert (e["failing_op"], e["failing_op_index"], e["failing_phase"]) == ("CONV_2D", 0, "prepare")
    assert explain_setup_error("") == {"setup_error": ""}
