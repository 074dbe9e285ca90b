"""The device under test: one board (a Pico on a port, or an emulated Pico) answering the same calls.

:class:`BoardSite` is where a session's board is (its port, what it is, the emulator's process if it
is emulated, and why it was lost if it was). :class:`Pico` is what a test gets: an open, verified
conversation with it whose methods return typed results and record each figure measured.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from pipeline.board.client import BoardClient
from pipeline.errors import PipelineError, SerialLinkError
from pipeline.hil.artifacts import RunArtifacts
from pipeline.hil.results import Bench, Golden, Inference, Info, Mem, Metric, Profile


class BoardLost(PipelineError):
    """The session's board stopped answering (unplugged, reset, its emulator gone): its tests fail with this."""


@dataclass
class BoardSite:
    """Where this process's board is: ``port``; ``where`` is ``board`` or ``emulated``; ``name`` how
    results name it (the port, or ``emulated Pico N``); ``label`` what reports say it is."""

    port: str
    where: str
    name: str
    label: str
    process: Any = None  # the EmulatedPico, when emulated
    lost: str | None = None  # why the board was lost, once it was

    @property
    def pid(self) -> int | None:
        """The emulator's process id (None for a real board)."""
        return getattr(self.process, "pid", None)

    def lose(self, reason: str) -> BoardLost:
        if self.lost is None:
            self.lost = reason
        return BoardLost(f"board {self.name} stopped answering: {self.lost}",
                         hint="a real board: check its cable and power, then flash it again; "
                              "its other tests fail with this reason, the other boards' tests go on")

    def alive_check(self) -> None:
        """Raise :class:`BoardLost` when the board was lost before, or its emulator has stopped now."""
        if self.lost is not None:
            raise BoardLost(f"board {self.name} was lost earlier in this session: {self.lost}")
        if self.process is not None and self.process.poll() is not None:
            try:
                self.process.check()
            except PipelineError as e:
                raise self.lose(e.message) from None


class Pico:
    """A connected board, its model checked against the run's (``info().hash``).

    ``info()``, ``mem()``, ``bench(runs)``, ``profile()``, ``golden()`` and ``infer(frame)`` return typed
    results (:mod:`pipeline.hil.results`); each figure they carry is recorded for the session's metrics
    file with its unit, the model hash and where it was measured. ``client`` is the raw
    :class:`~pipeline.board.client.BoardClient` for anything else the protocol offers."""

    def __init__(self, client: BoardClient, site: BoardSite, run: RunArtifacts,
                 record: Callable[[Metric], None], test: str = ""):
        self.client = client
        self.site = site
        self.run = run
        self._record = record
        self._test = test
        self._invoke_s: float | None = None  # wall time of one invoke (with the link): an upper bound once timed
        self._info = Info.of(client.info.figures()) if client.info is not None else None

    @property
    def where(self) -> str:
        return self.site.where

    @property
    def port(self) -> str:
        return self.site.port

    @property
    def pid(self) -> int | None:
        """The emulated Pico's process id (None for a real board)."""
        return self.site.pid

    # ------------------------------------------------------------------ the calls
    def info(self) -> Info:
        return self._note(Info.of(self._request("info").figures()))

    def mem(self) -> Mem:
        return self._note(Mem.of(self._request("mem").figures()))

    def bench(self, runs: int = 10) -> Bench:
        wait = 30.0 + 3.0 * runs * self._one_invoke_s()
        return self._note(Bench.of(self._request("bench", runs, timeout=wait).figures()))

    def profile(self) -> Profile:
        return self._note(self._profile())

    def golden(self) -> Golden:
        n = self._info.golden_count if self._info else 10
        wait = 30.0 + 3.0 * max(n, 1) * self._one_invoke_s()
        return self._note(Golden.of(self._request("golden", timeout=wait).figures()))

    def infer(self, frame: Any) -> Inference:
        """Send one input frame (the model's input tensor: an array of its type, or raw bytes) and infer it."""
        info = self.run.model_info
        data = frame if isinstance(frame, (bytes, bytearray)) else np.asarray(frame).tobytes()
        wait = 30.0 + 3.0 * self._one_invoke_s()
        r = self._call(lambda: self.client.send_frame(bytes(data), timeout=wait))
        out = np.frombuffer(r["output"], dtype=_numpy_dtype(info.output.dtype)).copy()
        return self._note(Inference(out, int(r["top1"]), int(r["us"]), int(r["cycles"])))

    def _profile(self) -> Profile:
        t0 = time.monotonic()
        p = Profile.of(self._request("profile", timeout=120.0 if self._invoke_s is None else
                                     30.0 + 3.0 * self._invoke_s).figures())
        self._invoke_s = max(time.monotonic() - t0, 0.01)
        return p

    def _one_invoke_s(self) -> float:
        """How long one invoke takes here (timed once with `profile`, not recorded): the waits scale with it."""
        if self._invoke_s is None:
            self._profile()
        assert self._invoke_s is not None
        return self._invoke_s

    # ------------------------------------------------------------------ plumbing
    def _request(self, cmd: str, *args: Any, timeout: float | None = None):
        __tracebackhide__ = True  # pytest: the test's own line, then the reason
        return self._call(lambda: self.client.request(cmd, *args, timeout=timeout))

    def _call(self, fn: Callable[[], Any]) -> Any:
        __tracebackhide__ = True
        self.site.alive_check()
        try:
            return fn()
        except SerialLinkError as e:
            reason = e.message
            emulator = self.site.process
            if emulator is not None and emulator.wait(1.0) is not None:  # the emulated Pico itself is gone
                try:
                    emulator.check()
                except PipelineError as died:
                    reason = died.message
            raise self.site.lose(reason) from None

    def _note(self, result: Any) -> Any:
        model = self._info.hash if self._info else self.run.model_hash
        for metric, value, unit in result.figures():
            self._record(Metric(metric, float(value), unit, model, self.site.where, self.site.name, self.site.label,
                                self._test))
        return result


def _numpy_dtype(tflite_type: str) -> np.dtype:
    return np.dtype({"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32,
                     "FLOAT32": np.float32}.get(tflite_type.upper(), np.int8))


@dataclass
class Recorder:
    """The figures one test measured (they travel to the session's metrics file with its report)."""

    metrics: list[Metric] = field(default_factory=list)

    def __call__(self, m: Metric) -> None:
        self.metrics.append(m)
