"""Does a model fit a board? RAM and flash of a few target boards against what a model needs.

Two sources of what a model needs:

- :func:`run_needs`: a run's **measured** figures: flash from the build stage's ELF memory map, RAM
  total from ``measured.json`` (the board's own ``mem`` answer), the ``.tflite`` bytes and the host
  TFLM arena. They are measured on the RP2040 image; for another microcontroller they stand in for its
  own build (another toolchain and TFLM port differ), and the table says so.
- :func:`estimate_needs`: an **estimate** from a parameter count and a bit width: model bytes =
  ``ceil(params * bits / 8) + overhead`` (default :data:`DEFAULT_OVERHEAD_BYTES`); activations unknown
  unless given. An estimate counts the model in RAM too (the strict bound: TFLM on a microcontroller
  can leave weights in memory-mapped flash, the Pi 4 holds them in RAM), and shows the flash factor
  beside it.

The **compression factor** still needed on a board is ``max(RAM needed / board RAM, storage needed /
board flash)``, in bytes (1 KB = 1,024 B, as the RP2040's 264 KB are 270,336 B); at or below 1 it fits.
Which shipped recipe would get there: the int8 and int4 families shrink weight bytes only (8 or 4 bits
per weight: int4 halves int8's weight bytes); pruning and clustering leave TFLM's bytes unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipeline.board.targets import KB, TARGETS, Target
from pipeline.errors import PipelineError
from pipeline.flow.rundir import stage_metrics


# Fixed bytes of a flatbuffer beyond its weights (tensor and operator tables, quantization scales and
# zero points, biases). MicroPizzaNet (18 layers, 1,590 parameters) measured 6,720 B at int8 (5,130 B
# beyond one byte per parameter) and 6,032 B at int4 (5,237 B): 8 KB covers a model of that size.
DEFAULT_OVERHEAD_BYTES = 8 * KB


Board = Target  # a row of the target registry
BOARDS: dict[str, Target] = TARGETS

# What the shipped recipes do to the bytes TFLM holds: weight bits. Pruning and clustering: no change
# (measured: prune-int8, cluster-int8 and int8 are all 1,264 B of weights).
RECIPE_BITS = ((8, "int8 (or prune-/boundary-/cluster-/pcqat-int8: same bytes)"), (4, "int4 / cluster-int4"))


@dataclass(frozen=True)
class Need:
    """What a model needs on one board."""

    storage_bytes: int  # flash (MCU) or storage (Linux)
    ram_bytes: int | None  # None: not known
    weight_bytes: int  # weights at weight_bits (the part recipes shrink)
    weight_bits: int
    weights_in_ram: bool  # counted in ram_bytes too
    basis: str  # "measured ..." or "estimate ..."
    ram_what: str
    storage_what: str


def _check_positive(name: str, value: int | None, hint: str = "e.g. --params 236000000 --bits 32") -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise PipelineError(f"{name} must be a positive integer, got {value!r}", hint=hint)


def boards(names: list[str] | None = None) -> list[Board]:
    """The named boards (all when ``names`` is empty); an unknown name is an error listing the known."""
    if not names:
        return list(BOARDS.values())
    out = []
    for n in names:
        b = BOARDS.get(n.strip().lower())
        if b is None:
            raise PipelineError(f"unknown board {n!r}", hint="known boards: " + ", ".join(BOARDS))
        out.append(b)
    return out


def custom_board(ram_bytes: int | None, flash_bytes: int | None) -> Board | None:
    """A board of the user's own (``--ram``/``--flash``); None when neither is given."""
    if ram_bytes is None and flash_bytes is None:
        return None
    _check_positive("--ram", ram_bytes, hint="a budget in bytes, e.g. --ram 65536 --flash 262144")
    _check_positive("--flash", flash_bytes, hint="a budget in bytes, e.g. --ram 65536 --flash 262144")
    if ram_bytes is None or flash_bytes is None:
        raise PipelineError("a custom board needs both --ram and --flash", hint="e.g. --ram 65536 --flash 262144")
    return Board("custom", "custom budget", ram_bytes, flash_bytes, f"{ram_bytes:,} B", f"{flash_bytes:,} B")


