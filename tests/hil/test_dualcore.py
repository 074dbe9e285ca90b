"""Both cores: the board image splits picotflm's convolutions over core 0 and core 1
(firmware/src/kernels: pk_split, pk_multicore.c). The outputs must still equal host TFLM bit for bit,
with both cores and with core 0 alone (`cores 1`), and the suite reports what each costs per invoke.

On a Pico flashed with the board image (``--port``, ``make flash``) or on the emulated Pico running it
(``--emulator``: two cores in lockstep without bus contention, so its speed-up is an upper bound).
"""
import pytest

from pipeline.stages.verify import images_to_input, run_tflm

pytestmark = pytest.mark.hardware


@pytest.fixture
def host_model_real(host_model):
    return host_model


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
    after = board.request("info").figures()
    if reply["kernels"] == "picotflm" and "cores_used" in after:  # the firmware says the split ran
        assert after["cores_used"] == 2, after
    # Core 0 alone (`cores 1`), the same image: the same outputs, then both cores again.
    assert board.request("cores", 1)["cores_enabled"] == 1
    try:
        assert board.request("info")["cores_enabled"] == 1
        g1 = board.request("golden", timeout=120)
        assert g1["exact"] == g1["count"] == g["count"]
        assert [board.send_frame(frame.tobytes())["output"] for frame in x[:6]] == [h.tobytes() for h in host[:6]]
    finally:
        assert board.request("cores", 2)["cores_enabled"] == 2


def test_cores_refuses_what_the_image_lacks(two_core_board):
    board, _ = two_core_board
    for bad in (0, 3):
        r = board.request("cores", bad, raise_on_error=False)
        assert not r.ok and r["err"] == "range", r
    assert board.request("info")["cores_enabled"] == 2


def test_report_cycles_with_both_cores(two_core_board, host_model_real, record_property, capsys):
    board, reply = two_core_board
    _, info, _ = host_model_real
    b = board.request("bench", 10, timeout=120)
    board.request("cores", 1)
    try:
        b1 = board.request("bench", 10, timeout=240)
    finally:
        board.request("cores", 2)
    p = board.request("profile", timeout=60)
    m = board.request("mem")
    assert 0 < b["min_cycles"] <= b["median_cycles"] <= b["max_cycles"]
    cycles_per_mac = b["median_cycles"] / info.macs
    # Two M0+ cores: about half the one-core figure at best.
    assert 1.5 < cycles_per_mac < 300, cycles_per_mac
    assert [op["op"] for op in p["ops"]] == info.op_sequence
    figures = {
        "kernels": reply["kernels"],
        "median_cycles": b["median_cycles"],
        "median_us": b["median_us"],
        "one_core_median_cycles": b1["median_cycles"],
        "two_core_speedup": round(b1["median_cycles"] / b["median_cycles"], 3),
        "cycles_per_mac": round(cycles_per_mac, 2),
        "ops": [(op["op"], op["cycles"]) for op in p["ops"]],
        "stack_peak": m["stack_peak"],
    }
    for key in ("cores_used", "split_ops", "core1_jobs", "core1_stack_peak", "core1_stack_size"):
        for r in (m.figures(), reply.figures()):
            if key in r:
                figures[key] = r[key]
                break
    for key, value in figures.items():
        record_property(key, value)
    with capsys.disabled():
        print(f"\nboth cores ({reply['kernels']} kernels): median {b['median_cycles']:,} cycles = "
              f"{b['median_us']:,} us = {cycles_per_mac:.2f} cycles/MAC"
              + f"; one core {b1['median_cycles']:,} cycles: {figures['two_core_speedup']:.2f}x; per op "
              + ", ".join(f"{op} {c:,}" for op, c in figures["ops"])
              + "".join(f"; {k} {figures[k]}" for k in ("cores_used", "split_ops", "core1_jobs",
                                                        "core1_stack_peak") if k in figures))
    if reply["kernels"] == "picotflm":  # the split ops take both cores: faster than one, never beyond 2x
        assert 1.2 < figures["two_core_speedup"] <= 2.05, figures
    if "core1_stack_peak" in figures and "core1_stack_size" in figures:
        assert 0 < figures["core1_stack_peak"] < figures["core1_stack_size"]
    assert 0 < m["stack_peak"] < m["stack_size"], m.figures()  # core 0's stack within its own bank
