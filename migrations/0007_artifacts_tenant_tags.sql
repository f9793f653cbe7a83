-- no-transaction
-- Tag filters within one workspace, live rows only (migration 0003 says why tenant first).
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_artifacts_tenant_tags ON artifacts USING gin (tenant_id, tags) WHERE deleted_at IS NULL;
