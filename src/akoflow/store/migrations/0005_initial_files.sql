-- Version 5: the files a run found in place before its first activity started (its inputs),
-- recorded once per run and location; every activity had them at hand (PROV: a collection).
-- AkôFlow first added this table to version 4 without raising the version, so some version-4
-- databases have it and some do not: hence IF NOT EXISTS, here only.
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
