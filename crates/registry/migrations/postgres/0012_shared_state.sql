-- Servers that share this store share their state through it (issue 12).
-- Requests per claim certificate in its current one-minute window, counted
-- here so a claim's rate limit holds across servers; rows of windows that
-- ended are deleted by the servers' sweep.
CREATE TABLE claim_requests (
    certificate_id TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    requests BIGINT NOT NULL
);
CREATE INDEX claim_requests_window ON claim_requests (window_start);

-- `$aws/events/...` events too large for a NOTIFY payload: the notification
-- names the row; rows older than a few minutes are deleted.
CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BYTEA NOT NULL,
    created BIGINT NOT NULL
);
CREATE INDEX events_created ON events (created);
