-- idmint registry, schema 14 (SQLite): what an offline batch CA signed at
-- `batch authorize`, before its key left the maker, so that the maker can
-- publish revocations of the certificates the factory issues (issue 14).
-- One row per batch CA; batches authorized before this have none.
CREATE TABLE offline_revocation_signers (
    -- The batch CA (a row of `cas`, kind 'batch').
    ca TEXT PRIMARY KEY NOT NULL,
    -- The delegated OCSP responder certificate (DER) and its key, PKCS#8
    -- encrypted under the CA passphrase like `cas.key_ref`.
    ocsp_responder_der BLOB NOT NULL,
    ocsp_responder_key TEXT NOT NULL,
    -- The CRL signer certificate (the batch CA's subject, keyUsage cRLSign)
    -- and its key, encrypted the same way.
    crl_signer_der BLOB NOT NULL,
    crl_signer_key TEXT NOT NULL,
    -- The empty CRL the batch CA signed for its lifetime that covers the
    -- CRL signer certificate (for `-crl_check_all`), and the URI it is
    -- scoped to.
    signer_status_url TEXT NOT NULL,
    signer_status_crl BLOB NOT NULL,
    created BIGINT NOT NULL
);
