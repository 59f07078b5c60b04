-- Version 7: exact lineage (issue 15). A file version that no observation or declaration can
-- give to one attempt (two attempts wrote it, events were lost, a writer of no attempt, or,
-- without observation, a change in the run windows of several activities) is recorded here
-- with its candidate attempts, never in `files` as one attempt's.
CREATE TABLE ambiguous_files (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id     INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    location        TEXT    NOT NULL DEFAULT '',  -- '' = the engine's data dir
    path            TEXT    NOT NULL,
    size            INTEGER NOT NULL,
    mtime           REAL    NOT NULL,
    sha256          TEXT,
    reason          TEXT    NOT NULL
);
CREATE INDEX ambiguous_files_workflow ON ambiguous_files(workflow_id);
CREATE TABLE ambiguous_candidates (
    file_id         INTEGER NOT NULL REFERENCES ambiguous_files(id) ON DELETE CASCADE,
    activity_id     INTEGER NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    attempt         INTEGER NOT NULL,
    PRIMARY KEY (file_id, activity_id, attempt)
);
-- How each run's file accesses were known: 'observed (fanotify)', 'inferred from timing
-- (<why no observation>)', or 'off' (AKOFLOW_PROVENANCE=off).
CREATE TABLE provenance_mechanisms (
    workflow_id     INTEGER PRIMARY KEY REFERENCES workflows(id) ON DELETE CASCADE,
    mechanism       TEXT    NOT NULL
);
