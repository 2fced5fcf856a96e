-- idmint registry, schema 1 (SQLite)
CREATE TABLE cas (
    name TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    parent TEXT,
    certificate_der BLOB NOT NULL,
    certificate_id TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    key_type TEXT,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    key_ref TEXT,
    signer_der BLOB,
    auto_register BIGINT NOT NULL DEFAULT 0,
    template TEXT,
    crl_number BIGINT NOT NULL DEFAULT 0,
    created BIGINT NOT NULL
);

CREATE TABLE things (
    name TEXT PRIMARY KEY NOT NULL,
    thing_type TEXT,
    attributes TEXT NOT NULL DEFAULT '{}',
    device_id TEXT,
    batch TEXT,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL
);
CREATE UNIQUE INDEX things_device_id ON things (device_id) WHERE device_id IS NOT NULL;
CREATE INDEX things_batch ON things (batch);

CREATE TABLE certificates (
    id TEXT PRIMARY KEY NOT NULL,
    serial TEXT NOT NULL,
    ca TEXT NOT NULL,
    thing TEXT,
    status TEXT NOT NULL,
    subject TEXT NOT NULL,
    key_type TEXT,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    der BLOB NOT NULL,
    public_key_sha256 TEXT NOT NULL,
    batch TEXT,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    revoked_at BIGINT,
    revocation_reason TEXT
);
CREATE UNIQUE INDEX certificates_ca_serial ON certificates (ca, serial);
CREATE INDEX certificates_thing ON certificates (thing);
CREATE INDEX certificates_status ON certificates (status);
CREATE INDEX certificates_public_key ON certificates (public_key_sha256);
CREATE INDEX certificates_batch ON certificates (batch);

CREATE TABLE batches (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    product TEXT NOT NULL,
    quota BIGINT NOT NULL,
    issued BIGINT NOT NULL DEFAULT 0,
    spoiled BIGINT NOT NULL DEFAULT 0,
    profile TEXT NOT NULL,
    ca TEXT NOT NULL,
    factory TEXT,
    state TEXT NOT NULL,
    allow_inject BIGINT NOT NULL DEFAULT 0,
    params TEXT NOT NULL DEFAULT '{}',
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL
);

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY NOT NULL,
    time BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

CREATE TABLE chain_head (
    id BIGINT PRIMARY KEY NOT NULL,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO chain_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
