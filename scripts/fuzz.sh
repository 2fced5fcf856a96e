#!/usr/bin/env bash
# Coverage-guided fuzzing of every target in fuzz/: `scripts/fuzz.sh SECONDS
# [TARGET...]` builds the targets once (libFuzzer, no sanitizer, on the
# stable toolchain through RUSTC_BOOTSTRAP), then runs each for SECONDS,
# one after the other, starting from the checked-in seeds in
# fuzz/corpus/<target>/. What the fuzzer adds goes to fuzz/corpus-work/
# (not checked in). A crash stops the run: its input is in
# fuzz/artifacts/<target>/; fix the parser and keep the input as a
# regression test in that crate's suite.
#
#   FUZZ_NICE=19          run the fuzzers niced (default 0)
#   FUZZ_SANITIZER=none   or `address` (needs a build per sanitizer)
#   FUZZ_LOG_DIR=DIR      keep each target's libFuzzer output in DIR
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-none}
nice=${FUZZ_NICE:-0}
log_dir=${FUZZ_LOG_DIR:-}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz@0.13.2

targets=("$@")
[ "${#targets[@]}" -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
start=$(date +%s)
# One build for all targets (one target alone: just it).
build_args=()
[ "${#targets[@]}" -ne 1 ] || build_args=("${targets[0]}")
cargo fuzz build -s "$sanitizer" "${build_args[@]}"
echo "fuzz: built ${#targets[@]} targets in $(( $(date +%s) - start ))s"

failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus-work/$t" "corpus/$t" "artifacts/$t"
  out=$(mktemp)
  [ -z "$log_dir" ] || out="$log_dir/$t.log"
  echo "fuzz: $t for ${seconds}s"
  if nice -n "$nice" cargo fuzz run -s "$sanitizer" "$t" "corpus-work/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$out" 2>&1; then
    # The last status line: cov (edges), ft (features), corp, exec/s.
    summary=$(grep -E '^#[0-9]+' "$out" | tail -n1 || true)
    echo "fuzz: $t ok: ${summary:-no status line}"
  else
    echo "fuzz: $t FAILED; libFuzzer's output:" >&2
    tail -n 60 "$out" >&2
    failed+=("$t")
  fi
  [ -n "$log_dir" ] || rm -f "$out"
done
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, $(( $(date +%s) - start ))s in all"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: crashed: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
