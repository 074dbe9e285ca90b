"""examples/pico-model-ci as a user's CI runs it: `pytest --emulator`, then `pytest --emulator -n 2`
(two emulated boards, the firmware built once), each writing JUnit XML and the metrics file; then one
of two emulated boards lost mid-session, which fails that board's tests only, each with the reason.
The project is copied out of the repository and run as a subprocess with picotflm installed from a
wheel of this checkout (its bundled firmware sources and emulator scripts, rp2040js set up by
`picotflm setup-emulator` in a cache folder of its own): it sees only the installed package."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import REPO, require_emulated_pico

pytestmark = [pytest.mark.firmware, pytest.mark.slow]

EXAMPLE = REPO / "examples" / "pico-model-ci"
TESTS_IN_EXAMPLE = 8


INSTALLED: dict[str, str] = {}  # the environment of the installed wheel, set up once by `project`


def run_pytest(project: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    """pytest in ``project`` as its owner runs it, the plugin loaded by the wheel's entry point."""
    return subprocess.run([sys.executable, "-m", "pytest", *args], cwd=project, env=INSTALLED, capture_output=True,
                          text=True, timeout=timeout)


def install_wheel(tmp: Path) -> dict[str, str]:
    """A wheel of this checkout installed into ``tmp/site`` (its dependencies are this interpreter's),
    the emulated Pico set up for it; the environment that runs it."""
    wheels = tmp / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(REPO)], check=True, capture_output=True, timeout=600)
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                    *map(str, wheels.glob("picotflm-*.whl"))], check=True, capture_output=True, timeout=600)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PICOTFLM_EMULATOR_DIR")}
    env.update(PYTHONPATH=str(site), PICOTFLM_CACHE_DIR=str(tmp / "cache"))
    where = subprocess.run([sys.executable, "-c", "import pipeline; print(pipeline.SOURCE_ROOT)"], env=env, cwd=tmp,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(site), f"not the installed package: {where}"
    setup = subprocess.run([sys.executable, "-m", "pipeline", "setup-emulator"], env=env, cwd=tmp, capture_output=True,
                           text=True, timeout=600)
    assert setup.returncode == 0, setup.stderr[-2000:]
    return env


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    require_emulated_pico()
    INSTALLED.update(install_wheel(tmp_path_factory.mktemp("installed")))
    dst = tmp_path_factory.mktemp("user") / "pico-model-ci"
    shutil.copytree(EXAMPLE, dst, ignore=shutil.ignore_patterns("runs", "results", "__pycache__", ".pytest_cache"))
    return dst


def junit_cases(path: Path) -> list[ET.Element]:
    return ET.parse(path).getroot().findall(".//testcase")


def check_results(project: Path, boards: int) -> dict:
    import hashlib

    cases = junit_cases(project / "results" / "junit.xml")
    assert len(cases) == TESTS_IN_EXAMPLE
    assert not [c for c in cases if c.find("failure") is not None or c.find("error") is not None]
    names = {p.get("name") for c in cases for p in c.findall(".//property")}
    assert "picotflm.bench_median[microseconds]" in names and "picotflm.ram_total[bytes]" in names
    doc = json.loads((project / "results" / "metrics.json").read_text())
    model_hash = hashlib.sha256((project / "model.tflite").read_bytes()).hexdigest()[:16]
    ms = doc["metrics"]
    assert ms and all(m["model_hash"] == model_hash and m["where"] == "emulated" and m["unit"] for m in ms)
    by = {(m["metric"], m["unit"]): m["value"] for m in ms}
    assert by[("bench_median", "microseconds")] > 0 and by[("bench_median", "cycles")] > 0
    assert by[("golden_exact", "ratio")] == 1.0 and 0 < by[("ram_total", "bytes")] < 264 * 1024
    assert len({m["board"] for m in ms}) == boards, {m["board"] for m in ms}
    om = (project / "results" / "metrics.openmetrics.txt").read_text()
    assert om.endswith("# EOF\n") and "# UNIT picotflm_bench_median_microseconds microseconds" in om
    assert f'model_hash="{model_hash}",where="emulated"' in om
    return doc


def test_one_emulated_board(project):
    r = run_pytest(project, "--emulator")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"{TESTS_IN_EXAMPLE} passed" in r.stdout
    check_results(project, boards=1)


def test_two_emulated_boards_share_one_build(project):
    r = run_pytest(project, "--emulator", "-n", "2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "0 ran, 4 up to date" in r.stdout  # the firmware of the first session, not built again
    doc = check_results(project, boards=2)
    assert doc["session"]["boards"] == "emulated (2)"


LOST = '''
import os, signal
import pytest

pytestmark = pytest.mark.hardware


def test_a_board_lost_mid_test(pico):
    os.kill(pico.pid, signal.SIGKILL)
    pico.info()


@pytest.mark.parametrize("i", range(8))
def test_info(pico, i):
    assert pico.info().status == "ready"
'''


def test_a_board_lost_mid_session_fails_its_own_tests(project):
    lost = project / "lost"
    (lost / "tests").mkdir(parents=True)
    (lost / "tests" / "test_lost.py").write_text(LOST)
    run = project / "runs" / "model"
    (lost / "pytest.ini").write_text(f"[pytest]\npicotflm_run = {run}\naddopts = --junitxml=junit.xml\n")
    r = run_pytest(lost, "--emulator", "-n", "2")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]  # tests failed; the session did not
    assert "INTERNALERROR" not in r.stdout + r.stderr
    cases = junit_cases(lost / "junit.xml")
    bad = {c.get("name"): (c.find("failure") if c.find("failure") is not None else c.find("error")) for c in cases}
    bad = {k: v.get("message", "") + (v.text or "") for k, v in bad.items() if v is not None}
    good = [c.get("name") for c in cases if c.get("name") not in bad and c.find("skipped") is None]
    assert "stopped answering" in bad.pop("test_a_board_lost_mid_test")
    boards = set()
    for name, text in bad.items():  # any other failure is a test the lost board was given, with the reason
        assert "was lost earlier in this session" in text, (name, text)
        boards.add(text.split("board ", 1)[1].split(" was lost")[0])
    assert len(boards) <= 1, boards
    assert good, "the other board's tests ran and passed"
