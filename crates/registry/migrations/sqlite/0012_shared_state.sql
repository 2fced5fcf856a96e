-- Servers that share this store share their state through it (issue 12).
-- Requests per claim certificate in its current one-minute window, counted
-- here so a claim's rate limit holds across servers (and processes); rows of
-- windows that ended are deleted by the servers' sweep. (Events cross
-- servers only on PostgreSQL, by LISTEN/NOTIFY: no events table here.)
CREATE TABLE claim_requests (
    certificate_id TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    requests BIGINT NOT NULL
);
CREATE INDEX claim_requests_window ON claim_requests (window_start);
