//! `ghostworks score`: the CI score report (kiro_score.json) from the CI outputs in a
//! directory. The scoring lives in `ghostworks-score`; this fills in where the report comes
//! from (GitHub Actions variables, else `git`) and writes the file.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;
use ghostworks_score::Env;

pub fn run(dir: &Path, output: &Path) -> anyhow::Result<ExitCode> {
    let inputs = ghostworks_score::collect(dir)?;
    let report = ghostworks_score::report(&inputs, &env());
    let text = serde_json::to_string_pretty(&report)? + "\n";
    std::fs::write(output, text).with_context(|| format!("cannot write {}", output.display()))?;
    println!(
        "{} Written to {}.",
        ghostworks_score::summary_text(&report),
        output.display()
    );
    let action = report["grade_info"]["deployment_action"]
        .as_str()
        .unwrap_or("BLOCK");
    Ok(ExitCode::from(
        u8::try_from(ghostworks_score::exit_code(action)).unwrap_or(1),
    ))
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn env() -> Env {
    Env {
        commit_sha: var("GITHUB_SHA").or_else(|| git(&["rev-parse", "HEAD"])),
        branch: var("GITHUB_REF_NAME").or_else(|| {
            // A detached HEAD has no branch name.
            git(&["rev-parse", "--abbrev-ref", "HEAD"]).filter(|b| b != "HEAD")
        }),
        run_id: var("GITHUB_RUN_ID"),
        repository: var("GITHUB_REPOSITORY"),
        generated_at: chrono::Utc::now(),
    }
}
