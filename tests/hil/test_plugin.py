"""picotflm's pytest plugin before any test runs: a port that is missing, busy or not a picotflm board,
`--port auto` finding nothing, and contradicting options are each one clear line (a pytest usage
error), not a traceback and not a session of failing tests. The metrics file's OpenMetrics text."""
from __future__ import annotations

import os

import pytest
import serial

from pipeline.hil.results import Metric, openmetrics
from tests.test_example_project import run_pytest

TEST = "def test_nothing(pico):\n    pass\n"


@pytest.fixture
def project(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_x.py").write_text(TEST)
    return tmp_path


def assert_one_line(r, *needles: str) -> str:
    assert r.returncode == pytest.ExitCode.USAGE_ERROR, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr + r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("ERROR: picotflm: "), lines
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_a_missing_port(project):
    assert_one_line(run_pytest(project, "--port", "/dev/ttyNOPE0", "--no-flash"),
                    "/dev/ttyNOPE0", "does not exist", "hint:")


def test_a_port_where_nothing_answers_is_not_a_picotflm_board(project):
    master, slave = os.openpty()
    try:
        assert_one_line(run_pytest(project, "--port", os.ttyname(slave), "--no-flash", timeout=120),
                        os.ttyname(slave), "no answer to 'info'")
    finally:
        os.close(master)
        os.close(slave)


def test_a_busy_port(project):
    master, slave = os.openpty()
    name = os.ttyname(slave)
    try:
        with serial.Serial(name, exclusive=True):
            assert_one_line(run_pytest(project, "--port", name, "--no-flash"), name, "busy")
    finally:
        os.close(master)
        os.close(slave)


def test_port_auto_without_a_pico(project):
    from pipeline.board.connect import find_picos

    if find_picos():
        pytest.skip("a Pico is plugged in here")
    assert_one_line(run_pytest(project, "--port", "auto", "--no-flash"), "found no Pico")


def test_port_and_emulator_together(project):
    assert_one_line(run_pytest(project, "--port", "/dev/ttyACM0", "--emulator"), "exclude each other")


def test_hardware_tests_skip_without_a_board(project):
    (project / "test_x.py").write_text("import pytest\n\n@pytest.mark.hardware\n" + TEST)
    r = run_pytest(project, "-rs")
    assert r.returncode == 0 and "1 skipped" in r.stdout and "needs a board" in r.stdout, r.stdout


def test_openmetrics_names_carry_the_unit_and_each_sample_its_labels():
    ms = [Metric("bench_median", 812.0, "microseconds", "ab" * 8, "emulated", "emulated Pico 0", "x", "t::a"),
          Metric("bench_median", 815.0, "microseconds", "ab" * 8, "emulated", "emulated Pico 0", "x", "t::a"),
          Metric("ram_total", 21000, "bytes", "ab" * 8, "board", "/dev/ttyACM0", "y", 't::"b"')]
    text = openmetrics(ms)
    assert text.endswith("# EOF\n")
    assert "# UNIT picotflm_bench_median_microseconds microseconds" in text
    samples = [ln for ln in text.splitlines() if ln.startswith("picotflm_bench_median_microseconds{")]
    assert len(samples) == 2 and 'n="0"' in samples[0] and 'n="1"' in samples[1]  # no two samples alike
    assert 'test="t::\\"b\\""' in text and 'where="board"' in text


def test_workers_other_than_one_per_board(project):
    assert_one_line(run_pytest(project, "--port", "/dev/ttyACM0", "-n", "2", "--no-flash"), "-n 2 with 1 board")
