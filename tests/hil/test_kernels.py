"""picotflm's M0+ kernels against pico-tflmicro's stock kernels, in the emulated Pico: the same run's
board image built both ways gives bit-identical outputs on the golden inputs and on every test frame,
all equal to host TFLM, with both cores splitting the work (what `make bench` measures)."""
import pytest


def test_picotflm_kernels_bit_exact_with_stock(request, hil_run):
    if request.config.getoption("--port"):
        pytest.skip("builds and runs both kernel sets in the emulated Pico; a real board runs one image")
    from pipeline.bench.recipes import kernels_compare

    rows = {r["kernels"]: r for r in kernels_compare(hil_run, None, log=lambda s: None)}
    assert set(rows) == {"stock", "picotflm"}
    for kernels, r in rows.items():
        assert r["board_kernels"] == r["build_kernels"], r  # the firmware says which kernels it runs
        n = int(r["test_split_exact"].split("/")[1])
        assert n >= 20, r
        assert r["test_split_exact"] == f"{n}/{n}", (kernels, r)
        exact, count = r["golden"].split("/")
        assert exact == count and int(count) > 0, (kernels, r)
    # The host's per-channel tables equal what TFLM computes on the board for every convolution.
    assert rows["picotflm"]["quant_tables_missed"] == 0 and rows["picotflm"]["quant_tables_matched"] > 0
    # picotflm's convolutions split over both cores: core 1's stack is used, and one core is slower.
    # (pico-tflmicro's stock kernels hand core 1 only their int8 matrix products, which this model's
    # convolutions do not use: their two-core figure may equal the one-core one.)
    pf = rows["picotflm"]
    assert pf["split_ops"] > 0 and pf["core1_jobs"] > 0, pf
    assert 0 < pf["core1_stack_peak"] < pf["core1_stack_size"], pf
    assert pf["one_core_cycles"] > pf["cycles"] > 0 and pf["two_core_speedup"] > 1.2, pf
    assert rows["stock"]["one_core_cycles"] >= rows["stock"]["cycles"] > pf["cycles"], rows["stock"]
    # Same outputs, hence the same accuracy on the frames sent; only the cost differs.
    assert rows["stock"]["test_split_top1"] == pf["test_split_top1"]
