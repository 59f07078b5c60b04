-- Version 2: placements.
-- Every placement decision (spec.schedule), with the scores of all candidate nodes.
CREATE TABLE placements (
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
CREATE INDEX placements_activity ON placements(activity_id);
