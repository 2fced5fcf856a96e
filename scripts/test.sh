#!/usr/bin/env bash
# The README's test command. On a fresh Debian machine it installs what the
# tests drive (openssl, sqlite3, PostgreSQL, gcc + binutils, curl, jq, SoftHSM2,
# age, the mosquitto broker and clients; paho-mqtt and Espressif's
# esp-secure-cert-tool and esp-idf-nvs-partition-gen from PyPI), starts a throw-away
# PostgreSQL server on loopback, and runs the whole suite with every variant
# required: with IDMINT_REQUIRE_ALL=1 (and in CI, CI=true) a test whose real
# part is missing fails, naming it, instead of skipping (idmint-testkit's
# `skip`). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

packages=(openssl sqlite3 postgresql gcc binutils curl jq softhsm2 age ca-certificates mosquitto mosquitto-clients swtpm swtpm-tools tpm2-tools libtss2-tcti-swtpm0)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "test: installing ${missing[*]}"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# paho-mqtt: the Python MQTT 3.1.1 and 5 device in the fleet provisioning tests.
python3 -c 'import paho.mqtt' 2>/dev/null \
  || python3 -m pip install -q --disable-pip-version-check paho-mqtt==2.1.0
# Espressif's own tools, the independent readers of the ESP32 partitions
# (crates/slot/tests/espressif_tools.rs, crates/cli/tests/batch_mint.rs).
esp_tools='from importlib.metadata import version as v
assert v("esp-secure-cert-tool") == "2.6.1" and v("esp-idf-nvs-partition-gen") == "0.3.0"'
python3 -c "$esp_tools" 2>/dev/null \
  || python3 -m pip install -q --disable-pip-version-check esp-secure-cert-tool==2.6.1 esp-idf-nvs-partition-gen==0.3.0

eval "$(scripts/pg-test-server.sh start)"
trap 'scripts/pg-test-server.sh stop' EXIT
echo "test: PostgreSQL test server at ${IDMINT_TEST_POSTGRES}"

export IDMINT_REQUIRE_ALL=1
cargo test --workspace "$@"
