-- Core schema: tenants (workspaces), users, memberships, artifacts, sessions and tokens, audit log.
-- Tenant isolation is enforced here, not in the application: every table that carries a
-- tenant_id has row-level security ENABLED and FORCED, and the application role owns nothing.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ghostworks_app') THEN
        CREATE ROLE ghostworks_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;

-- The tenant and user of the current transaction; NULL when unset or reset (fail closed).
CREATE FUNCTION app_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.current_tenant_id', true), '')::uuid $$;

CREATE FUNCTION app_current_user() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.current_user_id', true), '')::uuid $$;

CREATE FUNCTION touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    AS $$ BEGIN NEW.updated_at = now(); RETURN NEW; END $$;

CREATE TYPE workspace_role AS ENUM ('owner', 'admin', 'member');

CREATE TABLE users (
    id              uuid PRIMARY KEY,
    email           varchar(255) NOT NULL UNIQUE,
    hashed_password varchar(255) NOT NULL,
    first_name      varchar(100),
    last_name       varchar(100),
    is_verified     boolean NOT NULL DEFAULT false,
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        varchar(255) NOT NULL,
    slug        varchar(100) NOT NULL UNIQUE,
    description text,
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
    is_active   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER tenants_touch BEFORE UPDATE ON tenants FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE TABLE workspace_memberships (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    role       workspace_role NOT NULL,
    is_active  boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_user_tenant_membership UNIQUE (user_id, tenant_id)
);
CREATE INDEX ix_memberships_tenant ON workspace_memberships (tenant_id, created_at);
CREATE TRIGGER memberships_touch BEFORE UPDATE ON workspace_memberships FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- Tags are folded into the full-text document; array_to_string is only STABLE, so wrap it.
CREATE FUNCTION tags_text(text[]) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT coalesce(array_to_string($1, ' '), '') $$;

CREATE TABLE artifacts (
    id                uuid PRIMARY KEY,
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name              varchar(255) NOT NULL,
    description       text,
    tags              text[] NOT NULL DEFAULT '{}',
    artifact_metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_by        uuid REFERENCES users (id) ON DELETE SET NULL,
    version           integer NOT NULL DEFAULT 1,
    deleted_at        timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    search_document   tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', name), 'A')
        || setweight(to_tsvector('english', tags_text(tags)), 'B')
        || setweight(to_tsvector('english', coalesce(description, '')), 'C')
    ) STORED,
    CONSTRAINT artifacts_metadata_is_object CHECK (jsonb_typeof(artifact_metadata) = 'object')
);
-- Live rows only: the list page, its default order and the keyset tie-breaker.
CREATE INDEX ix_artifacts_tenant_created ON artifacts (tenant_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX ix_artifacts_tags ON artifacts USING gin (tags) WHERE deleted_at IS NULL;
CREATE INDEX ix_artifacts_name_trgm ON artifacts USING gin (name gin_trgm_ops);
CREATE INDEX ix_artifacts_description_trgm ON artifacts USING gin (description gin_trgm_ops);
CREATE INDEX ix_artifacts_search ON artifacts USING gin (search_document);
CREATE INDEX ix_artifacts_created_by ON artifacts (created_by);
CREATE TRIGGER artifacts_touch BEFORE UPDATE ON artifacts FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- A login session: the family of rotating refresh tokens. Revoking it ends every token of it,
-- access tokens included (they carry the session id).
CREATE TABLE sessions (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    revoked_reason text
);
CREATE INDEX ix_sessions_user ON sessions (user_id);

-- workspace_id is the context a refresh keeps (not tenant-owned data: no RLS, like sessions).
CREATE TABLE refresh_tokens (
    jti_hash     bytea PRIMARY KEY,
    session_id   uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    workspace_id uuid,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE email_verification_tokens (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_email_verification_user ON email_verification_tokens (user_id);

-- Append-only. tenant_id is NULL for events outside any workspace (login, denied access to a
-- workspace the actor is not in: the target then goes in details, never into tenant_id).
CREATE TABLE audit_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     uuid REFERENCES tenants (id) ON DELETE CASCADE,
    actor_user_id uuid,
    action        text NOT NULL,
    details       jsonb NOT NULL DEFAULT '{}'::jsonb,
    ip            text,
    request_id    text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_audit_log_tenant ON audit_log (tenant_id, created_at);
CREATE INDEX ix_audit_log_action ON audit_log (action, created_at);

-- Row-level security ---------------------------------------------------------------------------

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
ALTER TABLE workspace_memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE workspace_memberships FORCE ROW LEVEL SECURITY;
ALTER TABLE artifacts ENABLE ROW LEVEL SECURITY;
ALTER TABLE artifacts FORCE ROW LEVEL SECURITY;
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;

-- A user may see the memberships of their own account across workspaces ("which workspaces am I
-- in?"); everything else needs the workspace as tenant context.
CREATE POLICY memberships_own_rows ON workspace_memberships FOR SELECT
    USING (user_id = app_current_user());
CREATE POLICY memberships_tenant ON workspace_memberships FOR ALL
    USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());

CREATE POLICY tenants_member_read ON tenants FOR SELECT
    USING (id IN (SELECT m.tenant_id FROM workspace_memberships m
                  WHERE m.user_id = app_current_user() AND m.is_active));
CREATE POLICY tenants_tenant ON tenants FOR ALL
    USING (id = app_current_tenant())
    WITH CHECK (id = app_current_tenant());

CREATE POLICY artifacts_tenant ON artifacts FOR ALL
    USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());

CREATE POLICY audit_read ON audit_log FOR SELECT
    USING (tenant_id = app_current_tenant());
CREATE POLICY audit_append ON audit_log FOR INSERT
    WITH CHECK (tenant_id IS NULL OR tenant_id = app_current_tenant());

-- Global counts for the unauthenticated system-stats endpoint, without granting the application
-- any cross-tenant read. Runs as the schema owner, which must be a superuser or BYPASSRLS role
-- (the PostgreSQL image's POSTGRES_USER is); under any other owner it counts nothing rather
-- than leaking.
CREATE FUNCTION system_stats(OUT users bigint, OUT workspaces bigint, OUT artifacts bigint, OUT active_artifacts bigint)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT (SELECT count(*) FROM users),
               (SELECT count(*) FROM tenants),
               (SELECT count(*) FROM artifacts),
               (SELECT count(*) FROM artifacts WHERE deleted_at IS NULL)
    $$;

-- Grants: exactly what the API needs, nothing on the migration bookkeeping. -----------------
REVOKE ALL ON FUNCTION system_stats() FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO ghostworks_app;
GRANT SELECT, INSERT, UPDATE ON users TO ghostworks_app;
GRANT SELECT, INSERT, UPDATE ON tenants TO ghostworks_app;
GRANT SELECT, INSERT, UPDATE ON workspace_memberships TO ghostworks_app;
GRANT SELECT, INSERT, UPDATE ON artifacts TO ghostworks_app;
GRANT SELECT, INSERT, UPDATE ON sessions TO ghostworks_app;
GRANT SELECT, INSERT, UPDATE ON refresh_tokens TO ghostworks_app;
GRANT SELECT, INSERT, UPDATE ON email_verification_tokens TO ghostworks_app;
GRANT SELECT, INSERT ON audit_log TO ghostworks_app;
GRANT EXECUTE ON FUNCTION system_stats() TO ghostworks_app;
