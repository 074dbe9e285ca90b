"""What a test gets back from the board, typed, and every figure of a session with its unit.

Each result is built from the board's own reply (the fields docs/protocol.md lists) and keeps the
whole reply in ``raw``. :meth:`figures` names the measured figures with their units; the session's
:class:`Metric` records (model hash, where measured, board, test) are written as JSON and as
OpenMetrics text by :func:`write_metrics`.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.flow.rundir import atomic_write_text, to_json

SCHEMA = 1


def _int(d: dict[str, Any], key: str) -> int:
    v = d.get(key)
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0


@dataclass(frozen=True)
class Info:
    """``info``: the firmware and the model it runs (``hash``: the model's sha256, first 16 hex digits)."""

    model: str
    hash: str
    image: str  # "board" (boot2, USB CDC, both cores) or "emulator" (one core, UART)
    board: str
    fw: str
    clock_hz: int
    cores: int
    arena_size: int
    input_bytes: int
    output_bytes: int
    golden_count: int
    status: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def of(cls, d: dict[str, Any]) -> "Info":
        return cls(str(d.get("model", "")), str(d.get("hash", "")), str(d.get("image", "")), str(d.get("board", "")),
                   str(d.get("fw", "")), _int(d, "clock_hz"), _int(d, "cores"), _int(d, "arena_size"),
                   _int(d, "input_bytes"), _int(d, "output_bytes"), _int(d, "golden_count"), str(d.get("status", "")),
                   dict(d))

    def figures(self) -> list[tuple[str, float, str]]:
        return [("clock", self.clock_hz, "hertz")]


@dataclass(frozen=True)
class Mem:
    """``mem``: RAM as the board counts it (``ram_total`` = data + bss + heap + the stacks' peaks)."""

    arena_size: int
    arena_used: int
    ram_total: int
    ram_size: int
    stack_peak: int
    data_bytes: int
    bss_bytes: int
    heap_used: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def of(cls, d: dict[str, Any]) -> "Mem":
        return cls(*(_int(d, k) for k in ("arena_size", "arena_used", "ram_total", "ram_size", "stack_peak",
                                            "data_bytes", "bss_bytes", "heap_used")), dict(d))

    def figures(self) -> list[tuple[str, float, str]]:
        return [("ram_total", self.ram_total, "bytes"), ("arena_used", self.arena_used, "bytes"),
                ("stack_peak", self.stack_peak, "bytes")]


@dataclass(frozen=True)
class Bench:
    """``bench <runs>``: latency of ``runs`` invokes on the board's own timer and cycle counter."""

    runs: int
    min_us: int
    median_us: int
    max_us: int
    min_cycles: int
    median_cycles: int
    max_cycles: int
    clock_hz: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def of(cls, d: dict[str, Any]) -> "Bench":
        return cls(*(_int(d, k) for k in ("runs", "min_us", "median_us", "max_us", "min_cycles", "median_cycles",
                                            "max_cycles", "clock_hz")), dict(d))

    def figures(self) -> list[tuple[str, float, str]]:
        return [("bench_median", self.median_us, "microseconds"), ("bench_min", self.min_us, "microseconds"),
                ("bench_max", self.max_us, "microseconds"), ("bench_median", self.median_cycles, "cycles")]


@dataclass(frozen=True)
class OpTime:
    index: int
    op: str
    cycles: int
    us: int


@dataclass(frozen=True)
class Profile:
    """``profile``: one invoke, operator by operator."""

    ops: tuple[OpTime, ...]
    total_cycles: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def of(cls, d: dict[str, Any]) -> "Profile":
        ops = d.get("ops") if isinstance(d.get("ops"), list) else []
        return cls(tuple(OpTime(i, str(o.get("op", "?")), _int(o, "cycles"), _int(o, "us"))
                         for i, o in enumerate(ops) if isinstance(o, dict)), _int(d, "total_cycles"), dict(d))

    def figures(self) -> list[tuple[str, float, str]]:
        return [("profile_total", self.total_cycles, "cycles")]


@dataclass(frozen=True)
class Golden:
    """``golden``: the firmware's golden inputs run on the board, compared bit for bit with host TFLM."""

    count: int
    exact: int
    max_diff: int
    top1_agree: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def of(cls, d: dict[str, Any]) -> "Golden":
        return cls(_int(d, "count"), _int(d, "exact"), _int(d, "max_diff"), _int(d, "top1_agree"), dict(d))

    @property
    def all_exact(self) -> bool:
        return self.count > 0 and self.exact == self.count

    def figures(self) -> list[tuple[str, float, str]]:
        return [("golden_exact", self.exact / self.count if self.count else 0.0, "ratio"),
                ("golden_max_diff", self.max_diff, "steps")]


@dataclass(frozen=True)
class Inference:
    """``load`` + ``infer`` of one frame: the output tensor as the board computed it."""

    output: np.ndarray  # the model's output tensor values (its dtype, flattened)
    top1: int
    us: int
    cycles: int

    def figures(self) -> list[tuple[str, float, str]]:
        return [("infer", self.us, "microseconds"), ("infer", self.cycles, "cycles")]


@dataclass(frozen=True)
class Metric:
    """One figure measured in a session: what, how much, in what unit, on which model, where."""

    metric: str
    value: float
    unit: str
    model_hash: str
    where: str  # "board" (a real Pico) or "emulated"
    board: str  # the port, or "emulated Pico N"
    label: str  # what the board is, as reports say it (what an emulation leaves out)
    test: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _om_name(metric: str, unit: str) -> str:
    name = re.sub(r"[^a-zA-Z0-9_]", "_", f"picotflm_{metric}")
    return name if name.endswith("_" + unit) else f"{name}_{unit}"


def _om_label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def openmetrics(metrics: list[Metric]) -> str:
    """The figures as OpenMetrics text: one gauge family per figure and unit, one sample per measurement."""
    families: dict[str, list[Metric]] = {}
    for m in metrics:
        families.setdefault(_om_name(m.metric, m.unit), []).append(m)
    out: list[str] = []
    for name in sorted(families):
        ms = families[name]
        out += [f"# TYPE {name} gauge", f"# UNIT {name} {ms[0].unit}",
                f"# HELP {name} {ms[0].metric} measured by picotflm's HIL plugin, in {ms[0].unit}"]
        seen: dict[tuple, int] = {}
        for m in ms:
            key = (m.test, m.board)
            n = seen[key] = seen.get(key, -1) + 1  # the same figure measured again by one test
            labels = {"model_hash": m.model_hash, "where": m.where, "board": m.board, "test": m.test, "n": str(n)}
            text = ",".join(f'{k}="{_om_label(v)}"' for k, v in labels.items())
            out.append(f"{name}{{{text}}} {float(m.value)!r}")
    out.append("# EOF")
    return "\n".join(out) + "\n"


def openmetrics_path(json_path: Path) -> Path:
    """Where the OpenMetrics text goes beside the JSON file: ``metrics.json`` -> ``metrics.openmetrics.txt``."""
    return json_path.with_name(json_path.stem + ".openmetrics.txt")


def write_metrics(path: str | Path, metrics: list[Metric], session: dict[str, Any]) -> tuple[Path, Path]:
    """``path`` (JSON: the session and every figure) and the OpenMetrics text beside it, each written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"schema": SCHEMA, "session": session, "metrics": [m.as_dict() for m in metrics]}
    atomic_write_text(path, to_json(doc))
    om = openmetrics_path(path)
    atomic_write_text(om, openmetrics(metrics))
    return path, om
