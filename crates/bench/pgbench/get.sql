-- GET …/artifacts/{id}: the statements the API runs for one such request, in its order (crates/db).
\set n random(1, :pairs)
BEGIN;
-- Ws: the tenant scope and the caller (user with a live session) in one statement; the
-- request's parameters (which user, session, workspace, search terms) ride along from
-- bench_pairs in the same round trip. Then the membership check.
SELECT set_config('app.current_tenant_id', p.tenant_id::text, true) AS tenant_scope, set_config('app.current_user_id', p.user_id::text, true) AS user_scope, p.tenant_id, p.artifact_id, p.pattern, p.fulltext, p.tag, u.id AS user_id, u.email, u.hashed_password, u.first_name, u.last_name, u.is_verified, u.is_active, u.created_at, u.updated_at FROM bench_pairs p JOIN users u ON u.id = p.user_id WHERE p.n = :n AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = p.session_id AND s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > now()) \gset
SELECT m.role::text, t.is_active FROM workspace_memberships m JOIN tenants t ON t.id = m.tenant_id WHERE m.tenant_id = :tenant_id AND m.user_id = :user_id AND m.is_active;
SELECT id, tenant_id, name, description, tags, artifact_metadata, created_by, version, deleted_at, created_at, updated_at FROM tenant_artifacts WHERE tenant_id = :tenant_id AND id = :artifact_id AND deleted_at IS NULL;
COMMIT;
