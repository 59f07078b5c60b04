-- Version 12: operating a long-lived server (issue 19): deleting runs (akoflow delete, gc,
-- AKOFLOW_RETENTION) and notifications (spec.notify, AKOFLOW_NOTIFY_URL).
--
-- What a deleted run left on a backend that could not be removed yet (the cluster was out of
-- reach): written in the same transaction that deletes the run's rows, so it is never lost,
-- and removed once the runtime has removed the run's objects (every later gc tries again).
-- No foreign key: the run's rows are gone. The scope names the run's objects there (its
-- attempt dir, which held it, is deleted too).
CREATE TABLE gc_remote (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id     INTEGER NOT NULL,
    workflow_name   TEXT    NOT NULL,
    runtime         TEXT    NOT NULL,
    scope           TEXT    NOT NULL,
    namespace       TEXT    NOT NULL,
    nodes           TEXT    NOT NULL DEFAULT '[]',  -- JSON: the nodes its attempts ran on
    recorded_at     REAL    NOT NULL,
    tries           INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    UNIQUE (runtime, scope, workflow_id)
);
-- Notifications: an event is recorded by these triggers in the very transaction that records
-- a run's end or an activity's failure, whichever engine process writes it, so an engine
-- killed right after cannot lose it. A sender turns each event into one delivery per webhook
-- that wants it (the body made once: every retry sends the same signed bytes).
CREATE TABLE notify_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id     INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    activity_id     INTEGER REFERENCES activities(id) ON DELETE CASCADE,
    event           TEXT    NOT NULL,
    created_at      REAL    NOT NULL
);
CREATE TRIGGER notify_workflow_ended AFTER UPDATE OF state ON workflows
WHEN NEW.state IN ('succeeded', 'failed', 'cancelled')
     AND OLD.state NOT IN ('succeeded', 'failed', 'cancelled')
BEGIN
    INSERT INTO notify_events (workflow_id, activity_id, event, created_at)
    VALUES (NEW.id, NULL, 'workflow.' || NEW.state, (julianday('now') - 2440587.5) * 86400.0);
END;
CREATE TRIGGER notify_activity_failed AFTER UPDATE OF state ON activities
WHEN NEW.state = 'failed' AND OLD.state <> 'failed'
BEGIN
    INSERT INTO notify_events (workflow_id, activity_id, event, created_at)
    VALUES (NEW.workflow_id, NEW.id, 'activity.failed', (julianday('now') - 2440587.5) * 86400.0);
END;
-- One POST to one webhook. The secret is never stored: only the name of the environment
-- variable that holds it. A sender holds a delivery while it tries it (lease_until), so two
-- engine processes of one state dir never send it both.
CREATE TABLE notify_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        INTEGER NOT NULL,
    workflow_id     INTEGER NOT NULL,
    event           TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    secret_env      TEXT,
    body            BLOB    NOT NULL,
    tries           INTEGER NOT NULL DEFAULT 0,
    next_at         REAL    NOT NULL,
    lease_until     REAL,
    delivered_at    REAL,
    given_up_at     REAL,
    last_error      TEXT,
    created_at      REAL    NOT NULL,
    UNIQUE (event_id, url)
);
CREATE INDEX notify_deliveries_due ON notify_deliveries(next_at)
    WHERE delivered_at IS NULL AND given_up_at IS NULL;
