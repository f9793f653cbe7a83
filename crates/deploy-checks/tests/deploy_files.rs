//! Offline checks of every deployment file, run by `cargo test --workspace`.
//!
//! Each check uses the real validator (Compose v5, hadolint, check-jsonschema, kubectl
//! kustomize + kubernetes-validate, promtool). A missing validator FAILS the test with the
//! command that installs it (`scripts/install-deps.sh` installs them all); nothing is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use ghostworks_deploy_checks::metrics::{dashboard_queries, ExportedMetrics};
use ghostworks_deploy_checks::{
    assert_no_violations, files_under, repo_root, require_tool, run, run_ok, yaml_docs,
};
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// Compose

/// Secret files that docker-compose.prod.yml (and docker-compose.ha.yml) mount (placeholders
/// for validation only).
const PROD_SECRETS: &[&str] = &[
    "jwt_secret",
    "database_url",
    "database_admin_url",
    "redis_url",
    "postgres_password",
    "api_db_password",
    "worker_database_url",
    "worker_db_password",
    "smtp_url",
    "grafana_admin_password",
    "pg_replication_password",
    "pg_rewind_password",
];

/// Long-running services that cannot have a Compose healthcheck, and why. Such a service may
/// never be the target of a `service_healthy` dependency.
const HEALTHCHECK_EXEMPT: &[(&str, &str)] = &[(
    "otelcol",
    "the otel/opentelemetry-collector-contrib image is FROM scratch: no shell or HTTP client \
     to probe its health_check extension (:13133) from inside the container",
)];

/// Variables that hold credentials: in production only their `_FILE` form may be set.
const SECRET_VARS: &[&str] = &[
    "JWT_SECRET_KEY",
    "DATABASE_URL",
    "DATABASE_ADMIN_URL",
    "REDIS_URL",
    "SMTP_URL",
];

/// Secrets the worker must neither read nor have mounted: it needs its own database login and
/// the SMTP relay, nothing of the API's (docs/worker.md, crates/config `WorkerConfig`).
const NOT_FOR_THE_WORKER: &[&str] = &["JWT_SECRET_KEY", "REDIS_URL", "DATABASE_ADMIN_URL"];

/// SIGTERM lets the worker finish the jobs in flight (an e-mail attempt ends within 45 s).
const WORKER_MIN_GRACE_SECONDS: u64 = 60;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stack {
    /// docker-compose.yml alone.
    Base,
    /// docker-compose.yml + docker-compose.override.yml (`docker compose up`).
    Dev,
    /// docker-compose.yml + docker-compose.prod.yml (staging and production).
    Prod,
    /// docker-compose.test.yml alone (throw-away datastores for tests).
    Test,
}

struct Combo {
    label: &'static str,
    files: &'static [&'static str],
    env_file: Option<&'static str>,
    stack: Stack,
}

/// Every compose file combination the project documents (README, deploy/README.md, CI).
const COMBOS: &[Combo] = &[
    Combo {
        label: "base",
        files: &["docker-compose.yml"],
        env_file: None,
        stack: Stack::Base,
    },
    Combo {
        label: "development",
        files: &["docker-compose.yml", "docker-compose.override.yml"],
        env_file: None,
        stack: Stack::Dev,
    },
    Combo {
        label: "production",
        files: &["docker-compose.yml", "docker-compose.prod.yml"],
        env_file: Some(".env.production"),
        stack: Stack::Prod,
    },
    Combo {
        label: "staging",
        files: &["docker-compose.yml", "docker-compose.prod.yml"],
        env_file: Some(".env.staging"),
        stack: Stack::Prod,
    },
    Combo {
        label: "ci container stage",
        files: &[
            "docker-compose.yml",
            "docker-compose.prod.yml",
            "docker-compose.ci.yml",
        ],
        env_file: Some(".env.production"),
        stack: Stack::Prod,
    },
    Combo {
        label: "high availability",
        files: &[
            "docker-compose.yml",
            "docker-compose.prod.yml",
            "docker-compose.ha.yml",
        ],
        env_file: Some(".env.production"),
        stack: Stack::Prod,
    },
    Combo {
        label: "test",
        files: &["docker-compose.test.yml"],
        env_file: None,
        stack: Stack::Test,
    },
];

/// A scratch directory with an empty `.env` replacement and placeholder secret files.
struct ComposeEnv {
    dir: tempfile::TempDir,
}

impl ComposeEnv {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("empty.env"), "").unwrap();
        let secrets = dir.path().join("secrets");
        std::fs::create_dir(&secrets).unwrap();
        for s in PROD_SECRETS {
            std::fs::write(secrets.join(s), "validation-placeholder\n").unwrap();
        }
        ComposeEnv { dir }
    }

    /// `docker-compose [--env-file empty] -f ... <args>` from the repository root, with a
    /// clean environment so the developer's shell cannot change the result.
    fn command(&self, combo: &Combo, args: &[&str]) -> Command {
        let mut cmd = Command::new(require_tool("docker-compose"));
        cmd.current_dir(repo_root()).env_clear();
        for var in ["PATH", "HOME", "TMPDIR"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        cmd.env("GHOSTWORKS_SECRETS_DIR", self.dir.path().join("secrets"));
        if let Some(f) = combo.env_file {
            cmd.env("GHOSTWORKS_ENV_FILE", f);
        }
        cmd.arg("--env-file").arg(self.dir.path().join("empty.env"));
        for f in combo.files {
            cmd.args(["-f", f]);
        }
        cmd.args(args);
        cmd
    }
}

fn compose_version_is_v2_or_later() {
    let out = run_ok(
        Command::new(require_tool("docker-compose")).args(["version", "--short"]),
        "docker-compose version",
    );
    let major: u32 = out
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 2,
        "docker-compose {} is the legacy v1, which rejects the current Compose spec; {}",
        out.trim(),
        ghostworks_deploy_checks::install_hint("docker-compose")
    );
}

#[test]
fn every_compose_file_is_covered() {
    let root = repo_root();
    let covered: BTreeSet<&str> = COMBOS
        .iter()
        .flat_map(|c| c.files.iter().copied())
        .collect();
    let mut uncovered = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let compose = (name.starts_with("docker-compose") || name.starts_with("compose"))
            && (name.ends_with(".yml") || name.ends_with(".yaml"));
        if compose && !covered.contains(name.as_str()) {
            uncovered.push(format!(
                "{name} is not validated: add its combination to COMBOS in {}",
                file!()
            ));
        }
    }
    assert_no_violations("compose files", &uncovered);
}

#[test]
fn compose_combinations_validate_and_follow_the_rules() {
    compose_version_is_v2_or_later();
    let env = ComposeEnv::new();
    for combo in COMBOS {
        // (a) the Compose v5 validator itself.
        run_ok(
            &mut env.command(combo, &["config", "-q"]),
            &format!("compose {} ({})", combo.label, combo.files.join(" + ")),
        );
        // (b) the project's rules, on the merged model Compose would run.
        let json = run_ok(
            &mut env.command(combo, &["config", "--format", "json"]),
            &format!("compose {} as JSON", combo.label),
        );
        let model: Value = serde_json::from_str(&json).expect("compose config JSON");
        let violations = compose_rules(combo.stack, &model);
        assert_no_violations(
            &format!("compose {} ({})", combo.label, combo.files.join(" + ")),
            &violations,
        );
    }
}

fn services(model: &Value) -> Vec<(&str, &Value)> {
    model["services"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.as_str(), v)).collect())
        .unwrap_or_default()
}

fn str_list(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn has_healthcheck(svc: &Value) -> bool {
    let hc = &svc["healthcheck"];
    if !hc.is_object() || hc["disable"] == true {
        return false;
    }
    match &hc["test"] {
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => !a.is_empty() && a[0] != "NONE",
        _ => false,
    }
}

fn depends_condition<'a>(svc: &'a Value, on: &str) -> Option<&'a str> {
    svc["depends_on"][on]["condition"].as_str()
}

/// A service running the Ghostworks binary: its image repository is `ghostworks` (e.g.
/// `ghostworks:local`, `registry.example.com/ghostworks:1.2`), or it is built from
/// deploy/Dockerfile. Helper images named `ghostworks/<something>` are not.
fn is_ghostworks_service(svc: &Value) -> bool {
    let image = svc["image"].as_str().unwrap_or("");
    let repo = image.split('@').next().unwrap_or("");
    let last = repo.rsplit('/').next().unwrap_or("");
    let name = last.split(':').next().unwrap_or("");
    let dockerfile = svc["build"]["dockerfile"].as_str().unwrap_or("");
    name == "ghostworks" || dockerfile.ends_with("deploy/Dockerfile")
}

