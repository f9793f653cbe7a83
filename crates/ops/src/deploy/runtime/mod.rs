//! How releases run. Each runtime is a module here holding its options (a clap `Args` struct
//! under its own help heading) and its [`Runtime`]; [`RuntimeKind`] names them, and
//! [`RuntimeArgs`] builds the one chosen.

pub mod compose;
pub mod process;
pub mod swarm;

use std::path::PathBuf;

use anyhow::{bail, Result};
use async_trait::async_trait;
use clap::{ArgMatches, Args, FromArgMatches, ValueEnum};
use ghostworks_telemetry::signals::Signals;

use super::{Colour, Instance, Release};
use crate::migrate::Migration;
use compose::{ComposeArgs, ComposeRuntime};
use process::{ProcessArgs, ProcessRuntime};
use swarm::{SwarmArgs, SwarmRuntime};

/// How releases are run: supervised processes on this host, Docker Compose, or a Docker Swarm
/// stack.
#[async_trait]
pub trait Runtime: Send {
    /// What identifies the release's content: a binary's sha256, an image's id. The history
    /// records it, and a rollback compares it before running the release again.
    async fn digest(&mut self, artifact: &str) -> Result<String>;
    /// Checks the release artifact and its configuration; returns the release's description.
    async fn check(&mut self, artifact: &str) -> Result<Release>;
    /// What `ghostworks migrate --status` of the release reports.
    async fn migration_status(&mut self, release: &Release) -> Result<Vec<Migration>>;
    /// Applies the release's migrations.
    async fn migrate(&mut self, release: &Release) -> Result<()>;
    /// Starts every component of `colour` from `release`.
    async fn start(&mut self, colour: Colour, release: &Release) -> Result<Vec<Instance>>;
    /// Sends all the traffic to `colour`: by its proxy's runtime API where the runtime has
    /// one (no connection closed), else by rewriting nginx's upstreams and reloading it.
    async fn switch(&mut self, colour: Colour) -> Result<()>;
    /// Stops `colour` gracefully (in-flight requests and jobs finish first).
    async fn stop(&mut self, colour: Colour) -> Result<()>;
    /// Gives `to` `percent` of the new sessions and the other colour the rest, without
    /// closing a connection: a canary's steps. A runtime that can only switch all the
    /// traffic at once refuses.
    async fn shift(&mut self, to: Colour, percent: u8) -> Result<()> {
        let _ = (to, percent);
        bail!("this runtime switches all the traffic at once; a canary needs --proxy haproxy")
    }
    /// The instances of `colour` that take traffic, whose signals a canary compares.
    fn serving(&self, colour: Colour) -> Result<Vec<Instance>> {
        let _ = colour;
        bail!("this runtime cannot tell where a colour's instances answer")
    }
    /// A hash of the release's configuration (never its content), for the history.
    fn config_hash(&self) -> Option<String> {
        None
    }
    /// Whether `start` moves the traffic itself, task by task (a rolling update): the new
    /// release serves as soon as `start` begins, so a failure from then on is a rollback.
    fn rolling(&self) -> bool {
        false
    }
    /// The summed traffic signals (probes left out) of `instances`, cumulative: the bake
    /// judges their difference over its window.
    async fn traffic(&mut self, instances: &[Instance]) -> Result<Signals> {
        let urls: Vec<String> = instances
            .iter()
            .filter(|i| i.component.upstream.is_some())
            .map(|i| format!("{}/metrics", i.base_url))
            .collect();
        scrape(&metrics_client(), &urls).await
    }
}

/// The release an image is, from `docker image inspect`: its version from `label` (`--label`),
/// else its `org.opencontainers.image.version` label, else its tag; its git sha from its
/// `org.opencontainers.image.revision` label.
pub(crate) fn image_release(
    image: &serde_json::Value,
    artifact: &str,
    label: Option<String>,
    digest: String,
) -> Release {
    let of = |k: &str| image["Config"]["Labels"][k].as_str().map(String::from);
    Release {
        artifact: artifact.to_string(),
        version: label
            .or_else(|| of("org.opencontainers.image.version"))
            .or_else(|| artifact.rsplit_once(':').map(|(_, t)| t.to_string()))
            .unwrap_or_else(|| "unknown".into()),
        git_sha: of("org.opencontainers.image.revision").unwrap_or_else(|| "unknown".into()),
        digest,
    }
}

