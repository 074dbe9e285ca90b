"""Framing of the picotflm serial protocol, version 1 (``docs/protocol.md``): pure functions, no port.

Requests are one ASCII line, ``cmd arg... @id\\n``, at most :data:`MAX_REQUEST_BYTES` long. Replies are
``$<json>*<crc32 hex>\\n``; :func:`parse_reply_line` turns one into a :class:`Reply` or ``None`` and
never raises, whatever the bytes. :class:`LineReader` cuts a byte stream into lines with a bounded
buffer, so a board that never sends a newline cannot make the host grow without limit.
"""
from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import PipelineError

PROTOCOL_VERSION = 1
MAX_REQUEST_BYTES = 320  # including the newline
MAX_REPLY_LINE = 64 * 1024  # default cap for a reply line; longer lines are cut and dropped
MAX_ID = 999_999_999  # request ids are 1..9 decimal digits
LOAD_CHUNK = 128  # bytes per `load` request
LAYER_CHUNK = 896  # bytes of an op's output per `layer` reply (PTF_LAYER_CHUNK)

_CRC_RE = re.compile(rb"[0-9a-fA-F]{8}")
_ID_IN_BAD_FRAME = re.compile(rb'"id":(\d{1,9})[,}]')


class RequestError(PipelineError, ValueError):
    """A request that the protocol cannot carry (bad token, too long): a bug or bad input on the host."""


