#!/usr/bin/env bash
# Regenerates the EST, OCSP and fleet-provisioning test vectors in this
# folder with openssl and python3 (the offline issuance log comes from
# `idmint batch authorize` and `idmint station --offline`; see README.md).
# The files are checked in; run this only to replace them.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p est ocsp fleet

# A CA and a device certificate, as a maker's openssl scripts make them.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$tmp/ca.key" -out ocsp/ca.pem -days 3650 \
  -subj "/O=Example Devices/CN=Example Device CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/dev.key" \
  -out "$tmp/dev.csr" -subj "/O=Example Devices/OU=line-2/CN=sensor-0042/serialNumber=0042" 2>/dev/null
openssl x509 -req -in "$tmp/dev.csr" -CA ocsp/ca.pem -CAkey "$tmp/ca.key" -days 365 \
  -set_serial 0x1d2c3b4a59687766 -out fleet/device-cert.pem 2>/dev/null
cp fleet/device-cert.pem ocsp/device.pem

# EST simpleenroll bodies: a PKCS#10 CSR in DER, base64, as
#   curl --data-binary @csr.b64 -H 'Content-Type: application/pkcs10' …/simpleenroll
# sends it (openssl's base64 wraps at 64 columns; RFC 7030 allows either).
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/p256.key" \
  -subj "/CN=est-device-0001" -outform DER -out "$tmp/p256.der" 2>/dev/null
openssl base64 -in "$tmp/p256.der" -out est/simpleenroll-p256.b64
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout "$tmp/p384.key" \
  -subj "/O=Example Devices/CN=est-device-0002" -addext "subjectAltName=DNS:est-device-0002.local" \
  -outform DER -out "$tmp/p384.der" 2>/dev/null
openssl base64 -A -in "$tmp/p384.der" -out est/simpleenroll-p384-oneline.b64
openssl req -new -newkey ed25519 -nodes -keyout "$tmp/ed.key" -subj "/CN=est-device-0003" \
  -outform DER -out "$tmp/ed.der" 2>/dev/null
openssl base64 -in "$tmp/ed.der" -out est/simpleenroll-ed25519.b64
openssl req -new -newkey rsa:2048 -nodes -keyout "$tmp/rsa.key" -subj "/CN=est-device-0004" \
  -outform DER -out "$tmp/rsa.der" 2>/dev/null
openssl base64 -in "$tmp/rsa.der" -out est/simplereenroll-rsa2048.b64
# A body in CRLF lines, as some EST clients send it.
sed 's/$/\r/' est/simpleenroll-p256.b64 > est/simpleenroll-p256-crlf.b64

# OCSP requests, as `openssl ocsp -reqout` writes them.
openssl ocsp -issuer ocsp/ca.pem -cert ocsp/device.pem -reqout ocsp/request-nonce.der 2>/dev/null
openssl ocsp -issuer ocsp/ca.pem -cert ocsp/device.pem -no_nonce -reqout ocsp/request-no-nonce.der 2>/dev/null
openssl ocsp -sha256 -issuer ocsp/ca.pem -cert ocsp/device.pem -no_nonce \
  -reqout ocsp/request-sha256.der 2>/dev/null
openssl ocsp -issuer ocsp/ca.pem -serial 0x1d2c3b4a59687766 -serial 0x01 -no_nonce \
  -reqout ocsp/request-two-serials.der 2>/dev/null

# AWS IoT fleet provisioning request payloads, JSON as the AWS IoT Device
# SDKs send them and CBOR as the embedded C SDK's tinycbor serializer does
# (definite-length maps of text strings).
openssl req -new -key "$tmp/dev.key" -subj "/CN=sensor-0042" -out "$tmp/fleet.csr" 2>/dev/null
python3 - "$tmp/fleet.csr" <<'PY'
import json, sys
csr = open(sys.argv[1]).read()
token = "eyJ2ZXJzaW9uIjoiMjAxOS0xMC0wMSIsImNvcnJlbGF0aW9uSWQiOiIwMDAwIn0.ownership-token-example"
def cbor_head(major, n):
    if n < 24: return bytes([major << 5 | n])
    if n < 256: return bytes([major << 5 | 24, n])
    if n < 65536: return bytes([major << 5 | 25]) + n.to_bytes(2, "big")
    return bytes([major << 5 | 26]) + n.to_bytes(4, "big")
