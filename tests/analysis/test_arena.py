import pytest

from pipeline.analysis.arena import recommend
from pipeline.errors import PipelineError
from tests.conftest import assert_cli_error


def test_recommendation_adds_the_margin_and_aligns():
    assert recommend(13_792, 10, 256) == 15_440  # 13,792 * 1.1 + 256 = 15,427.2 -> next multiple of 16
    assert recommend(13_792, 0, 0) == 13_792
    assert recommend(13_793, 0, 0) % 16 == 0


@pytest.mark.parametrize("pct,extra", [(-1, 0), (500, 0), (10, -5), (10, 1 << 20)])
def test_absurd_margins_areassert_cli_error(pct, extra):
    with pytest.raises(PipelineError, match="margin"):
        recommend(10_000, pct, extra)


# ------------------------------------------------------------------ bad input on the command line
@pytest.mark.parametrize("args,needle", [
    (["--margin-percent", "-5"], "arena margin -5.0 %"),
    (["--margin-percent", "1e9"], "arena margin 1000000000.0 %"),
    (["--margin-bytes", "-1"], "+ -1 B is not allowed"),
    (["--margin-bytes", "99999999"], "+ 99999999 B is not allowed"),
    (["--max-bytes", "1000"], "--max-bytes 1000 is not allowed"),  # not a multiple of 16
    (["--max-bytes", "0"], "--max-bytes 0 is not allowed"),
    (["--max-bytes", str(1 << 20)], f"--max-bytes {1 << 20} is not allowed"),  # more than the RP2040 has
    (["--apply", "--arena-bytes", "-16"], "--arena-bytes -16 is not allowed"),
    (["--arena-bytes", "16000"], "--arena-bytes is the size --apply builds with"),
])
def test_bad_arena_arguments_are_refused_before_any_work(tmp_path, args, needle):
    from tests.conftest import cli

    assert_cli_error(cli("arena", "int8", "--runs-dir", str(tmp_path), *args), needle)
    assert not (tmp_path / "int8").exists()


def test_apply_refuses_a_pico_on_a_port(tmp_path):
    """--apply confirms on the emulated Pico, which runs the rebuilt image; a Pico on a port still runs
    the old one: refused, nothing built."""
    import json

    from pipeline.analysis.arena import apply_arena
    from pipeline.flow.rundir import RunDir
    from pipeline.flow.runner import RunOptions

    run = tmp_path / "r1"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"run": "r1", "recipe": {"name": "int8", "stages": []}, "stages": {
        "build": {"status": "done", "metrics": {"image": "board", "static_ram_bytes": 34_860}}}}))
    with pytest.raises(PipelineError, match="a Pico on a port still runs the old one"):
        apply_arena(RunDir(root=run, name="r1"), 15_440, options=RunOptions(port="/dev/ttyACM0"))
    assert not (tmp_path / ".arena-trial").exists()


def test_apply_needs_a_built_run(tmp_path):
    import json

    from pipeline.analysis.arena import apply_arena
    from pipeline.flow.rundir import RunDir

    run = tmp_path / "r1"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"run": "r1", "stages": {"build": {"status": "skipped"}}}))
    with pytest.raises(PipelineError, match="no firmware image"):
        apply_arena(RunDir(root=run, name="r1"), 15_440)


def test_applied_arena_for_the_board_image(tmp_path, capsys):
    """make firmware / make flash read the size `arena --apply` confirmed; anything else keeps the
    rendered arena (a broken file says so in one line)."""
    import json

    from pipeline.analysis.arena import applied_arena_bytes

    f = tmp_path / "arena.json"
    assert applied_arena_bytes(f) is None  # no file
    f.write_text(json.dumps({"applied": {"confirmed": True, "arena_bytes": 9728}}))
    assert applied_arena_bytes(f) == 9728
    f.write_text(json.dumps({"applied": {"confirmed": False, "arena_bytes": 9000}}))
    assert applied_arena_bytes(f) is None
    f.write_text(json.dumps({"device_min_bytes": 8608}))  # swept, never applied
    assert applied_arena_bytes(f) is None
    capsys.readouterr()
    f.write_text("{broken")
    assert applied_arena_bytes(f) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unreadable" in err and "make arena" in err
