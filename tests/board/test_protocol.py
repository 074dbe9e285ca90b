"""Framing of protocol version 1: requests, reply frames, corrupted lines, the bounded line reader."""
from __future__ import annotations

import json
import zlib

import pytest

from pipeline.board.protocol import (
    MAX_REPLY_LINE,
    MAX_REQUEST_BYTES,
    LineReader,
    Reply,
    RequestError,
    check_reply_line,
    crc32_hex,
    encode_load,
    encode_request,
    frame_reply,
    id_of_bad_frame,
    parse_reply_line,
)
from pipeline.errors import PipelineError


# ------------------------------------------------------------------------------ requests
def test_requests_are_one_ascii_line_with_the_id_last():
    assert encode_request("info") == b"info\n"
    assert encode_request("bench", 10, req_id=7) == b"bench 10 @7\n"
    assert encode_request("infer", 300, "0a1b2c3d", req_id=999_999_999) == b"infer 300 0a1b2c3d @999999999\n"


@pytest.mark.parametrize("cmd,args,rid", [
    ("", (), None), ("be nch", (), None), ("bench", ("1 0",), None), ("bench", ("",), None),
    ("info", ("\u00e9",), None), ("info", ("a\nb",), None), ("info", (), 10**9), ("info", (), -1),
    ("info", (True,), None), ("info", (1.5,), None), ("info", ("@5",), None), ("@5", (), None),
])
def test_bad_requests_raise_a_value_error_that_is_a_pipeline_error(cmd, args, rid):
    with pytest.raises(RequestError) as e:
        encode_request(cmd, *args, req_id=rid)
    assert isinstance(e.value, ValueError) and isinstance(e.value, PipelineError)


def test_request_length_limit_counts_the_newline():
    head = "load 0 "
    fits = head + "a" * (MAX_REQUEST_BYTES - len(head) - 1)
    assert len(encode_request(*fits.split(" "))) == MAX_REQUEST_BYTES
    with pytest.raises(RequestError, match="320"):
        encode_request(*(fits + "a").split(" "))


def test_the_largest_load_with_the_largest_id_fits():
    line = encode_load(99_999, bytes(range(128)), req_id=999_999_999)
    assert len(line) <= MAX_REQUEST_BYTES
    assert line.startswith(b"load 99999 000102") and line.endswith(b" @999999999\n")
    with pytest.raises(RequestError):
        encode_load(0, bytes(129))
    with pytest.raises(RequestError):
        encode_load(0, b"")


# -------------------------------------------------------------------------------- replies
def test_frame_matches_a_hand_computed_crc():
    body = b'{"ok":true,"cmd":"mem","id":3}'
    assert frame_reply({"ok": True, "cmd": "mem", "id": 3}) == b"$" + body + b"*%08x\n" % zlib.crc32(body)
    assert crc32_hex(b"123456789") == "cbf43926"  # the CRC-32 check value


def test_round_trip():
    payload = {"ok": True, "cmd": "bench", "id": 42, "runs": 10, "median_us": 32412, "ops": [{"op": "CONV_2D"}]}
    r = parse_reply_line(frame_reply(payload))
    assert r == Reply(ok=True, cmd="bench", id=42, payload=payload)
    assert r["median_us"] == 32412 and r.get("nope", 5) == 5
    assert r.figures() == {"runs": 10, "median_us": 32412, "ops": [{"op": "CONV_2D"}]}
    err = parse_reply_line(frame_reply({"ok": False, "cmd": "?", "err": "unknown_cmd", "msg": "unknown command x"}))
    assert (err.ok, err.cmd, err.id, err.err, err.msg) == (False, "?", None, "unknown_cmd", "unknown command x")


