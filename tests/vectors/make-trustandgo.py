# A signed Trust&GO manifest as Microchip documents it, made with python's
# `cryptography` (not idmint): vendor root CA -> signer CA -> device
# certificates (x5c: [device, signer CA]); the manifest log signer
# certificate under the root signs each element as a flattened JWS, ES256,
# raw r||s; kid = the log signer's SKI, x5t#S256 = SHA-256 of its DER.
import base64, datetime, hashlib, json, os, sys
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
start = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
end = datetime.datetime(2049, 12, 31, tzinfo=datetime.timezone.utc)

def name(cn, o="Microchip Technology Inc"):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])

def cert(subject, key, issuer, issuer_key, ca, serial):
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
         .public_key(key.public_key()).serial_number(serial)
         .not_valid_before(start).not_valid_after(end)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False))
    if ca:
        b = (b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True))
    else:
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
    return b.sign(issuer_key, hashes.SHA256())

pem = lambda c: c.public_bytes(serialization.Encoding.PEM).decode()
root_key = ec.generate_private_key(ec.SECP256R1())
root = cert(name("Crypto Authentication Root CA 002"), root_key, name("Crypto Authentication Root CA 002"), root_key, True, 0x4a11)
signer_key = ec.generate_private_key(ec.SECP256R1())
signer = cert(name("Crypto Authentication Signer 2C00"), signer_key, root.subject, root_key, True, 0x2c00)
log_key = ec.generate_private_key(ec.SECP256R1())
log = cert(name("Log Signer 001"), log_key, root.subject, root_key, False, 0x1001)
open(f"{out}/root.pem", "w").write(pem(root))
open(f"{out}/signer-ca.pem", "w").write(pem(signer))
open(f"{out}/log-signer.pem", "w").write(pem(log))

kid = log.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
x5t = hashlib.sha256(log.public_bytes(serialization.Encoding.DER)).digest()
protected = b64u(json.dumps({"typ": "JWT", "alg": "ES256", "kid": b64u(kid), "x5t#S256": b64u(x5t)}).encode())
org = {"organizationName": "Microchip Technology Inc", "organizationalUnitName": "Secure Products Group"}
elements = []
for n, uid in enumerate(["0123a1b2c3d4e5f601", "0123a1b2c3d4e5f602", "0123a1b2c3d4e5f603"]):
    key = ec.generate_private_key(ec.SECP256R1())
    dev = cert(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Microchip Technology Inc"),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"sn{uid}")]),
               key, signer.subject, signer_key, False, 0x7000 + n)
    nums = key.public_key().public_numbers()
    payload = {"version": 1, "model": "ATECC608B", "partNumber": "ATECC608B-TNGTLSU-G",
               "manufacturer": org, "provisioner": org,
               "distributor": {"organizationName": "Microchip Technology Inc", "organizationalUnitName": "Microchip Direct"},
               "groupId": "359SCE55NV38H3CB", "provisioningTimestamp": "2025-03-04T05:06:07.000Z",
               "uniqueId": uid,
               "publicKeySet": {"keys": [{"kid": "0", "kty": "EC", "crv": "P-256",
                   "x": b64u(nums.x.to_bytes(32, "big")), "y": b64u(nums.y.to_bytes(32, "big")),
                   "x5c": [base64.b64encode(dev.public_bytes(serialization.Encoding.DER)).decode(),
                           base64.b64encode(signer.public_bytes(serialization.Encoding.DER)).decode()]}]}}
    body = b64u(json.dumps(payload).encode())
    r, s = decode_dss_signature(log_key.sign(f"{protected}.{body}".encode(), ec.ECDSA(hashes.SHA256())))
    elements.append({"payload": body, "protected": protected, "header": {"uniqueId": uid},
                     "signature": b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))})
json.dump(elements, open(f"{out}/manifest.json", "w"), indent=2)
