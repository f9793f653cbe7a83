//! The compose runtime: a release is an image tag, and each colour's roles are services of the
//! operator's Compose project (`api-blue`, `worker-green`, ...) cloned from its `api` and
//! `worker` services, so they get exactly the hardening, secrets, networks and limits the
//! Compose files give those (ADR-0004's single host with Docker Compose).
//!
//! The colour services live in an overlay rendered into the state directory from
//! `docker compose config`, because Compose's `extends` cannot reach a service merged from
//! several files. The one-off containers (configuration check, migrations) run the base
//! services with `GHOSTWORKS_IMAGE` set to the release's tag, which is how the Compose files
//! name the image. nginx, a service of the same project, is switched by rewriting the upstream
//! file in its mounted configuration directory and sending its master SIGHUP.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use clap::Args;
use serde_json::Value;

use super::{image_release, Common, Runtime};
use crate::deploy::component::{self, Colour, Component, Instance, COMPONENTS};
use crate::deploy::exec::run_ok;
use crate::deploy::{nginx, Release};
use crate::migrate::Migration;

/// How the Compose files name the ghostworks image.
const IMAGE_VAR: &str = "GHOSTWORKS_IMAGE";

/// The options of `--runtime compose`.
#[derive(Args)]
#[command(next_help_heading = "Compose runtime (--runtime compose)")]
pub struct ComposeArgs {
    /// The project's files, in order (repeatable).
    #[arg(
        long = "compose-file",
        value_name = "FILE",
        default_values = ["docker-compose.yml", "docker-compose.prod.yml"]
    )]
    pub compose_files: Vec<PathBuf>,
    /// The project name (`docker compose -p`); default: the files' `name:`.
    #[arg(long)]
    pub compose_project: Option<String>,
    /// Compose's --env-file for interpolating the files.
    #[arg(long)]
    pub compose_env_file: Option<PathBuf>,
    /// The nginx service.
    #[arg(long, default_value = "nginx")]
    pub nginx_service: String,
}

pub struct ComposeRuntime {
    /// The docker CLI, with the Compose plugin.
    docker: PathBuf,
    /// The Compose project (`-p`); the files' `name:` when unset.
    project: Option<String>,
    /// The operator's Compose files, in order (`-f`).
    files: Vec<PathBuf>,
    /// Compose's `--env-file` for interpolation, when not the project directory's `.env`.
    env_file: Option<PathBuf>,
    state_dir: PathBuf,
    /// The directory mounted into the nginx service, holding its `upstream-NAME.conf` files.
    upstream_dir: PathBuf,
    nginx_service: String,
    /// Overrides the version the image's labels report (`--label`).
    label: Option<String>,
    /// The resolved project, read once: the files do not change during a deploy, and
    /// `docker compose config` would otherwise add its time to the switch-over.
    model: OnceLock<Value>,
}

/// The image's id (`sha256:...`), from `docker image inspect`: the release's digest.
fn image_id(image: &Value) -> String {
    image["Id"].as_str().unwrap_or("unknown").to_string()
}

fn service(component: &str, colour: Colour) -> String {
    format!("{component}-{}", colour.as_str())
}

impl ComposeRuntime {
    /// The runtime of `args`; the project is read on first use.
    pub fn new(args: &ComposeArgs, docker: PathBuf, common: Common<'_>) -> Self {
        Self {
            docker,
            project: args.compose_project.clone(),
            files: args.compose_files.clone(),
            env_file: args.compose_env_file.clone(),
            state_dir: common.state_dir,
            upstream_dir: common.upstream_dir,
            nginx_service: args.nginx_service.clone(),
            label: common.label,
            model: OnceLock::new(),
        }
    }

    fn overlay(&self) -> PathBuf {
        self.state_dir.join("compose.colours.yml")
    }

    fn images_file(&self) -> PathBuf {
        self.state_dir.join("compose.images.json")
    }

