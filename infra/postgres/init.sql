-- Ghostworks: first-boot bootstrap for the official postgres image.
--
-- Mounted at /docker-entrypoint-initdb.d/10-ghostworks.sql. The entrypoint runs
-- it once, on an empty data directory, as POSTGRES_USER against POSTGRES_DB,
-- with `psql -v ON_ERROR_STOP=1`, so any error aborts the initialisation.
--
-- Roles:
--   POSTGRES_USER   schema owner; `ghostworks migrate` / `seed` connect as it
--                   (DATABASE_ADMIN_URL). Migrations create and own all tables.
--   ghostworks_app  NOLOGIN group role holding the runtime grants. `migrate`
--                   re-creates it if missing and (re)applies its grants.
--   ghostworks_api  LOGIN role used by `ghostworks serve` (DATABASE_URL). It is
--                   a member of ghostworks_app and owns nothing.
--   ghostworks_worker        NOLOGIN group role holding the worker's grants
--                   (migration 0002 creates it too, if missing, and grants it).
--   ghostworks_worker_login  LOGIN role used by `ghostworks worker` (its own
--                   DATABASE_URL). A member of ghostworks_worker only: not of
--                   ghostworks_app, and it owns nothing.
--
-- Each login's password is taken, in this order, from:
--   1. the file named by GHOSTWORKS_API_DB_PASSWORD_FILE /
--      GHOSTWORKS_WORKER_DB_PASSWORD_FILE (Docker secret),
--   2. GHOSTWORKS_API_DB_PASSWORD / GHOSTWORKS_WORKER_DB_PASSWORD,
--   3. the placeholder CHANGE_ME_api_password / CHANGE_ME_worker_password.
--      Never keep it: set one of the above, and put the same password in the
--      API's (the worker's) DATABASE_URL.
-- Every statement is idempotent, so the script can also be re-run by hand
-- (e.g. `psql -f` against a managed server, or to add the worker's roles to a
-- database initialised before they existed). To rotate a password later use
--   ALTER ROLE ghostworks_api PASSWORD '...';   (ghostworks_worker_login alike)

\set ON_ERROR_STOP on

-- Read the API role's password from the environment (psql runs the backquoted
-- command with /bin/sh; the trailing newline of the output is dropped).
\set api_password `if [ -n "${GHOSTWORKS_API_DB_PASSWORD_FILE:-}" ]; then cat "$GHOSTWORKS_API_DB_PASSWORD_FILE"; else printf '%s' "${GHOSTWORKS_API_DB_PASSWORD:-CHANGE_ME_api_password}"; fi`
\set worker_password `if [ -n "${GHOSTWORKS_WORKER_DB_PASSWORD_FILE:-}" ]; then cat "$GHOSTWORKS_WORKER_DB_PASSWORD_FILE"; else printf '%s' "${GHOSTWORKS_WORKER_DB_PASSWORD:-CHANGE_ME_worker_password}"; fi`

CREATE EXTENSION IF NOT EXISTS pg_trgm;

SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ghostworks_app') AS create_app_role \gset
\if :create_app_role
CREATE ROLE ghostworks_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
\endif

SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ghostworks_api') AS create_api_role \gset
\if :create_api_role
CREATE ROLE ghostworks_api LOGIN;
\endif

-- (Re)assert the attributes: a plain login role that inherits the privileges
-- of ghostworks_app, cannot bypass row-level security and can create neither
-- databases nor roles.
ALTER ROLE ghostworks_api LOGIN INHERIT NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE
    PASSWORD :'api_password';
GRANT ghostworks_app TO ghostworks_api;

-- The worker: its group role (the same statement as in migrations/0002_jobs.sql,
-- whichever runs first creates it) and its login, a member of that role only.
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ghostworks_worker') AS create_worker_role \gset
\if :create_worker_role
CREATE ROLE ghostworks_worker NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
\endif

SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ghostworks_worker_login') AS create_worker_login \gset
\if :create_worker_login
CREATE ROLE ghostworks_worker_login LOGIN;
\endif

ALTER ROLE ghostworks_worker_login LOGIN INHERIT NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE
    PASSWORD :'worker_password';
GRANT ghostworks_worker TO ghostworks_worker_login;

-- Lock the schema down: only the owner creates objects; the app role may use it.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO ghostworks_app, ghostworks_worker;
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO ghostworks_app, ghostworks_worker', current_database()) \gexec

-- Table privileges are granted per table by the migrations (least privilege,
-- e.g. audit_log is append-only), so no default privileges are set here.
