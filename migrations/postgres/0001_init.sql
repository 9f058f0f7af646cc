-- onepress schema, PostgreSQL. Times are epoch milliseconds (BIGINT), enums
-- their `as_str()` text, lists JSON text. Kept in step with
-- migrations/sqlite/0001_init.sql: only the timeline's sequence differs.

CREATE TABLE seniors (
    id       TEXT PRIMARY KEY NOT NULL,
    name     TEXT NOT NULL,
    address  TEXT,
    home_lat DOUBLE PRECISION,
    home_lon DOUBLE PRECISION,
    grid     TEXT,
    notes    TEXT,
    contacts TEXT NOT NULL DEFAULT '[]'
);

CREATE TABLE devices (
    device_id TEXT PRIMARY KEY NOT NULL,
    senior_id TEXT NOT NULL REFERENCES seniors (id),
    last_seen BIGINT,
    battery   BIGINT,
    lat       DOUBLE PRECISION,
    lon       DOUBLE PRECISION
);
CREATE INDEX devices_by_senior ON devices (senior_id);

CREATE TABLE volunteers (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    phone       TEXT,
    grid        TEXT,
    skills      TEXT NOT NULL DEFAULT '[]',
    on_duty     BOOLEAN NOT NULL DEFAULT FALSE,
    lat         DOUBLE PRECISION,
    lon         DOUBLE PRECISION,
    location_at BIGINT,
    -- The alert this volunteer is claimed for; set only by the conditional
    -- update in `commit`.
    busy_alert  TEXT
);

CREATE TABLE volunteer_tokens (
    volunteer_id TEXT PRIMARY KEY NOT NULL REFERENCES volunteers (id),
    token_hash   TEXT NOT NULL UNIQUE
);

CREATE TABLE alerts (
    id                TEXT PRIMARY KEY NOT NULL,
    device_id         TEXT NOT NULL REFERENCES devices (device_id),
    senior_id         TEXT NOT NULL REFERENCES seniors (id),
    kind              TEXT NOT NULL CHECK (kind IN ('sos', 'fall')),
    state             TEXT NOT NULL
        CHECK (state IN ('open', 'offered', 'accepted', 'on_scene', 'resolved', 'cancelled')),
    lat               DOUBLE PRECISION,
    lon               DOUBLE PRECISION,
    pressed_at        BIGINT NOT NULL,
    received_at       BIGINT NOT NULL,
    volunteer_id      TEXT REFERENCES volunteers (id),
    accepted_at       BIGINT,
    on_scene_at       BIGINT,
    resolved_at       BIGINT,
    cancelled_at      BIGINT,
    response_deadline BIGINT NOT NULL,
    arrival_deadline  BIGINT NOT NULL,
    response_breached BOOLEAN NOT NULL,
    arrival_breached  BOOLEAN NOT NULL,
    escalated         BOOLEAN NOT NULL,
    arrival_at_risk   BOOLEAN NOT NULL,
    event_id          TEXT NOT NULL,
    outcome           TEXT
);
CREATE INDEX alerts_active_by_state ON alerts (state)
    WHERE state IN ('open', 'offered', 'accepted', 'on_scene');
CREATE INDEX alerts_by_pressed_at ON alerts (pressed_at, id);

CREATE TABLE offers (
    alert_id     TEXT NOT NULL REFERENCES alerts (id),
    volunteer_id TEXT NOT NULL REFERENCES volunteers (id),
    offered_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    distance_m   BIGINT NOT NULL,
    eta_s        BIGINT NOT NULL,
    -- NULL while pending.
    outcome      TEXT CHECK (outcome IN ('accepted', 'declined', 'expired', 'withdrawn')),
    closed_at    BIGINT,
    PRIMARY KEY (alert_id, volunteer_id)
);
CREATE INDEX offers_pending_by_volunteer ON offers (volunteer_id) WHERE outcome IS NULL;

-- Append-only; `seq` gives the order.
CREATE TABLE timeline (
    seq          BIGSERIAL PRIMARY KEY,
    alert_id     TEXT NOT NULL REFERENCES alerts (id),
    at           BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    volunteer_id TEXT,
    distance_m   BIGINT,
    eta_s        BIGINT,
    actor        TEXT,
    reason       TEXT,
    outcome      TEXT,
    note         TEXT,
    event_id     TEXT
);
CREATE INDEX timeline_by_alert ON timeline (alert_id, seq);

CREATE TABLE ingested_events (
    device_id TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    alert_id  TEXT REFERENCES alerts (id),
    at        BIGINT NOT NULL,
    PRIMARY KEY (device_id, event_id)
);
CREATE INDEX ingested_events_by_alert ON ingested_events (alert_id);
