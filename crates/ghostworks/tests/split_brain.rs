//! No split brain, against real processes: the test kit's Patroni cluster loses etcd (frozen
//! with SIGSTOP, as a primary cut off from the consensus store would). The primary demotes
//! itself, and at no moment do two nodes take writes, checked by writing to each node
//! directly, past HAProxy. Once etcd is back, one primary takes writes again.

use std::time::{Duration, Instant};

use ghostworks_testkit::cluster::{Cluster, DATABASE, RETRY_TIMEOUT, TTL};
use sqlx::Connection;

/// The nodes that accept a write right now, each tried directly with a bounded wait.
async fn writers(cluster: &Cluster) -> Vec<usize> {
    let mut accepted = Vec::new();
    for i in 0..cluster.nodes.len() {
        let write = async {
            let mut c = sqlx::PgConnection::connect(&cluster.node_url(i, DATABASE)).await?;
            sqlx::query("INSERT INTO probe VALUES (now())")
                .execute(&mut c)
                .await
        };
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), write).await {
            accepted.push(i);
        }
    }
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_cut_off_from_etcd_demotes_itself_and_never_two_take_writes() {
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the cluster did not start: {e:#}"));
    let mut c = sqlx::PgConnection::connect(&cluster.write_url(DATABASE))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE probe (at timestamptz)")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let primary = cluster.primary().expect("a primary");
    assert_eq!(writers(&cluster).await, vec![primary]);

    cluster.pause_etcd().unwrap();
    let cut = Instant::now();
    // Watched until well past the leader key's expiry: a standby promoted without the key
    // would show up as a second writer.
    let mut demoted_after = None;
    while cut.elapsed() < Duration::from_secs(u64::from(TTL) + 5) {
        let w = writers(&cluster).await;
        assert!(w.len() <= 1, "two nodes took writes at once: {w:?}");
        match (w.is_empty(), demoted_after) {
            (true, None) => demoted_after = Some(cut.elapsed()),
            (false, Some(after)) => panic!("node{w:?} took writes again {after:?} after demoting"),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let demoted_after = demoted_after.unwrap_or_else(|| {
        panic!(
            "the primary still took writes {:?} after losing etcd\n{}",
            cut.elapsed(),
            cluster.logs()
        )
    });
    assert!(
        demoted_after < Duration::from_secs(u64::from(RETRY_TIMEOUT) * 3),
        "demoted only after {demoted_after:?}"
    );

    cluster.resume_etcd().unwrap();
    let back = Instant::now();
    tokio::task::block_in_place(|| cluster.wait_for_primary(Duration::from_secs(60), None))
        .unwrap();
    let mut w = writers(&cluster).await;
    while w.len() != 1 {
        assert!(w.len() < 2, "two nodes took writes at once: {w:?}");
        assert!(back.elapsed() < Duration::from_secs(60), "no writer again");
        tokio::time::sleep(Duration::from_millis(200)).await;
        w = writers(&cluster).await;
    }
    eprintln!(
        "etcd frozen: node{primary} stopped taking writes after {demoted_after:?}, no node took \
         writes while it was; etcd back: node{} takes writes after {:?}",
        w[0],
        back.elapsed()
    );
}
