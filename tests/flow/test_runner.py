"""The runner over the stage table: skipping up-to-date stages, re-running on change, StageSkipped, failures."""
from __future__ import annotations

import json

import pytest

from pipeline.config import ModelConfig, TrainConfig
from pipeline.errors import PipelineError
from pipeline.flow import runner
from pipeline.flow.recipe import load_recipe, parse_overrides
from pipeline.flow.rundir import RunDir
from pipeline.flow.runner import RunOptions, StageSkipped, run_recipe
from pipeline.flow.table import STAGE_ORDER, STAGES, Stage


def test_table_follows_stage_order():
    names = [s.name for s in STAGES]
    assert names[:3] == ["data", "model", "train"]
    assert names == sorted(names, key=STAGE_ORDER.index)


def _run(recipe_file, runs, overrides=(), force=False, **kw):
    lines: list[str] = []
    recipe = load_recipe(str(recipe_file), parse_overrides(list(overrides)))
    summary = run_recipe(recipe, RunDir.of("t", runs), RunOptions(progress=False, force=force), log=lines.append, **kw)
    return summary, lines


def test_skip_when_unchanged_and_rerun_on_change(tiny_recipe_file, tmp_path):
    recipe = tiny_recipe_file(samples=8, epochs=1)
    s1, _ = _run(recipe, tmp_path)
    assert [o.status for o in s1.outcomes] == ["done", "done", "done"]
    manifest = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert manifest["stages"]["train"]["metrics"]["epochs_run"] == 1
    assert manifest["versions"]["tensorflow"] and manifest["recipe"]["name"] == "tiny"
    assert (tmp_path / "t" / "report.md").is_file() and (tmp_path / "t" / "report.json").is_file()

    s2, lines = _run(recipe, tmp_path)
    assert [o.status for o in s2.outcomes] == ["up to date"] * 3
    assert all("up to date, skipped" in line for line in lines)
    assert "3 up to date" in s2.line()

    # a train setting changed: only train runs again
    s3, lines = _run(recipe, tmp_path, ["train.epochs=2"])
    assert [o.status for o in s3.outcomes] == ["up to date", "up to date", "done"]
    manifest = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert manifest["stages"]["train"]["metrics"]["epochs_run"] == 2

    # a data setting changed: everything downstream runs again
    s4, _ = _run(recipe, tmp_path, ["train.epochs=2", "data.seed=1"])
    assert [o.status for o in s4.outcomes] == ["done", "done", "done"]

    # an output removed or changed by hand: that stage runs again
    (tmp_path / "t" / "model.keras").unlink()
    s5, _ = _run(recipe, tmp_path, ["train.epochs=2", "data.seed=1"])
    assert [o.status for o in s5.outcomes] == ["up to date", "up to date", "done"]

    # --force runs everything; until= stops after a stage
    s6, _ = _run(recipe, tmp_path, ["train.epochs=2", "data.seed=1"], force=True, until="model")
    assert [o.status for o in s6.outcomes] == ["done", "done"]


def test_rerun_with_nothing_changed_keeps_the_report_and_a_change_rewrites_it(tiny_recipe_file, tmp_path,
                                                                              monkeypatch):
    import pipeline.analysis.report

    recipe = tiny_recipe_file(samples=8, epochs=1)
    _run(recipe, tmp_path)
    written: list[str] = []
    real = pipeline.analysis.report.write_report
    monkeypatch.setattr(pipeline.analysis.report, "write_report", lambda d: written.append(str(d)) or real(d))
    s2, _ = _run(recipe, tmp_path)
    assert [o.status for o in s2.outcomes] == ["up to date"] * 3 and written == []
    assert s2.report_md == tmp_path / "t" / "report.md" and s2.report_md.is_file()
    (tmp_path / "t" / "arena.json").write_text("{}")  # a file the report reads changed
    _run(recipe, tmp_path)
    assert len(written) == 1
    (tmp_path / "t" / "report.json").unlink()  # the report itself removed
    _run(recipe, tmp_path)
    assert len(written) == 2 and (tmp_path / "t" / "report.json").is_file()
    _run(recipe, tmp_path, ["train.epochs=2"])  # a stage ran
    assert len(written) == 3
    _run(recipe, tmp_path, ["train.epochs=2"])
    assert len(written) == 3


def test_file_hashes_hash_each_file_once_and_again_when_rewritten(tmp_path, monkeypatch):
    from pipeline.flow.rundir import atomic_write_bytes, sha256_bytes

    calls: list[str] = []
    real = runner.sha256_file
    monkeypatch.setattr(runner, "sha256_file", lambda p: calls.append(str(p)) or real(p))
    f = atomic_write_bytes(tmp_path / "a.bin", b"one")
    hashes = runner.FileHashes()
    assert hashes(f) == hashes(f) == sha256_bytes(b"one") and len(calls) == 1
    atomic_write_bytes(f, b"two")  # same size, rewritten by a rename
    assert hashes(f) == sha256_bytes(b"two") and len(calls) == 2


def test_stage_skipped_is_recorded_and_downstream_skipped(tiny_recipe_file, tmp_path, monkeypatch):
    def no_sdk(ctx, cfg):
        raise StageSkipped("no Pico SDK (set PICO_SDK_PATH)")

    table = list(STAGES)
    table[1] = Stage("model", ModelConfig, no_sdk, inputs=("data.npz",), outputs=("model_untrained.keras",))
    monkeypatch.setattr(runner, "STAGE_BY_NAME", {s.name: s for s in table})
    s, lines = _run(tiny_recipe_file(samples=4), tmp_path)
    assert [o.status for o in s.outcomes] == ["done", "skipped", "skipped"]
    assert "[2/3] model: skipped: no Pico SDK (set PICO_SDK_PATH)" in lines
    m = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert m["stages"]["model"] == {**m["stages"]["model"], "status": "skipped", "reason": "no Pico SDK (set PICO_SDK_PATH)"}
    assert "needs model_untrained.keras" in m["stages"]["train"]["reason"]
    report = (tmp_path / "t" / "report.md").read_text()
    assert "skipped: no Pico SDK (set PICO_SDK_PATH)" in report


def test_failed_stage_recorded_then_raised(tiny_recipe_file, tmp_path, monkeypatch):
    def broken(ctx, cfg):
        raise PipelineError("the oven is cold", hint="preheat")

    table = [STAGES[0], Stage("model", ModelConfig, broken, inputs=("data.npz",), outputs=("m",))]
    monkeypatch.setattr(runner, "STAGE_BY_NAME", {s.name: s for s in table + list(STAGES[2:])})
    with pytest.raises(PipelineError, match="oven is cold"):
        _run(tiny_recipe_file(samples=4), tmp_path)
    m = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert m["stages"]["model"]["status"] == "failed" and m["stages"]["model"]["reason"] == "the oven is cold"


def test_lazy_stage_function_and_previous_output():
    st = Stage("train", TrainConfig, "pipeline.stages.train:evaluate")
    from pipeline.stages.train import evaluate

    assert st.function() is evaluate
    recipe = load_recipe("int8")
    assert runner.previous_output(recipe, "train", ".keras") == "model_untrained.keras"
