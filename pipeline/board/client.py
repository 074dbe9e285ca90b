"""The host end of the serial conversation: one request, one matching reply.

:class:`BoardClient` opens the port with ``serial.serial_for_url`` (so ``/dev/ttyACM0``, a pty such
as ``/dev/pts/7`` and ``loop://`` all work), sends each request with a fresh id and reads lines until
the reply with that id arrives. Garbage, half frames, frames with a bad checksum and replies to
older requests are skipped and counted in :class:`LinkStats`. Link faults raise
:class:`~pipeline.errors.SerialLinkError`; an ``ok:false`` reply raises :class:`BoardError` with the
firmware's own message.
"""
from __future__ import annotations

import errno
import random
import time
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, NamedTuple

from pipeline.board.protocol import (
    LAYER_CHUNK,
    LOAD_CHUNK,
    MAX_REPLY_LINE,
    MAX_ID,
    PROTOCOL_VERSION,
    LineReader,
    Reply,
    RequestError,
    check_reply_line,
    encode_load,
    encode_request,
    id_of_bad_frame,
)
from pipeline.errors import PipelineError, SerialLinkError

READ_SLICE = 0.05  # seconds one read may block; the request deadline is checked between reads
LIST_PORTS_HINT = "is the board plugged in? list ports with `python -m serial.tools.list_ports`"
DIALOUT_HINT = "add yourself to the dialout group: sudo usermod -aG dialout $USER, then log in again"
BUSY_HINT = "another program (a serial monitor?) has it open: close it and try again"
LINK_HINT = ("is the picotflm firmware running on this port? reset the board (or restart the emulated Pico), "
             "make sure no other program reads the port, and try again")

_ERR_HINTS = {
    "setup": "the firmware's setup failed at boot; `info` says why (setup_error): fix the recipe and rebuild",
    "alloc": "the tensor arena is too small for this model at this limit",
    "unknown_cmd": "host and firmware speak different protocol versions: flash firmware built by this picotflm",
    "bad_arg": "host and firmware disagree on the protocol: flash firmware built by this picotflm",
    "too_long": "host and firmware disagree on the protocol: flash firmware built by this picotflm",
    "crc": "the input frame was corrupted on the way to the board: check the cable / link",
}


# Errors with which the board says it could not parse a request. The host builds every request
# valid (encode_request checks it), so on a known command they mean it was corrupted on the way:
# the request is sent again, like one whose reply was lost.
NOT_UNDERSTOOD = ("bad_arg", "too_long", "unknown_cmd")


def _secs(s: float) -> str:
    """Seconds for a message: ``5.0``, ``0.4``, ``0.25``."""
    return f"{s:.1f}" if round(s, 1) == s else f"{s:g}"


class BoardError(PipelineError):
    """The board answered, with ``ok:false``: the firmware's own error (``reply.err``, ``reply.msg``)."""

    def __init__(self, message: str, hint: str | None = None, reply: Reply | None = None):
        super().__init__(message, hint)
        self.reply = reply


class ChecksumError(SerialLinkError):
    """The reply to a request kept arriving with a bad checksum: the link corrupts data."""


@dataclass
class LinkStats:
    """What the link did: exchanges (requests written, retries included) and lines skipped, by reason."""

    exchanges: int = 0
    retries: int = 0
    replies: int = 0
    not_frames: int = 0  # lines that are no frame (boot text, noise, half lines)
    bad_checksum: int = 0
    bad_frames: int = 0  # checksum right but not a protocol object (bad JSON or fields)
    stale: int = 0  # valid frames for another request (older id, no id, other command)
    overlong: int = 0  # lines cut at the length limit and dropped
    bytes_out: int = 0
    bytes_in: int = 0
    seconds: float = 0.0  # time spent in exchanges

    @property
    def ignored(self) -> int:
        return self.not_frames + self.bad_checksum + self.bad_frames + self.stale + self.overlong

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ignored"] = self.ignored
        d["seconds"] = round(self.seconds, 3)
        return d


AUTO_FIELDS = ("variant", "escalations", "score_ppm", "switches", "invoke_cycles", "switch_cycles", "switch_us")


class InferResult(NamedTuple):
    output: bytes
    top1: int
    us: int
    cycles: int


