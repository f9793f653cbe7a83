//! The SQL ceiling of the read journey: what the database serves of the API's own work when
//! nothing else is in the way. It replays the read journey as the harness drives it (the same
//! logged-in sessions, a session then one of its workspaces drawn uniformly, the same five
//! requests in the same order, the get reading an artifact of the list page just fetched), but
//! each request is only the calls the API's handlers make, to the same `ghostworks_db`
//! functions, hence the same statements (BEGIN, the entry statement with the caller's live
//! session, the scope and the membership, the request's statement, the read's end), prepared by the same driver on the same kind of pool. It runs
//! on as many connections as the API's pool, one client per connection, and adds no HTTP, JSON,
//! token check or lookup of its own, so the API, which does all of that on top of the same
//! calls with the same concurrency at the database, cannot exceed it. The report runs it in two
//! halves, right before and right after the API's read journey, so a machine whose load drifts
//! weighs on both alike.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ghostworks_db::artifacts;
use ghostworks_db::users::{self, Entry, Server};
use ghostworks_domain::artifact::{ListParams, ListQuery, SearchMode};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sqlx::PgPool;
use uuid::Uuid;

use crate::load::{Session, Terms};
use crate::stats::{Latency, Recorder};

/// A session the harness logged in: who asks, with which live session, and where they may.
#[derive(Debug, Clone)]
pub struct Caller {
    user_id: Uuid,
    session_id: Uuid,
    tenants: Vec<Uuid>,
}

/// The access token's claims the API reads from it (the token is the harness's own; its
/// signature needs no check here).
#[derive(serde::Deserialize)]
struct Claims {
    sub: Uuid,
    sid: Uuid,
}

/// The harness's logged-in sessions, as the API sees them after checking their tokens.
pub fn callers(sessions: &[Session]) -> Result<Vec<Caller>> {
    anyhow::ensure!(!sessions.is_empty(), "no sessions to replay");
    sessions
        .iter()
        .map(|s| -> Result<Caller> {
            let payload = s
                .token
                .split('.')
                .nth(1)
                .context("an access token is a JWT")?;
            let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?;
            let tenants = s
                .workspaces
                .iter()
                .map(|w| w.parse())
                .collect::<Result<_, _>>()?;
            Ok(Caller {
                user_id: claims.sub,
                session_id: claims.sid,
                tenants,
            })
        })
        .collect()
}

/// One request of the journey, as the list and get handlers serve it.
#[derive(Debug, Clone, Copy)]
enum Request {
    List,
    Substring,
    Fulltext,
    Get,
    Tag,
}

/// The read journey's five requests, in its order.
const JOURNEY: [(Request, &str); 5] = [
    (Request::List, "list"),
    (Request::Substring, "search_substring"),
    (Request::Fulltext, "search_fulltext"),
    (Request::Get, "get"),
    (Request::Tag, "tag_filter"),
];

/// What the ceiling measured: requests answered per second and their latency, and how many
/// failed (none should: a failure is a harness or schema fault, not load).
#[derive(Debug, serde::Serialize)]
pub struct Ceiling {
    pub connections: u32,
    pub latency: Latency,
    pub errors: u64,
}

pub struct Settings {
    /// The API's `DATABASE_POOL_SIZE`.
    pub connections: u32,
    /// The API's `SEARCH_TIMEOUT_MS`, set for listings as the API sets it.
    pub search_timeout: Duration,
    pub seed: u64,
}

/// The replay, run in parts ([`Replay::run`]) and summed up at the end ([`Replay::finish`]).
pub struct Replay {
    pool: PgPool,
    callers: Arc<Vec<Caller>>,
    settings: Settings,
    rec: Recorder,
    seconds: f64,
    parts: u64,
}

impl Replay {
    /// Opens every connection of the pool beforehand, as the API's are by the time it serves
    /// the read journey, as the API's login (`app_url`).
    pub async fn open(app_url: &str, callers: Vec<Caller>, settings: Settings) -> Result<Self> {
        let pool =
            ghostworks_db::connect(app_url, settings.connections, "ghostworks-bench-ceiling")
                .await?;
        let opened =
            futures::future::try_join_all((0..settings.connections).map(|_| pool.acquire()))
                .await?;
        drop(opened);
        Ok(Replay {
            pool,
            callers: Arc::new(callers),
            settings,
            rec: Recorder::default(),
            seconds: 0.0,
            parts: 0,
        })
    }

