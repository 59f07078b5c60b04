-- Version 8: why the engine asked a live attempt to stop ('timeout' or 'cancel'), stored
-- before it asks. An attempt stopped by its timeout or by a per-activity cancel may still exit
-- 0 (a TERM trap that cleans up and exits); an engine that dies meanwhile must record it as
-- timed out or cancelled when it collects the end after a restart, never as a success.
ALTER TABLE attempts ADD COLUMN stop_reason TEXT;
