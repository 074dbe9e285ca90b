"""Property tests (hypothesis) of the host side of the serial protocol: random, truncated, oversized
and corrupted bytes never make the frame parser, the line reader, the request encoder or the client
raise anything but the documented errors, never hang, and never grow a buffer past its limit."""
from __future__ import annotations

import json
import re
import time

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pipeline.board.client import BoardClient, BoardError  # noqa: E402
from pipeline.board.protocol import (  # noqa: E402
    MAX_REPLY_LINE,
    MAX_REQUEST_BYTES,
    LineReader,
    Reply,
    RequestError,
    check_reply_line,
    encode_load,
    encode_request,
    frame_reply,
)
from pipeline.errors import PipelineError, SerialLinkError  # noqa: E402

# Example counts, quoted in docs/results.md (Reliability).
EXAMPLES = 500
CLIENT_EXAMPLES = 150
FAST = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
REASONS = {"ok", "empty", "too_long", "not_frame", "bad_crc", "bad_json", "bad_fields"}

json_scalars = st.one_of(st.integers(-2**40, 2**40), st.text(max_size=12), st.booleans(), st.none())
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
payloads = st.builds(lambda extra, ok, cmd, rid: {**{k: v for k, v in extra.items() if k not in ("id", "err", "msg")},
                                                   "ok": ok, "cmd": cmd, **({} if rid is None else {"id": rid})},
                     st.dictionaries(st.text(max_size=8), json_values, max_size=4), st.booleans(),
                     st.text(max_size=10), st.one_of(st.none(), st.integers(0, 999_999_999)))


@st.composite
def damages(draw):
    """How a frame gets damaged: left intact, truncated, a byte changed, bytes inserted, garbage
    around it, blown up past the line limit, or replaced by random bytes. Returns ``(kind, fn)``,
    ``fn(frame) -> line``, so the same damage applies to a frame built later (with a request's id)."""
    kind = draw(st.sampled_from(["intact", "truncate", "flip", "insert", "wrap", "oversize", "random"]))
    at = draw(st.floats(0, 1))
    junk = draw(st.binary(min_size=1, max_size=8))
    xor = draw(st.integers(1, 255))
    before, after = (draw(st.binary(max_size=40)).replace(b"\n", b"") for _ in range(2))
    pad = draw(st.integers(200, 2000))
    noise = draw(st.binary(max_size=300))

    def fn(frame: bytes) -> bytes:
        i = min(int(at * (len(frame) - 1)), len(frame) - 2)  # a position before the newline
        if kind == "truncate":
            return frame[:i]
        if kind == "flip":
            return frame[:i] + bytes([frame[i] ^ xor]) + frame[i + 1:]
        if kind == "insert":
            return frame[:i + 1] + junk + frame[i + 1:]
        if kind == "wrap":
            return before + frame[:-1] + after + b"\n"
        if kind == "oversize":
            return frame[:1] + b" " * pad + frame[1:]
        if kind == "random":
            return noise
        return frame

    return kind, fn


@st.composite
def hostile_lines(draw):
    payload = draw(payloads)
    payload["cmd"] = draw(st.sampled_from(["mem", "?", payload["cmd"]]))  # the client's command, often
    kind, fn = draw(damages())
    return kind, fn(frame_reply(payload))


# ------------------------------------------------------------------------------- frames
@FAST
@given(hostile_lines(), st.one_of(st.just(MAX_REPLY_LINE), st.integers(16, 4096)))
def test_a_damaged_frame_is_refused_with_a_reason_never_an_exception(case, max_len):
    kind, line = case
    reply, reason = check_reply_line(line, max_len)
    hypothesis.event(f"{kind}: {reason}")
    assert reason in REASONS
    assert (reply is None) == (reason != "ok")
    if reply is not None:
        assert isinstance(reply, Reply) and isinstance(reply.ok, bool) and isinstance(reply.cmd, str)
        assert len(line) <= max_len
    if kind in ("truncate", "flip") and reply is not None:
        # CRC-32 catches every single-byte change; a cut frame has no valid checksum left
        raise AssertionError(f"a {kind} frame was accepted: {line!r}")


