-- A CA of ours revoked by `idmint ca revoke` (issue 14): it goes on its
-- parent's CRL, OCSP answers revoked for it, it issues nothing more, and
-- certificates chaining through it are refused.
ALTER TABLE cas ADD COLUMN revoked_at BIGINT;
ALTER TABLE cas ADD COLUMN revocation_reason TEXT;
