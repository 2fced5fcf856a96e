#!/usr/bin/env bash
# Revocation benchmark (issue 14), SQLite store, load generator on the same
# machine:
#  1. OCSP: a registry of N certificates of the issuing CA (default
#     1,000,000; 1% revoked), `idmint loadtest ocsp` asking about K of them
#     (default 10,000) from C keep-alive HTTPS clients. Each certificate's
#     response is signed once by the delegated responder, then served from
#     the cache while its status is unchanged (one registry read each).
#     Target: >= 20,000 responses/s at 64 clients.
#  2. CRL generation with R revoked entries (default 100,000): `idmint crl`
#     side by side with `openssl ca -gencrl` over an index of the same size,
#     and the ratio.
# The registry rows are synthetic (what OCSP and CRLs read: serial, status,
# revocation time and reason); minting a million real certificates is
# bench/batch.sh's job.
#   bash bench/ocsp.sh [N] [K] [C] [R]
set -euo pipefail
N=${1:-1000000}
K=${2:-10000}
C=${3:-64}
R=${4:-100000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
(cd "$ROOT" && cargo build --release -q -p idmint)
BIN="$ROOT/target/release/idmint"
W=$(mktemp -d /tmp/idmint-bench-ocsp.XXXXXX)
trap 'rm -rf "$W"' EXIT
export IDMINT_DATA="$W/data" IDMINT_CA_PASSPHRASE="bench-passphrase"
"$BIN" init --org "Bench Co" >/dev/null 2>&1
DB="$W/data/registry.db"
now=$(date +%s)

echo "== registry: $N certificates of CA issuing, 1% revoked"
sqlite3 "$DB" <<SQL
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $N)
INSERT INTO certificates (id, serial, ca, status, subject, not_before, not_after,
  public_key_sha256, created, updated, revoked_at, revocation_reason, der)
SELECT printf('bench-%d', i), printf('%012x', 1099511627776 + i), 'issuing',
  CASE WHEN i % 100 = 0 THEN 'REVOKED' ELSE 'ACTIVE' END,
  printf('CN=bench-%d', i), $now - 3600, $now + 86400 * 365, printf('pk-%d', i), $now, $now,
  CASE WHEN i % 100 = 0 THEN $now ELSE NULL END,
  CASE WHEN i % 100 = 0 THEN 'keyCompromise' ELSE NULL END, x'3000'
FROM n;
SQL

echo "== idmint loadtest ocsp: 200,000 requests about $K certificates, $C clients"
"$BIN" loadtest ocsp --requests 200000 --certificates "$K" --clients "$C" 2>/dev/null

echo "== CRL with $R revoked entries"
sqlite3 "$DB" "UPDATE certificates SET status = 'REVOKED', revoked_at = $now, revocation_reason = 'superseded' WHERE id IN (SELECT id FROM certificates WHERE ca = 'issuing' AND status = 'ACTIVE' LIMIT $R - (SELECT COUNT(*) FROM certificates WHERE ca = 'issuing' AND status = 'REVOKED'))"
revoked=$(sqlite3 "$DB" "SELECT COUNT(*) FROM certificates WHERE ca = 'issuing' AND status = 'REVOKED'")
t0=$(date +%s.%N)
"$BIN" crl --ca issuing --der --out "$W/idmint.crl"
t1=$(date +%s.%N)
entries=$(openssl crl -inform DER -in "$W/idmint.crl" -noout -text | grep -c "Serial Number:")
idmint_s=$(echo "$t1 - $t0" | bc -l)
printf "idmint crl: %d entries (%d revoked in the registry) in %.2f s\n" "$entries" "$revoked" "$idmint_s"

# openssl ca over an index.txt of as many revoked entries.
mkdir -p "$W/ossl"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=bench CA" \
  -keyout "$W/ossl/ca.key" -out "$W/ossl/ca.pem" -days 2 2>/dev/null
python3 - "$revoked" "$W/ossl/index.txt" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    for i in range(1, n + 1):
        f.write(f"R\t351231000000Z\t261201000000Z,superseded\t{1099511627776 + i:012X}\tunknown\t/CN=bench-{i}\n")
PY
echo "1000" >"$W/ossl/crlnumber"
cat >"$W/ossl/ca.cnf" <<CNF
[ca]
default_ca = bench
[bench]
database = $W/ossl/index.txt
crlnumber = $W/ossl/crlnumber
certificate = $W/ossl/ca.pem
private_key = $W/ossl/ca.key
default_md = sha256
default_crl_days = 7
CNF
t0=$(date +%s.%N)
openssl ca -config "$W/ossl/ca.cnf" -gencrl -out "$W/ossl/crl.pem" 2>"$W/ossl/err" || { cat "$W/ossl/err"; exit 1; }
t1=$(date +%s.%N)
openssl_s=$(echo "$t1 - $t0" | bc -l)
printf "openssl ca -gencrl: %d entries in %.2f s\n" "$revoked" "$openssl_s"
printf "ratio (openssl time / idmint time): %.2f\n" "$(echo "$openssl_s / $idmint_s" | bc -l)"
