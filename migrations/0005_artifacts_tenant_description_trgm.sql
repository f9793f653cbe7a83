-- no-transaction
-- Substring search on descriptions within one workspace, live rows only (migration 0003 says why tenant first).
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_artifacts_tenant_description_trgm ON artifacts USING gin (tenant_id, description gin_trgm_ops) WHERE deleted_at IS NULL;
