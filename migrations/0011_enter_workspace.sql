-- The start of every workspace request in one statement instead of two: check the caller's
-- live session, scope the transaction to the workspace and the caller, read the caller's
-- membership, in this order. One SQL statement could not promise that order (the membership
-- table's row-level security reads the very settings the statement makes); a PL/pgSQL function
-- runs its statements one after the other.
--
-- Isolation is unchanged: the function runs with the caller's rights (SECURITY INVOKER), so the
-- membership is read under the same forced policies as before; the settings are
-- transaction-local (set_config(..., true)), and the function has no SET clause, which would
-- undo them on return. Nothing is set unless the session is live.
--
-- No row: no live session of that user. One row: the transaction is scoped; `member_role` is
-- NULL when the caller is not an active member of the workspace.
CREATE FUNCTION app_enter_workspace(p_tenant uuid, p_user uuid, p_session uuid, p_statement_timeout text)
    RETURNS TABLE (member_role text, workspace_active boolean)
    LANGUAGE plpgsql VOLATILE
    AS $$
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM sessions s
                       WHERE s.id = p_session AND s.user_id = p_user
                         AND s.revoked_at IS NULL AND s.expires_at > now()) THEN
            RETURN;
        END IF;
        PERFORM set_config('app.current_tenant_id', p_tenant::text, true),
                set_config('app.current_user_id', p_user::text, true),
                set_config('statement_timeout',
                           coalesce(p_statement_timeout, current_setting('statement_timeout')), true);
        RETURN QUERY
            SELECT m.role::text, t.is_active
            FROM workspace_memberships m JOIN tenants t ON t.id = m.tenant_id
            WHERE m.tenant_id = p_tenant AND m.user_id = p_user AND m.is_active;
        IF NOT FOUND THEN
            RETURN QUERY SELECT NULL::text, NULL::boolean;
        END IF;
    END $$;

REVOKE ALL ON FUNCTION app_enter_workspace(uuid, uuid, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_enter_workspace(uuid, uuid, uuid, text) TO ghostworks_app;
