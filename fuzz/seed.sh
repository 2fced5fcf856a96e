#!/usr/bin/env bash
# Rebuilds the checked-in seed corpus (corpus/<target>/) from the test
# vectors under tests/vectors/ and crates/template/tests/data/. A seed is a
# real input, prefixed with the selector byte where a target takes one.
# New inputs libFuzzer finds go to corpus-work/ (not checked in); copy one
# here only when it adds something a reviewer should keep.
set -euo pipefail
cd "$(dirname "$0")"
v=../tests/vectors
c=corpus
seed() { # target name selector-hex(or "") file
  mkdir -p "$c/$1"
  { [ -n "$3" ] && printf "\\x$3"; cat "$4"; } > "$c/$1/$2"
}
for f in "$v"/est/*.b64; do seed http_inputs "est-$(basename "$f")" "" "$f"; done
for f in "$v"/ocsp/*.der; do seed http_inputs "ocsp-$(basename "$f")" "" "$f"; done
for f in "$v"/est/simpleenroll-p256.b64 "$v"/est/simplereenroll-rsa2048.b64; do
  mkdir -p "$c/csr_parse"
  openssl base64 -d -in "$f" -out "$c/csr_parse/$(basename "$f" .b64).der"
done
python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["certificateSigningRequest"], end="")' \
  "$v/fleet/create-from-csr.json" > "$c/csr_parse/fleet.csr.pem"
seed csr_parse device-cert.pem "" "$v/fleet/device-cert.pem"
for f in "$v"/fleet/*.json "$v"/fleet/*.cbor; do
  case "$f" in *template*) continue ;; esac
  seed mqtt_packet "$(basename "$f")" "" "$f"
done
seed fleet_parameters register-thing-serial.json 00 "$v/fleet/register-thing.json"
seed fleet_parameters register-thing-serial.cbor 01 "$v/fleet/register-thing.cbor"
seed fleet_parameters register-thing-joined.json 02 "$v/fleet/register-thing.json"
seed fleet_parameters register-thing-mapped.cbor 05 "$v/fleet/register-thing.cbor"
for f in "$v"/fleet/template-*.json ../crates/template/tests/data/*.json; do
  seed template "$(basename "$f")" 01 "$f"
done
seed offline_log issuance-raw.log 01 "$v/offline/issuance.log"
seed offline_log issuance-resealed.log 02 "$v/offline/issuance.log"
seed offline_bundle authorization.json "" "$v/offline/authorization.json"
for f in "$v"/manifest/*; do
  case "$f" in
    *.json) seed manifest_stream "$(basename "$f")" 00 "$f" ;;
    *.jsonl) seed manifest_stream "$(basename "$f")" 01 "$f"
             head -n1 "$f" > "$c/manifest_entry/line.json" ;;
    *.tar) seed manifest_stream "$(basename "$f")" 02 "$f" ;;
  esac
done
seed manifest_entry device-cert.pem "" "$v/fleet/device-cert.pem"
seed policy_document device-policy.json "" "$v/policy/device-policy.json"
seed policy_document thing-policy.json "" "$v/policy/thing-policy.json"
