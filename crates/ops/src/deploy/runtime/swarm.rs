//! The swarm runtime: a release is an image in a registry every node pulls from, and a deploy
//! is Swarm's own rolling update of the stack's services (those `docker stack deploy` made from
//! deploy/swarm/docker-stack.yml). Each service's `update_config` starts a new task before it
//! stops an old one, and rolls the service back by itself when new tasks fail their health
//! checks. `docker stack deploy` and `docker service update --detach` exit 0 even when Swarm
//! rolls the update back later, so this runtime waits for each service's `UpdateStatus` and
//! fails the deploy when the update did not complete.
//!
//! A first run of the release (`--version`), `migrate --status` and the migrations run as the
//! stack's `migrate` job service, run again with the release's image and arguments: the job
//! has the stack's secrets and networks, and nothing secret is put on a command line.
//!
//! Colours name releases here, not sets of instances: `start` is the rolling update, `switch`
//! brings every service to a colour's image (nothing to do right after `start`; the way back
//! after a failed bake), and `stop` has nothing left to stop. The bake reads the new tasks'
//! signals through the stack's entry point, one task per scrape, told apart by their `host`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use clap::Args;
use ghostworks_telemetry::signals::{self, Signals};
use serde_json::Value;

use super::{image_release, Common, Runtime};
use crate::deploy::component::{self, Colour, Instance, COMPONENTS};
use crate::deploy::exec::run_ok;
use crate::deploy::Release;
use crate::migrate::Migration;

/// The options of `--runtime swarm`.
#[derive(Args)]
#[command(next_help_heading = "Swarm runtime (--runtime swarm)")]
pub struct SwarmArgs {
    /// The stack (`docker stack deploy ... NAME`): its services NAME_api, NAME_worker and
    /// NAME_web are updated, its job NAME_migrate runs the checks and migrations.
    #[arg(
        long = "swarm-stack",
        value_name = "NAME",
        default_value = "ghostworks"
    )]
    pub stack: String,
    /// The stack's entry point as this host reaches it: the API's readiness and the new
    /// tasks' signals are read through it (its /metrics must answer this host).
    #[arg(
        long = "swarm-entry",
        value_name = "URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub entry: String,
    /// How long one service's rolling update, or one run of the migrate job, may take.
    #[arg(
        long = "swarm-timeout-secs",
        value_name = "SECS",
        default_value_t = 600
    )]
    pub timeout_secs: u64,
}

pub struct SwarmRuntime {
    docker: PathBuf,
    stack: String,
    entry: String,
    timeout: Duration,
    state_dir: PathBuf,
    /// Overrides the version the image's labels report (`--label`).
    label: Option<String>,
    /// The release's image pinned by its registry digest, as `check` found it.
    pinned: BTreeMap<String, String>,
    /// The newest scrape of each task seen through the entry point, by host.
    seen: BTreeMap<String, Signals>,
    /// The api service's replicas, read on the bake's first scrape: how many scrapes meet
    /// every task.
    replicas: Option<u64>,
    http: reqwest::Client,
}

/// How a service's rolling update ended, from its `UpdateStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Not started yet, or still rolling (or rolling back).
    Running,
    Completed,
    /// Swarm rolled the service back to its previous spec: the release failed.
    RolledBack(String),
    /// Swarm paused the update (or its rollback): an operator must act.
    Paused(String),
}

impl Update {
    /// The state of an update that started after `before` (the `UpdateStatus.StartedAt` seen
    /// before it was asked for; an older status is still the previous update's).
    pub fn read(status: &Value, before: Option<&str>) -> Update {
        let started = status["StartedAt"].as_str();
        if started.is_none() || started == before {
            return Update::Running;
        }
        let message = status["Message"].as_str().unwrap_or_default().to_string();
        match status["State"].as_str().unwrap_or_default() {
            "completed" => Update::Completed,
            "rollback_completed" => Update::RolledBack(message),
            "paused" | "rollback_paused" => Update::Paused(message),
            _ => Update::Running,
        }
    }
}

/// How one run of the job service ended, from its tasks of that iteration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobRun {
    Running,
    /// The task that completed.
    Completed(String),
    /// Every task failed; the last one's id and error.
    Failed(String, String),
}

