-- Test fixture: src/akoflow/store/schema.sql as AkôFlow last had it (commit d334dbc), which
-- created every version-4 database (executed whole, then PRAGMA user_version = 4).
-- AkôFlow state store. Times are UNIX seconds (REAL). Version in PRAGMA user_version.
CREATE TABLE IF NOT EXISTS workflows (
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
CREATE INDEX IF NOT EXISTS ix_workflows_state ON workflows(state);
CREATE INDEX IF NOT EXISTS ix_workflows_hash ON workflows(spec_hash);

CREATE TABLE IF NOT EXISTS activities (
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
CREATE INDEX IF NOT EXISTS ix_activities_wf_state ON activities(workflow_id, state);
CREATE INDEX IF NOT EXISTS ix_activities_wf_position ON activities(workflow_id, position);

CREATE TABLE IF NOT EXISTS dependencies (
    workflow_id     INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    activity_id     INTEGER NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    depends_on_id   INTEGER NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    PRIMARY KEY (activity_id, depends_on_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_dependencies_wf ON dependencies(workflow_id);

CREATE TABLE IF NOT EXISTS attempts (
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
CREATE INDEX IF NOT EXISTS ix_attempts_state ON attempts(state);

CREATE TABLE IF NOT EXISTS logs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    activity_id     INTEGER NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    attempt         INTEGER NOT NULL,
    stream          TEXT    NOT NULL,
    offset          INTEGER NOT NULL,
    data            TEXT    NOT NULL,
    created_at      REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_logs_activity ON logs(activity_id, attempt, stream, offset);

CREATE TABLE IF NOT EXISTS metrics (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    activity_id     INTEGER NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    attempt         INTEGER NOT NULL,
    ts              REAL    NOT NULL,
    cpu_percent     REAL,
    memory_bytes    INTEGER
);
CREATE INDEX IF NOT EXISTS ix_metrics_activity ON metrics(activity_id, attempt, ts);

CREATE TABLE IF NOT EXISTS runtimes (
    name            TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    status          TEXT NOT NULL,
    reason          TEXT,
    config          TEXT NOT NULL DEFAULT '{}',
    checked_at      REAL,
    updated_at      REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS nodes (
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

-- Every placement decision (spec.schedule), with the scores of all candidate nodes.
CREATE TABLE IF NOT EXISTS placements (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    activity_id     INTEGER NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    attempt         INTEGER NOT NULL,
    runtime         TEXT    NOT NULL,
    policy          TEXT    NOT NULL,
    node            TEXT,
    alpha           REAL,
    candidates      TEXT    NOT NULL,  -- JSON [{node, feasible, score, reason, ...}]
    decided_at      REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS placements_activity ON placements(activity_id);

-- Provenance: the files each attempt used and generated (see akoflow.provenance): in the
-- engine's data dir, or at a runtime's remote location (an HPC mount path, a k8s volume).
CREATE TABLE IF NOT EXISTS files (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    activity_id     INTEGER NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    attempt         INTEGER NOT NULL,
    role            TEXT    NOT NULL CHECK (role IN ('used', 'generated')),
    path            TEXT    NOT NULL,
    size            INTEGER NOT NULL,
    mtime           REAL    NOT NULL,
    sha256          TEXT,
    location        TEXT    NOT NULL DEFAULT ''  -- '' = the engine's data dir, else remote
);
CREATE INDEX IF NOT EXISTS files_activity ON files(activity_id);

-- Provenance: the files a run found in place before its first activity started (its inputs),
-- recorded once per run and location; every activity had them at hand (PROV: a collection).
CREATE TABLE IF NOT EXISTS initial_files (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id     INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    location        TEXT    NOT NULL DEFAULT '',
    path            TEXT    NOT NULL,
    size            INTEGER NOT NULL,
    mtime           REAL    NOT NULL,
    sha256          TEXT
);
CREATE INDEX IF NOT EXISTS initial_files_workflow ON initial_files(workflow_id, location);
