"""Where an invoke's cycles go (pipeline/analysis/cycles.py): profile snapshots turned into functions,
and the emulated Pico's profile of a real run (board image)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.analysis.cycles import (by_function, by_instruction_class, cycles_markdown, instruction_class,
                                      instructions_markdown, is_link, parse_disassembly, pc_cycles)
from tests.conftest import SMALL_RUN_STAGES, require_emulated_pico, run_small_recipe, small_recipe

SYMBOLS = [(0x10000100, 0x10000140, "pk_span8w"), (0x10000140, 0x10000150, "tud_task_ext"),
           (0x20000000, 0x20000010, "pk_ram_fn")]


def _snap(core0: dict[int, float], core1: dict[int, float] | None = None, other: float = 0) -> dict:
    return {"seq": 1, "cores": [{"other": other, "pcs": sorted(core0.items())},
                                {"other": 0, "pcs": sorted((core1 or {}).items())}]}


def test_the_difference_of_two_snapshots_by_function():
    before = _snap({0x10000100: 10, 0x10000140: 5})
    after = _snap({0x10000100: 110, 0x10000102: 40, 0x10000140: 25, 0x20000004: 7, 0x10009000: 3}, {0x10000104: 9},
                  other=2)
    rows = by_function(before, after, SYMBOLS)
    got = {(r["core"], r["function"]): r["cycles"] for r in rows}
    assert got == {(0, "pk_span8w"): 140, (0, "tud_task_ext"): 20, (0, "pk_ram_fn"): 7, (0, "?"): 3,
                   (0, "(outside flash and SRAM)"): 2, (1, "pk_span8w"): 9}
    assert [r["function"] for r in rows if r["core"] == 0][0] == "pk_span8w"  # most first


def test_the_table_keeps_the_link_apart():
    result = {"rows": [{"core": 0, "function": "pk_span8w", "cycles": 900}, {"core": 0, "function": "tud_task", "cycles": 50},
                       {"core": 0, "function": "pk_pad_s8", "cycles": 100}, {"core": 1, "function": "pk_span8w", "cycles": 5}],
              "cycles": 1000, "runs": 4, "cores": 1}
    md = cycles_markdown(result, top=1)
    assert md[2] == "| `pk_span8w` | 900 | 90.0 % |" and md[3] == "| 1 other functions | 100 | 10.0 % |"
    assert "tud_task" not in "\n".join(md) and "50 cycles per invoke of the USB link" in md[-1]
    assert is_link("stdio_usb_in_chars") and not is_link("pk_span_dw3")


OBJDUMP = """
firmware.elf:     file format elf32-littlearm

Disassembly of section .text:

10000100 <pk_span8w>:
10000100:\tldrsb\tr5, [r4, r1]
10000102:\tmuls\tr5, r6
10000104:\tadds\tr0, r0, r5
10000106:\tldr\tr6, [sp, #32]\t@ 0x20
10000108:\tmov\tpc, r6
1000010a:\tbgt.n\t10000100 <pk_span8w>
1000010c:\tstrb\tr0, [r4, #0]
1000010e:\tldmia\tr1!, {r2, r3, r5}
"""


def test_an_objdump_listing_by_address_and_class():
    ins = parse_disassembly(OBJDUMP)
    assert ins[0x10000100] == ("ldrsb", "r5, [r4, r1]") and ins[0x10000106] == ("ldr", "r6, [sp, #32]")
    assert len(ins) == 8  # the header, section and label lines are no instructions
    got = [instruction_class(*ins[pc]) for pc in sorted(ins)]
    assert got == ["byte loads", "multiply", "data processing", "word loads", "branches, calls", "branches, calls",
                   "stores", "word loads"]
    assert instruction_class("mov", "r8, r4") == "data processing"


def test_cycles_by_instruction_class_per_function():
    before = _snap({0x10000100: 10})
    after = _snap({0x10000100: 30, 0x10000102: 10, 0x10000104: 10, 0x10000106: 20, 0x10000108: 20,
                   0x10000140: 99})
    pcs = pc_cycles(before, after, runs=2)
    assert pcs == {0x10000100: 10, 0x10000102: 5, 0x10000104: 5, 0x10000106: 10, 0x10000108: 10, 0x10000140: 49.5}
    rows = by_instruction_class(pcs, SYMBOLS, parse_disassembly(OBJDUMP), ["pk_span8w", "not_in_the_elf"])
    assert [r["function"] for r in rows] == ["pk_span8w"]  # an unknown function is left out
    r = rows[0]
    assert r["cycles"] == 40 and r["multiplies"] == 5
    assert r["classes"] == {"multiply": 5, "byte loads": 10, "word loads": 10, "stores": 0, "branches, calls": 10,
                            "data processing": 5}
    md = instructions_markdown(rows)
    assert md[2] == "| `pk_span8w` | 40 | 8.00 | 12.5 % | 25.0 % | 25.0 % | 0.0 % | 25.0 % | 12.5 % |"


RECIPE = small_recipe("cycle profile", stages=SMALL_RUN_STAGES)


@pytest.mark.firmware
@pytest.mark.slow
def test_profile_of_a_runs_invoke_on_the_emulated_pico(tmp_path_factory):
    from pipeline.analysis.cycles import profile_invoke

    require_emulated_pico()
    nm, objdump = shutil.which("arm-none-eabi-nm"), shutil.which("arm-none-eabi-objdump")
    if nm is None or objdump is None:
        pytest.skip("no arm-none-eabi-nm or -objdump (apt-get install binutils-arm-none-eabi)")
    run = run_small_recipe(tmp_path_factory.mktemp("cycles"), RECIPE)
    r = profile_invoke(Path(run) / "firmware.elf", nm, cores=1, runs=2)
    work = [x for x in r["rows"] if x["core"] == 0 and not is_link(x["function"])]
    names = [x["function"] for x in work]
    assert any(n.startswith("pk_") for n in names[:3]), names[:10]  # picotflm's kernels lead
    # The invoke's functions add up to the bench's own cycle count (USB interrupts during it aside).
    assert 0.95 * r["cycles"] <= sum(x["cycles"] for x in work) <= 1.02 * r["cycles"]
    assert not [x for x in r["rows"] if x["core"] == 1 and x["cycles"] > 0.01 * r["cycles"]]  # one core
    # By instruction: the lead kernel multiplies (its MACs), and its classes add up to its cycles.
    from pipeline.analysis.cycles import disassembly, text_symbols

    lead = next(x for x in work if x["function"].startswith("pk_"))
    rows = by_instruction_class(r["pcs"], text_symbols(Path(run) / "firmware.elf", nm),
                                disassembly(Path(run) / "firmware.elf", objdump), [lead["function"]])
    assert rows and rows[0]["multiplies"] > 0
    assert abs(rows[0]["cycles"] - lead["cycles"]) <= 2 and abs(sum(rows[0]["classes"].values()) - rows[0]["cycles"]) <= 6
