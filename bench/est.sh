#!/usr/bin/env bash
# EST benchmark: `idmint loadtest est` sends N simpleenroll requests (a fresh
# P-256 CSR each, made before the clock starts) from C keep-alive HTTP/1.1
# clients to an in-process `idmint serve` on loopback, SQLite store, load
# generator included. Then the alternative: an openssl loop signing the same
# kind of CSRs with `openssl x509 -req` (no HTTP, no TLS, no registry).
# Target: >= 3,000 enrollments/s with p99 < 50 ms at 64 clients.
#   bash bench/est.sh [REQUESTS] [CLIENTS]
set -euo pipefail
N=${1:-20000}
C=${2:-64}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
(cd "$ROOT" && cargo build --release -q -p idmint)
BIN="$ROOT/target/release/idmint"
W=$(mktemp -d /tmp/idmint-bench-est.XXXXXX)
trap 'rm -rf "$W"' EXIT
export IDMINT_DATA="$W/data" IDMINT_CA_PASSPHRASE="bench-passphrase"
"$BIN" init --org "Bench Co" >/dev/null 2>&1

echo "== idmint loadtest est: $N enrollments, $C clients"
out=$("$BIN" loadtest est --requests "$N" --clients "$C" 2>/dev/null)
echo "$out"
rate=$(echo "$out" | sed -n 's/.* \([0-9][0-9]*\) enrollments\/s.*/\1/p' | head -1)

M=300
echo "== openssl loop: $M x (openssl x509 -req) on prepared CSRs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=bench CA" \
  -keyout "$W/ca.key" -out "$W/ca.pem" -days 2 2>/dev/null
for i in $(seq 1 "$M"); do
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=d$i" \
    -keyout "$W/k$i.pem" -out "$W/r$i.csr" 2>/dev/null
done
t0=$(date +%s.%N)
for i in $(seq 1 "$M"); do
  openssl x509 -req -in "$W/r$i.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -days 365 -out "$W/c$i.pem" 2>/dev/null
done
t1=$(date +%s.%N)
ossl=$(python3 -c "print(round($M / ($t1 - $t0)))")
echo "openssl loop: $ossl certificates/s"
python3 -c "r=${rate:-0}; o=$ossl; print(f'ratio idmint/openssl: {r/o:.1f}x (target: >= 3000 enrollments/s; measured {r})')"
