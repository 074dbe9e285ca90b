"""The firmware's request parser and reply framing (firmware/src/link/protocol.c), compiled for the host
and fed good and hostile input; and compiled for the Cortex-M0+."""
import json
import random
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "firmware" / "src" / "link"
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("no host gcc to compile the protocol parser")
    exe = tmp_path_factory.mktemp("proto") / "driver"
    base = ["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-I", str(SRC), str(HERE / "protocol_driver.c"),
            str(SRC / "protocol.c"), str(SRC / "crc32.c"), "-o", str(exe)]
    r = subprocess.run(base[:1] + ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"] + base[1:],
                       capture_output=True, text=True)
    if r.returncode != 0:  # no sanitizer runtime: plain build
        r = subprocess.run(base, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


def run(driver, data: bytes, *args):
    r = subprocess.run([str(driver), *args], input=data, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    return r.stdout


def frames(out: bytes):
    """Parse and check every reply frame: `$<json>*<crc32>` per line."""
    res = []
    for line in out.decode("ascii").splitlines():
        if line == "none":
            res.append(None)
            continue
        assert line.startswith("$")
        payload, crc = line[1:].rsplit("*", 1)
        assert crc == f"{zlib.crc32(payload.encode()):08x}"
        res.append(json.loads(payload))
    return res


def one(driver, line: bytes):
    (reply,) = frames(run(driver, line + b"\n"))
    return reply


@pytest.mark.parametrize("line,code,name", [(b"info", 1, "info"), (b"mem", 2, "mem"), (b"profile", 4, "profile"),
                                            (b"golden", 5, "golden")])
def test_plain_commands(driver, line, code, name):
    r = one(driver, line)
    assert r["ok"] and r["code"] == code and r["cmd"] == name and "id" not in r


def test_arguments_ids_and_crlf(driver):
    assert one(driver, b"bench 25 @17\r") | {} == {"ok": True, "cmd": "bench", "id": 17, "code": 3, "n": 25,
                                                  "crc": 0, "data": ""}
    r = one(driver, b"load 6900 00ff10 @1")
    assert r["code"] == 6 and r["n"] == 6900 and r["data"] == "00ff10" and r["id"] == 1
    r = one(driver, b"infer 6912 DEADbeef")
    assert r["code"] == 7 and r["crc"] == 0xDEADBEEF
    assert one(driver, b"arena 0")["code"] == 8


def test_switching_commands(driver):
    assert one(driver, b"variants @3") | {} == {"ok": True, "cmd": "variants", "id": 3, "code": 9, "n": 0,
                                                "crc": 0, "data": ""}
    r = one(driver, b"select 7")
    assert r["code"] == 10 and r["n"] == 7  # the firmware checks the index against its variants
    r = one(driver, b"policy confidence 500")
    assert r["code"] == 11 and r["n"] == 0 and r["threshold"] == 500
    r = one(driver, b"policy margin 1000 @9")
    assert r["code"] == 11 and r["n"] == 1 and r["threshold"] == 1000 and r["id"] == 9
    assert one(driver, b"policy margin 0")["threshold"] == 0
    r = one(driver, b"auto 6912 0badcafe")
    assert r["code"] == 12 and r["cmd"] == "auto" and r["crc"] == 0x0BADCAFE and r["n"] == 6912


def test_cores_command(driver):
    r = one(driver, b"cores 1 @4")
    assert r["ok"] and r["code"] == 13 and r["cmd"] == "cores" and r["n"] == 1 and r["id"] == 4
    assert one(driver, b"cores 2")["n"] == 2  # the firmware checks the count against its cores
    for bad in (b"cores", b"cores x", b"cores 1 2", b"cores -1"):
        r = one(driver, bad)
        assert r["ok"] is False and r["err"] == "bad_arg" and "cores <1|2>" in r["msg"], bad


@pytest.mark.parametrize("line,err", [
    (b"variants 1", "bad_arg"), (b"select", "bad_arg"), (b"select x", "bad_arg"), (b"select -1", "bad_arg"),
    (b"select 1 2", "bad_arg"), (b"policy", "bad_arg"), (b"policy confidence", "bad_arg"),
    (b"policy top1 500", "bad_arg"), (b"policy confidence 1001", "range"), (b"policy margin 0.5", "bad_arg"),
    (b"policy confidence -1", "bad_arg"), (b"auto 6912", "bad_arg"), (b"auto 100 00000000", "range"),
    (b"auto 6912 xyz00000", "bad_arg"),
])
def test_bad_switching_requests_get_the_documented_error(driver, line, err):
    r = one(driver, line)
    assert r["ok"] is False and r["err"] == err and r["msg"]


@pytest.mark.parametrize("line,err", [
    (b"bogus", "unknown_cmd"), (b"info extra", "bad_arg"), (b"bench", "bad_arg"), (b"bench 0", "range"),
    (b"bench 1001", "range"), (b"bench -3", "bad_arg"), (b"bench 1234567890", "bad_arg"), (b"info  @1", "bad_arg"),
    (b"info @", "bad_arg"), (b"info @12a", "bad_arg"), (b"info ", "bad_arg"), (b" info", "bad_arg"),
    (b"load 0 abc", "bad_arg"), (b"load 0 zz", "bad_arg"), (b"load 6912 00", "range"), (b"load 6911 0000", "range"),
    (b"load 0 " + b"00" * 129, "range"), (b"infer 6912 1234567", "bad_arg"), (b"infer 6912 1234567g", "bad_arg"),
    (b"infer 100 00000000", "range"), (b"info\x00", "bad_arg"), (b"in\tfo", "bad_arg"), (b"\xff\xfe", "bad_arg"),
    (b"a b c d e f g", "bad_arg"),
])
def test_bad_requests_get_the_documented_error(driver, line, err):
    r = one(driver, line)
    assert r["ok"] is False and r["err"] == err and r["msg"]


def test_long_lines_are_cut_and_refused_then_the_next_line_works(driver):
    out = frames(run(driver, b"x" * 319 + b"\n" + b"load 0 " + b"ab" * 200 + b"\ninfo\n"))
    assert out[0]["err"] == "unknown_cmd"  # 319 bytes + newline = 320: still a line
    assert out[1]["err"] == "too_long"
    assert out[2]["cmd"] == "info" and out[2]["ok"]


def test_empty_lines_get_no_reply(driver):
    assert frames(run(driver, b"\n\r\n")) == [None, None]


def test_carriage_return_only_before_the_newline(driver):
    ok, mid, two = frames(run(driver, b"mem @5\r\nme\rm\ninfo\r\r\n"))
    assert ok["ok"] and ok["cmd"] == "mem" and ok["id"] == 5
    assert mid["err"] == "bad_arg"  # a CR inside a line is a non-printable byte, not dropped
    assert two["err"] == "bad_arg"  # only one CR before the newline is ignored


def test_the_carriage_return_counts_in_the_320_bytes(driver):
    body = b"bench 1 @4 " + b"x" * (318 - len(b"bench 1 @4 "))  # 318 bytes
    fits, over = frames(run(driver, body + b"\r\n" + body + b"y\r\n"))
    assert fits["err"] == "bad_arg"  # 320 bytes with CR and LF: a line, parsed
    assert over["err"] == "too_long"  # 321 bytes


def test_error_replies_always_get_a_reply_within_the_limit(driver):
    """A message that would take an error reply past the limit is replaced, never dropped or cut (the
    host waits for a reply); the short one goes out even under a limit too small for it."""
    msgs = [b"short", b"x" * 150, b"y" * 400, b'quote " and backslash \\ and star *']
    out = run(driver, b"\n".join(msgs) + b"\n", "error", "256").decode().splitlines()
    replies = frames("\n".join(out).encode())
    assert [r["msg"] for r in replies] == ["short", "x" * 150, "(message too long for the reply)",
                                           'quote " and backslash \\ and star *']
    assert all(r["id"] == 42 and r["err"] == "setup" and r["cmd"] == "info" for r in replies)
    assert all(len(line) - 10 <= 256 for line in out)  # payload = line - "$" - "*<crc>"
    (tiny,) = frames(run(driver, b"anything\n", "error", "11"))
    assert tiny["msg"] == "(message too long for the reply)" and tiny["err"] == "setup"


def test_arrays_of_objects_and_hex_strings(driver):
    (r,) = frames(run(driver, b"", "nested"))
    assert r == {"ok": True, "cmd": "profile", "ops": [{"op": "a\"b\\c\n", "us": 0}, {"op": "MEAN", "us": 1}],
                 "outputs": ["007fff", "00"], "empty": [], "total": 7}


def test_unsafe_command_names_are_not_echoed(driver):
    r = one(driver, b'"},{"evil')
    assert r["cmd"] == "?" and r["err"] == "unknown_cmd"


def test_framing_matches_zlib_crc32(driver):
    for value, payload in [(b"*", '{"ok":true,"cmd":"t","a":"*"}'), (b"", '{"ok":true,"cmd":"t","a":""}'),
                           (b"$*\n", '{"ok":true,"cmd":"t","a":"$*\\u000a"}')]:
        line = script(driver, [("begin", 1, b"t", None), ("str", b"a", value), ("end",)])
        assert line == f"${payload}*{zlib.crc32(payload.encode()):08x}\n".encode()


def test_random_bytes_never_crash_the_parser(driver):
    rng = random.Random(1234)
    alphabet = b"infoloadbench@ 0123456789abcdefxyz\n\r\x00\xff\t*$\""
    chunks = []
    for _ in range(3000):
        n = rng.randrange(0, 400)
        if rng.random() < 0.5:
            chunks.append(bytes(rng.choice(alphabet) for _ in range(n)))
        else:
            chunks.append(bytes(rng.randrange(256) for _ in range(n)))
    data = b"\n".join(chunks) + b"\n"
    replies = frames(run(driver, data))
    assert len(replies) == data.count(b"\n")


# ------------------------------------------------------------------ streamed replies
# The firmware streams each reply through a small chunk buffer. The driver keeps the writer that
# built whole payloads in a 2 KB buffer before (verbatim, `old_*`): for every reply within the limit
# the streamed frame must be the old frame byte for byte, whatever the chunk size.
LIMIT = 2048
OLD_PAYLOAD_CAP = LIMIT + 1  # the old firmware built payloads with this cap (a NUL after them)
OLD_FIRMWARE_CAP = 1 + LIMIT + 11 + 1  # and framed them, and error replies, in this buffer (g_frame)
TOO_LONG = "(message too long for the reply)"


def _h(b: bytes | None) -> str:
    return "-" if b is None else b.hex() or "="


def script_text(ops) -> bytes:
    lines = []
    for op in ops:
        kind = op[0]
        if kind == "begin":
            lines.append(f"begin {op[1]} {_h(op[2])}" + ("" if op[3] is None else f" {op[3]}"))
        elif kind in ("int", "bool"):
            lines.append(f"{kind} {_h(op[1])} {int(op[2])}")
        elif kind in ("str", "hex"):
            lines.append(f"{kind} {_h(op[1])} {_h(op[2])}")
        elif kind == "open":
            lines.append(f"open {_h(op[1])} {op[2]}")
        elif kind == "close":
            lines.append(f"close {op[1]}")
        elif kind == "end":
            lines.append("end")
        elif kind == "fail":
            lines.append(f"fail {_h(op[1])} {_h(op[2])}")
    return ("\n".join(lines) + "\n").encode()


def script(driver, ops, chunk="64", limit=LIMIT) -> bytes:
    """The frame the streaming writer sends for ``ops`` (``chunk``: a size or a range ``lo-hi``, over
    which the driver checks that every frame is the same)."""
    return run(driver, script_text(ops), "script", str(chunk), str(limit))


def old(driver, ops, cap=1 << 20):
    """The old writer: (its frame or None when the payload overflowed ``cap``, payload offsets after
    each op)."""
    out = run(driver, script_text(ops), "old", str(cap))
    head, offsets = out.rstrip(b"\n").rsplit(b"\n", 1)
    return (None if head == b"overflow" else head + b"\n"), [int(x) for x in offsets.split()]


def escape(b: bytes) -> str:
    """A C string as protocol.c quotes it."""
    out = []
    for c in b:
        if c in (0x22, 0x5C):
            out.append("\\" + chr(c))
        elif c < 0x20 or c > 0x7E:
            out.append(f"\\u{c:04x}")
        else:
            out.append(chr(c))
    return '"' + "".join(out) + '"'


def expected_frame(full_payload: bytes, offsets, ops, limit: int) -> bytes:
    """A model of docs/protocol.md's cut, from the old writer's whole payload: the header, then every
    field that ends within ``limit`` bytes up to the first that does not (or an open past 16 levels);
    then its open brackets closed and the error ending (``fail``: the caller's error)."""
    stack = ["{"]
    kept = offsets[0]
    cut = False
    for i, op in enumerate(ops[1:], 1):
        if op[0] == "fail":
            break
        if (op[0] == "open" and len(stack) >= 16) or offsets[i] > limit:
            cut = True
            break
        kept = offsets[i]
        if op[0] == "open":
            stack.append(op[2])
        elif op[0] == "close" and len(stack) > 1:
            stack.pop()
    if ops[-1][0] == "end" and not cut:
        return b"$" + full_payload + b"*%08x\n" % zlib.crc32(full_payload)
    if ops[-1][0] == "fail":
        err, msg = ops[-1][1], ops[-1][2]
        if len(escape(err)) + len(escape(msg)) > 128:
            msg = TOO_LONG.encode()
        if len(escape(err)) + len(escape(msg)) > 128:
            err = b"range"
    else:
        err = b"range"
        msg = (f"reply of {len(full_payload)} bytes is over the {limit}-byte limit: the fields after byte "
               f"{kept} were left out").encode()
    closers = "".join("}" if b == "{" else "]" for b in reversed(stack[1:]))
    payload = full_payload[:kept] + (closers + ',"ok":false,"err":' + escape(err) + ',"msg":' + escape(msg)
                                     + "}").encode()
    return b"$" + payload + b"*%08x\n" % zlib.crc32(payload)


def random_bytes(rng, n):
    pool = b'abcxyz_019 "\\*$\n\t\x01\x7f\x80\xff{}[],:'
    return bytes(rng.choice(pool) if rng.random() < 0.7 else rng.randrange(1, 256) for _ in range(n))


def random_ops(rng, size=40, max_depth=4, ending="end"):
    """A valid reply: fields with awkward keys and strings, nested arrays and objects, hex blobs."""
    ops = [("begin", rng.randrange(2), rng.choice([b"golden", b"x", b"info"]),
            rng.choice([None, 0, 7, 999_999_999]))]
    stack = ["{"]
    for _ in range(rng.randrange(size)):
        in_object = stack[-1] == "{"
        key = random_bytes(rng, rng.randrange(0, 12)) if in_object else None
        r = rng.random()
        if r < 0.15 and len(stack) < max_depth:
            b = rng.choice("[{")
            ops.append(("open", key, b))
            stack.append(b)
        elif r < 0.25 and len(stack) > 1:
            ops.append(("close", "}" if stack.pop() == "{" else "]"))
        elif r < 0.4:
            ops.append(("int", key, rng.choice([0, -1, 2**63 - 1, -2**63, rng.randrange(-10**9, 10**9)])))
        elif r < 0.5:
            ops.append(("bool", key, rng.randrange(2)))
        elif r < 0.75:
            ops.append(("str", key, random_bytes(rng, rng.choice([0, 1, 5, 40, 300]))))
        else:
            ops.append(("hex", key, bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 6, 64, 400])))))
    while len(stack) > 1:
        ops.append(("close", "}" if stack.pop() == "{" else "]"))
    if ending == "fail":
        ops.append(("fail", random_bytes(rng, rng.randrange(1, 12)), random_bytes(rng, rng.randrange(0, 200))))
    else:
        ops.append(("end",))
    return ops