@dataclass
class _Attempt:
    """What one attempt at an exchange saw (for the timeout message and the retry decision)."""

    bytes_in: int = 0
    lines: int = 0
    not_frames: int = 0
    bad_crc_ours: int = 0  # bad-checksum frames that were (or may have been) the reply we wait for
    bad_crc_other: int = 0
    stale: int = 0
    last_line: bytes = b""
    last_stale: Reply | None = None
    reasons: dict[str, int] = field(default_factory=dict)


def open_error(port: str, exc: BaseException) -> SerialLinkError:
    """A :class:`SerialLinkError` for a port that would not open, with the usual cause as hint."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    low = text.lower()
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO) or "no such file" in low or "filenotfound" in low \
            or "cannot find the file" in low:
        return SerialLinkError(f"serial port {port} does not exist", hint=LIST_PORTS_HINT)
    if code in (errno.EACCES, errno.EPERM) or "permission denied" in low or "permissionerror" in low \
            or "access is denied" in low:
        return SerialLinkError(f"no permission to open serial port {port}", hint=DIALOUT_HINT)
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "busy" in low or "exclusively lock" in low:
        return SerialLinkError(f"serial port {port} is busy", hint=BUSY_HINT)
    return SerialLinkError(f"could not open serial port {port}: {text}", hint=LIST_PORTS_HINT)


class BoardClient:
    """A conversation with a board running picotflm firmware (or anything that speaks its protocol).

    ``timeout`` is the default wait for one reply, ``retries`` how many times a request is sent
    again when its reply does not come in time or arrives with a bad checksum. Use as a context
    manager."""

    def __init__(self, port: str, *, baudrate: int = 115200, timeout: float = 5.0, retries: int = 2,
                 max_line: int = MAX_REPLY_LINE, log: Callable[[str], None] | None = None):
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 s, got {timeout}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.port = port
        self.baudrate = baudrate
        self.timeout = float(timeout)
        self.retries = retries
        self.log = log or (lambda _msg: None)
        self.stats = LinkStats()
        self.info: Reply | None = None  # the last valid `info` reply (set by handshake)
        self._reader = LineReader(max_line)
        self._ser = None
        self._next_id = random.randrange(1, MAX_ID // 2)  # not 1: replies from an earlier session must not match

    # ------------------------------------------------------------------ open / close
    def open(self) -> "BoardClient":
        if self._ser is not None:
            return self
        import serial

        try:
            self._ser = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=READ_SLICE,
                                              write_timeout=max(self.timeout, 1.0), exclusive=True)
        except (serial.SerialException, OSError, ValueError) as e:
            if isinstance(e, ValueError) and "://" in str(self.port):
                raise SerialLinkError(f"cannot open {self.port}: {e}", hint=LIST_PORTS_HINT) from e
            raise open_error(self.port, e) from e
        return self

    def close(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception:  # noqa: BLE001 - closing a vanished port must not hide the real error
                pass

    def __enter__(self) -> "BoardClient":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._ser is not None

    # ------------------------------------------------------------------ raw i/o
    def _fresh_id(self) -> int:
        rid = self._next_id
        self._next_id = 1 if rid >= MAX_ID else rid + 1
        return rid

    def _write(self, data: bytes) -> None:
        import serial

        if self._ser is None:
            raise SerialLinkError(f"serial port {self.port} is not open", hint="use BoardClient as a context manager")
        try:
            self._ser.write(data)
        except serial.SerialTimeoutException as e:
            raise SerialLinkError(f"writing to {self.port} timed out (nobody reads the other end?)",
                                  hint=LINK_HINT) from e
        except (serial.SerialException, OSError) as e:
            raise SerialLinkError(f"lost the connection to {self.port} while writing: {e}",
                                  hint="was the board unplugged or reset?") from e
        self.stats.bytes_out += len(data)

    def _read_lines(self, until: float) -> list[bytes] | None:
        """Complete lines that arrived (maybe none), or None once ``until`` has passed."""
        import serial

        if time.monotonic() >= until:
            return None
        try:
            chunk = self._ser.read(1)
            if chunk:
                waiting = self._ser.in_waiting
                if waiting:
                    chunk += self._ser.read(waiting)
        except (serial.SerialException, OSError) as e:
            raise SerialLinkError(f"lost the connection to {self.port}: {e}",
                                  hint="was the board unplugged or reset, or does another program read the port?") from e
        if not chunk:
            return []
        self.stats.bytes_in += len(chunk)
        self._attempt.bytes_in += len(chunk)
        before = self._reader.overlong
        lines = self._reader.feed(chunk)
        self.stats.overlong += self._reader.overlong - before
        return lines

    # ------------------------------------------------------------------ exchanges
    def request(self, cmd: str, *args: str | int, timeout: float | None = None, raise_on_error: bool = True,
                retries: int | None = None) -> Reply:
        """Send ``cmd args`` and return the board's reply to it.

        Other lines are skipped and counted. When no reply comes within ``timeout`` s, or it comes with
        a bad checksum (then at once), the request goes out again with a new id, up to ``retries``
        times (default: the client's); then :class:`SerialLinkError` (:class:`ChecksumError` when
        corrupted frames were seen). An ``ok:false`` reply: :class:`BoardError` (a PipelineError with
        the firmware's ``err`` and ``msg``), or the reply itself with ``raise_on_error=False``."""
        return self._transact(cmd, lambda rid: encode_request(cmd, *args, req_id=rid), timeout=timeout,
                              raise_on_error=raise_on_error, retries=retries)

    def _transact(self, cmd: str, make: Callable[[int], bytes], *, timeout: float | None = None,
                  raise_on_error: bool = True, retries: int | None = None) -> Reply:
        """One request (the line built by ``make(req_id)``) with its retries; see :meth:`request`.

        Every attempt carries a fresh id, and a late reply to an earlier attempt of the same request
        is taken as well (it answers the same question)."""
        wait = self.timeout if timeout is None else float(timeout)
        budget = self.retries if retries is None else retries
        make(0)  # a request that cannot be encoded fails here, before anything is sent
        t0 = time.monotonic()
        ids: set[int] = set()
        corrupted = 0
        try:
            for attempt in range(budget + 1):
                reply, seen = self._exchange(make, cmd, wait, ids)
                garbled = reply is not None and not reply.ok and reply.err in NOT_UNDERSTOOD
                if reply is not None and not (garbled and attempt < budget):
                    return self._check(reply, raise_on_error)
                corrupted += seen.bad_crc_ours + seen.bad_crc_other
                if attempt < budget:
                    self.stats.retries += 1
                    why = f"was error {reply.err} (the request corrupted on the way?)" if garbled \
                        else "failed its checksum" if seen.bad_crc_ours or seen.bad_crc_other \
                        else f"did not come within {_secs(wait)} s"
                    self.log(f"the reply to {cmd!r} {why}; sending the request again")
                    continue
                if corrupted:
                    raise ChecksumError(
                        f"the reply to {cmd!r} from {self.port} failed its checksum ({corrupted} corrupted "
                        f"frame(s) in {attempt + 1} tries)",
                        hint="the link corrupts data: check the cable and the baud rate (115200), "
                             "and that no other program uses the port")
                raise self._timeout_error(cmd, wait, seen, tries=attempt + 1)
            raise AssertionError("unreachable")
        finally:
            self.stats.seconds += time.monotonic() - t0

    def _exchange(self, make: Callable[[int], bytes], cmd: str, wait: float,
                  ids: set[int] | None = None) -> tuple[Reply | None, _Attempt]:
        """Write ``make(id)`` with a fresh id; read until a valid reply arrives whose id is this one
        (or any in ``ids``, to which the fresh id is added) and whose cmd is ``cmd`` or ``?``, or until
        ``wait`` s pass."""
        rid = self._fresh_id()
        ids = {rid} if ids is None else ids
        ids.add(rid)
        line = make(rid)
        self._attempt = seen = _Attempt()
        self._write(line)
        self.stats.exchanges += 1
        until = time.monotonic() + wait
        while True:
            lines = self._read_lines(until)
            if lines is None:
                return None, seen
            for raw in lines:
                seen.lines += 1
                reply, why = check_reply_line(raw, self._reader.max_line)
                if reply is None:
                    seen.reasons[why] = seen.reasons.get(why, 0) + 1
                    if why == "empty":
                        continue
                    seen.last_line = raw[:120]
                    if why == "bad_crc":
                        self.stats.bad_checksum += 1
                        bad_id = id_of_bad_frame(raw)
                        if bad_id is None or bad_id in ids:
                            seen.bad_crc_ours += 1
                        else:
                            seen.bad_crc_other += 1
                    elif why in ("bad_json", "bad_fields"):
                        self.stats.bad_frames += 1
                    else:
                        self.stats.not_frames += 1
                        seen.not_frames += 1
                    continue
                if reply.id in ids and reply.cmd in (cmd, "?"):
                    self.stats.replies += 1
                    return reply, seen
                self.stats.stale += 1
                seen.stale += 1
                seen.last_stale = reply
            if seen.bad_crc_ours:  # our reply came corrupted: no point waiting for it
                return None, seen

    def _check(self, reply: Reply, raise_on_error: bool) -> Reply:
        if reply.ok or not raise_on_error:
            return reply
        raise BoardError(f"the board answered {reply.cmd!r} with error {reply.err or '?'}: {reply.msg or '(no message)'}",
                         hint=_ERR_HINTS.get(reply.err or ""), reply=reply)

    def _timeout_error(self, cmd: str, wait: float, seen: _Attempt, what: str | None = None,
                       tries: int = 1) -> SerialLinkError:
        head = what or f"no reply to {cmd!r} within {_secs(wait)} s from {self.port}" \
            + (f" ({tries} tries)" if tries > 1 else "")
        if seen.bytes_in == 0:
            detail = "nothing arrived at all"
            hint = LINK_HINT
        elif seen.stale and seen.last_stale is not None:
            r = seen.last_stale
            detail = (f"{seen.stale} reply(ies) for other requests arrived (last: cmd {r.cmd!r}, id {r.id}"
                      + (f", error {r.err}: {r.msg}" if not r.ok else "") + ")")
            hint = ("the board answers, but not to this request: a firmware speaking another protocol "
                    "version? flash firmware built by this picotflm")
        else:
            reasons = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(seen.reasons.items()) if k != "empty")
            detail = f"{seen.bytes_in} bytes arrived but no reply frame ({reasons or 'no complete line'}"
            detail += f"; last: {seen.last_line!r})" if seen.last_line else ")"
            hint = ("something answers, but not the picotflm protocol: another firmware, the wrong port, "
                    "or the wrong baud rate (115200)?")
        return SerialLinkError(f"{head}: {detail}", hint=hint)

    # ------------------------------------------------------------------ commands
    def handshake(self, expect_hash: str | None = None, *, attempts: int = 30, interval: float = 0.3,
                  require_ready: bool = True) -> Reply:
        """Send ``info`` every ``interval`` s until a valid reply arrives (the board may still be
        booting, and pyserial dropped whatever it said before); then check the protocol version,
        the setup status and the model hash. Returns the ``info`` reply (also kept in ``.info``)."""
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        t0 = time.monotonic()
        sent: set[int] = set()
        reply = None
        seen = _Attempt()
        try:
            # A newline first ends whatever half line the board may hold from before.
            self._write(b"\n")
            for _ in range(attempts):
                reply, seen = self._exchange(lambda rid: encode_request("info", req_id=rid), "info", interval,
                                             ids=sent)
                if reply is not None:
                    break
        finally:
            self.stats.seconds += time.monotonic() - t0
        if reply is None:
            raise self._timeout_error("info", interval, seen,
                                      what=f"no answer to 'info' from {self.port} in {time.monotonic() - t0:.1f} s "
                                           f"({attempts} tries)")
        self._check(reply, True)
        proto = reply.get("proto")
        if proto != PROTOCOL_VERSION:
            raise PipelineError(
                f"the board speaks protocol version {proto}, this host speaks version {PROTOCOL_VERSION}",
                hint="flash firmware built by this version of picotflm (make flash), or use the picotflm "
                     "that built the board's firmware")
        self.info = reply
        self._grow_line_limit(reply)
        # The model first: a setup error of another model's firmware would only mislead.
        if expect_hash:
            have = str(reply.get("hash") or "").lower()
            want = expect_hash.lower()[:16]
            if have != want:
                raise PipelineError(
                    f"the board runs model {have or '?'} ({reply.get('model', '?')}) but this run's model is {want}",
                    hint="flash this run's firmware (make flash)")
        if require_ready and reply.get("status") != "ready":
            raise PipelineError(
                f"the board's firmware failed its setup: {reply.get('setup_error') or reply.get('status')}",
                hint="this is the firmware's own check at boot (arena size, operators, tensor types): "
                     "fix the recipe, rebuild and flash")
        return reply

    def _grow_line_limit(self, info: Reply) -> None:
        """Room for the longest reply this model can cause (`golden` carries every output in hex)."""
        try:
            need = int(info.get("golden_count") or 0) * (2 * int(info.get("output_bytes") or 0) + 3) + 4096
        except (TypeError, ValueError):
            return
        if need > self._reader.max_line:
            self._reader.max_line = need

    def send_frame(self, data: bytes, *, timeout: float | None = None, auto: bool = False) -> dict[str, Any]:
        """Write ``data`` into the board's input tensor (``load`` chunks of <= 128 bytes), then
        ``infer`` it; returns ``{"output": bytes, "top1": int, "us": int, "cycles": int}``.

        ``auto=True`` sends ``auto`` instead: the board's switching policy (``set_policy``) runs the
        frame on variant 0 and on larger variants while unsure; the result then also has ``variant``,
        ``escalations``, ``score_ppm``, ``switches``, ``invoke_cycles``, ``switch_cycles``, ``switch_us``
        (``cycles``/``us`` include the switches).

        When the board finds the frame corrupted (error ``crc``) or the reply to ``infer`` fails its
        checksum, the frame is loaded again (TFLM overwrote the input) and inferred again."""
        data = bytes(data)
        if not data:
            raise RequestError("an input frame must have at least one byte")
        if self.info is not None and self.info.get("input_bytes") not in (None, len(data)):
            raise PipelineError(f"the input frame has {len(data)} bytes, the board's input tensor "
                                f"{self.info.get('input_bytes')}",
                                hint="frames must be the model's input tensor, quantized, as raw bytes")
        crc = f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"
        cmd = "auto" if auto else "infer"
        last: PipelineError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
                self.log(f"input frame arrived corrupted ({last}); loading it again")
            # Any link fault on the way (a load or the infer unanswered or garbled, a load stored at
            # another offset) means: load the whole frame again; the board checks its CRC-32 before
            # it infers, so a frame it got wrong is never inferred.
            try:
                for off in range(0, len(data), LOAD_CHUNK):
                    chunk = data[off:off + LOAD_CHUNK]
                    r = self._transact("load", lambda rid, o=off, c=chunk: encode_load(o, c, rid), timeout=timeout)
                    if r.get("offset") != off or r.get("len") != len(chunk):
                        raise SerialLinkError(f"the board stored a load at offset {r.get('offset')} length "
                                              f"{r.get('len')}, sent offset {off} length {len(chunk)}", hint=LINK_HINT)
                r = self.request(cmd, len(data), crc, timeout=timeout, retries=0, raise_on_error=False)
            except SerialLinkError as e:
                last = e
                continue
            except BoardError as e:
                if e.reply is None or e.reply.err not in NOT_UNDERSTOOD + ("range",):
                    raise
                last = e  # a load garbled on the way (range: its offset was)
                continue
            if not r.ok and r.err in ("crc",) + NOT_UNDERSTOOD:
                last = BoardError(f"the board found the frame corrupted: {r.msg}" if r.err == "crc" else
                                  f"the board could not parse {cmd!r} ({r.err}: {r.msg})", reply=r)
                continue
            self._check(r, True)
            try:
                out = InferResult(bytes.fromhex(r["output"]), int(r["top1"]), int(r["us"]),
                                  int(r["cycles"]))._asdict()
                if auto:
                    out.update({k: int(r[k]) for k in AUTO_FIELDS})
                return out
            except (KeyError, TypeError, ValueError) as e:
                raise SerialLinkError(f"the board's reply to {cmd!r} lacks a field or has a bad one: {e!r}",
                                      hint=LINK_HINT) from e
        assert last is not None
        raise last

    def layer_output(self, data: bytes, op: int, *, timeout: float | None = None) -> dict[str, Any]:
        """Op ``op``'s output (its first output tensor) for the input frame ``data``, as the board computed
        it: ``{"op", "name", "tensor", "type", "data": bytes}``. Read with ``layer <op> <offset> <len>
        <crc32>`` in chunks of up to 896 bytes, each an Invoke on the frame; the frame is loaded again
        before each (TFLM overwrites the input tensor), except on a firmware with several variants, which
        keeps the frame in a buffer of its own. A frame found corrupted (error ``crc``) or a reply lost is
        loaded and asked again, up to ``retries`` times per chunk. An op index past the model's ops:
        BoardError ``range`` with the board's message."""
        data = bytes(data)
        if isinstance(op, bool) or not isinstance(op, int) or op < 0:
            raise PipelineError(f"op index {op!r} is not a non-negative integer", hint="ops count from 0")
        if not data:
            raise RequestError("an input frame must have at least one byte")
        crc = f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"
        keeps_frame = self.info is not None and int(self.info.get("variants") or 1) > 1
        loaded = False
        out = bytearray()
        head: dict[str, Any] | None = None
        size = None
        while size is None or len(out) < size:
            offset = len(out)
            last: PipelineError | None = None
            for attempt in range(self.retries + 1):
                if attempt:
                    self.stats.retries += 1
                    self.log(f"layer {op} at offset {offset}: {last}; loading the frame again")
                try:
                    if not (loaded and keeps_frame):
                        for off in range(0, len(data), LOAD_CHUNK):
                            chunk = data[off:off + LOAD_CHUNK]
                            r = self._transact("load", lambda rid, o=off, c=chunk: encode_load(o, c, rid),
                                               timeout=timeout)
                            if r.get("offset") != off or r.get("len") != len(chunk):
                                raise SerialLinkError(f"the board stored a load at offset {r.get('offset')}, "
                                                      f"sent offset {off}", hint=LINK_HINT)
                        loaded = True
                    r = self.request("layer", op, offset, len(data), crc, timeout=timeout, retries=0,
                                     raise_on_error=False)
                except SerialLinkError as e:
                    last, loaded = e, False
                    continue
                if not r.ok and r.err in ("crc",) + NOT_UNDERSTOOD:
                    last, loaded = BoardError(f"the board could not use the frame ({r.err}: {r.msg})", reply=r), False
                    continue
                break
            else:
                assert last is not None
                raise last
            self._check(r, True)
            try:
                piece = bytes.fromhex(r["data"])
                this = {"op": int(r["op"]), "name": str(r["name"]), "tensor": int(r["tensor"]),
                        "type": str(r["type"])}
                total = int(r["size"])
                if this["op"] != op or int(r["offset"]) != offset or (size is not None and total != size) \
                        or (head is not None and this != head) \
                        or len(piece) != min(total - offset, LAYER_CHUNK) or (total and not piece):
                    raise ValueError(f"op {this['op']} offset {r['offset']} size {total}, {len(piece)} bytes")
            except (KeyError, TypeError, ValueError) as e:
                raise SerialLinkError(f"the board's reply to 'layer {op} {offset}' is inconsistent: {e}",
                                      hint=LINK_HINT) from e
            head, size = this, total
            out += piece
        assert head is not None
        return {**head, "data": bytes(out)}

    # ------------------------------------------------------------------ model variants
    def variants(self) -> list[dict[str, Any]]:
        """The models this firmware holds (``variants``), smallest first: index, name, hash,
        model_bytes, macs, ops. A firmware rendered from one model lists one."""
        r = self.request("variants")
        vs = r.get("variants")
        if not isinstance(vs, list) or len(vs) != r.get("count"):
            raise SerialLinkError("the board's reply to 'variants' is inconsistent (count vs list)", hint=LINK_HINT)
        return [dict(v) for v in vs]

    def select(self, index: int, *, timeout: float | None = None) -> Reply:
        """``select <index>``: set up that variant in the arena; the reply says what the switch cost
        (``switch_cycles``, ``switch_us``) and the new ``arena_used``. A variant that does not exist:
        BoardError ``range`` with the board's message."""
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise PipelineError(f"variant index {index!r} is not a non-negative integer",
                                hint="`picotflm` lists the variants with their indices (the board's `variants`)")
        r = self.request("select", index, timeout=timeout)
        if self.info is not None:  # `info` now answers for the selected variant
            self.info.payload.update({k: r.get(k) for k in ("hash", "variant") if r.get(k) is not None})
        return r

    def set_policy(self, threshold: float, metric: str = "confidence") -> Reply:
        """``policy <metric> <thousandths>``: the threshold below which ``auto`` escalates to the next
        variant. ``threshold`` in [0, 1] is sent in thousandths (rounded); anything else is refused
        here, before it is sent."""
        import math

        if metric not in ("confidence", "margin"):
            raise PipelineError(f"switch metric must be confidence or margin, not {metric!r}",
                                hint="use --metric confidence or --metric margin")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold) \
                or not 0.0 <= threshold <= 1.0:
            raise PipelineError(f"switch threshold {threshold!r} is outside [0, 1]",
                                hint="thresholds are confidences or margins of a softmax: give a value in [0, 1]")
        return self.request("policy", metric, int(round(threshold * 1000)))

    def set_arena(self, nbytes: int, *, timeout: float | None = None) -> Reply:
        """``arena <bytes>``: re-run the board's setup with this arena limit (0: the compiled size)."""
        return self.request("arena", int(nbytes), timeout=timeout)
