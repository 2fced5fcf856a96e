#!/usr/bin/env bash
# Regenerates offline/: an authorization bundle from `idmint batch
# authorize` and the issuance log an offline station writes under it,
# provisioning three simulated devices (two make their own key, one gets a
# key injected) and locking them. IDMINT names the binary (default: idmint
# on PATH); the age CLI makes the factory's identity.
set -euo pipefail
cd "$(dirname "$0")"
idmint=${IDMINT:-idmint}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -p offline
export IDMINT_DATA="$tmp/maker" IDMINT_CA_PASSPHRASE=vectors-passphrase
"$idmint" init --org "Example Devices" >/dev/null
age-keygen -o "$tmp/factory.key" 2>/dev/null
recipient=$(age-keygen -y "$tmp/factory.key")
"$idmint" batch authorize --json --out offline/authorization.json --factory acme \
  --product widget --count 4 --serial-range 100..199 --valid-days 30 --allow-inject \
  --encrypt-to "$recipient" >/dev/null
devices=()
for name in k1 k2 inj; do
  extra=()
  [ "$name" = inj ] && extra=(--no-keygen)
  "$idmint" devsim --listen tcp://127.0.0.1:0 --state "$tmp/$name" --hw-id "HW-$name" \
    "${extra[@]}" 2>"$tmp/$name.err" </dev/null >/dev/null &
  pids+=($!)
  for _ in $(seq 50); do grep -q "listening on" "$tmp/$name.err" 2>/dev/null && break; sleep 0.1; done
  devices+=(--device "$(sed -n 's/^listening on //p' "$tmp/$name.err" | head -n1)")
done
rm -f offline/issuance.log
# At the factory: no maker data directory, no CA passphrase.
env -u IDMINT_CA_PASSPHRASE IDMINT_DATA="$tmp/factory-has-no-data" \
  "$idmint" station run --json --timeout-ms 1500 --authorization offline/authorization.json \
  --identity "$tmp/factory.key" --log offline/issuance.log "${devices[@]}" --lock >/dev/null
rm -f offline/issuance.log.state offline/issuance.log.lock
wc -l offline/issuance.log
