"""`picotflm measure RUN --layers` on the emulated Pico, as a user runs it: every op's output of
MicroPizzaNet (int8, the board image, both cores) bit-exact against host TFLM; a host model altered on
purpose is named at the op that was altered; the `layer` command's errors.

Needs the Pico SDK, pico-tflmicro, the arm toolchain and rp2040js (skipped with the reason when
absent; PICOTFLM_REQUIRE_FIRMWARE=1 fails instead). Builds one small run of the default pipeline."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest

from tests.analysis.layer_models import negate_weights
from tests.conftest import SMALL_RUN_STAGES, cli, require_emulated_pico, run_small_recipe, small_recipe

pytestmark = [pytest.mark.firmware, pytest.mark.slow]

RECIPE = small_recipe("layer tests", stages=SMALL_RUN_STAGES + ["measure"],
                      extra="\n[measure]\nbench_runs = 2\ninfer_frames = 1\n")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    require_emulated_pico()
    run = run_small_recipe(tmp_path_factory.mktemp("layers"), RECIPE)
    assert (run / "measured.json").is_file()
    return run


def test_measure_layers_every_op_bit_exact(small_run):
    from pipeline.analysis.layers import model_ops

    r = cli("measure", "small", "--runs-dir", str(small_run.parent), "--no-progress", "--layers", timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    ops = model_ops((small_run / "model.tflite").read_bytes())
    assert [o.op for o in ops][:2] == ["CONV_2D", "DEPTHWISE_CONV_2D"]  # MicroPizzaNet
    res = json.loads((small_run / "layers.json").read_text())
    assert res["agree"] is True and res["first_differing"] is None and res["exact_ops"] == len(ops)
    assert [row["op"] for row in res["ops"]] == [o.op for o in ops]
    assert all(row["exact"] and row["differing"] == 0 and row["max_abs_diff"] == 0 for row in res["ops"])
    assert res["ops"][0]["bytes"] > 896  # read in several chunks
    assert res["board_bytes"] == sum(row["bytes"] for row in res["ops"])
    assert "emulated Pico, board image" in res["where"]
    assert f"all {len(ops)} ops agree with host TFLM bit for bit" in r.stdout
    assert "| 0 | CONV_2D |" in r.stdout
    report = (small_run / "report.md").read_text()
    assert report.count("## Layer by layer: board vs host TFLM") == 1 and "| 0 | CONV_2D |" in report
    assert json.loads((small_run / "report.json").read_text())["layers"]["agree"] is True
    assert (small_run / "layers.md").read_text().startswith("# Layer by layer")


def test_an_altered_host_model_is_named_at_its_op(small_run):
    """The board runs the run's firmware; the host compares with a model whose op 2 (CONV_2D) has its
    weights negated: ops 0 and 1 agree, op 2 is the first that differs."""
    from pipeline.analysis.layers import compare_run
    from pipeline.flow.rundir import RunDir

    run = RunDir.existing("small", small_run.parent)
    altered = negate_weights((small_run / "model.tflite").read_bytes(), 2)
    res = compare_run(run, "board", port=None, host_model=altered)
    first = res["first_differing"]
    assert not res["agree"] and first["index"] == 2 and first["op"] == "CONV_2D"
    assert first["differing"] > 0 and first["max_abs_diff"] > 0
    assert [row["exact"] for row in res["ops"][:2]] == [True, True]
    assert json.loads((small_run / "layers.json").read_text())["first_differing"]["index"] == 2


def test_layer_errors(small_run):
    """An op index past the model, an offset past the op's output, a frame that does not match its
    CRC-32: one error line each; then a request that works."""
    from pipeline.analysis.layers import model_ops
    from pipeline.board.client import BoardClient, BoardError
    from pipeline.board.emulator import EmulatedPico

    ops = model_ops((small_run / "model.tflite").read_bytes())
    with EmulatedPico(small_run / "firmware.elf") as pico, BoardClient(pico.port, timeout=20.0) as board:
        n = board.handshake()["input_bytes"]
        frame = bytes(range(256)) * (n // 256) + bytes(n % 256)
        crc = f"{zlib.crc32(frame):08x}"
        r = board.request("layer", len(ops), 0, n, crc, raise_on_error=False)
        assert (r.err, r.msg) == ("range", f"op index {len(ops)} is past the model's {len(ops)} ops (0 to {len(ops) - 1})")
        r = board.request("layer", 0, 10 ** 8, n, crc, raise_on_error=False)
        assert r.err == "range" and r.msg.startswith("offset 100000000 is past the op's ")
        r = board.request("layer", 0, 0, n, crc, raise_on_error=False)  # nothing loaded: the CRC says so
        assert r.err == "crc" and "send the frame's loads again" in r.msg
        with pytest.raises(BoardError, match="past the model's"):
            board.layer_output(frame, len(ops))
        out = board.layer_output(frame, len(ops) - 1)
        assert out["op"] == len(ops) - 1 and out["name"] == ops[-1].op and out["tensor"] == ops[-1].tensor
        assert out["type"] == ops[-1].dtype and len(out["data"]) == ops[-1].shape[-1]
