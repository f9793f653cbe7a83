//! GHOSTWORKS_GIT_SHA for build information: from the environment (image builds pass it, as
//! they have no repository), else from git, else "unknown".

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=GHOSTWORKS_GIT_SHA");
    let sha = std::env::var("GHOSTWORKS_GIT_SHA")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    // Rebuild when HEAD moves, but only watch files that exist: a missing one would make
    // every build rerun this script and recompile every crate that depends on this one.
    let git = Path::new("../../.git");
    let head = git.join("HEAD");
    if head.is_file() {
        println!("cargo:rerun-if-changed={}", head.display());
        if let Ok(text) = std::fs::read_to_string(&head) {
            if let Some(r) = text.strip_prefix("ref: ") {
                let reference = git.join(r.trim());
                if reference.is_file() {
                    println!("cargo:rerun-if-changed={}", reference.display());
                }
            }
        }
    }
    println!("cargo:rustc-env=GHOSTWORKS_GIT_SHA={sha}");
}
