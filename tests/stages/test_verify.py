import numpy as np

from pipeline.config import VerifyConfig
from pipeline.tflite.reader import inspect_tflite
from pipeline.stages.verify import _fits, minimal_arena, parse_allocations, verify
from tests import _models


def test_minimal_arena_is_the_smallest_that_allocates_and_invokes():
    data = _models.int8_tflite()
    info = inspect_tflite(data)
    arena = minimal_arena(data, info)
    probe = np.zeros((1, 48, 48, 3), np.int8)
    assert arena % 16 == 0
    assert _fits(data, arena, probe)
    assert not _fits(data, arena - 16, probe)
    # live activations at the peak: the 24x24x8 output of the first conv plus its 48x48x3 input
    assert arena > 24 * 24 * 8 + 48 * 48 * 3


def test_verify_measures_accuracy_agreement_and_arena():
    data = _models.int8_tflite()
    imgs = _models.images(40, seed=3)
    labels = np.arange(40) % 6
    res = verify(data, imgs, labels, VerifyConfig(reference_samples=16))
    m = res.metrics
    assert res.tflm_outputs.shape == (40, 6) and res.tflm_outputs.dtype == np.int8
    assert m["test_samples"] == 40
    assert np.asarray(m["confusion_matrix"]).sum() == 40
    expected_acc = float(np.mean(res.tflm_outputs.argmax(1) == labels))
    assert m["tflm_test_accuracy"] == expected_acc
    agree = m["tflm_vs_tflite"]
    assert agree["inputs"] == 16 + 4
    assert agree["top1_agreement"] >= 0.9 and agree["max_abs_diff"] <= 2
    assert m["host_arena_min_bytes"] == m["host_arena_allocations"]["total_bytes"]
    assert m["macs"] == 177_024


def test_parse_allocations():
    lines = [
        "[RecordingMicroAllocator] Arena allocation total 14768 bytes",
        "[RecordingMicroAllocator] Arena allocation head 11520 bytes",
        "[RecordingMicroAllocator] 'NodeAndRegistration struct' used 512 bytes with alignment overhead "
        "(requested 512 bytes for 8 NodeAndRegistration structs)",
        "unrelated line",
    ]
    p = parse_allocations(lines)
    assert p["total_bytes"] == 14768 and p["head_bytes"] == 11520
    assert p["kinds"] == [{"what": "NodeAndRegistration struct", "used_bytes": 512, "requested_bytes": 512, "count": 8}]