def cbor(v):
    if isinstance(v, str):
        b = v.encode(); return cbor_head(3, len(b)) + b
    if isinstance(v, dict):
        return cbor_head(5, len(v)) + b"".join(cbor(k) + cbor(x) for k, x in v.items())
    raise TypeError(v)
payloads = {
    "create-keys": {},
    "create-from-csr": {"certificateSigningRequest": csr},
    "register-thing": {"certificateOwnershipToken": token,
                       "parameters": {"SerialNumber": "0042", "Site": "plant-7"}},
}
for name, value in payloads.items():
    with open(f"fleet/{name}.json", "w") as f:
        json.dump(value, f)
    with open(f"fleet/{name}.cbor", "wb") as f:
        f.write(cbor(value))
PY

# Manifests in the three stream formats: a Trust&GO-shaped JSON array of
# flattened-JWS signed secure elements (the device certificate in x5c; the
# signature is not a valid one), JSON lines in AWS bulk-registration shape,
# and a tar of PEM certificates.
mkdir -p manifest
python3 - <<'PY'
import base64, json, tarfile, io
pem = open("fleet/device-cert.pem").read()
der_b64 = "".join(l for l in pem.splitlines() if "-----" not in l)
b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def element(uid):
    payload = {"version": 1, "model": "ATECC608B", "partNumber": "ATECC608B-TNGTLSU",
               "manufacturer": {"organizationName": "Microchip Technology Inc",
                                "organizationalUnitName": "Secure Products Group"},
               "provisioner": {"organizationName": "Microchip Technology Inc",
                               "organizationalUnitName": "Secure Products Group"},
               "distributor": {"organizationName": "Microchip Technology Inc",
                               "organizationalUnitName": "Microchip Direct"},
               "groupId": "359SCE55NV38H3CB", "uniqueId": uid,
               "publicKeySet": {"keys": [{"kid": "0", "kty": "EC", "crv": "P-256",
                                          "x": b64u(bytes(32)), "y": b64u(bytes(32)),
                                          "x5c": [der_b64]}]}}
    protected = {"typ": "JWT", "alg": "ES256", "kid": b64u(bytes(20)),
                 "x5t#S256": b64u(bytes(32))}
    return {"payload": b64u(json.dumps(payload).encode()),
            "protected": b64u(json.dumps(protected).encode()),
            "header": {"uniqueId": uid}, "signature": b64u(bytes(64))}
with open("manifest/trustandgo.json", "w") as f:
    json.dump([element("0123a1b2c3d4e5f601"), element("0123a1b2c3d4e5f602")], f, indent=2)
with open("manifest/bulk.jsonl", "w") as f:
    for n in ("0042", "0043"):
        f.write(json.dumps({"certificatePem": pem, "parameters": {"ThingName": f"sensor-{n}"}}) + "\n")
with tarfile.open("manifest/certificates.tar", "w", format=tarfile.USTAR_FORMAT) as t:
    for name in ("sensor-0042.pem", "ca.pem"):
        data = open("fleet/device-cert.pem" if "sensor" in name else "ocsp/ca.pem", "rb").read()
        info = tarfile.TarInfo(name); info.size = len(data); info.mtime = 1765000000
        t.addfile(info, io.BytesIO(data))
PY

# A signed Trust&GO manifest made by another implementation than idmint's
# own vendor simulator (python's `cryptography`): vendor root, signer CA,
# manifest log signer, three secure elements with valid ES256 signatures.
python3 make-trustandgo.py manifest/trustandgo-signed
