//! `ghostworks migrate lint`: flags the destructive patterns that break expand/contract
//! migrations (the release still running, or the one a rollback returns to, needs the old
//! shape). A migration containing the line `-- ghostworks:contract` is an explicit contract
//! step: its findings are reported but allowed, and `deploy` decides when it may run.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use anyhow::{Context, Result};

/// The marker comment that opts a migration into being a contract step.
pub const CONTRACT_MARKER: &str = "-- ghostworks:contract";

/// Migrations up to this version were applied in production before the lint existed; sqlx
/// checksums every applied file, so they cannot gain a marker. 0002 creates indexes on
/// existing tables without CONCURRENTLY, which was acceptable on the tables of that time.
pub const BASELINE_VERSION: i64 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    DropTable,
    DropColumn,
    RenameTable,
    RenameColumn,
    ColumnType,
    NotNullWithoutDefault,
    BlockingIndex,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::DropTable => "drop-table",
            Rule::DropColumn => "drop-column",
            Rule::RenameTable => "rename-table",
            Rule::RenameColumn => "rename-column",
            Rule::ColumnType => "column-type",
            Rule::NotNullWithoutDefault => "not-null-without-default",
            Rule::BlockingIndex => "blocking-index",
        }
    }

    fn fix(self) -> &'static str {
        match self {
            Rule::DropTable | Rule::DropColumn => {
                "stop using it in one release, then drop it in a later migration marked `-- ghostworks:contract`"
            }
            Rule::RenameTable | Rule::RenameColumn => {
                "add the new name, write both, backfill, switch reads, then drop the old one in a contract step"
            }
            Rule::ColumnType => "add a column of the new type, backfill it, switch, then drop the old column in a contract step",
            Rule::NotNullWithoutDefault => {
                "add the column with a DEFAULT (or nullable), backfill, then add the constraint with NOT VALID and VALIDATE it"
            }
            Rule::BlockingIndex => {
                "use CREATE INDEX CONCURRENTLY in a migration of its own that starts with `-- no-transaction`"
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub rule: Rule,
    pub statement: String,
    /// The migration is marked as a contract step, so the finding is allowed.
    pub contract: bool,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}{}: {}",
            self.file,
            self.line,
            self.rule.name(),
            if self.contract {
                " (allowed: contract step)"
            } else {
                ""
            },
            self.statement
        )?;
        if !self.contract {
            write!(f, "\n    fix: {}", self.rule.fix())?;
        }
        Ok(())
    }
}