GOLDEN_LIKE = ([("begin", 1, b"golden", 123)] + [("open", b"outputs", "[")]
               + [("hex", None, bytes(range(i, i + 6))) for i in range(8)] + [("close", "]")]
               + [("int", b"count", 8), ("int", b"exact", 8), ("int", b"max_diff", 0), ("int", b"top1_agree", 8),
                  ("end",)])


def test_streamed_frame_is_the_old_frame_for_every_chunk_size(driver):
    """Chunk boundaries fall on every byte of the frame: sizes 0 (no buffer) to past its length."""
    want, _ = old(driver, GOLDEN_LIKE, OLD_PAYLOAD_CAP)
    assert want is not None and len(want) < 300
    assert script(driver, GOLDEN_LIKE, f"0-{len(want) + 2}") == want
    frames(want)


def test_random_replies_are_the_old_frames(driver):
    rng = random.Random(2048)
    checked = 0
    for _ in range(60):
        ops = random_ops(rng, size=rng.choice([5, 20, 40]))
        want, _ = old(driver, ops, OLD_PAYLOAD_CAP)
        if want is None:
            continue  # over the limit: test_replies_over_the_limit_are_cut
        got = script(driver, ops, rng.choice(["1-9", "60-70", "120-130", "0-0", "2047-2049"]))
        assert got == want
        json.loads(want[1:want.rindex(b"*")])  # and it is JSON
        checked += 1
    assert checked > 30