/// A Compose duration ("90s", "1m30s", "2m", "1h") in whole seconds.
fn compose_duration_secs(d: &str) -> Option<u64> {
    let (mut total, mut num) = (0f64, String::new());
    for ch in d.trim().chars() {
        if ch.is_ascii_digit() || ch == '.' {
            num.push(ch);
            continue;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match ch {
            'h' => 3600.0,
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
    }
    if !num.is_empty() {
        total += num.parse::<f64>().ok()?;
    }
    Some(total as u64)
}

/// The `*_FILE` variables of a service that are set (an empty value unsets one).
fn file_vars(svc: &Value) -> BTreeMap<String, String> {
    svc["environment"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let v = v.as_str()?.trim();
            (k.ends_with("_FILE") && !v.is_empty()).then(|| (k.clone(), v.to_string()))
        })
        .collect()
}

/// The worker in every stack that runs the application: start-up order, a health check of
/// its own port, a grace period for the jobs in flight, no dependency on Redis.
fn worker_rules(model: &Value, v: &mut Vec<String>) {
    let w = &model["services"]["worker"];
    if w.is_null() {
        v.push("worker service missing".into());
        return;
    }
    if str_list(&w["command"]) != ["worker"] {
        v.push(format!(
            "worker: command must be [\"worker\"] (is {})",
            w["command"]
        ));
    }
    for (dep, want) in [
        ("postgres", "service_healthy"),
        ("migrate", "service_completed_successfully"),
    ] {
        if depends_condition(w, dep) != Some(want) {
            v.push(format!(
                "worker: depends_on {dep} must have condition {want} (has {:?})",
                depends_condition(w, dep)
            ));
        }
    }
    if !w["depends_on"]["redis"].is_null() {
        v.push("worker: must not depend on redis (it uses none)".into());
    }
    let test = w["healthcheck"]["test"].to_string();
    if !test.contains("healthcheck") || !test.contains(":8001/health") {
        v.push(format!(
            "worker: healthcheck must run `ghostworks healthcheck --url http://127.0.0.1:8001/health` (is {test})"
        ));
    }
    match w["stop_grace_period"].as_str().and_then(compose_duration_secs) {
        Some(secs) if secs >= WORKER_MIN_GRACE_SECONDS => {}
        other => v.push(format!(
            "worker: stop_grace_period must be at least {WORKER_MIN_GRACE_SECONDS}s so SIGTERM lets jobs in flight finish (is {other:?} s)"
        )),
    }
}

/// The web role in every stack that runs the application: after a healthy API, its own
/// readiness probe, API_URL in `environment` (a deploy's colours override it there), and the
/// alias Prometheus finds every web container by.
fn web_rules(model: &Value, v: &mut Vec<String>) {
    let w = &model["services"]["web"];
    if w.is_null() {
        v.push("web service missing".into());
        return;
    }
    if str_list(&w["command"]) != ["web"] {
        v.push(format!(
            "web: command must be [\"web\"] (is {})",
            w["command"]
        ));
    }
    if depends_condition(w, "api") != Some("service_healthy") {
        v.push("web: depends_on api must have condition service_healthy".into());
    }
    let test = w["healthcheck"]["test"].to_string();
    if !test.contains("healthcheck") || !test.contains(":3000/health/ready") {
        v.push(format!(
            "web: healthcheck must run `ghostworks healthcheck --url http://127.0.0.1:3000/health/ready` (is {test})"
        ));
    }
    if !w["environment"]["API_URL"].is_string() {
        v.push("web: API_URL must be set in environment".into());
    }
    if !str_list(&w["networks"]["frontend"]["aliases"]).contains(&"ghostworks-web") {
        v.push("web: must join the frontend network with the alias ghostworks-web".into());
    }
}

fn compose_rules(stack: Stack, model: &Value) -> Vec<String> {
    let mut v = Vec::new();
    let svcs = services(model);
    if svcs.is_empty() {
        v.push("no services".into());
    }

    // Services something waits on to *finish* are one-shots (migrate).
    let mut one_shots = BTreeSet::new();
    let mut healthy_targets = BTreeSet::new();
    for (_, s) in &svcs {
        if let Some(deps) = s["depends_on"].as_object() {
            for (dep, d) in deps {
                match d["condition"].as_str() {
                    Some("service_completed_successfully") => {
                        one_shots.insert(dep.clone());
                    }
                    Some("service_healthy") => {
                        healthy_targets.insert(dep.clone());
                    }
                    _ => {}
                }
            }
        }
    }

    for (name, s) in &svcs {
        // Long-running services: a healthcheck and a restart policy.
        if one_shots.contains(*name) {
            if s["restart"].as_str().is_some_and(|r| r != "no") {
                v.push(format!(
                    "{name}: one-shot service must not restart (restart: \"no\")"
                ));
            }
            continue;
        }
        match s["restart"].as_str() {
            None => v.push(format!(
                "{name}: long-running service without a restart policy"
            )),
            Some(r) if stack != Stack::Test => {
                if !(r == "always" || r == "unless-stopped" || r.starts_with("on-failure")) {
                    v.push(format!(
                        "{name}: restart \"{r}\" does not bring a long-running service back"
                    ));
                }
            }
            Some(_) => {}
        }
        if !has_healthcheck(s) {
            match HEALTHCHECK_EXEMPT.iter().find(|(n, _)| n == name) {
                Some(_) if healthy_targets.contains(*name) => v.push(format!(
                    "{name}: has no healthcheck but another service waits for service_healthy on it"
                )),
                Some(_) => {}
                None => v.push(format!(
                    "{name}: long-running service without a healthcheck"
                )),
            }
        }
        // Outside production everything is published on loopback only.
        if stack != Stack::Prod {
            for p in s["ports"].as_array().into_iter().flatten() {
                if p["host_ip"].as_str() != Some("127.0.0.1") {
                    v.push(format!("{name}: port {p} is not bound to 127.0.0.1"));
                }
            }
        }
    }

    // Start-up order of the application.
    if stack != Stack::Test {
        let api = &model["services"]["api"];
        if api.is_null() {
            v.push("api service missing".into());
        } else {
            for (dep, want) in [
                ("postgres", "service_healthy"),
                ("redis", "service_healthy"),
                ("migrate", "service_completed_successfully"),
            ] {
                if depends_condition(api, dep) != Some(want) {
                    v.push(format!(
                        "api: depends_on {dep} must have condition {want} (has {:?})",
                        depends_condition(api, dep)
                    ));
                }
            }
        }
        let migrate = &model["services"]["migrate"];
        if depends_condition(migrate, "postgres") != Some("service_healthy") {
            v.push("migrate: depends_on postgres must have condition service_healthy".into());
        }
        worker_rules(model, &mut v);
        web_rules(model, &mut v);
    }

    if stack == Stack::Prod {
        prod_rules(model, &svcs, &mut v);
    }
    v
}

fn prod_rules(model: &Value, svcs: &[(&str, &Value)], v: &mut Vec<String>) {
    let ghostworks: Vec<_> = svcs
        .iter()
        .filter(|(_, s)| is_ghostworks_service(s))
        .collect();
    for needed in ["api", "migrate", "worker", "web"] {
        if !ghostworks.iter().any(|(n, _)| *n == needed) {
            v.push(format!("{needed}: not recognised as a ghostworks service"));
        }
    }
    for (name, s) in &ghostworks {
        if s["read_only"] != true {
            v.push(format!("{name}: read_only must be true"));
        }
        if !str_list(&s["cap_drop"]).contains(&"ALL") {
            v.push(format!("{name}: cap_drop must contain ALL"));
        }
        if !str_list(&s["cap_add"]).is_empty() {
            v.push(format!("{name}: must not add capabilities"));
        }
        if !str_list(&s["security_opt"])
            .iter()
            .any(|o| *o == "no-new-privileges:true" || *o == "no-new-privileges")
        {
            v.push(format!(
                "{name}: security_opt must contain no-new-privileges:true"
            ));
        }
        if s["user"].as_str() != Some("1001:1001") {
            v.push(format!(
                "{name}: user must be \"1001:1001\" (is {})",
                s["user"]
            ));
        }
        // Only nginx (and the dashboards, on loopback) face the outside.
        if s["ports"].as_array().is_some_and(|p| !p.is_empty()) {
            v.push(format!("{name}: must not publish ports in production"));
        }

        // Secrets only as mounted files, referenced through *_FILE.
        let env = s["environment"].as_object().cloned().unwrap_or_default();
        for var in SECRET_VARS {
            if env.contains_key(*var) {
                v.push(format!(
                    "{name}: {var} is set as a plain value; use {var}_FILE"
                ));
            }
        }
        let targets: BTreeSet<String> = s["secrets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| {
                x["target"].as_str().map(str::to_owned).or_else(|| {
                    x["source"]
                        .as_str()
                        .map(|src| format!("/run/secrets/{src}"))
                })
            })
            .collect();
        // An empty *_FILE unsets the variable (e.g. the worker's copy of the shared env file).
        for (var, path) in &file_vars(s) {
            if !targets.contains(path) {
                v.push(format!(
                    "{name}: {var}={path} is not a secret mounted into the service"
                ));
            }
        }
        let required: &[&str] = match *name {
            "api" => &["DATABASE_URL_FILE", "REDIS_URL_FILE", "JWT_SECRET_KEY_FILE"],
            "migrate" => &["DATABASE_ADMIN_URL_FILE"],
            "worker" => &["DATABASE_URL_FILE", "SMTP_URL_FILE"],
            _ => &[],
        };
        for var in required {
            if !file_vars(s).contains_key(*var) {
                v.push(format!("{name}: {var} missing"));
            }
        }
    }

    // The worker: its own login and the mail relay, nothing of the API's; not reachable from
    // the frontend network, and time for the jobs in flight when stopped.
    let worker = &model["services"]["worker"];
    let api = &model["services"]["api"];
    if !worker.is_null() {
        let wf = file_vars(worker);
        for var in NOT_FOR_THE_WORKER {
            if wf.contains_key(&format!("{var}_FILE")) || worker["environment"][*var].is_string() {
                v.push(format!(
                    "worker: {var} is set; the worker must not get the API's secrets"
                ));
            }
        }
        let api_db = file_vars(api).get("DATABASE_URL_FILE").cloned();
        if api_db.is_some() && wf.get("DATABASE_URL_FILE") == api_db.as_ref() {
            v.push("worker: DATABASE_URL_FILE is the API's login; the worker needs its own (a member of ghostworks_worker)".into());
        }
        let secret_sources = |svc: &Value| -> BTreeSet<String> {
            svc["secrets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x["source"].as_str().map(str::to_owned))
                .collect()
        };
        let worker_secrets = secret_sources(worker);
        for shared in secret_sources(api).intersection(&worker_secrets) {
            v.push(format!(
                "worker: mounts secret {shared}, which the api uses; each process gets only its own"
            ));
        }
        // The schema owner's URL (what migrate reads as DATABASE_ADMIN_URL_FILE).
        let migrate = &model["services"]["migrate"];
        if let Some(admin_path) = file_vars(migrate).get("DATABASE_ADMIN_URL_FILE") {
            let admin_secret = migrate["secrets"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|x| x["target"].as_str() == Some(admin_path.as_str()))
                .and_then(|x| x["source"].as_str());
            if let Some(src) = admin_secret.filter(|src| worker_secrets.contains(*src)) {
                v.push(format!("worker: mounts the schema owner's secret {src}"));
            }
        }
        let frontend = worker["networks"]
            .as_object()
            .is_some_and(|n| n.contains_key("frontend"));
        if frontend {
            v.push("worker: must not be attached to the frontend network".into());
        }
        if worker["network_mode"].is_string() {
            v.push("worker: network_mode bypasses the compose networks".into());
        }
    }

    // The web role only talks to the API over HTTP: no secret, no datastore network.
    let web = &model["services"]["web"];
    if !web.is_null() {
        if web["secrets"].as_array().is_some_and(|s| !s.is_empty()) || !file_vars(web).is_empty() {
            v.push("web: must mount no secret (it holds none)".into());
        }
        let nets = web["networks"].as_object();
        if nets.is_some_and(|n| n.keys().any(|k| k != "frontend")) {
            v.push("web: must be attached to the frontend network only".into());
        }
    }

    // Every other service too: no capabilities, no privilege escalation.
    for (name, s) in svcs.iter().filter(|(_, s)| !is_ghostworks_service(s)) {
        if !str_list(&s["cap_drop"]).contains(&"ALL") {
            v.push(format!("{name}: cap_drop must contain ALL"));
        }
        if !str_list(&s["security_opt"])
            .iter()
            .any(|o| *o == "no-new-privileges:true" || *o == "no-new-privileges")
        {
            v.push(format!(
                "{name}: security_opt must contain no-new-privileges:true"
            ));
        }
        if s["privileged"] == true {
            v.push(format!("{name}: must not be privileged"));
        }
    }

    // Top-level secrets come from files, never from inline/environment values.
    for (sname, sdef) in model["secrets"].as_object().into_iter().flatten() {
        if sdef["file"].as_str().is_none() && sdef["external"] != true {
            v.push(format!(
                "secret {sname}: must be a file (or external) secret"
            ));
        }
    }

    // Log rotation everywhere.
    for (name, s) in svcs {
        let log = &s["logging"];
        let driver = log["driver"].as_str().unwrap_or("");
        let rotated = driver == "local"
            || (driver == "json-file"
                && log["options"]["max-size"].is_string()
                && log["options"]["max-file"].is_string());
        if !rotated {
            v.push(format!(
                "{name}: logging must rotate (json-file with max-size and max-file)"
            ));
        }
    }

    // Datastores (and the high-availability variant's cluster): only on internal networks,
    // nothing published.
    let networks = &model["networks"];
    let cluster = ["etcd", "pg1", "pg2", "pg3"]
        .into_iter()
        .filter(|n| !model["services"][*n].is_null());
    for store in ["postgres", "redis"].into_iter().chain(cluster) {
        let s = &model["services"][store];
        if s.is_null() {
            v.push(format!("{store}: service missing"));
            continue;
        }
        let nets: Vec<&String> = s["networks"]
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        if nets.is_empty() {
            v.push(format!(
                "{store}: must be attached to an internal network explicitly"
            ));
        }
        for n in nets {
            if networks[n.as_str()]["internal"] != true {
                v.push(format!("{store}: network {n} is not internal: true"));
            }
        }
        if s["ports"].as_array().is_some_and(|p| !p.is_empty()) {
            v.push(format!("{store}: must not publish ports in production"));
        }
        if s["network_mode"].is_string() {
            v.push(format!(
                "{store}: network_mode bypasses the internal network"
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------
// CI workflow and Dockerfiles

#[test]
fn github_workflows_match_the_schema() {
    let root = repo_root();
    let workflows = files_under(&root.join(".github/workflows"), &|n| {
        n.ends_with(".yml") || n.ends_with(".yaml")
    });
    assert!(!workflows.is_empty(), "no workflow under .github/workflows");
    let tool = require_tool("check-jsonschema");
    for wf in workflows {
        run_ok(
            Command::new(&tool)
                .current_dir(&root)
                .args(["--builtin-schema", "vendor.github-workflows"])
                .arg(&wf),
            &format!("check-jsonschema {}", wf.display()),
        );
    }
}

fn is_dockerfile(name: &str) -> bool {
    name == "Dockerfile"
        || name == "Containerfile"
        || name.starts_with("Dockerfile.")
        || name.starts_with("Containerfile.")
        || name.ends_with(".Dockerfile")
        || name.ends_with(".dockerfile")
}

#[test]
fn dockerfiles_pass_hadolint() {
    let root = repo_root();
    let dockerfiles = files_under(&root.join("deploy"), &is_dockerfile);
    assert!(
        dockerfiles.contains(&root.join("deploy/Dockerfile")),
        "deploy/Dockerfile missing"
    );
    assert!(
        root.join(".hadolint.yaml").is_file(),
        ".hadolint.yaml missing"
    );
    let tool = require_tool("hadolint");
    let mut findings = Vec::new();
    for df in &dockerfiles {
        let out = run(Command::new(&tool)
            .current_dir(&root)
            .args(["--no-color", "--config", ".hadolint.yaml"])
            .arg(df));
        if !out.status.success() {
            findings.push(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert_no_violations(
        &format!("hadolint ({} Dockerfiles under deploy/)", dockerfiles.len()),
        &findings,
    );
}

// ---------------------------------------------------------------------------------------
// Kubernetes

const K8S_VERSION: &str = "1.30";
const OVERLAYS: &[&str] = &["dev", "staging", "prod"];

fn render_overlay(overlay: &str) -> String {
    let root = repo_root();
    run_ok(
        Command::new(require_tool("kubectl"))
            .current_dir(&root)
            .arg("kustomize")
            .arg(format!("deploy/k8s/overlays/{overlay}")),
        &format!("kubectl kustomize deploy/k8s/overlays/{overlay}"),
    )
}

#[test]
fn every_overlay_is_checked() {
    let dir = repo_root().join("deploy/k8s/overlays");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.path().join("kustomization.yaml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut want: Vec<String> = OVERLAYS.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(found, want, "overlays on disk vs OVERLAYS in {}", file!());
}

#[test]
fn k8s_overlays_render_validate_and_are_hardened() {
    let validate = require_tool("kubernetes-validate");
    let scratch = tempfile::tempdir().unwrap();
    let mut namespaces = BTreeSet::new();
    let mut images = BTreeSet::new();
    for overlay in OVERLAYS {
        let rendered = render_overlay(overlay);
        let file = scratch.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, &rendered).unwrap();
        let docs = yaml_docs(&rendered)
            .unwrap_or_else(|e| panic!("overlay {overlay}: rendered YAML does not parse: {e}"));

        let out = run(Command::new(&validate)
            .args(["--strict", "-k", K8S_VERSION])
            .arg(&file));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && !text.contains("ERROR") && !text.contains("WARN"),
            "kubernetes-validate --strict -k {K8S_VERSION} (overlay {overlay}) failed:\n{text}"
        );
        let passed = text.lines().filter(|l| l.contains(" passed ")).count();
        assert_eq!(
            passed,
            docs.len(),
            "overlay {overlay}: kubernetes-validate passed {passed} of {} objects:\n{text}",
            docs.len()
        );

        let (ns, image, violations) = k8s_rules(&docs);
        assert_no_violations(&format!("overlay {overlay}"), &violations);
        namespaces.insert(ns);
        images.insert(image);
    }
    assert_eq!(
        namespaces.len(),
        OVERLAYS.len(),
        "overlays share a namespace: {namespaces:?}"
    );
    assert_eq!(
        images.len(),
        OVERLAYS.len(),
        "overlays share an image tag: {images:?}"
    );
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

fn of_kind<'a>(docs: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    docs.iter().filter(move |d| d["kind"] == kind)
}

/// Checks one rendered overlay; returns its namespace, api image and the violations.
fn k8s_rules(docs: &[Value]) -> (String, String, Vec<String>) {
    let mut v = Vec::new();

    // One namespace for everything, and it enforces the restricted Pod Security profile.
    let ns_obj = of_kind(docs, "Namespace").next();
    let ns = ns_obj
        .and_then(|n| n["metadata"]["name"].as_str())
        .unwrap_or("")
        .to_string();
    if ns.is_empty() || ns == "default" {
        v.push("a dedicated Namespace object is required".into());
    } else if ns_obj.unwrap()["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        != "restricted"
    {
        v.push(format!(
            "namespace {ns}: must enforce pod-security restricted"
        ));
    }
    for d in docs.iter().filter(|d| d["kind"] != "Namespace") {
        if d["metadata"]["namespace"].as_str() != Some(ns.as_str()) {
            v.push(format!(
                "{} {}: not in namespace {ns}",
                d["kind"], d["metadata"]["name"]
            ));
        }
    }

    // No secret material in the output, ever.
    for s in of_kind(docs, "Secret") {
        if s.get("data").is_some() || s.get("stringData").is_some() {
            v.push(format!(
                "Secret {} is rendered with data",
                s["metadata"]["name"]
            ));
        }
    }
    let mut config_keys = BTreeSet::new();
    for cm in of_kind(docs, "ConfigMap") {
        for k in cm["data"].as_object().into_iter().flatten().map(|(k, _)| k) {
            config_keys.insert(k.clone());
            if SECRET_VARS.contains(&k.as_str()) {
                v.push(format!("ConfigMap {}: holds {k}", cm["metadata"]["name"]));
            }
        }
    }
    if !config_keys.contains("GHOSTWORKS_ENV") {
        v.push("ConfigMap with GHOSTWORKS_ENV missing".into());
    }

    // The api Deployment.
    let mut image = String::new();
    match find(docs, "Deployment", "ghostworks-api") {
        None => v.push("Deployment ghostworks-api missing".into()),
        Some(dep) => {
            let pod = &dep["spec"]["template"]["spec"];
            pod_rules("Deployment ghostworks-api", pod, &mut v);
            let c = &pod["containers"][0];
            image = c["image"].as_str().unwrap_or("").to_string();
            if !image.contains(':') || image.ends_with(":latest") {
                v.push(format!(
                    "api image {image:?} must carry a pinned tag (images: in the overlay)"
                ));
            }
            if str_list(&c["args"]) != ["serve"] && str_list(&c["command"]) != ["serve"] {
                v.push("api container must run `serve`".into());
            }
            let port_8000 = c["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["containerPort"] == 8000);
            if !port_8000 {
                v.push("api container must expose containerPort 8000".into());
            }
            for (probe, path) in [
                ("readinessProbe", "/health/ready"),
                ("livenessProbe", "/health"),
            ] {
                let p = &c[probe]["httpGet"];
                let port_ok = p["port"] == 8000 || p["port"] == "http";
                if p["path"] != path || !port_ok {
                    v.push(format!("api {probe} must GET {path} on port 8000 (is {p})"));
                }
            }
            for var in ["DATABASE_URL_FILE", "REDIS_URL_FILE", "JWT_SECRET_KEY_FILE"] {
                if !env_names(c).contains(var) {
                    v.push(format!("api container: {var} missing"));
                }
            }
            let replicas = dep["spec"]["replicas"].as_i64().unwrap_or(0);
            match find(docs, "HorizontalPodAutoscaler", "ghostworks-api") {
                None => v.push("HorizontalPodAutoscaler ghostworks-api missing".into()),
                Some(hpa) => {
                    let min = hpa["spec"]["minReplicas"].as_i64().unwrap_or(1);
                    let max = hpa["spec"]["maxReplicas"].as_i64().unwrap_or(0);
                    if hpa["spec"]["scaleTargetRef"]["name"] != "ghostworks-api" {
                        v.push("HPA must target Deployment ghostworks-api".into());
                    }
                    let cpu = hpa["spec"]["metrics"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu");
                    if !cpu {
                        v.push("HPA must scale on CPU".into());
                    }
                    if !(min <= replicas && replicas <= max) {
                        v.push(format!(
                            "replicas {replicas} outside the HPA range {min}..={max}"
                        ));
                    }
                }
            }
        }
    }

    // The migrate Job.
    match find(docs, "Job", "ghostworks-migrate") {
        None => v.push("Job ghostworks-migrate missing".into()),
        Some(job) => {
            let pod = &job["spec"]["template"]["spec"];
            pod_rules("Job ghostworks-migrate", pod, &mut v);
            let c = &pod["containers"][0];
            if str_list(&c["args"]) != ["migrate"] && str_list(&c["command"]) != ["migrate"] {
                v.push("migrate container must run `migrate`".into());
            }
            if !env_names(c).contains("DATABASE_ADMIN_URL_FILE")
                && !env_from_secret(c, "DATABASE_ADMIN_URL")
            {
                v.push("migrate: DATABASE_ADMIN_URL(_FILE) must come from a Secret".into());
            }
            if pod["restartPolicy"] != "Never" && pod["restartPolicy"] != "OnFailure" {
                v.push("migrate Job: restartPolicy must be Never or OnFailure".into());
            }
            if c["image"].as_str().unwrap_or("") != image {
                v.push("migrate Job and api Deployment must use the same image".into());
            }
        }
    }

    // The worker Deployment.
    match find(docs, "Deployment", "ghostworks-worker") {
        None => v.push("Deployment ghostworks-worker missing".into()),
        Some(dep) => worker_k8s_rules(docs, dep, &image, &mut v),
    }

    // The web Deployment.
    match find(docs, "Deployment", "ghostworks-web") {
        None => v.push("Deployment ghostworks-web missing".into()),
        Some(dep) => web_k8s_rules(docs, dep, &image, &mut v),
    }

    // Service, Ingress (no /metrics), PodDisruptionBudget.
    if find(docs, "Service", "ghostworks-api").is_none() {
        v.push("Service ghostworks-api missing".into());
    }
    match find(docs, "Ingress", "ghostworks-api") {
        None => v.push("Ingress ghostworks-api missing".into()),
        Some(ing) => {
            for rule in ing["spec"]["rules"].as_array().into_iter().flatten() {
                for p in rule["http"]["paths"].as_array().into_iter().flatten() {
                    let path = p["path"].as_str().unwrap_or("");
                    if path.starts_with("/metrics") || (path == "/" && p["pathType"] == "Prefix") {
                        v.push(format!(
                            "Ingress exposes {path} ({}): /metrics must stay internal",
                            p["pathType"]
                        ));
                    }
                }
            }
            if ing["spec"]["tls"].as_array().is_none_or(|t| t.is_empty()) {
                v.push("Ingress must terminate TLS".into());
            }
        }
    }
    for component in ["api", "worker", "web"] {
        let labels = pod_labels(docs, component);
        let covered = of_kind(docs, "PodDisruptionBudget")
            .any(|pdb| !labels.is_empty() && selects(&pdb["spec"]["selector"], &labels));
        if !covered {
            v.push(format!(
                "PodDisruptionBudget missing for the {component} pods"
            ));
        }
    }

    network_policy_rules(docs, &mut v);
    (ns, image, v)
}

/// The pod template labels of the Deployment/Job whose pods have this component label.
fn pod_labels(docs: &[Value], component: &str) -> BTreeMap<String, String> {
    docs.iter()
        .filter(|d| d["kind"] == "Deployment" || d["kind"] == "Job")
        .map(|d| &d["spec"]["template"]["metadata"]["labels"])
        .find(|l| l["app.kubernetes.io/component"] == component)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a label selector (matchLabels and matchExpressions) matches `labels`.
fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, want)| labels.get(k).map(String::as_str) == want.as_str());
    let exprs_ok = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap_or("");
            let values = str_list(&e["values"]);
            let have = labels.get(key);
            match e["operator"].as_str() {
                Some("In") => have.is_some_and(|h| values.contains(&h.as_str())),
                Some("NotIn") => have.is_none_or(|h| !values.contains(&h.as_str())),
                Some("Exists") => have.is_some(),
                Some("DoesNotExist") => have.is_none(),
                _ => false,
            }
        });
    labels_ok && exprs_ok
}

fn probe_port_is(probe: &Value, port: u64, name: &str) -> bool {
    ["httpGet", "tcpSocket", "grpc"]
        .iter()
        .map(|k| &probe[*k]["port"])
        .any(|p| p.as_u64() == Some(port) || p.as_str() == Some(name))
}

/// The worker: same image, `worker`, probes on its own port, time for the jobs in flight, its
/// own Secret with its own login and the SMTP relay and nothing of the API's, reachable by no
/// routed Service.
fn worker_k8s_rules(docs: &[Value], dep: &Value, api_image: &str, v: &mut Vec<String>) {
    let pod = &dep["spec"]["template"]["spec"];
    pod_rules("Deployment ghostworks-worker", pod, v);
    let c = &pod["containers"][0];
    if c["image"].as_str().unwrap_or("") != api_image {
        v.push("worker Deployment and api Deployment must use the same image".into());
    }
    if str_list(&c["args"]) != ["worker"] && str_list(&c["command"]) != ["worker"] {
        v.push("worker container must run `worker`".into());
    }
    let port_8001 = c["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["containerPort"] == 8001);
    if !port_8001 {
        v.push("worker container must declare containerPort 8001 (metrics, health)".into());
    }
    let ready = &c["readinessProbe"]["httpGet"];
    if ready["path"] != "/health" || !(ready["port"] == 8001 || ready["port"] == "metrics") {
        v.push(format!(
            "worker readinessProbe must GET /health on port 8001 (is {ready})"
        ));
    }
    if !probe_port_is(&c["livenessProbe"], 8001, "metrics") {
        v.push("worker livenessProbe must probe port 8001".into());
    }
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    if grace < WORKER_MIN_GRACE_SECONDS {
        v.push(format!(
            "worker terminationGracePeriodSeconds must be at least {WORKER_MIN_GRACE_SECONDS} (is {grace}): SIGTERM lets jobs in flight finish"
        ));
    }
    let names = env_names(c);
    for var in ["DATABASE_URL_FILE", "SMTP_URL_FILE"] {
        if !names.contains(var) {
            v.push(format!("worker container: {var} missing"));
        }
    }
    for var in NOT_FOR_THE_WORKER {
        let file = format!("{var}_FILE");
        if names.contains(var) || names.contains(file.as_str()) {
            v.push(format!(
                "worker container: {var} is set; the worker must not get the API's secrets"
            ));
        }
    }
    // Its Secret volumes are not those of the api or the migrate Job.
    let secret_names = |pod: &Value| -> BTreeSet<String> {
        pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|vol| vol["secret"]["secretName"].as_str().map(str::to_owned))
            .collect()
    };
    let mine = secret_names(pod);
    for (kind, name) in [
        ("Deployment", "ghostworks-api"),
        ("Job", "ghostworks-migrate"),
    ] {
        if let Some(other) = find(docs, kind, name) {
            for shared in mine.intersection(&secret_names(&other["spec"]["template"]["spec"])) {
                v.push(format!(
                    "worker mounts Secret {shared}, which {kind} {name} uses; the worker gets its own"
                ));
            }
        }
    }
    if dep["spec"]["replicas"].as_i64().unwrap_or(1) < 1 {
        v.push("worker replicas must be at least 1".into());
    }
    // Nothing routes to the worker: at most a headless Service (metrics discovery).
    let labels = pod_labels(docs, "worker");
    for svc in of_kind(docs, "Service") {
        let sel = serde_json::json!({ "matchLabels": svc["spec"]["selector"] });
        if svc["spec"]["selector"].is_object()
            && selects(&sel, &labels)
            && svc["spec"]["clusterIP"] != "None"
        {
            v.push(format!(
                "Service {} routes to the worker pods; only a headless (clusterIP: None) metrics Service may select them",
                svc["metadata"]["name"]
            ));
        }
    }
}

/// A network peer naming this namespace's web pods.
fn is_web_pods(peer: &Value) -> bool {
    peer["namespaceSelector"].is_null()
        && peer["ipBlock"].is_null()
        && peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "web"
        && peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "ghostworks"
}

/// The ConfigMap key a container's TRUSTED_PROXIES comes from, if it comes from one.
fn trusted_proxies_key(container: &Value) -> Option<&str> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "TRUSTED_PROXIES")
        .and_then(|e| e["valueFrom"]["configMapKeyRef"]["key"].as_str())
}

/// The web app: same image, `web` on port 3000, ready when the API is, no Secret at all (its
/// sessions are the API's tokens), its own TRUSTED_PROXIES (not the api's), a routed Service.
fn web_k8s_rules(docs: &[Value], dep: &Value, api_image: &str, v: &mut Vec<String>) {
    let pod = &dep["spec"]["template"]["spec"];
    pod_rules("Deployment ghostworks-web", pod, v);
    let c = &pod["containers"][0];
    if c["image"].as_str().unwrap_or("") != api_image {
        v.push("web Deployment and api Deployment must use the same image".into());
    }
    if str_list(&c["args"]) != ["web"] && str_list(&c["command"]) != ["web"] {
        v.push("web container must run `web`".into());
    }
    let ready = &c["readinessProbe"]["httpGet"];
    if ready["path"] != "/health/ready" || !(ready["port"] == 3000 || ready["port"] == "http") {
        v.push(format!(
            "web readinessProbe must GET /health/ready on port 3000 (is {ready})"
        ));
    }
    if !probe_port_is(&c["livenessProbe"], 3000, "http") {
        v.push("web livenessProbe must probe port 3000".into());
    }
    let secret_volume = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|vol| vol["secret"].is_object());
    let names = env_names(c);
    let secret_var = SECRET_VARS
        .iter()
        .any(|var| names.contains(var) || names.contains(format!("{var}_FILE").as_str()));
    if secret_volume || secret_var {
        v.push("web pods must get no Secret: the app holds no key of its own".into());
    }
    let api_key = find(docs, "Deployment", "ghostworks-api")
        .and_then(|api| trusted_proxies_key(&api["spec"]["template"]["spec"]["containers"][0]));
    match (trusted_proxies_key(c), api_key) {
        (Some(web), Some(api)) if web != api => {}
        (web, api) => v.push(format!(
            "TRUSTED_PROXIES must be per role, each from its own ConfigMap key (web {web:?}, api {api:?})"
        )),
    }
    let routed = of_kind(docs, "Service").any(|svc| {
        let sel = serde_json::json!({ "matchLabels": svc["spec"]["selector"] });
        svc["spec"]["selector"].is_object() && selects(&sel, &pod_labels(docs, "web"))
    });
    if !routed {
        v.push("no Service selects the web pods".into());
    }
}

fn env_names(container: &Value) -> BTreeSet<&str> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str())
        .collect()
}

fn env_from_secret(container: &Value, var: &str) -> bool {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["name"] == var && e["valueFrom"]["secretKeyRef"]["name"].is_string())
}

/// Pod-level and container-level hardening shared by every Ghostworks pod.
fn pod_rules(what: &str, pod: &Value, v: &mut Vec<String>) {
    let psc = &pod["securityContext"];
    if psc["runAsNonRoot"] != true {
        v.push(format!("{what}: pod runAsNonRoot must be true"));
    }
    if psc["runAsUser"] != 1001 || psc["runAsGroup"] != 1001 {
        v.push(format!("{what}: pod must run as uid/gid 1001"));
    }
    if pod["automountServiceAccountToken"] != false {
        v.push(format!(
            "{what}: automountServiceAccountToken must be false"
        ));
    }
    let volumes: BTreeMap<&str, &Value> = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|vol| vol["name"].as_str().map(|n| (n, vol)))
        .collect();
    let containers = pod["containers"].as_array().cloned().unwrap_or_default();
    if containers.is_empty() {
        v.push(format!("{what}: no containers"));
    }
    let init = pod["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for c in containers.iter().chain(init.iter()) {
        let cname = format!("{what} container {}", c["name"]);
        let sc = &c["securityContext"];
        let seccomp = sc["seccompProfile"]["type"]
            .as_str()
            .or(psc["seccompProfile"]["type"].as_str());
        if seccomp != Some("RuntimeDefault") {
            v.push(format!("{cname}: seccompProfile must be RuntimeDefault"));
        }
        if sc["readOnlyRootFilesystem"] != true {
            v.push(format!("{cname}: readOnlyRootFilesystem must be true"));
        }
        if sc["allowPrivilegeEscalation"] != false {
            v.push(format!("{cname}: allowPrivilegeEscalation must be false"));
        }
        if sc["privileged"] == true {
            v.push(format!("{cname}: must not be privileged"));
        }
        if !str_list(&sc["capabilities"]["drop"]).contains(&"ALL") {
            v.push(format!("{cname}: capabilities.drop must contain ALL"));
        }
        if !str_list(&sc["capabilities"]["add"]).is_empty() {
            v.push(format!("{cname}: must not add capabilities"));
        }
        for (k, r) in [
            ("requests", "cpu"),
            ("requests", "memory"),
            ("limits", "memory"),
        ] {
            if c["resources"][k][r].is_null() {
                v.push(format!("{cname}: resources.{k}.{r} missing"));
            }
        }
        // /tmp is a writable emptyDir (the root filesystem is read-only).
        let tmp = c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["mountPath"] == "/tmp");
        let tmp_is_empty_dir = tmp
            .and_then(|m| m["name"].as_str())
            .and_then(|n| volumes.get(n))
            .is_some_and(|vol| vol["emptyDir"].is_object());
        if !tmp_is_empty_dir {
            v.push(format!("{cname}: /tmp must be an emptyDir volume"));
        }
        // Secrets: never inline; *_FILE must point into a mounted Secret volume.
        for e in c["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap_or("");
            if SECRET_VARS.contains(&name) && e.get("value").is_some() {
                v.push(format!("{cname}: {name} has an inline value"));
            }
            if let (Some(base), Some(path)) = (name.strip_suffix("_FILE"), e["value"].as_str()) {
                if SECRET_VARS.contains(&base) && !path_in_secret_mount(c, &volumes, path) {
                    v.push(format!(
                        "{cname}: {name}={path} is not inside a mounted Secret"
                    ));
                }
            }
        }
        for ef in c["envFrom"].as_array().into_iter().flatten() {
            if ef["secretRef"].is_object() && ef["secretRef"]["name"].as_str().is_none() {
                v.push(format!("{cname}: envFrom secretRef without a name"));
            }
        }
    }
}

