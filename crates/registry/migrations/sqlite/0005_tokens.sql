-- API and enrollment tokens (only a hash of each secret is kept), and
-- pending certificate rotations (EST re-enrollment overlap).
CREATE TABLE tokens (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    batch TEXT,
    hash TEXT NOT NULL UNIQUE,
    created BIGINT NOT NULL,
    revoked_at BIGINT,
    last_used BIGINT
);

CREATE TABLE rotations (
    old_id TEXT PRIMARY KEY,
    new_id TEXT NOT NULL,
    retire_at BIGINT NOT NULL,
    done BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX rotations_due ON rotations (done, retire_at);
