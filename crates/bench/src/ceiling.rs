//! The SQL ceiling of the read journey: what the database serves of the API's own work when
//! nothing else is in the way. Each request is made of the calls the API's handlers make, to
//! the same `ghostworks_db` functions, hence the same statements, prepared by the same driver:
//! the tenant scope with the caller's live session (and a search's statement timeout), the
//! membership check, the request's statement, COMMIT. They run on a pool of the API's size, as
//! many clients as connections, with every parameter drawn in memory beforehand: no HTTP, JSON,
//! token check or harness lookup is added, so the API, which does all of that on top, cannot
//! exceed this figure except by noise.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ghostworks_db::{artifacts, users, workspaces};
use ghostworks_domain::artifact::{ListParams, SearchMode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sqlx::PgPool;
use uuid::Uuid;

use crate::load::Terms;
use crate::stats::{Latency, Recorder};

/// Who asks, where, and which artifact a get reads (the workspace's newest).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Caller {
    user_id: Uuid,
    session_id: Uuid,
    tenant_id: Uuid,
    artifact_id: Option<Uuid>,
}

/// The live sessions the harness logged in, each with one of its user's workspaces.
pub async fn callers(admin: &PgPool) -> Result<Vec<Caller>> {
    let callers: Vec<Caller> = sqlx::query_as(
        "SELECT s.user_id, s.id AS session_id, m.tenant_id, \
                (SELECT a.id FROM artifacts a WHERE a.tenant_id = m.tenant_id AND a.deleted_at IS NULL \
                 ORDER BY a.created_at DESC LIMIT 1) AS artifact_id \
         FROM (SELECT DISTINCT ON (user_id) user_id, id FROM sessions \
               WHERE revoked_at IS NULL AND expires_at > now() ORDER BY user_id, created_at) s \
         JOIN workspace_memberships m ON m.user_id = s.user_id AND m.is_active",
    )
    .fetch_all(admin)
    .await?;
    anyhow::ensure!(!callers.is_empty(), "no live sessions to replay");
    Ok(callers)
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
    pub latency: Latency,
    pub errors: u64,
}

pub struct Settings {
    pub connections: u32,
    /// The API's `SEARCH_TIMEOUT_MS`, set for listings as the API sets it.
    pub search_timeout: Duration,
    pub duration: Duration,
    pub seed: u64,
}

/// Runs the journey's requests for `duration` on `connections` connections as the API's
/// login (`app_url`); the latency of each is from its BEGIN to its COMMIT.
pub async fn run(app_url: &str, callers: Vec<Caller>, s: &Settings) -> Result<Ceiling> {
    let pool = ghostworks_db::connect(app_url, s.connections, "ghostworks-bench-ceiling").await?;
    let callers = Arc::new(callers);
    let started = Instant::now();
    let deadline = started + s.duration;
    let tasks: Vec<_> = (0..s.connections)
        .map(|i| {
            let (pool, callers) = (pool.clone(), callers.clone());
            let mut rng = ChaCha8Rng::seed_from_u64(s.seed + 900 + u64::from(i));
            let timeout = s.search_timeout;
            tokio::spawn(async move {
                let mut rec = Recorder::default();
                let terms = Terms::default();
                while Instant::now() < deadline {
                    let caller = &callers[rng.gen_range(0..callers.len())];
                    for (request, name) in JOURNEY {
                        let t = Instant::now();
                        let served = serve(&pool, caller, request, &terms, &mut rng, timeout).await;
                        rec.record(
                            name,
                            t.elapsed(),
                            Some(if served.is_ok() { 200 } else { 500 }),
                        );
                    }
                }
                rec
            })
        })
        .collect();
    let mut rec = Recorder::default();
    for t in tasks {
        rec.merge(&t.await.context("a ceiling client")?);
    }
    pool.close().await;
    Ok(Ceiling {
        latency: rec.summary(started.elapsed().as_secs_f64()),
        errors: rec.errors,
    })
}

/// The database calls of one request, in the API's order (`Ws`, then the handler).
async fn serve(
    pool: &PgPool,
    c: &Caller,
    request: Request,
    terms: &Terms,
    rng: &mut ChaCha8Rng,
    search_timeout: Duration,
) -> Result<()> {
    let timeout = (!matches!(request, Request::Get)).then_some(search_timeout);
    let (mut tx, user) =
        users::scoped_with_live_session(pool, c.tenant_id, c.user_id, c.session_id, timeout)
            .await?;
    anyhow::ensure!(user.is_some(), "the session is not live");
    workspaces::role_of(&mut tx, c.tenant_id, c.user_id).await?;
    let params = |q: Option<String>, mode, tags: Vec<String>| ListParams {
        q,
        mode,
        tags,
        ..Default::default()
    };
    let list = match request {
        Request::Get => {
            let id = c.artifact_id.context("an empty workspace")?;
            artifacts::get(&mut tx, c.tenant_id, id).await?;
            None
        }
        Request::List => Some(params(None, SearchMode::Substring, vec![])),
        Request::Substring => Some(params(
            Some(terms.word(rng).into()),
            SearchMode::Substring,
            vec![],
        )),
        Request::Fulltext => Some(params(
            Some(format!("{} {}", terms.word(rng), terms.word(rng))),
            SearchMode::Fulltext,
            vec![],
        )),
        Request::Tag => Some(params(
            None,
            SearchMode::Substring,
            vec![terms.tag(rng).into()],
        )),
    };
    if let Some(p) = list {
        let q = p.validate(false).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        artifacts::list(&mut tx, c.tenant_id, &q).await?;
    }
    tx.commit().await?;
    Ok(())
}
