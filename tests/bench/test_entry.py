"""The one benchmark entry point: the README's results block rewritten from measured rows, bad parts refused."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.bench.__main__ import BEGIN, END, TITLES, main, parse_sections, readme_table, replace_block, section, write_results
from pipeline.errors import PipelineError

ROWS = [{"recipe": "int8", "tflite_bytes": 4256, "device_model_bytes": 7680, "device_weight_bytes": 1264, "weights": "INT8", "tflm_test_accuracy": 0.9222, "board_median_us": 6619,
         "one_core_us": 12242, "cycles_per_mac": 4.67, "board_arena_used": 8308, "board_ram_total": 31224,
         "golden_exact": "8/8"},
        {"recipe": "int4", "tflite_bytes": 3680, "device_model_bytes": None, "device_weight_bytes": None, "weights": "INT4", "tflm_test_accuracy": None, "board_median_us": None,
         "one_core_us": None, "cycles_per_mac": None, "board_arena_used": None, "board_ram_total": None,
         "golden_exact": None}]


def test_readme_block_is_replaced_and_the_rest_kept():
    text = f"# Guide\n\nbefore\n{BEGIN}\nold table\n| a |\n{END}\nafter\n"
    out = replace_block(text, readme_table(ROWS, "Measured at commit `abc1234` by `make bench`."))
    assert out.startswith("# Guide\n\nbefore\n" + BEGIN + "\nMeasured at commit `abc1234`")
    assert out.endswith(END + "\nafter\n") and "old table" not in out
    assert "| int8 | 4,256 | 7,680 | 1,264 | INT8 | 0.9222 | 6,619 | 12,242 | 4.67 | 8,308 | 31,224 | 8/8 |" in out
    assert "| int4 | 3,680 |  |  | INT4 |  |  |  |  |  |  |  |" in out  # not measured: empty, never invented


@pytest.mark.parametrize("text", ["no markers here\n", f"{END}\n{BEGIN}\n"])
def test_readme_without_a_results_block_is_refused(text):
    with pytest.raises(PipelineError, match="no results block"):
        replace_block(text, ["x"])


def test_unknown_part_is_one_line_and_exit_2(capsys):
    assert main(["--only", "recipes,speed"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown bench part(s) speed" in err[0] and "recipes, switching, seeds" in err[0]


def test_entry_point_runs_as_a_module():
    r = subprocess.run([sys.executable, "-m", "pipeline.bench", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--only" in r.stdout and "docs/results.md" in r.stdout


def test_results_from_an_earlier_benchs_runs(tmp_path):
    import json

    run = tmp_path / "runs" / "int8"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"stages": {
        "convert": {"status": "done", "metrics": {"tflite_bytes": 4256, "weight_dtypes": ["INT8"]}},
        "verify": {"status": "done", "metrics": {"tflm_test_accuracy": 0.92222}},
        "measure": {"status": "done", "metrics": {"bench": {"median_us": 6619}, "bench_one_core": {"median_us": 12242},
                                                  "two_core_speedup": 1.85, "where": "emulated Pico"}}}}))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{BEGIN}\nold\n{END}\n")
    results = tmp_path / "results.md"
    assert main(["--from-runs", str(tmp_path / "runs"), "--commit", "abc1234", "--results", str(results),
                 "--readme", str(readme)]) == 0
    assert "| int8 | 4,256 |  |  | INT8 | 0.9222 | 6,619 | 12,242 |" in readme.read_text()
    assert "at commit `abc1234`" in results.read_text() and "| int8 |" in results.read_text()
    assert main(["--from-runs", str(tmp_path / "nothing")]) == 2


def test_a_part_measured_again_replaces_its_section_only(tmp_path):
    results = tmp_path / "results.md"
    results.write_text("# Results\n\nWritten by make bench. Measured at commit `old1234` by `make bench` on 2026-01-01.\n\n"
                       f"{TITLES['recipes']}\n\n| int8 | 6,619 |\n\n## Kernels per op\n\n| CONV_2D | 5.7 |\n\n{TITLES['switching']}\n\nold switching table\n\n"
                       f"{TITLES['seeds']}\n\nseeds table\n")
    write_results(results, {"switching": section("switching", "Measured at commit `new5678`.", "new switching table\n")})
    text = results.read_text()
    got = parse_sections(text)
    assert list(got) == ["recipes", "switching", "seeds"]  # the parts' order, nothing lost
    assert "new switching table" in got["switching"] and "old switching table" not in text
    assert "Measured at commit `new5678`." in got["switching"]
    assert "| int8 | 6,619 |" in got["recipes"] and "seeds table" in got["seeds"]
    assert "## Kernels per op" in got["recipes"] and "| CONV_2D | 5.7 |" in got["recipes"]  # a section's own heading
    # each kept section says where its figures come from: the old file's one line, now in each of them
    assert all("Measured at commit `old1234` by `make bench` on 2026-01-01." in got[p] for p in ("recipes", "seeds"))
    write_results(results, {})
    assert parse_sections(results.read_text()) == got  # written again unchanged: stable


def test_results_from_runs_take_the_recipe_parts_own_text_when_it_finished(tmp_path):
    runs = tmp_path / "bench" / "runs-1"
    (runs / "int8").mkdir(parents=True)
    (runs / "int8" / "manifest.json").write_text('{"stages": {}}')
    (tmp_path / "bench" / "bench.md").write_text("# Bench\n\n| op | stock | picotflm |\n|---|---|---|\n| CONV_2D | 17 | 5.7 |\n")
    results = tmp_path / "results.md"
    assert main(["--from-runs", str(runs), "--commit", "abc1234", "--results", str(results), "--readme", "none"]) == 0
    got = parse_sections(results.read_text())["recipes"]
    assert "| CONV_2D | 17 | 5.7 |" in got and "# Bench" not in got
    assert any("abc1234" in line and "recipe part" in line for line in got)
