-- Version 14: what a remote version's listings said, kept for an engine that resumes the run.
--
-- A version of a file on a remote runtime (HPC, Kubernetes) is decided from the jobs' own
-- listings: when the last listing that showed it was taken (the job's clock) and which
-- attempts' listings after their command showed it (they ended with it in place, so a later
-- version is not theirs). Read back after a restart, a later version is decided by them as it
-- was before the restart (akoflow.provenance.remote.Claim.seen and .final).
CREATE TABLE remote_seen (
    workflow_id     INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    location        TEXT    NOT NULL,
    path            TEXT    NOT NULL,  -- as files.path: a BLOB when not UTF-8
    size            INTEGER NOT NULL,
    mtime           REAL    NOT NULL,
    seen            REAL    NOT NULL,
    final           TEXT    NOT NULL,  -- JSON [[activity_id, attempt], ...]
    PRIMARY KEY (workflow_id, location, path, size, mtime)
);
