//! A few seconds of every scenario against the real router over a tiny dataset, so the
//! harness, the generator and the outputs never rot. Figures here mean nothing; only that
//! each scenario moves, answers no 5xx and loses no update.

use std::collections::HashMap;
use std::time::Duration;

use ghostworks_bench::ceiling;
use ghostworks_bench::dataset::{self, Spec};
use ghostworks_bench::load::{self, Options};
use ghostworks_bench::output;
use ghostworks_config::Config;
use ghostworks_testkit::{services, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_against_a_tiny_dataset() {
    let svc = services();
    let db = svc.database().await.unwrap();
    let spec = Spec {
        workspaces: 3,
        artifacts: 200,
        largest: 120,
        users: 12,
        seed: 7,
    };
    let seeded = dataset::seed(&db.admin_url, &spec).await.unwrap();
    assert_eq!(seeded.artifacts, 200);
    assert!((110..=130).contains(&seeded.largest_workspace), "{seeded}");
    assert!(
        dataset::seed(&db.admin_url, &spec).await.is_err(),
        "a second seed is refused"
    );

    let vars: HashMap<String, String> = [
        ("DATABASE_URL", db.app_url.as_str()),
        ("REDIS_URL", svc.redis_url()),
        ("REDIS_KEY_PREFIX", &unique("bench")),
        (
            "JWT_SECRET_KEY",
            "bench-secret-0123456789abcdef0123456789abcdef",
        ),
        ("RATE_LIMIT_ENABLED", "false"),
        ("GHOSTWORKS_ENV", "development"),
        ("LOG_FORMAT", "json"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let state = ghostworks_api::AppState::connect(Config::from_vars(&vars).unwrap())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(ghostworks_api::serve(
        state,
        listener,
        std::future::pending(),
    ));

    let o = Options {
        base_url,
        server_pid: Some(std::process::id()),
        dataset_users: spec.users,
        pool: 6,
        concurrency: 4,
        duration: Duration::from_secs(2),
        login_concurrency: 2,
        step: Duration::from_secs(1),
        steps: vec![0.3, 0.6],
        seed: 1,
    };
    let h = load::Harness::login(&o).await.unwrap();

    // The SQL ceiling replays the logged-in sessions through the API's own database calls,
    // before and after the API's read journey.
    let settings = ceiling::Settings {
        connections: 3,
        search_timeout: Duration::from_secs(2),
        seed: 1,
    };
    let callers = ceiling::callers(&h.sessions).unwrap();
    let mut replay = ceiling::Replay::open(&db.app_url, callers, settings)
        .await
        .unwrap();
    replay.run(Duration::from_millis(500)).await.unwrap();
    let read = h.read_journey(&o).await;
    replay.run(Duration::from_millis(500)).await.unwrap();
    let sql = replay.finish().await;
    assert!(sql.latency.requests > 0);
    assert_eq!(sql.errors, 0, "{sql:?}");

    assert!(read.latency.rps > 0.0);
    assert_eq!((read.errors, read.server_errors), (0, 0), "{read:?}");
    assert_eq!(read.ops.len(), 5, "every request of the journey ran");

    let results = h.after_read(&o, read).await.unwrap();
    let under = &results.get_under_search;
    assert_eq!(under.server_errors, 0, "{under:?}");
    assert_eq!(under.ops.len(), 2, "gets and one search ran: {under:?}");
    assert!(under.extra["get_p99_ms"].as_f64().unwrap() > 0.0);

    let write = &results.write;
    assert!(write.extra["writes"].as_u64().unwrap() > 0);
    assert_eq!(write.server_errors, 0, "{write:?}");
    assert_eq!(write.extra["lost_updates"], 0, "{write:?}");

    let login = &results.login;
    assert!(login.latency.requests > 0);
    assert_eq!(login.errors, 0, "{login:?}");

    let open = &results.open_loop;
    assert_eq!(open.steps.len(), 2);
    assert!(open
        .steps
        .iter()
        .all(|s| s.achieved_rps > 0.0 && s.server_errors == 0));

    let dir = tempfile_dir();
    let md = output::write(&results, &dir, &dir.join("load.json")).unwrap();
    assert!(md.contains("| Read journey (all) |"));
    assert!(md.contains("| Get under search load (all) |"));
    let score: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("load.json")).unwrap()).unwrap();
    assert!(score["requests"].as_u64().unwrap() > 0);
    assert!(std::fs::read_to_string(dir.join("open-loop.svg"))
        .unwrap()
        .starts_with("<svg"));
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique("ghostworks-bench-"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
