"""The CLI as a user runs it (``python -m pipeline`` in a subprocess): exit code 2 and one clear line
for every handled error, no traceback; the default recipe reaches its accuracy (slow)."""
from __future__ import annotations

import json
import time

import pytest

from pipeline.flow.table import STAGE_ORDER
from pipeline.flow.table import STAGE_BY_NAME
from tests.conftest import cli


def _error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = [line for line in r.stderr.splitlines() if line.startswith("picotflm: error: ")]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_help_does_not_import_tensorflow():
    # What keeps --help (and every up-to-date check) quick: TensorFlow is imported only by the stages
    # that need it. How quick is a make bench figure, not a test.
    r = cli("--help")
    assert r.returncode == 0 and "run" in r.stdout and "report" in r.stdout
    import subprocess
    import sys

    probe = subprocess.run([sys.executable, "-c", "import sys, pipeline.cli; print('tensorflow' in sys.modules)"],
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0 and probe.stdout.strip() == "False", probe.stderr


def test_unknown_recipe(tmp_path):
    _error(cli("run", "nope", "--runs-dir", str(tmp_path)), "unknown recipe 'nope'", "hint:", "int8")
    _error(cli("run", str(tmp_path / "nope.toml"), "--runs-dir", str(tmp_path)), "nope.toml does not exist")


def test_unknown_and_unimplemented_stage(tmp_path, tiny_recipe_file):
    bad = tmp_path / "bad.toml"
    bad.write_text('stages = ["data", "model", "bake"]\n')
    _error(cli("run", str(bad), "--runs-dir", str(tmp_path)), "unknown stage 'bake'", "known stages")
    assert set(STAGE_ORDER) == set(STAGE_BY_NAME)  # every stage of the pipeline order is implemented


def test_invalid_config_values(tmp_path):
    _error(cli("run", "--set", "train.epochs=-1", "--runs-dir", str(tmp_path)),
           "invalid value for train.epochs: -1", "allowed: an integer from 1")
    _error(cli("run", "--set", "train.epoch=3", "--runs-dir", str(tmp_path)), "unknown setting(s) in [train]: epoch")
    _error(cli("run", "--set", "epochs", "--runs-dir", str(tmp_path)), "stage.key=value")
    bad = tmp_path / "bad.toml"
    bad.write_text('stages = ["data", "model", "train"]\n[prune]\ntarget_sparsity = 1.5\n')
    _error(cli("run", str(bad), "--runs-dir", str(tmp_path)), "[prune]")


def test_missing_dataset_folder_and_bad_classes(tmp_path, tiny_recipe_file):
    rec = tiny_recipe_file()
    runs = str(tmp_path / "runs")
    _error(cli("run", str(rec), "--runs-dir", runs, "--set", f"data.source={tmp_path / 'nothing'}"),
           "dataset folder", "does not exist")
    (tmp_path / "imgs" / "dogs").mkdir(parents=True)
    _error(cli("data", "--source", str(tmp_path / "imgs"), "--out", str(tmp_path / "s")),
           "do not match data.classes", "unexpected dogs")
    assert not (tmp_path / "s").exists()


def test_model_file_errors(tmp_path, tiny_recipe_file):
    rec = tiny_recipe_file(samples=4)
    runs = str(tmp_path / "runs")
    _error(cli("run", str(rec), "--runs-dir", runs, "--set", f"model.name={tmp_path / 'none.keras'}"),
           "none.keras does not exist")
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"PK\x03\x04 definitely not a keras archive")
    line = _error(cli("run", str(rec), "--runs-dir", runs, "--set", f"model.name={junk}"),
                  "junk.keras is not a Keras model file")
    assert "hint:" in line
    manifest = json.loads((tmp_path / "runs" / "tiny" / "manifest.json").read_text())
    assert manifest["stages"]["model"]["status"] == "failed"
    assert not (tmp_path / "runs" / "tiny" / "model_untrained.keras").exists()


def test_unwritable_runs_dir(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    _error(cli("run", "--runs-dir", str(f)), "is not writable")
    _error(cli("data", "--out", str(f / "samples"), "--samples", "1", "--set", "data.samples_per_class=3"),
           "cannot write")


def test_debug_shows_traceback(tmp_path):
    r = cli("--debug", "run", "nope", "--runs-dir", str(tmp_path))
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_report_of_missing_run(tmp_path):
    _error(cli("report", "ghost", "--runs-dir", str(tmp_path)), "no run 'ghost'")


def test_data_command(tmp_path):
    r = cli("data", "--out", str(tmp_path / "s"), "--samples", "2", "--set", "data.samples_per_class=10")
    assert r.returncode == 0, r.stderr
    assert "basic" in r.stdout and "total" in r.stdout and "Wrote 12 sample images" in r.stdout
    assert (tmp_path / "s" / "segment" / "01.png").is_file() and (tmp_path / "s" / "samples.png").is_file()


def test_train_command_and_report(tmp_path, tiny_recipe_file):
    rec = tiny_recipe_file(samples=6, epochs=1)
    runs = str(tmp_path / "runs")
    r = cli("train", str(rec), "--runs-dir", runs, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "confusion matrix" in r.stdout and "test accuracy (Keras float)" in r.stdout
    assert "[3/3] train: done" in r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("run tiny: 3 stages")
    r = cli("report", "tiny", "--runs-dir", runs)
    assert r.returncode == 0 and "## train" in r.stdout and "confusion_matrix" in r.stdout


@pytest.mark.slow
def test_default_recipe_reaches_accuracy_and_skips_on_rerun(tmp_path):
    runs = str(tmp_path / "runs")
    t0 = time.perf_counter()
    r = cli("run", "--runs-dir", runs, "--no-progress", timeout=1200)
    first = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "runs" / "int8" / "manifest.json").read_text())
    acc = manifest["stages"]["train"]["metrics"]["test_accuracy"]
    print(f"default recipe: Keras test accuracy {acc:.4f}, run took {first:.0f} s")
    assert acc >= 0.85
    assert "Keras test accuracy" in r.stdout and "report:" in r.stdout

    # Nothing changed: every stage is skipped (how long that takes is a benchmark figure, `make bench`).
    r = cli("run", "--runs-dir", runs, "--no-progress")
    assert r.returncode == 0
    n = len(manifest["recipe"]["stages"])
    assert r.stderr.count("up to date, skipped") == n
    assert f"0 ran, {n} up to date" in r.stdout


def test_data_command_on_a_folder_with_corrupt_images(tmp_path):
    import numpy as np
    from PIL import Image

    from pipeline.config import PIZZA_CLASSES

    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for c in PIZZA_CLASSES:
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(root / c / f"{i}.jpg")
    (root / "burnt" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    r = cli("data", "--source", str(root), "--out", str(tmp_path / "s"), "--samples", "1")
    assert r.returncode == 0, r.stderr
    assert "warning: skipped 1 unreadable image(s): burnt/bad.png" in r.stderr
    assert "total" in r.stdout

    for p in root.rglob("*.jpg"):
        p.write_bytes(b"garbage")
    _error(cli("data", "--source", str(root), "--out", str(tmp_path / "s2")), "no readable images")