    /// Replays the journey for `duration`, one client per connection; a request's latency
    /// runs from taking a connection to ending its transaction.
    pub async fn run(&mut self, duration: Duration) -> Result<()> {
        let started = Instant::now();
        let deadline = started + duration;
        let tasks: Vec<_> = (0..self.settings.connections)
            .map(|i| {
                let (pool, callers) = (self.pool.clone(), self.callers.clone());
                let seed = self.settings.seed + 900 + 1000 * self.parts + u64::from(i);
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let timeout = self.settings.search_timeout;
                tokio::spawn(async move {
                    let mut rec = Recorder::default();
                    let terms = Terms::default();
                    'run: loop {
                        let c = &callers[rng.gen_range(0..callers.len())];
                        let tenant = c.tenants[rng.gen_range(0..c.tenants.len())];
                        let mut listed = None;
                        for (request, name) in JOURNEY {
                            if Instant::now() >= deadline {
                                break 'run;
                            }
                            let Some(work) = Work::draw(request, listed, &terms, &mut rng) else {
                                continue;
                            };
                            let t = Instant::now();
                            let served = serve(&pool, c, tenant, &work, timeout).await;
                            rec.record(
                                name,
                                t.elapsed(),
                                Some(if served.is_ok() { 200 } else { 500 }),
                            );
                            if let (Request::List, Ok(ids)) = (request, served) {
                                listed = ids.choose(&mut rng).copied();
                            }
                        }
                    }
                    rec
                })
            })
            .collect();
        for t in tasks {
            self.rec.merge(&t.await.context("a ceiling client")?);
        }
        self.seconds += started.elapsed().as_secs_f64();
        self.parts += 1;
        Ok(())
    }

    pub async fn finish(self) -> Ceiling {
        self.pool.close().await;
        Ceiling {
            connections: self.settings.connections,
            latency: self.rec.summary(self.seconds),
            errors: self.rec.errors,
        }
    }
}

/// What one request reads: an artifact, or a page of a listing.
enum Work {
    Get(Uuid),
    List(ListQuery),
}

impl Work {
    /// The request's parameters, drawn as the harness draws them; None for a get after an
    /// empty page (the harness sends nothing then).
    fn draw(
        request: Request,
        listed: Option<Uuid>,
        terms: &Terms,
        rng: &mut ChaCha8Rng,
    ) -> Option<Self> {
        let params = |q: Option<String>, mode, tags: Vec<String>| ListParams {
            q,
            mode,
            tags,
            ..Default::default()
        };
        let p = match request {
            Request::Get => return listed.map(Work::Get),
            Request::List => params(None, SearchMode::Substring, vec![]),
            Request::Substring => {
                params(Some(terms.word(rng).into()), SearchMode::Substring, vec![])
            }
            Request::Fulltext => params(
                Some(format!("{} {}", terms.word(rng), terms.word(rng))),
                SearchMode::Fulltext,
                vec![],
            ),
            Request::Tag => params(None, SearchMode::Substring, vec![terms.tag(rng).into()]),
        };
        Some(Work::List(
            p.validate(false)
                .expect("the harness's parameters are valid"),
        ))
    }
}

/// The database calls of one request, in the API's order (`Ws`, then the handler); the ids
/// of the page a listing read.
async fn serve(
    pool: &PgPool,
    c: &Caller,
    tenant: Uuid,
    work: &Work,
    search_timeout: Duration,
) -> Result<Vec<Uuid>> {
    let timeout = matches!(work, Work::List(_)).then_some(search_timeout);
    let (mut tx, entry) = users::enter_workspace(
        pool,
        Server::Primary,
        tenant,
        c.user_id,
        c.session_id,
        timeout,
    )
    .await?;
    anyhow::ensure!(
        matches!(entry, Entry::Member { .. }),
        "not a live member: {entry:?}"
    );
    let ids = match work {
        Work::Get(id) => {
            artifacts::get(&mut tx, tenant, *id).await?;
            Vec::new()
        }
        Work::List(q) => artifacts::list(&mut tx, tenant, q)
            .await?
            .rows
            .iter()
            .map(|a| a.id)
            .collect(),
    };
    ghostworks_db::end_read(tx);
    Ok(ids)
}