def estimate_needs(params: int, bits: int, activation_bytes: int | None = None,
                   overhead_bytes: int = DEFAULT_OVERHEAD_BYTES) -> Need:
    """An estimate from a parameter count: ``ceil(params * bits / 8) + overhead`` bytes of model,
    counted in flash and (strict bound) in RAM, plus the activations when given."""
    _check_positive("--params", params)
    _check_positive("--bits", bits)
    if bits > 64:
        raise PipelineError(f"--bits must be at most 64, got {bits}", hint="32 for float32, 8 for int8, 4 for int4")
    _check_positive("--activation-bytes", activation_bytes, hint="the activations' bytes (tensor arena), or leave it out")
    if isinstance(overhead_bytes, bool) or not isinstance(overhead_bytes, int) or overhead_bytes < 0:
        raise PipelineError(f"--overhead-bytes must be 0 or more, got {overhead_bytes!r}", hint="default 8192")
    weights = math.ceil(params * bits / 8)
    model = weights + overhead_bytes
    ram = model + (activation_bytes or 0)
    return Need(storage_bytes=model, ram_bytes=ram, weight_bytes=weights, weight_bits=bits, weights_in_ram=True,
                basis=f"estimate: {params:,} params x {bits} bits / 8 + {overhead_bytes:,} B overhead",
                storage_what="model bytes (estimate)",
                ram_what="model bytes" + (f" + {activation_bytes:,} B activations" if activation_bytes
                                          else " (activations unknown, not counted)"))


def run_needs(manifest: dict[str, Any], board: Board) -> Need | None:
    """Measured needs of a run on ``board``; None when the run has no converted model."""
    conv, verify = stage_metrics(manifest, "convert"), stage_metrics(manifest, "verify")
    build, meas = stage_metrics(manifest, "build"), stage_metrics(manifest, "measure")
    model = conv.get("tflite_bytes") or verify.get("model_bytes")
    if not model:
        return None
    weights = conv.get("weight_bytes") or verify.get("weight_bytes") or 0
    dtypes = conv.get("weight_dtypes") or []
    bits = 4 if dtypes and all(d == "INT4" for d in dtypes) else 8
    arena = verify.get("host_arena_min_bytes")
    if not board.mcu:  # Linux + TFLite: the model file in RAM, activations beside it
        return Need(storage_bytes=model, ram_bytes=model + arena if arena else None, weight_bytes=weights,
                    weight_bits=bits, weights_in_ram=True,
                    basis="measured: .tflite bytes and host TFLM arena (64-bit)",
                    storage_what=".tflite bytes", ram_what=".tflite bytes + host TFLM arena")
    proxy = "" if board.key == "rp2040" else " (RP2040 image: this board's own build differs)"
    if build.get("flash_bytes") is not None:
        storage, storage_what = build["flash_bytes"], f"firmware flash, ELF{proxy}"
    else:
        storage, storage_what = model, ".tflite bytes only (no firmware built)"
    if meas.get("ram_total_bytes") is not None:
        ram, ram_what = meas["ram_total_bytes"], f"RAM total, {meas.get('source') or 'board'} `mem`{proxy}"
    elif build.get("static_ram_bytes") is not None:
        ram, ram_what = build["static_ram_bytes"], f"static RAM, ELF (stack and heap not measured){proxy}"
    elif arena:
        ram, ram_what = arena, "host TFLM arena only (no firmware built)"
    else:
        ram, ram_what = None, "not measured"
    return Need(storage_bytes=storage, ram_bytes=ram, weight_bytes=weights, weight_bits=bits, weights_in_ram=False,
                basis="measured", storage_what=storage_what, ram_what=ram_what)


def _factor(need: int | None, have: int) -> float | None:
    return None if need is None else need / have


def assess(board: Board, need: Need) -> dict[str, Any]:
    """One row: fits or not, the factor still needed (against which budget) and the recipe that gets there."""
    f_ram, f_flash = _factor(need.ram_bytes, board.ram_bytes), _factor(need.storage_bytes, board.flash_bytes)
    known = [f for f in (f_ram, f_flash) if f is not None]
    factor = max(known)
    binding = "RAM" if f_ram is not None and f_ram >= f_flash else ("flash" if board.mcu else "storage")
    fits = factor <= 1.0
    if fits and f_ram is None:
        verdict = "flash fits; RAM not known"
    else:
        verdict = "fits" if fits else "does not fit"
    return {
        "board": board.key, "name": board.name, "ram_budget_bytes": board.ram_bytes,
        "flash_budget_bytes": board.flash_bytes, "ram_note": board.ram_note, "flash_note": board.flash_note,
        "ram_need_bytes": need.ram_bytes, "storage_need_bytes": need.storage_bytes,
        "ram_what": need.ram_what, "storage_what": need.storage_what, "basis": need.basis,
        "factor_ram": f_ram, "factor_flash": f_flash, "factor": factor, "binding": binding,
        "fits": fits, "verdict": verdict, "recipe": _recipe_hint(board, need, fits),
    }


