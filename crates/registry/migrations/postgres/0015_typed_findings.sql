-- Offline findings stored typed: a reconciled record's finding kind
-- (`duplicate`, `excess`) in a column of its own, and `finding` holding
-- only the message. Earlier rows held "kind: message" in `finding`.
ALTER TABLE offline_log_records ADD COLUMN finding_kind TEXT;
UPDATE offline_log_records SET finding_kind = 'duplicate', finding = substr(finding, 12)
  WHERE finding LIKE 'duplicate: %';
UPDATE offline_log_records SET finding_kind = 'excess', finding = substr(finding, 9)
  WHERE finding LIKE 'excess: %';