/// The client that reads instances' /metrics.
pub(crate) fn metrics_client() -> reqwest::Client {
    ghostworks_telemetry::http_client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .expect("HTTP client")
}

/// The summed traffic signals (probes left out) of the instances behind `urls`.
pub(crate) async fn scrape(http: &reqwest::Client, urls: &[String]) -> Result<Signals> {
    let mut total = Signals::default();
    for u in urls {
        let text = http.get(u).send().await?.error_for_status()?.text().await?;
        total.add(&Signals::parse_traffic(&text));
    }
    Ok(total)
}

/// What every runtime is built from besides its own options.
pub struct Common<'a> {
    /// Where the history, the active colour, pid files and process logs are kept.
    pub state_dir: PathBuf,
    /// Where nginx.conf includes the `upstream-NAME.conf` files from.
    pub upstream_dir: PathBuf,
    /// Overrides the version the release reports.
    pub label: Option<String>,
    /// The schema owner's URL, when one is configured.
    pub admin_url: Option<&'a str>,
    /// The release a rollback returns to: its version and commit are kept.
    pub earlier: Option<&'a Release>,
}

/// How a release runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    /// `ghostworks` processes of the release's binary on this host, behind this host's nginx.
    Process,
    /// Services of a Docker Compose project, from the release's image, behind its nginx.
    Compose,
    /// A Docker Swarm stack's services, rolled to the release's image (from a registry every
    /// node reaches) by Swarm's own rolling update.
    Swarm,
}

/// The runtime, and the options of each.
#[derive(Args)]
pub struct RuntimeOptions {
    /// `process`: --release is a binary path. `compose`: --release is an image tag. `swarm`:
    /// --release is an image in a registry (REGISTRY/ghostworks:TAG).
    #[arg(
        long = "runtime",
        value_name = "RUNTIME",
        value_enum,
        env = "GHOSTWORKS_DEPLOY_RUNTIME",
        default_value = "process"
    )]
    pub kind: RuntimeKind,
    /// The docker CLI (compose and swarm runtimes; compose needs its Compose plugin). For
    /// swarm, DOCKER_HOST (or the CLI's context) must name a manager of the swarm.
    #[arg(long, env = "DOCKER", default_value = "docker")]
    pub docker: PathBuf,
    #[command(flatten)]
    pub process: ProcessArgs,
    #[command(flatten)]
    pub compose: ComposeArgs,
    #[command(flatten)]
    pub swarm: SwarmArgs,
}

/// [`RuntimeOptions`], refusing those of a runtime other than the chosen one when they are
/// given on the command line (from the environment they are ignored).
pub struct RuntimeArgs(pub RuntimeOptions);

impl RuntimeKind {
    /// This runtime's own options, as clap defines them.
    fn options(self) -> clap::Command {
        let cmd = clap::Command::new("runtime");
        match self {
            RuntimeKind::Process => ProcessArgs::augment_args(cmd),
            RuntimeKind::Compose => ComposeArgs::augment_args(cmd),
            RuntimeKind::Swarm => SwarmArgs::augment_args(cmd),
        }
    }

    /// The name `--runtime` takes.
    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

impl RuntimeArgs {
    /// The chosen runtime, built complete.
    pub fn build(&self, common: Common<'_>) -> Result<Box<dyn Runtime>> {
        let o = &self.0;
        Ok(match o.kind {
            RuntimeKind::Process => Box::new(ProcessRuntime::new(&o.process, common)?),
            RuntimeKind::Compose => {
                Box::new(ComposeRuntime::new(&o.compose, o.docker.clone(), common))
            }
            RuntimeKind::Swarm => Box::new(SwarmRuntime::new(&o.swarm, o.docker.clone(), common)?),
        })
    }

    /// Whether the chosen runtime can give a colour a share of the traffic (a canary's
    /// steps): only the process runtime behind its HAProxy.
    pub fn splits_traffic(&self) -> bool {
        let o = &self.0;
        o.kind == RuntimeKind::Process && o.process.proxy == process::ProxyKind::Haproxy
    }

