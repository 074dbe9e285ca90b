"""``make bench``: every benchmark from one entry point, and the results file the docs link.

    python -m pipeline.bench [--runs-dir runs] [--only recipes,switching,seeds,arena] [--results docs/results.md]

1. recipes (:mod:`pipeline.bench.recipes`): every shipped recipe end to end in a fresh runs directory,
   host TFLM accuracy, board figures, stock vs picotflm kernels, a serial soak;
2. switching (:mod:`pipeline.bench.switching`): variants in one firmware, measured switching;
3. seeds (:mod:`pipeline.bench.seeds`): boundary pruning's tau swept over seeds;
4. arena (:mod:`pipeline.bench.arena`): the device's smallest arena against the live activations, for
   MicroPizzaNet and for pico-tflmicro's person detection with picotflm's kernels and with stock ones.

Each prints its figures. Then ``docs/results.md`` is written from what they measured, one section per
part, each with the commit and date it was measured at (``--only PART`` measures that part again and
keeps the file's other sections), and the results table of ``README.md`` (between
``<!-- results:begin -->`` and ``<!-- results:end -->``) is rewritten from the recipe rows, so no figure
in the docs is typed by hand.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from pipeline import REPO_ROOT
from pipeline.errors import PipelineError
from pipeline.flow.rundir import atomic_write_text

PARTS = ("recipes", "switching", "seeds", "arena")
TITLES = {"recipes": "## Recipes, kernels and the serial link", "switching": "## Switching",
          "seeds": "## Boundary pruning: tau over seeds", "arena": "## Arena against the live activations"}
HEADER = ("Written by `make bench` (`python -m pipeline.bench`); do not edit. Each section says the commit it was "
          "measured at; `--only PART` measures that part again and keeps the others.")
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
README_COLUMNS = (("recipe", "recipe"), ("tflite_bytes", ".tflite B"), ("device_model_bytes", "model B on the Pico"),
                  ("device_weight_bytes", "weights B on the Pico"), ("weights", "weights"),
                  ("tflm_test_accuracy", "host TFLM accuracy"), ("board_median_us", "invoke us, 2 cores"),
                  ("one_core_us", "invoke us, 1 core"), ("cycles_per_mac", "cycles/MAC, 2 cores"),
                  ("board_arena_used", "arena used B"), ("board_ram_total", "RAM total B"),
                  ("golden_exact", "golden exact"))


def commit() -> str:
    """The commit the figures come from (``-dirty`` when the work tree has changes)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + ("-dirty" if dirty else "")


def readme_table(rows: list[dict], source: str) -> list[str]:
    """The README's results table: one row per recipe."""
    out = [source, "", "| " + " | ".join(h for _, h in README_COLUMNS) + " |",
           "|" + "---|" * len(README_COLUMNS)]
    for r in rows:
        out.append("| " + " | ".join("" if r.get(k) is None else (f"{r[k]:,}" if isinstance(r[k], int) else str(r[k]))
                                     for k, _ in README_COLUMNS) + " |")
    return out


def replace_block(text: str, block: list[str]) -> str:
    """``text`` with the lines between the results markers replaced by ``block``."""
    if BEGIN not in text or END not in text or text.index(BEGIN) > text.index(END):
        raise PipelineError(f"the README has no results block ({BEGIN} ... {END})",
                            hint="put the two markers where the results table belongs")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + BEGIN + "\n" + "\n".join(block) + "\n" + END + tail


def rows_markdown(rows: list[dict]) -> list[str]:
    """Every column of the recipe rows as one Markdown table."""
    cols = list(rows[0]) if rows else []
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] + [
        "| " + " | ".join("" if v is None else str(v) for v in r.values()) + " |" for r in rows]


def parse_sections(text: str) -> dict[str, list[str]]:
    """The parts' sections of a results file (heading first), each with its "Measured at" line: a file
    written with one line for all (the header's) gets it in each section."""
    lines = text.splitlines()
    head = lines[:next((i for i, l in enumerate(lines) if l.startswith("## ")), len(lines))]
    shared = next((l[l.index("Measured at commit"):] for l in head if "Measured at commit" in l), None)
    by_title = {v: k for k, v in TITLES.items()}
    sections: dict[str, list[str]] = {}
    part = None
    for line in lines:
        if line.strip() in by_title:  # a part's heading; any other heading is part of a section's text
            part = by_title[line.strip()]
            sections[part] = [line]
        elif part is not None:
            sections[part].append(line)
    for part, body in sections.items():
        while body and not body[-1].strip():
            body.pop()
        if shared and not any(l.startswith("Measured at commit") for l in body):
            body[1:1] = ["", shared]
    return sections


def write_results(path: Path, new: dict[str, list[str]]) -> None:
    """``path`` with the parts in ``new`` (their sections' bodies) replaced and the others kept."""
    old = parse_sections(path.read_text(encoding="utf-8")) if path.is_file() else {}
    out = ["# Results", "", HEADER]
    for part in PARTS:
        body = new.get(part) or old.get(part)
        if body:
            out += [""] + body
    atomic_write_text(path, "\n".join(out).rstrip() + "\n")


