#!/usr/bin/env bash
# Scenario 3 benchmark: generate an N-entry signed secure element manifest
# (Trust&GO shape, ES256 JWS per entry, device certificate chained through a
# vendor signer CA), then import it into a fresh SQLite registry on a release
# build. Prints entries/s and the import's peak memory (max RSS).
# Targets: >= 10,000 entries/s, < 200 MB peak.
#   bench/manifest.sh [N]
set -euo pipefail
N=${1:-100000}
cd "$(dirname "$0")/.."
cargo build --release -q -p idmint
BIN=$PWD/target/release/idmint
W=$(mktemp -d /tmp/idmint-manifest-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
export IDMINT_DATA=$W/data IDMINT_CA_PASSPHRASE=bench-passphrase
"$BIN" init --org "Bench Co" >/dev/null 2>&1
echo "generating a $N-entry signed manifest ..."
"$BIN" manifest generate-test --count "$N" --out "$W/vendor" 2>/dev/null
ls -l "$W/vendor/manifest.json" | awk '{printf "manifest: %.1f MB\n", $5/1e6}'
"$BIN" ca register --name vendor --cert "$W/vendor/vendor-root.pem" --signer "$W/vendor/log-signer.pem" 2>/dev/null
/usr/bin/time -v "$BIN" manifest import "$W/vendor/manifest.json" --ca vendor --json \
    >"$W/summary.json" 2>"$W/time.txt" || { cat "$W/time.txt"; exit 1; }
rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$W/time.txt")
wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$W/time.txt")
python3 - "$W/summary.json" "$rss_kb" "$wall" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
rss = int(sys.argv[2]) / 1024
print(f"imported {s['registered']} of {s['entries']} entries ({s['rejected']} rejected) in {s['seconds']:.2f} s")
print(f"entries/s: {s['perSecond']:.0f}   (target >= 10000)")
print(f"peak memory (max RSS): {rss:.1f} MB   (target < 200 MB)   wall {sys.argv[3]}")
PY