def _recipe_hint(board: Board, need: Need, fits: bool) -> str:
    if fits:
        return "none needed"
    for bits, name in RECIPE_BITS:
        if bits >= need.weight_bits:
            continue
        saved = need.weight_bytes - math.ceil(need.weight_bytes * bits / need.weight_bits)
        ram = None if need.ram_bytes is None else need.ram_bytes - (saved if need.weights_in_ram else 0)
        storage = need.storage_bytes - saved
        f = max(x for x in (_factor(ram, board.ram_bytes), _factor(storage, board.flash_bytes)) if x is not None)
        if f <= 1.0:
            return f"{name}: {bits}-bit weights ({need.weight_bits / bits:g}x fewer weight bytes) fit"
        last = (bits, name, f)
    if need.weight_bits <= 4:
        return ("no shipped recipe: weights are already 4-bit; a smaller model "
                + ("or a smaller arena (RAM is the limit)" if not need.weights_in_ram else "is needed"))
    bits, name, f = last
    return (f"no shipped recipe: {name} ({need.weight_bits / bits:g}x fewer weight bytes) still needs "
            f"{_x(f)}: a smaller model is needed")


def table(needs: list[tuple[Board, Need]]) -> list[dict[str, Any]]:
    return [assess(b, n) for b, n in needs]


def _bytes(n: int | None) -> str:
    return "not known" if n is None else f"{n:,} B"


def _x(f: float | None) -> str:
    if f is None:
        return "not known"
    if f <= 1.0:
        return f"{f:.1%} used"
    return f"{f:,.0f}x" if f >= 10 else f"{f:,.2f}x"


def markdown(rows: list[dict[str, Any]], basis: str) -> list[str]:
    """The table, with a line on where its figures come from and how the factor is computed."""
    out = [f"Figures: **{basis}**. Factor needed = max(RAM needed / board RAM, storage needed / board flash), "
           "in bytes (1 KB = 1,024 B); at most 1 means it fits.", "",
           "| board | RAM | flash / storage | RAM needed | storage needed | vs RAM | vs flash | fits | factor needed | "
           "shipped recipe that gets there |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        needed = "-" if r["fits"] else f"**{_x(r['factor'])}** (vs {r['binding']})"
        out.append(f"| {r['name']} | {r['ram_note']} | {r['flash_note']} | {_bytes(r['ram_need_bytes'])} | "
                   f"{_bytes(r['storage_need_bytes'])} | {_x(r['factor_ram'])} | {_x(r['factor_flash'])} | "
                   f"{'yes' if r['fits'] else '**no**'}{'' if r['verdict'] in ('fits', 'does not fit') else ' (' + r['verdict'] + ')'} | "
                   f"{needed} | {r['recipe']} |")
    whats = sorted({(r["ram_what"], r["storage_what"]) for r in rows})
    out.append("")
    for ram_what, storage_what in whats:
        out.append(f"- RAM needed: {ram_what}; storage needed: {storage_what}.")
    return out


def run_table(manifest: dict[str, Any], selected: list[Board] | None = None) -> dict[str, Any] | None:
    """The feasibility of a run on the boards (all by default); None when the run has no model yet."""
    rows = []
    for b in selected or list(BOARDS.values()):
        need = run_needs(manifest, b)
        if need is None:
            return None
        rows.append(assess(b, need))
    return {"basis": "measured (flash: ELF of the RP2040 image; RAM: the board's `mem`; model: .tflite; "
                     "Pi 4: .tflite + host TFLM arena)", "rows": rows}


def estimate_table(params: int, bits: int, activation_bytes: int | None = None,
                   overhead_bytes: int = DEFAULT_OVERHEAD_BYTES, selected: list[Board] | None = None) -> dict[str, Any]:
    need = estimate_needs(params, bits, activation_bytes, overhead_bytes)
    rows = [assess(b, need) for b in selected or list(BOARDS.values())]
    return {"basis": need.basis + " (ESTIMATE, not measured; the model counted in RAM too)", "rows": rows}


def headline(row: dict[str, Any]) -> str:
    """One sentence per board, e.g. 'not feasible on RP2040 ...: needs 3,492x (vs RAM)'."""
    if row["fits"]:
        return f"{row['name']}: {row['verdict']}"
    need = row["ram_need_bytes"] if row["binding"] == "RAM" else row["storage_need_bytes"]
    have = row["ram_budget_bytes"] if row["binding"] == "RAM" else row["flash_budget_bytes"]
    return (f"not feasible on {row['name']}: needs {_x(row['factor'])} ({need:,} B / {have:,} B "
            f"{row['binding']}); {row['recipe']}")
