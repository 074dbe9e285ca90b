"""The quantization switching policy (pipeline/analysis/switch.py): escalation, accuracy and latency arithmetic on
hand-made outputs, refusal of variants that are not one model, thresholds outside [0, 1], and the whole
simulation on tiny runs with real host TFLM."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.errors import PipelineError
from pipeline.analysis.switch import SwitchConfig, Variant, check_same_model, parse_thresholds, policy, scores, simulate, sweep
from tests import _models
from tests.conftest import cli

# 4 rows, 3 classes. Small variant: sure, unsure, unsure, sure-but-wrong. Large variant: all right.
SMALL = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.3, 0.5, 0.2], [0.1, 0.8, 0.1]])
LARGE = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.1, 0.1, 0.8]])
LABELS = np.array([0, 1, 2, 2])


def test_scores_confidence_and_margin():
    assert scores(SMALL, "confidence").tolist() == pytest.approx([0.9, 0.4, 0.5, 0.8])
    assert scores(SMALL, "margin").tolist() == pytest.approx([0.85, 0.05, 0.2, 0.7])


def test_policy_escalates_only_unsure_rows():
    pred, level = policy([SMALL, LARGE], 0.6, "confidence")
    assert level.tolist() == [0, 1, 1, 0]
    assert pred.tolist() == [0, 1, 2, 1]  # row 3: the small variant is sure and wrong; it is kept
    pred, level = policy([SMALL, LARGE], 0.0, "confidence")
    assert level.tolist() == [0, 0, 0, 0] and pred.tolist() == SMALL.argmax(1).tolist()
    pred, level = policy([SMALL, LARGE], 1.0, "confidence")
    assert level.tolist() == [1, 1, 1, 1] and pred.tolist() == LARGE.argmax(1).tolist()
    _, level = policy([SMALL, LARGE], 0.1, "margin")
    assert level.tolist() == [0, 1, 0, 0]


def test_policy_three_variants_escalates_step_by_step():
    mid = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.5, 0.3, 0.2], [0.5, 0.3, 0.2]])
    _, level = policy([SMALL, mid, LARGE], 0.6, "confidence")
    assert level.tolist() == [0, 1, 2, 0]


def test_sweep_accuracy_and_latency_arithmetic():
    rows = sweep([SMALL, LARGE], LABELS, [100.0, 300.0], SwitchConfig(thresholds=(0.0, 0.6, 1.0), switch_cost_us=10))
    r0, r6, r1 = rows
    assert r0["accuracy"] == pytest.approx(1 / 4) and r0["escalated_fraction"] == 0 and r0["mean_latency_us"] == 100
    assert r6["accuracy"] == pytest.approx(3 / 4) and r6["escalated_fraction"] == 0.5
    assert r6["mean_latency_us"] == pytest.approx(100 + 0.5 * 300)
    assert r6["mean_latency_us_with_switch_cost"] == pytest.approx(100 + 0.5 * 310)
    assert r1["accuracy"] == 1.0 and r1["mean_latency_us"] == 400 and r1["per_level_fraction"] == [0.0, 1.0]


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_threshold_outside_unit_interval_is_refused(bad):
    with pytest.raises(PipelineError, match="outside"):
        SwitchConfig(thresholds=(0.5, bad))
    with pytest.raises(PipelineError):
        policy([SMALL, LARGE], bad, "confidence")


def test_bad_metric_and_thresholds_text():
    with pytest.raises(PipelineError, match="metric"):
        SwitchConfig(metric="entropy")
    with pytest.raises(PipelineError, match="not a number"):
        parse_thresholds(["0.5,abc"])
    assert parse_thresholds(["0.5,0.6", "0.9"]) == (0.5, 0.6, 0.9)


def _variant(name, out_shape=(1, 6), classes=tuple(_models.CLASSES), x=None):
    x = np.zeros((2, 48, 48, 3), np.uint8) if x is None else x
    return Variant(name=name, tflite=b"", input_shape=[1, 48, 48, 3], output_shape=list(out_shape),
                   class_names=classes, weight_bytes=1, latency_us=1.0, latency_where="test", x_test=x,
                   y_test=np.zeros(len(x), int))


def test_mismatched_variants_are_refused():
    with pytest.raises(PipelineError, match="output shape"):
        check_same_model([_variant("a"), _variant("b", out_shape=(1, 5))])
    with pytest.raises(PipelineError, match="class names"):
        check_same_model([_variant("a"), _variant("b", classes=("x",) * 6)])
    with pytest.raises(PipelineError, match="test splits"):
        check_same_model([_variant("a"), _variant("b", x=np.ones((2, 48, 48, 3), np.uint8))])
    with pytest.raises(PipelineError, match="at least two"):
        check_same_model([_variant("a")])
    check_same_model([_variant("a"), _variant("b")])


def _tiny_run(root, name, tflite: bytes, classes=_models.CLASSES, us=1000):
    from pipeline.stages.data import Dataset

    d = root / name
    d.mkdir(parents=True)
    (d / "model.tflite").write_bytes(tflite)
    x = _models.images(12)
    y = np.arange(12) % len(classes)
    Dataset(x, y, x, y, x, y, tuple(classes)).save(d / "data.npz")
    (d / "measured.json").write_text(json.dumps({"source_label": "emulated Pico (test)", "bench": {"median_us": us}}))
    return d


def test_simulate_on_tiny_runs_with_host_tflm(tmp_path):
    _tiny_run(tmp_path, "big", _models.int8_tflite(slim=False), us=2000)
    _tiny_run(tmp_path, "small", _models.int8_tflite(slim=True), us=1000)
    r = simulate(["big", "small"], SwitchConfig(thresholds=(0.0, 1.0)), runs_dir=tmp_path, out_dir=tmp_path / "sw")
    assert [v["run"] for v in r["variants_smallest_first"]] == ["small", "big"]  # smallest first
    lo, hi = r["rows"]
    assert lo["escalated_fraction"] == 0 and lo["mean_latency_us"] == 1000
    assert hi["escalated_fraction"] == 1 and hi["mean_latency_us"] == 3000
    assert lo["accuracy"] == r["variants_smallest_first"][0]["accuracy"]
    assert hi["accuracy"] == r["variants_smallest_first"][1]["accuracy"]
    for f in ("switch.json", "switch.md", "switch.png"):
        assert (tmp_path / "sw" / f).stat().st_size > 0


def _error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("picotflm: error: ")]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_cli_refuses_other_models_and_bad_thresholds(tmp_path):
    _tiny_run(tmp_path, "a", _models.int8_tflite())
    _tiny_run(tmp_path, "b", _models.int8_tflite(), classes=[f"c{i}" for i in range(6)])
    _error(cli("switch-sim", "a", "b", "--runs-dir", str(tmp_path), "--out", str(tmp_path / "o")),
           "not the same model", "class names")
    _error(cli("switch-sim", "a", "a", "--thresholds", "0.5,1.2", "--runs-dir", str(tmp_path)), "outside [0, 1]")
    _error(cli("switch-sim", "a", "--runs-dir", str(tmp_path)), "at least two")
