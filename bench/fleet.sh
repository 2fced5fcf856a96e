#!/usr/bin/env bash
# Fleet provisioning benchmark (scenario 5): `idmint loadtest fleet` plays N
# devices against the MQTT endpoint — TLS connect with a claim certificate,
# CreateCertificateFromCsr with a device-made P-256 key, RegisterThing,
# reconnect with the new certificate — with the load generator on the same
# machine, SQLite store. Then the same devices' work done the usual way: an
# openssl loop (key, CSR, sign with the CA), which does no TLS, MQTT or
# registry work at all, as a floor. Targets: >= 1,000 devices/s, p99 < 200 ms
# at 500 concurrent devices.
#   bash bench/fleet.sh [DEVICES] [CONCURRENCY]
set -euo pipefail
N=${1:-5000}
C=${2:-500}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
(cd "$ROOT" && cargo build --release -q -p idmint)
BIN="$ROOT/target/release/idmint"
W=$(mktemp -d /tmp/idmint-bench-fleet.XXXXXX)
trap 'rm -rf "$W"' EXIT
export IDMINT_DATA="$W/data" IDMINT_CA_PASSPHRASE="bench-passphrase"
ulimit -n 65536 2>/dev/null || true
"$BIN" init --org "Bench Co" >/dev/null 2>&1

echo "== idmint loadtest fleet: $N devices, concurrency $C (in-process endpoint, SQLite)"
out=$("$BIN" loadtest fleet --devices "$N" --concurrency "$C")
echo "$out"
rate=$(echo "$out" | sed -n 's/.* \([0-9][0-9]*\) devices\/s.*/\1/p' | head -1)

M=$(( N < 500 ? N : 500 ))
echo "== openssl loop, $M devices: genpkey + req + x509 -req (no TLS, no MQTT, no registry)"
"$BIN" ca show issuing --pem >"$W/ca.pem"
python3 - "$W" <<'PY'
import sys, subprocess, os
w = sys.argv[1]
# The issuing CA key is encrypted in the registry; a throw-away CA stands in for it.
subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-subj", "/CN=bench CA", "-keyout", f"{w}/caw.key", "-out", f"{w}/caw.pem", "-days", "2"],
               check=True, capture_output=True)
PY
t0=$(date +%s.%N)
for i in $(seq 1 "$M"); do
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$W/d.key" 2>/dev/null
  openssl req -new -key "$W/d.key" -subj "/CN=dev-$i" -out "$W/d.csr" 2>/dev/null
  openssl x509 -req -in "$W/d.csr" -CA "$W/caw.pem" -CAkey "$W/caw.key" -days 365 -out "$W/d.pem" 2>/dev/null
done
t1=$(date +%s.%N)
ossl=$(python3 -c "print(round($M / ($t1 - $t0)))")
echo "openssl loop: $ossl devices/s"
python3 -c "r=${rate:-0}; o=$ossl; print(f'ratio idmint/openssl: {r/o:.1f}x (target: >= 1000 devices/s; measured {r})')"
