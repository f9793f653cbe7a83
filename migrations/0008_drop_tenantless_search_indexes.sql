-- Superseded by the tenant-first indexes of 0004-0007: a search index without the tenant only
-- served cross-tenant scans, which no role runs, and cost every write.
DROP INDEX IF EXISTS ix_artifacts_tags, ix_artifacts_name_trgm, ix_artifacts_description_trgm, ix_artifacts_search;
