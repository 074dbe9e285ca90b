"""The client over a hostile link: the fault-injecting proxy in front of a fake board (fast), then the
quick form of the fault soak in front of the emulated Pico (needs the Pico SDK, pico-tflmicro, the
arm toolchain and rp2040js; skipped with the reason when absent, PICOTFLM_REQUIRE_FIRMWARE=1 fails
instead). ``make faultsoak`` is the long form."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.board.client import BoardClient, BoardError
from pipeline.board.faultlink import KINDS, FaultLink, FaultPlan, SoakConfig, format_table, soak
from tests.conftest import require_emulated_pico, run_small_recipe, small_recipe
from tests.board.fakeboard import FakeBoard

FAST = dict(attempts=5, interval=0.2)


class _GarbledOnce(FakeBoard):
    """Answers the first request of each command in ``garble`` with the error a request corrupted on
    the way gets (the firmware could not parse it), and stays silent on the first ``infer``."""

    def __init__(self, garble: dict[str, str], lose_first_infer: bool = False, **kw):
        super().__init__(**kw)
        self.garble = dict(garble)
        self.lose_first_infer = lose_first_infer

    def _line(self, raw: bytes) -> None:
        text = raw.decode("ascii", "replace")
        if text.startswith("infer") and self.lose_first_infer:
            self.lose_first_infer = False
            self.requests.append(text)
            return
        super()._line(raw)

    def _answer(self, cmd, args):
        err = self.garble.pop(cmd, None)
        if err:
            return self._err(err, "request garbled", "?")
        return super()._answer(cmd, args)


def test_a_request_the_board_could_not_parse_is_sent_again():
    # Regression: a request corrupted on the way (bad_arg from the board) used to end the exchange
    # with "host and firmware disagree on the protocol".
    with _GarbledOnce({"mem": "bad_arg", "info": "unknown_cmd"}) as b, BoardClient(b.port, timeout=1) as c:
        assert c.request("info")["proto"] == 1
        assert c.request("mem")["arena_used"] > 0
        assert c.stats.retries == 2
    with _GarbledOnce({}) as b, BoardClient(b.port, timeout=1, retries=1) as c:
        with pytest.raises(BoardError, match="unknown_cmd"):  # a command the board never knew: still its error
            c.request("frobnicate")
        assert sum(r.startswith("frobnicate") for r in b.requests) == 2


def test_a_frame_whose_load_or_infer_went_wrong_is_loaded_again():
    # Regression: a garbled load (bad_arg) or an infer whose reply was lost (timeout) used to fail the
    # frame; the board checks the frame's CRC-32 before inferring, so loading it again is safe.
    frame = bytes(range(256)) + bytes(44)
    for kw in ({"garble": {"load": "bad_arg"}}, {"garble": {}, "lose_first_infer": True}):
        with _GarbledOnce(**kw) as b, BoardClient(b.port, timeout=0.5) as c:
            c.handshake(**FAST)
            got = c.send_frame(frame)
            assert got["output"] == b.infer_bytes(frame)
            assert c.stats.retries >= 1


def test_fault_plan_is_validated():
    with pytest.raises(ValueError, match="up_every"):
        FaultPlan(up_every=-1)
    with pytest.raises(ValueError, match="weights"):
        FaultPlan(weights=(0, 0, 0, 0))
    with pytest.raises(ValueError, match="delay_s"):
        FaultPlan(delay_s=(0.5, 0.1))
    with pytest.raises(ValueError, match="exchanges"):
        SoakConfig(exchanges=0)


def test_no_wrong_figure_through_a_noisy_link_to_a_fake_board():
    frames = [bytes((i * 31 + j) % 256 for j in range(300)) for i in range(4)]
    plan = FaultPlan(seed=3, up_every=400, down_every=300, delay_s=(0.01, 0.3))
    with FakeBoard() as b, FaultLink(b.port, plan) as link, BoardClient(link.port, timeout=0.4, retries=3) as c:
        link.paused = True
        info = c.handshake(**FAST).figures()
        link.paused = False
        ok = reported = 0
        for i in range(120):
            try:
                if i % 10 == 9:
                    f = frames[i % 4]
                    assert c.send_frame(f)["output"] == b.infer_bytes(f)
                else:
                    assert c.request("info").figures() == info
                ok += 1
            except BoardError as e:  # a PipelineError with the board's reason: reported, not wrong
                reported += 1
                assert e.reply is not None
            except Exception as e:  # noqa: BLE001 - link errors are reported too; anything else fails
                from pipeline.errors import SerialLinkError

                assert isinstance(e, SerialLinkError), repr(e)
                reported += 1
        injected = link.counts()
    assert sum(injected.values()) >= 20 and injected["reset"] == 0  # no reset function: no resets
    assert ok >= 100, (ok, reported, injected, c.stats)


# ---------------------------------------------------------------------------- the emulated Pico
RECIPE = small_recipe("fault soak")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    require_emulated_pico()
    run = run_small_recipe(tmp_path_factory.mktemp("faultsoak"), RECIPE)
    if not (run / "firmware.elf").is_file():
        pytest.skip("the build stage made no firmware here")
    return run


@pytest.mark.firmware
@pytest.mark.slow
def test_quick_fault_soak_on_the_emulated_pico(small_run, capsys):
    cfg = SoakConfig(exchanges=200, frames=4,
                     plan=FaultPlan(seed=1, up_every=20_000, down_every=2_000, reset_every=100_000))
    r = soak(small_run, cfg)
    with capsys.disabled():
        print("\n" + format_table(r))
    assert r["wrong_accepted"] == 0, r["wrong"]
    assert r["hangs"] == 0 and r["final_golden_ok"]
    assert sum(r["ops"].values()) == 200 and r["ops"].get("frame", 0) >= 3
    assert sum(r["injected"].values()) >= 20 and r["injected"]["reset"] >= 1 and r["resets_done"] >= 1
    for k in KINDS:  # every fault was either recovered or reported
        assert r["injected"][k] == r["recovered"][k] + r["reported"][k], k
    assert sum(r["ops_reported"].values()) <= 10  # most faults are recovered, not only reported
