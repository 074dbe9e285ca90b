"""picotflm's M0+ kernels against pico-tflmicro's stock kernels, in the emulated Pico: the same run's
firmware built both ways gives bit-identical outputs on the golden inputs and on every test frame,
and both agree with host TFLM (what `make bench` measures on MicroPizzaNet)."""
import pytest


def test_picotflm_kernels_bit_exact_with_stock(request, hil_run):
    if request.config.getoption("--port"):
        pytest.skip("builds and runs both kernel sets in the emulated Pico; a real board runs one image")
    from pipeline.bench import kernels_compare

    rows = {r["kernels"]: r for r in kernels_compare(hil_run, None, log=lambda s: None)}
    assert set(rows) == {"stock", "picotflm"}
    for kernels, r in rows.items():
        assert r["board_kernels"] == kernels, r  # the firmware says which kernels it runs
        n = int(r["test_split_exact"].split("/")[1])
        assert n >= 20, r
        assert r["test_split_exact"] == f"{n}/{n}", (kernels, r)
        exact, count = r["golden"].split("/")
        assert exact == count and int(count) > 0, (kernels, r)
    # The host's per-channel tables equal what TFLM computes on the board for every convolution.
    assert rows["picotflm"]["quant_tables_missed"] == 0 and rows["picotflm"]["quant_tables_matched"] > 0
    # Same outputs, hence the same accuracy on the frames sent; only the cost differs.
    assert rows["stock"]["test_split_top1"] == rows["picotflm"]["test_split_top1"]
    assert rows["picotflm"]["cycles"] > 0 and rows["stock"]["cycles"] > 0
