"""The model on the board: what it computes, how fast, in how much RAM. The same tests run on a Pico
(--port) and on the emulated one (--emulator); `pico` is connected and runs this model (its hash checked)."""
import numpy as np
import pytest

pytestmark = pytest.mark.hardware

# This product's budgets (requirements, not measurements).
LATENCY_LIMIT_US = 500_000
RAM_LIMIT_BYTES = 200 * 1024


def test_the_board_runs_this_model(pico, pico_run):
    info = pico.info()
    assert info.hash == pico_run.model_hash and info.status == "ready"


def test_golden_outputs_are_bit_exact(pico):
    g = pico.golden()
    assert g.all_exact, g


@pytest.mark.parametrize("i", range(3))
def test_a_frame_agrees_with_host_tflm(pico, pico_run, i):
    frame = pico_run.frames[i]
    want = pico_run.host_outputs(frame[None, ...])[0].reshape(-1)
    got = pico.infer(frame)
    assert np.array_equal(got.output, want)
    assert got.top1 == int(np.argmax(want))


def test_latency_is_within_budget(pico):
    assert pico.bench(runs=5).median_us < LATENCY_LIMIT_US


def test_ram_is_within_budget(pico):
    pico.golden()  # run the model first: the stack's high-water mark then counts
    assert pico.mem().ram_total < RAM_LIMIT_BYTES


def test_every_operator_is_profiled(pico, pico_run):
    p = pico.profile()
    assert [o.op for o in p.ops] == pico_run.model_info.op_sequence
    assert sum(o.cycles for o in p.ops) <= p.total_cycles
