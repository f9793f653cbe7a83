//! The environment the process runtime starts the release's binary with: never the deployer's
//! whole environment, which holds the schema owner's URL (`DATABASE_ADMIN_URL`) and often
//! cloud keys (`AWS_*`) that no role may hold. Each process gets a cleared environment, then
//! the allow-listed variables of the deployer's ([`INHERITED`]), then its role's env file, then
//! what the deploy itself sets (listen address, links, the schema owner's URL for `migrate`).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::deploy::component::{self, COMPONENTS};

/// The deployer's variables every process of the release inherits: where programs are, the
/// home directory, the time zone, the locale and the system's trust store for TLS. None holds
/// a credential; everything else a role needs comes from its env file.
pub const INHERITED: &[&str] = &[
    "PATH",
    "HOME",
    "TZ",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Whether `name` is one of [`INHERITED`] (`LC_*`: any name with that prefix).
fn inherited(name: &str) -> bool {
    INHERITED
        .iter()
        .any(|allowed| match allowed.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *allowed,
        })
}

/// The environments the runtime starts processes with.
pub struct Environments {
    /// The allow-listed part of the deployer's environment.
    inherited: HashMap<String, String>,
    /// Each role's env file, by component name.
    roles: HashMap<String, HashMap<String, String>>,
}

impl Environments {
    /// The allow-listed part of `deployer` (the deploying process's environment) and the
    /// `--env-file ROLE=FILE` options.
    pub fn new(deployer: HashMap<String, String>, env_files: &[String]) -> Result<Self> {
        Ok(Self {
            inherited: deployer.into_iter().filter(|(k, _)| inherited(k)).collect(),
            roles: read_env_files(env_files)?,
        })
    }

    /// `program` with a cleared environment, the inherited variables and, for a `component`,
    /// its env file.
    pub fn command(&self, program: impl AsRef<OsStr>, component: Option<&str>) -> Command {
        let mut c = Command::new(program);
        c.env_clear().envs(&self.inherited);
        if let Some(env) = component.and_then(|name| self.roles.get(name)) {
            c.envs(env);
        }
        c
    }

    /// The sha256 of the roles' env files as read (roles and keys in order), for the release
    /// ledger: it tells two deploys' configurations apart without recording any value.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let mut roles: Vec<_> = self.roles.iter().collect();
        roles.sort_by_key(|(name, _)| *name);
        for (name, env) in roles {
            let mut vars: Vec<_> = env.iter().collect();
            vars.sort();
            for (k, v) in vars {
                h.update(format!("{name}\0{k}\0{v}\n"));
            }
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }
}

/// `--env-file ROLE=FILE` options: the environment of each component.
fn read_env_files(specs: &[String]) -> Result<HashMap<String, HashMap<String, String>>> {
    let mut env = HashMap::new();
    for spec in specs {
        let (name, file) = spec
            .split_once('=')
            .with_context(|| format!("--env-file: {spec:?} is not ROLE=FILE (e.g. api=api.env)"))?;
        if !COMPONENTS.iter().any(|c| c.name == name) {
            bail!(
                "--env-file: unknown role {name:?}; the roles are {}",
                component::names()
            );
        }
        env.insert(
            name.to_string(),
            ghostworks_config::read_env_file(Path::new(file))?,
        );
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_allow_list_and_the_roles_file_reach_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("api.env");
        std::fs::write(&file, "DATABASE_URL=postgres://api@db/gw\n").unwrap();
        let deployer: HashMap<String, String> = [
            ("PATH", "/usr/bin"),
            ("LC_TIME", "C"),
            ("DATABASE_ADMIN_URL", "postgres://owner@db/gw"),
            ("AWS_SECRET_ACCESS_KEY", "k"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let envs = Environments::new(deployer, &[format!("api={}", file.display())]).unwrap();
        let names = |c: &Command| {
            let mut n: Vec<String> = c
                .get_envs()
                .map(|(k, _)| k.to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        assert_eq!(
            names(&envs.command("ghostworks", Some("api"))),
            ["DATABASE_URL", "LC_TIME", "PATH"]
        );
        assert_eq!(
            names(&envs.command("ghostworks", None)),
            ["LC_TIME", "PATH"]
        );
        let refused = Environments::new(HashMap::new(), &["db=x.env".into()])
            .err()
            .expect("refused")
            .to_string();
        assert!(refused.contains("unknown role \"db\""), "{refused}");
    }
}
