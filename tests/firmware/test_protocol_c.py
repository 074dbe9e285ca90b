"""The firmware's request parser and reply framing (firmware/src/protocol.c), compiled for the host
and fed good and hostile input; and compiled for the Cortex-M0+."""
import json
import random
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "firmware" / "src"
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


def test_error_replies_always_fit_their_buffer(driver):
    """A message too long for the reply buffer is replaced, never dropped (the host waits for a reply)."""
    msgs = [b"short", b"x" * 150, b"y" * 400, b'quote " and backslash \\ and star *']
    out = run(driver, b"\n".join(msgs) + b"\n", "error", "256").decode().splitlines()
    replies = frames("\n".join(out).encode())
    assert [r["msg"] for r in replies] == ["short", "x" * 150, "(message too long for the reply)",
                                           'quote " and backslash \\ and star *']
    assert all(r["id"] == 42 and r["err"] == "setup" and r["cmd"] == "info" for r in replies)
    assert all(len(line) <= 256 - 1 for line in out)  # the frame and its NUL fit the buffer
    assert run(driver, b"anything\n", "error", "11") == b"none\n"  # not even a frame fits: nothing


def test_arrays_of_objects_and_hex_strings(driver):
    (r,) = frames(run(driver, b"", "nested"))
    assert r == {"ok": True, "cmd": "profile", "ops": [{"op": "a\"b\\c\n", "us": 0}, {"op": "MEAN", "us": 1}],
                 "outputs": ["007fff", "00"], "empty": [], "total": 7}


def test_unsafe_command_names_are_not_echoed(driver):
    r = one(driver, b'"},{"evil')
    assert r["cmd"] == "?" and r["err"] == "unknown_cmd"


def test_framing_matches_zlib_crc32(driver):
    payloads = [b'{"ok":true}', b'{"a":"*"}', b"{}"]
    out = run(driver, b"\n".join(payloads) + b"\n", "frame").decode().splitlines()
    for p, line in zip(payloads, out):
        assert line == f"${p.decode()}*{zlib.crc32(p):08x}"


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


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
def test_parser_compiles_for_cortex_m0plus(tmp_path):
    for src in ("protocol.c", "crc32.c"):
        r = subprocess.run(["arm-none-eabi-gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-mcpu=cortex-m0plus",
                            "-mthumb", "-Os", "-c", str(SRC / src), "-o", str(tmp_path / (src + ".o"))],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