    /// The image of each colour that has services in the overlay.
    fn images(&self) -> Result<BTreeMap<String, String>> {
        match std::fs::read(self.images_file()) {
            Ok(b) => Ok(serde_json::from_slice(&b)?),
            Err(_) => Ok(BTreeMap::new()),
        }
    }

    fn docker(&self) -> Command {
        Command::new(&self.docker)
    }

    /// `docker compose` with the operator's files, plus the colour overlay when `colours`.
    fn compose(&self, colours: bool) -> Command {
        let mut c = self.docker();
        c.arg("compose");
        if let Some(p) = &self.project {
            c.args(["-p", p]);
        }
        if let Some(e) = &self.env_file {
            c.arg("--env-file").arg(e);
        }
        for f in &self.files {
            c.arg("-f").arg(f);
        }
        if colours && self.overlay().exists() {
            c.arg("-f").arg(self.overlay());
        }
        c
    }

    /// The operator's project as Compose resolves it.
    async fn model(&self) -> Result<&Value> {
        if let Some(m) = self.model.get() {
            return Ok(m);
        }
        let mut c = self.compose(false);
        c.args(["config", "--format", "json"]);
        let text = run_ok(c, "docker compose config").await?;
        let model = serde_json::from_str(&text).context("docker compose config: not JSON")?;
        Ok(self.model.get_or_init(|| model))
    }

    /// Rewrites the overlay with a service per component for each colour in `images`.
    async fn render(&self, images: &BTreeMap<String, String>) -> Result<()> {
        let model = self.model().await?;
        let mut services = serde_json::Map::new();
        for (colour, image) in images {
            for c in COMPONENTS {
                let mut s = model["services"][c.name].clone();
                let Some(obj) = s.as_object_mut() else {
                    bail!(
                        "--compose-file: the project has no `{}` service to run the {} role",
                        c.name,
                        c.name
                    );
                };
                // Started on their own (--no-deps), never built, never published: a second
                // colour must not collide with the first on a name or a host port.
                for key in ["depends_on", "build", "container_name", "ports", "profiles"] {
                    obj.remove(key);
                }
                obj.insert("image".into(), image.clone().into());
                let env = obj
                    .entry("environment")
                    .or_insert_with(|| Value::Object(Default::default()))
                    .as_object_mut()
                    .context("environment: not a map")?;
                for (var, target) in c.links {
                    let port = Self::port(model, component::component(target))?;
                    env.insert(
                        (*var).into(),
                        format!("http://{target}-{colour}:{port}").into(),
                    );
                }
                obj.entry("labels")
                    .or_insert_with(|| Value::Object(Default::default()))
                    .as_object_mut()
                    .context("labels: not a map")?
                    .insert("org.ghostworks.colour".into(), colour.clone().into());
                services.insert(format!("{}-{colour}", c.name), s);
            }
        }
        let overlay = serde_json::json!({
            "x-generated": "by `ghostworks deploy --runtime compose`; do not edit",
            "services": services,
        });
        // Settings from the env_file are resolved into it: readable by its owner only.
        crate::private::replace_private_file(
            &self.overlay(),
            &serde_json::to_vec_pretty(&overlay)?,
        )?;
        std::fs::write(self.images_file(), serde_json::to_vec_pretty(images)?)?;
        Ok(())
    }

    /// The port a component's service listens on, from its bind variable.
    fn port(model: &Value, c: &Component) -> Result<u16> {
        model["services"][c.name]["environment"][c.bind_var]
            .as_str()
            .and_then(|b| b.rsplit(':').next()?.parse().ok())
            .with_context(|| {
                format!(
                    "--compose-file: the `{}` service sets no {} (HOST:PORT)",
                    c.name, c.bind_var
                )
            })
    }

