"""picotflm's pytest plugin: hardware-in-the-loop tests of a model on a Pico, real or emulated.

Registered as the ``pytest11`` entry point ``picotflm``; ``-p pipeline.hil.plugin`` loads it by hand.

Options: ``--port PORT`` (repeatable; ``auto``: every Pico on USB), ``--emulator``, ``--run RUN`` (the
run directory whose firmware the board runs), ``--no-flash``, ``--metrics-file PATH``. Settings
(pytest.ini / pyproject): ``picotflm_model`` (a ``.tflite`` or recipe, brought up to a built firmware
before the session), ``picotflm_run``, ``picotflm_metrics``.

Fixtures: ``pico`` (a connected board, its model hash checked: ``info``, ``mem``, ``bench``,
``profile``, ``golden``, ``infer``), ``pico_run`` (the run's artifacts), ``pico_board`` (where the
board is), ``picotflm_run_dir`` (override it in a conftest to choose the run another way).
Marker: ``hardware`` (skipped without ``--port`` or ``--emulator``).

Several boards: one pytest-xdist worker per board (``--port`` twice, ``--port auto``, or
``--emulator -n N``). The session's controller builds and flashes once, then hands each worker its
port; each figure measured travels back with its test's report into the metrics file.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipeline.errors import PipelineError

STATE = pytest.StashKey["HilState"]()
RECORDER = pytest.StashKey["object"]()
AUTO = "auto"


@dataclass
class HilState:
    """The session's boards and run, as the controller settled them (a worker gets them from it)."""

    ports: list[str] = field(default_factory=list)
    emulator: bool = False
    run: str | None = None
    metrics: list = field(default_factory=list)
    build_line: str | None = None
    worker: int | None = None  # this xdist worker's index
    written: str | None = None  # the line saying where the metrics went
    port_given: bool = False  # --port was given (`auto` may have found no board yet: flashing finds it)

_SESSION_STATE: HilState | None = None  # this process's session (pytest_runtest_logreport has no config)


# ------------------------------------------------------------------------------ options
def pytest_addoption(parser):
    g = parser.getgroup("picotflm", "picotflm hardware-in-the-loop")
    g.addoption("--port", action="append", default=[], metavar="PORT",
                help="serial port of a Pico (repeatable: one pytest-xdist worker per board; 'auto': every Pico "
                     "found on USB)")
    g.addoption("--emulator", action="store_true", default=False,
                help="run hardware tests on the emulated Pico (rp2040js); with -n N, N emulated boards")
    g.addoption("--run", default=None, metavar="RUN",
                help="the run directory whose firmware the board runs (model.tflite, firmware.uf2)")
    g.addoption("--no-flash", action="store_true", default=False,
                help="the boards already run the run's firmware: do not flash them first")
    g.addoption("--metrics-file", default=None, metavar="PATH",
                help="write every figure measured (JSON, and OpenMetrics text beside it)")
    parser.addini("picotflm_model", "a .tflite, TFLM C array or recipe .toml: built into the run before the session")
    parser.addini("picotflm_run", "the run directory (default: runs/<picotflm_model's name>)")
    parser.addini("picotflm_metrics", "where the metrics file goes (default: none; --metrics-file)")


def session_run(config) -> Path | None:
    """The run the session settled on (--run, picotflm_run or picotflm_model's run), None without one."""
    state = config.stash.get(STATE, None)
    return Path(state.run) if state is not None and state.run else None


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


def _usage(message: str, hint: str | None = None) -> pytest.UsageError:
    return pytest.UsageError(f"picotflm: {message}" + (f" (hint: {hint})" if hint else ""))


def _ini_path(config, name: str) -> Path | None:
    value = config.getini(name)
    if not value:
        return None
    p = Path(str(value)).expanduser()
    base = Path(config.inipath).parent if config.inipath else Path(config.rootpath)
    return p if p.is_absolute() else base / p


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config):
    """Before pytest-xdist reads ``-n``: several ports mean one worker per board."""
    if not _is_worker(config):
        ports = list(config.option.port or [])
        if ports and config.option.emulator:
            raise _usage("--port and --emulator exclude each other", "a session runs on real boards or emulated ones")
        if AUTO in ports:
            from pipeline.board.connect import find_picos

            found = find_picos()
            if not found and config.option.no_flash:
                raise _usage("--port auto found no Pico on USB",
                             "plug the board in (picotflm firmware, USB serial); list ports with "
                             "`python -m serial.tools.list_ports`")
            ports = [p for p in ports if p != AUTO] + [p for p in found if p not in ports]
        if len(set(ports)) != len(ports):
            raise _usage(f"a port is given twice: {' '.join(ports)}", "give each board's port once")
        n = getattr(config.option, "numprocesses", None)
        if ports and n and n != len(ports):
            raise _usage(f"-n {n} with {len(ports)} board(s)", "omit -n with --port: one worker per board")
        if len(ports) > 1:
            if not config.pluginmanager.hasplugin("xdist"):
                raise _usage(f"{len(ports)} boards need pytest-xdist (one worker per board)",
                             "pip install pytest-xdist, or give one --port")
            config.option.numprocesses = len(ports)
        config.stash[STATE] = HilState(ports=ports, emulator=bool(config.option.emulator),
                                       port_given=bool(config.option.port))
    return (yield)


