-- Fleet provisioning (scenario 5): provisioning templates, claim
-- certificates, certificate ownership tokens (only a hash of each is kept),
-- thing groups, policies and the built-in allow-list hook.
CREATE TABLE templates (
    name TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    hook TEXT,
    hook_timeout_ms BIGINT NOT NULL DEFAULT 5000,
    enabled BIGINT NOT NULL DEFAULT 1,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL
);

CREATE TABLE claims (
    certificate_id TEXT PRIMARY KEY NOT NULL,
    templates TEXT NOT NULL,
    rate_per_minute BIGINT NOT NULL,
    created BIGINT NOT NULL
);

CREATE TABLE ownership_tokens (
    token_sha256 TEXT PRIMARY KEY NOT NULL,
    certificate_id TEXT NOT NULL UNIQUE,
    claim_certificate_id TEXT NOT NULL,
    expires BIGINT NOT NULL,
    used BIGINT
);
CREATE INDEX ownership_tokens_expires ON ownership_tokens (used, expires);

CREATE TABLE thing_groups (
    thing TEXT NOT NULL,
    group_name TEXT NOT NULL,
    PRIMARY KEY (thing, group_name)
);

CREATE TABLE policies (
    name TEXT PRIMARY KEY NOT NULL,
    document TEXT,
    created BIGINT NOT NULL
);

CREATE TABLE certificate_policies (
    certificate_id TEXT NOT NULL,
    policy TEXT NOT NULL,
    PRIMARY KEY (certificate_id, policy)
);

CREATE TABLE allow_list (
    template TEXT NOT NULL,
    serial TEXT NOT NULL,
    PRIMARY KEY (template, serial)
);
