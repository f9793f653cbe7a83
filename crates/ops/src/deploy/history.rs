//! The state directory: the release history and the active colour.
//!
//! The history is a JSON-lines file, not a table: it must be readable and writable when the
//! database is what failed (a migration, a restore), and it describes releases of the
//! binaries, which outlive any one database.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::analysis::StepReport;
use super::Colour;

/// What is deployed: a binary (process runtime) or an image tag (compose runtime).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub artifact: String,
    pub version: String,
    pub git_sha: String,
    /// sha256 of the binary, or the image reference's digest as the runtime reports it.
    pub digest: String,
}

/// How a deploy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    /// Failed before the switch: traffic never left the old colour.
    Failed,
    /// Failed during the bake: traffic was switched back.
    RolledBack,
}

/// The gated steps of a deploy, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Check,
    Backup,
    Migrate,
    Start,
    Ready,
    Switch,
    Bake,
    /// A canary's weighted steps and their analysis (instead of the switch and the bake).
    Canary,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled_back",
        }
    }
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Check => "check",
            Step::Backup => "backup",
            Step::Migrate => "migrate",
            Step::Start => "start",
            Step::Ready => "ready",
            Step::Switch => "switch",
            Step::Bake => "bake",
            Step::Canary => "canary",
        }
    }
}

// `pad`, so that the history table's widths apply.
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub time: DateTime<Utc>,
    pub release: Release,
    pub colour: Colour,
    /// The schema version after the deploy.
    pub schema_version: i64,
    /// The schema version before it (older entries have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_before: Option<i64>,
    /// The sha256 of the roles' configuration (never a value of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// `canary` for a canary; none for blue/green.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// A canary's steps with their analysis, the failing one last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepReport>,
    /// The analysis only recorded verdicts (`--dry-run-analysis`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run_analysis: bool,
    pub result: Outcome,
    pub failed_step: Option<Step>,
    pub reason: Option<String>,
    pub by: String,
    pub duration_ms: u64,
    /// From writing the upstream to nginx serving the new colour.
    pub switch_ms: Option<u64>,
    /// From the failure to traffic on the old colour again and the new colour stopped.
    pub rollback_ms: Option<u64>,
}

impl HistoryEntry {
    pub fn succeeded(&self) -> bool {
        self.result == Outcome::Succeeded
    }
}

/// The colour serving traffic and its release.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Active {
    pub colour: Colour,
    pub release: Release,
}

/// A canary in progress (or its end), as `STATE/rollout.json` holds it for the web app's
/// operations page: no secret, so readable by the web role.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rollout {
    pub time: DateTime<Utc>,
    pub version: String,
    pub stable: Colour,
    pub canary: Colour,
    /// The canary's share of new sessions now.
    pub percent: u8,
    /// `running`, or how it ended: `succeeded`, `aborted`.
    pub state: String,
    /// The steps judged so far.
    pub steps: Vec<StepReport>,
}

/// The state directory: history and the active colour.
pub struct State {
    dir: PathBuf,
}

impl State {
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--state-dir: cannot create {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn active(&self) -> Result<Option<Active>> {
        let p = self.dir.join("active.json");
        if !p.exists() {
            return Ok(None);
        }
        Ok(Some(serde_json::from_slice(&std::fs::read(&p)?)?))
    }

    pub(crate) fn set_active(&self, a: &Active) -> Result<()> {
        let tmp = self.dir.join("active.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(a)?)?;
        std::fs::rename(tmp, self.dir.join("active.json"))?;
        Ok(())
    }

    /// Replaces `rollout.json` (a rename: a reader sees the old or the new file).
    pub(crate) fn set_rollout(&self, r: &Rollout) -> Result<()> {
        let tmp = self.dir.join("rollout.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(r)?)?;
        std::fs::rename(tmp, self.dir.join("rollout.json"))?;
        Ok(())
    }

    pub fn history(&self) -> Result<Vec<HistoryEntry>> {
        let p = self.dir.join("history.jsonl");
        if !p.exists() {
            return Ok(Vec::new());
        }
        std::fs::read_to_string(&p)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).context("history.jsonl: a damaged line"))
            .collect()
    }

    pub(crate) fn record(&self, e: &HistoryEntry) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("history.jsonl"))?;
        writeln!(f, "{}", serde_json::to_string(e)?)?;
        f.sync_all()?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn entry(version: &str, result: Outcome) -> HistoryEntry {
        HistoryEntry {
            time: Utc::now(),
            release: Release {
                artifact: format!("/opt/ghostworks/{version}/ghostworks"),
                version: version.into(),
                git_sha: "abc".into(),
                digest: "sha256:0".into(),
            },
            colour: Colour::Blue,
            schema_version: 2,
            schema_before: None,
            config_hash: None,
            strategy: None,
            steps: Vec::new(),
            dry_run_analysis: false,
            result,
            failed_step: None,
            reason: None,
            by: "ops".into(),
            duration_ms: 1,
            switch_ms: None,
            rollback_ms: None,
        }
    }

    #[test]
    fn history_lines_keep_their_format() {
        let line = r#"{"time":"2026-11-01T00:00:00Z","release":{"artifact":"a","version":"1.2","git_sha":"abc","digest":"sha256:0"},"colour":"green","schema_version":9,"result":"rolled_back","failed_step":"bake","reason":"p95","by":"ops","duration_ms":1,"switch_ms":1,"rollback_ms":2}"#;
        let e: HistoryEntry = serde_json::from_str(line).unwrap();
        assert_eq!(
            (e.result, e.failed_step, e.colour),
            (Outcome::RolledBack, Some(Step::Bake), Colour::Green)
        );
        assert_eq!(serde_json::to_string(&e).unwrap(), line);
        assert_eq!(format!("{:<12}|", Outcome::RolledBack), "rolled_back |");
    }
}
