"""BoardClient against a fake board on a pty (opened like a real port) and pyserial's loop://."""
from __future__ import annotations

import os
import threading
import time
import zlib

import pytest
import serial

from pipeline.board.client import BoardClient, BoardError, ChecksumError, open_error
from pipeline.board.protocol import frame_reply
from pipeline.errors import PipelineError, SerialLinkError
from tests.board.fakeboard import MODEL_HASH, FakeBoard

FAST = dict(attempts=10, interval=0.2)


@pytest.fixture
def board():
    with FakeBoard() as b:
        yield b


def test_handshake_and_plain_requests(board):
    with BoardClient(board.port, timeout=2) as c:
        info = c.handshake(MODEL_HASH + "0123456789abcdef0123", **FAST)  # a full sha256 prefix works too
        assert info["proto"] == 1 and info["status"] == "ready" and c.info is info
        mem = c.request("mem")
        assert mem.ok and mem["arena_used"] == 13_668 and mem.id is not None
        bench = c.request("bench", 5)
        assert bench["runs"] == 5
    assert c.stats.exchanges >= 3 and c.stats.replies >= 3 and c.stats.ignored == 0
    sent = [r for r in board.requests if r]
    assert sent[0] == "info" or sent[0].startswith("info @")
    assert all(r.rsplit(" ", 1)[-1].startswith("@") for r in sent)  # every request carries an id


def test_ids_are_fresh_per_request(board):
    with BoardClient(board.port, timeout=2) as c:
        ids = [c.request("mem").id for _ in range(5)]
    assert len(set(ids)) == 5 and ids == sorted(ids)


def test_handshake_waits_for_a_booting_board():
    with FakeBoard(boot_ignore=3) as b, BoardClient(b.port, timeout=2) as c:
        t0 = time.monotonic()
        assert c.handshake(**FAST)["status"] == "ready"
        assert time.monotonic() - t0 < 2.0
    assert sum(r.startswith("info") for r in b.requests) >= 3


def test_handshake_hash_mismatch():
    with FakeBoard(model_hash="aaaaaaaaaaaaaaaa") as b, BoardClient(b.port) as c:
        with pytest.raises(PipelineError) as e:
            c.handshake("bbbbbbbbbbbbbbbbcccc", **FAST)
    assert "the board runs model aaaaaaaaaaaaaaaa" in e.value.message
    assert "this run's model is bbbbbbbbbbbbbbbb" in e.value.message
    assert "make flash" in e.value.hint and not isinstance(e.value, SerialLinkError)


def test_handshake_protocol_mismatch_names_both_versions():
    with FakeBoard(proto=2) as b, BoardClient(b.port) as c:
        with pytest.raises(PipelineError, match="protocol version 2, this host speaks version 1"):
            c.handshake(**FAST)


def test_handshake_setup_error_and_commands_refused():
    msg = "AllocateTensors failed: arena 12000 B, needs 13680 B"
    with FakeBoard(status="error", setup_error=msg) as b, BoardClient(b.port) as c:
        with pytest.raises(PipelineError, match="failed its setup: AllocateTensors failed"):
            c.handshake(**FAST)
        assert c.handshake(require_ready=False, **FAST)["status"] == "error"
        with pytest.raises(BoardError) as e:
            c.request("mem")
        assert e.value.reply.err == "setup" and "13680" in e.value.message and e.value.hint
        r = c.request("mem", raise_on_error=False)
        assert not r.ok and r.err == "setup"


def test_garbage_and_half_frames_before_the_reply():
    junk = b"\x00\xffboot log line\r\n$half a fra\n" + frame_reply({"ok": True, "cmd": "mem"})[:15] + b"\n"
    with FakeBoard(garbage=junk) as b, BoardClient(b.port, timeout=2) as c:
        c.handshake(**FAST)
        assert c.request("mem")["ram_size"] == 270336
        assert c.stats.not_frames >= 4 and c.stats.retries == 0


def test_garbage_without_newline_glued_to_the_reply():
    with FakeBoard(garbage=b"printf without newline ") as b, BoardClient(b.port, timeout=2) as c:
        c.handshake(**FAST)
        assert c.request("mem").ok