/// Replaces comments, string literals and dollar-quoted bodies with spaces (keeping newlines,
/// so line numbers survive): a `DROP TABLE` inside a function body or a comment is not a
/// statement of the migration.
fn strip(sql: &str) -> String {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '-' && next == Some('-') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == '\'' {
            out.push('\'');
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' && chars.get(i + 1) == Some(&'\'') {
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '\'' {
                    break;
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push('\'');
            i += 1;
        } else if c == '$' {
            // A dollar quote: $$ or $tag$ (a tag is an identifier, not a digit: $1 is a parameter).
            let mut j = i + 1;
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            let is_quote =
                chars.get(j) == Some(&'$') && !chars.get(i + 1).is_some_and(|d| d.is_ascii_digit());
            if !is_quote {
                out.push(c);
                i += 1;
                continue;
            }
            let tag: String = chars[i..=j].iter().collect();
            let tag_chars: Vec<char> = tag.chars().collect();
            out.push_str(&tag);
            i = j + 1;
            while i < chars.len() && !chars[i..].starts_with(&tag_chars) {
                out.push(blank(chars[i]));
                i += 1;
            }
            if i < chars.len() {
                out.push_str(&tag);
                i += tag_chars.len();
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Splits at top-level commas (the actions of one ALTER TABLE).
fn split_actions(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    parts
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_uppercase())
        .collect()
}

fn unquote(name: &str) -> String {
    let last = name.rsplit('.').next().unwrap_or(name);
    last.trim_matches('"').to_ascii_lowercase()
}

/// The rules a single ALTER TABLE action breaks.
fn alter_action(action: &[String]) -> Option<Rule> {
    let w = |i: usize| action.get(i).map(String::as_str).unwrap_or("");
    match w(0) {
        "DROP" => match w(1) {
            "CONSTRAINT" => None,
            _ => Some(Rule::DropColumn),
        },
        "RENAME" => match w(1) {
            "TO" => Some(Rule::RenameTable),
            "CONSTRAINT" => None,
            _ => Some(Rule::RenameColumn),
        },
        "ALTER" => {
            let rest = if w(1) == "COLUMN" {
                &action[3.min(action.len())..]
            } else {
                &action[2.min(action.len())..]
            };
            let r = |i: usize| rest.get(i).map(String::as_str).unwrap_or("");
            if r(0) == "TYPE" || (r(0) == "SET" && r(1) == "DATA" && r(2) == "TYPE") {
                Some(Rule::ColumnType)
            } else if r(0) == "SET" && r(1) == "NOT" && r(2) == "NULL" {
                Some(Rule::NotNullWithoutDefault)
            } else {
                None
            }
        }
        "ADD" => {
            if matches!(
                w(1),
                "CONSTRAINT" | "PRIMARY" | "UNIQUE" | "CHECK" | "FOREIGN" | "EXCLUDE"
            ) {
                return None;
            }
            let has_not_null = action.windows(2).any(|p| p[0] == "NOT" && p[1] == "NULL");
            let has_default = action.iter().any(|x| x == "DEFAULT");
            (has_not_null && !has_default).then_some(Rule::NotNullWithoutDefault)
        }
        _ => None,
    }
}

/// Whether a migration is marked as a contract step.
pub fn is_contract(sql: &str) -> bool {
    sql.lines().any(|l| l.trim() == CONTRACT_MARKER)
}

/// The findings of an `ALTER TABLE` statement (`w`: its words).
fn alter_table(stmt: &str, w: &[String], created: &HashSet<String>) -> Vec<Rule> {
    let at = |i: usize| w.get(i).map(String::as_str).unwrap_or("");
    // ALTER TABLE [IF EXISTS] [ONLY] name action[, action...]
    let mut i = 2;
    while matches!(at(i), "IF" | "EXISTS" | "ONLY") {
        i += 1;
    }
    let table = unquote(at(i));
    // Constraints and types on a table created in this same migration break nobody: no
    // release has seen it yet.
    if created.contains(&table) {
        return Vec::new();
    }
    let body: Vec<&str> = stmt.split_whitespace().collect();
    let pos = body
        .iter()
        .position(|t| unquote(t) == table)
        .map(|p| p + 1)
        .unwrap_or(body.len());
    split_actions(&body[pos..].join(" "))
        .iter()
        .filter_map(|action| alter_action(&words(action)))
        .collect()
}

/// Lints one migration's SQL; `file` names it in the findings.
pub fn lint_sql(file: &str, sql: &str) -> Vec<Finding> {
    let contract = is_contract(sql);
    let cleaned = strip(sql);
    let mut created: HashSet<String> = HashSet::new();
    let mut findings = Vec::new();
    let mut line = 1;
    for raw in cleaned.split(';') {
        let leading = raw.len() - raw.trim_start().len();
        let start_line = line + raw[..leading].matches('\n').count();
        line += raw.matches('\n').count();
        let stmt = raw.trim();
        if stmt.is_empty() {
            continue;
        }
        let w = words(stmt);
        let at = |i: usize| w.get(i).map(String::as_str).unwrap_or("");
        let mut hits: Vec<Rule> = Vec::new();
        match (at(0), at(1)) {
            ("CREATE", "TABLE") => {
                let mut i = 2;
                while matches!(at(i), "IF" | "NOT" | "EXISTS") {
                    i += 1;
                }
                created.insert(unquote(at(i)));
            }
            ("DROP", "TABLE") => hits.push(Rule::DropTable),
            ("ALTER", "TABLE") => hits.extend(alter_table(stmt, &w, &created)),
            ("CREATE", "INDEX") | ("CREATE", "UNIQUE") => {
                let concurrent = w.iter().any(|x| x == "CONCURRENTLY");
                let table = w
                    .iter()
                    .position(|x| x == "ON")
                    .and_then(|p| {
                        let mut q = p + 1;
                        if at(q) == "ONLY" {
                            q += 1;
                        }
                        w.get(q)
                    })
                    .map(|t| unquote(t))
                    .unwrap_or_default();
                if !concurrent && !created.contains(&table) {
                    hits.push(Rule::BlockingIndex);
                }
            }
            _ => {}
        }
        let original: String = sql
            .lines()
            .skip(start_line - 1)
            .take(stmt.matches('\n').count() + 1)
            .collect::<Vec<_>>()
            .join(" ");
        let shown: String = original.split_whitespace().collect::<Vec<_>>().join(" ");
        for rule in hits {
            findings.push(Finding {
                file: file.to_string(),
                line: start_line,
                rule,
                statement: shown.chars().take(120).collect(),
                contract,
            });
        }
    }
    findings
}

/// The version prefix of a migration file name (`0004_deploy_history.sql` -> 4).
fn version_of(name: &str) -> Option<i64> {
    name.split('_').next()?.parse().ok()
}

/// Lints every `*.sql` migration in `dir` after [`BASELINE_VERSION`], in version order.
pub fn lint_dir(dir: &Path) -> Result<Vec<Finding>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("--dir: cannot read {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    let mut findings = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if version_of(&name).is_some_and(|v| v <= BASELINE_VERSION) {
            continue;
        }
        let sql = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        findings.extend(lint_sql(&name, &sql));
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(sql: &str) -> Vec<Rule> {
        lint_sql("t.sql", sql).into_iter().map(|f| f.rule).collect()
    }

    #[test]
    fn each_destructive_pattern_is_caught() {
        assert_eq!(rules("DROP TABLE artifacts;"), [Rule::DropTable]);
        assert_eq!(rules("drop table if exists old_things"), [Rule::DropTable]);
        assert_eq!(
            rules("ALTER TABLE artifacts DROP COLUMN description;"),
            [Rule::DropColumn]
        );
        assert_eq!(rules("ALTER TABLE users DROP email"), [Rule::DropColumn]);
        assert_eq!(
            rules("ALTER TABLE artifacts RENAME COLUMN name TO title;"),
            [Rule::RenameColumn]
        );
        assert_eq!(
            rules("ALTER TABLE artifacts RENAME TO things;"),
            [Rule::RenameTable]
        );
        assert_eq!(
            rules("ALTER TABLE artifacts ALTER COLUMN version TYPE bigint;"),
            [Rule::ColumnType]
        );
        assert_eq!(
            rules("ALTER TABLE artifacts ALTER version SET DATA TYPE bigint;"),
            [Rule::ColumnType]
        );
        assert_eq!(
            rules("ALTER TABLE artifacts ADD COLUMN owner uuid NOT NULL;"),
            [Rule::NotNullWithoutDefault]
        );
        assert_eq!(
            rules("ALTER TABLE artifacts ALTER COLUMN description SET NOT NULL;"),
            [Rule::NotNullWithoutDefault]
        );
        assert_eq!(
            rules("CREATE INDEX ix_a ON artifacts (name);"),
            [Rule::BlockingIndex]
        );
        assert_eq!(
            rules("CREATE UNIQUE INDEX ix_a ON public.artifacts USING btree (name);"),
            [Rule::BlockingIndex]
        );
        assert_eq!(
            rules("ALTER TABLE a ADD COLUMN x int NOT NULL, DROP COLUMN y;"),
            [Rule::NotNullWithoutDefault, Rule::DropColumn]
        );
    }

    #[test]
    fn safe_statements_pass() {
        let sql = r#"
            -- DROP TABLE users; in a comment
            /* ALTER TABLE users DROP COLUMN email; */
            DROP POLICY IF EXISTS artifacts_tenant ON artifacts;
            DROP FUNCTION IF EXISTS tags_text(text[]);
            DROP INDEX IF EXISTS ix_old;
            DROP TRIGGER IF EXISTS artifacts_touch ON artifacts;
            CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $body$
            BEGIN EXECUTE 'DROP TABLE x'; DROP TABLE y; END $body$;
            DO $$ BEGIN ALTER TABLE t DROP COLUMN c; END $$;
            INSERT INTO notes VALUES ('DROP TABLE users; ALTER TABLE x DROP y');
            ALTER TABLE artifacts ADD COLUMN score int NOT NULL DEFAULT 0;
            ALTER TABLE artifacts ADD COLUMN note text;
            ALTER TABLE artifacts ALTER COLUMN description DROP NOT NULL;
            ALTER TABLE artifacts DROP CONSTRAINT artifacts_metadata_is_object;
            ALTER TABLE artifacts ADD CONSTRAINT c CHECK (version > 0) NOT VALID;
            ALTER TABLE artifacts ENABLE ROW LEVEL SECURITY;
            CREATE INDEX CONCURRENTLY ix_b ON artifacts (name);
            CREATE TABLE fresh (id uuid PRIMARY KEY, n int NOT NULL);
            CREATE INDEX ix_fresh ON fresh (n);
            ALTER TABLE fresh ADD COLUMN m int NOT NULL;
            SELECT $1::text;
        "#;
        assert_eq!(lint_sql("safe.sql", sql), []);
    }

    #[test]
    fn a_contract_step_is_allowed_and_located() {
        let sql = "-- ghostworks:contract\n\nALTER TABLE artifacts\n  DROP COLUMN legacy;\n";
        let f = lint_sql("0009_drop_legacy.sql", sql);
        assert_eq!(f.len(), 1);
        assert!(f[0].contract);
        assert_eq!(f[0].line, 3);
        assert_eq!(f[0].statement, "ALTER TABLE artifacts DROP COLUMN legacy;");
        assert!(f[0].to_string().contains("allowed: contract step"));
    }

    #[test]
    fn the_shipped_migrations_pass() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
        let blocking: Vec<_> = lint_dir(&dir)
            .unwrap()
            .into_iter()
            .filter(|f| !f.contract)
            .collect();
        assert!(blocking.is_empty(), "{blocking:#?}");
        // The baseline files hold no drops, renames or type changes (their DO blocks and
        // function bodies are not mistaken for statements); only 0002's indexes on then-small
        // tables.
        let all: Vec<_> = ["0001_core_schema.sql", "0002_jobs.sql"]
            .iter()
            .flat_map(|n| lint_sql(n, &std::fs::read_to_string(dir.join(n)).unwrap()))
            .collect();
        assert!(
            all.iter()
                .all(|f| f.file == "0002_jobs.sql" && f.rule == Rule::BlockingIndex),
            "{all:#?}"
        );
    }
}
