"""The firmware's request parser and streamed replies under libFuzzer (firmware/fuzz/): the seed
corpus covers every command of docs/protocol.md, and a short fuzz run (10 s; `make fuzz` runs 10
minutes) finds no crash and no broken frame (bad checksum or brackets, a frame that depends on the
chunk size, a reply cut without saying so)."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FUZZ = REPO / "firmware" / "fuzz"
COMMANDS = ("info", "mem", "bench", "profile", "golden", "load", "infer", "arena")


def test_seed_corpus_covers_every_command_and_the_hostile_cases():
    seeds = {p.name: p.read_bytes() for p in (FUZZ / "corpus").iterdir()}
    assert all(len(data) <= 1024 for data in seeds.values()), "seeds stay small"
    firsts = {line.split(b" ")[0] for data in seeds.values() for line in data.split(b"\n")}
    assert set(c.encode() for c in COMMANDS) <= firsts
    assert any(len(line) >= 320 for data in seeds.values() for line in data.split(b"\n")), "an oversized line"
    assert any(not data.endswith(b"\n") for data in seeds.values()), "a truncated request"
    assert any(b"infer" in data and re.search(rb"infer \d+ [0-9a-f]{7}g", data) for data in seeds.values())


def test_short_fuzz_run_finds_no_crash(tmp_path):
    if shutil.which("clang") is None:
        pytest.skip("no clang: the libFuzzer harness needs clang -fsanitize=fuzzer")
    r = subprocess.run(["sh", str(FUZZ / "run_fuzz.sh"), "10", str(tmp_path)], capture_output=True, text=True,
                       timeout=300)
    if r.returncode == 77:
        pytest.skip(f"clang's libFuzzer runtime is not available: {r.stderr.strip()[-300:]}")
    assert r.returncode == 0, r.stdout + r.stderr + (tmp_path / "fuzz.log").read_text(errors="replace")[-3000:]
    m = re.search(r"fuzz: (\d+) executions in 10 s .*cov: (\d+) .*crashes: 0 \(exit 0\)", r.stdout)
    assert m, r.stdout
    assert int(m.group(1)) > 1000 and int(m.group(2)) > 50
    assert not list(tmp_path.glob("crash-*"))
