"""pipeline/analysis/arena.py arena_figures and pipeline/bench/arena.py: a run's arena against its live
activations, from its arena.json, measured.json and model."""
import json

import pytest

from pipeline.errors import PipelineError


def _run(tmp_path, tuned=None, measured=None):
    from pipeline.flow.rundir import RunDir
    from tests._models import int8_tflite

    root = tmp_path / "r1"
    root.mkdir()
    (root / "model.tflite").write_bytes(int8_tflite())
    (root / "manifest.json").write_text(json.dumps({
        "run": "r1", "recipe": {"configs": {"build": {"kernels": "picotflm"}}},
        "stages": {"build": {"status": "done", "metrics": {"image": "board", "static_ram_bytes": 30_000}}}}))
    if tuned is not None:
        (root / "arena.json").write_text(json.dumps(tuned))
    if measured is not None:
        (root / "measured.json").write_text(json.dumps(measured))
    return RunDir(root=root, name="r1")


def test_figures_relate_the_device_minimum_to_both_peaks(tmp_path):
    from pipeline.analysis.arena import arena_figures, in_place_peak
    from pipeline.codegen.layout import arena_layout
    from tests._models import int8_tflite

    layout = arena_layout(int8_tflite())
    in_place = in_place_peak(int8_tflite(), layout)["peak_live_in_place_bytes"]
    assert in_place < layout["peak_live_bytes"]
    tuned = {"device_min_bytes": in_place + 1_000, "where": "emulated Pico",
             "applied": {"confirmed": True, "arena_bytes": in_place + 1_400},
             "host_allocations": {"total_bytes": 20_000, "head_bytes": 11_520, "tail_bytes": 8_480,
                                  "kinds": [{"what": "NodeAndRegistration struct", "count": 8, "used_bytes": 512}]}}
    f = arena_figures(_run(tmp_path, tuned, {"mem": {"ram_total": 41_000}}))
    assert f["peak_live_bytes"] == layout["peak_live_bytes"]
    assert f["peak_live_in_place_bytes"] == in_place
    assert f["beyond_in_place_peak_bytes"] == 1_000
    assert f["device_min_over_in_place_peak"] == round((in_place + 1_000) / in_place, 3)
    assert f["applied_arena_bytes"] == in_place + 1_400
    assert (f["ram_total_bytes"], f["ram_total_from"]) == (41_000, "board (measure)")
    assert f["kernels"] == "picotflm" and f["host_total_bytes_64bit"] == 20_000

    from pipeline.bench.arena import arena_markdown

    md = "\n".join(arena_markdown([f]))
    assert f"| r1 | picotflm | {in_place + 1_400:,} | {in_place + 1_000:,} | {in_place:,} |" in md
    assert "| NodeAndRegistration struct | 8 | 512 |" in md


def test_unapplied_arena_and_no_measurement(tmp_path):
    from pipeline.analysis.arena import arena_figures

    f = arena_figures(_run(tmp_path, {"device_min_bytes": 9_000, "applied": {"confirmed": False, "arena_bytes": 8_000}}))
    assert f["applied_arena_bytes"] is None
    assert (f["ram_total_bytes"], f["ram_total_from"]) == (30_000, "image (static RAM)")


def test_a_run_never_tuned_is_an_error(tmp_path):
    from pipeline.analysis.arena import arena_figures

    with pytest.raises(PipelineError, match="no arena.json"):
        arena_figures(_run(tmp_path))


def test_markdown_sets_a_model_beside_its_stock_build():
    from pipeline.bench.arena import arena_markdown

    rows = [{"run": "p", "kernels": "picotflm", "device_min_bytes": 49_120},
            {"run": "p-stock", "kernels": "stock", "device_min_bytes": 82_320},
            {"run": "q", "kernels": "picotflm", "device_min_bytes": 8_144}]
    md = "\n".join(arena_markdown(rows))
    assert "p: picotflm's device minimum / pico-tflmicro's" in md and "49,120 / 82,320 B = **0.597**" in md
    assert "q: picotflm's device minimum" not in md  # no stock build of q