    /// An option of another runtime given on the command line.
    fn foreign(kind: RuntimeKind, m: &ArgMatches) -> Option<(RuntimeKind, String)> {
        RuntimeKind::value_variants()
            .iter()
            .filter(|k| **k != kind)
            .find_map(|other| {
                let options = other.options();
                let given = options.get_arguments().find(|a| {
                    m.value_source(a.get_id().as_str())
                        == Some(clap::parser::ValueSource::CommandLine)
                })?;
                Some((*other, format!("--{}", given.get_long()?)))
            })
    }
}

impl FromArgMatches for RuntimeArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let options = RuntimeOptions::from_arg_matches(m)?;
        let kind = options.kind;
        if let Some((other, flag)) = Self::foreign(kind, m) {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "{flag} is an option of the {} runtime, but --runtime is {}",
                    other.name(),
                    kind.name()
                ),
            ));
        }
        Ok(Self(options))
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for RuntimeArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        RuntimeOptions::augment_args(cmd)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        RuntimeOptions::augment_args_for_update(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Deploy {
        #[command(flatten)]
        runtime: RuntimeArgs,
    }

    fn parse(args: &[&str]) -> Result<RuntimeOptions, String> {
        Deploy::try_parse_from(std::iter::once("deploy").chain(args.iter().copied()))
            .map(|d| d.runtime.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn options_of_the_other_runtime_are_refused() {
        let compose = parse(&["--runtime", "compose", "--compose-project", "gw"]).unwrap();
        assert_eq!(compose.kind, RuntimeKind::Compose);
        assert_eq!(compose.compose.compose_project.as_deref(), Some("gw"));
        let process = parse(&["--base-port", "9000"]).unwrap();
        assert_eq!(
            (process.kind, process.process.base_port),
            (RuntimeKind::Process, 9000)
        );

        let refused = parse(&["--runtime", "compose", "--base-port", "9000"])
            .err()
            .expect("refused");
        assert!(
            refused.contains("--base-port is an option of the process runtime")
                && refused.contains("--runtime is compose"),
            "{refused}"
        );
        // Only the process runtime behind its HAProxy splits traffic, as a canary needs.
        let split = |args: &[&str]| {
            let d = Deploy::try_parse_from(std::iter::once("deploy").chain(args.iter().copied()));
            d.map(|d| d.runtime.splits_traffic()).unwrap()
        };
        assert!(split(&["--proxy", "haproxy"]));
        assert!(!split(&[]));
        assert!(!split(&["--runtime", "compose"]));

        assert!(!split(&["--runtime", "swarm"]));
        let refused = parse(&["--runtime", "swarm", "--compose-project", "gw"])
            .err()
            .expect("refused");
        assert!(
            refused.contains("--compose-project is an option of the compose runtime"),
            "{refused}"
        );
        let swarm = parse(&["--runtime", "swarm", "--swarm-stack", "gw"]).unwrap();
        assert_eq!(
            (swarm.kind, swarm.swarm.stack.as_str()),
            (RuntimeKind::Swarm, "gw")
        );

        let refused = parse(&["--compose-file", "a.yml"]).err().expect("refused");
        assert!(
            refused.contains("--compose-file is an option of the compose runtime"),
            "{refused}"
        );
    }

    #[test]
    fn each_runtime_lists_its_options_under_its_own_heading() {
        use clap::CommandFactory;
        let help = Deploy::command().render_help().to_string();
        let process = help.find("Process runtime").expect("a process heading");
        let compose = help.find("Compose runtime").expect("a compose heading");
        let at = |flag: &str| help.find(flag).unwrap_or_else(|| panic!("{flag}: {help}"));
        assert!(
            process < at("--base-port") && at("--base-port") < compose,
            "{help}"
        );
        assert!(compose < at("--compose-file"), "{help}");
        let swarm = help.find("Swarm runtime").expect("a swarm heading");
        assert!(compose < swarm && swarm < at("--swarm-stack"), "{help}");
        assert!(at("--runtime") < process, "{help}");
    }
}