def section(part: str, source: str, body: list[str] | str) -> list[str]:
    """A part's section: its heading, where its figures come from, then ``body``."""
    lines = body.splitlines() if isinstance(body, str) else list(body)
    while lines and not lines[-1].strip():
        lines.pop()
    return [TITLES[part], "", source, "", *lines]


def results_from_runs(runs: Path, at_commit: str, results: Path, readme: Path) -> int:
    """docs/results.md and the README's table from the recipe runs of an earlier bench in ``runs``."""
    from pipeline.bench.recipes import RECIPES, recipe_rows

    if not runs.is_dir():
        print(f"picotflm: error: {runs} is not a bench runs directory (hint: give runs/bench/runs-<time>)",
              file=sys.stderr)
        return 2
    rows = recipe_rows(runs, [r for r in RECIPES if (runs / r / "manifest.json").is_file()])
    bench_md = runs.parent / "bench.md"  # what the recipe part printed, once it had run to its end
    if bench_md.is_file():
        source = (f"Measured at commit `{at_commit}` by `make bench`'s recipe part (written from its runs and "
                  f"its `bench.md` with `python -m pipeline.bench --from-runs`).")
        body = bench_md.read_text(encoding="utf-8").splitlines()[1:]
    else:
        source = (f"Measured at commit `{at_commit}` by `make bench` (its recipe runs; written with "
                  f"`python -m pipeline.bench --from-runs`).")
        body = ["Recipes on the board image (emulated Pico, two cores, then one: `cores 1`).", "", *rows_markdown(rows)]
    write_results(results, {"recipes": section("recipes", source, body)})
    if readme.name != "none":
        atomic_write_text(readme, replace_block(readme.read_text(encoding="utf-8"), readme_table(rows, source)))
    print(f"bench: wrote {results} and the results table of {readme} from {len(rows)} runs", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.bench", description=__doc__.splitlines()[0])
    p.add_argument("--runs-dir", default="runs", help="where the benchmark's runs go (default: runs)")
    p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts (default: {','.join(PARTS)})")
    p.add_argument("--results", default=str(REPO_ROOT / "docs" / "results.md"),
                   help="the results file to write (default: docs/results.md); 'none' writes none")
    p.add_argument("--readme", default=str(REPO_ROOT / "README.md"),
                   help="the README whose results table is rewritten (default: README.md); 'none' leaves it")
    p.add_argument("--from-runs", metavar="DIR", default=None,
                   help="write the results from the recipe runs a bench already made in DIR "
                        "(runs/bench/runs-<time>), measured at --commit, instead of running them again")
    p.add_argument("--commit", default=None, help="with --from-runs: the commit DIR's runs were measured at")
    args = p.parse_args(argv)
    if args.from_runs:
        return results_from_runs(Path(args.from_runs), args.commit or "unknown", Path(args.results), Path(args.readme))
    parts = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        print(f"picotflm: error: unknown bench part(s) {', '.join(unknown) or '(none)'} (hint: choose from "
              f"{', '.join(PARTS)})", file=sys.stderr)
        return 2
    runs_dir = Path(args.runs_dir)
    t0 = time.perf_counter()
    how = "`make bench`" if parts == list(PARTS) else f"`python -m pipeline.bench --only {','.join(parts)}`"
    source = f"Measured at commit `{commit()}` by {how} on {time.strftime('%Y-%m-%d')}."
    sections: dict[str, list[str]] = {}
    rows: list[dict] = []
    try:
        if "recipes" in parts:
            from pipeline.bench.recipes import RECIPES, bench_recipes

            r = bench_recipes(runs_dir, RECIPES)
            print(r["text"])
            rows = r["rows"]
            sections["recipes"] = section("recipes", source, r["text"].splitlines()[1:])
            cnn_runs = r["runs"]
        else:
            cnn_runs = runs_dir
        if "switching" in parts:
            from pipeline.bench import switching

            if switching.main(["--runs-dir", str(runs_dir)]) != 0:
                return 2
            sections["switching"] = section("switching", source,
                                            (runs_dir / "bench" / "switchbench.md").read_text(encoding="utf-8"))
        if "seeds" in parts:
            from pipeline.bench import seeds

            out = runs_dir / "seedbench"
            if seeds.main(["--runs-dir", str(cnn_runs), "--cnn-run", "int8", "--out", str(out)]) != 0:
                return 2
            sections["seeds"] = section("seeds", source, (out / "seedbench.md").read_text(encoding="utf-8"))
        if "arena" in parts:
            from pipeline.bench import arena

            out = runs_dir / "arenabench"
            person = ["--person"] if arena.person_model() is not None else []
            if arena.main(["--runs-dir", str(cnn_runs), "--run", "int8", *person, "--out", str(out)]) != 0:
                return 2
            sections["arena"] = section("arena", source, (out / "arenabench.md").read_text(encoding="utf-8"))
    except PipelineError as e:
        print(f"picotflm: error: {e}", file=sys.stderr)
        return 2
    if args.results != "none":
        write_results(Path(args.results), sections)
        print(f"bench: wrote {args.results}", file=sys.stderr)
    if rows and args.readme != "none":
        readme = Path(args.readme)
        atomic_write_text(readme, replace_block(readme.read_text(encoding="utf-8"), readme_table(rows, source)))
        print(f"bench: rewrote the results table of {readme}", file=sys.stderr)
    print(f"bench: {', '.join(parts)} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
