"""A model as a C array (TFLM's examples ship models so) read back byte for byte, and the one-line
refusals when a source holds none."""
import pytest

from pipeline.errors import PipelineError
from pipeline.stages.support import read_model_file
from pipeline.tflite.carray import c_array_bytes
from tests import _models


def as_c_source(data: bytes) -> str:
    rows = ",\n  ".join(", ".join(f"0x{b:02x}" for b in data[i:i + 12]) for i in range(0, len(data), 12))
    return ("// generated\n#include <cstdint>\nconst int g_model_len = %d;\n"
            "alignas(16) const unsigned char g_model[] = {\n  %s, /* end */\n};\n") % (len(data), rows)


def test_a_tflm_example_style_array_reads_back_exactly(tmp_path):
    data = _models.int8_tflite()
    src = tmp_path / "model_data.cc"
    src.write_text(as_c_source(data))
    assert c_array_bytes(src.read_text()) == data
    assert read_model_file(src) == data  # `picotflm deploy model_data.cc` deploys the same model


@pytest.mark.parametrize("text, what", [("int x = 3;\n", "holds no unsigned char array"),
                                        ("unsigned char m[] = {1, 300};\n", "not bytes")])
def test_a_source_without_a_model_is_one_line(tmp_path, text, what):
    src = tmp_path / "m.cpp"
    src.write_text(text)
    with pytest.raises(PipelineError, match=what) as e:
        read_model_file(src)
    assert "\n" not in str(e.value)


def test_a_byte_array_that_is_not_a_model_is_refused(tmp_path):
    src = tmp_path / "m.h"
    src.write_text("unsigned char m[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};\n")
    with pytest.raises(PipelineError, match="not a TFLite flatbuffer"):
        read_model_file(src)
