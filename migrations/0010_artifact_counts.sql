-- The number of live artifacts of each workspace, maintained in the writing transaction, so a
-- list page's `total` is a lookup of a few rows instead of a count of the whole workspace
-- (100,000 index entries for the largest workspace of the benchmark dataset, on every page).
--
-- A single row per workspace would serialise every concurrent create and delete of a workspace
-- on its row lock. Each workspace has up to 16 rows instead (`shard`), and a writer adds its
-- delta to the row its backend picks (pg_backend_pid() % 16): concurrent writers hold different
-- connections, so they rarely meet on one row. The count is the sum of the rows.
--
-- Deltas are per statement (transition tables), so a bulk load (COPY, a workspace import) adds
-- one row per workspace per statement rather than one upsert per artifact; an UPDATE counts only
-- when it changes deleted_at. The triggers run with the writer's rights: under the API role the
-- policy below confines them to the scoped workspace, like any other write.

CREATE TABLE artifact_counts (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    shard     smallint NOT NULL CHECK (shard BETWEEN 0 AND 15),
    live      bigint NOT NULL,
    PRIMARY KEY (tenant_id, shard)
);
ALTER TABLE artifact_counts ENABLE ROW LEVEL SECURITY;
ALTER TABLE artifact_counts FORCE ROW LEVEL SECURITY;
CREATE POLICY artifact_counts_tenant ON artifact_counts FOR ALL
    USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE ON artifact_counts TO ghostworks_app;

-- Adds each workspace's delta to this backend's shard. Workspaces whose delta is zero are left
-- alone, so a statement that changes no live row writes nothing here.
CREATE FUNCTION artifact_counts_add(deltas jsonb) RETURNS void
    LANGUAGE sql
    AS $$
        INSERT INTO artifact_counts AS c (tenant_id, shard, live)
        SELECT d.key::uuid, (pg_backend_pid() % 16)::smallint, d.value::bigint
        FROM jsonb_each_text(deltas) AS d
        WHERE d.value::bigint <> 0
        ORDER BY 1
        ON CONFLICT (tenant_id, shard) DO UPDATE SET live = c.live + excluded.live
    $$;

CREATE FUNCTION artifact_counts_inserted() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    DECLARE deltas jsonb;
    BEGIN
        SELECT jsonb_object_agg(tenant_id, n) INTO deltas
        FROM (SELECT tenant_id, count(*) AS n FROM new_rows WHERE deleted_at IS NULL GROUP BY tenant_id) s;
        IF deltas IS NOT NULL THEN
            PERFORM artifact_counts_add(deltas);
        END IF;
        RETURN NULL;
    END $$;

-- A hard delete removes rows soft-deleted long ago (maintenance) or a whole workspace (its
-- counts go with it by the cascade); only a live row's removal changes the count, and its
-- workspace then has a row to subtract from unless the cascade took it, which is fine.
CREATE FUNCTION artifact_counts_deleted() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM old_rows WHERE deleted_at IS NULL) THEN
            UPDATE artifact_counts c SET live = c.live - d.n
            FROM (SELECT tenant_id, count(*) AS n FROM old_rows WHERE deleted_at IS NULL GROUP BY tenant_id) d
            WHERE c.tenant_id = d.tenant_id
              AND c.shard = (SELECT min(shard) FROM artifact_counts m WHERE m.tenant_id = d.tenant_id);
        END IF;
        RETURN NULL;
    END $$;

-- Soft deletes (and restores): one row at a time, and only when deleted_at changes, so the
-- frequent edits that leave it alone cost nothing here.
CREATE FUNCTION artifact_counts_revived() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        PERFORM artifact_counts_add(jsonb_build_object(NEW.tenant_id,
            CASE WHEN NEW.deleted_at IS NULL THEN 1 ELSE -1 END));
        RETURN NULL;
    END $$;

CREATE TRIGGER artifacts_count_insert AFTER INSERT ON artifacts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION artifact_counts_inserted();
CREATE TRIGGER artifacts_count_delete AFTER DELETE ON artifacts
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION artifact_counts_deleted();
CREATE TRIGGER artifacts_count_soft_delete AFTER UPDATE OF deleted_at ON artifacts
    FOR EACH ROW WHEN ((OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL))
    EXECUTE FUNCTION artifact_counts_revived();

-- Existing workspaces, counted once (shard 0). CREATE TRIGGER holds off writes to artifacts
-- until this transaction commits, so the count and the triggers start from the same rows.
INSERT INTO artifact_counts (tenant_id, shard, live)
SELECT tenant_id, 0, count(*) FROM artifacts WHERE deleted_at IS NULL GROUP BY tenant_id;
