-- idmint registry, schema 2 (PostgreSQL): per-device firmware images (batch mint).

-- Device serial numbers handed out per prefix, so device ids built from a
-- prefix never repeat across batches.
CREATE TABLE serial_counters (
    prefix TEXT PRIMARY KEY NOT NULL,
    next BIGINT NOT NULL
);

-- One row per device image of a mint batch, written in the same transaction
-- as the device's thing and certificate.
CREATE TABLE mint_items (
    device_id TEXT PRIMARY KEY NOT NULL,
    batch TEXT NOT NULL,
    number BIGINT NOT NULL,
    thing TEXT NOT NULL,
    certificate_id TEXT NOT NULL,
    image_file TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    state TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE INDEX mint_items_batch ON mint_items (batch, number);
