-- Background work: the durable job queue, password reset tokens, per-workspace usage, and the
-- role the worker logs in through.
--
-- The worker is a second runtime principal beside the API. It logs in as a member of the
-- NOLOGIN role ghostworks_worker (created here, like ghostworks_app) and holds exactly the
-- grants at the end of this file: DELETE where maintenance purges, nothing on what it never
-- touches. It is not a member of ghostworks_app, and the API is not a member of it.
--
-- Row-level security and jobs. Jobs are operational data: one worker claims jobs of every
-- tenant, so a tenant-keyed policy on the claim would defeat the queue. jobs.tenant_id still
-- has RLS enabled and forced (every table with a tenant_id does), with two policies:
--   * ghostworks_worker sees and changes every job (it must, to claim across tenants);
--   * ghostworks_app may only INSERT, and only jobs without a tenant or for the tenant its
--     transaction is scoped to: a bug in the API cannot queue work against another workspace.
-- The tenant data a job touches stays behind the existing per-tenant policies, for the worker
-- too: a job with a tenant_id runs inside ghostworks_db::scoped(tenant), so its handler sees
-- that workspace's rows and no other's.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ghostworks_worker') THEN
        CREATE ROLE ghostworks_worker NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;

CREATE TABLE jobs (
    id              uuid PRIMARY KEY,
    tenant_id       uuid REFERENCES tenants (id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.]{0,99}$'),
    payload         jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- queued (waiting for run_at, including retries), running (leased until locked_until),
    -- succeeded, dead (out of attempts or permanently failed; `ghostworks jobs retry` revives).
    status          text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'succeeded', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL CHECK (max_attempts BETWEEN 1 AND 100),
    run_at          timestamptz NOT NULL DEFAULT now(),
    locked_until    timestamptz,
    locked_by       text,
    started_at      timestamptz,
    last_error      text,
    -- Enqueueing the same (kind, key) twice keeps the first job: NULL keys never collide.
    idempotency_key text CHECK (length(idempotency_key) <= 200),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    CONSTRAINT uq_jobs_kind_idempotency_key UNIQUE (kind, idempotency_key),
    CONSTRAINT jobs_payload_is_object CHECK (jsonb_typeof(payload) = 'object')
);
-- The claim: the oldest due job first. The lease sweep: running jobs by lease end.
CREATE INDEX ix_jobs_due ON jobs (run_at, id) WHERE status = 'queued';
CREATE INDEX ix_jobs_leases ON jobs (locked_until) WHERE status = 'running';
CREATE INDEX ix_jobs_finished ON jobs (status, finished_at) WHERE status IN ('succeeded', 'dead');
CREATE INDEX ix_jobs_tenant ON jobs (tenant_id);
CREATE TRIGGER jobs_touch BEFORE UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- Wakes idle workers when a job commits (NOTIFY is delivered at commit, so a woken worker
-- always finds the row). Once per statement; workers poll as well, so a lost wake-up only
-- costs latency.
CREATE FUNCTION jobs_notify() RETURNS trigger
    LANGUAGE plpgsql
    AS $$ BEGIN PERFORM pg_notify('ghostworks_jobs', ''); RETURN NULL; END $$;
CREATE TRIGGER jobs_enqueued AFTER INSERT ON jobs FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify();

ALTER TABLE jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY jobs_app_enqueue ON jobs FOR INSERT TO ghostworks_app
    WITH CHECK (tenant_id IS NULL OR tenant_id = app_current_tenant());
CREATE POLICY jobs_worker ON jobs FOR ALL TO ghostworks_worker
    USING (true) WITH CHECK (true);

-- Global like email_verification_tokens: stored only as SHA-256 hashes, single use.
CREATE TABLE password_reset_tokens (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_password_reset_user ON password_reset_tokens (user_id);
CREATE INDEX ix_password_reset_expiry ON password_reset_tokens (expires_at);
CREATE INDEX ix_email_verification_expiry ON email_verification_tokens (expires_at);
CREATE INDEX ix_refresh_tokens_expiry ON refresh_tokens (expires_at);
CREATE INDEX ix_sessions_expiry ON sessions (expires_at);
CREATE INDEX ix_artifacts_deleted ON artifacts (tenant_id, deleted_at) WHERE deleted_at IS NOT NULL;
CREATE INDEX ix_audit_log_created ON audit_log (created_at);

-- Recomputed by the scheduled maintenance; served by GET /api/v1/workspaces/{id}/usage.
CREATE TABLE workspace_usage (
    tenant_id         uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    artifacts         bigint NOT NULL,
    deleted_artifacts bigint NOT NULL,
    distinct_tags     bigint NOT NULL,
    tag_uses          bigint NOT NULL,
    -- octet_length of name + description + metadata (as JSON text) of every stored row,
    -- soft-deleted ones included: they occupy storage until purged.
    storage_bytes     bigint NOT NULL,
    computed_at       timestamptz NOT NULL
);
ALTER TABLE workspace_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE workspace_usage FORCE ROW LEVEL SECURITY;
CREATE POLICY usage_tenant ON workspace_usage FOR ALL
    USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());

-- Maintenance prunes old audit rows: workspace rows in the workspace's scope, rows without a
-- workspace (logins, denied access) without any scope. Only the worker may delete.
CREATE POLICY audit_worker_read ON audit_log FOR SELECT TO ghostworks_worker
    USING (tenant_id IS NOT DISTINCT FROM app_current_tenant());
CREATE POLICY audit_worker_prune ON audit_log FOR DELETE TO ghostworks_worker
    USING (tenant_id IS NOT DISTINCT FROM app_current_tenant());

-- The ids of every workspace, for fanning maintenance out into one scoped job per workspace,
-- without granting the worker a cross-tenant read of the workspaces themselves. Like
-- system_stats(), it needs a superuser or BYPASSRLS owner, and under any other returns none.
CREATE FUNCTION tenant_ids() RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT id FROM tenants ORDER BY id $$;
REVOKE ALL ON FUNCTION tenant_ids() FROM PUBLIC;

-- Grants -------------------------------------------------------------------------------------
-- The API: queue jobs, spend reset tokens, read usage.
GRANT INSERT ON jobs TO ghostworks_app;
GRANT SELECT, UPDATE ON password_reset_tokens TO ghostworks_app;
GRANT SELECT ON workspace_usage TO ghostworks_app;

-- The worker: run the queue, send mail (read the recipient, issue tokens), maintain.
GRANT USAGE ON SCHEMA public TO ghostworks_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON jobs TO ghostworks_worker;
GRANT SELECT ON users TO ghostworks_worker;
-- In a workspace's scope only (the existing policies); the tenants policy reads memberships.
GRANT SELECT ON tenants TO ghostworks_worker;
GRANT SELECT ON workspace_memberships TO ghostworks_worker;
GRANT SELECT, INSERT, DELETE ON email_verification_tokens TO ghostworks_worker;
GRANT SELECT, INSERT, DELETE ON password_reset_tokens TO ghostworks_worker;
GRANT SELECT, DELETE ON sessions TO ghostworks_worker;
GRANT SELECT, DELETE ON refresh_tokens TO ghostworks_worker;
GRANT SELECT, DELETE ON artifacts TO ghostworks_worker;
GRANT SELECT, DELETE ON audit_log TO ghostworks_worker;
GRANT SELECT, INSERT, UPDATE ON workspace_usage TO ghostworks_worker;
GRANT EXECUTE ON FUNCTION tenant_ids() TO ghostworks_worker;
