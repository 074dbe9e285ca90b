"""Both firmware images build from rendered sources, offline, and their ELF says what they hold."""
import struct
from contextlib import contextmanager

import numpy as np
import pytest

from pipeline.config import BuildConfig, RenderConfig
from tests import _models
from tests.conftest import require_emulated_pico

pytestmark = pytest.mark.firmware


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    return out, _models.render_with_golden(_models.int8_tflite(), out, golden=6)


@contextmanager
def _board(toolchain, tmp_path, gen):
    """The emulator image built from the sources in ``gen``, running in the emulated Pico."""
    from pipeline.stages.build import build_firmware
    from pipeline.board.client import BoardClient
    from pipeline.board.emulator import EmulatedPico
    from pipeline.stages.build import build_dir_for

    require_emulated_pico()
    res = build_firmware(gen, build_dir_for(tmp_path, "emulator"), BuildConfig(), toolchain=toolchain)
    with EmulatedPico(res.elf) as pico, BoardClient(pico.port, timeout=10.0) as board:
        yield board


@pytest.mark.parametrize("image", ["emulator", "board"])
def test_image_builds_and_its_memory_map_is_read(toolchain, generated, tmp_path, image):
    from pipeline.board.targets import RP2040
    from pipeline.stages.build import build_firmware
    from pipeline.stages.build import build_dir_for

    gen, info = generated
    build_dir = build_dir_for(tmp_path, image)  # under build/, where ccache holds the TFLM objects
    res = build_firmware(gen, build_dir, BuildConfig(image=image), toolchain=toolchain)
    mem = res.memory
    model_bytes = (gen / "model_data.cc").read_text().count("0x")
    assert model_bytes == info.size_bytes
    assert info.size_bytes < mem["flash_bytes"] < 2 * 1024 * 1024
    arena = int(next(l for l in (gen / "model_config.h").read_text().splitlines()
                     if l.startswith("#define PICOTFLM_ARENA_SIZE")).split()[-1])
    assert mem["arena_static_bytes"] == arena
    assert arena < mem["static_ram_bytes"] < 264 * 1024
    binary = res.bin.read_bytes()
    assert info.sha256[:16].encode() in binary  # bi_decl program info names the model's hash
    uf2 = res.uf2.read_bytes()
    assert len(uf2) % 512 == 0 and struct.unpack("<I", uf2[12:16])[0] == RP2040.flash_base
    # stdio: USB CDC on the board image (its interface string), UART only in the emulator image
    assert (b"Board CDC" in binary) == (image == "board")


def test_too_small_an_arena_is_reported_by_the_firmware_with_the_size_it_needed(toolchain, tmp_path):
    """The arena is rendered too small on purpose: the board answers `info` with status error and
    TFLM's own words about the bytes it was missing, and refuses to measure."""
    from pipeline.errors import PipelineError

    require_emulated_pico()
    gen = tmp_path / "gen"
    info = _models.render_with_golden(_models.int8_tflite(), gen, RenderConfig(arena_bytes=4000), golden=1,
                                      host_arena_bytes=0)
    with _board(toolchain, tmp_path, gen) as board:
        reply = board.request("info")
        assert reply["status"] == "error"
        assert "AllocateTensors failed with a 4000-byte arena" in reply["setup_error"]
        assert "missing:" in reply["setup_error"]
        refused = board.request("mem", raise_on_error=False)
        assert not refused.ok and refused.err == "setup"
        with pytest.raises(PipelineError, match="4000-byte arena"):
            board.handshake(info.sha256[:16])


def test_host_tables_are_used_only_where_they_equal_the_model(toolchain, tmp_path):
    """The generated per-channel tables and expanded weights are checked against the model at
    Prepare. One table's multiplier is changed: that conv keeps TFLM's own arrays (in the arena) and
    the table is not used; another table's expanded weights are changed: that conv takes the narrow
    path. Both still give the golden outputs bit for bit."""
    import re

    from pipeline.codegen.kernels import conv_quant_tables

    require_emulated_pico()
    data = _models.int8_tflite()
    tables = conv_quant_tables(data)
    wide = [i for i, t in enumerate(tables) if t["wx"]]
    assert len(tables) >= 3 and len(wide) >= 2
    gen = tmp_path / "gen"
    info = _models.render_with_golden(data, gen, RenderConfig(arena_bytes=32 * 1024), host_arena_bytes=0)
    header = gen / "op_resolver.h"
    text = header.read_text()

    def bump_first(text: str, array: str) -> str:
        pattern = re.compile(rf"({array}\[\d+\] = {{ )(-?\d+)")
        assert pattern.search(text), array
        return pattern.sub(lambda m: f"{m.group(1)}{int(m.group(2)) + 1}", text, count=1)

    text = bump_first(text, f"kPicotflmMult{wide[0]}")
    text = bump_first(text, f"kPicotflmWide{wide[-1]}")
    header.write_text(text)
    with _board(toolchain, tmp_path, gen) as board:
        got = board.handshake(info.sha256[:16])
        assert got["quant_tables_matched"] == len(tables) - 1 and got["quant_tables_missed"] == 1
        assert got["threshold_tables"] == len(tables) - 1 and got["threshold_tables_rejected"] == 0
        assert got["wide_tables"] == len(wide) - 1
        g = board.request("golden", timeout=60)
        assert g["exact"] == g["count"] == 4 and g["max_diff"] == 0


def test_a_mean_off_the_fast_path_keeps_tflm_data_and_stays_exact(toolchain, tmp_path):
    """A MEAN over one axis only is not what picotflm's fast path computes: its Prepare keeps TFLM's
    own op data (the 16-byte record is for the fast path only) and its Eval runs TFLM's kernel,
    bit-exact with host TFLM on the golden inputs."""
    from pipeline.config import ConvertConfig
    from pipeline.stages.convert import convert

    require_emulated_pico()
    keras = _models._keras()
    keras.utils.set_random_seed(3)
    L = keras.layers
    i = L.Input((48, 48, 3))
    x = L.Conv2D(8, 3, strides=4, padding="same", activation="relu")(i)
    x = L.Lambda(lambda t: keras.backend.mean(t, axis=1))(x)  # MEAN over the rows only
    x = L.Flatten()(x)
    out = L.Dense(len(_models.CLASSES), activation="softmax")(x)
    rep = _models.images(16).astype(np.float32) / 255.0
    data = convert(keras.Model(i, out), rep, ConvertConfig(representative_samples=16))
    gen = tmp_path / "gen"
    info = _models.render_with_golden(data, gen, RenderConfig(arena_bytes=32 * 1024), host_arena_bytes=0)
    assert "MEAN" in info.op_sequence  # over axis 1: TFLM's Eval
    with _board(toolchain, tmp_path, gen) as board:
        got = board.handshake(info.sha256[:16])
        assert got["kernels"] == "picotflm" and got["status"] == "ready"
        g = board.request("golden", timeout=60)
        assert g["exact"] == g["count"] == 4 and g["max_diff"] == 0
