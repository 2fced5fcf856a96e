-- idmint registry, schema 10 (SQLite): clone refusal backed by the
-- store, and the station policy of a batch.

-- A live certificate (ACTIVE, INACTIVE or PENDING_ACTIVATION) that a newer
-- certificate of the same key for the same thing replaced names it here
-- (a renewal with the same key: RFC 7030 simplereenroll allows it). The
-- replaced certificate keeps its status (its rotation retires it); only
-- current certificates take part in the unique index below.
ALTER TABLE certificates ADD COLUMN superseded_by TEXT;

-- Registries written before this schema may hold the same key live more
-- than once: every such certificate but the newest is marked superseded by
-- 'migration-0010' so the index can be built (they stay listed, with their
-- status, for the operator to review: `idmint cert list`).
UPDATE certificates SET superseded_by = 'migration-0010'
WHERE status IN ('ACTIVE', 'INACTIVE', 'PENDING_ACTIVATION')
  AND EXISTS (
    SELECT 1 FROM certificates newer
    WHERE newer.public_key_sha256 = certificates.public_key_sha256
      AND newer.status IN ('ACTIVE', 'INACTIVE', 'PENDING_ACTIVATION')
      AND (newer.created > certificates.created
           OR (newer.created = certificates.created AND newer.id > certificates.id))
  );

-- At most one current live certificate per public key: two concurrent
-- issuances of one key cannot both commit.
CREATE UNIQUE INDEX certificates_live_public_key ON certificates (public_key_sha256)
WHERE status IN ('ACTIVE', 'INACTIVE', 'PENDING_ACTIVATION') AND superseded_by IS NULL;

-- A batch's station policy (remote stations: POST .../certificates): issue
-- PENDING_ACTIVATION until the station confirms the device, and refuse a
-- thing (hardware id) that already holds a live certificate. A station's
-- request may ask for more, never for less. The defaults are what remote
-- stations asked for before the policy was the batch's.
ALTER TABLE batches ADD COLUMN pending_activation BIGINT NOT NULL DEFAULT 1;
ALTER TABLE batches ADD COLUMN refuse_clones BIGINT NOT NULL DEFAULT 1;