impl JobRun {
    /// The run `iteration` among `tasks` (`docker inspect` of the service's tasks).
    pub fn read(tasks: &[Value], iteration: u64) -> JobRun {
        let ours: Vec<&Value> = tasks
            .iter()
            .filter(|t| t["JobIteration"]["Index"].as_u64() == Some(iteration))
            .collect();
        if let Some(done) = ours
            .iter()
            .find(|t| t["Status"]["State"].as_str() == Some("complete"))
        {
            return JobRun::Completed(done["ID"].as_str().unwrap_or_default().into());
        }
        let terminal = |t: &&Value| {
            matches!(
                t["Status"]["State"].as_str(),
                Some("failed" | "rejected" | "shutdown" | "orphaned" | "remove")
            )
        };
        // A restart policy may start another task after a failure: only when none is left
        // running has the run failed.
        match ours
            .iter()
            .max_by_key(|t| t["CreatedAt"].as_str().unwrap_or_default())
        {
            Some(last) if ours.iter().all(terminal) => JobRun::Failed(
                last["ID"].as_str().unwrap_or_default().into(),
                last["Status"]["Err"]
                    .as_str()
                    .unwrap_or("no error reported")
                    .into(),
            ),
            _ => JobRun::Running,
        }
    }
}

/// The repository of an image reference (`registry:5000/ghostworks:2` is
/// `registry:5000/ghostworks`), whose digest the registry reports.
fn repository(reference: &str) -> &str {
    let name = reference.split('@').next().unwrap_or(reference);
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    }
}