def pytest_configure(config):
    config.addinivalue_line("markers", "hardware: needs a board or the emulated Pico (--port or --emulator)")
    if _is_worker(config):
        given = config.workerinput.get("picotflm") or {}
        index = int(str(config.workerinput.get("workerid", "gw0")).removeprefix("gw") or 0)
        state = HilState(ports=list(given.get("ports") or []), emulator=bool(given.get("emulator")),
                         run=given.get("run"), worker=index)
        config.stash[STATE] = state
    state = config.stash.get(STATE, None) or HilState(emulator=bool(config.option.emulator))
    config.stash[STATE] = state
    global _SESSION_STATE
    _SESSION_STATE = state
    # `--port` as one process sees it: its own board's port (tests ask `getoption("--port")`).
    if state.ports:
        config.option.port = state.ports[state.worker or 0] if (state.worker or 0) < len(state.ports) else None
    else:
        config.option.port = None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    """The controller (or the only process): build the run, flash the board, check every port,
    before pytest-xdist starts its workers."""
    config = session.config
    if _is_worker(config):
        return
    state: HilState = config.stash[STATE]
    say = _say(config)
    model = _ini_path(config, "picotflm_model")
    run = Path(config.option.run) if config.option.run else _ini_path(config, "picotflm_run")
    if run is None and model is not None:
        run = Path(config.rootpath) / "runs" / _run_name(model)
    if model is not None and (state.ports or state.emulator):
        from pipeline.hil.artifacts import bring_up_to_date

        say(f"picotflm: bringing {model.name} up to a built firmware in {run}")
        t0 = time.monotonic()
        try:
            state.build_line = bring_up_to_date(model, run, lambda m: say("  " + m))
        except PipelineError as e:
            raise _usage(e.message, e.hint) from None
        say(f"picotflm: {state.build_line} ({time.monotonic() - t0:.0f} s)")
    state.run = str(run.resolve()) if run is not None else None
    if state.ports or state.port_given:
        _flash_and_check(config, state, say)


def _run_name(model: Path) -> str:
    import re

    stem = re.sub(r"[^A-Za-z0-9._-]", "-", model.stem).strip(".-_")[:64] or "model"
    return stem if stem[0].isalnum() else f"m{stem}"


def _flash_and_check(config, state: HilState, say) -> None:
    from pipeline.board.connect import BoardUnavailable, check_board, flashed_board

    expect = None
    if state.run is not None:
        from pipeline.hil.artifacts import RunArtifacts

        try:
            expect = RunArtifacts.of(state.run).model_hash
        except PipelineError as e:
            raise _usage(e.message, e.hint) from None
    if not config.option.no_flash:
        if state.run is None:
            raise _usage("nothing to flash: no run", "give --run RUN (or picotflm_model), or --no-flash")
        uf2 = Path(state.run) / "firmware.uf2"
        if not uf2.is_file():
            raise _usage(f"the run {state.run} has no firmware.uf2",
                         "build it (the Pico SDK is needed), or pass --no-flash for boards already flashed")
        if len(state.ports) > 1:
            raise _usage(f"flashing {len(state.ports)} boards in one session is not supported",
                         "flash each board (`picotflm flash RUN`), then pass --no-flash")
        say(f"picotflm: flashing {uf2}")
        try:
            with flashed_board(uf2, log=lambda m: say("  " + m)) as (port, _where):
                state.ports = [port]
        except PipelineError as e:
            raise _usage(e.message, e.hint) from None
        config.option.port = state.ports[0]
    if not state.ports:
        raise _usage("--port auto found no Pico on USB", "plug the board in; `python -m serial.tools.list_ports`")
    for port in state.ports:
        try:
            info = check_board(port, expect)
        except BoardUnavailable as e:
            raise _usage(e.message, e.hint) from None
        say(f"picotflm: {port}: {info.get('model')} ({info.get('hash')}), {info.get('image')} image, "
            f"firmware {info.get('fw')}")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """pytest-xdist: what the controller settled goes to each worker."""
    state: HilState = node.config.stash[STATE]
    node.workerinput["picotflm"] = {"ports": state.ports, "emulator": state.emulator, "run": state.run}


def pytest_report_header(config):
    state: HilState | None = config.stash.get(STATE, None)
    if state is None or not (state.ports or state.emulator):
        return None
    boards = ", ".join(state.ports) if state.ports else "the emulated Pico (one per worker)"
    return f"picotflm: boards {boards}; run {state.run or '(set by the tests)'}"


