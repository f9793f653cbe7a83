//! The HTTP load harness: closed-loop scenarios (read journey, write mix, login burst) with a
//! fixed number of clients, and an open-loop run at fixed arrival rates. Every request is
//! bounded by time; only the given base URL (loopback) is contacted.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::{Client, Method, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

use crate::dataset::{self, Zipf};
use crate::stats::{Latency, ProcessUsage, Recorder, Sampler};

/// Where the server is and what the harness does.
#[derive(Debug, Clone)]
pub struct Options {
    pub base_url: String,
    /// The server's process id, for CPU and RSS (None: not measured).
    pub server_pid: Option<u32>,
    /// Users in the dataset (their e-mail addresses are derived from the index).
    pub dataset_users: usize,
    /// Users logged in before the run and shared by the clients.
    pub pool: usize,
    pub concurrency: usize,
    pub duration: Duration,
    pub login_concurrency: usize,
    /// Length of each open-loop step.
    pub step: Duration,
    /// Fractions of the read journey's closed-loop throughput offered in the open-loop run.
    pub steps: Vec<f64>,
    pub seed: u64,
}

/// A logged-in user and the workspaces they belong to.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub workspaces: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    pub concurrency: usize,
    pub duration_s: f64,
    pub errors: u64,
    pub server_errors: u64,
    #[serde(flatten)]
    pub latency: Latency,
    pub ops: BTreeMap<String, Latency>,
    pub server: Option<ProcessUsage>,
    /// Scenario-specific figures (412s and lost updates, argon2 timing, …).
    pub extra: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub offered_rps: f64,
    pub achieved_rps: f64,
    /// Arrivals not sent because too many requests were in flight (counted as errors too).
    pub dropped: u64,
    pub errors: u64,
    pub server_errors: u64,
    #[serde(flatten)]
    pub latency: Latency,
    pub server: Option<ProcessUsage>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpenLoop {
    pub max_closed_loop_rps: f64,
    pub steps: Vec<Step>,
    /// The highest offered rate served in full (achieved >= 97%, nothing dropped, no 5xx).
    pub knee_rps: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub read: Scenario,
    pub get_under_search: Scenario,
    pub write: Scenario,
    pub login: Scenario,
    pub open_loop: OpenLoop,
}

pub fn client() -> Result<Client> {
    Ok(ghostworks_telemetry::http_client::builder()
        .pool_max_idle_per_host(4096)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()?)
}

async fn call(
    client: &Client,
    method: Method,
    url: &str,
    token: &str,
    body: Option<&Value>,
    if_match: Option<i64>,
) -> (Option<u16>, Option<Value>) {
    let mut r = client.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(b);
    }
    if let Some(v) = if_match {
        r = r.header("if-match", format!("\"{v}\""));
    }
    match r.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp.bytes().await.ok();
            (
                Some(status),
                body.and_then(|b| serde_json::from_slice(&b).ok()),
            )
        }
        Err(_) => (None, None),
    }
}

/// Logs in `n` distinct dataset users (a fixed, seeded sample) and lists their workspaces.
pub async fn login_pool(o: &Options, client: &Client) -> Result<Vec<Session>> {
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed);
    let mut users: Vec<usize> = (0..o.dataset_users).collect();
    users.shuffle(&mut rng);
    users.truncate(o.pool);
    let logins = futures::future::join_all(users.chunks(users.len().div_ceil(4).max(1)).map(
        |chunk| async move {
            let mut out = Vec::new();
            for &u in chunk {
                out.push(login(client, &o.base_url, u).await?);
            }
            anyhow::Ok(out)
        },
    ))
    .await;
    let mut sessions = Vec::new();
    for chunk in logins {
        for token in chunk? {
            let (status, body) = call(
                client,
                Method::GET,
                &format!("{}/api/v1/workspaces", o.base_url),
                &token,
                None,
                None,
            )
            .await;
            let workspaces: Vec<String> = body
                .as_ref()
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|w| w["id"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            if status != Some(200) || workspaces.is_empty() {
                bail!("listing the workspaces of a benchmark user: {status:?}");
            }
            sessions.push(Session { token, workspaces });
        }
    }
    Ok(sessions)
}

async fn login(client: &Client, base: &str, user: usize) -> Result<String> {
    let resp = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": dataset::email(user), "password": dataset::PASSWORD}))
        .send()
        .await
        .context("logging in a benchmark user")?;
    if resp.status() != StatusCode::OK {
        bail!(
            "login of {} answered {} (is the dataset seeded and RATE_LIMIT_ENABLED=false?)",
            dataset::email(user),
            resp.status()
        );
    }
    let body: Value = resp.json().await?;
    body["access_token"]
        .as_str()
        .map(String::from)
        .context("login response without access_token")
}