def test_escaped_and_long_strings_up_to_exactly_the_limit(driver):
    """A payload of exactly 2,048 bytes goes out whole (as before); one byte more is cut."""
    head = [("begin", 1, b"info", 5), ("str", b"k\x01\"", b"\\\"\n\x7f\xff" * 40)]
    _, offsets = old(driver, head + [("str", b"pad", b""), ("end",)])
    base = offsets[-1]  # with an empty pad
    for extra in (-1, 0, 1):
        n = LIMIT - base + extra
        ops = head + [("str", b"pad", b"a" * (n - 4) + b'"\\'), ("end",)]  # n bytes, two escapes last
        full, offs = old(driver, ops)
        assert offs[-1] == LIMIT + extra
        want, _ = old(driver, ops, OLD_PAYLOAD_CAP)
        got = script(driver, ops, "61-67")
        if extra <= 0:
            assert want == full and got == want
        else:
            assert want is None  # the old firmware answered error range; now the reply is cut
            assert got == expected_frame(full[1:full.rindex(b"*")], offs, ops, LIMIT)
            assert got.startswith(full[:offs[1] + 1]) and b',"ok":false,"err":"range"' in got


def test_replies_over_the_limit_are_cut_and_read_as_error_range(driver):
    from pipeline.board.protocol import check_reply_line

    rng = random.Random(7)
    cases = [(GOLDEN_LIKE, 150), (GOLDEN_LIKE, 61), (GOLDEN_LIKE, 0)]
    golden_big = ([("begin", 1, b"golden", 9), ("open", b"outputs", "[")]
                  + [("hex", None, bytes(200)) for _ in range(6)] + [("close", "]"), ("int", b"count", 6), ("end",)])
    cases.append((golden_big, LIMIT))
    for _ in range(40):
        ops = random_ops(rng, size=60, max_depth=6)
        _, offsets = old(driver, ops)
        cases.append((ops, rng.randrange(offsets[0], offsets[-1] + 2)))
    cut = 0
    for ops, limit in cases:
        full, offsets = old(driver, ops)
        payload = full[1:full.rindex(b"*")]
        want = expected_frame(payload, offsets, ops, limit)
        got = script(driver, ops, rng.choice(["1-3", "64", "0"]), limit)
        assert got == want, (limit, ops)
        reply, why = check_reply_line(got)  # the host, unchanged, reads it
        assert why == "ok"
        if len(payload) > limit:
            cut += 1
            assert reply.ok is False and reply.err == "range" and "limit" in reply.msg
            assert len(got) - 11 <= max(limit, offsets[0]) + (16 - 1) + 18 + 7 + 128 + 1  # PTF_TAIL_MAX
        else:
            assert got == full
    assert cut > 30


