//! Render times of the main pages under light load: a real stack (PostgreSQL, Redis, the API
//! and the web app, in this process on loopback), a workspace of 200 artifacts, and a few
//! concurrent signed-in clients requesting each page in turn. Prints p50/p95/p99 per page and
//! the JavaScript the pages ship. Latency is measured at the client over loopback, so it is
//! an upper bound of the server-side time (it includes the web app's calls to the API).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{stack, Browser};

/// Concurrent clients ("light load").
const CLIENTS: usize = 4;
/// Requests per page per client.
const ROUNDS: usize = 50;
const ARTIFACTS: usize = 200;

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let s = stack(false).await;
    let (mut b, ws) = Browser::signed_up(&s).await;
    let tags = [
        "report", "finance", "ops", "design", "research", "q3", "q4", "legal",
    ];
    let mut first = String::new();
    for i in 0..ARTIFACTS {
        let name = format!("Artifact {i:03} quarterly report");
        let tag_list = format!("{}, {}", tags[i % tags.len()], tags[(i / 3) % tags.len()]);
        let (st, body) = b
            .post_fetch(
                &format!("/w/{ws}/artifacts"),
                &[("name", &name), ("tags", &tag_list)],
            )
            .await;
        assert!(st.is_success(), "{body}");
        if first.is_empty() {
            first = body["url"].as_str().unwrap().to_string();
        }
    }
    let pages: Vec<(&str, String)> = vec![
        ("landing", "/".into()),
        ("login", "/login".into()),
        ("workspaces", "/workspaces".into()),
        ("artifacts", format!("/w/{ws}/artifacts")),
        (
            "artifacts page 5",
            format!("/w/{ws}/artifacts?page=5&sort=name"),
        ),
        (
            "search + tag",
            format!("/w/{ws}/artifacts?q=quarterly&tags=finance"),
        ),
        ("artifact detail", first.clone()),
        ("artifact edit", format!("{first}/edit")),
        ("settings", format!("/w/{ws}/settings")),
        ("members", format!("/w/{ws}/members")),
        ("tour", "/tour".into()),
        ("operations", "/ops".into()),
    ];
    // Warm the connection pools and caches once.
    for (_, p) in &pages {
        b.get(p).await;
    }
    println!(
        "{CLIENTS} clients x {ROUNDS} requests per page, {ARTIFACTS} artifacts in the workspace"
    );
    println!(
        "{:<18} {:>8} {:>8} {:>8} {:>8}",
        "page", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    for (label, path) in &pages {
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let mut client = b.clone();
            let path = path.clone();
            tasks.push(async move {
                let mut times = Vec::with_capacity(ROUNDS);
                for _ in 0..ROUNDS {
                    let t = Instant::now();
                    let (status, _) = client.get(&path).await;
                    times.push(t.elapsed());
                    assert!(status.is_success(), "{path}: {status}");
                }
                times
            });
        }
        let mut all: Vec<Duration> = futures::future::join_all(tasks)
            .await
            .into_iter()
            .flatten()
            .collect();
        all.sort();
        println!(
            "{:<18} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            label,
            percentile(&all, 0.50),
            percentile(&all, 0.95),
            percentile(&all, 0.99),
            percentile(&all, 1.0)
        );
    }
    let js = ghostworks_web::assets::JS.size();
    println!(
        "JavaScript shipped: {js} bytes ({:.1} KiB), one file",
        js as f64 / 1024.0
    );
}
