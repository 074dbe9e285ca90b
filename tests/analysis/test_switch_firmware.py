"""Several variants rendered into one firmware (pipeline/codegen/render.py: render_variants), the switch
spec and its refusals (pipeline/analysis/switchfw.py), and the sweep's switch-cost arithmetic. The firmware
itself switching is tested on the emulated Pico in tests/hil/test_switch.py."""
from __future__ import annotations

import functools
import re

import numpy as np
import pytest

from pipeline.config import RenderConfig
from pipeline.tflite.reader import inspect_tflite
from pipeline.errors import PipelineError
from pipeline.codegen.kernels import conv_quant_tables
from pipeline.codegen.render import GENERATED_FILES, RenderVariant, render_variants
from pipeline.analysis.switch import SwitchConfig, sweep
from pipeline.analysis.switchfw import load_switch_spec
from pipeline.stages.verify import images_to_input, run_tflm
from tests import _models
from tests.conftest import assert_cli_error, cli

PROV = {"tool_version": "0.0.0-test", "model_file": "a + b", "source_sha256": "x", "tensorflow": "2", "tflite_micro": "t"}


@functools.lru_cache(maxsize=None)
def _second_model() -> bytes:
    """MicroPizzaNet's structure with other weights: another variant of the same model."""
    from pipeline.config import ConvertConfig
    from pipeline.stages.convert import convert

    rep = _models.images(32).astype(np.float32) / 255.0
    return convert(_models.micropizzanet_like(seed=1), rep, ConvertConfig(representative_samples=32))


def _variants(n=3):
    a, b = _models.int8_tflite(), _second_model()
    x = images_to_input(_models.images(n, seed=7), inspect_tflite(a))
    return x, [RenderVariant(name, data, run_tflm(data, x, 1 << 20)[0]) for name, data in (("int4", a), ("int8", b))]


def _render(out, variants, x, classes=None):
    return render_variants(variants, RenderConfig(), out, golden_inputs=x, golden_labels=list(range(len(x))),
                           class_names=classes or _models.CLASSES, host_arena_bytes=15000, provenance=PROV)


def _hex(text):
    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", text))


def test_two_variants_in_one_set_of_sources(tmp_path):
    x, vs = _variants()
    files = _render(tmp_path, vs, x)
    assert [f.name for f in files] == list(GENERATED_FILES)
    cc = (tmp_path / "model_data.cc").read_text()
    for v, sym in zip(vs, ("g_micropizzanet_int4_model_data", "g_micropizzanet_int8_model_data")):
        body = cc.split(f"alignas(16) const unsigned char {sym}[] = {{", 1)[1].split("};", 1)[0]
        assert _hex(body) == v.tflite
    table = cc.split("g_picotflm_variants[PICOTFLM_VARIANT_COUNT] = {", 1)[1]
    rows = [r for r in table.splitlines() if r.strip().startswith("{")]
    assert len(rows) == 2 and rows[0].split(",")[0].strip() == '{ "int4"' and '"int8"' in rows[1]
    assert "#define PICOTFLM_VARIANT_COUNT 2" in (tmp_path / "model_data.h").read_text()
    golden = (tmp_path / "golden_data.cc").read_text()
    ins, outs = golden.split("g_picotflm_golden_outputs", 1)
    assert _hex(ins.split("= {", 1)[1]) == x.tobytes()
    assert _hex(outs) == vs[0].golden_outputs.tobytes() + vs[1].golden_outputs.tobytes()  # row v * count + i
    assert "[2 * PICOTFLM_GOLDEN_COUNT][PICOTFLM_OUTPUT_BYTES]" in golden
    resolver = (tmp_path / "op_resolver.h").read_text()
    assert "constexpr int kPicotflmOpKinds = 5;" in resolver  # the union: both have the same five kinds
    n_tables = len(conv_quant_tables(vs[0].tflite)) + len(conv_quant_tables(vs[1].tflite))
    assert len(re.findall(r"static const int32_t kPicotflmMult\d+\[", resolver)) == n_tables
    assert len(set(re.findall(r"kPicotflmMult(\d+)\[", resolver))) == n_tables  # unique names
    cfg = (tmp_path / "model_config.h").read_text()
    assert f'#define PICOTFLM_MODEL_HASH "{inspect_tflite(vs[0].tflite).sha256[:16]}"' in cfg
    assert "#define PICOTFLM_MODEL_DATA g_micropizzanet_int4_model_data" in cfg