    async fn container(&self, service: &str) -> Result<Option<String>> {
        let mut c = self.compose(true);
        c.args(["ps", "-q", service]);
        let id = run_ok(c, &format!("docker compose ps {service}")).await?;
        Ok(id
            .lines()
            .next()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from))
    }

    /// An address of the container this host can reach: one on a network that is not internal.
    async fn address(&self, id: &str, service: &str) -> Result<String> {
        let mut c = self.docker();
        c.args(["inspect", "-f", "{{json .NetworkSettings.Networks}}", id]);
        let networks: BTreeMap<String, Value> =
            serde_json::from_str(&run_ok(c, "docker inspect").await?)?;
        for (name, n) in &networks {
            let ip = n["IPAddress"].as_str().unwrap_or_default();
            let mut c = self.docker();
            c.args(["network", "inspect", "-f", "{{.Internal}}", name]);
            if !ip.is_empty() && run_ok(c, "docker network inspect").await?.trim() == "false" {
                return Ok(ip.to_string());
            }
        }
        bail!(
            "{service} has no address this host can reach (its networks {:?} are internal): \
             the deploy checks its readiness and metrics from here",
            networks.keys().collect::<Vec<_>>()
        )
    }

    /// The services the components depend on and that stay up (datastores), not the one-shots.
    fn dependencies(model: &Value) -> Vec<String> {
        let mut deps: Vec<String> = COMPONENTS
            .iter()
            .filter_map(|c| model["services"][c.name]["depends_on"].as_object())
            .flat_map(|d| {
                d.iter()
                    .filter(|(_, v)| v["condition"] != "service_completed_successfully")
                    .map(|(k, _)| k.clone())
            })
            .collect();
        deps.sort();
        deps.dedup();
        deps
    }

    /// `docker image inspect` of the release's image.
    async fn inspect(&self, artifact: &str) -> Result<Value> {
        let mut c = self.docker();
        c.args(["image", "inspect", "-f", "{{json .}}", artifact]);
        let found = run_ok(c, "--release: docker image inspect")
            .await
            .with_context(|| {
                format!("--release: no image {artifact} on this host; build or pull it first")
            })?;
        Ok(serde_json::from_str(&found)?)
    }

    /// A one-off container of the base `service` from the release's image.
    async fn run(
        &self,
        release: &Release,
        service: &str,
        args: &[&str],
        what: &str,
    ) -> Result<String> {
        let mut c = self.compose(false);
        c.env(IMAGE_VAR, &release.artifact)
            .args(["run", "--rm", "--no-deps", "-T", service])
            .args(args);
        run_ok(c, what).await
    }
}

#[async_trait]
impl Runtime for ComposeRuntime {
    async fn digest(&mut self, artifact: &str) -> Result<String> {
        Ok(image_id(&self.inspect(artifact).await?))
    }

    async fn check(&mut self, artifact: &str) -> Result<Release> {
        let image = self.inspect(artifact).await?;
        let release = image_release(&image, artifact, self.label.clone(), image_id(&image));
        let model = self.model().await?;
        for c in COMPONENTS {
            Self::port(model, c)?;
            self.run(
                &release,
                c.name,
                c.check_args,
                &format!("configuration of the {} role", c.name),
            )
            .await?;
        }
        // The datastores a first deploy needs; never recreated when they run already.
        let deps = Self::dependencies(model);
        if !deps.is_empty() {
            let mut c = self.compose(false);
            c.args(["up", "-d", "--wait", "--no-recreate"]).args(&deps);
            run_ok(c, &format!("starting {}", deps.join(", "))).await?;
        }
        Ok(release)
    }

    async fn migration_status(&mut self, release: &Release) -> Result<Vec<Migration>> {
        let status = self
            .run(
                release,
                "migrate",
                &["migrate", "--status"],
                "ghostworks migrate --status",
            )
            .await?;
        Ok(Migration::parse(&status))
    }

    async fn migrate(&mut self, release: &Release) -> Result<()> {
        self.run(release, "migrate", &["migrate"], "ghostworks migrate")
            .await
            .map(|_| ())
    }

