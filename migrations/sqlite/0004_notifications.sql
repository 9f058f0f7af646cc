-- Notifications due (the outbox): written in the same transaction as the
-- change that caused them, delivered after the commit by the notifier,
-- deleted once delivered or given up; rescheduled (due_at) on a failure
-- worth retrying. What survives a restart is delivered after it.
CREATE TABLE notifications (
    id         TEXT PRIMARY KEY NOT NULL,
    alert_id   TEXT NOT NULL,
    -- "volunteer:<id>", "operators" or "contacts:<senior id>"
    audience   TEXT NOT NULL,
    -- offer, escalated, response_breached, arrival_breached, pressed,
    -- accepted, on_scene, resolved
    event      TEXT NOT NULL,
    body       TEXT NOT NULL,
    due_at     BIGINT NOT NULL,
    attempts   BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX notifications_due ON notifications (due_at);

-- A `notified` timeline event says which channel tried whom, and how it went.
ALTER TABLE timeline ADD COLUMN channel TEXT;
ALTER TABLE timeline ADD COLUMN recipient TEXT;