def test_an_error_after_fields_went_out_ends_the_reply(driver):
    """golden's Invoke failing after some outputs were sent: the reply closes and ends as the error."""
    from pipeline.board.protocol import check_reply_line

    ops = GOLDEN_LIKE[:5] + [("fail", b"invoke", b"Invoke failed on a golden input")]
    got = script(driver, ops, "1-40")
    payload = got[1:got.rindex(b"*")]
    assert payload.startswith(b'{"ok":true,"cmd":"golden","id":123,"outputs":["000102030405"')
    assert payload.endswith(b'"],"ok":false,"err":"invoke","msg":"Invoke failed on a golden input"}')
    reply, _ = check_reply_line(got)
    assert (reply.ok, reply.err, reply.msg) == (False, "invoke", "Invoke failed on a golden input")
    rng = random.Random(3)
    for _ in range(30):
        ops = random_ops(rng, ending="fail")
        full, offsets = old(driver, ops[:-1] + [("end",)])
        payload = full[1:full.rindex(b"*")]
        limit = rng.choice([LIMIT, rng.randrange(offsets[0], offsets[-1] + 1)])
        # The old writer's offsets up to where the fail comes: the model keeps the fields before it.
        assert script(driver, ops, "5", limit) == expected_frame(payload, offsets, ops, limit)


