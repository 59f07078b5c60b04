-- Version 10: exact derivations (issue 15). Where observation knows the order of an attempt's
-- accesses, a version it generated derives from what it read before its last write to it: one
-- row per such used version, or one row with used_id NULL (it derives from nothing it read).
-- A generated version with no row here derives from everything its attempt used (timing,
-- remote listings, runs recorded before this version).
CREATE TABLE file_derivations (
    generated_id    INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    used_id         INTEGER REFERENCES files(id) ON DELETE CASCADE
);
CREATE INDEX file_derivations_generated ON file_derivations(generated_id);