    async fn start(&mut self, colour: Colour, release: &Release) -> Result<Vec<Instance>> {
        let mut images = self.images()?;
        images.insert(colour.as_str().into(), release.artifact.clone());
        self.render(&images).await?;
        let services: Vec<String> = COMPONENTS.iter().map(|c| service(c.name, colour)).collect();
        let mut c = self.compose(true);
        c.args(["up", "-d", "--no-deps", "--force-recreate"])
            .args(&services);
        run_ok(c, &format!("docker compose up {}", services.join(" "))).await?;
        let model = self.model().await?;
        let mut instances = Vec::new();
        for c in COMPONENTS {
            let name = service(c.name, colour);
            let id = self
                .container(&name)
                .await?
                .with_context(|| format!("{name}: no container after `up`"))?;
            instances.push(Instance {
                component: *c,
                base_url: format!(
                    "http://{}:{}",
                    self.address(&id, &name).await?,
                    Self::port(model, c)?
                ),
            });
        }
        Ok(instances)
    }

    async fn switch(&mut self, colour: Colour) -> Result<()> {
        let model = self.model().await?;
        nginx::write_upstreams(&self.upstream_dir, colour, |c| {
            Ok(format!(
                "{}:{}",
                service(c.name, colour),
                Self::port(model, c)?
            ))
        })?;
        // nginx's master as this host sees it (docker reports 0 for a stopped container).
        let running = match self.container(&self.nginx_service).await? {
            Some(id) => {
                let mut c = self.docker();
                c.args(["inspect", "-f", "{{.State.Pid}}", &id]);
                let pid: u32 = run_ok(c, "docker inspect")
                    .await?
                    .trim()
                    .parse()
                    .context("docker inspect: nginx's pid")?;
                (pid != 0).then_some((id, pid))
            }
            None => None,
        };
        let Some((id, master)) = running else {
            // A first deploy: nginx starts on the new upstream.
            let mut c = self.compose(true);
            c.args(["up", "-d", "--no-deps", "--wait", &self.nginx_service]);
            return run_ok(c, "starting nginx").await.map(|_| ());
        };
        let mut c = self.docker();
        c.args(["kill", "-s", "HUP", &id]);
        nginx::reload(master, async {
            run_ok(c, "docker kill -s HUP nginx").await.map(|_| ())
        })
        .await
    }

    async fn stop(&mut self, colour: Colour) -> Result<()> {
        let mut images = self.images()?;
        if !images.contains_key(colour.as_str()) {
            return Ok(());
        }
        let services: Vec<String> = COMPONENTS.iter().map(|c| service(c.name, colour)).collect();
        // `stop` honours each service's stop_grace_period: the worker finishes its jobs.
        for verb in [&["stop"][..], &["rm", "-f"][..]] {
            let mut c = self.compose(true);
            c.args(verb).args(&services);
            run_ok(
                c,
                &format!("docker compose {} {}", verb[0], services.join(" ")),
            )
            .await?;
        }
        images.remove(colour.as_str());
        self.render(&images).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_are_the_long_running_services_of_the_components() {
        let model = serde_json::json!({"services": {
            "api": {"depends_on": {
                "postgres": {"condition": "service_healthy"},
                "redis": {"condition": "service_healthy"},
                "migrate": {"condition": "service_completed_successfully"}}},
            "worker": {"depends_on": {"postgres": {"condition": "service_healthy"}}},
        }});
        assert_eq!(
            ComposeRuntime::dependencies(&model),
            vec!["postgres".to_string(), "redis".to_string()]
        );
    }

    #[test]
    fn ports_come_from_the_bind_variables() {
        let model = serde_json::json!({"services": {
            "api": {"environment": {"GHOSTWORKS_BIND": "0.0.0.0:8000"}},
            "worker": {"environment": {}},
        }});
        assert_eq!(ComposeRuntime::port(&model, &COMPONENTS[0]).unwrap(), 8000);
        let missing = ComposeRuntime::port(&model, &COMPONENTS[1])
            .unwrap_err()
            .to_string();
        assert!(missing.contains("WORKER_BIND"), "{missing}");
    }
}
