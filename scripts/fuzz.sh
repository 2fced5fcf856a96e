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
#   FUZZ_JOBS=N           run N targets at a time (default 1; one per core
#                         is what CI uses)
#   FUZZ_PROFILE=dev      build with fuzz/Cargo.toml's [profile.dev]
#                         (opt-level 1, debug assertions) instead of
#                         release: quicker to build
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-none}
jobs=${FUZZ_JOBS:-1}
profile=()
[ "${FUZZ_PROFILE:-release}" = release ] || profile=(--dev)
nice=${FUZZ_NICE:-0}
log_dir=${FUZZ_LOG_DIR:-}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz@0.13.2

targets=("$@")
[ "${#targets[@]}" -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
start=$(date +%s)
# One build for all targets (one target alone: just it).
build_args=()
[ "${#targets[@]}" -ne 1 ] || build_args=("${targets[0]}")
cargo fuzz build -s "$sanitizer" "${profile[@]}" "${build_args[@]}"
echo "fuzz: built ${#targets[@]} targets in $(( $(date +%s) - start ))s"

# One target: its run and its verdict (a crash leaves a file in failed/).
verdicts=$(mktemp -d)
fuzz_one() {
  local t=$1 out
  mkdir -p "corpus-work/$t" "corpus/$t" "artifacts/$t"
  out=$(mktemp)
  [ -z "$log_dir" ] || out="$log_dir/$t.log"
  if nice -n "$nice" cargo fuzz run -s "$sanitizer" "${profile[@]}" "$t" "corpus-work/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$out" 2>&1; then
    # The last status line: cov (edges), ft (features), corp, exec/s.
    summary=$(grep -E '^#[0-9]+' "$out" | tail -n1 || true)
    echo "fuzz: $t ok (${seconds}s): ${summary:-no status line}"
  else
    { echo "fuzz: $t FAILED; libFuzzer's output:"; tail -n 60 "$out"; } >&2
    touch "$verdicts/$t"
  fi
  [ -n "$log_dir" ] || rm -f "$out"
}
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  fuzz_one "$t" &
  running=$((running + 1))
done
wait
mapfile -t failed < <(ls "$verdicts")
rm -rf "$verdicts"
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, $(( $(date +%s) - start ))s in all"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: crashed: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