def test_variant_sources_compile_and_agree(tmp_path):
    """The generated table compiles (host C++) and points at arrays of the right sizes."""
    import shutil
    import subprocess

    if shutil.which("g++") is None:
        pytest.skip("no host g++")
    x, vs = _variants(2)
    _render(tmp_path, vs, x)
    (tmp_path / "main.cc").write_text(
        '#include <cstdio>\n#include "model_data.h"\n#include "golden_data.h"\nint main() {\n'
        "  for (int v = 0; v < PICOTFLM_VARIANT_COUNT; v++) {\n"
        "    unsigned long s = 0;\n"
        "    for (unsigned i = 0; i < g_picotflm_variants[v].size; i++) s = s * 31 + g_picotflm_variants[v].data[i];\n"
        '    std::printf("%s %u %lu %d %d\\n", g_picotflm_variants[v].name, g_picotflm_variants[v].size, s,\n'
        "                (int)g_picotflm_golden_outputs[v * PICOTFLM_GOLDEN_COUNT + 1][0],\n"
        "                (int)(((unsigned long)g_picotflm_variants[v].data) % 16));\n  }\n}\n")
    exe = tmp_path / "a.out"
    r = subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-I", str(tmp_path), str(tmp_path / "main.cc"),
                        str(tmp_path / "model_data.cc"), str(tmp_path / "golden_data.cc"), "-o", str(exe)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines()
    for line, v in zip(lines, vs):
        name, size, s, first_out, align = line.split()
        want = 0
        for byte in v.tflite:
            want = (want * 31 + byte) % (1 << 64)
        assert (name, int(size), int(s), align) == (v.name, len(v.tflite), want, "0")
        assert int(first_out) == int(v.golden_outputs[1].tobytes()[0])


def _other_input_model() -> bytes:
    from pipeline.config import ConvertConfig
    from pipeline.stages.convert import convert

    keras = _models._keras()
    L = keras.layers
    i = L.Input((32, 32, 3))
    x = L.GlobalAveragePooling2D()(L.Conv2D(4, 3, strides=2)(i))
    m = keras.Model(i, L.Dense(6, activation="softmax")(x))
    rep = np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32)
    return convert(m, rep, ConvertConfig(representative_samples=8))


def test_variants_that_are_not_one_model_are_refused(tmp_path):
    x, vs = _variants(2)
    other = _other_input_model()
    xo = images_to_input(np.zeros((2, 32, 32, 3), np.uint8), inspect_tflite(other))
    bad = RenderVariant("small", other, run_tflm(other, xo, 1 << 20)[0])
    with pytest.raises(PipelineError, match="not the same model: input"):
        _render(tmp_path / "a", [vs[0], bad], x)
    with pytest.raises(PipelineError, match="distinct"):
        _render(tmp_path / "b", [vs[0], RenderVariant("int4", vs[1].tflite, vs[1].golden_outputs)], x)
    with pytest.raises(PipelineError, match="6 outputs but 5 class names"):
        _render(tmp_path / "c", vs, x, classes=_models.CLASSES[:5])
    assert not (tmp_path / "a").exists() or not list((tmp_path / "a").iterdir())  # nothing half-written


def test_sweep_with_measured_switch_costs():
    small = np.array([[0.9, 0.1], [0.55, 0.45]])
    large = np.array([[0.8, 0.2], [0.3, 0.7]])
    rows = sweep([small, large], np.array([0, 1]), [100.0, 300.0], SwitchConfig(thresholds=(0.0, 0.6, 1.0)),
                 switch_costs_us=[20.0, 50.0])
    none, half, every = rows
    assert none["mean_latency_us_with_switch_cost"] == none["mean_latency_us"] == 100
    # row 1 escalates: int4 + int8 invokes, a switch up (50) and the switch back to variant 0 (20)
    assert half["mean_latency_us"] == pytest.approx((100 + 400) / 2)
    assert half["mean_latency_us_with_switch_cost"] == pytest.approx((100 + 400 + 70) / 2)
    assert every["mean_latency_us_with_switch_cost"] == pytest.approx(400 + 70)
    with pytest.raises(PipelineError, match="3 switch costs for 2 variants"):
        sweep([small, large], np.array([0, 1]), [1.0, 2.0], SwitchConfig(thresholds=(0.5,)), switch_costs_us=[1, 2, 3])