def test_nesting_deeper_than_16_levels_is_cut(driver):
    ops = [("begin", 1, b"x", None)] + [("open", b"a", "{")] * 20 + [("close", "}")] * 20 + [("end",)]
    full, offsets = old(driver, ops)
    got = script(driver, ops)
    assert got == expected_frame(full[1:full.rindex(b"*")], offsets, ops, LIMIT)
    assert json.loads(got[1:got.rindex(b"*")])["err"] == "range"


def test_error_replies_are_the_old_ones(driver):
    """Error replies stream too: the same bytes as the old firmware's (its 2,061-byte frame buffer)
    for every message, but for a payload of exactly 2,049 bytes, which the old buffer let through
    (one past the limit) and which now gets the short message."""
    fixed = len('{"ok":false,"cmd":"info","id":42,"err":"setup","msg":""}')
    lengths = [0, 1, 100, LIMIT - fixed - 1, LIMIT - fixed, LIMIT - fixed + 1, LIMIT - fixed + 2, 3000]
    msgs = [b"m" * n for n in lengths] + [b'\x01"\xff' * 300, b"\\" * ((LIMIT - fixed) // 2),
                                          b"\\" * ((LIMIT - fixed) // 2 + 1)]  # escaped: 2 bytes each
    data = b"\n".join(msgs) + b"\n"
    new = run(driver, data, "error", str(LIMIT)).splitlines()
    was = run(driver, data, "old-error", str(OLD_FIRMWARE_CAP)).splitlines()
    assert len(new) == len(was) == len(msgs)
    at_2049 = 0
    for n_msg, a, b in zip(msgs, new, was):
        if len(b) - 10 == LIMIT + 1:  # payload = line - "$" - "*<crc>"
            at_2049 += 1
            assert TOO_LONG.encode() in a and TOO_LONG.encode() not in b
        else:
            assert a == b, n_msg[:20]
    assert at_2049 == 1 and sum(TOO_LONG.encode() in a for a in new) == 5


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
def test_parser_compiles_for_cortex_m0plus(tmp_path):
    for src in ("protocol.c", "crc32.c"):
        r = subprocess.run(["arm-none-eabi-gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-mcpu=cortex-m0plus",
                            "-mthumb", "-Os", "-c", str(SRC / src), "-o", str(tmp_path / (src + ".o"))],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
