import re
import shutil
import subprocess

import numpy as np
import pytest

from pipeline.config import ConfigError, RenderConfig
from pipeline.tflite.reader import inspect_tflite
from pipeline.errors import PipelineError
from pipeline.codegen.cgen import c_bytes, c_string
from pipeline.codegen.render import GENERATED_FILES, check_fits_rp2040, choose_arena, render
from pipeline.stages.verify import images_to_input, run_tflm
from tests import _models

PROV = {"tool_version": "0.0.0-test", "model_file": "model.tflite", "source_sha256": "ab" * 32,
        "tensorflow": "2.21.0", "tflite_micro": "test"}


def _render(out_dir, cfg=None, classes=None, golden=4):
    data = _models.int8_tflite()
    info = inspect_tflite(data)
    x = images_to_input(_models.images(golden, seed=7), info)
    y, _ = run_tflm(data, x, 64 * 1024)
    files = render(data, cfg or RenderConfig(), out_dir, golden_inputs=x, golden_outputs=y,
                   golden_labels=list(range(golden)), class_names=classes or _models.CLASSES,
                   host_arena_bytes=14768, provenance=PROV)
    return data, x, y, files


def test_render_writes_every_file_with_a_banner(tmp_path):
    data, _, _, files = _render(tmp_path)
    assert [f.name for f in files] == list(GENERATED_FILES)
    sha = __import__("hashlib").sha256(data).hexdigest()
    for f in files:
        head = f.read_text().splitlines()[:4]
        assert "DO NOT EDIT" in head[0] and "0.0.0-test" in head[0]
        assert sha in head[1] and "2.21.0" in head[3]
    assert not list(tmp_path.glob("*.tmp*"))


def test_render_is_byte_identical_twice(tmp_path):
    _render(tmp_path / "a")
    _render(tmp_path / "b")
    for name in GENERATED_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def _hex_bytes(text):
    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", text))


def test_model_array_and_config_agree_with_the_model(tmp_path):
    data, x, y, _ = _render(tmp_path)
    cc = (tmp_path / "model_data.cc").read_text()
    assert "alignas(16) const unsigned char g_micropizzanet_model_data[]" in cc
    body = cc.split("= {", 1)[1].split("};", 1)[0]
    assert _hex_bytes(body) == data
    cfg = (tmp_path / "model_config.h").read_text()
    info = inspect_tflite(data)
    assert f"#define PICOTFLM_MODEL_HASH \"{__import__('hashlib').sha256(data).hexdigest()[:16]}\"" in cfg
    assert "#define PICOTFLM_INPUT_BYTES 6912" in cfg and "#define PICOTFLM_OUTPUT_BYTES 6" in cfg
    assert "#define PICOTFLM_INPUT_TYPE kTfLiteInt8" in cfg
    assert f"#define PICOTFLM_INPUT_ZERO_POINT {info.input.zero_point[0]}" in cfg
    assert '"basic", "burnt", "combined", "mixed", "progression", "segment"' in cfg
    arena = int(re.search(r"#define PICOTFLM_ARENA_SIZE (\d+)", cfg).group(1))
    assert arena == choose_arena(RenderConfig(), 14768).bytes and arena % 16 == 0
    resolver = (tmp_path / "op_resolver.h").read_text()
    assert "constexpr int kPicotflmOpKinds = 5;" in resolver
    assert re.findall(r"r\.(Add\w+)\(\)", resolver) == ["AddConv2D", "AddDepthwiseConv2D", "AddMean",
                                                        "AddFullyConnected", "AddSoftmax"]
    golden = (tmp_path / "golden_data.cc").read_text()
    ins, outs = golden.split("g_picotflm_golden_outputs", 1)
    assert _hex_bytes(ins.split("= {", 1)[1]) == x.tobytes()
    assert _hex_bytes(outs) == y.tobytes()


def test_arena_margin_and_override():
    a = choose_arena(RenderConfig(arena_margin_percent=10, arena_margin_bytes=0), 10_000)
    assert a.bytes == 11_008 and "10 %" in a.explanation
    assert choose_arena(RenderConfig(arena_bytes=20_001), 10_000).bytes == 20_016


def test_too_big_for_the_rp2040_fails_before_building():
    with pytest.raises(PipelineError, match="264 KB"):
        check_fits_rp2040(10_000, 250 * 1024, 1000)
    with pytest.raises(PipelineError, match="2 MB flash"):
        check_fits_rp2040(1_900_000, 10_000, 1000)


@pytest.mark.parametrize("bad", ["9lives", "has space", "semi;colon", "quo\"te", "*/", "../x", "x" * 65, "név"])
def test_bad_c_identifiers_are_refused(bad):
    with pytest.raises(ConfigError, match="not a valid C identifier"):
        RenderConfig(model_name=bad)