def test_crlf_uppercase_crc_and_star_inside_payload():
    payload = {"ok": False, "cmd": "infer", "err": "crc", "msg": "a*b*c"}
    line = frame_reply(payload)
    assert parse_reply_line(line.rstrip(b"\n") + b"\r\n").msg == "a*b*c"  # split at the LAST '*'
    head, crc = line.rstrip(b"\n").rsplit(b"*", 1)
    assert parse_reply_line(head + b"*" + crc.upper()) is not None


GOOD = frame_reply({"ok": True, "cmd": "mem", "id": 5, "arena_used": 13668})


def _flip(line: bytes, i: int, bit: int = 0) -> bytes:
    return line[:i] + bytes([line[i] ^ (1 << bit)]) + line[i + 1:]


@pytest.mark.parametrize("line,reason", [
    (b"", "empty"),
    (b"\r\n", "empty"),
    (b"booting picotflm...\r\n", "not_frame"),
    (GOOD[1:], "not_frame"),  # missing '$'
    (GOOD.replace(b"*", b"#"), "not_frame"),  # missing '*'
    (GOOD[:-5] + b"\n", "bad_crc"),  # crc cut short
    (GOOD[:20] + b"\n", "not_frame"),  # half frame
    (GOOD.rsplit(b"*", 1)[0] + b"*00000000\n", "bad_crc"),
    (GOOD.rsplit(b"*", 1)[0] + b"*zzzzzzzz\n", "bad_crc"),
    (b"$not json*" + crc32_hex(b"not json").encode() + b"\n", "bad_json"),
    (b"$[1,2]*" + crc32_hex(b"[1,2]").encode() + b"\n", "bad_fields"),
    (b'${"ok":1,"cmd":"x"}*' + crc32_hex(b'{"ok":1,"cmd":"x"}').encode(), "bad_fields"),
    (b'${"ok":true}*' + crc32_hex(b'{"ok":true}').encode(), "bad_fields"),
    (b'${"ok":true,"cmd":"x","id":-1}*' + crc32_hex(b'{"ok":true,"cmd":"x","id":-1}').encode(), "bad_fields"),
    (b'${"ok":true,"cmd":"x","id":true}*' + crc32_hex(b'{"ok":true,"cmd":"x","id":true}').encode(), "bad_fields"),
    (b'${"ok":true,"cmd":"x","v":NaN}*' + crc32_hex(b'{"ok":true,"cmd":"x","v":NaN}').encode(), "bad_json"),
    ("${\"ok\":true,\"cmd\":\"\u00e9\"}*".encode() + crc32_hex("{\"ok\":true,\"cmd\":\"\u00e9\"}".encode()).encode(),
     "bad_json"),  # non-ASCII payload, even with a right checksum
    (b"\xff\xfe$\x00\x80garbage*12345678", "bad_crc"),
])
def test_corrupted_lines_are_none_with_a_reason(line, reason):
    assert parse_reply_line(line) is None
    assert check_reply_line(line) == (None, reason)


def test_every_single_bit_flip_is_caught():
    for i in range(len(GOOD) - 1):  # not the newline
        for bit in range(8):
            r = parse_reply_line(_flip(GOOD, i, bit))
            assert r is None or r == parse_reply_line(GOOD), (i, bit)


def test_every_truncation_is_none():
    for n in range(len(GOOD) - 1):
        assert parse_reply_line(GOOD[:n]) is None


def test_garbage_before_a_frame_on_the_same_line_is_skipped():
    assert parse_reply_line(b"boot ok $$ x" + GOOD).id == 5
    assert check_reply_line(b"noise" + _flip(GOOD, 12))[1] == "bad_crc"


def test_huge_and_deep_lines_never_raise():
    assert check_reply_line(b"$" + b"x" * (1 << 20) + b"*00000000\n") == (None, "too_long")
    deep = b"[" * 50_000 + b"]" * 50_000
    line = b"$" + deep + b"*" + crc32_hex(deep).encode()
    assert check_reply_line(line, max_len=1 << 20) == (None, "bad_json")  # RecursionError caught
    big = b'{"ok":true,"cmd":"x","n":' + b"9" * 10_000 + b"}"
    assert check_reply_line(b"$" + big + b"*" + crc32_hex(big).encode())[0] is None  # int digit limit
    assert check_reply_line(None) == (None, "not_frame")  # type: ignore[arg-type]


