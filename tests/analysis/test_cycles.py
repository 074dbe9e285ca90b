"""Where an invoke's cycles go (pipeline/analysis/cycles.py): profile snapshots turned into functions,
and the emulated Pico's profile of a real run (board image)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.analysis.cycles import by_function, cycles_markdown, is_link
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


RECIPE = small_recipe("cycle profile", stages=SMALL_RUN_STAGES)


@pytest.mark.firmware
@pytest.mark.slow
def test_profile_of_a_runs_invoke_on_the_emulated_pico(tmp_path_factory):
    from pipeline.analysis.cycles import profile_invoke

    require_emulated_pico()
    nm = shutil.which("arm-none-eabi-nm")
    if nm is None:
        pytest.skip("no arm-none-eabi-nm (apt-get install binutils-arm-none-eabi)")
    run = run_small_recipe(tmp_path_factory.mktemp("cycles"), RECIPE)
    r = profile_invoke(Path(run) / "firmware.elf", nm, cores=1, runs=2)
    work = [x for x in r["rows"] if x["core"] == 0 and not is_link(x["function"])]
    names = [x["function"] for x in work]
    assert any(n.startswith("pk_") for n in names[:3]), names[:10]  # picotflm's kernels lead
    # The invoke's functions add up to the bench's own cycle count (USB interrupts during it aside).
    assert 0.95 * r["cycles"] <= sum(x["cycles"] for x in work) <= 1.02 * r["cycles"]
    assert not [x for x in r["rows"] if x["core"] == 1 and x["cycles"] > 0.01 * r["cycles"]]  # one core
