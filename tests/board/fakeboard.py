"""A fake picotflm board: the protocol of docs/protocol.md in Python, behind a pty.

``FakeBoard().port`` is the slave side of a raw pty (``/dev/pts/N``); a thread answers on the
master side, so :class:`~pipeline.board.client.BoardClient` opens it exactly like a real port.
Its figures are fixed and plausible (MicroPizzaNet-like int8 on the emulated Pico). Knobs make it
misbehave: boot silence, garbage and half frames before replies, corrupted checksums, stale
replies with old ids, replies without ids, silence on chosen commands.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import select
import threading
import tty
import termios
import zlib
from typing import Any

from pipeline.board.protocol import frame_reply

MODEL_HASH = "3f2a9c0d4b1e5a77"
CYCLES = 4_051_408
CLOCK = 125_000_000
_ID_RE = re.compile(r"^@(\d{1,9})$")


class FakeBoard:
    def __init__(self, *, proto: int = 1, model_hash: str = MODEL_HASH, status: str = "ready", setup_error: str = "",
                 image: str = "emulator", input_bytes: int = 300, output_bytes: int = 6, golden_count: int = 4,
                 arena_size: int = 16384, min_arena: int = 13680, boot_ignore: int = 0, garbage: bytes = b"",
                 corrupt: dict[str, int] | None = None, stale: bool = False, echo_id: bool = True,
                 silent: set[str] | bool = False, corrupt_loads: int = 0, omit: dict[str, list[str]] | None = None,
                 arena_alloc_error: bool = False, delay: dict[str, float] | None = None):
        self.proto, self.model_hash, self.status, self.setup_error = proto, model_hash, status, setup_error
        self.image = image
        self.input_bytes, self.output_bytes, self.golden_count = input_bytes, output_bytes, golden_count
        self.arena_size, self.arena_limit, self.min_arena = arena_size, arena_size, min_arena
        self.boot_ignore = boot_ignore  # requests swallowed while "booting"
        self.garbage = garbage  # written before every reply
        self.corrupt = dict(corrupt or {})  # cmd -> how many of its replies get a wrong checksum
        self.stale = stale  # before each reply, a valid reply with an older id and other figures
        self.echo_id = echo_id
        self.silent = silent  # True: never answer; a set: never answer these commands
        self.corrupt_loads = corrupt_loads  # loads whose bytes are stored with one bit flipped
        self.omit = omit or {}  # cmd -> fields left out of its reply
        self.arena_alloc_error = arena_alloc_error  # a too-small `arena` answers error alloc (not ok:false fields)
        self.delay = dict(delay or {})  # cmd -> seconds the board "works" before answering
        self.requests: list[str] = []
        self.input = bytearray(input_bytes)
        self.invokes = 0
        self.golden_inputs = [bytes((i * 7 + j) % 256 for j in range(input_bytes)) for i in range(golden_count)]

        self._master, self._slave = os.openpty()
        tty.setraw(self._slave, termios.TCSANOW)
        attrs = termios.tcgetattr(self._slave)
        attrs[3] &= ~(termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)
        termios.tcsetattr(self._slave, termios.TCSANOW, attrs)
        self.port = os.ttyname(self._slave)
        os.set_blocking(self._master, False)
        self._out = bytearray()  # bytes for the host, written by the serving thread as the pty takes them
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fakeboard", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "FakeBoard":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def write_raw(self, data: bytes) -> None:
        """Bytes to the host as if the board had printed them (queued; never blocks)."""
        with self._lock:
            self._out += data

    # ---------------------------------------------------------------- the model
    def infer_bytes(self, frame: bytes) -> bytes:
        """A deterministic stand-in for the model: output = first bytes of sha256(frame)."""
        return hashlib.sha256(frame).digest()[: self.output_bytes]

    @staticmethod
    def top1(out: bytes) -> int:
        vals = [b - 256 if b > 127 else b for b in out]
        return max(range(len(vals)), key=vals.__getitem__)

    # ---------------------------------------------------------------- serving
    def _serve(self) -> None:
        buf = bytearray()
        while not self._stop.is_set():
            with self._lock:
                pending = bool(self._out)
            r, w, _ = select.select([self._master], [self._master] if pending else [], [], 0.02)
            if w:
                with self._lock:
                    try:
                        del self._out[:os.write(self._master, self._out[:65536])]
                    except (BlockingIOError, OSError):
                        pass
            if not r:
                continue
            try:
                data = os.read(self._master, 4096)
            except OSError:
                continue
            buf += data
            while b"\n" in buf:
                line, _, rest = bytes(buf).partition(b"\n")
                buf = bytearray(rest)
                self._line(line.rstrip(b"\r"))

    def _send(self, payload: dict[str, Any], corrupt: bool = False) -> None:
        frame = frame_reply(payload)
        if corrupt:  # flip one payload bit: the checksum no longer matches
            i = frame.index(b'"cmd"') + 2
            frame = frame[:i] + bytes([frame[i] ^ 0x01]) + frame[i + 1:]
        self.write_raw(self.garbage + frame)

    def _line(self, raw: bytes) -> None:
        text = raw.decode("ascii", "replace")
        self.requests.append(text)
        if self.boot_ignore > 0:
            self.boot_ignore -= 1
            return
        if not text.strip():
            return
        if len(raw) + 1 > 320:
            self._send({"ok": False, "cmd": "?", "err": "too_long", "msg": f"request of {len(raw) + 1} bytes"})
            return
        tokens = text.split(" ")
        rid = None
        if len(tokens) > 1 and _ID_RE.match(tokens[-1]):
            rid = int(tokens.pop()[1:])
        cmd, args = tokens[0], tokens[1:]
        if self.silent is True or (isinstance(self.silent, set) and cmd in self.silent):
            return
        if self.delay.get(cmd):
            self._stop.wait(self.delay[cmd])  # requests arriving meanwhile queue up, as on a busy board
        reply = self._answer(cmd, args)
        reply = {"ok": reply.pop("ok", True), "cmd": reply.pop("cmd", cmd), **reply}
        for k in self.omit.get(cmd, []):
            reply.pop(k, None)
        if rid is not None and self.echo_id:
            if self.stale:
                self._send({**reply, "id": max(rid - 1, 0), "stale": True})
            reply["id"] = rid
        n = self.corrupt.get(cmd, 0)
        if n:
            self.corrupt[cmd] = n - 1
        self._send(reply, corrupt=bool(n))

    def _err(self, err: str, msg: str, cmd: str) -> dict[str, Any]:
        return {"ok": False, "cmd": cmd, "err": err, "msg": msg}

    def _answer(self, cmd: str, args: list[str]) -> dict[str, Any]:
        if cmd == "info":
            return {"proto": self.proto, "fw": "0.1.0-fake", "model": "micropizzanet", "hash": self.model_hash,
                    "image": self.image, "board": "pico", "clock_hz": CLOCK, "cores": 1,
                    "arena_size": self.arena_size, "arena_limit": self.arena_limit,
                    "input_bytes": self.input_bytes, "output_bytes": self.output_bytes,
                    "golden_count": self.golden_count, "status": self.status, "setup_error": self.setup_error}
        if cmd == "arena":
            return self._arena(args)
        if self.status != "ready":
            return self._err("setup", self.setup_error or "setup failed", cmd)
        if cmd == "mem":
            data, bss, heap, stack_peak = 17_104, 24_960, 1_024, 1_312
            return {"arena_size": self.arena_size, "arena_limit": self.arena_limit, "arena_used": 13_668,
                    "data_bytes": data, "bss_bytes": bss, "heap_used": heap, "stack_size": 2048,
                    "stack_peak": stack_peak, "ram_total": data + bss + heap + stack_peak, "ram_size": 270336}
        if cmd == "bench":
            if len(args) != 1 or not args[0].isdigit():
                return self._err("bad_arg", "bench <n>", cmd)
            n = int(args[0])
            if not 1 <= n <= 1000:
                return self._err("range", "n must be 1..1000", cmd)
            self.invokes += n
            us = CYCLES * 1_000_000 // CLOCK
            return {"runs": n, "min_us": us, "median_us": us, "max_us": us + 1, "min_cycles": CYCLES,
                    "median_cycles": CYCLES, "max_cycles": CYCLES + 120, "clock_hz": CLOCK}
        if cmd == "profile":
            self.invokes += 1
            ops = [("CONV_2D", 2_268_000), ("DEPTHWISE_CONV_2D", 900_000), ("CONV_2D", 520_000),
                   ("MEAN", 287_000), ("FULLY_CONNECTED", 77_100)]
            return {"ops": [{"op": o, "us": c * 1_000_000 // CLOCK, "cycles": c} for o, c in ops],
                    "total_cycles": sum(c for _, c in ops)}
        if cmd == "golden":
            self.invokes += self.golden_count
            outs = [self.infer_bytes(g).hex() for g in self.golden_inputs]
            return {"count": self.golden_count, "exact": self.golden_count, "max_diff": 0,
                    "top1_agree": self.golden_count, "outputs": outs}
        if cmd == "load":
            if len(args) != 2 or not args[0].isdigit():
                return self._err("bad_arg", "load <offset> <hex>", cmd)
            try:
                chunk = bytes.fromhex(args[1])
            except ValueError:
                return self._err("bad_arg", "hex expected", cmd)
            off = int(args[0])
            if not 1 <= len(chunk) <= 128 or off + len(chunk) > self.input_bytes:
                return self._err("range", f"offset {off} + {len(chunk)} > {self.input_bytes}", cmd)
            if self.corrupt_loads:
                self.corrupt_loads -= 1
                chunk = bytes([chunk[0] ^ 0x10]) + chunk[1:]
            self.input[off:off + len(chunk)] = chunk
            return {"offset": off, "len": len(chunk)}
        if cmd == "infer":
            if len(args) != 2 or not args[0].isdigit() or not re.fullmatch(r"[0-9a-f]{8}", args[1]):
                return self._err("bad_arg", "infer <len> <crc32>", cmd)
            n = int(args[0])
            if not 1 <= n <= self.input_bytes:
                return self._err("range", f"len must be 1..{self.input_bytes}", cmd)
            have = zlib.crc32(bytes(self.input[:n])) & 0xFFFFFFFF
            if have != int(args[1], 16):
                return self._err("crc", f"input crc {have:08x} != {args[1]}", cmd)
            out = self.infer_bytes(bytes(self.input[:n]))
            self.invokes += 1
            self.input[:] = bytes(len(self.input))  # TFLM overwrites its input during Invoke
            return {"output": out.hex(), "top1": self.top1(out), "us": CYCLES * 1_000_000 // CLOCK,
                    "cycles": CYCLES}
        return self._err("unknown_cmd", f"unknown command {cmd[:20]}", "?")

    def _arena(self, args: list[str]) -> dict[str, Any]:
        if len(args) != 1 or not args[0].isdigit():
            return self._err("bad_arg", "arena <bytes>", "arena")
        n = int(args[0])
        if n > self.arena_size:
            return self._err("range", f"limit {n} > compiled {self.arena_size}", "arena")
        self.arena_limit = n or self.arena_size
        ok = self.arena_limit >= self.min_arena
        if not ok and self.arena_alloc_error:
            return self._err("alloc", f"arena {n} B too small, needs {self.min_arena}", "arena")
        self.status = "ready" if ok else "error"
        self.setup_error = "" if ok else f"AllocateTensors failed: arena {self.arena_limit} B, needs {self.min_arena} B"
        return {"arena_limit": self.arena_limit, "alloc_ok": ok, "arena_used": 13_668 if ok else 0,
                "invoke_ok": ok, "golden_exact": ok}


def payload_json(frame: bytes) -> dict[str, Any]:
    """The JSON object inside a frame line (no checks): for tests that build odd frames."""
    body = frame.rstrip(b"\n")[1:].rsplit(b"*", 1)[0]
    return json.loads(body)