/// The read requests of the journey, in the order a user makes them.
#[derive(Debug, Clone, Copy)]
pub enum Read {
    List,
    Substring,
    Fulltext,
    Get,
    Tag,
}

const JOURNEY: [Read; 5] = [
    Read::List,
    Read::Substring,
    Read::Fulltext,
    Read::Get,
    Read::Tag,
];

impl Read {
    fn name(self) -> &'static str {
        match self {
            Read::List => "list",
            Read::Substring => "search_substring",
            Read::Fulltext => "search_fulltext",
            Read::Get => "get",
            Read::Tag => "tag_filter",
        }
    }
}

/// Search words are drawn uniformly from the description vocabulary (people search for a
/// topic, not for "the"); tags with the dataset's own skew, as popular tags get clicked more.
pub struct Terms {
    words: Zipf,
    tags: Zipf,
}

impl Default for Terms {
    fn default() -> Self {
        Terms {
            words: Zipf::new(dataset::WORDS.len(), 0.0),
            tags: Zipf::new(dataset::TAGS.len(), 1.1),
        }
    }
}

impl Terms {
    pub fn word(&self, rng: &mut impl Rng) -> &'static str {
        dataset::WORDS[self.words.sample(rng)]
    }

    pub fn tag(&self, rng: &mut impl Rng) -> &'static str {
        dataset::TAGS[self.tags.sample(rng)]
    }

    /// The URL of `op` in `ws`, or None for a get without a known artifact id.
    fn url(
        &self,
        base: &str,
        ws: &str,
        op: Read,
        id: Option<&str>,
        rng: &mut impl Rng,
    ) -> Option<String> {
        let list = format!("{base}/api/v1/workspaces/{ws}/artifacts");
        Some(match op {
            Read::List => list,
            Read::Substring => format!("{list}?q={}", self.word(rng)),
            Read::Fulltext => format!(
                "{list}?search_mode=fulltext&q={}+{}",
                self.word(rng),
                self.word(rng)
            ),
            Read::Get => format!("{list}/{}", id?),
            Read::Tag => format!("{list}?tags={}", self.tag(rng)),
        })
    }
}

/// Artifact ids seen in list pages, per workspace, for later gets.
pub type Known = Arc<Mutex<HashMap<String, Vec<String>>>>;

fn sampler(o: &Options) -> Option<Sampler> {
    o.server_pid.map(Sampler::start)
}

fn scenario(
    name: &str,
    concurrency: usize,
    elapsed: Duration,
    rec: &Recorder,
    server: Option<ProcessUsage>,
    extra: Value,
) -> Scenario {
    let s = elapsed.as_secs_f64();
    Scenario {
        name: name.into(),
        concurrency,
        duration_s: s,
        errors: rec.errors,
        server_errors: rec.server_errors,
        latency: rec.summary(s),
        ops: rec.per_op(s),
        server,
        extra,
    }
}

/// (a) Read journey: each client repeatedly takes a random user and one of their workspaces
/// and runs list, substring search, full-text search, get (an id from the list page) and a
/// tag filter.
pub async fn read_journey(
    o: &Options,
    client: &Client,
    sessions: &Arc<Vec<Session>>,
    known: &Known,
) -> Scenario {
    let sample = sampler(o);
    let started = Instant::now();
    let deadline = started + o.duration;
    let tasks: Vec<_> = (0..o.concurrency)
        .map(|i| {
            let (client, sessions, known) = (client.clone(), sessions.clone(), known.clone());
            let base = o.base_url.clone();
            let mut rng = ChaCha8Rng::seed_from_u64(o.seed + 100 + i as u64);
            tokio::spawn(async move {
                let terms = Terms::default();
                let mut rec = Recorder::default();
                'run: loop {
                    let s = &sessions[rng.gen_range(0..sessions.len())];
                    let ws = &s.workspaces[rng.gen_range(0..s.workspaces.len())];
                    let mut first_id = None;
                    for op in JOURNEY {
                        if Instant::now() >= deadline {
                            break 'run;
                        }
                        let Some(url) = terms.url(&base, ws, op, first_id.as_deref(), &mut rng)
                        else {
                            continue;
                        };
                        let t = Instant::now();
                        let (status, body) =
                            call(&client, Method::GET, &url, &s.token, None, None).await;
                        rec.record(op.name(), t.elapsed(), status);
                        if let (Read::List, Some(body)) = (op, body) {
                            let ids: Vec<String> = body["items"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|a| a["id"].as_str().map(String::from))
                                .collect();
                            first_id = ids.choose(&mut rng).cloned();
                            if !ids.is_empty() {
                                known.lock().unwrap().insert(ws.clone(), ids);
                            }
                        }
                    }
                }
                rec
            })
        })
        .collect();
    let mut rec = Recorder::default();
    for t in tasks {
        rec.merge(&t.await.expect("read client"));
    }
    let elapsed = started.elapsed();
    scenario(
        "read journey",
        o.concurrency,
        elapsed,
        &rec,
        sample.map(Sampler::finish),
        json!({}),
    )
}