def test_class_names_must_match_outputs_and_not_be_paths(tmp_path):
    with pytest.raises(PipelineError, match="6 outputs but 2 class names"):
        _render(tmp_path, classes=["a", "b"])
    with pytest.raises(PipelineError, match="class name '../progress' is not allowed"):
        _render(tmp_path, classes=["basic", "burnt", "combined", "mixed", "../progress", "segment"])


def test_c_string_escapes_everything_dangerous():
    assert c_string('a"b\\c') == '"a\\"b\\\\c"'
    assert c_string("*/ ??/") == '"*/ \\?\\?/"'
    assert c_string("é\n") == '"\\303\\251\\012"'
    assert c_bytes(b"\x00\xff", per_line=1) == "  0x00,\n  0xff,"


@pytest.mark.skipif(shutil.which("g++") is None, reason="no host g++ to compile the generated sources")
def test_generated_sources_compile_and_hold_the_model_bytes(tmp_path):
    data, x, y, _ = _render(tmp_path)
    main = tmp_path / "main.cc"
    main.write_text(
        '#include <cstdio>\n#include "model_data.h"\n#include "golden_data.h"\n'
        "int main() {\n"
        "  unsigned long s = 0;\n"
        "  for (unsigned i = 0; i < PICOTFLM_MODEL_DATA_SIZE; i++) s = s * 31 + PICOTFLM_MODEL_DATA[i];\n"
        "  for (int g = 0; g < PICOTFLM_GOLDEN_COUNT; g++) for (int i = 0; i < PICOTFLM_OUTPUT_BYTES; i++)\n"
        "    s = s * 31 + g_picotflm_golden_outputs[g][i];\n"
        '  std::printf("%lu %d\\n", s, (int)(((unsigned long)PICOTFLM_MODEL_DATA) % 16));\n}\n')
    exe = tmp_path / "check"
    r = subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-I", str(tmp_path), str(main),
                        str(tmp_path / "model_data.cc"), str(tmp_path / "golden_data.cc"), "-o", str(exe)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    s = 0
    for b in data + y.tobytes():
        s = (s * 31 + b) % (1 << 64)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) == s and out[1] == "0"


@pytest.mark.skipif(shutil.which("arm-none-eabi-g++") is None,
                    reason="no arm-none-eabi-g++ (apt-get install gcc-arm-none-eabi)")
def test_generated_sources_compile_for_cortex_m0plus(tmp_path):
    _render(tmp_path)
    for src in ("model_data.cc", "golden_data.cc"):
        r = subprocess.run(["arm-none-eabi-g++", "-std=c++17", "-Wall", "-Werror", "-mcpu=cortex-m0plus", "-mthumb",
                            "-Os", "-I", str(tmp_path), "-c", str(tmp_path / src), "-o", str(tmp_path / (src + ".o"))],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_wide_weights_interleave_each_group_of_four_channels():
    """The expanded weights of a CONV_2D: group g, weight i, channel c at [(g * k + i) * 4 + c], for
    int8 and for packed int4 weights (low nibble first), none for fewer than four channels."""
    from pipeline.tflite.reader import load_tflite
    from pipeline.codegen.kernels import conv_quant_tables, wide_weights

    data = _models.int8_tflite()
    op = next(t["op"] for t in conv_quant_tables(data) if t["wx"])
    schema, model = load_tflite(data)
    t_w = model.subgraphs[0].tensors[model.subgraphs[0].operators[op].inputs[1]]
    out_c, k = int(t_w.shape[0]), int(np.prod(t_w.shape[1:]))
    w = np.asarray(model.buffers[t_w.buffer].data, dtype=np.uint8).view(np.int8).reshape(out_c, k)

    def expected(w):
        return [int(w[4 * g + c, i]) for g in range(out_c // 4) for i in range(k) for c in range(4)]

    assert wide_weights(schema, model, t_w) == expected(w)
    w4 = np.clip(w, -8, 7)
    nibbles = (w4.reshape(-1).astype(np.int16) & 0x0F).astype(np.uint8)
    nibbles = np.append(nibbles, np.uint8(0)) if nibbles.size % 2 else nibbles
    t_w.type = schema.TensorType.INT4
    model.buffers[t_w.buffer].data = nibbles[0::2] | (nibbles[1::2] << 4)
    assert wide_weights(schema, model, t_w) == expected(w4)
    t_w.type = schema.TensorType.INT8
    t_w.shape = np.asarray([3, *t_w.shape[1:]])
    model.buffers[t_w.buffer].data = w[:3].reshape(-1).view(np.uint8)
    assert wide_weights(schema, model, t_w) is None
