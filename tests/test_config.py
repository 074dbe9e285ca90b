"""Every config validation error names the field, the value and what is allowed."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.flow.table import STAGE_ORDER
from pipeline.config import BuildConfig, ClusterConfig, ConfigError, DataConfig, PruneConfig, QuantizeConfig, TrainConfig, check_run_name
from pipeline.flow.recipe import load_recipe, make_config, parse_override, parse_overrides, parse_recipe


@pytest.mark.parametrize("make, field, value", [
    (lambda: TrainConfig(epochs=-1), "train.epochs", "-1"),
    (lambda: TrainConfig(epochs=0), "train.epochs", "0"),
    (lambda: TrainConfig(learning_rate=0.0), "train.learning_rate", "0.0"),
    (lambda: TrainConfig(batch_size=True), "train.batch_size", "True"),
    (lambda: TrainConfig(lr_schedule="step"), "train.lr_schedule", "'step'"),
    (lambda: PruneConfig(target_sparsity=1.0), "prune.target_sparsity", "1.0"),
    (lambda: PruneConfig(target_sparsity=-0.1), "prune.target_sparsity", "-0.1"),
    (lambda: ClusterConfig(clusters=1), "cluster.clusters", "1"),
    (lambda: DataConfig(val_fraction=0.0), "data.val_fraction", "0.0"),
    (lambda: DataConfig(samples_per_class="many"), "data.samples_per_class", "'many'"),
    (lambda: QuantizeConfig(method="fancy"), "quantize.method", "'fancy'"),
    (lambda: QuantizeConfig(learning_rate=0.0), "quantize.learning_rate", "0.0"),
    (lambda: QuantizeConfig(lr_schedule="step"), "quantize.lr_schedule", "'step'"),
    (lambda: BuildConfig(usb_windows_reset="yes"), "build.usb_windows_reset", "'yes'"),
    (lambda: BuildConfig(usb_windows_reset=1), "build.usb_windows_reset", "1"),
    (lambda: BuildConfig(emulate_core1="on"), "build.emulate_core1", "'on'"),
])
def test_invalid_values_name_field_value_and_allowed(make, field, value):
    with pytest.raises(ConfigError) as e:
        make()
    msg = str(e.value)
    assert field in msg and value in msg and "allowed" in msg
    assert "\n" not in msg


@given(st.integers(max_value=0))
@settings(max_examples=25, deadline=None)
def test_epochs_below_one_always_refused(n):
    with pytest.raises(ConfigError, match="train.epochs"):
        TrainConfig(epochs=n)


@given(st.floats(min_value=0.0, max_value=0.999, allow_nan=False))
@settings(max_examples=25, deadline=None)
def test_sparsity_in_range_accepted(x):
    assert PruneConfig(target_sparsity=x).target_sparsity == x


def test_int4_needs_qat():
    with pytest.raises(ConfigError, match="weight_bits = 4"):
        QuantizeConfig(method="ptq", weight_bits=4)


def test_unknown_keys_and_stages():
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) in \[train\]: epoch"):
        make_config("train", {"epoch": 3})
    with pytest.raises(ConfigError, match="unknown stage 'bake'"):
        make_config("bake")


def test_recipe_errors():
    base = {"stages": ["data", "model", "train"]}
    with pytest.raises(ConfigError, match="unknown stage 'bake'"):
        parse_recipe({"stages": ["data", "model", "bake"]}, "r")
    with pytest.raises(ConfigError, match="out of order"):
        parse_recipe({"stages": ["model", "data", "train"]}, "r")
    with pytest.raises(ConfigError, match="listed twice"):
        parse_recipe({"stages": ["data", "model", "model"]}, "r")
    with pytest.raises(ConfigError, match=r"unknown table or key \[trian\]"):
        parse_recipe({**base, "trian": {"epochs": 1}}, "r")
    with pytest.raises(ConfigError, match="'prune' is not in 'stages'"):
        parse_recipe({**base, "prune": {"target_sparsity": 0.5}}, "r")
    with pytest.raises(ConfigError, match="needs a trained model"):
        parse_recipe({"stages": ["data", "model", "convert"]}, "r")
    with pytest.raises(ConfigError, match="'verify' needs 'convert'"):
        parse_recipe({"stages": ["data", "model", "train", "verify"]}, "r")
    with pytest.raises(ConfigError, match="stage 'data' is required"):
        parse_recipe({"stages": ["model", "train"]}, "r")


def test_default_recipe_loads_and_is_in_order():
    r = load_recipe()
    assert r.name == "int8"
    assert list(r.stages) == sorted(r.stages, key=STAGE_ORDER.index)
    assert r.config("train").epochs >= 1


def test_unknown_recipe_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown recipe 'nope'"):
        load_recipe("nope")
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("stages = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_recipe(str(bad))


def test_overrides_are_parsed_and_validated():
    assert parse_override("train.epochs=3") == ("train", "epochs", 3)
    assert parse_override("data.source=some/dir") == ("data", "source", "some/dir")
    assert parse_override("data.classes=['a', 'b']") == ("data", "classes", ["a", "b"])
    r = load_recipe("int8", parse_overrides(["train.epochs=2", "data.seed=5"]))
    assert r.config("train").epochs == 2 and r.config("data").seed == 5
    with pytest.raises(ConfigError, match="stage.key=value"):
        parse_override("epochs=3")
    with pytest.raises(ConfigError, match="unknown stage 'trian'"):
        parse_overrides(["trian.epochs=3"])
    with pytest.raises(ConfigError, match="train.epochs: 'abc'"):
        load_recipe("int8", parse_overrides(["train.epochs=abc"]))


def test_usb_windows_reset_is_off_by_default_and_set_from_the_command_line():
    assert BuildConfig(image="board").usb_windows_reset is False
    r = load_recipe("int8", parse_overrides(["build.image=board", "build.usb_windows_reset=true"]))
    assert r.config("build").usb_windows_reset is True
    with pytest.raises(ConfigError, match="build.usb_windows_reset: 'yes'"):
        load_recipe("int8", parse_overrides(["build.usb_windows_reset=yes"]))


def test_emulate_core1_is_for_the_emulator_image_only():
    assert BuildConfig(image="emulator", emulate_core1=True).emulate_core1
    assert BuildConfig().image == "board"  # the image a user flashes is the default
    with pytest.raises(ConfigError, match="build.emulate_core1 = true is for the emulator image") as e:
        load_recipe("int8", parse_overrides(["build.emulate_core1=true"]))
    assert 'build.image = "emulator"' in e.value.hint


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "x" * 65, "a..b"])
def test_bad_run_names(name):
    with pytest.raises(ConfigError):
        check_run_name(name)


def test_recipes_that_start_from_a_tflite():
    r = parse_recipe({"stages": ["tflite", "verify", "render", "build", "measure"], "tflite": {"path": "m.tflite"}}, "r")
    assert r.config("tflite").path == "m.tflite" and "data" not in r.stages
    with pytest.raises(ConfigError, match="tflite.path is empty"):
        parse_recipe({"stages": ["tflite", "verify"]}, "r")
    with pytest.raises(ConfigError, match="'tflite' starts a run of its own"):
        parse_recipe({"stages": ["data", "model", "train", "tflite", "verify"], "tflite": {"path": "m.tflite"}}, "r")
    with pytest.raises(ConfigError, match="the first stage 'verify' reads what no stage before it writes"):
        parse_recipe({"stages": ["verify", "render"]}, "r")
    with pytest.raises(ConfigError, match="'render' needs 'verify'"):
        parse_recipe({"stages": ["tflite", "render"], "tflite": {"path": "m.tflite"}}, "r")


def test_stage_inputs_follow_where_the_run_starts():
    from pipeline.flow.table import STAGE_BY_NAME

    tfl = parse_recipe({"stages": ["tflite", "verify", "render", "build", "measure"], "tflite": {"path": "m"}}, "r")
    trained = load_recipe("int8")
    for stage in ("verify", "render", "measure"):
        assert "inputs.npz" in STAGE_BY_NAME[stage].input_names(tfl)
        assert "data.npz" in STAGE_BY_NAME[stage].input_names(trained)