/// An artifact that several clients PATCH concurrently, and how many of their writes won.
struct Hot {
    url: String,
    won: AtomicU64,
}

/// (b) Write mix: 40% create, 50% PATCH with If-Match on a small shared set of artifacts per
/// workspace (so concurrent writers collide and get 412s), 10% delete of the client's own
/// creations with If-Match. Afterwards every hot artifact's version must be 1 + the PATCHes
/// that succeeded on it, and every deleted artifact must be gone: anything else is a lost
/// update.
pub async fn write_mix(
    o: &Options,
    client: &Client,
    sessions: &Arc<Vec<Session>>,
) -> Result<Scenario> {
    const HOT_PER_WORKSPACE: usize = 4;
    let mut hot: HashMap<String, Arc<Vec<Hot>>> = HashMap::new();
    for i in 0..o.concurrency {
        let s = &sessions[i % sessions.len()];
        let ws = &s.workspaces[0];
        if hot.contains_key(ws) {
            continue;
        }
        let mut set = Vec::new();
        for n in 0..HOT_PER_WORKSPACE {
            let url = format!("{}/api/v1/workspaces/{ws}/artifacts", o.base_url);
            let body = json!({"name": format!("hot artifact {n}"), "tags": ["bench", "hot"]});
            let (status, created) =
                call(client, Method::POST, &url, &s.token, Some(&body), None).await;
            let id = created
                .as_ref()
                .and_then(|c| c["id"].as_str())
                .with_context(|| format!("creating a hot artifact answered {status:?}"))?;
            set.push(Hot {
                url: format!("{url}/{id}"),
                won: AtomicU64::new(0),
            });
        }
        hot.insert(ws.clone(), Arc::new(set));
    }

    let sample = sampler(o);
    let started = Instant::now();
    let deadline = started + o.duration;
    let tasks: Vec<_> = (0..o.concurrency)
        .map(|i| {
            let client = client.clone();
            let s = sessions[i % sessions.len()].clone();
            let hot = hot[&s.workspaces[0]].clone();
            let list = format!(
                "{}/api/v1/workspaces/{}/artifacts",
                o.base_url, s.workspaces[0]
            );
            let mut rng = ChaCha8Rng::seed_from_u64(o.seed + 200 + i as u64);
            tokio::spawn(async move {
                let mut rec = Recorder::default();
                let (mut conflicts, mut writes) = (0u64, 0u64);
                let mut versions: HashMap<usize, i64> = HashMap::new();
                let mut mine: Vec<String> = Vec::new();
                let mut deleted: Vec<String> = Vec::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += 1;
                    let pick = rng.gen_range(0..10);
                    if pick < 4 || (pick == 9 && mine.is_empty()) {
                        let body = json!({"name": format!("bench write {i}-{n}"),
                            "description": "created by the write mix of the load benchmark",
                            "tags": ["bench", "write"]});
                        let t = Instant::now();
                        let (status, created) =
                            call(&client, Method::POST, &list, &s.token, Some(&body), None).await;
                        rec.record("create", t.elapsed(), status);
                        if let Some(id) = created.as_ref().and_then(|c| c["id"].as_str()) {
                            writes += 1;
                            mine.push(format!("{list}/{id}"));
                        }
                    } else if pick < 9 {
                        let k = rng.gen_range(0..hot.len());
                        let expected = *versions.entry(k).or_insert(1);
                        let body =
                            json!({"description": format!("edited by client {i}, write {n}")});
                        let t = Instant::now();
                        let (status, updated) = call(
                            &client,
                            Method::PATCH,
                            &hot[k].url,
                            &s.token,
                            Some(&body),
                            Some(expected),
                        )
                        .await;
                        if status == Some(412) {
                            rec.record_expected("patch", t.elapsed());
                            conflicts += 1;
                            // Reload, as a client would, before trying again.
                            let t = Instant::now();
                            let (status, current) =
                                call(&client, Method::GET, &hot[k].url, &s.token, None, None).await;
                            rec.record("reload", t.elapsed(), status);
                            if let Some(v) = current.as_ref().and_then(|c| c["version"].as_i64()) {
                                versions.insert(k, v);
                            }
                            continue;
                        }
                        rec.record("patch", t.elapsed(), status);
                        if let Some(v) = updated.as_ref().and_then(|u| u["version"].as_i64()) {
                            writes += 1;
                            hot[k].won.fetch_add(1, Ordering::Relaxed);
                            versions.insert(k, v);
                        }
                    } else {
                        let url = mine.pop().expect("checked above");
                        let t = Instant::now();
                        let (status, _) =
                            call(&client, Method::DELETE, &url, &s.token, None, Some(1)).await;
                        rec.record("delete", t.elapsed(), status);
                        if status == Some(204) {
                            writes += 1;
                            deleted.push(url);
                        }
                    }
                }
                (rec, conflicts, writes, deleted, s.token)
            })
        })
        .collect();
    let mut rec = Recorder::default();
    let (mut conflicts, mut writes) = (0, 0);
    let mut deleted = Vec::new();
    for t in tasks {
        let (r, c, w, d, token) = t.await.expect("write client");
        rec.merge(&r);
        conflicts += c;
        writes += w;
        deleted.extend(d.into_iter().map(|url| (url, token.clone())));
    }
    let elapsed = started.elapsed();
    let server = sample.map(Sampler::finish);

    let token_of: HashMap<&String, &str> = sessions
        .iter()
        .map(|s| (&s.workspaces[0], s.token.as_str()))
        .collect();
    let mut lost = 0u64;
    for (ws, set) in &hot {
        for h in set.iter() {
            let (_, current) = call(client, Method::GET, &h.url, token_of[ws], None, None).await;
            let version = current.as_ref().and_then(|c| c["version"].as_i64());
            if version != Some(1 + h.won.load(Ordering::Relaxed) as i64) {
                lost += 1;
            }
        }
    }
    for (url, token) in &deleted {
        let (status, _) = call(client, Method::GET, url, token, None, None).await;
        if status != Some(404) {
            lost += 1;
        }
    }
    Ok(scenario(
        "write mix",
        o.concurrency,
        elapsed,
        &rec,
        server,
        json!({
            "writes_per_s": writes as f64 / elapsed.as_secs_f64(),
            "writes": writes,
            "precondition_failed_412": conflicts,
            "hot_artifacts": hot.values().map(|s| s.len()).sum::<usize>(),
            "deleted_checked": deleted.len(),
            "lost_updates": lost,
        }),
    ))
}

