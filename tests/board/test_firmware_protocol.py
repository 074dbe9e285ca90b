"""The two sides of docs/protocol.md against each other: the firmware's own parser and framer
(firmware/src/link/protocol.c, plain C) compiled for the host with a small harness, fed the requests
this host encodes; its replies parsed by this host. Skipped without a C compiler or those sources."""
from __future__ import annotations

import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from pipeline.board.protocol import LineReader, encode_load, encode_request, parse_reply_line

SRC = Path(__file__).resolve().parents[2] / "firmware" / "src" / "link"

HARNESS = r"""
#include <stdio.h>
#include "protocol.h"

static void write_stdout(void* ctx, const char* data, uint32_t len) { (void)ctx; fwrite(data, 1, len, stdout); }

/* Reads request bytes on stdin; for each line, the reply the parse gives, framed and streamed as the
   firmware streams it (through a 64-byte chunk). */
int main(void) {
  ptf_line_t line; ptf_request_t r; char chunk[64]; ptf_json_t j;
  const ptf_out_t out = {write_stdout, NULL, chunk, sizeof chunk, PTF_PAYLOAD_MAX};
  ptf_line_reset(&line);
  int c;
  while ((c = getchar()) != EOF) {
    if (!ptf_line_feed(&line, c)) continue;
    ptf_parse(line.buf, line.len, line.overflow, 300, &r);
    ptf_line_reset(&line);
    if (r.cmd == PTF_CMD_NONE) continue;
    if (r.cmd == PTF_CMD_ERROR) {
      ptf_error_reply(&out, &r, r.err, r.msg);
    } else {
      ptf_json_begin(&j, &out, 1, r.name, &r);
      ptf_json_int(&j, "kind", r.cmd);
      ptf_json_int(&j, "n", r.n);
      ptf_json_int(&j, "crc", r.crc);
      ptf_json_hex(&j, "data", r.data, r.data_len);
      ptf_json_str(&j, "text", "quote \" backslash \\ star * dollar $ tab \t");
      ptf_json_end(&j);
    }
    fflush(stdout);
  }
  return 0;
}
"""


@pytest.fixture(scope="module")
def firmware_parser(tmp_path_factory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler on PATH")
    if not (SRC / "protocol.c").is_file() or not (SRC / "crc32.c").is_file():
        pytest.skip("firmware/src/link/protocol.c not there")
    d = tmp_path_factory.mktemp("fwproto")
    (d / "harness.c").write_text(HARNESS)
    exe = d / "harness"
    r = subprocess.run([cc, "-std=c99", "-O1", "-Wall", "-I", str(SRC), str(d / "harness.c"), str(SRC / "protocol.c"),
                        str(SRC / "crc32.c"), "-o", str(exe)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"the firmware's protocol.c does not build for the host:\n{r.stderr[-3000:]}")
    return exe


def talk(exe: Path, data: bytes) -> list:
    out = subprocess.run([str(exe)], input=data, capture_output=True, timeout=10).stdout
    reader = LineReader()
    lines = reader.feed(out)
    assert reader.pending == 0, "a reply without its newline"
    return [parse_reply_line(ln) for ln in lines]


def test_every_request_this_host_sends_parses_on_the_board(firmware_parser):
    frame = bytes(range(256)) + bytes(range(44))
    reqs = [encode_request("info", req_id=1), encode_request("mem", req_id=22), encode_request("bench", 1000, req_id=3),
            encode_request("profile", req_id=999_999_999), encode_request("golden", req_id=5),
            encode_load(172, frame[172:300], req_id=999_999_998),
            encode_request("infer", 300, f"{zlib.crc32(frame):08x}", req_id=7), encode_request("arena", 0, req_id=8)]
    replies = talk(firmware_parser, b"".join(reqs))
    assert all(r is not None for r in replies), "a reply frame the host cannot parse"
    assert [(r.ok, r.cmd, r.id) for r in replies] == [
        (True, "info", 1), (True, "mem", 22), (True, "bench", 3), (True, "profile", 999_999_999),
        (True, "golden", 5), (True, "load", 999_999_998), (True, "infer", 7), (True, "arena", 8)]
    assert replies[2]["n"] == 1000
    assert (replies[5]["n"], bytes.fromhex(replies[5]["data"])) == (172, frame[172:300])
    assert replies[6]["crc"] == zlib.crc32(frame)
    assert replies[0]["text"] == "quote \" backslash \\ star * dollar $ tab \t"  # escapes; '*' inside: last '*' splits


def test_the_longest_request_fits_and_one_byte_more_is_too_long(firmware_parser):
    longest = encode_load(99_999, bytes(128), req_id=999_999_999)
    assert len(longest) <= 320
    head = b"bench 1 @4 "
    just = head + b"x" * (320 - len(head) - 1) + b"\n"  # 320 bytes with the newline
    over = head + b"x" * (320 - len(head)) + b"\n"
    r_long, r_just, r_over = talk(firmware_parser, longest + just + over)
    assert r_long.err == "range" and r_long.id == 999_999_999  # offset past a 300-byte input: parsed, then refused
    assert r_just.err == "bad_arg" and not r_just.ok
    assert (r_over.ok, r_over.err) == (False, "too_long")


def test_board_errors_reach_the_host_with_code_and_id(firmware_parser):
    replies = talk(firmware_parser, encode_request("frobnicate", req_id=9) + encode_request("bench", 0, req_id=10)
                   + b"\n" + encode_request("infer", 299, "00000000", req_id=11))
    assert [(r.cmd, r.id, r.err) for r in replies] == [("frobnicate", 9, "unknown_cmd"), ("bench", 10, "range"),
                                                       ("infer", 11, "range")]
