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

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{nginx, run_ok, Colour, Instance, Release, Runtime, ROLES};

/// How the Compose files name the ghostworks image.
const IMAGE_VAR: &str = "GHOSTWORKS_IMAGE";

pub struct ComposeRuntime {
    /// The docker CLI, with the Compose plugin.
    pub docker: PathBuf,
    /// The Compose project (`-p`); the files' `name:` when unset.
    pub project: Option<String>,
    /// The operator's Compose files, in order (`-f`).
    pub files: Vec<PathBuf>,
    /// Compose's `--env-file` for interpolation, when not the project directory's `.env`.
    pub env_file: Option<PathBuf>,
    pub state_dir: PathBuf,
    /// The directory mounted into the nginx service, holding its `upstream-NAME.conf` files.
    pub upstream_dir: PathBuf,
    pub nginx_service: String,
    /// Overrides the version the image's labels report (`--label`).
    pub label: Option<String>,
    /// The resolved project, read once: the files do not change during a deploy, and
    /// `docker compose config` would otherwise add its time to the switch-over.
    model: OnceCell<Value>,
}

fn service(role: &str, colour: Colour) -> String {
    format!("{role}-{}", colour.as_str())
}

impl ComposeRuntime {
    /// The project of `files` (default name, `.env`, nginx service `nginx`).
    pub fn new(
        docker: PathBuf,
        files: Vec<PathBuf>,
        state_dir: PathBuf,
        upstream_dir: PathBuf,
    ) -> Self {
        Self {
            docker,
            project: None,
            files,
            env_file: None,
            state_dir,
            upstream_dir,
            nginx_service: "nginx".into(),
            label: None,
            model: OnceCell::new(),
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
    fn model(&self) -> Result<&Value> {
        if let Some(m) = self.model.get() {
            return Ok(m);
        }
        let mut c = self.compose(false);
        c.args(["config", "--format", "json"]);
        let text = run_ok(c, "docker compose config")?;
        let model = serde_json::from_str(&text).context("docker compose config: not JSON")?;
        Ok(self.model.get_or_init(|| model))
    }

    /// Rewrites the overlay with a service per role for each colour in `images`.
    fn render(&self, images: &BTreeMap<String, String>) -> Result<()> {
        let model = self.model()?;
        let mut services = serde_json::Map::new();
        for (colour, image) in images {
            for role in ROLES {
                let mut s = model["services"][role.name].clone();
                let Some(obj) = s.as_object_mut() else {
                    bail!(
                        "--compose-file: the project has no `{}` service to run the {} role",
                        role.name,
                        role.name
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
                for (var, target) in role.links {
                    let port = Self::port(model, super::role(target))?;
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
                services.insert(format!("{}-{colour}", role.name), s);
            }
        }
        let overlay = serde_json::json!({
            "x-generated": "by `ghostworks deploy --runtime compose`; do not edit",
            "services": services,
        });
        // Settings from the env_file are resolved into it: readable by its owner only.
        let tmp = self.state_dir.join(".compose.colours.yml.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&overlay)?)?;
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        std::fs::rename(&tmp, self.overlay())?;
        std::fs::write(self.images_file(), serde_json::to_vec_pretty(images)?)?;
        Ok(())
    }

    /// The port a role's service listens on, from its bind variable.
    fn port(model: &Value, role: &super::Role) -> Result<u16> {
        model["services"][role.name]["environment"][role.bind_var]
            .as_str()
            .and_then(|b| b.rsplit(':').next()?.parse().ok())
            .with_context(|| {
                format!(
                    "--compose-file: the `{}` service sets no {} (HOST:PORT)",
                    role.name, role.bind_var
                )
            })
    }

    fn container(&self, service: &str) -> Result<Option<String>> {
        let mut c = self.compose(true);
        c.args(["ps", "-q", service]);
        let id = run_ok(c, &format!("docker compose ps {service}"))?;
        Ok(id
            .lines()
            .next()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from))
    }

    /// An address of the container this host can reach: one on a network that is not internal.
    fn address(&self, id: &str, service: &str) -> Result<String> {
        let mut c = self.docker();
        c.args(["inspect", "-f", "{{json .NetworkSettings.Networks}}", id]);
        let networks: BTreeMap<String, Value> =
            serde_json::from_str(&run_ok(c, "docker inspect")?)?;
        for (name, n) in &networks {
            let ip = n["IPAddress"].as_str().unwrap_or_default();
            let mut c = self.docker();
            c.args(["network", "inspect", "-f", "{{.Internal}}", name]);
            if !ip.is_empty() && run_ok(c, "docker network inspect")?.trim() == "false" {
                return Ok(ip.to_string());
            }
        }
        bail!(
            "{service} has no address this host can reach (its networks {:?} are internal): \
             the deploy checks its readiness and metrics from here",
            networks.keys().collect::<Vec<_>>()
        )
    }

    /// The services the roles depend on and that stay up (datastores), not the one-shots.
    fn dependencies(model: &Value) -> Vec<String> {
        let mut deps: Vec<String> = ROLES
            .iter()
            .filter_map(|r| model["services"][r.name]["depends_on"].as_object())
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

    /// A one-off container of the base `service` from the release's image.
    fn run(&self, release: &Release, service: &str, args: &[&str], what: &str) -> Result<String> {
        let mut c = self.compose(false);
        c.env(IMAGE_VAR, &release.artifact)
            .args(["run", "--rm", "--no-deps", "-T", service])
            .args(args);
        run_ok(c, what)
    }
}

impl Runtime for ComposeRuntime {
    fn check(&mut self, artifact: &str) -> Result<Release> {
        let mut c = self.docker();
        c.args(["image", "inspect", "-f", "{{json .}}", artifact]);
        let image: Value =
            serde_json::from_str(&run_ok(c, "--release: docker image inspect").with_context(
                || format!("--release: no image {artifact} on this host; build or pull it first"),
            )?)?;
        let label = |k: &str| image["Config"]["Labels"][k].as_str().map(String::from);
        let release = Release {
            artifact: artifact.to_string(),
            version: self
                .label
                .clone()
                .or_else(|| label("org.opencontainers.image.version"))
                .or_else(|| artifact.rsplit_once(':').map(|(_, t)| t.to_string()))
                .unwrap_or_else(|| "unknown".into()),
            git_sha: label("org.opencontainers.image.revision").unwrap_or_else(|| "unknown".into()),
            digest: image["Id"].as_str().unwrap_or("unknown").to_string(),
        };
        let model = self.model()?;
        for role in ROLES {
            Self::port(model, role)?;
            self.run(
                &release,
                role.name,
                role.check_args,
                &format!("configuration of the {} role", role.name),
            )?;
        }
        // The datastores a first deploy needs; never recreated when they run already.
        let deps = Self::dependencies(model);
        if !deps.is_empty() {
            let mut c = self.compose(false);
            c.args(["up", "-d", "--wait", "--no-recreate"]).args(&deps);
            run_ok(c, &format!("starting {}", deps.join(", ")))?;
        }
        Ok(release)
    }

    fn migration_status(&mut self, release: &Release) -> Result<String> {
        self.run(
            release,
            "migrate",
            &["migrate", "--status"],
            "ghostworks migrate --status",
        )
    }

    fn migrate(&mut self, release: &Release) -> Result<()> {
        self.run(release, "migrate", &["migrate"], "ghostworks migrate")
            .map(|_| ())
    }

    fn start(&mut self, colour: Colour, release: &Release) -> Result<Vec<Instance>> {
        let mut images = self.images()?;
        images.insert(colour.as_str().into(), release.artifact.clone());
        self.render(&images)?;
        let services: Vec<String> = ROLES.iter().map(|r| service(r.name, colour)).collect();
        let mut c = self.compose(true);
        c.args(["up", "-d", "--no-deps", "--force-recreate"])
            .args(&services);
        run_ok(c, &format!("docker compose up {}", services.join(" ")))?;
        let model = self.model()?;
        ROLES
            .iter()
            .map(|role| {
                let name = service(role.name, colour);
                let id = self
                    .container(&name)?
                    .with_context(|| format!("{name}: no container after `up`"))?;
                Ok(Instance {
                    role: *role,
                    base_url: format!(
                        "http://{}:{}",
                        self.address(&id, &name)?,
                        Self::port(model, role)?
                    ),
                })
            })
            .collect()
    }

    fn switch(&mut self, colour: Colour) -> Result<()> {
        let model = self.model()?;
        nginx::write_upstreams(&self.upstream_dir, colour, |r| {
            Ok(format!(
                "{}:{}",
                service(r.name, colour),
                Self::port(model, r)?
            ))
        })?;
        // nginx's master as this host sees it (docker reports 0 for a stopped container).
        let running = match self.container(&self.nginx_service)? {
            Some(id) => {
                let mut c = self.docker();
                c.args(["inspect", "-f", "{{.State.Pid}}", &id]);
                let pid: u32 = run_ok(c, "docker inspect")?
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
            return run_ok(c, "starting nginx").map(|_| ());
        };
        nginx::reload(master, || {
            let mut c = self.docker();
            c.args(["kill", "-s", "HUP", &id]);
            run_ok(c, "docker kill -s HUP nginx").map(|_| ())
        })
    }

    fn stop(&mut self, colour: Colour) -> Result<()> {
        let mut images = self.images()?;
        if !images.contains_key(colour.as_str()) {
            return Ok(());
        }
        let services: Vec<String> = ROLES.iter().map(|r| service(r.name, colour)).collect();
        // `stop` honours each service's stop_grace_period: the worker finishes its jobs.
        for verb in [&["stop"][..], &["rm", "-f"][..]] {
            let mut c = self.compose(true);
            c.args(verb).args(&services);
            run_ok(
                c,
                &format!("docker compose {} {}", verb[0], services.join(" ")),
            )?;
        }
        images.remove(colour.as_str());
        self.render(&images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_are_the_long_running_services_of_the_roles() {
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
        assert_eq!(ComposeRuntime::port(&model, &ROLES[0]).unwrap(), 8000);
        let missing = ComposeRuntime::port(&model, &ROLES[1])
            .unwrap_err()
            .to_string();
        assert!(missing.contains("WORKER_BIND"), "{missing}");
    }
}
