-- idmint registry, schema 7 (SQLite): offline batch authorizations and the
-- issuance log records reconciled from offline stations.

-- One row per `idmint batch authorize`: the signed batch limits the factory
-- received, and the batch CA (a row of `cas`, kind 'batch', no key kept).
CREATE TABLE offline_authorizations (
    batch TEXT PRIMARY KEY NOT NULL,
    authorization_id TEXT NOT NULL UNIQUE,
    batch_ca TEXT NOT NULL,
    serial_first BIGINT NOT NULL,
    serial_last BIGINT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    limits TEXT NOT NULL,
    signature TEXT NOT NULL,
    key_kind TEXT NOT NULL,
    created BIGINT NOT NULL
);

-- Every issuance log record a reconcile accepted, by batch and position, so
-- a second reconcile of the same (or a longer) log registers nothing twice
-- and a log that disagrees with an earlier one is caught.
CREATE TABLE offline_log_records (
    batch TEXT NOT NULL,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    event TEXT NOT NULL,
    certificate_id TEXT,
    serial BIGINT,
    hw_id TEXT,
    finding TEXT,
    reconciled BIGINT NOT NULL,
    PRIMARY KEY (batch, seq)
);
CREATE INDEX offline_log_records_certificate ON offline_log_records (certificate_id);
