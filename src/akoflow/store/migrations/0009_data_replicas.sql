-- Version 9: the data plane. Where each file of a run is held besides the engine host's data
-- dir (which is its own truth, hashed when needed): a runtime whose files stay remote (HPC:
-- '<runtime>:<MOUNT_PATH>', Kubernetes: '<runtime>:pvc/<claim>'), and what it holds there.
-- A row is written only after a copy was verified (size and SHA-256 on both sides), or when an
-- activity wrote the file there (fresh = 1: newer than the host's copy, sha256 unknown until
-- it is fetched). A copy cut short by a crash left no row: it is redone, never trusted.
CREATE TABLE data_replicas (
    workflow_id     INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    location        TEXT    NOT NULL,
    path            TEXT    NOT NULL,
    size            INTEGER NOT NULL,
    sha256          TEXT,
    mtime           REAL,     -- the remote listing's time of this version, when known
    stamp           INTEGER,  -- what the location said of the file right after a copy put it
                              -- there (HPC: its inode): a file replaced since is copied again
    fresh           INTEGER NOT NULL DEFAULT 0,
    recorded_at     REAL,     -- when an activity's write there was recorded (engine clock): a
                              -- host file changed after that is newer than this one
    activity_id     INTEGER REFERENCES activities(id) ON DELETE SET NULL,
    PRIMARY KEY (workflow_id, location, path)
);
-- Each verified copy, as an activity of its own in the run's provenance.
CREATE TABLE data_copies (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id     INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    activity_id     INTEGER REFERENCES activities(id) ON DELETE SET NULL,
    path            TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    destination     TEXT    NOT NULL,
    bytes           INTEGER NOT NULL,
    sha256          TEXT    NOT NULL,
    started_at      REAL    NOT NULL,
    ended_at        REAL    NOT NULL
);
CREATE INDEX data_copies_workflow ON data_copies(workflow_id);
