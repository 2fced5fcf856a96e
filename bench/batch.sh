#!/usr/bin/env bash
# Benchmark for `idmint batch mint` (scenario 1). Not a test: prints figures.
#   cargo build --release -p idmint && bash bench/batch.sh
# Mints 100,000 identities in blob format, 100,000 ESP32 esp_secure_cert
# partitions (8 KiB each, no golden image) and 10,000 from a 1 MiB golden
# binary, and compares the image writing with `cp` of the same bytes.
# BLOB_N / ESP_N / IMG_N override the counts; BENCH_DIR the scratch directory.
set -euo pipefail
BIN=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/idmint}
BLOB_N=${BLOB_N:-100000}
ESP_N=${ESP_N:-100000}
IMG_N=${IMG_N:-10000}
W=${BENCH_DIR:-$(mktemp -d /tmp/idmint-bench.XXXXXX)}
trap 'rm -rf "$W"' EXIT
export IDMINT_CA_PASSPHRASE="bench-$$"
# Each format mints into a registry of its own, so none is charged for the
# rows an earlier one left (a growing index slows every insert).
fresh() {
  export IDMINT_DATA="$W/data-$1"
  "$BIN" init --org "Bench Co" >/dev/null
}
python3 - "$W" <<'PY'
import os, struct, sys
w = sys.argv[1]
img = bytearray(os.urandom(1 << 20))
slot = b"IDMINT-CRED-SLOT" + struct.pack("<IIII", 4096, 0, 0, 0)
img[0x80000:0x80000 + 4096] = slot + bytes(4096 - len(slot))
open(f"{w}/golden.bin", "wb").write(img)
PY
now() { date +%s.%N; }
rate() { python3 -c "import sys; n,t=float(sys.argv[1]),float(sys.argv[2]); print(f'{n/t:,.0f}')" "$@"; }

fresh blob
sync
t0=$(now); "$BIN" batch mint --golden "$W/golden.bin" --format blob --count "$BLOB_N" --product bench-blob --out "$W/blob" >/dev/null; t1=$(now)
bt=$(python3 -c "print($t1-$t0)")
echo "blob: $BLOB_N identities in $(printf %.2f "$bt") s = $(rate "$BLOB_N" "$bt") identities/s (incl. registry writes and start-up)"
# The blob files stay until the partitions are written: ext4 makes inode
# allocation right after a mass delete much slower (recently_deleted()),
# which would be charged to the next run.

fresh esp
sync
t0=$(now); "$BIN" batch mint --format esp-secure-cert --flash-offset 0xD000 --count "$ESP_N" --product bench-esp --out "$W/esp" >/dev/null; t1=$(now)
et=$(python3 -c "print($t1-$t0)")
echo "esp-secure-cert: $ESP_N partitions in $(printf %.2f "$et") s = $(rate "$ESP_N" "$et") identities/s (blob: $(rate "$BLOB_N" "$bt"))"
rm -rf "$W/blob" "$W/esp"

sync
t0=$(now); "$BIN" batch mint --golden "$W/golden.bin" --format bin --count "$IMG_N" --product bench-img --out "$W/img" >/dev/null; t1=$(now)
it=$(python3 -c "print($t1-$t0)")
mb=$(python3 -c "print($IMG_N * (1 << 20) / 1e6)")
echo "1 MiB images: $IMG_N in $(printf %.2f "$it") s = $(rate "$IMG_N" "$it") identities/s, $(rate "$mb" "$it") MB/s"
rm -rf "$W/img"

# cp of the same bytes: the golden image copied IMG_N times.
mkdir -p "$W/cp"
sync
t0=$(now)
for i in $(seq 1 "$IMG_N"); do echo "$W/cp/$i.bin"; done | xargs -n 1000 sh -c 'for f; do cp "$0" "$f"; done' "$W/golden.bin"
t1=$(now)
ct=$(python3 -c "print($t1-$t0)")
echo "cp: $IMG_N x 1 MiB in $(printf %.2f "$ct") s = $(rate "$mb" "$ct") MB/s"
python3 -c "print(f'ratio mint/cp: {$it/$ct:.2f}x (target <= 2x)')"