/// The time of one argon2id verification with the server's parameters, in this process
/// (median of 7).
pub async fn argon2_ms() -> Result<f64> {
    let hash = ghostworks_auth::password::hash(dataset::PASSWORD.into()).await?;
    let mut times = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        ghostworks_auth::password::verify(dataset::PASSWORD.into(), hash.clone()).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[3])
}

/// (c) Login burst: `login_concurrency` clients logging in as fast as they can. Bound by
/// argon2id (m=19456 KiB, t=2, p=1), which the server runs on its blocking pool.
pub async fn login_burst(o: &Options, client: &Client) -> Result<Scenario> {
    let per_hash = argon2_ms().await?;
    let sample = sampler(o);
    let started = Instant::now();
    let deadline = started + o.duration;
    let tasks: Vec<_> = (0..o.login_concurrency)
        .map(|i| {
            let client = client.clone();
            let url = format!("{}/api/v1/auth/login", o.base_url);
            let users = o.dataset_users;
            let mut rng = ChaCha8Rng::seed_from_u64(o.seed + 300 + i as u64);
            tokio::spawn(async move {
                let mut rec = Recorder::default();
                while Instant::now() < deadline {
                    let body = json!({"email": dataset::email(rng.gen_range(0..users)), "password": dataset::PASSWORD});
                    let t = Instant::now();
                    let status = client.post(&url).json(&body).send().await.ok().map(|r| r.status().as_u16());
                    rec.record("login", t.elapsed(), status);
                }
                rec
            })
        })
        .collect();
    let mut rec = Recorder::default();
    for t in tasks {
        rec.merge(&t.await.expect("login client"));
    }
    let elapsed = started.elapsed();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    Ok(scenario(
        "login burst",
        o.login_concurrency,
        elapsed,
        &rec,
        sample.map(Sampler::finish),
        json!({
            "argon2": "argon2id m=19456 KiB, t=2, p=1",
            "argon2_verify_ms": per_hash,
            "hash_bound_rps": cpus as f64 * 1000.0 / per_hash,
        }),
    ))
}