def test_id_of_a_bad_frame():
    assert id_of_bad_frame(_flip(GOOD, 4)) == 5
    assert id_of_bad_frame(b'${"ok":true,"cmd":"mem"}*00000000') is None


def test_fuzz_never_raises_fixed_seed():
    import random

    rnd = random.Random(1234)
    pieces = [GOOD, b"$", b"*", b"\n", b"{", b"}", b'"id":', b"\xff", b"\x00", b"ok", b"12345678"]
    for _ in range(3000):
        line = b"".join(rnd.choice(pieces) if rnd.random() < 0.6 else bytes([rnd.randrange(256)])
                        for _ in range(rnd.randrange(1, 30)))
        r = parse_reply_line(line)
        assert r is None or isinstance(r, Reply)


def test_property_parse_never_raises():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=400, deadline=None, database=None)
    @hypothesis.given(st.one_of(st.binary(max_size=400),
                                st.builds(lambda a, b: a + GOOD + b, st.binary(max_size=20), st.binary(max_size=20)),
                                st.builds(lambda i, x: GOOD[:i] + x + GOOD[i:], st.integers(0, len(GOOD)),
                                          st.binary(min_size=1, max_size=4))))
    def check(data):
        r = parse_reply_line(data)
        assert r is None or isinstance(r, Reply)

    check()


def test_property_round_trip_of_payloads():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    scalars = st.one_of(st.integers(-2**31, 2**31), st.text(max_size=20), st.booleans(), st.none())
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                          max_leaves=12)

    @hypothesis.settings(max_examples=200, deadline=None, database=None)
    @hypothesis.given(st.dictionaries(st.text(max_size=10), values, max_size=6), st.booleans(), st.text(max_size=10),
                      st.one_of(st.none(), st.integers(0, 999_999_999)))
    def check(extra, ok, cmd, rid):
        payload = {**extra, "ok": ok, "cmd": cmd}
        payload.pop("id", None); payload.pop("err", None); payload.pop("msg", None)
        if rid is not None:
            payload["id"] = rid
        line = frame_reply(payload)
        assert line.isascii() and line.count(b"\n") == 1
        r = parse_reply_line(line)
        assert r is not None and r.payload == json.loads(json.dumps(payload)) and r.id == rid

    check()


# ----------------------------------------------------------------------------- line reader
def test_line_reader_splits_across_chunks():
    lr = LineReader()
    assert lr.feed(b"ab") == []
    assert lr.feed(b"c\nde\n\nf") == [b"abc", b"de", b""]
    assert lr.pending == 1
    assert lr.feed(b"\n") == [b"f"]


def test_line_reader_drops_a_line_at_the_limit_without_growing():
    lr = LineReader(max_line=16)
    assert lr.feed(b"x" * 10) == []
    assert lr.feed(b"y" * 10) == [] and lr.pending == 0 and lr.overlong == 1
    for _ in range(1000):  # a never-ending line stays dropped
        assert lr.feed(b"z" * 100) == []
        assert lr.pending == 0
    assert lr.feed(b"tail\nok\n") == [b"ok"]
    assert lr.overlong == 1
    assert lr.feed(b"a" * 16 + b"\n" + b"b" * 17 + b"\nc\n") == [b"a" * 16, b"c"]
    assert lr.overlong == 2


def test_line_reader_one_megabyte_line():
    lr = LineReader()
    lines = lr.feed(b"$" + b"9" * (1 << 20) + b"\n" + GOOD)
    assert lines == [GOOD.rstrip(b"\n")] and lr.overlong == 1 and lr.max_line == MAX_REPLY_LINE
