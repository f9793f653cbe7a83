-- Artifact reads that can use their indexes.
--
-- Under row-level security PostgreSQL evaluates the policy before every condition that is not
-- leakproof. ILIKE, @@ and && are not, so for the API role they never became index conditions:
-- each search read every live row of its workspace through the tenant index and filtered them
-- (100,000 rows in the largest workspace of the benchmark dataset, seconds per request).
--
-- Reads therefore go through `tenant_artifacts`, a view that applies the tenant rule itself:
-- it runs with its owner's rights (the schema owner, a superuser or BYPASSRLS role like the
-- owner system_stats() needs), so the planner may combine `tenant_id = app_current_tenant()`
-- with the search condition in one composite index. Isolation is unchanged: the filter is the
-- policy's own expression and fails closed the same way (no setting, no rows), and the API role
-- can read the view but not redefine it. Under an owner subject to RLS the forced policy still
-- applies: slower, never wider. Every write still goes to `artifacts` and its policy.
--
-- The view is deliberately not a security_barrier view: that would restore the very ordering
-- that kept the operators away from the indexes. What both guard against is an application bug
-- (a missing or wrong filter); the conditions the application adds are fixed built-in operators
-- whose errors depend only on the caller's own parameters. (A session able to run arbitrary SQL
-- as the API role could set any tenant under the policy too.)

-- For the composite indexes of migrations 0004-0007 (tenant first, then the search column),
-- each built CONCURRENTLY in a migration of its own so that writes go on meanwhile; 0008 drops
-- the tenant-less search indexes they supersede.
CREATE EXTENSION IF NOT EXISTS btree_gin;

CREATE VIEW tenant_artifacts AS
    SELECT id, tenant_id, name, description, tags, artifact_metadata, created_by, version,
           deleted_at, created_at, updated_at, search_document
    FROM artifacts
    WHERE tenant_id = app_current_tenant();

REVOKE ALL ON tenant_artifacts FROM PUBLIC;
GRANT SELECT ON tenant_artifacts TO ghostworks_app;
