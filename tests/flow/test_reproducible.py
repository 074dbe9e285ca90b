"""Reproducibility: the same recipe and seed give byte-identical model.tflite and firmware sources.

The recipe runs twice, as a user runs it, into two runs directories (each with its own stage cache,
so the second run cannot reuse the first) under the same run name: the firmware banner names the
model as ``runs/<run name>/model.tflite``, never by the runs directory, so the name must match.
"""
import json

import pytest

from tests.conftest import cli

pytestmark = pytest.mark.slow

RECIPE = """
description = "reproducibility: a small recipe up to the firmware sources"
stages = ["data", "model", "train", "convert", "verify", "render"]

[data]
samples_per_class = 12
seed = 3

[model]
seed = 3

[train]
epochs = 2
patience = 2
seed = 3

[render]
golden_count = 3
"""


def test_same_recipe_and_seed_give_identical_bytes(tmp_path):
    recipe = tmp_path / "repro.toml"
    recipe.write_text(RECIPE)
    runs = []
    for side in ("a", "b"):
        runs_dir = tmp_path / side
        r = cli("run", str(recipe), "--name", "repro", "--runs-dir", str(runs_dir), "--no-progress")
        assert r.returncode == 0, r.stderr[-3000:]
        assert "(6 ran, 0 up to date)" in r.stdout + r.stderr  # nothing came from a cache
        runs.append(runs_dir / "repro")
    a, b = runs

    assert (a / "model.tflite").read_bytes() == (b / "model.tflite").read_bytes()
    names = sorted(p.name for p in (a / "firmware").iterdir())
    assert names == sorted(p.name for p in (b / "firmware").iterdir()) and "model_data.cc" in names
    for name in names:
        assert (a / "firmware" / name).read_bytes() == (b / "firmware" / name).read_bytes(), name
    # The banner carries the Keras model's sha256: the .keras archive is reproducible too.
    assert (a / "model.keras").read_bytes() == (b / "model.keras").read_bytes()
    assert "runs/repro/model.tflite" in (a / "firmware" / "model_data.h").read_text()
    assert str(tmp_path) not in (a / "firmware" / "model_data.h").read_text()

    det = json.loads((a / "manifest.json").read_text())["determinism"]
    assert det["tf_op_determinism"] is True and det["keras_archive_normalized"] is True
    assert "same hardware" in det["not_guaranteed"] and det["cpu_threads"]


def test_keras_archive_is_rewritten_with_fixed_dates(tmp_path):
    import zipfile

    from pipeline.flow.rundir import reproducible_keras_archive

    p = tmp_path / "m.keras"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "2.21.0", "date_saved": "2026-11-30@17:11:01"}))
        z.writestr(zipfile.ZipInfo("model.weights.h5", date_time=(2026, 11, 30, 17, 11, 2)), b"\x89HDF")
    reproducible_keras_archive(p)
    with zipfile.ZipFile(p) as z:
        assert [i.date_time for i in z.infolist()] == [(1980, 1, 1, 0, 0, 0)] * 2
        assert json.loads(z.read("metadata.json")) == {"keras_version": "2.21.0", "date_saved": "1980-01-01@00:00:00"}
        assert z.read("model.weights.h5") == b"\x89HDF"
