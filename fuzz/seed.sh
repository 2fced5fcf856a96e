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
seed manifest_stream trustandgo-signed.json 00 "$v/manifest/trustandgo-signed/manifest.json"
seed manifest_entry device-cert.pem "" "$v/fleet/device-cert.pem"
seed policy_document device-policy.json "" "$v/policy/device-policy.json"
seed policy_document thing-policy.json "" "$v/policy/thing-policy.json"
# Credential slots (docs/credential-slot.md): libFuzzer without a sanitizer
# cannot see the 16-byte magic compared, so the slot targets need seeds
# that carry it: an empty 1 KiB slot, a written one, and golden images
# (bin, blob) around the empty one.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -outform DER 2>/dev/null > /tmp/seed-key.der
python3 - "$v/fleet/device-cert.pem" /tmp/seed-key.der <<'PY'
import base64, os, struct, sys, zlib
pem = open(sys.argv[1]).read()
cert = base64.b64decode("".join(l for l in pem.splitlines() if "-----" not in l))
key = open(sys.argv[2], "rb").read()
def slot(capacity, records, version):
    payload = b"".join(struct.pack("<HI", t, len(v)) + v for t, v in records)
    head = b"IDMINT-CRED-SLOT" + struct.pack("<IIII", capacity, version, len(payload), zlib.crc32(payload))
    return (head + payload).ljust(capacity, b"\0")
empty = slot(1024, [], 0)
written = slot(2048, [(1, b"HW-0042"), (2, cert), (4, key), (5, b"mqtts://iot.example.com:8883"),
                      (6, b"sensor-0042")], 1)
def put(target, name, data):
    os.makedirs(f"corpus/{target}", exist_ok=True)
    open(f"corpus/{target}/{name}", "wb").write(data)
put("slot_parse", "empty-1k.slot", empty)
put("slot_parse", "written-2k.slot", written)
image = bytes((i * 7) & 0xFF for i in range(4096)) + empty + bytes(1024)
put("golden_load", "bin-with-empty-slot", b"\x00" + image)
put("golden_load", "blob-empty-slot", b"\x03" + empty)
PY
rm -f /tmp/seed-key.der
# TPM structures a real swtpm made (crates/pki/src/tpm/testdata/).
for f in ak.pub id.pub ek-rsa.pub certify.attest certify.sig; do
  seed tpm_structures "$f" "" ../crates/pki/src/tpm/testdata/$f
done

# ESP32 partitions and the agent protocol, made by the real binary
# (IDMINT, default ../target/debug/idmint): an esp_secure_cert and an NVS
# partition from `batch mint`, an NVS partition from Espressif's own
# generator, and the byte stream a station sends a device (captured with
# tee in front of `idmint devsim`), for injection and for a device-made key.
IDMINT=${IDMINT:-$(cd .. && pwd)/target/debug/idmint}
w=$(mktemp -d)
export IDMINT_DATA="$w/data" IDMINT_CA_PASSPHRASE="seed-$$"
"$IDMINT" init --org "Seed Co" >/dev/null 2>&1
"$IDMINT" batch mint --format esp-secure-cert --count 1 --product seed-esp --out "$w/esp" >/dev/null 2>&1
"$IDMINT" batch mint --format esp-nvs --partition-size 0x3000 --count 1 --product seed-nvs --out "$w/nvs" >/dev/null 2>&1
mkdir -p "$c/esp_secure_cert_parse" "$c/nvs_parse" "$c/agent_frame"
cp "$w"/esp/images/*.bin "$c/esp_secure_cert_parse/batch-mint.bin"
cp "$w"/nvs/images/*.bin "$c/nvs_parse/batch-mint-0x3000.bin"
printf 'key,type,encoding,value\nesp_secure_cert,namespace,,\ndev_cert,data,string,%s\npriv_key,data,string,seed\ncount,data,u32,7\nblob,data,hex2bin,%s\n' \
  "$(tr -d '\n' < "$v/fleet/device-cert.pem")" "$(head -c 3000 /dev/zero | od -v -An -tx1 | tr -d ' \n')" > "$w/nvs.csv"
python3 -m esp_idf_nvs_partition_gen generate "$w/nvs.csv" "$c/nvs_parse/espressif-0x3000.bin" 0x3000 >/dev/null
for mode in keygen inject; do
  flags=(); dev=(); [ "$mode" = inject ] && flags=(--allow-inject) && dev=(--no-keygen)
  batch=$("$IDMINT" batch create --product "seed-$mode" --count 2 --factory line-1 "${flags[@]}")
  "$IDMINT" station run --batch "$batch" \
    --device "exec:tee $w/$mode.frames | $IDMINT devsim --listen stdio --state $w/board-$mode ${dev[*]}" >/dev/null 2>&1
  cp "$w/$mode.frames" "$c/agent_frame/station-$mode.frames"
done
rm -rf "$w"
