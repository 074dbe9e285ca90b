"""Where an invoke's cycles go, by function: the board image on the emulated Pico sums every executed
instruction's cycles by its address (``tools/emulator/profile.mjs``); two snapshots around ``bench``
give the invokes' share, which the ELF's symbol table turns into functions.

Emulated cycles, as rp2040js charges each instruction (no flash wait states, no XIP cache misses):
on a Pico, code and weights read from flash cost more.
"""
from __future__ import annotations

import bisect
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable

from pipeline.errors import PipelineError


def text_symbols(elf: Path, nm: str) -> list[tuple[int, int, str]]:
    """(start, end, name) of every function in ``elf`` (``nm``'s text symbols with a size), by address."""
    r = subprocess.run([nm, "-n", "-S", "-C", "--defined-only", str(elf)], capture_output=True, text=True)
    if r.returncode != 0:
        raise PipelineError(f"{nm} could not read {elf}: {r.stderr.strip()[:200]}", hint="rebuild the run's firmware")
    out = []
    for line in r.stdout.splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) == 4 and parts[2] in "tTwW":
            start, size = int(parts[0], 16) & ~1, int(parts[1], 16)
            if size > 0:
                out.append((start, start + size, parts[3]))
    out.sort()
    return out


def by_function(before: dict, after: dict, symbols: list[tuple[int, int, str]]) -> list[dict[str, Any]]:
    """Per core, the cycles spent between two profile snapshots, summed by function (an address in no
    function: ``?``), most first: ``[{"core", "function", "cycles"}]``."""
    starts = [s for s, _, _ in symbols]
    rows = []
    for core, (b, a) in enumerate(zip(before["cores"], after["cores"])):
        sums: dict[str, float] = {}
        for pc, d in pc_cycles(before, after, core=core).items():
            i = bisect.bisect_right(starts, pc) - 1
            name = symbols[i][2] if i >= 0 and pc < symbols[i][1] else "?"
            sums[name] = sums.get(name, 0) + d
        other = a.get("other", 0) - b.get("other", 0)
        if other > 0:
            sums["(outside flash and SRAM)"] = other
        rows += [{"core": core, "function": n, "cycles": int(c)} for n, c in sorted(sums.items(), key=lambda kv: -kv[1])]
    return rows


def profile_invoke(elf: Path, nm: str, *, cores: int = 1, runs: int = 2,
                   log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """``bench runs`` of the board image ``elf`` on the emulated Pico (after ``cores N``), profiled:
    ``{"rows": by_function per invoke, "cycles": the bench's median cycles per invoke, "runs", "cores",
    "pcs": core 0's cycles per invoke by address}``."""
    from pipeline.board.client import BoardClient
    from pipeline.board.connect import emulated_board

    symbols = text_symbols(elf, nm)
    with tempfile.TemporaryDirectory(prefix="picotflm-profile-") as tmp:
        with emulated_board(elf, "board", profile=Path(tmp) / "profile.json") as pico:
            with BoardClient(pico.port, timeout=10.0) as board:
                board.handshake(None)
                board.request("cores", cores)
                board.request("bench", 1, timeout=120.0)  # first invoke outside the window (setup effects)
                log(f"profiling {runs} invokes on {cores} core(s)")
                before = pico.profile_snapshot()
                bench = board.request("bench", runs, timeout=120.0 * runs)
                after = pico.profile_snapshot()
    rows = by_function(before, after, symbols)
    for r in rows:
        r["cycles"] = round(r["cycles"] / runs)
    return {"rows": rows, "cycles": bench.get("median_cycles"), "runs": runs, "cores": cores,
            "pcs": pc_cycles(before, after, core=0, runs=runs)}


def pc_cycles(before: dict, after: dict, *, core: int = 0, runs: int = 1) -> dict[int, float]:
    """``core``'s cycles per run at each instruction address between two profile snapshots."""
    base = {pc: c for pc, c in before["cores"][core]["pcs"]}
    return {pc: (c - base.get(pc, 0)) / runs for pc, c in after["cores"][core]["pcs"] if c - base.get(pc, 0) > 0}


# ARMv6-M (Thumb) mnemonics by what they do, as objdump spells them; the rest is "data processing"
# (adds, subs, moves, shifts, compares, extends).
INSTRUCTION_CLASSES = (
    ("multiply", ("muls",)),
    ("byte loads", ("ldrb", "ldrsb", "ldrh", "ldrsh")),
    ("word loads", ("ldr", "ldmia", "ldm")),
    ("stores", ("str", "strb", "strh", "stmia", "stm")),
    ("branches, calls", ("b", "bl", "blx", "bx", "push", "pop", "beq", "bne", "bgt", "bge", "blt", "ble", "bhi",
                         "bhs", "blo", "bls", "bcs", "bcc", "bmi", "bpl", "bvs", "bvc", "cbz", "cbnz")),
)
DATA_PROCESSING = "data processing"
BRANCHES = INSTRUCTION_CLASSES[-1][0]
CLASS_NAMES = tuple(n for n, _ in INSTRUCTION_CLASSES) + (DATA_PROCESSING,)
_CLASS_OF = {m: n for n, ms in INSTRUCTION_CLASSES for m in ms}


def instruction_class(mnemonic: str, operands: str = "") -> str:
    """The class of an objdump mnemonic (``bgt.n`` and ``ldr.w`` as ``bgt`` and ``ldr``); a move or add
    into pc is a branch."""
    m = mnemonic.split(".", 1)[0].lower()
    if m in ("mov", "add") and operands.replace(" ", "").lower().startswith("pc,"):
        return BRANCHES
    return _CLASS_OF.get(m, DATA_PROCESSING)


def disassembly(elf: Path, objdump: str) -> dict[int, tuple[str, str]]:
    """Every instruction of ``elf``'s code: address -> (mnemonic, operands), from ``objdump -d``."""
    r = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(elf)], capture_output=True, text=True)
    if r.returncode != 0:
        raise PipelineError(f"{objdump} could not read {elf}: {r.stderr.strip()[:200]}", hint="rebuild the run's firmware")
    return parse_disassembly(r.stdout)