def test_switch_spec_defaults_overrides_and_file(tmp_path):
    s = load_switch_spec(["int4", "int8"])
    assert s == {"variants": ["int4", "int8"], "threshold": 0.5, "metric": "confidence", "frames": 40,
                 "name": "switch-int4-int8"}
    shipped = load_switch_spec(["int4-int8"], threshold=0.8)
    assert shipped["variants"] == ["int4", "int8"] and shipped["threshold"] == 0.8
    assert shipped["name"] == "switch-int4-int8"
    f = tmp_path / "mine.toml"
    f.write_text('[switch]\nvariants = ["a", "b", "c"]\nmetric = "margin"\nframes = 7\n')
    s = load_switch_spec([str(f)], name="x1")
    assert s == {"variants": ["a", "b", "c"], "threshold": 0.5, "metric": "margin", "frames": 7, "name": "x1"}


@pytest.mark.parametrize("text,needle", [
    ('[switch]\nvariants = ["a", "b"]\nthreshold = 1.5\n', "outside [0, 1]"),
    ('[switch]\nvariants = ["a", "b"]\nthreshold = -0.1\n', "outside [0, 1]"),
    ('[switch]\nvariants = ["a", "b"]\nmetric = "top5"\n', "metric"),
    ('[switch]\nvariants = ["a", "b"]\nframes = 0\n', "frames"),
    ('[switch]\nvariants = ["a", "b"]\nthreshhold = 0.5\n', "unknown key(s) threshhold"),
    ('[switch]\nvariants = ["a"]\n', "at least two"),
    ('[switch]\nvariants = "a,b"\n', "list of run names"),
    ('[data]\nseed = 1\n', "one [switch] table"),
    ('[switch\n', "not valid TOML"),
    ('[switch]\nvariants = ["a", "b"]\nname = "../x"\n', "cannot be a folder name"),
])
def test_bad_switch_specs_are_refused(tmp_path, text, needle):
    f = tmp_path / "s.toml"
    f.write_text(text)
    with pytest.raises(PipelineError) as e:
        load_switch_spec([str(f)])
    assert needle in str(e.value)


def test_cli_switch_refuses_bad_input_in_one_line(tmp_path):
    assert_cli_error(cli("switch", "int4", "--runs-dir", str(tmp_path)), "two or more runs")
    assert_cli_error(cli("switch", "a", "b", "--threshold", "1.5", "--runs-dir", str(tmp_path)), "outside [0, 1]")
    assert_cli_error(cli("switch", "a", "b", "--runs-dir", str(tmp_path)), "run a does not exist")


def test_synthetic_mlp_variants_read_the_same_input_bytes():
    """The switching benchmark's MLP: its 4- and 8-bit variants quantize the input alike (one frame
    serves both in one firmware), and they are one model (same shapes) that host TFLM runs."""
    from pipeline.bench.switching import mlp_variants

    spec = mlp_variants(samples=300, epochs=2, qat_epochs=1)
    assert spec["same_input_quantization"], spec["input_quantization"]
    (n4, t4), (n8, t8) = spec["models"]
    assert (n4, n8) == ("mlp-int4", "mlp-int8")
    i4, i8 = inspect_tflite(t4), inspect_tflite(t8)
    assert i4.weight_bytes < i8.weight_bytes and i4.input.shape == i8.input.shape == [1, 32]
    x = spec["inputs"][:5]
    assert x.dtype == np.int8 and len(spec["labels"]) == len(spec["inputs"]) == 60
    for t in (t4, t8):
        y, _ = run_tflm(t, x, 1 << 20)
        assert y.shape == (5, 6)


@functools.lru_cache(maxsize=None)
def _clustered_model() -> bytes:
    """MicroPizzaNet's structure with every Conv2D filter holding at most four values per output
    channel (what cluster.clusters = 4, per_channel leaves): a variant the device stores as 2-bit codebooks."""
    from pipeline.config import ConvertConfig
    from pipeline.stages.convert import convert

    keras_model = _models.micropizzanet_like(seed=2)
    rng = np.random.default_rng(2)
    for layer in keras_model.layers:
        if type(layer).__name__ == "Conv2D":
            w = layer.get_weights()
            k = w[0]
            values = rng.normal(0, 0.3, (4, k.shape[-1]))
            k[...] = np.take_along_axis(values, rng.integers(0, 4, (int(np.prod(k.shape[:-1])), k.shape[-1])),
                                        axis=0).reshape(k.shape)
            layer.set_weights([k, *w[1:]])
    rep = _models.images(32).astype(np.float32) / 255.0
    return convert(keras_model, rep, ConvertConfig(representative_samples=32))


