-- idmint registry, schema 8 (PostgreSQL): the issuer chains
-- imported certificates were verified through, so an export carries what a
-- registry that trusts only the vendor root needs to verify them again.

-- Each distinct intermediate CA certificate, once, by certificate id
-- (SHA-256 of its DER, hex).
CREATE TABLE intermediate_certificates (
    id TEXT PRIMARY KEY NOT NULL,
    subject TEXT NOT NULL,
    der BYTEA NOT NULL,
    created BIGINT NOT NULL
);

-- A registered certificate's issuer chain: position 0 is the certificate's
-- issuer, each next one the issuer of the one before. The rows go with
-- their certificate when it is deleted.
CREATE TABLE certificate_chains (
    certificate TEXT NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    intermediate TEXT NOT NULL REFERENCES intermediate_certificates (id),
    PRIMARY KEY (certificate, position)
);