fn path_in_secret_mount(c: &Value, volumes: &BTreeMap<&str, &Value>, path: &str) -> bool {
    c["volumeMounts"].as_array().into_iter().flatten().any(|m| {
        let mount = m["mountPath"].as_str().unwrap_or("\0");
        let inside = Path::new(path).starts_with(mount);
        let secret = m["name"]
            .as_str()
            .and_then(|n| volumes.get(n))
            .is_some_and(|vol| vol["secret"]["secretName"].is_string());
        inside && secret && m["readOnly"] == true
    })
}

const SMTP_SUBMISSION: i64 = 587;
const SMTPS: i64 = 465;

/// The egress ports the policies open for the pods with this component label.
fn egress_ports_for(docs: &[Value], component: &str) -> BTreeSet<i64> {
    let labels = pod_labels(docs, component);
    let mut ports = BTreeSet::new();
    if labels.is_empty() {
        return ports;
    }
    for p in of_kind(docs, "NetworkPolicy") {
        if !selects(&p["spec"]["podSelector"], &labels) {
            continue;
        }
        for rule in p["spec"]["egress"].as_array().into_iter().flatten() {
            ports.extend(
                rule["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|pt| pt["port"].as_i64()),
            );
        }
    }
    ports
}

fn network_policy_rules(docs: &[Value], v: &mut Vec<String>) {
    let policies: Vec<&Value> = of_kind(docs, "NetworkPolicy").collect();
    if policies.is_empty() {
        v.push("no NetworkPolicy".into());
        return;
    }
    let types = |p: &Value| -> BTreeSet<String> {
        str_list(&p["spec"]["policyTypes"])
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    let default_deny = policies.iter().any(|p| {
        p["spec"]["podSelector"]
            .as_object()
            .is_some_and(|m| m.is_empty())
            && types(p).contains("Ingress")
            && types(p).contains("Egress")
            && p["spec"]["ingress"].is_null()
            && p["spec"]["egress"].is_null()
    });
    if !default_deny {
        v.push("NetworkPolicy: a default-deny policy (podSelector {}, Ingress+Egress, no rules) is required".into());
    }

    // Ingress rules: only from the ingress controller's namespace.
    let mut api_ingress = false;
    for p in &policies {
        for rule in p["spec"]["ingress"].as_array().into_iter().flatten() {
            let peers = rule["from"].as_array().cloned().unwrap_or_default();
            if peers.is_empty() {
                v.push(format!(
                    "NetworkPolicy {}: ingress rule open to every source",
                    p["metadata"]["name"]
                ));
            }
            for peer in &peers {
                let controller = peer["namespaceSelector"].is_object() && peer["ipBlock"].is_null();
                if !controller && !is_web_pods(peer) {
                    v.push(format!(
                        "NetworkPolicy {}: ingress only from a namespace selector (ingress controller) or the web pods",
                        p["metadata"]["name"]
                    ));
                }
            }
            let port_8000 = rule["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|pt| pt["port"] == 8000);
            api_ingress |= port_8000 && !peers.is_empty();
        }
    }
    if !api_ingress {
        v.push("NetworkPolicy: no ingress rule admits the ingress controller on 8000".into());
    }

    // Egress: the datastore ports (plus DNS), nothing open-ended.
    let mut egress_ports = BTreeSet::new();
    for p in &policies {
        for rule in p["spec"]["egress"].as_array().into_iter().flatten() {
            let ports: Vec<i64> = rule["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|pt| pt["port"].as_i64())
                .collect();
            if ports.is_empty() || rule["to"].as_array().is_none_or(|t| t.is_empty()) {
                v.push(format!(
                    "NetworkPolicy {}: egress rule without explicit peers and ports",
                    p["metadata"]["name"]
                ));
            }
            let to_api = rule["to"].as_array().is_some_and(|t| {
                t.iter().all(|peer| {
                    let only_api = |sel: &Value| {
                        selects(sel, &pod_labels(docs, "api"))
                            && ["web", "worker", "migrate"]
                                .iter()
                                .all(|other| !selects(sel, &pod_labels(docs, other)))
                    };
                    peer["namespaceSelector"].is_null() && only_api(&peer["podSelector"])
                })
            });
            if ports.contains(&8000) && !to_api {
                v.push(format!(
                    "NetworkPolicy {}: egress to 8000 must name the api pods only",
                    p["metadata"]["name"]
                ));
            }
            for peer in rule["to"].as_array().into_iter().flatten() {
                if peer["ipBlock"]["cidr"] == "0.0.0.0/0" {
                    v.push(format!(
                        "NetworkPolicy {}: egress to 0.0.0.0/0",
                        p["metadata"]["name"]
                    ));
                }
            }
            egress_ports.extend(ports);
        }
    }
    for port in [5432, 6379] {
        if !egress_ports.contains(&port) {
            v.push(format!("NetworkPolicy: no egress rule for port {port}"));
        }
    }
    let unexpected: Vec<_> = egress_ports
        .iter()
        .filter(|p| ![53, 5432, 6379, SMTP_SUBMISSION, SMTPS, 8000].contains(*p))
        .collect();
    if !unexpected.is_empty() {
        v.push(format!(
            "NetworkPolicy: unexpected egress ports {unexpected:?}"
        ));
    }

    // Per component: the worker reaches PostgreSQL and the mail relay, never Redis; only the
    // worker reaches the mail relay; the worker admits no ingress.
    let worker = egress_ports_for(docs, "worker");
    if !pod_labels(docs, "worker").is_empty() {
        if !worker.contains(&5432) {
            v.push("NetworkPolicy: no egress rule lets the worker reach PostgreSQL (5432)".into());
        }
        if !worker.contains(&SMTP_SUBMISSION) && !worker.contains(&SMTPS) {
            v.push(
                "NetworkPolicy: no egress rule lets the worker reach the SMTP relay (587 or 465)"
                    .into(),
            );
        }
        if worker.contains(&6379) {
            v.push("NetworkPolicy: the worker may reach Redis (6379); it uses none".into());
        }
        let labels = pod_labels(docs, "worker");
        for p in &policies {
            if p["spec"]["ingress"].is_array() && selects(&p["spec"]["podSelector"], &labels) {
                v.push(format!(
                    "NetworkPolicy {}: admits ingress to the worker pods",
                    p["metadata"]["name"]
                ));
            }
        }
    }
    // The web app reaches the api and DNS only: no datastore, no mail relay.
    let web: BTreeSet<i64> = egress_ports_for(docs, "web");
    if !pod_labels(docs, "web").is_empty() && !web.contains(&8000) {
        v.push("NetworkPolicy: no egress rule lets the web pods reach the api (8000)".into());
    }
    let web_extra: Vec<_> = web.iter().filter(|p| ![53, 8000].contains(*p)).collect();
    if !web_extra.is_empty() {
        v.push(format!(
            "NetworkPolicy: the web pods may reach {web_extra:?}; they need the api and DNS only"
        ));
    }
    for component in ["api", "migrate"] {
        let ports = egress_ports_for(docs, component);
        if ports.contains(&SMTP_SUBMISSION) || ports.contains(&SMTPS) {
            v.push(format!(
                "NetworkPolicy: the {component} pods may reach SMTP; only the worker sends mail"
            ));
        }
    }
}

/// The Ingress lists the web app's pages one by one (a catch-all `/` would publish /metrics):
/// every first path segment the web router serves is routed to the web Service, except the
/// in-cluster probes and metrics, and nothing else is.
#[test]
fn k8s_ingress_routes_every_web_page_and_only_those() {
    let root = repo_root();
    let router = std::fs::read_to_string(root.join("crates/web/src/lib.rs")).unwrap();
    let mut served: BTreeSet<String> = router
        .split('"')
        .filter(|s| s.starts_with('/') && !s.starts_with("//"))
        .map(|s| match s[1..].split('/').next() {
            Some("") | None => "/".to_string(),
            Some(first) => format!("/{first}"),
        })
        .collect();
    assert!(
        served.len() > 5,
        "no routes found in the web router: {served:?}"
    );
    served.retain(|p| p != "/health" && p != "/metrics");
    let ingress = std::fs::read_to_string(root.join("deploy/k8s/base/ingress.yaml")).unwrap();
    let docs = yaml_docs(&ingress).unwrap();
    let routed: BTreeSet<String> = docs[0]["spec"]["rules"][0]["http"]["paths"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["backend"]["service"]["name"] == "ghostworks-web")
        .filter_map(|p| p["path"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        routed, served,
        "deploy/k8s/base/ingress.yaml (web Service paths) vs crates/web/src/lib.rs routes"
    );
}

#[test]
fn k8s_example_secret_is_not_rendered() {
    let root = repo_root();
    let base = std::fs::read_to_string(root.join("deploy/k8s/base/kustomization.yaml")).unwrap();
    let kust = yaml_docs(&base).unwrap();
    let resources = str_list(&kust[0]["resources"]);
    assert!(
        !resources.iter().any(|r| r.contains("secret")),
        "base kustomization must not include Secret manifests: {resources:?}"
    );
    for overlay in OVERLAYS {
        let path = root.join(format!("deploy/k8s/overlays/{overlay}/kustomization.yaml"));
        let k = yaml_docs(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(
            k[0]["secretGenerator"].is_null(),
            "overlay {overlay}: secretGenerator would render Secret data"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Prometheus and Grafana

/// Scrape job and compose target of every Ghostworks role Compose runs.
/// Job, the network alias every container of the role has (whatever its deploy colour), port.
const SCRAPED_ROLES: &[(&str, &str, u64)] = &[
    ("ghostworks-api", "ghostworks-api", 8000),
    ("ghostworks-worker", "ghostworks-worker", 8001),
    ("ghostworks-web", "ghostworks-web", 3000),
];

#[test]
fn prometheus_config_and_rules() {
    let root = repo_root();
    let promtool = require_tool("promtool");
    run_ok(
        Command::new(&promtool).current_dir(&root).args([
            "check",
            "config",
            "deploy/prometheus/prometheus.yml",
        ]),
        "promtool check config",
    );
    let rule_files = files_under(&root.join("deploy/prometheus/rules"), &|n| {
        n.ends_with(".yml") || n.ends_with(".yaml")
    });
    let (tests, rules): (Vec<PathBuf>, Vec<PathBuf>) = rule_files.into_iter().partition(|p| {
        p.file_stem()
            .and_then(|s| s.to_str())
            .is_some_and(|s| s.ends_with("_test"))
    });
    assert!(
        !rules.is_empty(),
        "no alerting/recording rules under deploy/prometheus/rules"
    );
    assert!(
        !tests.is_empty(),
        "no promtool rule tests (*_test.yml) under deploy/prometheus/rules"
    );
    run_ok(
        Command::new(&promtool)
            .current_dir(&root)
            .args(["check", "rules"])
            .args(&rules),
        "promtool check rules",
    );
    // Every Ghostworks role is scraped where the stack runs it (the live check of the
    // metrics these jobs serve is crates/ghostworks/tests/observability.rs).
    let config =
        yaml_docs(&std::fs::read_to_string(root.join("deploy/prometheus/prometheus.yml")).unwrap())
            .unwrap();
    let mut v = Vec::new();
    for (job, alias, port) in SCRAPED_ROLES {
        let scrape = config[0]["scrape_configs"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["job_name"] == *job);
        let Some(scrape) = scrape else {
            v.push(format!("prometheus.yml does not scrape job {job}"));
            continue;
        };
        let found = scrape["dns_sd_configs"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| str_list(&c["names"]).contains(alias) && c["port"].as_u64() == Some(*port));
        if !found {
            v.push(format!(
                "job {job} must find its targets by DNS: names [{alias}], type A, port {port}"
            ));
        }
        if scrape["metrics_path"].as_str().unwrap_or("/metrics") != "/metrics" {
            v.push(format!("job {job} must scrape /metrics"));
        }
    }
    assert_no_violations("prometheus.yml", &v);
    run_ok(
        Command::new(&promtool)
            .current_dir(&root)
            .args(["test", "rules"])
            .args(&tests),
        "promtool test rules",
    );
}

#[test]
fn grafana_dashboards_use_provisioned_datasources() {
    let root = repo_root();
    let mut provisioned = BTreeSet::new();
    let ds_files = files_under(
        &root.join("deploy/grafana/provisioning/datasources"),
        &|n| n.ends_with(".yml") || n.ends_with(".yaml"),
    );
    for f in &ds_files {
        for doc in yaml_docs(&std::fs::read_to_string(f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        {
            for ds in doc["datasources"].as_array().into_iter().flatten() {
                for key in ["name", "uid"] {
                    if let Some(s) = ds[key].as_str() {
                        provisioned.insert(s.to_string());
                    }
                }
            }
        }
    }
    assert!(!provisioned.is_empty(), "no provisioned Grafana datasource");

    let dashboards = files_under(&root.join("deploy/grafana/dashboards"), &|n| {
        n.ends_with(".json")
    });
    assert!(!dashboards.is_empty(), "no Grafana dashboard JSON");
    let mut v = Vec::new();
    for f in &dashboards {
        let name = f.strip_prefix(&root).unwrap().display().to_string();
        let dash: Value = match serde_json::from_str(&std::fs::read_to_string(f).unwrap()) {
            Ok(d) => d,
            Err(e) => {
                v.push(format!("{name}: not valid JSON: {e}"));
                continue;
            }
        };
        for key in ["uid", "title"] {
            if !dash[key].is_string() {
                v.push(format!("{name}: {key} missing"));
            }
        }
        let mut refs = Vec::new();
        collect_datasources(&dash, &mut refs);
        let mut uses_provisioned = false;
        for r in refs {
            let id = match r {
                Value::String(s) => Some(s.as_str()),
                Value::Object(_) => r["uid"].as_str(),
                _ => None,
            };
            match id {
                // Grafana's built-in annotation source and the mixed pseudo-source.
                Some("-- Grafana --") | Some("grafana") | Some("-- Mixed --") => {}
                Some(s) if provisioned.contains(s) => uses_provisioned = true,
                Some(s) => v.push(format!(
                    "{name}: datasource {s:?} is not provisioned ({provisioned:?})"
                )),
                None if r["type"] == "grafana" => {}
                None => v.push(format!("{name}: datasource reference without uid: {r}")),
            }
        }
        if !uses_provisioned {
            v.push(format!("{name}: names no provisioned datasource"));
        }
        v.extend(dashboard_layout(&name, &dash));
    }
    assert_no_violations("grafana dashboards", &v);
}

/// The collector's own `validate` command is not packaged for Debian, PyPI or npm, so this
/// checks what it would: OTLP on the ports the roles export to, and every pipeline built from
/// components the file defines.
fn otelcol_violations(config: &Value) -> Vec<String> {
    let mut v = Vec::new();
    let protocols = &config["receivers"]["otlp"]["protocols"];
    for (proto, port) in [("grpc", ":4317"), ("http", ":4318")] {
        let endpoint = protocols[proto]["endpoint"].as_str().unwrap_or("");
        if !endpoint.ends_with(port) {
            v.push(format!(
                "receivers.otlp.protocols.{proto}.endpoint must listen on {port} (is {endpoint:?})"
            ));
        }
    }
    let service = &config["service"];
    for ext in str_list(&service["extensions"]) {
        if config["extensions"][ext].is_null() {
            v.push(format!(
                "service.extensions names undefined extension {ext}"
            ));
        }
    }
    let pipelines = service["pipelines"].as_object();
    if pipelines.is_none_or(|p| p.is_empty()) {
        v.push("service.pipelines is empty".into());
    }
    for (name, pipeline) in pipelines.into_iter().flatten() {
        for kind in ["receivers", "processors", "exporters"] {
            let used = str_list(&pipeline[kind]);
            if kind != "processors" && used.is_empty() {
                v.push(format!("pipeline {name} has no {kind}"));
            }
            for component in used {
                if config[kind][component].is_null() {
                    v.push(format!(
                        "pipeline {name}: {kind} {component} is not defined"
                    ));
                }
            }
        }
    }
    v
}

#[test]
fn otelcol_config_receives_otlp_and_wires_every_pipeline() {
    let text = std::fs::read_to_string(repo_root().join("deploy/otelcol/config.yaml")).unwrap();
    let config = yaml_docs(&text).expect("deploy/otelcol/config.yaml is YAML");
    assert_eq!(config.len(), 1, "one YAML document");
    assert_no_violations(
        "deploy/otelcol/config.yaml",
        &otelcol_violations(&config[0]),
    );

    let mut broken = config[0].clone();
    broken["receivers"]["otlp"]["protocols"]["http"]["endpoint"] = "0.0.0.0:55681".into();
    broken["service"]["pipelines"]["traces"]["exporters"] = serde_json::json!(["otlp/tempo"]);
    broken["service"]["extensions"] = serde_json::json!(["pprof"]);
    let v = otelcol_violations(&broken);
    assert_eq!(v.len(), 3, "{v:#?}");
    assert_flags(&v, "protocols.http.endpoint must listen on :4318");
    assert_flags(&v, "pipeline traces: exporters otlp/tempo is not defined");
    assert_flags(&v, "undefined extension pprof");
}

/// Every panel sits on the 24-column grid with an id of its own.
fn dashboard_layout(name: &str, dash: &Value) -> Vec<String> {
    let mut v = Vec::new();
    let mut ids = BTreeSet::new();
    for panel in dash["panels"].as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or("?");
        if let Some(id) = panel["id"].as_i64() {
            if !ids.insert(id) {
                v.push(format!("{name}: panel id {id} is used twice"));
            }
        }
        let gp = &panel["gridPos"];
        let field = |k: &str| gp[k].as_u64();
        match (field("x"), field("y"), field("w"), field("h")) {
            (Some(x), Some(_), Some(w), Some(h)) if w >= 1 && h >= 1 && x + w <= 24 => {}
            _ => v.push(format!(
                "{name}: panel {title:?}: gridPos must hold integers x, y, w, h with 1 <= w, x + w <= 24 (is {gp})"
            )),
        }
    }
    v
}

#[test]
fn dashboard_rules_reject_broken_panels_and_unknown_metrics() {
    // What a scrape of each role serves (the live scrape is in crates/ghostworks/tests).
    let exported = ExportedMetrics::from_scrapes([
        (
            "ghostworks-worker",
            "# TYPE ghostworks_jobs gauge\nghostworks_jobs{kind=\"k\",status=\"queued\"} 1\n",
        ),
        (
            "ghostworks-api",
            "# TYPE http_requests_total counter\nhttp_requests_total{method=\"GET\"} 1\n",
        ),
    ]);
    let dash = serde_json::json!({"panels": [
        {"id": 1, "title": "ok", "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8},
         "targets": [{"expr": "sum(max by (kind) (ghostworks_jobs{job=\"ghostworks-worker\",status=\"queued\"}))"}]},
        {"id": 2, "title": "broken grid", "gridPos": {"x": 6, "y": 0, "w": {"mode": "absolute"}, "h": "text"},
         "targets": []},
        {"id": 2, "title": "made-up metric", "gridPos": {"x": 12, "y": 0, "w": 12, "h": 8},
         "targets": [{"expr": "max(ghostworks_jobs_queue_depth{job=\"ghostworks-worker\"})"}]},
        {"id": 4, "title": "wrong job", "gridPos": {"x": 0, "y": 8, "w": 24, "h": 8},
         "targets": [{"expr": "rate(http_requests_total{job=\"ghostworks-worker\"}[5m])"}]},
        {"id": 5, "title": "row", "type": "row", "gridPos": {"x": 0, "y": 16, "w": 24, "h": 1},
         "panels": [{"title": "nested", "targets": [{"expr": "sum(rate(artifacts_created_total[5m]))"}]}]}
    ]});
    let layout = dashboard_layout("test.json", &dash);
    assert_eq!(layout.len(), 2, "{layout:#?}");
    assert_flags(&layout, "panel \"broken grid\": gridPos must hold integers");
    assert_flags(&layout, "panel id 2 is used twice");
    let metrics: Vec<String> = dashboard_queries(&dash)
        .iter()
        .flat_map(|(title, expr)| {
            exported
                .violations(expr)
                .into_iter()
                .map(move |e| format!("{title}: {e}"))
        })
        .collect();
    assert_eq!(metrics.len(), 3, "{metrics:#?}");
    assert_flags(
        &metrics,
        "made-up metric: metric ghostworks_jobs_queue_depth is not exported by job ghostworks-worker",
    );
    assert_flags(
        &metrics,
        "wrong job: metric http_requests_total is not exported by job ghostworks-worker",
    );
    assert_flags(
        &metrics,
        "nested: metric artifacts_created_total is exported by no job",
    );
}

fn collect_datasources<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                if k == "datasource" && !val.is_null() {
                    out.push(val);
                } else {
                    collect_datasources(val, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_datasources(x, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// The rules themselves catch what they are meant to catch (mutated real inputs).

fn assert_flags(violations: &[String], needle: &str) {
    assert!(
        violations.iter().any(|v| v.contains(needle)),
        "expected a violation containing {needle:?}, got {violations:#?}"
    );
}

#[test]
fn compose_rules_reject_insecure_production_changes() {
    compose_version_is_v2_or_later();
    let env = ComposeEnv::new();
    let combo = COMBOS.iter().find(|c| c.label == "production").unwrap();
    let json = run_ok(
        &mut env.command(combo, &["config", "--format", "json"]),
        "compose production as JSON",
    );
    let clean: Value = serde_json::from_str(&json).unwrap();
    assert_no_violations("unmodified production", &compose_rules(Stack::Prod, &clean));

    let mut m = clean.clone();
    m["services"]["api"]["environment"]["JWT_SECRET_KEY"] = "plaintext".into();
    m["services"]["api"]["read_only"] = false.into();
    m["services"]["api"]["user"] = "0:0".into();
    m["services"]["api"]["cap_drop"] = serde_json::json!([]);
    m["services"]["api"]["depends_on"]["migrate"]["condition"] = "service_started".into();
    m["services"]["migrate"]["security_opt"] = serde_json::json!([]);
    m["services"]["postgres"]["ports"] = serde_json::json!([{"target": 5432, "published": "5432"}]);
    m["services"]["redis"]["networks"]["frontend"] = Value::Null;
    m["services"]["nginx"]["logging"] = serde_json::json!({"driver": "json-file"});
    m["services"]["grafana"]
        .as_object_mut()
        .unwrap()
        .remove("healthcheck");
    m["services"]["prometheus"]
        .as_object_mut()
        .unwrap()
        .remove("restart");
    m["services"]["grafana"]["cap_drop"] = serde_json::json!([]);
    let w = &mut m["services"]["worker"];
    w["read_only"] = false.into();
    w["user"] = "0:0".into();
    w["cap_drop"] = serde_json::json!([]);
    w["ports"] = serde_json::json!([{"target": 8001, "published": "8001"}]);
    w["environment"]["JWT_SECRET_KEY_FILE"] = "/run/secrets/jwt_secret".into();
    w["environment"]["SMTP_URL"] = "smtp://user:pw@relay.example.com:25".into();
    w["environment"]["DATABASE_URL_FILE"] = "/run/secrets/database_url".into();
    w["secrets"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"source": "jwt_secret", "target": "/run/secrets/jwt_secret"}));
    w["stop_grace_period"] = "10s".into();
    w["depends_on"]["migrate"]["condition"] = "service_started".into();
    w["networks"]["frontend"] = Value::Null;
    w["healthcheck"]["test"] =
        serde_json::json!(["CMD", "/usr/local/bin/ghostworks", "healthcheck"]);
    let web = &mut m["services"]["web"];
    web["read_only"] = false.into();
    web["user"] = "0:0".into();
    web["environment"]["JWT_SECRET_KEY_FILE"] = "/run/secrets/jwt_secret".into();
    web["secrets"] =
        serde_json::json!([{"source": "jwt_secret", "target": "/run/secrets/jwt_secret"}]);
    web["networks"]["backend"] = Value::Null;
    web["networks"]["frontend"]["aliases"] = serde_json::json!([]);
    web["depends_on"]["api"]["condition"] = "service_started".into();
    let v = compose_rules(Stack::Prod, &m);
    for needle in [
        "api: JWT_SECRET_KEY is set as a plain value",
        "api: read_only must be true",
        "api: user must be",
        "api: cap_drop must contain ALL",
        "api: depends_on migrate must have condition service_completed_successfully",
        "migrate: security_opt must contain no-new-privileges",
        "postgres: must not publish ports",
        "redis: network frontend is not internal",
        "nginx: logging must rotate",
        "grafana: long-running service without a healthcheck",
        "prometheus: long-running service without a restart policy",
        "grafana: cap_drop must contain ALL",
        "worker: read_only must be true",
        "worker: user must be",
        "worker: cap_drop must contain ALL",
        "worker: must not publish ports in production",
        "worker: JWT_SECRET_KEY is set; the worker must not get the API's secrets",
        "worker: mounts secret jwt_secret, which the api uses",
        "worker: SMTP_URL is set as a plain value",
        "worker: DATABASE_URL_FILE is the API's login",
        "worker: stop_grace_period must be at least 60s",
        "worker: depends_on migrate must have condition service_completed_successfully",
        "worker: must not be attached to the frontend network",
        "worker: healthcheck must run",
        "web: read_only must be true",
        "web: user must be",
        "web: must mount no secret",
        "web: must be attached to the frontend network only",
        "web: must join the frontend network with the alias ghostworks-web",
        "web: depends_on api must have condition service_healthy",
    ] {
        assert_flags(&v, needle);
    }

    let mut m = clean;
    m["services"]["api"]["depends_on"]["otelcol"]["condition"] = "service_healthy".into();
    assert_flags(
        &compose_rules(Stack::Prod, &m),
        "otelcol: has no healthcheck but another service waits",
    );
}

#[test]
fn compose_durations() {
    assert_eq!(compose_duration_secs("1m30s"), Some(90));
    assert_eq!(compose_duration_secs("90s"), Some(90));
    assert_eq!(compose_duration_secs("2m"), Some(120));
    assert_eq!(compose_duration_secs("1h"), Some(3600));
    assert_eq!(compose_duration_secs("1.5s"), Some(1));
    assert_eq!(compose_duration_secs("soon"), None);
}

#[test]
fn ghostworks_services_are_recognised_by_image_name() {
    let svc = |image: &str| serde_json::json!({ "image": image });
    assert!(is_ghostworks_service(&svc("ghostworks:local")));
    assert!(is_ghostworks_service(&svc(
        "registry.example.com:5000/team/ghostworks:1.2"
    )));
    assert!(is_ghostworks_service(&svc("ghostworks@sha256:abc")));
    assert!(!is_ghostworks_service(&svc(
        "ghostworks/smtp-sink:bookworm"
    )));
    assert!(!is_ghostworks_service(&svc("ghostworks/postgres:15")));
    assert!(is_ghostworks_service(
        &serde_json::json!({"image": "x", "build": {"dockerfile": "deploy/Dockerfile"}})
    ));
}

#[test]
fn k8s_rules_reject_insecure_changes() {
    let docs = yaml_docs(&render_overlay("prod")).unwrap();
    let (_, _, clean) = k8s_rules(&docs);
    assert_no_violations("unmodified prod overlay", &clean);

    let mut docs = docs;
    for d in docs.iter_mut() {
        if d["kind"] == "Deployment" {
            let c = &mut d["spec"]["template"]["spec"]["containers"][0];
            c["securityContext"]["readOnlyRootFilesystem"] = false.into();
            c["securityContext"]["capabilities"]["drop"] = serde_json::json!([]);
            c["readinessProbe"]["httpGet"]["path"] = "/".into();
            c["env"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"name": "JWT_SECRET_KEY", "value": "x"}));
            d["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = 0.into();
        }
        if d["kind"] == "Job" {
            d["spec"]["template"]["spec"]["volumes"] = serde_json::json!([]);
        }
    }
    docs.retain(|d| d["kind"] != "NetworkPolicy" && d["kind"] != "PodDisruptionBudget");
    docs.push(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "leak", "namespace": "ghostworks-prod"},
        "stringData": {"jwt_secret": "x"}
    }));
    let (_, _, v) = k8s_rules(&docs);
    for needle in [
        "PodDisruptionBudget missing for the worker pods",
        "readOnlyRootFilesystem must be true",
        "capabilities.drop must contain ALL",
        "readinessProbe must GET /health/ready",
        "JWT_SECRET_KEY has an inline value",
        "pod must run as uid/gid 1001",
        "Job ghostworks-migrate container \"migrate\": /tmp must be an emptyDir volume",
        "DATABASE_ADMIN_URL_FILE=/run/secrets/ghostworks/database_admin_url is not inside a mounted Secret",
        "no NetworkPolicy",
        "PodDisruptionBudget missing",
        "Secret \"leak\" is rendered with data",
    ] {
        assert_flags(&v, needle);
    }
}

#[test]
fn k8s_rules_reject_insecure_worker_changes() {
    let mut docs = yaml_docs(&render_overlay("prod")).unwrap();
    for d in docs.iter_mut() {
        if d["kind"] == "Deployment" && d["metadata"]["name"] == "ghostworks-worker" {
            let pod = &mut d["spec"]["template"]["spec"];
            pod["terminationGracePeriodSeconds"] = 30.into();
            pod["volumes"][0]["secret"]["secretName"] = "ghostworks-app".into();
            let c = &mut pod["containers"][0];
            c["args"] = serde_json::json!(["serve"]);
            c["image"] = "registry.example.com/ghostworks:other".into();
            c["readinessProbe"] = serde_json::json!({"tcpSocket": {"port": 8000}});
            c["securityContext"]["readOnlyRootFilesystem"] = false.into();
            let env = c["env"].as_array_mut().unwrap();
            env.retain(|e| e["name"] != "SMTP_URL_FILE");
            env.push(serde_json::json!({"name": "JWT_SECRET_KEY_FILE", "value": "/run/secrets/ghostworks/jwt_secret"}));
            env.push(serde_json::json!({"name": "SMTP_URL", "value": "smtps://u:p@relay"}));
        }
        if d["kind"] == "Service" && d["metadata"]["name"] == "ghostworks-worker-metrics" {
            d["spec"].as_object_mut().unwrap().remove("clusterIP");
        }
        if d["kind"] == "NetworkPolicy" && d["metadata"]["name"] == "ghostworks-egress-smtp" {
            // Open the relay to every ghostworks pod, not just the worker.
            d["spec"]["podSelector"] =
                serde_json::json!({"matchLabels": {"app.kubernetes.io/name": "ghostworks"}});
        }
        if d["kind"] == "NetworkPolicy" && d["metadata"]["name"] == "ghostworks-egress-redis" {
            d["spec"]["podSelector"] = serde_json::json!({"matchExpressions": [
                {"key": "app.kubernetes.io/component", "operator": "In", "values": ["api", "worker"]}
            ]});
        }
    }
    let (_, _, v) = k8s_rules(&docs);
    for needle in [
        "worker terminationGracePeriodSeconds must be at least 60",
        "worker mounts Secret ghostworks-app, which Deployment ghostworks-api uses",
        "worker container must run `worker`",
        "worker Deployment and api Deployment must use the same image",
        "worker readinessProbe must GET /health on port 8001",
        "Deployment ghostworks-worker container \"worker\": readOnlyRootFilesystem must be true",
        "worker container: SMTP_URL_FILE missing",
        "worker container: JWT_SECRET_KEY is set",
        "Deployment ghostworks-worker container \"worker\": SMTP_URL has an inline value",
        "Service \"ghostworks-worker-metrics\" routes to the worker pods",
        "NetworkPolicy: the api pods may reach SMTP",
        "NetworkPolicy: the worker may reach Redis (6379)",
    ] {
        assert_flags(&v, needle);
    }

    // Without the SMTP policy the worker cannot send; without the worker's PostgreSQL rule it
    // cannot work at all.
    let mut docs = yaml_docs(&render_overlay("prod")).unwrap();
    docs.retain(|d| d["metadata"]["name"] != "ghostworks-egress-smtp");
    for d in docs.iter_mut() {
        if d["metadata"]["name"] == "ghostworks-egress-postgres" {
            d["spec"]["podSelector"]["matchExpressions"][0]["values"] =
                serde_json::json!(["api", "migrate"]);
        }
    }
    let (_, _, v) = k8s_rules(&docs);
    assert_flags(&v, "no egress rule lets the worker reach the SMTP relay");
    assert_flags(&v, "no egress rule lets the worker reach PostgreSQL");
}

#[test]
fn k8s_rules_reject_insecure_web_changes() {
    let mut docs = yaml_docs(&render_overlay("prod")).unwrap();
    docs.retain(|d| {
        !(d["kind"] == "PodDisruptionBudget" && d["metadata"]["name"] == "ghostworks-web")
    });
    for d in docs.iter_mut() {
        if d["kind"] == "Deployment" && d["metadata"]["name"] == "ghostworks-web" {
            let pod = &mut d["spec"]["template"]["spec"];
            pod["volumes"].as_array_mut().unwrap().push(
                serde_json::json!({"name": "secrets", "secret": {"secretName": "ghostworks-app"}}),
            );
            let c = &mut pod["containers"][0];
            c["args"] = serde_json::json!(["serve"]);
            c["readinessProbe"] =
                serde_json::json!({"httpGet": {"path": "/health/live", "port": "http"}});
            for e in c["env"].as_array_mut().unwrap() {
                if e["name"] == "TRUSTED_PROXIES" {
                    e["valueFrom"]["configMapKeyRef"]["key"] = "API_TRUSTED_PROXIES".into();
                }
            }
        }
        if d["kind"] == "NetworkPolicy" && d["metadata"]["name"] == "ghostworks-egress-redis" {
            d["spec"]["podSelector"] = serde_json::json!({"matchExpressions": [
                {"key": "app.kubernetes.io/component", "operator": "In", "values": ["api", "web"]}
            ]});
        }
        if d["kind"] == "NetworkPolicy" && d["metadata"]["name"] == "ghostworks-web-egress-api" {
            // Any pod of the namespace, not the api's.
            d["spec"]["egress"][0]["to"][0]["podSelector"] = serde_json::json!({});
        }
    }
    let (_, _, v) = k8s_rules(&docs);
    for needle in [
        "web container must run `web`",
        "web readinessProbe must GET /health/ready on port 3000",
        "web pods must get no Secret",
        "TRUSTED_PROXIES must be per role",
        "PodDisruptionBudget missing for the web pods",
        "the web pods may reach [6379]",
        "egress to 8000 must name the api pods only",
    ] {
        assert_flags(&v, needle);
    }
}

// ---------------------------------------------------------------------------------------------
// Docker Swarm: the stack file against the production Compose files

const SWARM_STACK: &str = "deploy/swarm/docker-stack.yml";

/// Settings of a service that must be the same in the Swarm stack as in production Compose.
const SWARM_SAME: &[&str] = &[
    "user",
    "read_only",
    "cap_drop",
    "tmpfs",
    "stop_grace_period",
];

/// Compose settings Swarm cannot apply, and what takes their place in a swarm.
const SWARM_UNSUPPORTED: &[(&str, &str)] = &[
    (
        "security_opt",
        "Swarm services take no security options: every node's daemon.json sets \
         no-new-privileges for all its containers (deploy/images/swarm-node)",
    ),
    (
        "depends_on",
        "Swarm starts services in no order: the API and the worker wait for the database \
         by their readiness and restart policy, the migrate job runs before a deploy",
    ),
    (
        "shm_size",
        "not a service option in Swarm: PostgreSQL's shared memory is a tmpfs mount on /dev/shm",
    ),
];

/// Environment variables whose value differs in a swarm, and why.
const SWARM_ENV: &[(&str, &str)] = &[(
    "TRUSTED_PROXIES",
    "the swarm's frontend overlay has its own subnet, whose members (the entry point, api and \
     web tasks) are all the stack's",
)];

/// The services of a rendered model, by name.
fn service_map(model: &Value) -> BTreeMap<String, Value> {
    model["services"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// A service's secrets by source name (Compose renders objects, the stack file may use names).
fn secret_names(svc: &Value) -> BTreeSet<String> {
    svc["secrets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().or_else(|| s["source"].as_str()))
        .map(String::from)
        .collect()
}

/// What differs between the stack's services and production Compose's, beyond the listed
/// exceptions.
fn swarm_drift(compose: &Value, stack: &Value) -> Vec<String> {
    let mut v = Vec::new();
    let stack = service_map(stack);
    for (name, c) in service_map(compose) {
        let Some(s) = stack.get(&name) else {
            continue;
        };
        for key in SWARM_SAME {
            if c[key] != s[key] {
                v.push(format!(
                    "{name}.{key}: Compose has {}, the stack {}",
                    c[key], s[key]
                ));
            }
        }
        for (key, _) in SWARM_UNSUPPORTED {
            if !s[key].is_null() {
                v.push(format!(
                    "{name}.{key}: Swarm ignores it; say how the stack replaces it instead"
                ));
            }
        }
        if secret_names(&c) != secret_names(s) {
            v.push(format!(
                "{name}.secrets: Compose mounts {:?}, the stack {:?}",
                secret_names(&c),
                secret_names(s)
            ));
        }
        let env = |svc: &Value| -> BTreeMap<String, String> {
            svc["environment"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        };
        let (ce, se) = (env(&c), env(s));
        for var in ce.keys().chain(se.keys()).collect::<BTreeSet<_>>() {
            if SWARM_ENV.iter().any(|(k, _)| k == var) {
                if ce.contains_key(var) != se.contains_key(var) {
                    v.push(format!("{name}: {var} is set in one file only"));
                }
                continue;
            }
            if ce.get(var) != se.get(var) {
                v.push(format!(
                    "{name}: {var} is {:?} in Compose, {:?} in the stack",
                    ce.get(var),
                    se.get(var)
                ));
            }
        }
    }
    v
}

/// The stack file as `docker stack deploy` reads it (env files read, variables interpolated).
fn render_stack() -> Value {
    let text = run_ok(
        Command::new(require_tool("docker"))
            .current_dir(repo_root())
            .env("GHOSTWORKS_ENV_FILE", ".env.production")
            .args(["stack", "config", "-c", SWARM_STACK]),
        &format!("docker stack config -c {SWARM_STACK}"),
    );
    yaml_docs(&text)
        .expect("docker stack config: YAML")
        .into_iter()
        .next()
        .expect("one document")
}

#[test]
fn swarm_stack_matches_production_compose() {
    let env = ComposeEnv::new();
    let production = COMBOS.iter().find(|c| c.label == "production").unwrap();
    let json = run_ok(
        &mut env.command(production, &["config", "--format", "json"]),
        "compose production as JSON",
    );
    let compose: Value = serde_json::from_str(&json).expect("compose config JSON");
    let stack = render_stack();
    for svc in ["postgres", "redis", "migrate", "api", "worker", "web"] {
        assert!(
            !stack["services"][svc].is_null(),
            "{SWARM_STACK}: no `{svc}` service"
        );
    }
    assert_no_violations(
        &format!("{SWARM_STACK} against production Compose"),
        &swarm_drift(&compose, &stack),
    );
}

#[test]
fn swarm_drift_is_caught() {
    let compose = serde_json::json!({"services": {"api": {
        "user": "1001:1001", "read_only": true, "cap_drop": ["ALL"],
        "secrets": [{"source": "jwt_secret", "target": "/run/secrets/jwt_secret"}],
        "environment": {"A": "1", "TRUSTED_PROXIES": "172.28.0.0/24"}}}});
    let same = serde_json::json!({"services": {"api": {
        "user": "1001:1001", "read_only": true, "cap_drop": ["ALL"],
        "secrets": ["jwt_secret"],
        "environment": {"A": "1", "TRUSTED_PROXIES": "10.0.9.0/24"}}}});
    assert_eq!(swarm_drift(&compose, &same), Vec::<String>::new());
    let drifted = serde_json::json!({"services": {"api": {
        "user": "0", "read_only": false, "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "secrets": ["jwt_secret", "database_admin_url"],
        "environment": {"A": "2"}}}});
    let v = swarm_drift(&compose, &drifted);
    for needle in [
        "api.user",
        "api.read_only",
        "api.security_opt",
        "api.secrets",
        "A is",
        "TRUSTED_PROXIES is set in one file only",
    ] {
        assert_flags(&v, needle);
    }
}