@FAST
@given(payloads, st.binary(max_size=30), st.binary(max_size=30))
def test_garbage_around_an_intact_frame_never_yields_another_payload(payload, before, after):
    frame = frame_reply(payload)
    line = before.replace(b"\n", b"") + frame[:-1] + after.replace(b"\n", b"") + b"\n"
    reply = check_reply_line(line)[0]
    want = json.loads(json.dumps(payload))
    assert reply is None or reply.payload == want
    if not after.replace(b"\n", b"") and b"$" not in before:
        assert reply is not None and reply.payload == want  # garbage before a frame: still found


@FAST
@given(st.one_of(st.binary(max_size=70_000).map(bytearray), st.binary(max_size=200).map(memoryview),
                 st.none(), st.integers(), st.text(max_size=50)))
def test_any_object_at_all_gives_a_reason(obj):
    reply, reason = check_reply_line(obj)
    assert reason in REASONS and (reply is None or isinstance(reply, Reply))


# ------------------------------------------------------------------------------ line reader
@FAST
@given(st.lists(st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")), max_size=12),
       st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")), st.integers(1, 40), st.data())
def test_line_reader_keeps_lines_up_to_the_limit_and_drops_longer_ones(lines, tail, max_line, data):
    stream = b"".join(line + b"\n" for line in lines) + tail
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    reader = LineReader(max_line)
    got: list[bytes] = []
    for a, b in zip([0] + cuts, cuts + [len(stream)]):
        got += reader.feed(stream[a:b])
        assert reader.pending <= max_line
    assert got == [line for line in lines if len(line) <= max_line]
    assert reader.overlong == sum(len(line) > max_line for line in lines) + (len(tail) > max_line)
    assert reader.pending == (len(tail) if len(tail) <= max_line else 0)


@settings(max_examples=50, deadline=None, database=None)
@given(st.integers(1, 4096), st.lists(st.integers(1, 5000), min_size=1, max_size=50))
def test_a_never_ending_line_is_cut_at_the_limit(max_line, chunks):
    reader = LineReader(max_line)
    for n in chunks * 4:
        assert reader.feed(b"x" * n) == []
        assert reader.pending <= max_line
    total = sum(chunks) * 4
    assert reader.overlong == (1 if total > max_line else 0)
    assert reader.feed(b"\nk\n") == ([b"x" * total, b"k"] if total <= max_line else [b"k"])


# ------------------------------------------------------------------------------ requests
tokens = st.one_of(st.text(max_size=40), st.integers(-10**12, 10**12), st.booleans(), st.floats(), st.none(),
                   st.binary(max_size=5))


@FAST
@given(tokens, st.lists(tokens, max_size=5), st.one_of(st.none(), st.integers(-5, 2 * 10**9), st.booleans(),
                                                       st.text(max_size=3)))
def test_encode_request_gives_one_short_ascii_line_or_a_request_error(cmd, args, rid):
    try:
        line = encode_request(cmd, *args, req_id=rid)
    except RequestError as e:
        assert isinstance(e, PipelineError) and str(e) and "\n" not in str(e)
        return
    assert len(line) <= MAX_REQUEST_BYTES and line.endswith(b"\n") and line.count(b"\n") == 1
    assert all(0x20 <= c <= 0x7E for c in line[:-1]) and b"  " not in line
    assert line[:-1].split(b" ")[0] == str(cmd).encode()
    assert re.fullmatch(rb"[!-~]+( [!-~]+)*( @\d{1,9})?\n", line)


@FAST
@given(st.integers(-10, 10**6), st.binary(max_size=200), st.one_of(st.none(), st.integers(0, 999_999_999)))
def test_encode_load_refuses_empty_and_oversized_chunks(offset, chunk, rid):
    try:
        line = encode_load(offset, chunk, rid)
    except RequestError:
        assert not 1 <= len(chunk) <= 128 or offset < 0 or len(str(offset)) > 9
        return
    assert bytes.fromhex(line.split(b" ")[2].decode()) == chunk


# -------------------------------------------------------------------------------- client
class HostileSerial:
    """Stands in for a pyserial port: answers each request with ``reply(request_id)`` bytes,
    handed out in chunks of the given sizes, then silence (or ``endless`` bytes for ever)."""

    def __init__(self, reply, chunks, endless: bytes = b""):
        self.reply, self.chunks, self.endless = reply, chunks, endless
        self.out = bytearray()
        self.pending_seen = 0
        self.client: BoardClient | None = None

    def write(self, data: bytes) -> int:
        m = re.search(rb"@(\d+)\n$", data)
        if m:
            self.out += self.reply(int(m.group(1)))
        return len(data)

    @property
    def in_waiting(self) -> int:
        return min(len(self.out), self.chunks[len(self.out) % len(self.chunks)])

    def read(self, n: int) -> bytes:
        if self.client is not None:
            self.pending_seen = max(self.pending_seen, self.client._reader.pending)
        if not self.out:
            return self.endless[:n]
        data, self.out = bytes(self.out[:n]), self.out[n:]
        return data

    def close(self) -> None:
        pass


def _client(ser: HostileSerial, timeout: float, retries: int, max_line: int = 4096) -> BoardClient:
    c = BoardClient("hostile://", timeout=timeout, retries=retries, max_line=max_line)
    c._ser = ser  # already "open": open() keeps it
    ser.client = c
    return c


@settings(max_examples=CLIENT_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(payloads, damages(), st.binary(max_size=200), st.lists(st.integers(1, 300), min_size=1, max_size=5),
       st.sampled_from(["own", "other", "none"]))
def test_client_over_a_hostile_link_returns_the_reply_or_a_pipeline_error_in_time(payload, damage, noise, chunks,
                                                                                   which_id):
    """The board's reply to each request (with the request's id, another id or none) is damaged and
    comes after noise, in chunks: the client returns that reply when it is intact, else raises a
    PipelineError (a link error, or the board's error for ok:false), within its two tries."""
    kind, fn = damage
    payload = {**payload, "cmd": "mem"}

    def reply(rid: int) -> bytes:
        p = dict(payload)
        p.pop("id", None)
        if which_id != "none":
            p["id"] = rid if which_id == "own" else (rid + 7) % 999_999_999
        return noise.replace(b"\n", b"") + b"\n" + fn(frame_reply(p))

    ser = HostileSerial(reply, chunks)
    c = _client(ser, timeout=0.02, retries=1, max_line=1024)
    c._next_id = 1000  # deterministic ids: the same example gives the same bytes
    t0 = time.monotonic()
    try:
        r = c.request("mem")
        hypothesis.event("reply taken")
        assert r.ok and r.cmd == "mem" and r.id in (1000, 1001) and which_id == "own"
        assert kind in ("intact", "wrap", "oversize", "insert", "random")
    except (SerialLinkError, BoardError) as e:
        hypothesis.event(type(e).__name__)
        assert isinstance(e, PipelineError) and "\n" not in str(e)
        if isinstance(e, BoardError):
            assert payload["ok"] is False and which_id == "own"
    elapsed = time.monotonic() - t0
    assert elapsed < 2 * 0.02 + 1.0  # two tries of 20 ms, never a hang
    assert ser.pending_seen <= 1024
    if kind == "intact" and which_id == "own" and len(frame_reply({**payload, "id": 1000})) <= 1024:
        assert c.stats.replies == 1  # an intact frame of our own is always found


def test_client_facing_a_never_ending_line_times_out_with_bounded_memory():
    ser = HostileSerial(lambda rid: b"$" + b"9" * 100, [64], endless=b"7" * 4096)
    c = _client(ser, timeout=0.3, retries=0, max_line=2048)
    t0 = time.monotonic()
    with pytest.raises(SerialLinkError, match="no reply to 'mem'"):
        c.request("mem")
    assert time.monotonic() - t0 < 1.5
    assert ser.pending_seen <= 2048 and c.stats.overlong == 1 and c.stats.bytes_in > 2048
