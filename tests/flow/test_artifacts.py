"""Atomic writes (a failure leaves the target untouched and no temp file), hashes, run dirs, manifests."""
from __future__ import annotations

import json
import os

import pytest

from pipeline.flow import rundir as artifacts
from pipeline.flow.rundir import (RunDir, atomic_write_bytes, atomic_write_json, atomic_write_text, atomic_write_with,
                                save_keras_model, sha256_bytes, sha256_file, sha256_tree)
from pipeline.config import ConfigError
from pipeline.errors import PipelineError


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "sub" / "a.bin"
    atomic_write_bytes(p, b"one")
    atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two"
    assert os.listdir(p.parent) == ["a.bin"]
    atomic_write_text(tmp_path / "t.txt", "héllo")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"


def test_failure_mid_write_leaves_target_and_no_temp(tmp_path):
    p = tmp_path / "model.bin"
    p.write_bytes(b"old")

    def half_then_fail(tmp):
        tmp.write_bytes(b"half of the new")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write_with(p, half_then_fail)
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.bin"]


def test_failure_in_os_write_becomes_pipeline_error(tmp_path, monkeypatch):
    p = tmp_path / "x.json"
    p.write_text("{}")

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(artifacts.os, "fsync", boom)
    with pytest.raises(PipelineError, match="cannot write .*x.json: No space left on device"):
        atomic_write_json(p, {"a": 1})
    assert p.read_text() == "{}"
    assert os.listdir(tmp_path) == ["x.json"]


def test_json_handles_numpy(tmp_path):
    import numpy as np

    p = atomic_write_json(tmp_path / "m.json", {"a": np.int64(3), "b": np.arange(3), "c": np.float32(0.5)})
    assert json.loads(p.read_text()) == {"a": 3, "b": [0, 1, 2], "c": 0.5}


def test_hashes(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "x").write_bytes(b"x")
    (tmp_path / "d" / "e" / "y").write_bytes(b"y")
    assert sha256_file(tmp_path / "d" / "x") == sha256_bytes(b"x")
    h = sha256_tree(tmp_path / "d")
    (tmp_path / "d" / "e" / "y").write_bytes(b"z")
    assert sha256_tree(tmp_path / "d") != h


def test_save_keras_model_atomically(tmp_path):
    from pipeline.keras_setup import keras

    k = keras()
    m = k.Sequential([k.layers.Input((3,)), k.layers.Dense(2)])
    p = save_keras_model(m, tmp_path / "m.keras")
    assert k.models.load_model(p).output_shape == (None, 2)
    assert os.listdir(tmp_path) == ["m.keras"]


def test_run_dir(tmp_path):
    rd = RunDir.of("r1", tmp_path).create()
    assert rd.root == tmp_path / "r1" and rd.root.is_dir() and os.listdir(rd.root) == []
    m = rd.load_manifest()
    assert m["stages"] == {} and m["run"] == "r1"
    rd.write_manifest(m)
    assert RunDir.existing("r1", tmp_path).read_manifest()["run"] == "r1"
    assert RunDir.existing(str(rd.root)).name == "r1"
    with pytest.raises(PipelineError, match="no run 'r2'"):
        RunDir.existing("r2", tmp_path)
    with pytest.raises(ConfigError):
        RunDir.of("../escape", tmp_path)
    with pytest.raises(ValueError):
        rd.path("../x")


def test_unwritable_runs_dir(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("")
    with pytest.raises(PipelineError, match="not writable"):
        RunDir.of("r", f).create()
    if os.geteuid() != 0:  # root writes anywhere; the file case above covers it
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        with pytest.raises(PipelineError, match="not writable"):
            RunDir.of("r", ro).create()
