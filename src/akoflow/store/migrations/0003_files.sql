-- Version 3: provenance files.
-- Provenance: the data-dir files each attempt used and generated (see akoflow.provenance).
CREATE TABLE files (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    activity_id     INTEGER NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    attempt         INTEGER NOT NULL,
    role            TEXT    NOT NULL CHECK (role IN ('used', 'generated')),
    path            TEXT    NOT NULL,
    size            INTEGER NOT NULL,
    mtime           REAL    NOT NULL,
    sha256          TEXT
);
CREATE INDEX files_activity ON files(activity_id);