/// (d) Open loop: requests of the read journey arrive at a fixed rate whatever the server's
/// speed, step after step. Latency counts from the scheduled arrival, so queueing shows
/// (no coordinated omission). At most 1,024 requests are in flight; arrivals beyond that are
/// dropped and counted.
pub async fn open_loop(
    o: &Options,
    client: &Client,
    sessions: &Arc<Vec<Session>>,
    known: &Known,
    max_rps: f64,
) -> OpenLoop {
    let mut steps = Vec::new();
    for (n, fraction) in o.steps.iter().enumerate() {
        let rate = (max_rps * fraction).max(1.0);
        steps.push(step(o, client, sessions, known, rate, n as u64).await);
        // Let the queues drain between steps.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let knee_rps = steps
        .iter()
        .filter(|s| {
            s.achieved_rps >= 0.97 * s.offered_rps && s.dropped == 0 && s.server_errors == 0
        })
        .map(|s| s.offered_rps)
        .fold(0.0, f64::max);
    OpenLoop {
        max_closed_loop_rps: max_rps,
        steps,
        knee_rps,
    }
}

async fn step(
    o: &Options,
    client: &Client,
    sessions: &Arc<Vec<Session>>,
    known: &Known,
    rate: f64,
    n: u64,
) -> Step {
    let permits = Arc::new(tokio::sync::Semaphore::new(1024));
    let rec = Arc::new(Mutex::new(Recorder::default()));
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed + 400 + n);
    let terms = Terms::default();
    let sample = sampler(o);
    let started = tokio::time::Instant::now();
    let arrivals = (rate * o.step.as_secs_f64()) as u64;
    let mut dropped = 0;
    let mut tasks = Vec::new();
    for i in 0..arrivals {
        let at = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at).await;
        let s = &sessions[rng.gen_range(0..sessions.len())];
        let ws = &s.workspaces[rng.gen_range(0..s.workspaces.len())];
        let op = JOURNEY[i as usize % JOURNEY.len()];
        let id = known
            .lock()
            .unwrap()
            .get(ws)
            .and_then(|ids| ids.choose(&mut rng).cloned());
        let url = terms
            .url(&o.base_url, ws, op, id.as_deref(), &mut rng)
            .unwrap_or_else(|| format!("{}/api/v1/workspaces/{ws}/artifacts", o.base_url));
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            dropped += 1;
            continue;
        };
        let (client, rec, token) = (client.clone(), rec.clone(), s.token.clone());
        tasks.push(tokio::spawn(async move {
            let (status, _) = call(&client, Method::GET, &url, &token, None, None).await;
            let latency = at.elapsed();
            rec.lock().unwrap().record(op.name(), latency, status);
            drop(permit);
        }));
    }
    futures::future::join_all(tasks).await;
    let elapsed = started.elapsed().as_secs_f64();
    let rec = rec.lock().unwrap().clone();
    let latency = rec.summary(elapsed);
    Step {
        offered_rps: rate,
        achieved_rps: latency.rps,
        dropped,
        errors: rec.errors + dropped,
        server_errors: rec.server_errors,
        latency,
        server: sample.map(Sampler::finish),
    }
}

/// Clients of the slowest search and, beside them, clients of gets in "get under search load".
pub const SEARCH_LOAD_CLIENTS: usize = 16;

/// The read journey's slowest search (by mean latency): the one that holds the database longest.
fn slowest_search(read: &Scenario) -> Read {
    let mean = |r: Read| read.ops.get(r.name()).map_or(0.0, |l| l.avg_ms);
    [Read::Substring, Read::Fulltext, Read::Tag]
        .into_iter()
        .max_by(|a, b| mean(*a).total_cmp(&mean(*b)))
        .expect("three searches")
}

