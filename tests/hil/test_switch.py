"""Quantization switching inside one firmware, on the emulated Pico (or a board with --port that
runs a switching firmware): the variants, `select` and its cost, golden bit-exactness per variant,
and the board's automatic policy decided exactly as the host simulation decides; and a firmware with
a 2-bit codebook variant next to int4 and int8 ones, each stored its own way, every one bit-exact."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_emulated_pico, run_small_recipe, small_recipe

pytestmark = pytest.mark.hardware

STAGES = ["data", "model", "train", "quantize", "convert", "verify", "render"]
INT8 = small_recipe("switch int8 variant", stages=["data", "model", "train", "convert", "verify", "render"])
INT4 = small_recipe("switch int4 variant", stages=STAGES,
                    extra='\n[quantize]\nmethod = "qat"\nweight_bits = 4\nepochs = 1\n')
CODEBOOK2 = small_recipe("switch 2-bit codebook variant",
                         stages=["data", "model", "train", "cluster", "quantize", "convert", "verify", "render"],
                         extra='\n[cluster]\nclusters = 4\nper_channel = true\nindex_bits = 2\nepochs = 1\n\n'
                               '[quantize]\nmethod = "ptq"\n')


@pytest.fixture(scope="module")
def small_runs(request, tmp_path_factory):
    """Two small runs of one model (int8, int4), sharing their data and training (the stage cache)."""
    if request.config.getoption("--port"):
        pytest.skip("the switching tests build their own firmware for the emulated Pico; on a board, flash "
                    "runs/switch-int4-int8/firmware.uf2 and run `picotflm switch int4-int8 --board --port PORT`")
    require_emulated_pico()
    runs = tmp_path_factory.mktemp("switch")
    run_small_recipe(runs, INT8, name="v8")
    run_small_recipe(runs, INT4, name="v4")
    return runs


@pytest.fixture(scope="module")
def switch_dir(small_runs):
    """The switching firmware built from the two small runs."""
    from pipeline.analysis.switchfw import build_switching

    runs = small_runs
    out = runs / "sw"
    built = build_switching(["v8", "v4"], out, runs_dir=runs, golden_count=4)
    return runs, out, built


@pytest.fixture
def board(switch_dir):
    from pipeline.board.client import BoardClient
    from pipeline.board.emulator import EmulatedPico

    _, out, _ = switch_dir
    with EmulatedPico(out / "firmware.elf") as pico, BoardClient(pico.port, timeout=20.0) as b:
        b.handshake()
        yield b


def _host(runs: Path, name: str, n: int):
    from pipeline.tflite.reader import inspect_tflite
    from pipeline.stages.data import Dataset
    from pipeline.stages.verify import images_to_input, run_tflm

    data = (runs / name / "model.tflite").read_bytes()
    info = inspect_tflite(data)
    ds = Dataset.load(runs / name / "data.npz")
    x = images_to_input(ds.x_test[:n], info)
    y, _ = run_tflm(data, x, 1 << 20)
    return x, y, info, ds.y_test[:n]


def test_the_smallest_variant_comes_first_and_is_set_up_at_boot(switch_dir, board):
    runs, _, built = switch_dir
    order = [v["run"] for v in built["variants_smallest_first"]]
    assert order == ["v4", "v8"]  # 4-bit weights are the smaller model
    listed = board.variants()
    assert [v["name"] for v in listed] == order
    assert [v["hash"] for v in listed] == [v["hash"] for v in built["variants_smallest_first"]]
    assert [v["model_bytes"] for v in listed] == [(runs / r / "model.tflite").stat().st_size for r in order]
    info = board.request("info")
    assert info["variants"] == 2 and info["variant"] == 0 and info["variant_name"] == "v4"
    assert info["hash"] == listed[0]["hash"] and info["status"] == "ready"


def test_select_switches_measures_its_cost_and_every_variant_is_bit_exact(board):
    costs = []
    for i, want in ((1, "v8"), (0, "v4"), (1, "v8")):
        r = board.select(i)
        assert r["variant"] == i and r["name"] == want
        assert r["switch_cycles"] > 10_000 and r["switch_us"] > 0  # TFLM's setup of the model really ran
        assert r["arena_used"] > 0
        assert board.request("info")["hash"] == r["hash"]
        g = board.request("golden", timeout=60.0)
        assert g["exact"] == g["count"] == 4
        costs.append(r["switch_cycles"])
    # The second setup of v8 takes its convolutions' confirmed requantization from the cache: cheaper,
    # and (golden above) still bit-exact.
    info = board.request("info")
    assert info["quant_cache_hits"] >= 1 and info["quant_tables_missed"] == 0
    assert costs[2] < costs[0]


def test_selecting_a_variant_that_does_not_exist_is_an_error_reply(board):
    r = board.request("select", 2, raise_on_error=False)
    assert not r.ok and r.err == "range" and "variant 2 does not exist" in r.msg and "has 2" in r.msg
    assert board.request("info")["status"] == "ready"  # the variant in force is untouched
    with pytest.raises(Exception, match="outside"):
        board.set_policy(1.5)
    r = board.request("policy", "confidence", 1001, raise_on_error=False)
    assert not r.ok and r.err == "range"


def test_infer_uses_the_selected_variant(switch_dir, board):
    runs, _, _ = switch_dir
    for i, name in ((0, "v4"), (1, "v8")):
        x, y, _, _ = _host(runs, name, 3)
        board.select(i)
        for k in range(3):
            assert board.send_frame(bytes(x[k].tobytes()))["output"] == bytes(y[k].tobytes())


@pytest.mark.parametrize("threshold,level", [(0.0, 0), (1.0, 1)])
def test_policy_extremes_never_or_always_escalate(switch_dir, board, threshold, level):
    runs, _, _ = switch_dir
    x, y8, _, _ = _host(runs, "v8", 3)
    _, y4, _, _ = _host(runs, "v4", 3)
    board.set_policy(threshold, "confidence")
    for k in range(3):
        r = board.send_frame(bytes(x[k].tobytes()), auto=True)
        assert r["variant"] == level and r["escalations"] == level
        assert r["output"] == bytes((y8 if level else y4)[k].tobytes())
        if level:  # ran int4, switched, ran int8: the switch is counted apart from the invokes
            assert r["switch_cycles"] > 0 and r["cycles"] >= r["invoke_cycles"] + r["switch_cycles"]


def test_measured_policy_decides_like_the_host_simulation(switch_dir):
    from pipeline.analysis.switchfw import measure_switching

    runs, out, _ = switch_dir
    r = measure_switching(out, ["v8", "v4"], runs_dir=runs, threshold=0.6, metric="margin", frames=12,
                          bench_runs=2, sweep_thresholds=(0.0, 0.6, 1.0))
    p = r["policy_on_board"]
    assert p["frames"] == 12 and p["decisions_match_host"] == 12 and p["predictions_match_host"] == 12
    assert p["outputs_bit_exact"] == 12
    for v in r["variants_smallest_first"]:
        assert v["frames_bit_exact"] == 12 and v["golden_exact"] == "4/4" and v["switch_us_median"] > 0
    rows = {row["threshold"]: row for row in r["rows"]}
    assert rows[0.0]["escalated_fraction"] == 0.0 and rows[1.0]["escalated_fraction"] == 1.0
    assert rows[1.0]["mean_latency_us_with_switch_cost"] > rows[1.0]["mean_latency_us"]
    assert (out / "switch.png").stat().st_size > 0 and "Policy on the board" in (out / "switch.md").read_text()


def test_a_2bit_codebook_variant_switches_with_int4_and_int8_each_stored_its_own_way(small_runs):
    """Three variants in one firmware: the codebook run (cluster.index_bits = 2) stored as codebooks of its
    model array, int4 and int8 as their .tflite; smallest in flash first; every variant golden bit-exact
    and its answers equal host TFLM's on the int8 model it encodes."""
    import json

    from pipeline.tflite.codebook import encode
    from pipeline.analysis.switchfw import build_switching
    from pipeline.board.client import BoardClient
    from pipeline.board.emulator import EmulatedPico

    runs = small_runs
    run_small_recipe(runs, CODEBOOK2, name="v2")
    out = runs / "sw3"
    built = build_switching(["v8", "v2", "v4"], out, runs_dir=runs, golden_count=4)
    vs = built["variants_smallest_first"]
    assert sorted(v["run"] for v in vs) == ["v2", "v4", "v8"]
    assert [v["device_model_bytes"] for v in vs] == sorted(v["device_model_bytes"] for v in vs)
    by_run = {v["run"]: v for v in vs}
    assert by_run["v2"]["stored_as"] == "2-bit codebooks" and by_run["v4"]["stored_as"] == "its .tflite"
    assert by_run["v2"]["device_weight_bytes"] < by_run["v2"]["weight_bytes"]
    dev, books = encode((runs / "v2" / "model.tflite").read_bytes(), 2)
    assert books
    assert "g_micropizzanet_v2_model_data +" in (out / "firmware" / "codebook_data.cc").read_text()
    assert json.loads((out / "switch_build.json").read_text())["variants_smallest_first"] == vs
    with EmulatedPico(out / "firmware.elf") as pico, BoardClient(pico.port, timeout=20.0) as b:
        b.handshake()
        listed = b.variants()
        assert [v["name"] for v in listed] == [v["run"] for v in vs]
        assert [v["hash"] for v in listed] == [v["hash"] for v in vs]  # the host models' hashes
        sizes = {v["name"]: v["model_bytes"] for v in listed}
        assert sizes["v2"] == len(dev) < (runs / "v2" / "model.tflite").stat().st_size
        assert sizes["v4"] == (runs / "v4" / "model.tflite").stat().st_size
        for i, v in enumerate(vs):
            assert b.select(i)["name"] == v["run"]
            g = b.request("golden", timeout=60.0)
            assert g["exact"] == g["count"] == 4, v["run"]
            x, y, _, _ = _host(runs, v["run"], 2)
            for k in range(2):
                assert b.send_frame(bytes(x[k].tobytes()))["output"] == bytes(y[k].tobytes()), v["run"]
