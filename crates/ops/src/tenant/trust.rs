//! What import checks before it writes anything: that every archived row belongs to the
//! archive's workspace, and that no archived account clashes with one of the target.

use std::collections::HashSet;

use anyhow::{anyhow, bail, Result};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::archive::{Archive, Row};
use super::{Owner, Table};

/// The columns of the archive's rows that name an account, which the archive must then hold.
const ACCOUNT_REFERENCES: &[(&str, &str)] = &[
    ("workspace_memberships", "user_id"),
    ("artifacts", "created_by"),
];

fn refuse(table: &Table, line: usize, why: String) -> anyhow::Error {
    anyhow!("line {line} (table {}): {why}", table.name)
}

/// A uuid column of an archived row (None when absent, null or not a uuid).
fn uuid_of(row: &Value, column: &str) -> Option<Uuid> {
    row.get(column)?.as_str()?.parse().ok()
}

/// Refuses the first row that is not the archive's workspace's: the workspace row must be the
/// header's, every other row of the workspace must carry its id, and the accounts must be
/// exactly those its memberships and artifacts name.
pub(super) fn check_ownership(a: &Archive) -> Result<()> {
    let accounts: HashSet<Uuid> = a
        .rows
        .iter()
        .filter(|(t, _)| t.owner == Owner::Account)
        .flat_map(|(_, rows)| rows.iter().filter_map(|(_, row)| uuid_of(row, "id")))
        .collect();
    let mut named = HashSet::new();
    let mut workspace_rows = 0;
    for (table, rows) in &a.rows {
        for (line, row) in rows {
            match table.owner {
                Owner::Workspace => {
                    let slug = row.get("slug").and_then(Value::as_str);
                    if uuid_of(row, "id") != Some(a.tenant_id) || slug != Some(a.slug.as_str()) {
                        return Err(refuse(
                            table,
                            *line,
                            format!(
                                "a workspace other than the archive's {:?} ({})",
                                a.slug, a.tenant_id
                            ),
                        ));
                    }
                    workspace_rows += 1;
                }
                Owner::Tenant => {
                    let tenant = uuid_of(row, "tenant_id");
                    if tenant != Some(a.tenant_id) {
                        return Err(refuse(
                            table,
                            *line,
                            format!(
                                "the row belongs to {}, not to the archive's workspace {}",
                                tenant.map_or("no workspace".into(), |t| format!("workspace {t}")),
                                a.tenant_id
                            ),
                        ));
                    }
                    for (_, column) in ACCOUNT_REFERENCES.iter().filter(|(t, _)| *t == table.name) {
                        let Some(user) = uuid_of(row, column) else {
                            continue;
                        };
                        if !accounts.contains(&user) {
                            return Err(refuse(
                                table,
                                *line,
                                format!(
                                "{column} names the account {user}, which the archive does not hold"
                            ),
                            ));
                        }
                        named.insert(user);
                    }
                }
                Owner::Account => {}
            }
        }
    }
    if workspace_rows != 1 {
        bail!("{workspace_rows} rows for the workspace itself in table tenants, not 1");
    }
    for (table, rows) in a.rows.iter().filter(|(t, _)| t.owner == Owner::Account) {
        for (line, row) in rows {
            if !uuid_of(row, "id").is_some_and(|id| named.contains(&id)) {
                return Err(refuse(
                    table,
                    *line,
                    "an account that is neither a member of the workspace nor the creator of one \
                     of its artifacts"
                        .into(),
                ));
            }
        }
    }
    Ok(())
}

/// Refuses an archived account that clashes with an account of the target: one with its id but
/// another e-mail address (not the same person), or one with its address but another id. An
/// account that exists with the same id and address is kept as it is. Returns how many exist.
pub(super) async fn existing_accounts(conn: &mut PgConnection, accounts: &[Row]) -> Result<i64> {
    let ids: Vec<Uuid> = accounts
        .iter()
        .filter_map(|(_, r)| uuid_of(r, "id"))
        .collect();
    let emails: Vec<&str> = accounts
        .iter()
        .filter_map(|(_, r)| r.get("email")?.as_str())
        .collect();
    let found: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, email::text FROM users WHERE id = ANY($1) OR email = ANY($2)")
            .bind(&ids)
            .bind(&emails)
            .fetch_all(&mut *conn)
            .await?;
    let mut existing = 0;
    for (line, row) in accounts {
        let id = uuid_of(row, "id");
        let email = row.get("email").and_then(Value::as_str);
        for (found_id, found_email) in &found {
            let clash = match (Some(*found_id) == id, Some(found_email.as_str()) == email) {
                (true, true) => {
                    existing += 1;
                    None
                }
                (true, false) => Some(format!(
                    "the target database has the account {found_id} with another e-mail address"
                )),
                (false, true) => Some(format!(
                    "the target database has an account with the address {found_email} under \
                     another id ({found_id})"
                )),
                (false, false) => None,
            };
            if let Some(why) = clash {
                bail!("line {line} (table users): {why}; refusing the whole archive, nothing was imported");
            }
        }
    }
    Ok(existing)
}
