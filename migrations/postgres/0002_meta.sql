-- Service-wide values kept across restarts (e.g. the hash of the operator
-- token generated on first start).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
