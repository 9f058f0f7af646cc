-- Broker logins (the access table). Device, volunteer and gateway ids share
-- one namespace: each id is claimed here once, by one kind, in the same
-- transaction that registers it.
CREATE TABLE principals (
    id          TEXT PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('device', 'volunteer', 'gateway')),
    -- "$6$<salt>$<hash>": salted SHA-512 of the MQTT password (a band's or
    -- gateway's secret, a volunteer's token); NULL: no MQTT login yet.
    secret_hash TEXT,
    changed_at  BIGINT
);
INSERT OR IGNORE INTO principals (id, kind) SELECT device_id, 'device' FROM devices;
INSERT OR IGNORE INTO principals (id, kind) SELECT id, 'volunteer' FROM volunteers;
