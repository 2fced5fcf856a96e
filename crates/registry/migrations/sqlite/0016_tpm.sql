-- idmint registry, schema 16: TPM 2.0 attestation (issue 16). A session
-- lives from /api/v1/tpm/attest to /api/v1/tpm/activate: what the device
-- sent, the SHA-256 of the secret idmint wrapped to its EK (never the secret)
-- and the nonce its TPM2_Certify must carry; it is spent once, by the first
-- activation, whatever its outcome.
CREATE TABLE tpm_sessions (
    id TEXT PRIMARY KEY NOT NULL,
    batch_id TEXT NOT NULL,
    -- SHA-256 (hex) of the EK's SubjectPublicKeyInfo.
    ek_sha256 TEXT NOT NULL,
    ak_public BLOB NOT NULL,
    identity_public BLOB NOT NULL,
    csr BLOB NOT NULL,
    secret_sha256 TEXT NOT NULL,
    nonce BLOB NOT NULL,
    created BIGINT NOT NULL,
    expires BIGINT NOT NULL,
    spent BIGINT
);
-- One identity per endorsement key per batch: a second is a clone.
CREATE TABLE tpm_identities (
    batch_id TEXT NOT NULL,
    ek_sha256 TEXT NOT NULL,
    certificate_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (batch_id, ek_sha256)
);