def test_each_variant_is_stored_as_its_recipe_stores_it(tmp_path):
    """One firmware, three storages: the codebook variant's model array is its encoded device model (its
    codebooks listed against that array), the others' arrays are their .tflite bytes, and every variant
    keeps the hash of the host model its golden outputs come from."""
    from pipeline.tflite.codebook import encode
    from pipeline.analysis.switchfw import device_bytes, device_storage

    x, (v4, v8) = _variants(2)
    c = _clustered_model()
    v2 = RenderVariant("2bit", c, run_tflm(c, x, 1 << 20)[0])
    vs = [v2, v4, v8]
    bits = device_storage([(v.name, v.tflite) for v in vs], [2, 8, 8])
    render_variants(vs, RenderConfig(), tmp_path, golden_inputs=x, golden_labels=[0, 1], class_names=_models.CLASSES,
                    host_arena_bytes=15000, provenance=PROV, codebook_bits=bits)
    dev, books = encode(c, 2)
    assert books and len(dev) < len(c)
    cc = (tmp_path / "model_data.cc").read_text()
    for v, want in ((v2, dev), (v4, v4.tflite), (v8, v8.tflite)):
        sym = f"g_micropizzanet_{v.name}_model_data"
        body = cc.split(f"alignas(16) const unsigned char {sym}[] = {{", 1)[1].split("};", 1)[0]
        assert _hex(body) == want
    table = cc.split("g_picotflm_variants[PICOTFLM_VARIANT_COUNT] = {", 1)[1]
    for v in vs:
        assert inspect_tflite(v.tflite).sha256[:16] in table  # the host model's hash, whatever the storage
    books_cc = (tmp_path / "codebook_data.cc").read_text()
    entries = re.findall(r"\{g_(\w+)_model_data \+ (\d+),", books_cc)
    assert entries == [("micropizzanet_2bit", str(b.offset)) for b in books]  # only the codebook variant's array
    assert f"g_pk_codebook_count = {len(books)};" in books_cc
    # the figures the switching table reports are those of the same storage
    d2, d8 = device_bytes(c, 2), device_bytes(v8.tflite, 8)
    assert d2["stored_as"] == "2-bit codebooks" and d8["stored_as"] == "its .tflite"
    assert d2["device_weight_bytes"] < inspect_tflite(c).weight_bytes
    assert d8["device_weight_bytes"] == inspect_tflite(v8.tflite).weight_bytes


def test_storage_widths_are_checked():
    from pipeline.analysis.switchfw import device_storage

    models = [("a", b""), ("b", b"")]
    assert device_storage(models, None) == [8, 8] and device_storage(models, [4, 8]) == [4, 8]
    with pytest.raises(PipelineError, match="variant b: codebook index width 3 bits"):
        device_storage(models, [2, 3])
    with pytest.raises(PipelineError, match="1 storage widths for 2 variants"):
        device_storage(models, [2])


def test_a_runs_storage_comes_from_its_recorded_recipe_and_orders_the_variants(tmp_path):
    import json

    from pipeline.flow.recipe import load_recipe
    from pipeline.analysis.switch import Variant, order_by_size, stored_bits

    for recipe, want in (("codebook-2bit", 2), ("codebook-4bit", 4), ("int4", 8), ("int8", 8)):
        (tmp_path / recipe).mkdir()
        (tmp_path / recipe / "manifest.json").write_text(json.dumps({"recipe": load_recipe(recipe).to_dict()}))
        assert stored_bits(tmp_path / recipe) == want, recipe
    assert stored_bits(tmp_path / "no-such-run") == 8

    def v(name, flash, weights):
        return Variant(name=name, tflite=b"", input_shape=[1], output_shape=[1], class_names=("a",),
                       weight_bytes=9999, latency_us=0.0, latency_where="", x_test=np.zeros(1), y_test=np.zeros(1),
                       device_model_bytes=flash, device_weight_bytes=weights)

    # smallest in the device's flash first, even when its weights alone are not the smallest
    order = order_by_size([v("int8", 7680, 1264), v("int4", 7104, 632), v("2bit", 4832, 976)])
    assert [x.name for x in order] == ["2bit", "int4", "int8"]
