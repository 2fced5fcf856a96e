-- Access: roles are grants (principal x role x scope), never thing attributes;
-- EST bootstrap is opt-in per registered CA, and each bootstrap certificate
-- enrolls once.
CREATE TABLE grants (
    principal TEXT NOT NULL,
    role TEXT NOT NULL,
    scope TEXT NOT NULL,
    created BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (principal, role, scope)
);

ALTER TABLE cas ADD COLUMN est_bootstrap BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cas ADD COLUMN est_bootstrap_batch TEXT;

CREATE TABLE bootstrap_enrollments (
    bootstrap_id TEXT PRIMARY KEY,
    certificate_id TEXT NOT NULL,
    thing TEXT NOT NULL,
    enrolled BIGINT NOT NULL
);

-- One-time conversions done by the application, by name.
CREATE TABLE conversions (
    name TEXT PRIMARY KEY,
    done BIGINT NOT NULL
);
