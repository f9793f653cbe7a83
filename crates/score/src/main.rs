//! `ghostworks-score`: the CI score report (kiro_score.json) from the CI outputs in a directory.
//! The scoring is the library; this fills in where the report comes from (GitHub Actions
//! variables, else `git`) and writes the file.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;
use clap::Parser;
use ghostworks_score::Env;

/// Write the CI score report (kiro_score.json) from the CI outputs in a directory.
///
/// Reads test-output.log (cargo test / tarpaulin output), cobertura.xml and
/// coverage-frontend.xml (Cobertura), load.json (load benchmark), playwright.json
/// (Playwright JSON reporter), deny.json (`cargo deny --format json check`),
/// schemathesis.xml (JUnit) and build.json. Every file is optional, but a component
/// without its file scores 0 and is reported as not measured. Prints a summary; exit
/// status 1 when the grade blocks deployment, 2 when it needs an override, else 0.
#[derive(Parser)]
#[command(name = "ghostworks-score", version)]
struct Cli {
    /// The directory holding the CI outputs.
    #[arg(long, default_value = "target/ci")]
    dir: PathBuf,
    /// Where to write the report.
    #[arg(long, default_value = "kiro_score.json")]
    output: PathBuf,
    /// The commit scored; default: `git rev-parse HEAD`.
    #[arg(long, env = "GITHUB_SHA", hide_env_values = true)]
    commit_sha: Option<String>,
    /// The branch scored; default: the checked-out branch (none on a detached HEAD).
    #[arg(long, env = "GITHUB_REF_NAME", hide_env_values = true)]
    branch: Option<String>,
    /// The CI run's id.
    #[arg(long, env = "GITHUB_RUN_ID", hide_env_values = true)]
    run_id: Option<String>,
    /// The repository, as owner/name.
    #[arg(long, env = "GITHUB_REPOSITORY", hide_env_values = true)]
    repository: Option<String>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let inputs = ghostworks_score::collect(&cli.dir)?;
    let output = cli.output.clone();
    let report = ghostworks_score::report(&inputs, &env(cli));
    write(&output, &(serde_json::to_string_pretty(&report)? + "\n"))?;
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

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// A blank value is no value (an unset GitHub variable is often exported empty).
fn given(v: Option<String>) -> Option<String> {
    v.filter(|v| !v.trim().is_empty())
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

fn env(cli: Cli) -> Env {
    Env {
        commit_sha: given(cli.commit_sha).or_else(|| git(&["rev-parse", "HEAD"])),
        branch: given(cli.branch).or_else(|| {
            // A detached HEAD has no branch name.
            git(&["rev-parse", "--abbrev-ref", "HEAD"]).filter(|b| b != "HEAD")
        }),
        run_id: given(cli.run_id),
        repository: given(cli.repository),
        generated_at: chrono::Utc::now(),
    }
}
