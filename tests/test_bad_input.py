"""Hostile input at every entry point of the CLI, one table: bad flags and values, ``--set`` values,
broken recipe files, dataset folders, model files (.keras, .tflite), SDK paths, serial ports and run
directories. Each case must end with exit code 2, exactly one ``picotflm: error:`` line on stderr
(the last line; status lines of stages that ran before may precede it), no traceback anywhere, and
no temporary or half-written file left under the runs directory.

The CLI runs as a subprocess, as a user runs it. Inputs are tiny: no case trains a model."""
from __future__ import annotations

import os
import re
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from tests.conftest import cli

DATA_ONLY = 'stages = ["data", "model"]\n[data]\nsamples_per_class = 4\n'


@dataclass
class Case:
    """``argv`` may hold ``{tmp}`` and ``{runs}``; ``setup(tmp)`` writes the files the case needs."""

    id: str
    argv: tuple[str, ...]
    setup: Callable[[Path], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    needle: str = ""  # a piece of the error line that names the problem


def w(rel: str, content: str | bytes) -> Callable[[Path], None]:
    """Setup: write one file (str as UTF-8)."""

    def setup(tmp: Path) -> None:
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)

    return setup


def both(*fns: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        for fn in fns:
            fn(tmp)

    return setup


def recipe(body: str) -> Callable[[Path], None]:
    return w("r.toml", body)


RUN = ("--runs-dir", "{runs}", "--no-progress")


def run_of(body: str, *extra: str) -> tuple[str, ...]:
    return ("run", "{tmp}/r.toml", *RUN, *extra)


# ------------------------------------------------------------------------- dataset folders
def image_folder(n_per_class: int = 3, classes=("basic", "burnt"), junk: bytes | None = None) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        from PIL import Image

        for c in classes:
            d = tmp / "imgs" / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n_per_class):
                if junk is None:
                    Image.new("RGB", (8, 8), (i * 40, 10, 200)).save(d / f"{i}.png")
                else:
                    (d / f"{i}.png").write_bytes(junk)

    return setup


FOLDER_RECIPE = 'stages = ["data", "model"]\n[data]\nsource = "{tmp}/imgs"\nclasses = ["basic", "burnt"]\n'


def folder_recipe(tmp: Path) -> None:
    (tmp / "r.toml").write_text(FOLDER_RECIPE.replace("{tmp}", tmp.as_posix()))


# ------------------------------------------------------------------------------- model files
def keras_recipe(tmp: Path) -> None:
    (tmp / "r.toml").write_text(DATA_ONLY + f'[model]\nname = "{(tmp / "m.keras").as_posix()}"\n')


def good_keras_bytes() -> bytes:
    from tests import _models

    path = _KERAS_CACHE.get("path")
    if path is None:
        import tempfile

        d = Path(tempfile.mkdtemp(prefix="picotflm-bad-input-"))
        m = _models.micropizzanet_like()
        path = d / "good.keras"
        m.save(str(path))
        _KERAS_CACHE["path"] = path
    return path.read_bytes()


_KERAS_CACHE: dict[str, Path] = {}


