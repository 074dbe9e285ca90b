"""pipeline.analysis.search and `picotflm search`: real trials (tiny data, 1 epoch), Pareto fronts, the recipe file."""
from __future__ import annotations

import json
import tomllib

import pytest

from pipeline.flow.recipe import load_recipe
from pipeline.errors import PipelineError
from pipeline.analysis.search import Budget, pareto, recipe_toml, run_trial, search, trial_recipe

BASE = """
description = "tiny base for search tests"
stages = ["data", "model", "train", "convert", "verify"]
[data]
samples_per_class = 12
[train]
epochs = 1
batch_size = 16
patience = 2
[convert]
representative_samples = 16
[verify]
reference_samples = 8
"""


def test_pareto_keeps_only_undominated_trials():
    rows = [{"trial": 0, "flash_bytes": 6000, "accuracy": 0.80}, {"trial": 1, "flash_bytes": 6700, "accuracy": 0.92},
            {"trial": 2, "flash_bytes": 6700, "accuracy": 0.90}, {"trial": 3, "flash_bytes": 6100, "accuracy": 0.79},
            {"trial": 4, "flash_bytes": 6500, "accuracy": 0.85}]
    assert [r["trial"] for r in pareto(rows, "flash_bytes")] == [0, 4, 1]


@pytest.mark.parametrize("args", [(0, 100, 0.5), (100, -1, 0.5), (100, 100, 1.5), (100, 100, -0.1)])
def test_bad_budget(args):
    with pytest.raises(PipelineError):
        Budget(*args)


def test_trial_recipe_round_trips_through_toml(tmp_path):
    base = load_recipe("int8")
    r = trial_recipe(base, {"prune": "boundary", "tau": 0.15, "clusters": 16, "bits": 4}, epochs=2)
    assert r.stages == ("data", "model", "train", "prune", "cluster", "quantize", "convert", "verify")
    assert r.configs["quantize"].weight_bits == 4 and not r.configs["cluster"].fold_batchnorm
    p = tmp_path / "t.toml"
    p.write_text(recipe_toml(r, header=["a comment"]))
    back = load_recipe(str(p))
    assert back.to_dict()["configs"] == r.to_dict()["configs"] and back.stages == r.stages
    # the same settings give the same trial (and so the same run directory)
    assert trial_recipe(base, {"prune": "boundary", "tau": 0.15, "clusters": 16, "bits": 4}, epochs=2).name == r.name


def test_trial_recipe_with_mixed_precision(tmp_path):
    base = load_recipe("int8")
    r = trial_recipe(base, {"prune": "none", "clusters": 0, "bits": 4, "keep8": "conv0+classifier"}, epochs=2)
    assert r.configs["quantize"].method == "qat" and r.configs["quantize"].weight_bits == 4
    assert dict(r.configs["quantize"].layer_bits) == {"conv0": 8, "classifier": 8}
    plain = trial_recipe(base, {"prune": "none", "clusters": 0, "bits": 4}, epochs=2)
    assert plain.name != r.name and not plain.configs["quantize"].layer_bits
    p = tmp_path / "mixed.toml"
    p.write_text(recipe_toml(r))  # the best recipe of a search is written like this
    assert dict(load_recipe(str(p)).configs["quantize"].layer_bits) == {"conv0": 8, "classifier": 8}


@pytest.mark.slow
def test_search_runs_real_trials_and_writes_a_recipe_run_accepts(tmp_path):
    (tmp_path / "base.toml").write_text(BASE)
    base = load_recipe(str(tmp_path / "base.toml"))
    runs = tmp_path / "runs"
    budget = Budget(max_flash=7000, max_ram=32000, min_accuracy=0.0)
    r = search(base, budget, trials=2, runs_dir=runs, epochs=1)
    out = runs / "search"
    assert r["trials_complete"] == 2 and r["met"] and (out / "optuna.db").is_file()
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert "Pareto front: flash vs accuracy" in (out / "search.md").read_text()
    best = load_recipe(str(out / "best.toml"))  # what `picotflm run` reads
    assert best.stages[-1] == "verify"
    assert json.loads((out / "search.json").read_text())["best"]["trial"] == r["best"]["trial"]
    # the same config is not run again: the trial's run directory is up to date
    again = run_trial(trial_recipe(base, r["trials"][0]["params"], 1), out / "trials", log=lambda m: None)
    assert again["stages_run"] == 0 and again["flash_bytes"] == r["trials"][0]["flash_bytes"]
    # the study is kept in SQLite: one more trial continues it
    r2 = search(base, budget, trials=1, runs_dir=runs, epochs=1)
    assert r2["trials_complete"] == 3 and r2["study"] == r["study"]
    # a budget nothing meets names the closest trial and writes closest.toml
    r3 = search(base, Budget(max_flash=100, max_ram=32000, min_accuracy=0.0), trials=1, runs_dir=runs, epochs=1,
                storage="memory")
    assert not r3["met"] and (out / "closest.toml").is_file()
    assert "No trial meets the budget" in (out / "search.md").read_text()


def test_cli_bad_input(run_cli, tmp_path):
    for args, text in ((("--max-flash", "0", "--max-ram", "1000", "--min-accuracy", "0.5"), "--max-flash must be"),
                       (("--max-flash", "100", "--max-ram", "-5", "--min-accuracy", "0.5"), "--max-ram must be"),
                       (("--max-flash", "100", "--max-ram", "100", "--min-accuracy", "2"), "--min-accuracy must be"),
                       (("--max-flash", "100", "--max-ram", "100", "--min-accuracy", "0.5", "--storage", "nosuchdb://x",
                         "--runs-dir", str(tmp_path)), "cannot open the study storage")):
        r = run_cli("search", *args)
        assert r.returncode == 2, (args, r.stderr)
        lines = [l for l in r.stderr.strip().splitlines() if not l.startswith("search:")]
        assert len(lines) == 1 and lines[0].startswith("picotflm: error: ") and text in lines[0], r.stderr
