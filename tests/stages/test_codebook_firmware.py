"""Codebook weights on the emulated Pico (board image): a small 2-bit codebook recipe's golden outputs
equal host TFLM's on the int8 model byte for byte, with its CONV_2D filters stored as codebooks."""
from __future__ import annotations

import json

import pytest

from tests.conftest import require_emulated_pico, run_small_recipe, small_recipe

pytestmark = [pytest.mark.firmware, pytest.mark.slow]

STAGES = ["data", "model", "train", "cluster", "quantize", "convert", "verify", "render", "build", "measure"]
EXTRA = "\n[cluster]\nclusters = 4\nper_channel = true\nindex_bits = 2\nepochs = 1\n\n[quantize]\nmethod = \"ptq\"\n"


def test_codebook_recipe_is_golden_bit_exact_on_the_emulated_pico(tmp_path):
    require_emulated_pico()
    run = run_small_recipe(tmp_path, small_recipe("codebook", stages=STAGES, extra=EXTRA), "codebook")
    manifest = json.loads((run / "manifest.json").read_text())
    render = manifest["stages"]["render"]["metrics"]
    assert render["codebooks"], "no CONV_2D filter was stored as a codebook"
    assert render["device_weight_bytes"] < render["int8_weight_bytes"]
    assert "g_pk_codebooks[" in (run / "firmware" / "codebook_data.cc").read_text()
    golden = json.loads((run / "measured.json").read_text())["golden"]
    assert golden["count"] >= 4 and golden["exact"] == golden["count"]
