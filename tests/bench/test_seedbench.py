"""The seed benchmark (pipeline/bench/seeds.py): aggregation per (model, tau), config checks, and the MLP
sweep end to end on a tiny config (the CNN part is a make seedbench figure)."""
from __future__ import annotations

import csv

import pytest

from pipeline.bench.seeds import SeedBenchConfig, aggregate, run_bench


def test_aggregate_mean_and_spread():
    rows = [{"model": "m", "tau": 0.1, "seed": s, "seconds": v, "peak_rss_mb": 100.0, "param_ratio": 0.5,
             "kernel_ratio": 0.4, "accuracy": a} for s, (v, a) in enumerate([(1.0, 0.8), (3.0, 0.9)])]
    rows.append({"model": "m", "tau": 0.2, "seed": 0, "seconds": 2.0, "peak_rss_mb": 90.0, "param_ratio": 0.3,
                 "kernel_ratio": 0.2, "accuracy": 0.7})
    s1, s2 = aggregate(rows)
    assert (s1["tau"], s1["n"], s2["n"]) == (0.1, 2, 1)
    assert s1["seconds_mean"] == 2.0 and s1["seconds_std"] == pytest.approx(2 ** 0.5)
    assert (s1["accuracy_min"], s1["accuracy_max"]) == (0.8, 0.9)
    assert s2["accuracy_std"] == 0.0 and s2["param_ratio_mean"] == 0.3


@pytest.mark.parametrize("kw", [{"taus": ()}, {"taus": (1.2,)}, {"seeds": 0}, {"models": ("rnn",)}])
def test_config_refuses_bad_values(kw):
    with pytest.raises(ValueError):
        SeedBenchConfig(**kw)


def test_mlp_sweep_tiny(tmp_path):
    cfg = SeedBenchConfig(taus=(0.1, 0.3), seeds=2, models=("mlp",), mlp_train_epochs=2, mlp_samples=90,
                          fine_tune_epochs=1)
    r = run_bench(cfg, out_dir=tmp_path)
    assert len(r["rows"]) == 4 and [s["n"] for s in r["summary"]] == [2, 2]
    lo, hi = r["summary"]
    assert hi["kernel_ratio_mean"] < lo["kernel_ratio_mean"] < 1.0  # a larger tau zeroes more weights
    for row in r["rows"]:
        assert row["seconds"] > 0 and row["peak_rss_mb"] > 0 and 0 <= row["accuracy"] <= 1
    with open(tmp_path / "seedbench.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    assert (tmp_path / "seedbench.md").read_text().count("| mlp |") == 2
