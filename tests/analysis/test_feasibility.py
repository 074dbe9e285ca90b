"""pipeline.analysis.feasibility and `picotflm feasibility`: budgets of the target boards, measured and estimated."""
from __future__ import annotations

import json

import pytest

from pipeline.analysis import feasibility as F
from pipeline.errors import PipelineError
from pipeline.analysis.report import build_report


def _row(table, key):
    return next(r for r in table["rows"] if r["board"] == key)


def test_seed_case_944_mb_float32_is_not_feasible_on_rp2040():
    t = F.estimate_table(236_000_000, 32)
    rp = _row(t, "rp2040")
    assert not rp["fits"] and rp["binding"] == "RAM"
    # 944,000,000 B + 8,192 B overhead against 264 KB = 270,336 B of SRAM
    assert rp["factor"] == pytest.approx((944_000_000 + 8192) / 270_336)
    assert round(rp["factor"]) == 3492
    assert rp["factor_flash"] == pytest.approx(944_008_192 / (2 * 1024 * 1024))
    assert "no shipped recipe" in rp["recipe"]
    assert "not feasible on RP2040" in F.headline(rp) and "3,492x" in F.headline(rp)
    assert _row(t, "rpi4")["fits"]
    assert "ESTIMATE" in t["basis"]


def test_int4_is_named_when_halving_weights_is_enough():
    # 200,000 int8 params: 208 KB model > 128 KB SRAM of the STM32F411, but int4 (108 KB) fits
    t = F.estimate_table(200_000, 8, selected=F.boards(["stm32f411", "rp2040"]))
    stm = _row(t, "stm32f411")
    assert not stm["fits"] and 1 < stm["factor"] < 2
    assert stm["recipe"].startswith("int4")
    assert _row(t, "rp2040")["fits"]
    # float32: int8 (4x fewer weight bytes) is enough
    assert _row(F.estimate_table(100_000, 32, selected=F.boards(["stm32f411"])), "stm32f411")["recipe"].startswith("int8")


def test_activations_count_in_ram():
    base = _row(F.estimate_table(1590, 8, selected=F.boards(["rp2040"])), "rp2040")
    more = _row(F.estimate_table(1590, 8, activation_bytes=300_000, selected=F.boards(["rp2040"])), "rp2040")
    assert base["fits"] and not more["fits"] and more["binding"] == "RAM"
    assert more["ram_need_bytes"] == base["ram_need_bytes"] + 300_000


@pytest.mark.parametrize("call", [
    lambda: F.estimate_needs(0, 8), lambda: F.estimate_needs(-5, 8), lambda: F.estimate_needs(10, 0),
    lambda: F.estimate_needs(10, -8), lambda: F.estimate_needs(10, 8, activation_bytes=0),
    lambda: F.boards(["rp2040", "esp8266"]), lambda: F.custom_board(0, 100), lambda: F.custom_board(100, -1),
    lambda: F.custom_board(100, None),
])
def test_bad_input_is_a_pipeline_error(call):
    with pytest.raises(PipelineError):
        call()


MANIFEST = {
    "run": "r", "recipe": {"name": "int8", "stages": ["convert", "verify", "build", "measure"]},
    "stages": {
        "convert": {"status": "done", "metrics": {"tflite_bytes": 6720, "weight_bytes": 1264, "weight_dtypes": ["INT8"]}},
        "verify": {"status": "done", "metrics": {"host_arena_min_bytes": 14784, "model_bytes": 6720}},
        "build": {"status": "done", "metrics": {"flash_bytes": 224340, "static_ram_bytes": 28392}},
        "measure": {"status": "done", "metrics": {"ram_total_bytes": 29808, "source": "emulator"}},
    },
}


def test_run_uses_measured_figures_and_the_report_has_the_section():
    t = F.run_table(MANIFEST)
    rp = _row(t, "rp2040")
    assert (rp["ram_need_bytes"], rp["storage_need_bytes"]) == (29808, 224340) and rp["fits"]
    assert "measured" in t["basis"] and "ELF" in rp["storage_what"]
    assert "differs" in _row(t, "stm32f411")["storage_what"]  # another board: the RP2040 image as a proxy
    assert _row(t, "rpi4")["ram_need_bytes"] == 6720 + 14784
    small = F.run_table(MANIFEST, [F.custom_board(20_000, 100_000)])["rows"][0]
    assert not small["fits"] and small["binding"] == "flash"
    md, doc = build_report(MANIFEST)
    assert "## Platform feasibility" in md and doc["feasibility"]["rows"][0]["board"] == "rp2040"
    no_model = {"run": "x", "stages": {}}
    assert F.run_table(no_model) is None and "Platform feasibility" not in build_report(no_model)[0]


def test_cli_seed_case_and_bad_input(run_cli, tmp_path):
    r = run_cli("feasibility", "--params", "236000000", "--bits", "32", "--boards", "rp2040,rpi4")
    assert r.returncode == 0, r.stderr
    assert "not feasible on RP2040 (Raspberry Pi Pico): needs 3,492x" in r.stdout
    assert "ESTIMATE" in r.stdout
    for args, text in ((("--params", "-1", "--bits", "8"), "--params must be a positive integer"),
                       (("--params", "10", "--bits", "0"), "--bits must be a positive integer"),
                       (("--params", "10", "--bits", "8", "--boards", "nrf52"), "known boards: rp2040"),
                       (("--params", "10", "--bits", "8", "--ram", "0", "--flash", "9"), "--ram must be"),
                       (("--params", "10",), "--params and --bits go together")):
        r = run_cli("feasibility", *args)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("picotflm: error: ") and text in lines[0], r.stderr
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps(MANIFEST))
    r = run_cli("feasibility", "r", "--runs-dir", str(tmp_path / "runs"))
    assert r.returncode == 0, r.stderr
    assert "measured" in r.stdout and "fits 6 of 6 boards" in r.stdout
    assert "## Platform feasibility" in (run / "report.md").read_text()
