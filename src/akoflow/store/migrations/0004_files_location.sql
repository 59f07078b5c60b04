-- Version 4: files at a runtime's remote location (an HPC mount path, a k8s volume), not only
-- in the engine's data dir.
ALTER TABLE files ADD COLUMN location TEXT NOT NULL DEFAULT '';  -- '' = the engine's data dir
