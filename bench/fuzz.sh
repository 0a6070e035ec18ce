#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time (default 60 s each) from the seed corpus in
# fuzz/seeds/, and prints each target's executions and findings. Working corpora and crash artifacts go to
# bench/.work/fuzz/ (not committed). Needs a nightly toolchain (`rustup toolchain install nightly`) and
# cargo-fuzz (`cargo install cargo-fuzz`).
#
#   bench/fuzz.sh                # every target, 60 s each
#   SECONDS_PER_TARGET=300 bench/fuzz.sh diff_parser
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
per_target=${SECONDS_PER_TARGET:-60}
work="$root/bench/.work/fuzz"
export CARGO_TARGET_DIR="$root/fuzz/target"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: no nightly toolchain (libFuzzer instrumentation needs it): rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: cargo-fuzz is missing: cargo install cargo-fuzz" >&2
  exit 2
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(diff_parser webhook_payload repo_config suppress_comment)
fi

# No sanitizer: the targets and the parsers are safe Rust, so panics (with debug assertions and overflow
# checks on) are what there is to find; ASan would halve the executions per second.
(cd fuzz && cargo +nightly fuzz build --sanitizer none --debug-assertions)

status=0
printf '%-18s %10s %8s %8s  %s\n' target execs exec/s corpus findings
for t in "${targets[@]}"; do
  corpus="$work/corpus/$t"
  artifacts="$work/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  cp -n fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
  log="$work/$t.log"
  set +e
  (cd fuzz && cargo +nightly fuzz run --sanitizer none --debug-assertions "$t" "$corpus" -- \
    -max_total_time="$per_target" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" -print_final_stats=1) >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  found=$(find "$artifacts" -type f | wc -l)
  size=$(find "$corpus" -type f | wc -l)
  printf '%-18s %10s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$size" \
    "$([ "$rc" -eq 0 ] && echo none || echo "exit $rc, $found artifact(s) in $artifacts, log $log")"
  [ "$rc" -eq 0 ] || status=1
done
exit $status
