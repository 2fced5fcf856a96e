#!/usr/bin/env bash
# Station benchmark: one station against 8 simulated devices over TCP on
# loopback. Reports devices/s and, per device, the time spent in the station
# (total minus waiting on device responses) vs in the device.
# Target: the station adds < 2 ms per device.
#   bash bench/station.sh [ROUNDS]   (each round provisions 8 devices in parallel)
set -euo pipefail
ROUNDS=${1:-5}
N=8
ROOT=$(cd "$(dirname "$0")/.." && pwd)
(cd "$ROOT" && cargo build --release -q -p idmint)
BIN="$ROOT/target/release/idmint"
W=$(mktemp -d /tmp/idmint-bench-station.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
export IDMINT_DATA="$W/data" IDMINT_CA_PASSPHRASE="bench-passphrase"
"$BIN" init --org "Bench Co" >/dev/null 2>&1
b=$("$BIN" batch create --product bench --count $((N * ROUNDS)))
free() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
start=$(date +%s.%N)
: >"$W/lines.json"
for r in $(seq 1 "$ROUNDS"); do
  devs=()
  for i in $(seq 1 $N); do
    p=$(free)
    "$BIN" devsim --listen "tcp://127.0.0.1:$p" --state "$W/dev-$r-$i" --hw-id "BENCH-$r-$i" 2>"$W/sim-$r-$i.log" &
    pids+=($!)
    devs+=(--device "tcp://127.0.0.1:$p")
  done
  for i in $(seq 1 $N); do
    for _ in $(seq 1 100); do grep -q "listening on" "$W/sim-$r-$i.log" 2>/dev/null && break; sleep 0.02; done
  done
  t0=$(date +%s.%N)
  "$BIN" station run --batch "$b" "${devs[@]}" --json >>"$W/lines.json"
  t1=$(date +%s.%N)
  echo "$t0 $t1" >>"$W/rounds"
done
python3 - "$W/lines.json" "$W/rounds" "$N" <<'PY'
import json, sys, statistics as st
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rounds = [tuple(map(float, l.split())) for l in open(sys.argv[2])]
n = int(sys.argv[3])
ok = [l for l in lines if l["ok"]]
wall = sum(b - a for a, b in rounds)
print(f"devices provisioned: {len(ok)} of {len(lines)} ({len(rounds)} rounds of {n} in parallel)")
print(f"throughput: {len(ok)/wall:.1f} devices/s (station process wall time incl. start-up, {wall:.2f} s)")
for k, name in (("totalMs", "total per device"), ("deviceMs", "in the device (connect + responses)"), ("stationMs", "in the station (total - device)")):
    v = [l[k] for l in ok]
    print(f"{name:40s} median {st.median(v):7.2f} ms  p90 {sorted(v)[int(len(v)*0.9)-1]:7.2f} ms  max {max(v):7.2f} ms")
med = st.median(l["stationMs"] for l in ok)
print(f"target: station adds < 2 ms per device: {'MET' if med < 2 else 'NOT MET'} (median {med:.2f} ms)")
PY
