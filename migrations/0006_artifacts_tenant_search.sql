-- no-transaction
-- Full-text search within one workspace, live rows only (migration 0003 says why tenant first).
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_artifacts_tenant_search ON artifacts USING gin (tenant_id, search_document) WHERE deleted_at IS NULL;
