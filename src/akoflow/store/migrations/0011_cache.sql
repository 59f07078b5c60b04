-- Version 11: result caching (issue 18, see akoflow.cache and docs/caching.md). One entry per
-- succeeded attempt, whether it ran or was reused ('cached'): the key of what it ran (a hash of
-- script, image, runtime kind and settings, env, limits, declarations and its upstream
-- activities' fingerprints), what it read (path and SHA-256), its fingerprint (the key and
-- those reads), and why it may not be reused (NULL: it may). Only hashes are stored, never a
-- setting's value. A later run reuses an entry whose key matches when every file it read has
-- the same content in the new run's data dir, and restores its outputs there.
CREATE TABLE cache_entries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id     INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    activity_id     INTEGER NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    attempt         INTEGER NOT NULL,
    workflow_name   TEXT    NOT NULL,
    activity_name   TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    fingerprint     TEXT    NOT NULL,
    components      TEXT    NOT NULL,  -- JSON {component: digest}: what changed, for --dry-run
    reads           TEXT    NOT NULL,  -- JSON [[percent-encoded path, sha256], ...]
    outputs         TEXT,              -- JSON [[path, size, sha256], ...]; NULL: from `files`
    not_reusable    TEXT,              -- why it is never reused; NULL: it may be
    cached_from     INTEGER REFERENCES cache_entries(id) ON DELETE SET NULL,
    created_at      REAL    NOT NULL,
    UNIQUE (activity_id, attempt)
);
CREATE INDEX cache_entries_key ON cache_entries(key);
CREATE INDEX cache_entries_names ON cache_entries(workflow_name, activity_name);
CREATE INDEX cache_entries_workflow ON cache_entries(workflow_id);
-- Runs started with `akoflow run --no-cache` (or through the API without the cache): none of
-- their activities reuses an earlier result, also when resumed.
CREATE TABLE cache_disabled (
    workflow_id     INTEGER PRIMARY KEY REFERENCES workflows(id) ON DELETE CASCADE,
    disabled_at     REAL    NOT NULL
);
