"""Bad input to the firmware commands: one line, exit code 2, no traceback, nothing written."""
import json

from tests.conftest import assert_cli_error, cli


def test_measure_of_an_unknown_recipe_or_run(tmp_path):
    assert_cli_error(cli("measure", "ghost", "--runs-dir", str(tmp_path)), "unknown recipe 'ghost'")


def test_emulate_a_missing_image(tmp_path):
    assert_cli_error(cli("emulate", str(tmp_path / "nothing.elf")), "firmware image not found")


def test_flash_refuses_an_emulator_image(tmp_path):
    run = tmp_path / "r1"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({
        "manifest_version": 1, "run": "r1", "stages": {"build": {"status": "done", "metrics": {"image": "emulator"}}}}))
    assert_cli_error(cli("flash", "r1", "--runs-dir", str(tmp_path)), "holds the emulator image, not the board image")


def test_arena_margin_is_checked_before_any_work(tmp_path):
    assert_cli_error(cli("arena", "int8", "--runs-dir", str(tmp_path), "--margin-percent", "-5"), "arena margin -5.0 %")
    assert not (tmp_path / "int8").exists()


def test_compare_of_a_missing_run(tmp_path):
    assert_cli_error(cli("compare", "ghost", "--runs-dir", str(tmp_path), "--out", str(tmp_path / "c")), "no run 'ghost'")
    assert not (tmp_path / "c").exists()