/// `REPOSITORY@sha256:...` of `artifact` from `docker image inspect`, pulled from a registry.
fn pinned(image: &Value, artifact: &str) -> Result<String> {
    let repo = repository(artifact);
    image["RepoDigests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|d| repository(d) == repo)
        .map(String::from)
        .with_context(|| {
            format!(
                "--release {artifact}: the image has no digest from {repo}'s registry; push it \
                 there first (every node pulls the release from the registry)"
            )
        })
}

/// The `sha256:...` of a pinned reference (`REPOSITORY@sha256:...`): the release's digest.
fn digest_of(pinned: &str) -> String {
    pinned
        .rsplit_once('@')
        .map_or(pinned, |(_, d)| d)
        .to_string()
}

/// The sum of the newest scrape of each task.
fn total(seen: &BTreeMap<String, Signals>) -> Signals {
    let mut sum = Signals::default();
    for s in seen.values() {
        sum.add(s);
    }
    sum
}

impl SwarmRuntime {
    pub fn new(args: &SwarmArgs, docker: PathBuf, common: Common<'_>) -> Result<Self> {
        let url = reqwest::Url::parse(&args.entry).ok();
        if !url.is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host()) {
            bail!(
                "--swarm-entry {}: not an http(s) URL (e.g. http://127.0.0.1:8080)",
                args.entry
            );
        }
        Ok(Self {
            docker,
            stack: args.stack.clone(),
            entry: args.entry.trim_end_matches('/').to_string(),
            timeout: Duration::from_secs(args.timeout_secs),
            state_dir: common.state_dir,
            label: common.label,
            pinned: BTreeMap::new(),
            seen: BTreeMap::new(),
            replicas: None,
            // One connection per scrape: the entry point balances connections, not requests.
            http: ghostworks_telemetry::http_client::builder()
                .timeout(Duration::from_secs(2))
                .pool_max_idle_per_host(0)
                .build()
                .context("HTTP client")?,
        })
    }

    fn docker(&self) -> Command {
        Command::new(&self.docker)
    }

    /// `docker service update`, returning once Swarm has the new spec; the image is pinned
    /// already, so the CLI need not reach the registry.
    fn update(&self) -> Command {
        let mut c = self.docker();
        c.args([
            "service",
            "update",
            "--detach",
            "--quiet",
            "--no-resolve-image",
        ]);
        c
    }

    fn service(&self, component: &str) -> String {
        format!("{}_{component}", self.stack)
    }

    fn images_file(&self) -> PathBuf {
        self.state_dir.join("swarm.images.json")
    }

    /// The pinned image of each colour deployed.
    fn images(&self) -> Result<BTreeMap<String, String>> {
        match std::fs::read(self.images_file()) {
            Ok(b) => Ok(serde_json::from_slice(&b)?),
            Err(_) => Ok(BTreeMap::new()),
        }
    }

    /// Pulls `artifact` on the manager (so from the registry the nodes use) and inspects it.
    async fn pull(&self, artifact: &str) -> Result<Value> {
        let mut c = self.docker();
        c.args(["pull", "--quiet", artifact]);
        run_ok(c, &format!("--release: docker pull {artifact}"))
            .await
            .context("the nodes pull the release from a registry: push it there first")?;
        let mut c = self.docker();
        c.args(["image", "inspect", "-f", "{{json .}}", artifact]);
        Ok(serde_json::from_str(
            &run_ok(c, "docker image inspect").await?,
        )?)
    }

    async fn inspect(&self, service: &str) -> Result<Value> {
        let mut c = self.docker();
        c.args(["service", "inspect", "-f", "{{json .}}", service]);
        let text = run_ok(c, &format!("docker service inspect {service}"))
            .await
            .with_context(|| {
                format!(
                    "--swarm-stack {}: no service {service}; deploy the stack first \
                     (docker stack deploy -c deploy/swarm/docker-stack.yml {})",
                    self.stack, self.stack
                )
            })?;
        Ok(serde_json::from_str(&text)?)
    }

    fn image_of(service: &Value) -> &str {
        service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
            .as_str()
            .unwrap_or_default()
    }

    fn pinned_of(&self, release: &Release) -> Result<&str> {
        self.pinned
            .get(&release.artifact)
            .map(String::as_str)
            .with_context(|| format!("{}: not checked by this deploy", release.artifact))
    }

    /// Runs the stack's migrate job again with `image` and `args`; what it printed.
    async fn job(&self, image: &str, args: &str, what: &str) -> Result<String> {
        let service = self.service("migrate");
        let before = self.inspect(&service).await?;
        if before["Spec"]["Mode"]["ReplicatedJob"].is_null() {
            bail!("{service}: not a replicated job (deploy.mode: replicated-job in the stack)");
        }
        let iteration = before["JobStatus"]["JobIteration"]["Index"]
            .as_u64()
            .unwrap_or(0);
        let mut c = self.update();
        // One word: arguments that start with `--` are not the CLI's own options.
        c.arg(format!("--args={args}"))
            .args(["--image", image, "--force", &service]);
        run_ok(c, &format!("{what}: docker service update {service}")).await?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let now = self.inspect(&service).await?;
            let current = now["JobStatus"]["JobIteration"]["Index"]
                .as_u64()
                .unwrap_or(0);
            if current > iteration {
                match JobRun::read(&self.tasks(&service).await?, current) {
                    JobRun::Completed(task) => return self.logs(&task).await,
                    JobRun::Failed(task, error) => {
                        let logs = self.logs(&task).await.unwrap_or_default();
                        bail!("{what} failed in task {task} of {service}: {error}\n{logs}");
                    }
                    JobRun::Running => {}
                }
            }
            if Instant::now() > deadline {
                bail!("{what}: {service} did not finish within {:?}", self.timeout);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// `docker inspect` of every task the service keeps.
    async fn tasks(&self, service: &str) -> Result<Vec<Value>> {
        let mut c = self.docker();
        c.args(["service", "ps", "-q", "--no-trunc", service]);
        let ids = run_ok(c, &format!("docker service ps {service}")).await?;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.docker();
        c.args(["inspect", "--type", "task"]).args(&ids);
        Ok(serde_json::from_str(
            &run_ok(c, "docker inspect (tasks)").await?,
        )?)
    }

    /// What a task printed (stdout and stderr).
    async fn logs(&self, task: &str) -> Result<String> {
        let out = tokio::process::Command::from({
            let mut c = self.docker();
            c.args(["service", "logs", "--raw", "--no-trunc", task]);
            c
        })
        .output()
        .await
        .context("docker service logs: cannot run")?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// Rolls `component`'s service to `image` and waits for Swarm's verdict.
    async fn roll(&self, component: &str, image: &str) -> Result<()> {
        let service = self.service(component);
        let before = self.inspect(&service).await?;
        if Self::image_of(&before) == image {
            return Ok(());
        }
        let started = before["UpdateStatus"]["StartedAt"]
            .as_str()
            .map(String::from);
        let mut c = self.update();
        c.args(["--image", image, &service]);
        run_ok(c, &format!("docker service update {service}")).await?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let now = self.inspect(&service).await?;
            match Update::read(&now["UpdateStatus"], started.as_deref()) {
                Update::Completed => return Ok(()),
                Update::RolledBack(why) => bail!(
                    "Swarm rolled {service} back to its previous image: {why} (the new tasks \
                     failed their health checks or exited; `docker service ps --no-trunc \
                     {service}` shows their errors)"
                ),
                Update::Paused(why) => bail!(
                    "Swarm paused the update of {service}: {why}; `docker service rollback \
                     {service}` returns it to its previous image"
                ),
                Update::Running => {}
            }
            if Instant::now() > deadline {
                bail!(
                    "{service}: the rolling update did not finish within {:?}",
                    self.timeout
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Every component's service on `image`, one service at a time.
    async fn roll_all(&self, image: &str) -> Result<()> {
        for c in COMPONENTS {
            self.roll(c.name, image).await?;
        }
        Ok(())
    }
}

/// One service of the stack as `deploy status` shows it.
pub struct ServiceStatus {
    pub name: String,
    /// Running and desired tasks, as `docker service ls` prints them (`2/2`).
    pub replicas: String,
    pub image: String,
    /// The last update's state (`completed`, `rollback_completed`, ...), if any.
    pub update: String,
}

impl SwarmRuntime {
    /// The stack's services with their tasks, image and last update.
    pub async fn status(&self) -> Result<Vec<ServiceStatus>> {
        let mut c = self.docker();
        c.args(["service", "ls", "--format", "{{json .}}", "--filter"])
            .arg(format!("label=com.docker.stack.namespace={}", self.stack));
        let mut out = Vec::new();
        for line in run_ok(c, "docker service ls").await?.lines() {
            let row: Value = serde_json::from_str(line)?;
            let name = row["Name"].as_str().unwrap_or_default().to_string();
            let svc = self.inspect(&name).await?;
            out.push(ServiceStatus {
                replicas: row["Replicas"].as_str().unwrap_or_default().into(),
                image: Self::image_of(&svc).into(),
                update: svc["UpdateStatus"]["State"].as_str().unwrap_or("-").into(),
                name,
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl Runtime for SwarmRuntime {
    async fn digest(&mut self, artifact: &str) -> Result<String> {
        let image = self.pull(artifact).await?;
        Ok(digest_of(&pinned(&image, artifact)?))
    }

    async fn check(&mut self, artifact: &str) -> Result<Release> {
        let image = self.pull(artifact).await?;
        let pin = pinned(&image, artifact)?;
        let release = image_release(&image, artifact, self.label.clone(), digest_of(&pin));
        for c in COMPONENTS {
            self.inspect(&self.service(c.name)).await?;
        }
        // A task of the release on a node: the image pulls and runs there. The roles'
        // configuration is checked where it lives, by each new task's health check during the
        // rolling update (a production role refuses the migrate job's schema-owner secret, so
        // the job cannot check theirs); `migrate --status` next checks the job's own.
        self.job(&pin, "--version", "running the release on a node")
            .await?;
        self.pinned.insert(artifact.to_string(), pin);
        Ok(release)
    }

    async fn migration_status(&mut self, release: &Release) -> Result<Vec<Migration>> {
        let pin = self.pinned_of(release)?.to_string();
        let out = self
            .job(&pin, "migrate --status", "ghostworks migrate --status")
            .await?;
        Ok(Migration::parse(&out))
    }

    async fn migrate(&mut self, release: &Release) -> Result<()> {
        let pin = self.pinned_of(release)?.to_string();
        self.job(&pin, "migrate", "ghostworks migrate")
            .await
            .map(|_| ())
    }

    async fn start(&mut self, colour: Colour, release: &Release) -> Result<Vec<Instance>> {
        let pin = self.pinned_of(release)?.to_string();
        let mut images = self.images()?;
        images.insert(colour.as_str().into(), pin.clone());
        std::fs::write(self.images_file(), serde_json::to_vec_pretty(&images)?)?;
        self.roll_all(&pin).await?;
        Ok(vec![Instance {
            component: *component::component("api"),
            base_url: self.entry.clone(),
        }])
    }

    async fn switch(&mut self, colour: Colour) -> Result<()> {
        let image = self.images()?.remove(colour.as_str()).with_context(|| {
            format!(
                "{}: no image recorded for {} in {}",
                self.stack,
                colour.as_str(),
                self.images_file().display()
            )
        })?;
        self.roll_all(&image).await
    }

    async fn stop(&mut self, _colour: Colour) -> Result<()> {
        // The rolling update stopped each old task once its replacement was healthy.
        Ok(())
    }

    fn rolling(&self) -> bool {
        true
    }

    async fn traffic(&mut self, _instances: &[Instance]) -> Result<Signals> {
        let replicas = match self.replicas {
            Some(n) => n,
            None => {
                let api = self.inspect(&self.service("api")).await?;
                let n = api["Spec"]["Mode"]["Replicated"]["Replicas"]
                    .as_u64()
                    .unwrap_or(1);
                *self.replicas.insert(n)
            }
        };
        // Each scrape reaches one task: enough of them to meet every task, most likely.
        for _ in 0..(3 * replicas).max(3) {
            let text = self
                .http
                .get(format!("{}/metrics", self.entry))
                .send()
                .await?
                .error_for_status()
                .context("the entry point's /metrics (it must answer this host)")?
                .text()
                .await?;
            let host = signals::host(&text).context(
                "the entry point's /metrics has no ghostworks_build_info host: is it the API's?",
            )?;
            self.seen.insert(host, Signals::parse_traffic(&text));
        }
        Ok(total(&self.seen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_update_counts_only_once_it_started_after_the_request() {
        let old = json!({"State": "completed", "StartedAt": "2026-12-07T10:00:00Z",
                         "Message": "update completed"});
        assert_eq!(
            Update::read(&old, Some("2026-12-07T10:00:00Z")),
            Update::Running
        );
        assert_eq!(Update::read(&json!(null), None), Update::Running);
        assert_eq!(Update::read(&old, None), Update::Completed);
        let rolling = json!({"State": "updating", "StartedAt": "2026-12-07T11:00:00Z"});
        assert_eq!(
            Update::read(&rolling, Some("2026-12-07T10:00:00Z")),
            Update::Running
        );
    }

    #[test]
    fn a_rollback_by_swarm_is_a_failed_update_with_its_reason() {
        let status = json!({"State": "rollback_completed", "StartedAt": "2026-12-07T11:00:00Z",
            "Message": "update rolled back due to failure or early termination of task x1"});
        assert_eq!(
            Update::read(&status, Some("2026-12-07T10:00:00Z")),
            Update::RolledBack(
                "update rolled back due to failure or early termination of task x1".into()
            )
        );
        let paused = json!({"State": "paused", "StartedAt": "2026-12-07T11:00:00Z",
                            "Message": "update paused due to failure of task x2"});
        assert!(matches!(
            Update::read(&paused, None),
            Update::Paused(m) if m.contains("x2")
        ));
    }

    fn task(id: &str, iteration: u64, state: &str, created: &str) -> Value {
        json!({"ID": id, "JobIteration": {"Index": iteration}, "CreatedAt": created,
               "Status": {"State": state, "Err": format!("{id} exited 1")}})
    }

    #[test]
    fn a_job_run_is_judged_by_its_own_iteration() {
        let tasks = [
            task("old", 3, "complete", "1"),
            task("a", 4, "failed", "2"),
            task("b", 4, "running", "3"),
        ];
        // An earlier run's success is not this run's.
        assert_eq!(JobRun::read(&tasks, 4), JobRun::Running);
        assert_eq!(JobRun::read(&tasks, 3), JobRun::Completed("old".into()));
        let failed = [task("a", 4, "failed", "2"), task("b", 4, "rejected", "3")];
        assert_eq!(
            JobRun::read(&failed, 4),
            JobRun::Failed("b".into(), "b exited 1".into())
        );
        assert_eq!(JobRun::read(&failed, 5), JobRun::Running);
    }

    #[test]
    fn the_release_is_pinned_by_its_own_repository_digest() {
        let image = json!({"RepoDigests": [
            "mirror:5000/other@sha256:aaa",
            "registry:5000/ghostworks@sha256:bbb"]});
        assert_eq!(
            pinned(&image, "registry:5000/ghostworks:2").unwrap(),
            "registry:5000/ghostworks@sha256:bbb"
        );
        let local = pinned(&json!({"RepoDigests": []}), "ghostworks:2")
            .unwrap_err()
            .to_string();
        assert!(local.contains("push it there first"), "{local}");
        assert_eq!(
            repository("registry:5000/ghostworks"),
            "registry:5000/ghostworks"
        );
    }

    #[test]
    fn an_entry_point_that_is_no_url_is_refused_naming_the_option() {
        let args = SwarmArgs {
            stack: "ghostworks".into(),
            entry: "edge:8080".into(),
            timeout_secs: 1,
        };
        let common = Common {
            state_dir: std::env::temp_dir(),
            upstream_dir: std::env::temp_dir(),
            label: None,
            admin_url: None,
            earlier: None,
        };
        let err = SwarmRuntime::new(&args, "docker".into(), common)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("--swarm-entry edge:8080: not an http(s) URL"),
            "{err}"
        );
    }

    #[test]
    fn the_signals_of_each_task_count_once() {
        let scrape = |n: u32| {
            Signals::parse_traffic(&format!(
                "http_requests_total{{method=\"GET\",endpoint=\"/a\",status_code=\"200\"}} {n}\n"
            ))
        };
        let mut seen = BTreeMap::new();
        seen.insert("task-a".to_string(), scrape(10));
        seen.insert("task-b".to_string(), scrape(5));
        // A second scrape of the same task replaces its first.
        seen.insert("task-a".to_string(), scrape(12));
        assert_eq!(total(&seen).requests, 17.0);
    }
}
