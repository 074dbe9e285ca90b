"""picotflm's M0+ kernels against pico-tflmicro's stock kernels, in the emulated Pico: the same run's
firmware built both ways, and a third time with the board image's split of each op between the cores
(core 1's share run on core 0, on core 1's stack), gives bit-identical outputs on the golden inputs and
on every test frame, and all agree with host TFLM (what `make bench` measures on MicroPizzaNet)."""
import pytest


def test_picotflm_kernels_bit_exact_with_stock(request, hil_run):
    if request.config.getoption("--port"):
        pytest.skip("builds and runs both kernel sets in the emulated Pico; a real board runs one image")
    from pipeline.bench.recipes import kernels_compare

    rows = {r["kernels"]: r for r in kernels_compare(hil_run, None, log=lambda s: None)}
    assert set(rows) == {"stock", "picotflm", "picotflm split"}
    for kernels, r in rows.items():
        assert r["board_kernels"] == r["build_kernels"], r  # the firmware says which kernels it runs
        n = int(r["test_split_exact"].split("/")[1])
        assert n >= 20, r
        assert r["test_split_exact"] == f"{n}/{n}", (kernels, r)
        exact, count = r["golden"].split("/")
        assert exact == count and int(count) > 0, (kernels, r)
    # The host's per-channel tables equal what TFLM computes on the board for every convolution.
    assert rows["picotflm"]["quant_tables_missed"] == 0 and rows["picotflm"]["quant_tables_matched"] > 0
    # The board image's splits ran (core 1's share on core 0, on core 1's stack) and gave the same
    # outputs; the deepest use of core 1's stack is measured.
    split = rows["picotflm split"]
    assert split["split_ops"] > 0 and split["core1_jobs"] > 0, split
    assert 0 < split["core1_stack_peak"] < split["core1_stack_size"], split
    assert rows["stock"].get("core1_stack_peak") in (0, None) and rows["picotflm"].get("split_ops") == 0
    # Same outputs, hence the same accuracy on the frames sent; only the cost differs.
    assert rows["stock"]["test_split_top1"] == rows["picotflm"]["test_split_top1"] == split["test_split_top1"]
    assert rows["picotflm"]["cycles"] > 0 and rows["stock"]["cycles"] > 0
