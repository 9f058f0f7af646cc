-- Web Push subscriptions: several per volunteer (a phone, a tablet), each
-- endpoint once; removed when the push service says it is gone (404/410)
-- or the volunteer unsubscribes.
CREATE TABLE push_subscriptions (
    endpoint     TEXT PRIMARY KEY NOT NULL,
    volunteer_id TEXT NOT NULL REFERENCES volunteers (id),
    p256dh       TEXT NOT NULL,
    auth         TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX push_subscriptions_by_volunteer ON push_subscriptions (volunteer_id, created_at);
