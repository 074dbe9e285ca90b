"""`picotflm arena` on the emulated Pico, as a user runs it: the sweep, a forced failure of --apply
(the run must stay exactly as it was) and a confirmed --apply (rebuilt, re-measured, RAM saved).

Needs the Pico SDK, pico-tflmicro, the arm toolchain and rp2040js (skipped with the reason when
absent; PICOTFLM_REQUIRE_FIRMWARE=1 fails instead). Builds one small run of the default pipeline."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pipeline.analysis.arena import recommend
from tests.conftest import SMALL_RUN_STAGES, cli, require_emulated_pico, run_small_recipe, small_recipe

pytestmark = [pytest.mark.firmware, pytest.mark.slow]

RECIPE = small_recipe("arena tests", stages=SMALL_RUN_STAGES + ["measure"],
                      extra="\n[measure]\nbench_runs = 2\ninfer_frames = 1\n")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    require_emulated_pico()
    run = run_small_recipe(tmp_path_factory.mktemp("arena"), RECIPE)
    assert (run / "measured.json").is_file()
    return run


def _snapshot(run: Path) -> dict[str, str]:
    """sha256 of everything that makes up the run's firmware and config: the files, and what the
    manifest records (its recipe, and each stage's config, fingerprint, outputs and metrics; not its
    timestamps, which every command that checks the stages rewrites)."""
    files = [run / "firmware.elf", run / "firmware.uf2", run / "measured.json",
             run / "golden.json"] + sorted((run / "firmware").rglob("*"))
    snap = {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()}
    man = json.loads((run / "manifest.json").read_text())
    snap["manifest: recipe"] = json.dumps(man["recipe"], sort_keys=True)
    for name, e in man["stages"].items():
        snap[f"manifest: {name}"] = json.dumps({k: e.get(k) for k in ("config", "fingerprint", "outputs", "metrics")},
                                               sort_keys=True)
    return snap


def _arena(run: Path, *args: str):
    return cli("arena", "small", "--runs-dir", str(run.parent), "--no-progress", *args, timeout=1800)


def test_sweep_finds_a_minimum_that_works(small_run):
    r = _arena(small_run)
    assert r.returncode == 0, r.stderr[-3000:]
    a = json.loads((small_run / "arena.json").read_text())
    assert a["device_min_bytes"] % 16 == 0
    assert a["arena_used_bytes"] <= a["device_min_bytes"] <= a["compiled_arena_bytes"]
    assert a["peak_live_activations_bytes"] == 11_520 and (a["peak_op_index"], a["peak_op"]) == (0, "CONV_2D")
    # picotflm's kernels run the first conv in place: the device needs less than TFLM's own peak, but
    # more than the in-place peak (input and output overlapping) plus nothing.
    assert (a["peak_live_in_place_bytes"], a["peak_in_place_op_index"]) == (7_104, 0)
    assert a["peak_live_in_place_bytes"] < a["device_min_bytes"] < a["peak_live_activations_bytes"]
    assert a["recommended_bytes"] == recommend(a["device_min_bytes"], 10, 256)
    last = a["step_log"][-2:]
    assert last[0]["arena_limit"] == a["device_min_bytes"] and last[0]["ok"]
    assert last[1]["arena_limit"] == a["device_min_bytes"] - 16 and not last[1]["ok"]
    assert "emulated" in a["where"] and "applied" not in a
    for needle in ("host minimum (64-bit TFLM)", "arena_used_bytes() on the board", "device minimum",
                   "scratch gap", "peak live activations", "peak live activations, in-place plan",
                   "recommended (+10 % + 256 B)", "| 0 | CONV_2D |"):
        assert needle in r.stdout, needle
    assert "## Arena tuning" in (small_run / "report.md").read_text()


def test_bench_measures_the_runs_invoke_on_two_cores_and_on_one(small_run):
    """make bench's arena part measures person detection this way (python -m pipeline.bench.arena --person)."""
    from pipeline.bench.arena import LATENCY_COLUMNS, bench_latency

    r = bench_latency(small_run.parent, [small_run.name], bench_runs=2, log=lambda s: None)
    row = r["rows"][0]
    assert row["kernels"] == "picotflm" and row["golden"].split("/")[0] == row["golden"].split("/")[1] != "0"
    assert row["one_core_cycles"] > row["cycles"] > 0 and row["two_core_speedup"] > 1.2
    assert row["cycles_per_mac"] == pytest.approx(row["cycles"] / row["macs"], rel=1e-3)
    assert r["text"].splitlines()[0] == "| " + " | ".join(h for _, h in LATENCY_COLUMNS) + " |"
    assert "emulated Pico" in r["text"]


def test_a_failed_confirmation_leaves_the_run_as_it_was(small_run):
    if not (small_run / "arena.json").is_file():
        pytest.skip("needs the sweep of test_sweep_finds_a_minimum_that_works")
    dmin = json.loads((small_run / "arena.json").read_text())["device_min_bytes"]
    before = _snapshot(small_run)
    r = _arena(small_run, "--apply", "--arena-bytes", str(dmin - 512))  # below what the board needs
    assert r.returncode == 2, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("picotflm: error: ") and "Traceback" not in r.stderr
    assert f"{dmin - 512:,}" in last and "is unchanged" in last
    assert _snapshot(small_run) == before
    assert not (small_run.parent / ".arena-trial" / "small").exists()
    a = json.loads((small_run / "arena.json").read_text())
    assert a["applied"]["confirmed"] is False and a["applied"]["arena_bytes"] == dmin - 512


def test_apply_rebuilds_confirms_and_saves_ram(small_run):
    before = json.loads((small_run / "manifest.json").read_text())
    ram_before = before["stages"]["build"]["metrics"]["static_ram_bytes"]
    compiled = before["stages"]["render"]["metrics"]["arena_bytes"]
    r = _arena(small_run, "--apply")
    assert r.returncode == 0, r.stderr[-3000:]
    a = json.loads((small_run / "arena.json").read_text())
    ap = a["applied"]
    rec = a["recommended_bytes"]
    assert ap["confirmed"] and ap["arena_bytes"] == rec and ap["golden"] == "4/4"
    assert ap["ram_saved_bytes"] == ram_before - ap["static_ram_after"] == compiled - rec
    after = json.loads((small_run / "manifest.json").read_text())
    assert after["recipe"]["configs"]["render"]["arena_bytes"] == rec
    assert after["stages"]["render"]["metrics"]["arena_bytes"] == rec
    measured = json.loads((small_run / "measured.json").read_text())
    assert measured["mem"]["arena_size"] == rec and measured["golden"]["exact"] == measured["golden"]["count"]
    assert f"#define PICOTFLM_ARENA_SIZE {rec}" in (small_run / "firmware" / "model_config.h").read_text()
    assert "applied and confirmed" in r.stdout and f"saved {compiled - rec:,} B" in r.stdout
    assert not (small_run.parent / ".arena-trial" / "small").exists()
    # The run is consistent: building it again changes nothing.
    b = cli("build", "small", "--runs-dir", str(small_run.parent), "--no-progress", timeout=1800)
    assert b.returncode == 0, b.stderr[-2000:]
    assert "render: up to date" in b.stderr and "build: up to date" in b.stderr, b.stderr[-2000:]
