-- The W3C trace context of the request (or job) that queued a job, so the job's span joins
-- that trace in the worker. Expand-only: a nullable column old releases simply ignore.
ALTER TABLE jobs ADD COLUMN trace_parent text CHECK (length(trace_parent) <= 128);
