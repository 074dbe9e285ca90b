"""Both cores of a real Pico: the board image splits picotflm's convolutions over core 0 and core 1
(firmware/src/kernels: pk_split, pk_multicore.c). The outputs must still equal host TFLM bit for bit,
and the suite reports what both cores cost per invoke.

Real board only (``--port``, flashed with a board image: ``make flash`` or
``picotflm build int8 --name int8-board --set build.image=board``): the emulated RP2040 runs core 0
only, so the emulator image is built for one core and never splits (tests/hil/test_kernels.py and
tests/firmware/test_kernels_c.py cover it, the latter also the split itself, on the host).
"""
import pytest

from pipeline.stages.verify import images_to_input, run_tflm

pytestmark = pytest.mark.hardware


@pytest.fixture
def host_model_real(request):
    """host_model, asked for only after the check: with --emulator the HIL fixtures would build a run."""
    if not request.config.getoption("--port"):
        pytest.skip("the emulated RP2040 runs core 0 only: the dual-core split needs a real Pico (--port)")
    return request.getfixturevalue("host_model")


@pytest.fixture
def two_core_board(request, host_model_real):
    _, info, _ = host_model_real
    board = request.getfixturevalue("board")
    reply = board.handshake(info.sha256[:16])
    if reply["image"] != "board" or reply["cores"] != 2:
        pytest.fail(f"the board runs the {reply['image']} image with {reply['cores']} core(s): flash the board "
                    "image (build.image = \"board\")")
    return board, reply


def test_both_cores_agree_with_host_tflm(two_core_board, host_model_real):
    board, reply = two_core_board
    data, info, ds = host_model_real
    g = board.request("golden", timeout=60)
    assert g["count"] > 0 and g["exact"] == g["count"] and g["max_diff"] == 0
    x = images_to_input(ds.x_test[:24], info)
    host, _ = run_tflm(data, x, 64 * 1024)
    differ = [i for i, (frame, want) in enumerate(zip(x, host))
              if board.send_frame(frame.tobytes())["output"] != want.tobytes()]
    assert differ == [], f"frames {differ} differ from host TFLM"
    after = board.request("info")
    if reply["kernels"] == "picotflm" and "cores_used" in after:  # the firmware says the split ran
        assert after["cores_used"] == 2, after


def test_report_cycles_with_both_cores(two_core_board, host_model_real, record_property, capsys):
    board, reply = two_core_board
    _, info, _ = host_model_real
    b = board.request("bench", 10, timeout=120)
    p = board.request("profile", timeout=60)
    m = board.request("mem")
    assert 0 < b["min_cycles"] <= b["median_cycles"] <= b["max_cycles"]
    cycles_per_mac = b["median_cycles"] / info.macs
    # Two M0+ cores: about half the one-core figure at best (8.95 cycles/MAC on the emulated Pico).
    assert 1.5 < cycles_per_mac < 300, cycles_per_mac
    assert [op["op"] for op in p["ops"]] == info.op_sequence
    figures = {
        "kernels": reply["kernels"],
        "median_cycles": b["median_cycles"],
        "median_us": b["median_us"],
        "cycles_per_mac": round(cycles_per_mac, 2),
        "ops": [(op["op"], op["cycles"]) for op in p["ops"]],
        "stack_peak": m["stack_peak"],
    }
    for key in ("cores_used", "split_ops", "core1_jobs", "core1_stack_peak", "core1_stack_size"):
        for r in (m, reply):
            if key in r:
                figures[key] = r[key]
                break
    for key, value in figures.items():
        record_property(key, value)
    with capsys.disabled():
        print(f"\nboth cores ({reply['kernels']} kernels): median {b['median_cycles']:,} cycles = "
              f"{b['median_us']:,} us = {cycles_per_mac:.2f} cycles/MAC; per op "
              + ", ".join(f"{op} {c:,}" for op, c in figures["ops"])
              + "".join(f"; {k} {figures[k]}" for k in ("cores_used", "split_ops", "core1_jobs",
                                                        "core1_stack_peak") if k in figures))
    if "core1_stack_peak" in figures and "core1_stack_size" in figures:
        assert 0 < figures["core1_stack_peak"] < figures["core1_stack_size"]