def parse_disassembly(text: str) -> dict[int, tuple[str, str]]:
    """``objdump -d --no-show-raw-insn``'s instruction lines (an address, a colon, a tab, the mnemonic,
    its operands) by address."""
    out = {}
    for line in text.splitlines():
        head, sep, rest = line.partition(":")
        if not sep or not head.strip() or not rest.startswith("\t"):
            continue
        try:
            pc = int(head.strip(), 16)
        except ValueError:
            continue
        fields = rest.strip().split(None, 1)
        if fields:
            out[pc] = (fields[0], fields[1].split("@")[0].strip() if len(fields) > 1 else "")
    return out


def by_instruction_class(pcs: dict[int, float], symbols: list[tuple[int, int, str]],
                         instructions: dict[int, tuple[str, str]], functions: list[str]) -> list[dict[str, Any]]:
    """For each of ``functions``, its cycles (``pcs``: per address) summed by instruction class, and
    ``multiplies``, the times its ``muls`` ran (a one-cycle instruction: its cycles)."""
    spans = {name: (s, e) for s, e, name in symbols}
    rows = []
    for f in functions:
        if f not in spans:
            continue
        s, e = spans[f]
        sums = dict.fromkeys(CLASS_NAMES, 0.0)
        for pc, c in pcs.items():
            if s <= pc < e:
                sums[instruction_class(*instructions.get(pc, ("?", "")))] += c
        total = sum(sums.values())
        if total > 0:
            rows.append({"function": f, "cycles": round(total), "multiplies": round(sums["multiply"]),
                         "classes": {k: round(v) for k, v in sums.items()}})
    return rows


def instructions_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """``by_instruction_class``'s rows as a Markdown table: each class's share of the function's cycles,
    and its cycles per multiply."""
    md = ["| function | cycles per invoke | cycles per multiply | " + " | ".join(CLASS_NAMES) + " |",
          "|---|---|---|" + "---|" * len(CLASS_NAMES)]
    for r in rows:
        per_mul = f"{r['cycles'] / r['multiplies']:.2f}" if r["multiplies"] else "-"
        shares = [f"{100 * r['classes'][k] / r['cycles']:.1f} %" for k in CLASS_NAMES]
        md.append(f"| `{r['function']}` | {r['cycles']:,} | {per_mul} | " + " | ".join(shares) + " |")
    return md


# Functions of the USB link, stdio and the wait for the host's next command (name prefixes): the
# profile's window around ``bench`` holds them too, but they are no part of an invoke.
LINK_PREFIXES = ("tud_", "tu_", "tusb_", "usbd_", "dcd_", "cdcd_", "hw_", "_hw_", "e15_", "prepare_ep", "sync_ep",
                 "stdio_", "busy_wait", "time_us", "mutex_", "alarm_pool", "low_priority_worker", "ptf_",
                 "_vsnprintf", "_out", "_ntoa", "emit", "element", "put_escaped", "__wrap_", "irq_",
                 "get_absolute_time", "best_effort_wfe", "app::(anonymous namespace)::cmd_")


def is_link(function: str) -> bool:
    return function.startswith(LINK_PREFIXES)


def cycles_markdown(result: dict[str, Any], top: int = 12) -> list[str]:
    """Core 0's ``top`` functions of the invoke as a Markdown table, each with its cycles per invoke and
    its share of the invoke's cycles (``bench``'s median), then the rest, and the link's functions apart."""
    rows = [r for r in result["rows"] if r["core"] == 0]
    work = [r for r in rows if not is_link(r["function"])]
    link = sum(r["cycles"] for r in rows if is_link(r["function"]))
    total = result.get("cycles") or sum(r["cycles"] for r in work) or 1
    md = ["| function | cycles per invoke | share of the invoke |", "|---|---|---|"]
    md += [f"| `{r['function']}` | {r['cycles']:,} | {100 * r['cycles'] / total:.1f} % |" for r in work[:top]]
    rest = sum(r["cycles"] for r in work[top:])
    if rest:
        md.append(f"| {len(work) - top} other functions | {rest:,} | {100 * rest / total:.1f} % |")
    md += ["", f"Core 0, `bench {result['runs']}` after `cores {result['cores']}`: {total:,} cycles per invoke "
           f"(bench's median); the functions above sum to {sum(r['cycles'] for r in work):,}. The profile's window "
           f"also held {link:,} cycles per invoke of the USB link, stdio and the wait for the host's next command "
           "(its functions are not listed)."]
    return md