def pytest_collection_modifyitems(config, items):
    state: HilState = config.stash[STATE]
    if state.ports or state.emulator:
        return
    skip = pytest.mark.skip(reason="needs a board: pass --port PORT or --emulator")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


def _say(config):
    tr = config.pluginmanager.get_plugin("terminalreporter")

    def say(msg: str) -> None:
        if tr is not None:
            tr.write_line(msg)
        else:
            print(msg, file=sys.stderr)

    return say


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def picotflm_run_dir(pytestconfig) -> Path:
    """The run whose firmware the boards run: --run, picotflm_run or picotflm_model's run.
    A conftest may override this fixture to make its own run."""
    state: HilState = pytestconfig.stash[STATE]
    if state.run is None:
        pytest.fail("no run for the board: pass --run RUN, or set picotflm_model (or picotflm_run) in pytest.ini",
                    pytrace=False)
    return Path(state.run)


@pytest.fixture(scope="session")
def pico_run(picotflm_run_dir):
    """The run's artifacts: ``model``, ``model_hash``, ``frames``, ``host_outputs(frames)``, ``elf``, ``uf2``."""
    from pipeline.hil.artifacts import RunArtifacts

    try:
        return RunArtifacts.of(picotflm_run_dir)
    except PipelineError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def pico_board(pytestconfig, pico_run):
    """Where this process's board is (:class:`~pipeline.hil.dut.BoardSite`): the port of its worker,
    or an emulated Pico of its own running the run's firmware."""
    from pipeline.board.connect import EMULATED_LABELS, BoardUnavailable, emulated_board
    from pipeline.hil.dut import BoardSite

    state: HilState = pytestconfig.stash[STATE]
    if pytestconfig.option.port:
        port = pytestconfig.option.port
        yield BoardSite(port, "board", port, "real board on " + port)
        return
    if not state.emulator:
        pytest.skip("needs a board: pass --port PORT or --emulator")
    if not pico_run.elf.is_file():
        pytest.fail(f"the run {pico_run.path} has no firmware.elf (was it built? the Pico SDK is needed)",
                    pytrace=False)
    try:
        with emulated_board(pico_run.elf) as emu:
            name = f"emulated Pico {state.worker or 0}"
            yield BoardSite(emu.port, "emulated", name, EMULATED_LABELS["board"], process=emu)
    except BoardUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture
def pico(request, pico_board, pico_run):
    """A connected board whose model is the run's (checked by hash); figures it measures are recorded."""
    from pipeline.board.client import BoardClient
    from pipeline.errors import SerialLinkError
    from pipeline.hil.dut import Pico, Recorder

    try:
        pico_board.alive_check()
    except PipelineError as e:
        pytest.fail(str(e), pytrace=False)
    rec = request.node.stash.setdefault(RECORDER, Recorder())
    client = BoardClient(pico_board.port, timeout=10.0)
    try:
        client.open()
        client.handshake(pico_run.model_hash)
    except PipelineError as e:
        client.close()
        if isinstance(e, SerialLinkError) or (pico_board.process is not None and pico_board.process.poll() is not None):
            pytest.fail(str(pico_board.lose(e.message)), pytrace=False)
        pytest.fail(str(e), pytrace=False)
    try:
        yield Pico(client, pico_board, pico_run, rec, test=request.node.nodeid)
    finally:
        client.close()


# ------------------------------------------------------------------------------ results
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        rec = item.stash.get(RECORDER, None)
        if rec is not None:
            report.picotflm_metrics = [m.as_dict() for m in rec.metrics]
            for m in rec.metrics:  # JUnit XML: one property per figure (written from the teardown report)
                item.user_properties.append((f"picotflm.{m.metric}[{m.unit}]", f"{m.value:.12g}"))
    return report


def pytest_runtest_logreport(report):
    got = getattr(report, "picotflm_metrics", None)
    if got and _SESSION_STATE is not None:
        _SESSION_STATE.metrics.extend(got)


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if _is_worker(config):
        return
    state: HilState = config.stash[STATE]
    target = config.option.metrics_file or (str(_ini_path(config, "picotflm_metrics") or "") or None)
    if not target or not (state.ports or state.emulator):
        return
    from pipeline.hil.results import Metric, write_metrics

    metrics = [Metric(**m) for m in state.metrics]
    where = sorted({m.where for m in metrics}) or (["emulated"] if state.emulator else ["board"])
    session_doc = {"run": state.run, "boards": state.ports or f"emulated ({max(1, _workers(config))})",
                   "where": where, "exit_status": int(exitstatus), "build": state.build_line,
                   "python": sys.version.split()[0], "pid": os.getpid()}
    path, om = write_metrics(Path(target), metrics, session_doc)
    state.written = f"picotflm: {len(metrics)} figures written to {path} and {om}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    state: HilState | None = config.stash.get(STATE, None)
    if state is not None and state.written:
        terminalreporter.write_line(state.written)


def _workers(config) -> int:
    n = getattr(config.option, "numprocesses", None)
    return n if isinstance(n, int) else 1