def keras_file(kind: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        keras_recipe(tmp)
        p = tmp / "m.keras"
        if kind == "empty":
            p.write_bytes(b"")
        elif kind == "garbage":
            p.write_bytes(os.urandom(3000))
        elif kind == "truncated":
            data = good_keras_bytes()
            p.write_bytes(data[: len(data) // 2])
        elif kind == "directory":
            p.mkdir()
        elif kind == "tflite":
            from tests import _models

            p.write_bytes(_models.int8_tflite())
        elif kind == "wrong_input":
            from tests._models import _keras

            keras = _keras()
            i = keras.layers.Input((32, 32, 3))
            out = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(i))
            keras.Model(i, out).save(str(p))

    return setup


def _int8() -> bytes:
    from tests import _models

    return _models.int8_tflite()


def _float() -> bytes:
    from tests import _models

    return _models.float_tflite()


TFLITES: dict[str, Callable[[], bytes]] = {
    "empty": lambda: b"",
    "garbage": lambda: os.urandom(2000),
    "truncated": lambda: _int8()[: len(_int8()) // 2],
    "float": _float,
    "int8": _int8,
}


def tflite_as_model(kind: str) -> Callable[[Path], None]:
    """A .tflite given as model.name (the one place a recipe names a model file): refused, whatever it holds."""

    def setup(tmp: Path) -> None:
        (tmp / "m.tflite").write_bytes(TFLITES[kind]())
        (tmp / "r.toml").write_text(DATA_ONLY + f'[model]\nname = "{(tmp / "m.tflite").as_posix()}"\n')

    return setup


# A run through render, made once per test process (no training: the model is a saved .keras file),
# copied into a case's runs directory so that only the stage under test runs.
_PREPARED: dict[str, Path] = {}
UNTIL_RENDER = '"data", "model", "convert", "verify", "render"'


def _prepared_recipe(stages: str) -> str:
    keras_path = _PREPARED["dir"] / "good.keras"
    return (f"stages = [{stages}]\n[data]\nsamples_per_class = 4\n[model]\nname = \"{keras_path.as_posix()}\"\n"
            "[render]\ngolden_count = 6\n")


def prepared_run(*later: str, fake_build: bool = False) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        import tempfile

        if "run" not in _PREPARED:
            d = Path(tempfile.mkdtemp(prefix="picotflm-bad-input-run-"))
            _PREPARED["dir"] = d
            (d / "good.keras").write_bytes(good_keras_bytes())
            (d / "r.toml").write_text(_prepared_recipe(UNTIL_RENDER))
            r = cli("run", str(d / "r.toml"), "--runs-dir", str(d / "runs"), "--no-progress", "--name", "r")
            assert r.returncode == 0, r.stderr[-3000:]
            _PREPARED["run"] = d / "runs" / "r"
        shutil.copytree(_PREPARED["run"], tmp / "runs" / "r")
        recipe_text = _prepared_recipe(UNTIL_RENDER + "".join(f', "{s}"' for s in later))
        (tmp / "r.toml").write_text(recipe_text)
        if fake_build:  # an image recorded as built (the port is what fails, not the image)
            import json

            from pipeline.flow.rundir import RunDir, sha256_path
            from pipeline.flow.recipe import load_recipe
            from pipeline.flow.table import STAGE_BY_NAME
            from pipeline.flow.runner import stage_fingerprint

            run = RunDir.of("r", tmp / "runs")
            for name in ("firmware.elf", "firmware.bin", "firmware.uf2"):
                run.path(name).write_bytes(b"\0" * 64)
            rec = load_recipe(str(tmp / "r.toml"))
            build = STAGE_BY_NAME["build"]
            man = json.loads(run.manifest_path.read_text())
            man["stages"]["build"] = {"status": "done", "config": {},
                                      "fingerprint": stage_fingerprint(build, rec.config("build"), run, rec),
                                      "outputs": {n: sha256_path(run.path(n)) for n in build.outputs},
                                      "metrics": {"image": "emulator"}}
            run.manifest_path.write_text(json.dumps(man))

    return setup


# ------------------------------------------------------------------------------------ table
CASES = [
    # bad CLI flags and values
    Case("no-command", ()),
    Case("unknown-command", ("bake",), needle="bake"),
    Case("unknown-flag", ("run", "--bogus"), needle="--bogus"),
    Case("flag-without-value", ("run", "--runs-dir"), needle="--runs-dir"),
    Case("samples-zero", ("data", "--samples", "0"), needle="at least 1"),
    Case("samples-not-int", ("data", "--samples", "many"), needle="many"),
    Case("margin-bytes-not-int", ("arena", "int8", "--margin-bytes", "x"), needle="margin-bytes"),
    Case("margin-percent-negative", ("arena", "int8", "--margin-percent", "-5", *RUN), needle="margin"),
    Case("compare-nothing", ("compare",), needle="runs"),
    Case("unknown-recipe", ("run", "nope", *RUN), needle="unknown recipe 'nope'"),
    Case("report-missing-run", ("report", "nope", "--runs-dir", "{runs}"), needle="nope"),
    Case("bad-run-name-slash", ("run", "int8", "--name", "a/b", *RUN), needle="run name"),
    Case("bad-run-name-dotdot", ("run", "int8", "--name", "..", *RUN), needle="run name"),
    Case("bad-run-name-non-ascii", ("run", "int8", "--name", "pizzé", *RUN), needle="run name"),
    Case("emulate-missing-image", ("emulate", "{tmp}/nope.elf", "--runs-dir", "{runs}"), needle="nope.elf"),
    Case("emulate-garbage-image", ("emulate", "{tmp}/junk.elf", "--runs-dir", "{runs}"), w("junk.elf", b"\x7fELF junk"),
         needle="junk.elf"),
    # --set values
    Case("set-out-of-range", ("run", "int8", *RUN, "--set", "train.epochs=0"), needle="train.epochs"),
    Case("set-wrong-type", ("run", "int8", *RUN, "--set", "train.epochs=ten"), needle="train.epochs"),
    Case("set-float-for-int", ("run", "int8", *RUN, "--set", "train.epochs=2.5"), needle="train.epochs"),
    Case("set-unknown-stage", ("run", "int8", *RUN, "--set", "bake.time=3"), needle="bake"),
    Case("set-unknown-key", ("run", "int8", *RUN, "--set", "train.epochz=3"), needle="epochz"),
    Case("set-no-equals", ("run", "int8", *RUN, "--set", "train.epochs"), needle="train.epochs"),
    Case("set-no-dot", ("run", "int8", *RUN, "--set", "epochs=3"), needle="epochs"),
    Case("set-negative-rate", ("run", "int8", *RUN, "--set", "train.learning_rate=-1"), needle="learning_rate"),
    Case("set-inf", ("run", "int8", *RUN, "--set", "train.learning_rate=inf"), needle="learning_rate"),
    Case("set-list-for-int", ("run", "int8", *RUN, "--set", "data.image_size=[1,2]"), needle="image_size"),
    Case("set-class-name-path", ("run", "int8", *RUN, "--set", 'data.classes=["../up", "b"]'), needle="../up"),
    Case("set-model-name-not-c", ("run", "int8", *RUN, "--set", "render.model_name=x*/y"), needle="x*/y"),
    Case("set-empty-classes", ("run", "int8", *RUN, "--set", "data.classes=[]"), needle="classes"),
    # recipe files
    Case("recipe-missing", ("run", "{tmp}/none.toml", *RUN), needle="none.toml"),
    Case("recipe-not-toml", run_of(""), recipe("stages = [\n"), needle="not valid TOML"),
    Case("recipe-binary", run_of(""), w("r.toml", b"\xff\xfe\x00garbage"), needle="r.toml"),
    Case("recipe-no-stages", run_of(""), recipe("stages = []\n"), needle="required"),
    Case("recipe-directory", ("run", "{tmp}/dir.toml", *RUN), lambda t: (t / "dir.toml").mkdir(), needle="dir.toml"),
    Case("recipe-stages-not-list", run_of(""), recipe('stages = "data"\n'), needle="stages"),
    Case("recipe-stage-not-string", run_of(""), recipe("stages = [1, 2]\n"), needle="stages"),
    Case("recipe-unknown-stage", run_of(""), recipe('stages = ["data", "bake"]\n'), needle="bake"),
    Case("recipe-out-of-order", run_of(""), recipe('stages = ["train", "data", "model"]\n'), needle="order"),
    Case("recipe-duplicate-stage", run_of(""), recipe('stages = ["data", "data"]\n'), needle="twice"),
    Case("recipe-unknown-top-key", run_of(""), recipe('stages = ["data", "model"]\ncolour = "red"\n'), needle="colour"),
    Case("recipe-unknown-stage-key", run_of(""), recipe('stages = ["data", "model", "train"]\n[train]\nepochz = 3\n'), needle="epochz"),
    Case("recipe-wrong-type", run_of(""), recipe('stages = ["data", "model", "train"]\n[train]\nepochs = "ten"\n'), needle="epochs"),
    Case("recipe-table-is-scalar", run_of(""), recipe('stages = ["data", "model", "train"]\ntrain = 5\n'), needle="train"),
    Case("recipe-bool-for-int", run_of(""), recipe('stages = ["data", "model"]\n[data]\nseed = true\n'), needle="seed"),
    # dataset folders
    Case("data-folder-missing", ("data", "--source", "{tmp}/none", "--out", "{runs}/samples"), needle="none"),
    Case("data-folder-empty", ("data", "--source", "{tmp}/imgs", "--out", "{runs}/samples"),
         lambda t: (t / "imgs").mkdir(), needle="imgs"),
    Case("data-folder-no-subfolders", ("data", "--source", "{tmp}/imgs", "--out", "{runs}/samples"),
         w("imgs/a.png", b"x"), needle="imgs"),
    Case("data-non-images", run_of(""), both(image_folder(junk=b"not an image"), folder_recipe), needle="readable"),
    Case("data-wrong-classes", run_of(""), both(image_folder(classes=("cats", "dogs")), folder_recipe), needle="class"),
    Case("data-too-few", run_of(""), both(image_folder(n_per_class=1), folder_recipe), needle="too few"),
    Case("data-source-is-file", run_of(""), both(w("imgs", b"plain file"), folder_recipe), needle="imgs"),
    # model files
    Case("keras-empty", run_of(""), keras_file("empty"), needle="m.keras"),
    Case("keras-garbage", run_of(""), keras_file("garbage"), needle="m.keras"),
    Case("keras-truncated", run_of(""), keras_file("truncated"), needle="m.keras"),
    Case("keras-directory", run_of(""), keras_file("directory"), needle="m.keras"),
    Case("keras-is-tflite", run_of(""), keras_file("tflite"), needle="m.keras"),
    Case("keras-wrong-input", run_of(""), keras_file("wrong_input"), needle="input"),
    Case("keras-missing", run_of(""), keras_recipe, needle="m.keras"),
    Case("tflite-empty-as-model", run_of(""), tflite_as_model("empty"), needle="m.tflite"),
    Case("tflite-garbage-as-model", run_of(""), tflite_as_model("garbage"), needle="m.tflite"),
    Case("tflite-truncated-as-model", run_of(""), tflite_as_model("truncated"), needle="m.tflite"),
    Case("tflite-float-as-model", run_of(""), tflite_as_model("float"), needle="m.tflite"),
    Case("tflite-int8-as-model", run_of(""), tflite_as_model("int8"), needle="m.tflite"),
    # a user's .tflite given to `picotflm deploy`
    Case("deploy-empty", ("deploy", "{tmp}/m.tflite", *RUN), w("m.tflite", b""), needle="is empty"),
    Case("deploy-garbage", ("deploy", "{tmp}/m.tflite", *RUN), w("m.tflite", b"\x01" * 3000),
         needle="not a TFLite flatbuffer"),
    Case("deploy-truncated", ("deploy", "{tmp}/m.tflite", *RUN), lambda t: (t / "m.tflite").write_bytes(
         TFLITES["truncated"]()), needle="truncated"),
    Case("deploy-keras-zip", ("deploy", "{tmp}/m.keras", *RUN), w("m.keras", b"PK\x03\x04" + bytes(200)),
         needle="zip archive"),
    Case("deploy-missing", ("deploy", "{tmp}/none.tflite", *RUN), None, needle="does not exist"),
    Case("deploy-inputs-shape", ("deploy", "{tmp}/m.tflite", "--inputs", "{tmp}/x.npy", *RUN),
         lambda t: ((t / "m.tflite").write_bytes(_int8()), np.save(t / "x.npy", np.zeros((2, 3), np.int8))),
         needle="shape 2x3"),
    Case("deploy-bad-set", ("deploy", "{tmp}/m.tflite", "--set", "tflite.random_inputs=0", *RUN),
         lambda t: (t / "m.tflite").write_bytes(_int8()), needle="tflite.random_inputs"),
    # SDK paths and serial ports
    Case("sdk-missing", run_of("", "--name", "r"), prepared_run("build"),
         env={"PICO_SDK_PATH": "/nonexistent/pico-sdk", "PICOTFLM_REQUIRE_FIRMWARE": "1"}, needle="/nonexistent/pico-sdk"),
    Case("tflm-missing", run_of("", "--name", "r"), prepared_run("build"),
         env={"PICO_TFLMICRO_PATH": "/nonexistent/tflm", "PICOTFLM_REQUIRE_FIRMWARE": "1"}, needle="/nonexistent/tflm"),
    Case("port-missing", ("measure", "{tmp}/r.toml", *RUN, "--name", "r", "--port", "/dev/ttyNOPE0"),
         prepared_run("build", "measure", fake_build=True), needle="/dev/ttyNOPE0"),
    Case("port-not-a-tty", ("measure", "{tmp}/r.toml", *RUN, "--name", "r", "--port", "{tmp}/r.toml"),
         prepared_run("build", "measure", fake_build=True), needle="r.toml"),
    # run directories
    Case("runs-dir-is-file", ("run", "{tmp}/r.toml", "--runs-dir", "{tmp}/r.toml", "--no-progress"),
         recipe(DATA_ONLY), needle="r.toml"),
    Case("runs-dir-under-a-file", ("run", "{tmp}/r.toml", "--runs-dir", "{tmp}/blocker/runs", "--no-progress"),
         both(recipe(DATA_ONLY), w("blocker", b"a file")), needle="blocker"),
    Case("runs-dir-unwritable", run_of(""), both(recipe(DATA_ONLY), lambda t: _readonly(t / "runs")),
         needle="runs"),
    Case("samples-out-under-a-file", ("data", "--samples", "1", "--out", "{tmp}/blocker/samples", "--set",
                                      "data.samples_per_class=3"), w("blocker", b"a file"), needle="blocker"),
]


def _readonly(p: Path) -> None:
    p.mkdir(parents=True, exist_ok=True)
    p.chmod(stat.S_IRUSR | stat.S_IXUSR)


_STATUS = re.compile(r"^(\[\d+/\d+\] [a-z]+: |(data|deploy): .+ \.\.\.$)")
_TEMP = re.compile(r"(\.tmp|^\.write-probe\.|\.partial$)")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_one_error_line_and_exit_2(case, tmp_path, monkeypatch):
    if case.id.endswith("unwritable") and os.geteuid() == 0:
        pytest.skip("root writes past permission bits (the '-under-a-file' cases cover an unwritable path)")
    if case.setup:
        case.setup(tmp_path)
    argv = [a.replace("{tmp}", tmp_path.as_posix()).replace("{runs}", (tmp_path / "runs").as_posix()) for a in case.argv]
    env_backup = {k: os.environ.get(k) for k in case.env}
    os.environ.update(case.env)
    try:
        r = cli(*argv, cwd=tmp_path, timeout=120)
    finally:
        for k, v in env_backup.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    for p in tmp_path.rglob("*"):
        try:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
        except OSError:
            pass
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if "error:" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("picotflm: error: "), r.stderr[-3000:]
    lines = r.stderr.rstrip("\n").splitlines()
    assert lines[-1] == errors[0], r.stderr[-3000:]
    # Anything before it is the status of stages that ran (``[2/6] build: running``), nothing else.
    assert all(_STATUS.match(line) for line in lines[:-1]), r.stderr[-3000:]
    assert case.needle in errors[0], (case.needle, errors[0])
    left = [p for p in (tmp_path / "runs").rglob("*") if _TEMP.search(p.name)] if (tmp_path / "runs").exists() else []
    assert not left, left