def test_stale_replies_with_old_ids_are_skipped():
    with FakeBoard(stale=True) as b, BoardClient(b.port, timeout=2) as c:
        c.handshake(**FAST)
        for n in (3, 4, 5):
            r = c.request("bench", n)
            assert r["runs"] == n and "stale" not in r.payload
        assert c.stats.stale >= 3


def test_a_late_reply_to_an_earlier_request_is_skipped(board):
    with BoardClient(board.port, timeout=2) as c:
        old = c.request("mem").id
        board.write_raw(frame_reply({"ok": True, "cmd": "mem", "id": old, "arena_used": 1}))
        r = c.request("mem")
        assert r["arena_used"] == 13_668 and r.id != old and c.stats.stale == 1


def test_bad_checksum_then_a_good_retry():
    with FakeBoard(corrupt={"mem": 2}) as b, BoardClient(b.port, timeout=2, retries=2) as c:
        c.handshake(**FAST)
        t0 = time.monotonic()
        assert c.request("mem").ok
        assert time.monotonic() - t0 < 1.0  # retried at once, not after a timeout
        assert c.stats.bad_checksum == 2 and c.stats.retries == 2


def test_bad_checksum_every_time_is_a_link_error():
    with FakeBoard(corrupt={"mem": 99}) as b, BoardClient(b.port, timeout=2, retries=2) as c:
        c.handshake(**FAST)
        with pytest.raises(ChecksumError) as e:
            c.request("mem")
    assert isinstance(e.value, SerialLinkError) and "failed its checksum (3 corrupted frame(s) in 3 tries)" in e.value.message
    assert "cable" in e.value.hint and sum(r.startswith("mem") for r in b.requests) == 3


def test_silent_board_times_out_with_a_clear_error():
    with FakeBoard(silent={"mem"}) as b, BoardClient(b.port, timeout=0.4, retries=0) as c:
        c.handshake(**FAST)
        t0 = time.monotonic()
        with pytest.raises(SerialLinkError) as e:
            c.request("mem")
        assert 0.35 < time.monotonic() - t0 < 1.0
    assert e.value.message.startswith(f"no reply to 'mem' within 0.4 s from {b.port}: nothing arrived")
    assert e.value.hint


def test_silent_board_is_asked_again_then_given_up_on():
    with FakeBoard(silent={"mem"}) as b, BoardClient(b.port, timeout=0.2, retries=2) as c:
        c.handshake(**FAST)
        t0 = time.monotonic()
        with pytest.raises(SerialLinkError, match=r"no reply to 'mem' within 0.2 s from .* \(3 tries\)"):
            c.request("mem")
        assert time.monotonic() - t0 < 1.2
        assert c.stats.retries == 2
    assert sum(r.startswith("mem") for r in b.requests) == 3


def test_a_late_reply_to_the_first_try_is_taken():
    """The board answers slower than the timeout: the reply to the first try still counts."""
    with FakeBoard(delay={"bench": 0.3}) as b, BoardClient(b.port, timeout=0.2, retries=2) as c:
        c.handshake(**FAST)
        assert c.request("bench", 2)["runs"] == 2
        assert c.stats.retries >= 1


def test_board_that_never_answers_fails_the_handshake_in_time():
    with FakeBoard(silent=True) as b, BoardClient(b.port) as c:
        t0 = time.monotonic()
        with pytest.raises(SerialLinkError, match=r"no answer to 'info' .* \(4 tries\): nothing arrived"):
            c.handshake(attempts=4, interval=0.1)
        assert time.monotonic() - t0 < 1.5


def test_timeout_says_what_arrived_instead():
    with FakeBoard(silent={"mem"}) as b, BoardClient(b.port, timeout=0.3, retries=0) as c:
        c.handshake(**FAST)
        b.write_raw(b"Hello from another firmware\r\n")
        with pytest.raises(SerialLinkError, match="bytes arrived but no reply frame .*not frame.*another firmware"):
            c.request("mem")


