# picotflm: `make` (install if needed, run every shipped recipe, compare) and `make test`.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
CLI    := $(VENV)/bin/picotflm
STAMP  := $(VENV)/.installed
EMU    := tools/emulator
EMU_STAMP := $(EMU)/node_modules/.installed
RECIPE ?= int8
RECIPES ?= int8 prune-int8 boundary-int8 cluster-int8 pcqat-int8 int4 cluster-int4 codebook-4bit codebook-2bit
RUNS   ?= runs
PORT   ?=
EMULATOR ?=
# Progress bars only draw on a terminal anyway; in CI say so explicitly for clean logs.
PROGRESS := $(if $(CI),--no-progress,)

.PHONY: all run emulate firmware flash measure arena compare bench seedbench switch install test fuzz faultsoak clean distclean

all: run

# (Re)install when the venv is missing or pyproject.toml changed.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The emulated Pico (rp2040js, pinned by the lockfile); skipped with a note when npm is absent.
$(EMU_STAMP): $(EMU)/package-lock.json
	@if command -v npm >/dev/null; then cd $(EMU) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "note: npm not found: the emulated Pico is unavailable (install Node.js and npm)"; fi

install: $(STAMP) $(EMU_STAMP)

# The main job: every shipped recipe end to end (firmware built and measured on the emulated Pico
# when the Pico SDK and pico-tflmicro are installed), then one comparison across them.
run: install
	@for r in $(RECIPES); do echo "== recipe $$r" >&2; $(CLI) run $$r --runs-dir $(RUNS) $(PROGRESS) || exit $$?; done
	$(CLI) compare $(RECIPES) --runs-dir $(RUNS) --out $(RUNS)/compare > /dev/null
	@echo "reports: $(RUNS)/<recipe>/report.md; comparison: $(RUNS)/compare/compare.md"

# The arena `make arena` applied to the default recipe (confirmed on the emulated Pico), kept by the
# targets below when they build it again; else the rendered one.
APPLIED_ARENA = $(shell test -f $(RUNS)/$(RECIPE)/arena.json && $(PY) -c 'import sys; from pipeline.analysis.arena import applied_arena_bytes as a; print(a(sys.argv[1]) or "")' $(RUNS)/$(RECIPE)/arena.json)
ARENA_SET = $(if $(APPLIED_ARENA),--set render.arena_bytes=$(APPLIED_ARENA),)

# The default recipe's board image on the emulated Pico (both cores, USB CDC), and its measured figures.
emulate: install
	$(CLI) run $(RECIPE) $(ARENA_SET) --runs-dir $(RUNS) $(PROGRESS)
	$(CLI) measure $(RECIPE) $(ARENA_SET) --runs-dir $(RUNS) $(PROGRESS)
	@echo "report: $(RUNS)/$(RECIPE)/report.md"

# The default recipe's board image (boot2, USB CDC, both cores): runs/$(RECIPE)/firmware.{elf,bin,uf2}.
firmware: install
	$(CLI) build $(RECIPE) $(ARENA_SET) --runs-dir $(RUNS) $(PROGRESS)

# Flash the board image (picotool, or the RPI-RP2 drive) and measure it over USB serial; with
# EMULATOR=1 the same path on the emulated Pico (its BOOTSEL drive, then its USB serial port).
flash: install
	$(CLI) build $(RECIPE) $(ARENA_SET) --runs-dir $(RUNS) $(PROGRESS)
	$(CLI) flash $(RECIPE) $(if $(EMULATOR),--emulator,) --runs-dir $(RUNS) $(PROGRESS)

# Measure again: on a Pico already flashed (make measure PORT=/dev/ttyACM0), else on the emulated Pico.
measure: install
	$(CLI) measure $(RECIPE) $(ARENA_SET) $(if $(PORT),--port $(PORT),) --runs-dir $(RUNS) $(PROGRESS)

# Arena tuning on the emulated Pico: the default recipe (stages that are up to date are skipped), then
# the smallest arena that allocates, invokes and stays bit-exact, rebuilt with a margin and kept only
# when the rebuilt firmware is confirmed (re-measured, golden outputs bit-exact).
arena: install
	$(CLI) run $(RECIPE) --runs-dir $(RUNS) $(PROGRESS)
	$(CLI) arena $(RECIPE) --apply --runs-dir $(RUNS) $(PROGRESS)

compare: install
	$(CLI) compare $(RECIPES) --runs-dir $(RUNS) --out $(RUNS)/compare

# Every benchmark from one entry point (python -m pipeline.bench): recipes, kernels and soak, switching,
# boundary pruning's tau sweep. Each prints its figures; docs/results.md and the README's results table
# are written from them.
bench: install
	$(PY) -m pipeline.bench --runs-dir $(RUNS)

# Quantization switching in one firmware: int4 and int8 MicroPizzaNet (run first; cached when done)
# rendered together, built, and measured on the emulated Pico.
switch: install
	$(CLI) run int4 --runs-dir $(RUNS) $(PROGRESS)
	$(CLI) run int8 --runs-dir $(RUNS) $(PROGRESS)
	$(CLI) switch int4-int8 --runs-dir $(RUNS) $(PROGRESS)

# Boundary pruning's tau swept (0.1 ... 0.3, 3 seeds each) over a synthetic MLP and MicroPizzaNet (from the
# trained run of the default recipe): time, peak memory, non-zero ratio, accuracy; runs/seedbench/.
seedbench: install
	$(CLI) train $(RECIPE) --runs-dir $(RUNS) $(PROGRESS)
	$(PY) -m pipeline.bench --only seeds --runs-dir $(RUNS) --results none

test: install
	$(PY) -m pytest -q --emulator

# The firmware's request parser (firmware/src/link/protocol.c) under libFuzzer + ASan/UBSan on the host,
# seeded from firmware/fuzz/corpus; prints executions, coverage and crashes (inputs in build/fuzz/).
FUZZ_SECONDS ?= 600
fuzz:
	nice -n 10 firmware/fuzz/run_fuzz.sh $(FUZZ_SECONDS) build/fuzz

# The emulated Pico of the default recipe's run behind a link that drops, duplicates, flips and delays
# bytes and resets the board: every figure accepted is checked against the host (make faultsoak
# FAULT_EXCHANGES=1000 for less); prints faults injected, recovered and reported.
FAULT_EXCHANGES ?= 10000
faultsoak: install
	$(CLI) run $(RECIPE) --runs-dir $(RUNS) $(PROGRESS)
	$(PY) -m pipeline.board.faultlink --run $(RUNS)/$(RECIPE) --exchanges $(FAULT_EXCHANGES) $(PROGRESS)

clean:
	rm -rf $(RUNS) build .pytest_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info $(EMU)/node_modules
