-- Version 6: activities.retries goes. It copied the spec's retries, which the stored spec
-- (workflows.spec_yaml) still holds; the attempt budget is activities.max_attempts.
ALTER TABLE activities DROP COLUMN retries;