def test_replies_without_ids_are_not_taken_for_ours():
    with FakeBoard(echo_id=False) as b, BoardClient(b.port) as c:
        with pytest.raises(SerialLinkError, match="reply\\(ies\\) for other requests .*cmd 'info', id None"):
            c.handshake(attempts=3, interval=0.1)


def test_unknown_command_is_the_boards_error():
    with FakeBoard() as b, BoardClient(b.port, timeout=2) as c:
        with pytest.raises(BoardError, match="error unknown_cmd: unknown command frobnicate"):
            c.request("frobnicate")


def test_send_frame_chunks_and_crc():
    frame = bytes(range(256)) + bytes(44)
    with FakeBoard() as b, BoardClient(b.port, timeout=2) as c:
        c.handshake(**FAST)
        res = c.send_frame(frame)
        assert set(res) == {"output", "top1", "us", "cycles"}
        assert res["output"] == b.infer_bytes(frame) and res["top1"] == b.top1(res["output"])
        assert res["us"] > 0 and res["cycles"] == 4_051_408
    loads = [r for r in b.requests if r.startswith("load")]
    assert [r.split(" ")[1] for r in loads] == ["0", "128", "256"]
    assert [len(r.split(" ")[2]) // 2 for r in loads] == [128, 128, 44]
    infer = [r for r in b.requests if r.startswith("infer")][0].split(" ")
    assert infer[1:3] == ["300", f"{zlib.crc32(frame):08x}"]


def test_send_frame_reloads_after_the_board_finds_the_frame_corrupted():
    frame = os.urandom(300)
    with FakeBoard(corrupt_loads=1) as b, BoardClient(b.port, timeout=2) as c:
        c.handshake(**FAST)
        assert c.send_frame(frame)["output"] == b.infer_bytes(frame)
        assert c.stats.retries == 1
    assert sum(r.startswith("infer") for r in b.requests) == 2
    assert sum(r.startswith("load 0 ") for r in b.requests) == 2  # TFLM overwrote the input: load again


def test_send_frame_reloads_after_a_corrupted_infer_reply():
    frame = os.urandom(300)
    with FakeBoard(corrupt={"infer": 1}) as b, BoardClient(b.port, timeout=2) as c:
        c.handshake(**FAST)
        assert c.send_frame(frame)["output"] == b.infer_bytes(frame)
        assert c.stats.retries == 1 and c.stats.bad_checksum == 1
    assert sum(r.startswith("infer") for r in b.requests) == 2
    assert sum(r.startswith("load 0 ") for r in b.requests) == 2


def test_send_frame_checks_the_frame_size(board):
    with BoardClient(board.port, timeout=2) as c:
        c.handshake(**FAST)
        with pytest.raises(PipelineError, match="301 bytes, the board's input tensor 300"):
            c.send_frame(bytes(301))
        with pytest.raises(ValueError):
            c.send_frame(b"")


def test_a_request_too_long_is_refused_before_sending(board):
    with BoardClient(board.port) as c:
        with pytest.raises(ValueError, match="320"):
            c.request("bench", "1" * 400)
    assert c.stats.exchanges == 0 and c.stats.bytes_out == 0


def test_a_huge_line_from_the_board_is_dropped_and_the_reply_still_found():
    with FakeBoard() as b, BoardClient(b.port, timeout=3) as c:
        c.handshake(**FAST)
        # From a thread: a pty holds a few KiB, so the write only finishes while the client reads.
        t = threading.Thread(target=b.write_raw, args=(b"$" + b"7" * (200 * 1024) + b"\n",))
        t.start()
        assert c.request("mem").ok
        t.join(timeout=5)
        assert c.stats.overlong == 1


# -------------------------------------------------------------------------------- opening
def test_port_that_does_not_exist(tmp_path):
    missing = str(tmp_path / "ttyACM9")
    with pytest.raises(SerialLinkError) as e:
        BoardClient(missing).open()
    assert e.value.message == f"serial port {missing} does not exist"
    assert "python -m serial.tools.list_ports" in e.value.hint


def test_port_busy_when_another_client_holds_it(board):
    with BoardClient(board.port):
        with pytest.raises(SerialLinkError, match="is busy") as e:
            BoardClient(board.port).open()
    assert "serial monitor" in e.value.hint


@pytest.mark.skipif(os.geteuid() == 0, reason="root may open anything")
def test_permission_denied(tmp_path):
    p = tmp_path / "ttyS0"
    p.write_text("")
    p.chmod(0)
    with pytest.raises(SerialLinkError, match="no permission") as e:
        BoardClient(str(p)).open()
    assert "dialout" in e.value.hint


def test_open_errors_map_by_errno_and_text():
    import errno

    assert "permission" in open_error("COM3", serial.SerialException("could not open port 'COM3': "
                                                                         "PermissionError(13, 'Access is denied.')")).message
    assert "busy" in open_error("/dev/x", serial.SerialException(errno.EBUSY, "busy")).message
    assert "does not exist" in open_error("/dev/x", serial.SerialException(errno.ENOENT, "x")).message
    assert "could not open serial port /dev/x: weird" == open_error("/dev/x", serial.SerialException("weird")).message


def test_board_vanishing_mid_conversation_is_a_link_error():
    b = FakeBoard(silent={"mem"})
    with BoardClient(b.port, timeout=2) as c:
        c.handshake(**FAST)
        b.close()  # both pty ends gone: reads fail like an unplugged USB device
        with pytest.raises(SerialLinkError):
            c.request("mem")


# --------------------------------------------------------------------------------- loop://
def test_loop_url_echo_level():
    """loop:// sends our own request back: it is not a frame, so the client times out saying so."""
    with BoardClient("loop://", timeout=0.2, retries=0) as c:
        with pytest.raises(SerialLinkError, match="bytes arrived but no reply frame.*'mem @"):
            c.request("mem")
        assert c.stats.not_frames == 1


def test_loop_url_frame_written_by_hand_is_read():
    with BoardClient("loop://", timeout=0.5) as c:
        rid = c._next_id  # noqa: SLF001 - the id the next request will carry
        c._ser.write(frame_reply({"ok": True, "cmd": "mem", "id": rid, "arena_used": 7}))  # noqa: SLF001
        assert c.request("mem")["arena_used"] == 7


def test_every_kind_of_corrupted_line_is_skipped_and_counted(board):
    good = frame_reply({"ok": True, "cmd": "mem", "id": 5, "arena_used": 1})
    body, crc = good.rstrip(b"\n").rsplit(b"*", 1)
    flipped = bytearray(good)
    flipped[10] ^= 0x04
    junk = [
        bytes(flipped),                                    # one bit flipped
        good[:25] + b"\n",                                 # truncated
        body + b"\n",                                      # no '*'
        body + b"*00000000\n",                             # wrong crc
        b"$not json*" + b"%08x" % zlib.crc32(b"not json") + b"\n",  # right crc, not JSON
        b"\xc3\xa9\xff\x00 boot\r\n",                       # not ASCII
    ]
    with BoardClient(board.port, timeout=3) as c:
        c.handshake(**FAST)
        t = threading.Thread(target=board.write_raw, args=(b"".join(junk) + b"$" + b"x" * (1 << 20) + b"\n",))
        t.start()
        time.sleep(0.2)  # the junk is on its way before the request
        assert c.request("mem")["arena_used"] == 13_668
        t.join(timeout=5)
        s = c.stats
        assert (s.bad_checksum, s.not_frames, s.bad_frames, s.overlong) == (2, 3, 1, 1)
        assert s.ignored == 7 and s.retries == 0


def test_hash_mismatch_wins_over_a_setup_error():
    """Another model's firmware that also failed its setup: the fix is flashing this run's image."""
    with FakeBoard(model_hash="aaaaaaaaaaaaaaaa", status="error", setup_error="arena too small") as b, \
            BoardClient(b.port) as c:
        with pytest.raises(PipelineError, match="the board runs model aaaaaaaaaaaaaaaa"):
            c.handshake(MODEL_HASH, **FAST)
