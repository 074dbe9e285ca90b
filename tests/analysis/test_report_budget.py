"""The memory budget (RAM against 264 KB, flash against 2 MB) in a run's report and in `compare`:
figures from the manifest only, "not measured" where a run did not measure them, and a PNG."""
from __future__ import annotations

import json

from pipeline.analysis.report import build_report, budget_plot, memory_budget, write_comparison, write_report

BUILD = {"image": "emulator", "flash_bytes": 202_672, "static_ram_bytes": 41_216, "arena_static_bytes": 19_504,
         "sections": {".data": 16_016, ".bss": 25_008}}
MEASURE = {"where": "emulated Pico (rp2040js)", "mem": {"arena_size": 19_504, "arena_used": 13_780,
                                                        "data_bytes": 16_016, "bss_bytes": 25_008, "heap_used": 0,
                                                        "stack_peak": 1_312, "ram_total": 42_336}}


def manifest(run: str = "r1", build: bool = True, measure: bool = True) -> dict:
    stages = {}
    if build:
        stages["build"] = {"status": "done", "metrics": BUILD}
    if measure:
        stages["measure"] = {"status": "done", "metrics": MEASURE}
    elif build:
        stages["measure"] = {"status": "skipped", "reason": "not measured: no emulator"}
    return {"run": run, "recipe": {"name": "int8", "stages": list(stages)}, "stages": stages}


def test_budget_is_the_boards_own_and_adds_up_to_its_total():
    b = memory_budget(manifest())
    parts = {p["part"].split(" (")[0]: p for p in b["ram_parts"]}
    assert parts["static RAM"]["bytes"] == 16_016 + 25_008 - 19_504 and "linker symbols" in parts["static RAM"]["where"]
    assert parts["tensor arena"]["bytes"] == 19_504
    assert parts["stack peak, core 0"]["bytes"] == 1_312 and "emulated Pico" in parts["stack peak, core 0"]["where"]
    assert parts["stack peak, core 1"]["bytes"] == 0 and "not started" in parts["stack peak, core 1"]["where"]
    assert parts["heap"]["bytes"] == 0  # measured zero is not "not measured"
    assert b["ram_total_bytes"] == MEASURE["mem"]["ram_total"] == 42_336  # one total: the board's, its parts add up
    assert b["ram_free_bytes"] == 270_336 - 42_336
    assert b["flash_bytes"] == 202_672 and b["arena_used_bytes"] == 13_780


def test_board_image_counts_core_1s_stack_in_the_one_total():
    m = manifest()
    mem = {**MEASURE["mem"], "core1_stack_peak": 1_008, "ram_total": 42_336 + 1_008}
    m["stages"]["measure"]["metrics"] = {**MEASURE, "where": "emulated Pico, board image", "mem": mem}
    b = memory_budget(m)
    parts = {p["part"]: p["bytes"] for p in b["ram_parts"]}
    assert parts["stack peak, core 1"] == 1_008
    assert b["ram_total_bytes"] == sum(parts.values()) == mem["ram_total"]


def test_unmeasured_parts_say_so_and_no_total_is_guessed():
    b = memory_budget(manifest(measure=False))
    assert b["ram_total_bytes"] is None and b["ram_free_bytes"] is None
    md, doc = build_report(manifest(measure=False))
    sec = md[md.index("## Memory budget"):]
    sec = sec[:sec.index("\n## ", 5)]
    assert "| stack peak, core 0 | not measured |" in sec and "| heap | not measured |" in sec
    assert "| **RAM total** of 264 KB (270,336 B) | not measured (stack peak, core 0, stack peak, core 1, heap: not measured)" in sec
    assert "21,712 B" in sec and "202,672 B" in sec  # what the ELF says is still shown
    assert doc["memory_budget"]["ram_total_bytes"] is None

    md, _ = build_report(manifest(build=False, measure=False))
    sec = md[md.index("## Memory budget"):]
    assert "| **flash used** of 2 MB (2,097,152 B) | not measured |" in sec


def test_without_the_elf_the_boards_linker_figures_are_used():
    m = manifest()
    del m["stages"]["build"]
    b = memory_budget(m)
    static = b["ram_parts"][0]
    assert static["bytes"] == 16_016 + 25_008 - 19_504 and "linker symbols" in static["where"]
    assert b["flash_bytes"] is None


def test_report_has_the_budget_table_and_chart(tmp_path):
    run = tmp_path / "r1"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps(manifest()))
    md_path, js_path = write_report(run)
    md = md_path.read_text()
    assert "| **RAM total** of 264 KB (270,336 B) | **42,336 B** | 15.7 % | sum of the above |" in md
    assert "| **flash used** of 2 MB (2,097,152 B) | **202,672 B** | 9.7 % | ELF sections |" in md
    assert "![memory budget](budget.png)" in md
    png = (run / "budget.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    write_report(run)
    assert (run / "budget.png").read_bytes() == png  # same figures, same bytes
    assert json.loads(js_path.read_text())["memory_budget"]["flash_bytes"] == 202_672


def test_no_chart_when_nothing_was_measured(tmp_path):
    assert budget_plot([("r", memory_budget(manifest(build=False, measure=False)))], tmp_path / "b.png") is None
    assert not (tmp_path / "b.png").exists()


def test_compare_shows_each_runs_budget(tmp_path):
    for name, meas in (("a", True), ("b", False)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps(manifest(name, measure=meas)))
    md, js, pngs = write_comparison(["a", "b"], tmp_path, tmp_path / "cmp")
    text = md.read_text()
    assert "## Memory budget (RP2040: 264 KB RAM, 2 MB flash)" in text
    assert "| a | 21,520 (8.0 %) | 19,504 (7.2 %) | 1,312 (0.5 %) | 0 (0.0 %) | 0 (0.0 %) | 42,336 (15.7 %) | 202,672 (9.7 %) |" in text
    assert ("| b | 21,712 (8.0 %) | 19,504 (7.2 %) | not measured | not measured | not measured | not measured "
            "| 202,672 (9.7 %) |") in text
    assert tmp_path / "cmp" / "budget.png" in pngs
    assert json.loads(js.read_text())["memory_budget"]["b"]["ram_total_bytes"] is None


def test_report_shows_the_flatbuffer_against_its_payload(tmp_path):
    from pipeline.tflite.reader import payload_bytes, payload_line
    from tests.tflite.test_slim import fc_model

    run = tmp_path / "r1"
    run.mkdir()
    data = fc_model()
    m = manifest()
    m["stages"]["convert"] = {"status": "done", "metrics": {"tflite_bytes": len(data), "weight_bytes": 8}}
    (run / "manifest.json").write_text(json.dumps(m))
    (run / "model.tflite").write_bytes(data)
    md_path, js_path = write_report(run)
    line = payload_line(payload_bytes(data))
    assert line == f"flatbuffer {len(data):,} B vs payload 40 B = {len(data) / 40:.2f}x"
    row = f"| flatbuffer vs payload (constants + scales + zero points) | {line} (goal <= 1.5x) |"
    assert row in md_path.read_text()
    assert json.loads(js_path.read_text())["flatbuffer_payload"]["payload_bytes"] == 40
    md, doc = build_report(m)  # no model file: no row, nothing guessed
    assert "flatbuffer vs payload" not in md and "flatbuffer_payload" not in doc
