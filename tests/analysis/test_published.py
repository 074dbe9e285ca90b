"""Published figures of known models beside a run's own: matched by the model's sha256 only."""
from pipeline.analysis.published import PUBLISHED, published_line
from pipeline.analysis.report import key_figures

PERSON = "808cfdfc0cf3a6fa6f6fa26bfa379ea97c16d5db7334637766e39c3408502e9d"


def test_a_known_model_is_shown_beside_the_measured_figures():
    line = published_line(PERSON, 574_200, 300_000)
    assert line.startswith("pico-tflmicro person detection (int8): published 823 ms one core, 587 ms two cores")
    assert "measured here: 574.2 ms one core (1.43x), 300.0 ms two cores (1.96x)" in line
    assert PUBLISHED[PERSON]["source"] in line


def test_an_unknown_model_gets_no_line():
    assert published_line("0" * 64, 1000, 500) is None and published_line(None, None, None) is None


def test_the_report_shows_it_for_a_deployed_run():
    manifest = {"stages": {
        "tflite": {"status": "done", "metrics": {"sha256": PERSON, "tflite_bytes": 300_568}},
        "measure": {"status": "done", "metrics": {"where": "emulated Pico", "bench": {"median_us": 300_000},
                                                   "bench_one_core": {"median_us": 574_200}, "two_core_speedup": 1.91}}}}
    assert "published 823 ms one core" in key_figures(manifest)["published"]
    assert key_figures({"stages": {}})["published"] is None
