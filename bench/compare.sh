#!/usr/bin/env bash
# Side by side, in one run: idmint issuing N device identities in one command
# (`cert new --count N`: key generation + certificate + registry write + files)
# against the same N identities made with an openssl CLI loop (genpkey + req +
# x509 -req). Prints both rates and the ratio.
#   bench/compare.sh [N] [OPENSSL_N]
set -euo pipefail
N=${1:-100000}
M=${2:-200}            # the openssl loop is slow; time fewer and compare rates
cd "$(dirname "$0")/.."
cargo build --release -q -p idmint
BIN=$PWD/target/release/idmint
W=$(mktemp -d /tmp/idmint-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
export IDMINT_DATA=$W/data IDMINT_CA_PASSPHRASE=bench-passphrase
"$BIN" init --org "Bench Co" >/dev/null 2>&1
"$BIN" ca show issuing --pem >"$W/issuing.pem"

# The issuing CA's key, decrypted for openssl (the same CA signs both ways).
key_pem=$(sqlite3 "$W/data/registry.db" "select key_ref from cas where name='issuing'")
printf '%s\n' "$key_pem" >"$W/issuing.enc.pem"
openssl pkcs8 -in "$W/issuing.enc.pem" -passin env:IDMINT_CA_PASSPHRASE -out "$W/issuing.key" 2>/dev/null

now() { date +%s.%N; }
t0=$(now)
"$BIN" cert new --count "$N" --thing-prefix bench- --out-dir "$W/idmint" >/dev/null 2>&1
t1=$(now)
idmint_rate=$(echo "$N / ($t1 - $t0)" | bc -l)

mkdir -p "$W/openssl"
t2=$(now)
for i in $(seq 1 "$M"); do
  d=$W/openssl/dev-$i
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d.key" 2>/dev/null
  openssl req -new -key "$d.key" -subj "/CN=dev-$i/O=Bench Co" -out "$d.csr" 2>/dev/null
  openssl x509 -req -in "$d.csr" -CA "$W/issuing.pem" -CAkey "$W/issuing.key" -CAcreateserial \
    -days 3650 -sha256 -out "$d.pem" 2>/dev/null
done
t3=$(now)
openssl_rate=$(echo "$M / ($t3 - $t2)" | bc -l)

printf 'idmint cert new --count %d: %8.0f identities/s (keygen + certificate + registry + files)\n' "$N" "$idmint_rate"
printf 'openssl CLI loop, %d:        %8.1f identities/s\n' "$M" "$openssl_rate"
printf 'ratio: idmint is %.0fx the openssl loop\n' "$(echo "$idmint_rate / $openssl_rate" | bc -l)"
