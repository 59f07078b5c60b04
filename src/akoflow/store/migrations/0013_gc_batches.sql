-- Version 13: deleting a big run without holding the store (issue 19's hostile pass).
--
-- A run's rows go in batches, each a short transaction (an engine writing meanwhile waits
-- milliseconds, not seconds), the workflow's row last. This mark, written first, tells the
-- next gc to finish a deletion killed half way; it goes with the workflow's row.
CREATE TABLE gc_deleting (
    workflow_id     INTEGER PRIMARY KEY REFERENCES workflows(id) ON DELETE CASCADE,
    started_at      REAL    NOT NULL
);
-- Deleting a row looks up the rows that refer to it (ON DELETE CASCADE / SET NULL): without
-- an index on the referring column every look reads that whole table, every run's rows (a
-- run of 50,000 files with their derivations took minutes to delete).
CREATE INDEX file_derivations_used ON file_derivations(used_id);
CREATE INDEX dependencies_depends_on ON dependencies(depends_on_id);
CREATE INDEX ambiguous_candidates_activity ON ambiguous_candidates(activity_id);
CREATE INDEX data_replicas_activity ON data_replicas(activity_id);
CREATE INDEX data_copies_activity ON data_copies(activity_id);
CREATE INDEX notify_events_workflow ON notify_events(workflow_id);
CREATE INDEX notify_events_activity ON notify_events(activity_id);
CREATE INDEX cache_entries_cached_from ON cache_entries(cached_from);