@dataclass(frozen=True)
class Reply:
    """One valid reply frame. ``payload`` is the whole JSON object, ``ok``/``cmd``/``id``/``err``/``msg``
    its common fields (``id`` is None when the reply has none; ``err``/``msg`` are None on success)."""

    ok: bool
    cmd: str
    id: int | None
    payload: dict[str, Any] = field(repr=False)
    err: str | None = None
    msg: str | None = None

    def __getitem__(self, key: str) -> Any:
        return self.payload[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.payload.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.payload

    def figures(self) -> dict[str, Any]:
        """The payload without the framing fields (``ok``, ``cmd``, ``id``): what the board reported."""
        return {k: v for k, v in self.payload.items() if k not in ("ok", "cmd", "id")}


# ------------------------------------------------------------------------------ requests
def _token(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RequestError(f"request {what} must be a string or an integer, not {type(value).__name__}: {value!r}")
    tok = str(value)
    if not tok:
        raise RequestError(f"request {what} is empty")
    if not all(0x21 <= ord(c) <= 0x7E for c in tok):
        raise RequestError(f"request {what} {tok[:40]!r} must be printable ASCII without spaces")
    if tok.startswith("@"):
        raise RequestError(f"request {what} {tok[:40]!r} must not start with '@' (that marks the request id)")
    return tok


def encode_request(cmd: str, *args: str | int, req_id: int | None = None) -> bytes:
    """``cmd arg... [@id]\\n`` as bytes; :class:`RequestError` (a ValueError) when it cannot be sent."""
    tokens = [_token(cmd, "command")] + [_token(a, f"argument {i + 1} of {cmd!r}") for i, a in enumerate(args)]
    if req_id is not None:
        if isinstance(req_id, bool) or not isinstance(req_id, int) or not 0 <= req_id <= MAX_ID:
            raise RequestError(f"request id must be an integer 0..{MAX_ID}, got {req_id!r}")
        tokens.append(f"@{req_id}")
    line = (" ".join(tokens) + "\n").encode("ascii")
    if len(line) > MAX_REQUEST_BYTES:
        raise RequestError(f"request {cmd!r} is {len(line)} bytes long; the protocol allows at most "
                           f"{MAX_REQUEST_BYTES} including the newline")
    return line


def crc32_hex(data: bytes) -> str:
    """CRC-32 (IEEE 802.3, as ``zlib.crc32``) as 8 lowercase hex digits."""
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"


def encode_load(offset: int, chunk: bytes, req_id: int | None = None) -> bytes:
    if not 1 <= len(chunk) <= LOAD_CHUNK:
        raise RequestError(f"a load carries 1..{LOAD_CHUNK} bytes, got {len(chunk)}")
    return encode_request("load", int(offset), chunk.hex(), req_id=req_id)


# ------------------------------------------------------------------------------- replies
def frame_reply(payload: dict[str, Any]) -> bytes:
    """``$<compact JSON>*<crc>\\n``: a reply frame as the firmware writes it (for tests and fake boards)."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")
    return b"$" + body + b"*" + crc32_hex(body).encode("ascii") + b"\n"


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def check_reply_line(line: bytes | bytearray | memoryview, max_len: int = MAX_REPLY_LINE) -> tuple[Reply | None, str]:
    """``(reply, "ok")`` for a valid frame, else ``(None, reason)`` with reason one of ``empty``,
    ``too_long``, ``not_frame`` (no ``$`` or no ``*``), ``bad_crc``, ``bad_json``, ``bad_fields``.
    Never raises (for any bytes-like input)."""
    try:
        line = bytes(line)
    except Exception:  # noqa: BLE001 - not bytes-like at all
        return None, "not_frame"
    if len(line) > max_len:
        return None, "too_long"
    line = line.rstrip(b"\r\n")
    if not line:
        return None, "empty"
    if line[:1] == b"$":
        return _check_frame(line)
    # Garbage before a frame on the same line (a boot message without its newline, a line cut by
    # the port opening): a frame after it still counts, the checksum keeps this safe.
    reason = "not_frame"
    start = line.find(b"$")
    for _ in range(16):
        if start < 0:
            break
        reply, why = _check_frame(line[start:])
        if reply is not None:
            return reply, why
        if why == "bad_crc":
            reason = why
        start = line.find(b"$", start + 1)
    return None, reason


def _check_frame(line: bytes) -> tuple[Reply | None, str]:
    star = line.rfind(b"*")
    if star < 1:
        return None, "not_frame"
    body, crc = line[1:star], line[star + 1:]
    if not _CRC_RE.fullmatch(crc):
        return None, "not_frame" if len(crc) > 8 or not crc else "bad_crc"
    if int(crc, 16) != zlib.crc32(body) & 0xFFFFFFFF:
        return None, "bad_crc"
    try:
        text = body.decode("ascii")
        obj = json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None, "bad_json"
    if not isinstance(obj, dict):
        return None, "bad_fields"
    ok, cmd, rid = obj.get("ok"), obj.get("cmd"), obj.get("id")
    err, msg = obj.get("err"), obj.get("msg")
    if not isinstance(ok, bool) or not isinstance(cmd, str):
        return None, "bad_fields"
    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, int) or rid < 0):
        return None, "bad_fields"
    if (err is not None and not isinstance(err, str)) or (msg is not None and not isinstance(msg, str)):
        return None, "bad_fields"
    return Reply(ok=ok, cmd=cmd, id=rid, payload=obj, err=err, msg=msg), "ok"


def parse_reply_line(line: bytes, max_len: int = MAX_REPLY_LINE) -> Reply | None:
    """The :class:`Reply` in one line (with or without its ``\\n``), or None for anything else:
    garbage, half frames, bad checksum, non-JSON, lines over ``max_len``. Never raises."""
    return check_reply_line(line, max_len)[0]


def id_of_bad_frame(line: bytes) -> int | None:
    """Best guess at the request id inside a frame whose checksum failed (None when there is none)."""
    m = _ID_IN_BAD_FRAME.search(bytes(line)[:MAX_REPLY_LINE])
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------------------------- lines
class LineReader:
    """Accumulates bytes and hands out complete lines (without the ``\\n``).

    The buffer never holds more than ``max_line`` bytes: a line that reaches the limit is discarded
    up to its newline and counted in ``overlong``, not grown."""

    def __init__(self, max_line: int = MAX_REPLY_LINE):
        if max_line < 1:
            raise ValueError(f"max_line must be >= 1, got {max_line}")
        self.max_line = max_line
        self.overlong = 0
        self._buf = bytearray()
        self._discarding = False

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line held now."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        pos = 0
        n = len(data)
        while pos < n:
            nl = data.find(b"\n", pos)
            end = n if nl < 0 else nl
            if self._discarding:
                if nl >= 0:
                    self._discarding = False
            else:
                room = self.max_line - len(self._buf)
                if end - pos > room:  # this line is too long: drop what we have and the rest of it
                    self._buf.clear()
                    self.overlong += 1
                    self._discarding = nl < 0
                else:
                    self._buf += data[pos:end]
                    if nl >= 0:
                        lines.append(bytes(self._buf))
                        self._buf.clear()
            if nl < 0:
                break
            pos = nl + 1
        return lines

    def clear(self) -> None:
        self._buf.clear()
        self._discarding = False
