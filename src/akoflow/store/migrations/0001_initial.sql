-- Version 1: the state store as AkôFlow first created it. Times are UNIX seconds (REAL).
-- Each file in this directory is one step, applied once in its own transaction
-- (akoflow.store.migrate); never edit a released step, add the next one.
CREATE TABLE workflows (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT    NOT NULL,
    namespace       TEXT    NOT NULL DEFAULT 'akoflow',
    state           TEXT    NOT NULL,
    spec_yaml       TEXT    NOT NULL,
    spec_hash       TEXT    NOT NULL,
    source          TEXT,
    data_dir        TEXT    NOT NULL,
    created_at      REAL    NOT NULL,
    started_at      REAL,
    finished_at     REAL,
    owner_pid       INTEGER,
    owner_started   REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX ix_workflows_state ON workflows(state);
CREATE INDEX ix_workflows_hash ON workflows(spec_hash);

CREATE TABLE activities (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id     INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    position        INTEGER NOT NULL,
    name            TEXT    NOT NULL,
    runtime         TEXT    NOT NULL,
    image           TEXT,
    state           TEXT    NOT NULL,
    attempt         INTEGER NOT NULL DEFAULT 0,
    retries         INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL DEFAULT 1,
    exit_code       INTEGER,
    reason          TEXT,
    node            TEXT,
    created_at      REAL    NOT NULL,
    started_at      REAL,
    finished_at     REAL,
    UNIQUE (workflow_id, name)
);
CREATE INDEX ix_activities_wf_state ON activities(workflow_id, state);
CREATE INDEX ix_activities_wf_position ON activities(workflow_id, position);

CREATE TABLE dependencies (
    workflow_id     INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    activity_id     INTEGER NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    depends_on_id   INTEGER NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    PRIMARY KEY (activity_id, depends_on_id)
) WITHOUT ROWID;
CREATE INDEX ix_dependencies_wf ON dependencies(workflow_id);

CREATE TABLE attempts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    activity_id     INTEGER NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    number          INTEGER NOT NULL,
    state           TEXT    NOT NULL,
    runtime         TEXT    NOT NULL,
    handle          TEXT,
    node            TEXT,
    submitted_at    REAL    NOT NULL,
    started_at      REAL,
    finished_at     REAL,
    exit_code       INTEGER,
    reason          TEXT,
    cpu_seconds     REAL,
    max_rss_bytes   INTEGER,
    UNIQUE (activity_id, number)
);
CREATE INDEX ix_attempts_state ON attempts(state);

CREATE TABLE logs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    activity_id     INTEGER NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    attempt         INTEGER NOT NULL,
    stream          TEXT    NOT NULL,
    offset          INTEGER NOT NULL,
    data            TEXT    NOT NULL,
    created_at      REAL    NOT NULL
);
CREATE INDEX ix_logs_activity ON logs(activity_id, attempt, stream, offset);

CREATE TABLE metrics (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    activity_id     INTEGER NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    attempt         INTEGER NOT NULL,
    ts              REAL    NOT NULL,
    cpu_percent     REAL,
    memory_bytes    INTEGER
);
CREATE INDEX ix_metrics_activity ON metrics(activity_id, attempt, ts);

CREATE TABLE runtimes (
    name            TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    status          TEXT NOT NULL,
    reason          TEXT,
    config          TEXT NOT NULL DEFAULT '{}',
    checked_at      REAL,
    updated_at      REAL NOT NULL
);

CREATE TABLE nodes (
    runtime         TEXT NOT NULL,
    name            TEXT NOT NULL,
    status          TEXT NOT NULL,
    cpu_capacity    REAL,
    memory_capacity INTEGER,
    cpu_usage       REAL,
    memory_usage    INTEGER,
    updated_at      REAL NOT NULL,
    PRIMARY KEY (runtime, name)
);