/// (e) Get under search load: [`SEARCH_LOAD_CLIENTS`] closed-loop clients repeat the read
/// journey's slowest search while as many get artifacts the read journey listed, against the
/// same server at the same time: whether a primary-key read still answers fast while the
/// searches take what the bulkhead gives them.
pub async fn get_under_search(
    o: &Options,
    client: &Client,
    sessions: &Arc<Vec<Session>>,
    known: &Known,
    search: Read,
) -> Result<Scenario> {
    // Every (token, artifact URL) the read journey saw, for the gets.
    let gets: Vec<(String, String)> = {
        let known = known.lock().unwrap();
        sessions
            .iter()
            .flat_map(|s| s.workspaces.iter().map(move |ws| (s, ws)))
            .filter_map(|(s, ws)| Some((s, ws, known.get(ws)?)))
            .flat_map(|(s, ws, ids)| {
                ids.iter().map(move |id| {
                    let url = format!("{}/api/v1/workspaces/{ws}/artifacts/{id}", o.base_url);
                    (s.token.clone(), url)
                })
            })
            .collect()
    };
    if gets.is_empty() {
        bail!("the read journey listed no artifact to get");
    }
    let gets = Arc::new(gets);
    let sample = sampler(o);
    let started = Instant::now();
    let deadline = started + o.duration;
    let tasks: Vec<_> = (0..2 * SEARCH_LOAD_CLIENTS)
        .map(|i| {
            let (client, sessions, gets) = (client.clone(), sessions.clone(), gets.clone());
            let base = o.base_url.clone();
            let mut rng = ChaCha8Rng::seed_from_u64(o.seed + 600 + i as u64);
            let op = if i < SEARCH_LOAD_CLIENTS {
                search
            } else {
                Read::Get
            };
            tokio::spawn(async move {
                let terms = Terms::default();
                let mut rec = Recorder::default();
                while Instant::now() < deadline {
                    let (token, url) = match op {
                        Read::Get => gets[rng.gen_range(0..gets.len())].clone(),
                        _ => {
                            let s = &sessions[rng.gen_range(0..sessions.len())];
                            let ws = &s.workspaces[rng.gen_range(0..s.workspaces.len())];
                            let url = terms.url(&base, ws, op, None, &mut rng);
                            (s.token.clone(), url.expect("a search needs no id"))
                        }
                    };
                    let t = Instant::now();
                    let (status, _) = call(&client, Method::GET, &url, &token, None, None).await;
                    rec.record(op.name(), t.elapsed(), status);
                }
                rec
            })
        })
        .collect();
    let mut rec = Recorder::default();
    for t in tasks {
        rec.merge(&t.await.context("a client of get under search load")?);
    }
    let elapsed = started.elapsed();
    let get_p99 = rec.per_op(elapsed.as_secs_f64())[Read::Get.name()].p99_ms;
    Ok(scenario(
        "get under search load",
        2 * SEARCH_LOAD_CLIENTS,
        elapsed,
        &rec,
        sample.map(Sampler::finish),
        json!({ "search": search.name(), "get_p99_ms": get_p99 }),
    ))
}

/// What the scenarios share: the HTTP client, the users logged in beforehand, and the
/// artifacts the read journey listed (for gets).
pub struct Harness {
    pub client: Client,
    pub sessions: Arc<Vec<Session>>,
    pub known: Known,
}

impl Harness {
    /// Logs in the pool of users.
    pub async fn login(o: &Options) -> Result<Harness> {
        let client = client()?;
        let sessions = Arc::new(login_pool(o, &client).await?);
        Ok(Harness {
            client,
            sessions,
            known: Arc::default(),
        })
    }

    pub async fn read_journey(&self, o: &Options) -> Scenario {
        read_journey(o, &self.client, &self.sessions, &self.known).await
    }

    /// Every scenario after the read journey, in turn: get under search load, write mix,
    /// login burst, open loop.
    pub async fn after_read(&self, o: &Options, read: Scenario) -> Result<Results> {
        let (client, sessions, known) = (&self.client, &self.sessions, &self.known);
        let get_under_search =
            get_under_search(o, client, sessions, known, slowest_search(&read)).await?;
        let write = write_mix(o, client, sessions).await?;
        let login = login_burst(o, client).await?;
        let open_loop = open_loop(o, client, sessions, known, read.latency.rps).await;
        Ok(Results {
            read,
            get_under_search,
            write,
            login,
            open_loop,
        })
    }
}

/// Every scenario in turn: log in the pool, read journey, then [`Harness::after_read`].
pub async fn run_all(o: &Options) -> Result<Results> {
    let h = Harness::login(o).await?;
    let read = h.read_journey(o).await;
    h.after_read(o, read).await
}
