#!/bin/sh
# Build the libFuzzer harness for firmware/src/link/protocol.c and run it; print one summary line.
#   firmware/fuzz/run_fuzz.sh [SECONDS] [OUT_DIR]        (make fuzz FUZZ_SECONDS=600)
# New inputs go to OUT_DIR/corpus (the seeds in firmware/fuzz/corpus are only read), crashing
# inputs to OUT_DIR/crash-*, the fuzzer's log to OUT_DIR/fuzz.log.
# Exit codes: 0 no crash, 1 a crash (or a failed run), 77 clang cannot build a libFuzzer binary here.
set -u
SECONDS_TO_RUN=${1:-600}
OUT=${2:-build/fuzz}
HERE=$(cd "$(dirname "$0")" && pwd)
SRC="$HERE/../src/link"
CLANG=${CLANG:-clang}
mkdir -p "$OUT/corpus" || exit 1
BIN="$OUT/fuzz_protocol"
if ! "$CLANG" -g -O1 -std=c11 -Wall -Wextra -Werror -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=all -I "$SRC" "$HERE/fuzz_protocol.c" "$SRC/protocol.c" "$SRC/crc32.c" \
    -o "$BIN" 2>"$OUT/build.log"; then
  echo "fuzz: cannot build a libFuzzer binary with $CLANG -fsanitize=fuzzer,address,undefined:" \
       "$(head -n 1 "$OUT/build.log")" >&2
  exit 77
fi
before=$(ls "$OUT" | grep -cE '^(crash|leak|timeout|oom)-')
echo "fuzz: $BIN for $SECONDS_TO_RUN s (seeds: $(ls "$HERE/corpus" | wc -l) files; log: $OUT/fuzz.log)" >&2
"$BIN" -max_total_time="$SECONDS_TO_RUN" -timeout=10 -print_final_stats=1 -dict="$HERE/protocol.dict" \
  -artifact_prefix="$OUT/" "$OUT/corpus" "$HERE/corpus" >"$OUT/fuzz.log" 2>&1
rc=$?
after=$(ls "$OUT" | grep -cE '^(crash|leak|timeout|oom)-')
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$OUT/fuzz.log")
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$OUT/fuzz.log")
cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$OUT/fuzz.log" | tail -n 1)
crashes=$((after - before))
echo "fuzz: ${execs:-?} executions in $SECONDS_TO_RUN s (${rate:-?}/s), ${cov:-cov: ?}, crashes: $crashes (exit $rc)"
if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
  grep -E 'ERROR|invariant|SUMMARY' "$OUT/fuzz.log" | head -n 5 >&2
  exit 1
fi
exit 0
